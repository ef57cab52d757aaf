"""The training loop: rate + beta_r * ... per rate point, with rate control, DDP and resume.

Every step spreads the batch over the rate points (item b uses rate point
b mod R). Per rate point r the loss is D_r + beta_r * R_r (R_r in kbps). beta_r
is steered towards the rate point's nominal kbps: log beta_r grows while the
measured rate is above target and shrinks below it (dual ascent on a rate
constraint), so the rate points land near 3/6/12/24 kbps without hand-tuned
lambdas. The prior also gets an unweighted rate term on the detached latent,
so it fits the latent quickly whatever beta is.
"""

from __future__ import annotations

import gc
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from codec.train.checkpoint import RateControl, TrainState, load_checkpoint, save_checkpoint
from codec.train.config import TrainConfig
from codec.train.data import CropSampler, scan_clips
from codec.train.losses import DistortionLoss
from codec.train.split import KINDS
from codec.train.network import CodecOutput, TrainableCodec
from codec.train.packed import PackedSampler, PackedSubset, is_packed
from codec.train.phases import NULL_TIMER, NullTimer
from codec.train.stopping import StopFlag

CHECKPOINT_DIR = "checkpoint"
LOG_FILE = "log.jsonl"


@dataclass(frozen=True)
class Dist:
    """This process's place in the (possibly single-process) job."""

    rank: int
    world: int
    device: torch.device
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> Dist:
    """Join the torchrun job if WORLD_SIZE > 1 (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    dev = torch.device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    owns = world > 1 and not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo",
                                rank=rank, world_size=world)
    return Dist(rank, world, dev, owns)


def close_distributed(dist_: Dist) -> None:
    """Wait for every rank, then tear down the group this process created.

    Call it after dropping the DDP model: a gloo group still referenced at
    interpreter exit can abort the process (SIGABRT) when its worker threads
    are destroyed after Python, and a rank that leaves while another is still
    saving can break the other's connection.
    """
    if dist_.owns_group and dist.is_initialized():
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


def make_optimizer(model: TrainableCodec, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam; the prior and the rate gains get the higher `lr_rate`."""
    fast = list(model.prior.parameters()) + list(model.quantizer.parameters())
    fast_ids = {id(p) for p in fast}
    slow = [p for p in model.parameters() if id(p) not in fast_ids]
    return torch.optim.AdamW([
        {"params": slow, "lr": cfg.lr, "base_lr": cfg.lr, "weight_decay": cfg.weight_decay},
        {"params": fast, "lr": cfg.lr_rate, "base_lr": cfg.lr_rate, "weight_decay": 0.0},
    ], betas=(0.9, 0.99))


def set_learning_rate(optimizer: torch.optim.Optimizer, step: int, cfg: TrainConfig,
                      warmup_from: int = 0) -> None:
    """Linear warm-up from `warmup_from` (0, or a warm restart's step), then constant."""
    scale = min(1.0, (step - warmup_from + 1) / max(cfg.warmup_steps, 1))
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * scale


def initial_rate_control(cfg: TrainConfig) -> RateControl:
    n = len(cfg.model.rate_points)
    return RateControl((math.log(cfg.beta_init),) * n,
                       tuple(rp.nominal_kbps for rp in cfg.model.rate_points), (0.0,) * n)


def update_rate_control(rc: RateControl, kbps: list[float], cfg: TrainConfig) -> RateControl:
    """One dual-ascent step per rate point on the multiplier exp(log_beta) - push.

    Driven by the EMA of the coded kbps (rounded symbols under the prior): that is
    what files will cost; the noisy relaxation overestimates it near zero.
    """
    targets = [rp.nominal_kbps for rp in cfg.model.rate_points]
    ema = [0.9 * e + 0.1 * k for e, k in zip(rc.ema_kbps, kbps, strict=True)]
    lo, hi = math.log(cfg.beta_min), math.log(cfg.beta_max)
    push_step = cfg.push_step
    log_beta, push = [], []
    for b, p, e, t in zip(rc.log_beta, rc.push or (0.0,) * len(ema), ema, targets, strict=True):
        err = max(-1.0, min(1.0, e / t - 1.0))
        if err < 0 and b <= lo + 1e-9:          # at the floor and still too few bits
            p += push_step * -err
        elif err > 0 and p > 0:                 # too many bits: first undo the push
            p = max(0.0, p - push_step * err)
        else:
            b = min(hi, max(lo, b + cfg.beta_step * err))
        log_beta.append(b)
        push.append(p)
    return RateControl(tuple(log_beta), tuple(ema), tuple(push))


