"""Train the denoising encoder (codec/denoise.py) for a base model, on CPU, resumably.

    python -m codec.train.denoise --data /work/corpus --out runs/denoise --minutes 40 --install

The base model (decoder, tables, rate control) stays frozen: only the mask net
learns. Each step draws (noisy, clean) pairs (`codec.train.denoise_data`),
takes both through the MDCT, masks the noisy coefficients and scores them
against the clean ones:

- ``log10(nmse + 1e-3)``: squared error over the clean energy, per example, on
  a log scale (an SDR loss: every SNR counts alike, not just the noisiest
  examples), floored at -30 dB so clean examples are pushed to pass through
  unchanged and no further. The MDCT is orthonormal and the shipped
  post-filter is the identity, so this is the decoded waveform's error
  (before quantization, whose noise does not depend on the mask);
- ``logspec``: L1 distance of log band energies (the codec's bands) with a
  floor 40 dB under the clean signal's mean power, so the net cannot win by
  muting quiet speech;
- with ``--distortion-weight W`` (W != 1) the first term splits the error
  exactly as the mask acts: speech distortion ``(1 - mask) * clean`` and
  residual noise ``mask * noise`` (noise = noisy - clean, known in training),
  and scores ``W * distortion^2 + residual^2`` over the clean energy. W > 1
  prefers leaving some noise to carving into speech (the per-bin optimum is a
  Wiener gain computed as if the SNR were W times higher);
- with ``--compressed-weight W``: W times a power-law compressed STFT loss on
  the decoded waveforms (`codec.train.denoise_loss`: |X|^0.3 magnitudes and
  the compressed complex spectrum, level-normalised), which weighs quiet
  speech and residual noise in pauses closer to how PESQ and listeners do
  (``--compressed-added A``: added energy weighs A times missing energy);
- with ``--clean-floor F``: clean examples (noisy == clean) get the floor F
  in ``log10(nmse + F)`` instead of 1e-3, so they are pushed further towards
  pass-through;
- with ``--wiener-in-loop A F H T B``: the mask is multiplied by the version-5
  stationary-noise gain (`codec.denoise.stationary_gain`) before the loss, as
  encoding with ``--wiener`` applies it (tried, not shipped: model card);
- ``rate``: L1 of the masked coefficients in units of the clean RMS, a proxy
  for the bits a Laplacian entropy coder spends at a fixed relative step
  (the rate controller's steps follow the frame level). It is small: removing
  noise already lowers the rate.

Checkpoints (``OUT/checkpoint``: mask weights, Adam moments, step) are written
every ``--save-every`` steps and when a StopFlag fires (SIGINT, SIGTERM, the
``--minutes`` budget); running the same command again resumes. The shipped
file is exported to ``OUT/NAME.denoise.safetensors`` (and, with
``--install``, next to the base weights), tied to the base decoder's SHA-256.

``--init-from CHECKPOINT`` starts a new run from another run's mask weights (a
fine-tune; fresh optimiser, step 0). When the new net reads more features
(``--floor-frames``: the version 2 noise-floor input), the first layer's extra
input weights start at zero, so step 0 computes exactly the old mask; a new
``--strength-head`` (version 3) starts at a strength of 1 - 3e-4.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from codec.denoise import (DenoiseConfig, DenoisingEncoder, denoise_path, save_denoiser,
                           stationary_gain, valid_wiener)
from codec.errors import WeightsError
from codec.train.denoise_data import Pools, batch, load_pools
from codec.train.denoise_loss import CompressedSpectralLoss
from codec.train.stopping import StopFlag
from codec.train.tensorfile import load_tensors, save_tensors
from codec.train.warmstart import widen_inputs


NMSE_FLOOR = 1e-3


@dataclass(frozen=True)
class DenoiseTrainConfig:
    """One run's settings (stored in the checkpoint; a resume keeps them)."""

    seed: int = 0
    steps: int = 12000
    batch_size: int = 12
    segment_s: float = 2.0
    lr: float = 1e-3
    final_lr: float = 5e-5
    warmup_steps: int = 100
    logspec_weight: float = 0.5
    rate_weight: float = 0.02
    speech_clips: int = 4000
    music_clips: int = 300
    sfx_clips: int = 1000
    clean_share: float = 0.2
    distortion_weight: float = 1.0
    augment: float = 0.0
    stretch: float = 0.0
    compressed_weight: float = 0.0
    compressed_added: float = 1.0
    clean_floor: float = NMSE_FLOOR
    #: a version-5 stationary-gain setting applied to the mask in training; (): none
    wiener_in_loop: tuple[float, ...] = ()


