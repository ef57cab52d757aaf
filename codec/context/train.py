"""Train the context model on the train split's 6 kbps symbols (resumable, CPU).

    python -m codec.context.train --data /work/corpus --out runs/context \
        [--cache DIR] [--minutes-per-kind 50] [--steps 2400] [--hidden 48] [--passes 4] \
        [--reach 1] [--signs 2] [--init WEIGHTS] [--lr 3e-3] [--budget-s 2700] \
        [--val-every 10] [--export]

One run is one stage; the shipped model (network version 3) is six stages, each
started from the one before with --init: `scripts/train_context.sh`. The
defaults are the first stage (network version 2's recipe: 2 passes, 2400 steps).

Symbols come from `codec.context.symbols` (extracted once, cached as npz under
--cache). Only split=train is read. The run stops cleanly on SIGINT/SIGTERM or at
--budget-s (`StopFlag`), writing a checkpoint under --out; running the same
command again resumes from it exactly. When the frame model is done, a small
model of the noise-fill corrections (`codec.context.noise`) and one of the
noise-fill envelope (`codec.context.envelope`) are fitted in a minute or two each
(--noise-steps; kept in the checkpoint folder). --export writes the shipped pair
(`codec/pretrained/aec-base.context.*`, tied to the loaded codec's decoder SHA).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from codec.context import store
from codec.context.batches import epoch_order, make_batch, windows
from codec.context.bits import frame_bits
from codec.context.envelope import FEATURES as ENVELOPE_FEATURES
from codec.context.envelope import EnvelopeConfig, EnvelopeModel, train_envelope
from codec.context.model import CONFIG_VERSION, PASSES, ContextConfig, ContextModel
from codec.context.noise import FEATURES as NOISE_FEATURES
from codec.context.noise import NoiseConfig, NoiseModel, train_noise
from codec.context.symbols import KBPS, SymbolSet, load_or_extract
from codec.scales import ScaleLayout
from codec.train.stopping import StopFlag
from codec.train.warmstart import widen_inputs

DEFAULT_CACHE = "runs/context-cache"


class Trainer:
    """Model, Adam and the step -> batch mapping of one run."""

    def __init__(self, symbols: SymbolSet, layout: ScaleLayout, config: ContextConfig,
                 steps: int, batch: int = 16, length: int = 32, lr: float = 3e-3,
                 seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.symbols, self.layout, self.steps = symbols, layout, steps
        self.batch, self.length, self.lr, self.seed = batch, length, lr, seed
        self.model = ContextModel(config)
        self.model.set_layout(layout)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.windows = windows(symbols, length)
        self.step = 0
        self._orders: dict[int, np.ndarray] = {}

    def _spans(self, step: int) -> np.ndarray:
        count = len(self.windows)
        picks = []
        for i in range(step * self.batch, (step + 1) * self.batch):
            epoch = i // count
            if epoch not in self._orders:
                self._orders = {epoch: epoch_order(count, epoch, self.seed)}
            picks.append(self._orders[epoch][i % count])
        return self.windows[np.array(picks)]

    def _lr(self, step: int) -> float:
        warm = min(1.0, (step + 1) / 100)
        return self.lr * warm * 0.5 * (1 + math.cos(math.pi * min(step / self.steps, 1.0)))

    def train_step(self) -> dict[str, float]:
        """One Adam step; returns bits per frame (coefficients, gain)."""
        self.model.train()
        batch = make_batch(self.symbols, self.layout, self._spans(self.step), self.length)
        coef, gain = frame_bits(self.model, batch)
        frames = batch.mask.sum().clamp_min(1)
        loss = (coef.sum() + gain.sum()) / frames
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr(self.step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        self.optimizer.step()
        self.step += 1
        return {"coef": float(coef.detach().sum() / frames),
                "gain": float(gain.detach().sum() / frames)}

    def save(self, directory: Path) -> None:
        store.save_checkpoint(directory, self.model, self.optimizer, {"step": self.step})

    def resume(self, directory: Path) -> bool:
        if not (directory / "state.json").is_file():
            return False
        self.step = int(store.load_checkpoint(directory, self.model, self.optimizer)["step"])
        return True


def init_from(model: ContextModel, path: Path) -> list[str]:
    """Load the frame model's weights found in `path` (a safetensors file or a checkpoint
    folder); side-model weights are skipped, layers the file lacks keep their fresh
    values. Returns the names of those fresh layers (printed)."""
    file = path / "model.safetensors" if path.is_dir() else path
    found = {k: v for k, v in load_file(str(file)).items()
             if not k.startswith(("noise.", "envelope."))}
    own = model.state_dict()
    grown = {k: widen_inputs(own[k], v) for k, v in found.items() if k in own}
    widened = [k for k, v in grown.items() if v is not None]
    for k in widened:
        found[k] = grown[k]
    missing, unexpected = model.load_state_dict(found, strict=False)
    if unexpected:
        raise ValueError(f"{file}: weights this network does not have: {unexpected}")
    print(f"initialized from {file}; fresh: {', '.join(missing) or 'none'}; more inputs "
          f"(zero weights): {', '.join(widened) or 'none'}", file=sys.stderr, flush=True)
    return list(missing)


def split_validation(symbols: SymbolSet, every: int) -> tuple[SymbolSet, SymbolSet | None]:
    """(training part, validation part): every `every`-th clip's chunks are held out
    (0: none held out)."""
    if every <= 0:
        return symbols, None
    val = symbols.chunk_clip % every == every - 1
    if not val.any() or val.all():
        return symbols, None
    return symbols.subset(np.flatnonzero(~val)), symbols.subset(np.flatnonzero(val))


@torch.no_grad()
def validate(model: ContextModel, symbols: SymbolSet, layout: ScaleLayout,
             length: int = 32, batch: int = 64) -> dict[str, float]:
    """Mean bits per frame (coefficients, gain) on a symbol set, in eval mode."""
    model.eval()
    spans = windows(symbols, length)
    coef = gain = frames = 0.0
    for i in range(0, len(spans), batch):
        b = make_batch(symbols, layout, spans[i:i + batch], length)
        c, g = frame_bits(model, b)
        coef, gain = coef + float(c.sum()), gain + float(g.sum())
        frames += float(b.mask.sum())
    model.train()
    return {"val_coef": coef / max(frames, 1.0), "val_gain": gain / max(frames, 1.0)}


def _log_validation(trainer: Trainer, val: SymbolSet | None, out: Path) -> None:
    if val is None:
        return
    got = {"step": trainer.step, **validate(trainer.model, val, trainer.layout, trainer.length)}
    print(f"step {trainer.step}: validation bits/frame coef {got['val_coef']:.2f} "
          f"gain {got['val_gain']:.3f}", file=sys.stderr, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "val.jsonl", "a") as f:
        f.write(json.dumps(got) + "\n")


def run(trainer: Trainer, out: Path, budget_s: float | None, log_every: int = 50,
        save_every: int = 500, val: SymbolSet | None = None) -> StopFlag:
    """Train until `trainer.steps`, a signal or the budget; checkpoint on the way out."""
    ckpt = out / "checkpoint"
    if trainer.resume(ckpt):
        print(f"resumed at step {trainer.step}", file=sys.stderr, flush=True)
    running: dict[str, float] = {}
    with StopFlag(time_budget_s=budget_s) as stop:
        while trainer.step < trainer.steps:
            t0 = time.monotonic()
            got = trainer.train_step()
            running = {k: 0.98 * running.get(k, v) + 0.02 * v for k, v in got.items()}
            if trainer.step % log_every == 0:
                print(f"step {trainer.step}: bits/frame coef {running['coef']:.2f} "
                      f"gain {running['gain']:.3f} ({time.monotonic() - t0:.2f} s/step)",
                      file=sys.stderr, flush=True)
            if trainer.step % save_every == 0:
                trainer.save(ckpt)
                _log_validation(trainer, val, out)
            if stop.should_stop(step_s=time.monotonic() - t0):
                break
    trainer.save(ckpt)
    if trainer.step % save_every:
        _log_validation(trainer, val, out)
    return stop


def side_model(kind: str, symbols: SymbolSet, layout: ScaleLayout, directory: Path,
               steps: int) -> NoiseModel | EnvelopeModel:
    """A noise-fill model (`kind` "noise": the corrections, "envelope": the envelope):
    trained once (a minute or two) after the frame model, kept in the checkpoint folder
    (file named by the network version) so a rerun reuses it."""
    path = directory / f"{kind}-v{CONFIG_VERSION}.safetensors"
    if kind == "noise":
        model, fit = NoiseModel(NoiseConfig.for_layout(layout, features=NOISE_FEATURES)), \
            train_noise
    else:
        model, fit = EnvelopeModel(EnvelopeConfig.for_layout(
            layout, features=ENVELOPE_FEATURES)), train_envelope
    if path.is_file():
        model.load_state_dict(load_file(str(path)))
        return model.eval()
    print(f"training the {kind} model ({steps} steps)", file=sys.stderr, flush=True)
    model = fit(symbols, layout, steps)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), str(path))
    return model


def generation_step(symbols: SymbolSet) -> int:
    """The median chunk step of the training symbols: a 6 kbps-typical step."""
    return int(np.median(symbols.chunk_step)) if symbols.num_chunks else 128


def export_meta(codec: Any, symbols: SymbolSet, trainer: Trainer) -> dict[str, Any]:
    return {"decoder_sha256": codec.model.decoder_sha256.hex(), "model_name": codec.model_name,
            "kbps": KBPS, "generation_step": generation_step(symbols),
            "train_steps": trainer.step, "train_seconds": float(symbols.clip_seconds.sum()),
            "split": "train"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m codec.context.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="corpus root (manifest layout)")
    p.add_argument("--out", type=Path, default=Path("runs/context"))
    p.add_argument("--cache", default=DEFAULT_CACHE, help="folder of the symbol npz cache")
    p.add_argument("--minutes-per-kind", type=float, default=50.0)
    p.add_argument("--steps", type=int, default=2400)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--length", type=int, default=32)
    p.add_argument("--hidden", type=int, default=48)
    p.add_argument("--passes", type=int, default=2, choices=PASSES,
                   help="2: odd bins also condition on the frame's even bins; 4: coarse to "
                        "fine (bins 0, 2, 1, 3 mod 4); 1: every bin from the past only")
    p.add_argument("--reach", type=int, default=0, choices=(0, 1),
                   help="1: the frame's decoded bins also reach further along frequency and "
                        "as a frame summary (version 3)")
    p.add_argument("--signs", type=int, default=0, choices=(0, 1, 2),
                   help="1: past signs and a steady tone's recurrence as features; 2: + a "
                        "two-frame fit of the recurrence and a direct sign term (version 3)")
    p.add_argument("--init", type=Path, default=None,
                   help="start from these weights (a .safetensors file, e.g. a shipped "
                        "context model, or a checkpoint folder); layers they lack start fresh")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--val-every", type=int, default=10,
                   help="hold out every N-th training clip for validation (0: none)")
    p.add_argument("--noise-steps", type=int, default=3000,
                   help="steps of each noise-fill model (corrections, envelope), trained "
                        "after the frame model (0: none)")
    p.add_argument("--budget-s", type=float, default=None, help="wall-clock budget")
    p.add_argument("--export", action="store_true",
                   help="write codec/pretrained/aec-base.context.{safetensors,json}")
    p.add_argument("--export-dir", type=Path, default=store.PRETRAINED)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    from codec.api import Codec
    codec = Codec.load(device="cpu")
    layout = codec.model.config.layout()
    symbols = load_or_extract(args.data, args.cache, "train", args.minutes_per_kind, codec)
    config = ContextConfig.for_layout(layout, hidden=args.hidden, passes=args.passes,
                                      reach=args.reach, signs=args.signs)
    train_part, val = split_validation(symbols, args.val_every)
    trainer = Trainer(train_part, layout, config, args.steps, args.batch, args.length, args.lr)
    if args.init is not None:          # a resumed run then loads its checkpoint over it
        init_from(trainer.model, args.init)
    stop = run(trainer, args.out, args.budget_s, val=val)
    if stop.reason:
        print(f"stopped: {stop.reason} at step {trainer.step}", file=sys.stderr)
    elif args.noise_steps:
        ckpt = args.out / "checkpoint"
        trainer.model.noise = side_model("noise", symbols, layout, ckpt, args.noise_steps)
        if layout.envelope_regions:
            trainer.model.envelope = side_model("envelope", symbols, layout, ckpt,
                                                args.noise_steps)
    if args.export:
        meta = export_meta(codec, symbols, trainer)
        if args.init is not None:
            meta["init"] = str(args.init)      # the steps before this run are not counted
        paths = store.export(trainer.model, meta, args.export_dir)
        print("wrote " + ", ".join(map(str, paths)), file=sys.stderr)
    return stop.exit_code


if __name__ == "__main__":
    sys.exit(main())