@dataclass(frozen=True)
class StepResult:
    """Scalars of one step (already averaged over processes)."""

    loss: float
    distortion: float
    wave_db: float
    mel: float
    kbps: list[float]           # noisy-relaxation estimate (what the loss sees)
    coded_kbps: list[float]     # rounded symbols under the prior (what the coder spends)
    stop: bool = False          # some process asked to stop after this step


def make_sampler(cfg: TrainConfig, data_dirs: list[Path], crop_samples: int,
                 rank: int) -> CropSampler | PackedSampler:
    """Crops from a corpus, or from a packed subset (`codec.train.pack`) given as the one folder."""
    if len(data_dirs) == 1 and is_packed(data_dirs[0]):
        subset = PackedSubset.load(data_dirs[0])
        if subset.sample_rate != cfg.model.model_rate:
            raise ValueError(f"packed subset at {subset.sample_rate} Hz, "
                             f"training needs {cfg.model.model_rate} Hz")
        return PackedSampler(subset, crop_samples, cfg.seed, rank,
                             dict(zip(KINDS, cfg.kind_weights, strict=True)), cfg.silence_dbfs)
    clips = scan_clips(data_dirs, "train", cfg.model.model_rate)
    return CropSampler(clips, crop_samples, cfg.seed, rank, cfg.kind_weights, cfg.silence_dbfs,
                       cfg.cache_mb)