def learning_rate(config: DenoiseTrainConfig, step: int) -> float:
    """Linear warm-up, then cosine from lr to final_lr at `steps`."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    t = min(1.0, (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps))
    return config.final_lr + 0.5 * (config.lr - config.final_lr) * (1 + math.cos(math.pi * t))


def band_energies(y: torch.Tensor, edges: tuple[int, ...]) -> torch.Tensor:
    """Coefficients [B, C, F] -> energy per band [B, bands, F]."""
    return torch.stack([y[:, lo:hi].square().sum(dim=1)
                        for lo, hi in zip(edges[:-1], edges[1:])], dim=1)


@dataclass(frozen=True)
class Losses:
    total: torch.Tensor
    nmse: float
    logspec: float
    rate: float
    compressed: float = 0.0


def losses(mask: torch.Tensor, noisy: torch.Tensor, clean: torch.Tensor,
           config: DenoiseTrainConfig, edges: tuple[int, ...],
           spectral: CompressedSpectralLoss | None = None) -> Losses:
    """The loss of the masked noisy vs the clean coefficients [B, C, F] (module docstring)."""
    estimate = mask * noisy
    power = clean.square().mean(dim=(1, 2)) + 1e-10                       # [B]
    nmse_each = (estimate - clean).square().mean(dim=(1, 2)) / power
    nmse = nmse_each.mean().detach()
    if config.distortion_weight != 1.0:
        distortion = ((1.0 - mask) * clean).square().mean(dim=(1, 2))
        residual = (mask * (noisy - clean)).square().mean(dim=(1, 2))
        nmse_each = (config.distortion_weight * distortion + residual) / power
    floor = (power * 1e-4 * (edges[1] - edges[0]))[:, None, None]
    log_est = torch.log10(band_energies(estimate, edges) + floor)
    log_ref = torch.log10(band_energies(clean, edges) + floor)
    logspec = (log_est - log_ref).abs().mean()
    rate = (estimate.abs().mean(dim=(1, 2)) / power.sqrt()).mean()
    floors = torch.full_like(nmse_each, NMSE_FLOOR)
    if config.clean_floor != NMSE_FLOOR:      # clean examples: noisy is exactly the clean
        floors[(noisy == clean).flatten(1).all(dim=1)] = config.clean_floor
    sdr_term = torch.log10(nmse_each + floors).mean()
    total = sdr_term + config.logspec_weight * logspec + config.rate_weight * rate
    compressed = torch.zeros(())
    if config.compressed_weight and spectral is not None:
        compressed = spectral(estimate, clean)
        total = total + config.compressed_weight * compressed
    return Losses(total, float(nmse), float(logspec.detach()), float(rate.detach()),
                  float(compressed.detach()))


class Trainer:
    """The mask net, its optimiser and the data; `step()` does one update."""

    def __init__(self, config: DenoiseTrainConfig, pools: Pools, edges: tuple[int, ...],
                 net_config: DenoiseConfig) -> None:
        torch.manual_seed(config.seed)
        self.config, self.pools, self.edges = config, pools, edges
        self.encoder = DenoisingEncoder(net_config)
        self.spectral = CompressedSpectralLoss(net_config.bins, config.compressed_added)
        self.optimizer = torch.optim.Adam(self.encoder.mask.parameters(), lr=config.lr)
        self.step_index = 0
        self.length = int(round(config.segment_s * 24000 / net_config.bins)) * net_config.bins

    def step(self) -> Losses:
        noisy, clean = batch(self.pools, self.config.seed, self.step_index,
                             self.config.batch_size, self.length, self.config.clean_share,
                             self.config.augment, self.config.stretch)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.config, self.step_index)
        mdct = self.encoder.mdct
        with torch.no_grad():
            y_noisy = mdct(torch.from_numpy(noisy).unsqueeze(1))
            y_clean = mdct(torch.from_numpy(clean).unsqueeze(1))
        mask = self.encoder.gain(y_noisy)
        if self.config.wiener_in_loop:
            mask = mask * stationary_gain(y_noisy, tuple(self.config.wiener_in_loop))
        result = losses(mask, y_noisy, y_clean, self.config, self.edges, self.spectral)
        self.optimizer.zero_grad(set_to_none=True)
        result.total.backward()
        torch.nn.utils.clip_grad_norm_(self.encoder.mask.parameters(), 1.0)
        self.optimizer.step()
        self.step_index += 1
        return result

    def save(self, directory: Path) -> None:
        """Weights, Adam moments and the step, written to a temp folder then swapped in."""
        tmp = directory.with_name(directory.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_tensors(dict(self.encoder.mask.state_dict()), tmp / "model.safetensors")
        moments: dict[str, torch.Tensor] = {}
        adam_step = 0.0
        for name, param in self.encoder.mask.named_parameters():
            state = self.optimizer.state.get(param, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    moments[f"{name}.{key}"] = state[key]
            adam_step = float(state.get("step", adam_step))
        save_tensors(moments, tmp / "optimizer.safetensors")
        meta = {"step": self.step_index, "adam_step": adam_step,
                "train_config": asdict(self.config), "net_config": asdict(self.encoder.config)}
        (tmp / "state.json").write_text(json.dumps(meta, indent=2) + "\n")
        old = directory.with_name(directory.name + ".old")
        if directory.exists():
            directory.replace(old)
        tmp.replace(directory)
        shutil.rmtree(old, ignore_errors=True)

    def load(self, directory: Path) -> None:
        meta = json.loads((directory / "state.json").read_text())
        self.encoder.mask.load_state_dict(load_tensors(directory / "model.safetensors"))
        moments = load_tensors(directory / "optimizer.safetensors")
        for name, param in self.encoder.mask.named_parameters():
            if f"{name}.exp_avg" in moments:
                self.optimizer.state[param] = {
                    "step": torch.tensor(meta["adam_step"]),
                    "exp_avg": moments[f"{name}.exp_avg"].clone(),
                    "exp_avg_sq": moments[f"{name}.exp_avg_sq"].clone()}
        self.step_index = int(meta["step"])

    def init_from(self, directory: Path) -> None:
        """Start from another run's mask weights (module docstring); optimiser stays fresh."""
        state = load_tensors(directory / "model.safetensors")
        own = self.encoder.mask.state_dict()
        first = "body.0.weight"
        grown = widen_inputs(own[first], state[first])   # more input features: zeros for them
        if grown is not None:
            state[first] = grown
        missing = self.encoder.mask.load_state_dict(state, strict=False).missing_keys
        if any(not key.startswith("strength.") for key in missing):
            raise ValueError(f"{directory}: no weights for {missing}")


#: Training settings a command line may change on a resume too (None: the run's own), and
#: what each does; every one is a float option ``--name-with-dashes``.
RUN_OVERRIDES = {
    "clean_share": f"share of examples left clean (default {DenoiseTrainConfig.clean_share})",
    "distortion_weight": "weight of speech distortion against residual noise (default 1: the "
                         "plain error)",
    "augment": "share of examples with a changed voice (denoise_data.other_voice; default 0)",
    "stretch": "share of examples slowed down (denoise_data.slow_down; default 0)",
    "compressed_weight": "weight of the power-law compressed STFT loss (codec.train."
                         "denoise_loss; default 0)",
    "compressed_added": "weight of added over missing energy in that loss's magnitude part "
                        "(default 1)",
    "clean_floor": f"NMSE floor of the SDR term for clean examples (default {NMSE_FLOOR}, as "
                   "for noisy ones; lower pushes clean input closer to pass-through)",
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m codec.train.denoise",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="corpus folder (train split is used)")
    parser.add_argument("--out", required=True, type=Path, help="run folder (checkpoint, export)")
    parser.add_argument("--weights", default=None,
                        help="base model (as for aec --weights; default: the shipped one)")
    parser.add_argument("--minutes", type=float, default=None, help="wall-clock budget")
    parser.add_argument("--steps", type=int, default=DenoiseTrainConfig.steps)
    parser.add_argument("--batch-size", type=int, default=DenoiseTrainConfig.batch_size)
    parser.add_argument("--speech-clips", type=int, default=DenoiseTrainConfig.speech_clips)
    parser.add_argument("--music-clips", type=int, default=DenoiseTrainConfig.music_clips)
    parser.add_argument("--sfx-clips", type=int, default=DenoiseTrainConfig.sfx_clips)
    for name, text in RUN_OVERRIDES.items():
        parser.add_argument("--" + name.replace("_", "-"), type=float, default=None,
                            help=f"{text}; on a resume: the run's own unless given")
    parser.add_argument("--hidden", type=int, default=DenoiseConfig.hidden)
    parser.add_argument("--layers", type=int, default=DenoiseConfig.layers)
    parser.add_argument("--kernel", type=int, default=DenoiseConfig.kernel)
    parser.add_argument("--dilations", default=",".join(map(str, DenoiseConfig.dilations)),
                        help="comma-separated, one per layer ('' : all 1)")
    parser.add_argument("--floor-frames", type=int, default=DenoiseConfig.floor_frames,
                        help="noise-floor feature half-window in frames (0: none, version 1)")
    parser.add_argument("--strength-head", action="store_true",
                        help="add the per-frame strength head (needs --floor-frames; version 3)")
    parser.add_argument("--lr", type=float, default=DenoiseTrainConfig.lr)
    parser.add_argument("--init-from", type=Path, default=None,
                        help="a run's checkpoint folder to start a new run from (fine-tune)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-every", type=int, default=250)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--pass-db", type=float, nargs=2, default=None, metavar=("FROM", "FULL"),
                        help="exported file only: relax the mask to 1 where the local SNR is "
                             "above FROM dB, fully at FULL dB (config version 4; "
                             "codec.denoise.DenoisingEncoder.applied_gain); training ignores it")
    parser.add_argument("--wiener", type=float, nargs=5, default=None,
                        metavar=("ALPHA", "FLOOR", "HALF", "FRAMES", "BINS"),
                        help="exported file only: multiply the mask by the stationary-noise "
                             "gain max(FLOOR, 1 - ALPHA N / P), P the power over BINS x FRAMES, "
                             "N its minimum over +-HALF frames (config version 5; "
                             "codec.denoise.stationary_gain); training ignores it")
    parser.add_argument("--wiener-in-loop", type=float, nargs=5, default=None,
                        metavar=("ALPHA", "FLOOR", "HALF", "FRAMES", "BINS"),
                        help="train the mask with the stationary-noise gain applied (as "
                             "--wiener applies it when encoding); a new run's setting")
    parser.add_argument("--install", action="store_true",
                        help="also write the denoiser next to the base weights")
    args = parser.parse_args(argv)
    for name in ("wiener", "wiener_in_loop"):
        setting = getattr(args, name)
        if setting is not None and not valid_wiener(tuple(setting)):
            parser.error(f"--{name.replace('_', '-')}: ALPHA > 0, 0 <= FLOOR <= 1, HALF >= 1, "
                         f"odd FRAMES and BINS >= 1, window sizes whole numbers")
    return args