class Trainer:
    """Owns model, optimizer, data and state of one process of a run."""

    def __init__(self, cfg: TrainConfig, data_dirs: list[Path], out_dir: Path, dist_: Dist,
                 resume: bool) -> None:
        self.cfg, self.out_dir, self.dist = cfg, out_dir, dist_
        torch.manual_seed(cfg.seed)                     # same initial weights on every rank
        self.model = TrainableCodec(cfg.model).to(dist_.device)
        self.optimizer = make_optimizer(self.model, cfg)
        self.state = TrainState(0, initial_rate_control(cfg))
        ckpt = out_dir / CHECKPOINT_DIR
        if resume and (ckpt / "state.json").exists():
            self.state, _ = load_checkpoint(ckpt, self.model, self.optimizer)
        self.net: nn.Module = self.model
        if dist_.world > 1:
            self.net = nn.parallel.DistributedDataParallel(self.model)
        self.loss_fn = DistortionLoss(cfg.model.model_rate, cfg.fft_sizes, cfg.stft_weight,
                                      cfg.mel_weight, cfg.wave_weight).to(dist_.device)
        crop = int(round(cfg.crop_seconds * cfg.model.model_rate / cfg.model.hop_length))
        self.crop_samples = crop * cfg.model.hop_length
        self.sampler = make_sampler(cfg, data_dirs, self.crop_samples, dist_.rank)

    def step(self, timer: NullTimer = NULL_TIMER, stop: bool = False) -> StepResult:
        """One optimizer step at self.state.step.

        `stop` is this process's wish to stop after this step; it is reduced over
        the processes with the step's statistics, so every rank stops together.
        """
        cfg, step = self.cfg, self.state.step
        num_rates = len(cfg.model.rate_points)
        with timer.phase("data"):
            x = self.sampler.batch(step, cfg.batch_size).to(self.dist.device)
        rates = torch.arange(cfg.batch_size, device=x.device) % num_rates
        gen = torch.Generator(device=x.device).manual_seed(
            (cfg.seed * 1_000_003 + step) * 1009 + self.dist.rank)
        with timer.phase("forward"):
            out = self.net(x, rates, gen, cfg.bf16, timer)
        with timer.phase("distortion"):
            loss, stats = self._loss(x, out, rates)
        with timer.phase("backward"):
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        with timer.phase("optimizer"):
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            set_learning_rate(self.optimizer, step, cfg, self.state.lr_warmup_from)
            self.optimizer.step()
        flag = torch.tensor([1.0 if stop else 0.0], device=x.device)
        values = [float(v) for v in self._all_mean(torch.cat([loss.detach().view(1), stats, flag]))]
        return StepResult(values[0], values[3], values[1], values[2],
                          values[4:4 + num_rates], values[4 + num_rates:-1], values[-1] > 0)

    def _loss(self, x: torch.Tensor, out: CodecOutput,
              rates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sum over rate points of D_r + beta_r * kbps_r, plus the prior's own rate term.

        Returns the loss and [wave/10 dB, mel, distortion, kbps per rate, coded kbps per rate].
        """
        num_rates = len(self.cfg.model.rate_points)
        seconds = self.crop_samples / self.cfg.model.model_rate
        betas = self.state.rate_control.betas()
        loss = out.prior_bits / out.bits.numel() / 1000.0
        stats = torch.zeros(3 + 2 * num_rates, device=x.device)
        groups = [rates == r for r in range(num_rates)]
        present = [r for r, idx in enumerate(groups) if bool(idx.any())]
        terms_of = self.loss_fn.forward_groups(x, out.x_hat, [groups[r] for r in present])
        for r, terms in zip(present, terms_of, strict=True):
            idx = groups[r]
            kbps = out.bits[idx].mean() / seconds / 1000.0
            loss = loss + terms.total + betas[r] * kbps
            stats[0] += terms.wave.detach() * 10 / num_rates
            stats[1] += terms.mel.detach() / num_rates
            stats[2] += terms.total.detach() / num_rates
            stats[3 + r] = kbps.detach()
            stats[3 + num_rates + r] = out.coded_bits[idx].mean() / seconds / 1000.0
        return loss, stats

    def _all_mean(self, t: torch.Tensor) -> torch.Tensor:
        if self.dist.world > 1:
            dist.all_reduce(t)
            t = t / self.dist.world
        return t.cpu()

    def advance(self, result: StepResult, wall_s: float) -> None:
        """Move the step counter and the rate control forward (identical on all ranks)."""
        rc = update_rate_control(self.state.rate_control, result.coded_kbps, self.cfg)
        audio = self.cfg.batch_size * self.dist.world * self.crop_samples / self.cfg.model.model_rate
        self.state = TrainState(self.state.step + 1, rc, self.state.audio_seconds + audio,
                                self.state.wall_seconds + wall_s, self.state.lr_warmup_from)

    def save(self) -> None:
        if self.dist.main:
            save_checkpoint(self.out_dir / CHECKPOINT_DIR, self.model, self.optimizer,
                            self.state, self.cfg)


def log_record(state: TrainState, result: StepResult, audio_per_s: float,
               lr: float) -> dict[str, object]:
    """One JSONL line: losses, bits/s per rate point, rate weights, speed.

    `audio_x_realtime` is audio seconds per wall second since the previous line,
    measured on the wall clock with everything in it (data, logging, checkpoints).
    """
    return {"step": state.step, "wall_s": round(state.wall_seconds, 1),
            "audio_s": round(state.audio_seconds, 1), "loss": round(result.loss, 5),
            "distortion": round(result.distortion, 5), "snr_db": round(-result.wave_db, 3),
            "mel": round(result.mel, 4), "kbps": [round(k, 3) for k in result.kbps],
            "coded_kbps": [round(k, 3) for k in result.coded_kbps],
            "beta": [round(b, 6) for b in state.rate_control.betas()],
            "lr": lr, "audio_x_realtime": round(audio_per_s, 2), "time": time.time()}


def train(cfg: TrainConfig, data_dirs: list[Path], out_dir: Path, *, resume: bool = False,
          device: str = "cpu", progress: bool = True, time_budget_s: float | None = None,
          stop: StopFlag | None = None) -> TrainState:
    """Run (or continue) training until cfg.steps, a stop signal or the time budget.

    Checkpoints go to out_dir/checkpoint every `checkpoint_every_s` and always
    at the end, however the run ends (steps reached, SIGINT, SIGTERM, budget).
    Pass `stop` to share a `StopFlag` the caller has entered; otherwise one is
    made from `time_budget_s` and its signal handlers live for this call.
    """
    if stop is not None:
        return _train(cfg, data_dirs, out_dir, resume, device, progress, stop)
    with StopFlag(time_budget_s) as flag:
        return _train(cfg, data_dirs, out_dir, resume, device, progress, flag)


def _train(cfg: TrainConfig, data_dirs: list[Path], out_dir: Path, resume: bool, device: str,
           progress: bool, stop: StopFlag) -> TrainState:
    launch = time.monotonic()
    dist_ = setup_distributed(resolve_device(device))
    if dist_.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "train_config.json").write_text(cfg.to_json())
    trainer = Trainer(cfg, data_dirs, out_dir, dist_, resume)
    if dist_.main:
        prune_log(out_dir / LOG_FILE, trainer.state.step)
    run = _RunLog(out_dir / LOG_FILE if dist_.main else None, cfg, trainer.state.step,
                  progress and dist_.main)
    last_save = last_end = time.monotonic()
    step_s, saved_step = 0.0, trainer.state.step
    while trainer.state.step < cfg.steps:
        # Stop after this step unless there is room for one more after it, plus the save.
        result = trainer.step(stop=stop.should_stop(2 * step_s))
        now = time.monotonic()
        step_s, last_end = now - last_end, now
        trainer.advance(result, step_s)
        run.step_done(trainer, result, now - launch)
        if result.stop:
            break
        if _due(trainer.state.step, last_save, cfg):
            trainer.save()
            last_save, saved_step = time.monotonic(), trainer.state.step
    if trainer.state.step != saved_step or not (out_dir / CHECKPOINT_DIR).exists():
        trainer.save()
    run.close(trainer.state, stop.reason)
    state = trainer.state
    del trainer
    close_distributed(dist_)
    return state


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when available, else 'cpu'; other names pass through."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class _RunLog:
    """The JSONL log and the progress bar, with honest wall-clock throughput."""

    def __init__(self, path: Path | None, cfg: TrainConfig, step: int, progress: bool) -> None:
        self.cfg = cfg
        self.file = path.open("a") if path is not None else None
        self.bar = _progress_bar(cfg.steps, step, progress)
        self.mark: tuple[float, float] | None = None      # (monotonic time, audio seconds)
        self.first_step_s: float | None = None

    def step_done(self, trainer: Trainer, result: StepResult, since_launch_s: float) -> None:
        state, now = trainer.state, time.monotonic()
        if self.first_step_s is None:
            self.first_step_s = since_launch_s
            self.mark = (now, state.audio_seconds)
        if self.bar is not None:
            self.bar.update(1)
        if state.step % self.cfg.log_every or self.file is None or self.mark is None:
            return
        speed = (state.audio_seconds - self.mark[1]) / max(now - self.mark[0], 1e-9)
        self.mark = (now, state.audio_seconds)
        rec = log_record(state, result, speed, trainer.optimizer.param_groups[0]["lr"])
        rec["first_step_s"] = round(self.first_step_s or 0.0, 1)
        self.file.write(json.dumps(rec) + "\n")
        self.file.flush()
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{result.loss:.3f}", snr=f"{-result.wave_db:.1f}",
                                 kbps="/".join(f"{k:.1f}" for k in result.coded_kbps))

    def close(self, state: TrainState, reason: str | None) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.file is not None:
            if reason:
                self.file.write(json.dumps({"step": state.step, "stopped": reason,
                                            "time": time.time()}) + "\n")
            self.file.close()


def _progress_bar(total: int, initial: int, enabled: bool) -> Any:
    """A tqdm bar when asked for and installed (an accelerator machine may lack tqdm)."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, mininterval=10.0, dynamic_ncols=True)


def prune_log(path: Path, step: int) -> None:
    """Drop log lines past the checkpoint's step (written by a run that was cut off)."""
    if not path.exists():
        return
    lines = path.read_text().splitlines()
    kept = [line for line in lines if line and json.loads(line)["step"] <= step]
    if len(kept) != len(lines):
        path.write_text("".join(line + "\n" for line in kept))


def _due(step: int, last_save: float, cfg: TrainConfig) -> bool:
    if cfg.checkpoint_every_steps and step % cfg.checkpoint_every_steps == 0:
        return True
    return time.monotonic() - last_save >= cfg.checkpoint_every_s