def _base(weights: str | None) -> tuple[bytes, tuple[int, ...], int]:
    """(decoder SHA-256, band edges, MDCT bins) of the base model."""
    from codec.weights import load_model

    model = load_model(weights, need_encoder=False)
    return (model.decoder_sha256, tuple(model.config.layout().band_edges),
            int(model.config.latent_channels))


#: Encoding-time rules: written into the exported file's config only, never trained.
EXPORT_RULES = ("pass_db", "wiener")


def export(trainer: Trainer, out: Path, sha: bytes, weights: str | None,
           install: bool, rules: dict[str, tuple[float, ...]] | None = None) -> list[Path]:
    """Write the denoiser file into the run folder (and next to the base model).

    `rules` (EXPORT_RULES: `pass_db`, version 4; `wiener`, version 5) go into the
    exported file's config only, not the run's.
    """
    encoder = trainer.encoder
    if rules:
        config = replace(encoder.config, **{k: tuple(v) for k, v in rules.items()})
        encoder = DenoisingEncoder(config.versioned())
        encoder.load_state_dict(trainer.encoder.state_dict())
    targets = [out / denoise_path(weights).name]
    if install:
        targets.append(denoise_path(weights))
    for target in targets:
        save_denoiser(target, encoder, sha)
    return targets


def run(args: argparse.Namespace) -> int:
    """Train until --steps or the budget; checkpoint, export; the StopFlag's exit code."""
    torch.set_num_threads(args.threads)
    sha, edges, bins = _base(args.weights)
    checkpoint = args.out / "checkpoint"
    config = DenoiseTrainConfig(seed=args.seed, steps=args.steps, batch_size=args.batch_size,
                                speech_clips=args.speech_clips, music_clips=args.music_clips,
                                sfx_clips=args.sfx_clips, lr=args.lr,
                                wiener_in_loop=tuple(args.wiener_in_loop or ()))
    if (checkpoint / "state.json").is_file():   # a resume keeps the run's own settings
        saved = json.loads((checkpoint / "state.json").read_text())
        config = DenoiseTrainConfig(**{**saved["train_config"], "steps": args.steps})
        net_config = DenoiseConfig(**{**saved["net_config"],
                                      "dilations": tuple(saved["net_config"]["dilations"])})
    else:
        dilations = tuple(int(d) for d in args.dilations.split(",") if d)
        net_config = DenoiseConfig(bins=bins, hidden=args.hidden, layers=args.layers,
                                   kernel=args.kernel, dilations=dilations,
                                   floor_frames=args.floor_frames,
                                   strength_head=args.strength_head).versioned()
    config = replace(config, **{name: getattr(args, name) for name in RUN_OVERRIDES
                                if getattr(args, name) is not None})
    rules = {name: tuple(getattr(args, name)) for name in EXPORT_RULES
             if getattr(args, name) is not None}
    try:                              # the file this run will export must load: check now
        DenoiseConfig.from_json(replace(net_config, **rules).versioned().to_json())
    except WeightsError as exc:       # e.g. --pass-db on a net without the floor feature
        print(f"codec.train.denoise: error: these options would export an {exc}",
              file=sys.stderr)
        return 2
    started = time.monotonic()
    pools = load_pools(args.data, config.seed, config.speech_clips, config.music_clips,
                       config.sfx_clips)
    trainer = Trainer(config, pools, edges, net_config)
    if (checkpoint / "state.json").is_file():
        trainer.load(checkpoint)
        print(f"resumed at step {trainer.step_index}", flush=True)
    elif args.init_from is not None:
        trainer.init_from(args.init_from)
        print(f"started from {args.init_from}", flush=True)
    print(f"pools: {len(pools.speech)} speech, {len(pools.music)} music, {len(pools.sfx)} sfx "
          f"({time.monotonic() - started:.0f} s)", flush=True)
    budget = None if args.minutes is None else 60.0 * args.minutes
    _loop(trainer, args, checkpoint, budget)
    for target in export(trainer, args.out, sha, args.weights, args.install, rules):
        print(f"exported {target}", flush=True)
    return 0


def _loop(trainer: Trainer, args: argparse.Namespace, checkpoint: Path,
          budget: float | None) -> None:
    sums = np.zeros(4)
    count, step_s = 0, 0.0
    with StopFlag(time_budget_s=budget) as stop:
        while trainer.step_index < trainer.config.steps and not stop.should_stop(step_s):
            t0 = time.monotonic()
            result = trainer.step()
            step_s = time.monotonic() - t0
            sums += (result.nmse, result.logspec, result.rate, result.compressed)
            count += 1
            if trainer.step_index % args.log_every == 0:
                nmse, logspec, rate, compressed = sums / count
                print(f"step {trainer.step_index} nmse {nmse:.4f} ({-10 * np.log10(nmse):.2f} "
                      f"dB) logspec {logspec:.4f} rate {rate:.3f} compressed {compressed:.4f} "
                      f"{step_s:.3f} s/step", flush=True)
                sums[:], count = 0.0, 0
            if trainer.step_index % args.save_every == 0:
                trainer.save(checkpoint)
        trainer.save(checkpoint)
        if stop.reason:
            print(f"stopped: {stop.reason}", flush=True)


def main(argv: list[str] | None = None) -> int:
    return run(_parse(argv))


if __name__ == "__main__":
    sys.exit(main())
