"""An accelerator segment for the shipped transform coder: train its post-filter there.

    python -m codec.train.pf_segment run --subset train-subset \\
        --init codec/pretrained/aec-base --layers 3 --budget 420 --out "$OUT"   # there
    python -m codec.train.pf_segment merge OUT_FILES runs/pf-segment           # back here

`run` needs torch and numpy only (the weights are read with
`codec.train.tensorfile`, the crops come from a subset packed by
`python -m codec.train.pack`). It resumes from `--resume STATE` when given,
else starts a fresh identity post-filter of `--layers` x `--hidden` on top of
the model's frozen tables and noise levels, trains for the wall-clock budget
(a `StopFlag`; SIGINT/SIGTERM end it the same way) and writes into OUT:
``postfilter.pt`` (post-filter weights and Adam moments, a few MiB) and
``segment.json`` (steps, the training loop's CPU seconds, held-out loss before and
after, device). `--steps N` also stops at step N: runs that differ only in a
setting that does not change a step's cost (the learning rate) are then
compared at equal CPU work, whatever else the machine was doing.
`merge` turns that state into a loadable model beside the init model's tables
(`OUT/aec-base.*`); export it to codec/pretrained/ only if the held-out bench
says it is better (README, "Training").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from codec.train.packed import PackedSampler, PackedSubset
from codec.train.stopping import StopFlag
from codec.train.tensorfile import load_tensors
from codec.weights import CodecModel, ModelConfig, build_modules, model_geometry, model_paths

HELD_OUT_STEP = 140
"""Step index of the held-out check (about 6 kbps on speech)."""
STATE = "postfilter.pt"


def load_torch_only(init: Path, layers: int | None, hidden: int) -> CodecModel:
    """The model of `init` without safetensors or constriction: a fresh post-filter (of
    `layers` x `hidden` when given), the frozen noise levels, no entropy tables."""
    config_path, _, decoder_path = model_paths(init)
    config = ModelConfig.from_json(config_path.read_text())
    if layers is not None:
        config = dataclasses.replace(config, postfilter_layers=layers, postfilter_hidden=hidden)
    encoder, decoder, quantizer = build_modules(config)
    arrays = load_tensors(decoder_path)
    quantizer.noise_rms.copy_(arrays["quantizer.noise_rms"])
    return CodecModel(config=config, encoder=encoder.eval(), decoder=decoder,
                      quantizer=quantizer.eval(), tables=None, decoder_sha256=b"",
                      geometry=model_geometry(config, encoder, decoder))


def held_out_loss(trainer: Any, subset: PackedSubset) -> float | None:
    """Mean distortion of the packed held-out crops at one fixed step (None: no crops)."""
    from codec.train.postfilter import decoded, latent_at

    model, losses = trainer.model, []
    with torch.no_grad():
        for i in range(subset.valid.shape[0]):
            x = torch.from_numpy(subset.valid[i].astype(np.float32) / 32768.0)[None, None]
            y = model.encoder(torch.nn.functional.pad(x, (0, model.geometry.hop_length)))
            latent = latent_at(model, y, HELD_OUT_STEP, seed=i, device=trainer.device)
            x = x.to(trainer.device)
            losses.append(float(trainer.loss(x, decoded(model, latent, x.shape[-1])).total))
    return float(np.mean(losses)) if losses else None


def run(args: argparse.Namespace) -> dict[str, object]:
    from codec.train.postfilter import Trainer

    started = time.monotonic()
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else "cpu"
    state = torch.load(args.resume, weights_only=True) if args.resume else None
    layers, hidden = (state["layers"], state["hidden"]) if state else (args.layers, args.hidden)
    model = load_torch_only(args.init, layers, hidden)
    trainer = Trainer(model, args.out, args.lr, device)
    if state:
        model.decoder.postfilter.load_state_dict(state["postfilter"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.step, trainer.audio_seconds = state["step"], state["audio_seconds"]
    subset = PackedSubset.load(args.subset)
    crop = int(round(args.crop_seconds * subset.sample_rate / 320)) * 320
    sampler = PackedSampler(subset, crop, args.seed, 0,
                            {"speech": 0.5, "music": 0.3, "sfx": 0.2}, -50.0)
    before, first_step = held_out_loss(trainer, subset), trainer.step
    cpu_started = time.process_time()
    model.decoder.train()
    reserve = 10.0 + 0.05 * subset.valid.shape[0]      # the held-out check and the save
    budget = max(args.budget - (time.monotonic() - started) - reserve, 1.0)
    with StopFlag(time_budget_s=budget, save_margin_s=1.0) as stop:
        while True:
            t0 = time.monotonic()
            x = sampler.batch(trainer.step, args.batch)
            trainer.train_step(x, np.random.default_rng([args.seed, trainer.step]))
            if args.steps is not None and trainer.step >= args.steps:
                stop.request(f"step {args.steps}")
            if stop.should_stop(step_s=time.monotonic() - t0):
                break
    train_cpu_s = time.process_time() - cpu_started
    model.decoder.eval()
    after = held_out_loss(trainer, subset)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save({"postfilter": model.decoder.postfilter.state_dict(),
                "optimizer": trainer.optimizer.state_dict(), "step": trainer.step,
                "audio_seconds": trainer.audio_seconds,
                "layers": model.config.postfilter_layers,
                "hidden": model.config.postfilter_hidden}, args.out / STATE)
    summary = {"device": device, "steps": trainer.step - first_step, "step": trainer.step,
               "wall_s": round(time.monotonic() - started, 1),
               "train_cpu_s": round(train_cpu_s, 3),
               "held_out_crops": int(subset.valid.shape[0]),
               "held_out_loss_before": before, "held_out_loss_after": after,
               "stopped_by": stop.reason}
    (args.out / "segment.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def merge(state_path: Path, init: Path, dest: Path) -> bytes:
    """A loadable model: the init model's tables and levels with the trained post-filter."""
    from codec.weights import load_model, save_model

    state = torch.load(state_path, weights_only=True)
    base = load_model(init)
    config = dataclasses.replace(base.config, postfilter_layers=state["layers"],
                                 postfilter_hidden=state["hidden"])
    _, decoder, _ = build_modules(config)
    decoder.postfilter.load_state_dict(state["postfilter"])
    return save_model(dest / config.name, config, base.encoder, decoder, base.quantizer,
                      base.tables)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m codec.train.pf_segment",
                                     description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train for a budget (torch + numpy only)")
    r.add_argument("--subset", type=Path, required=True)
    r.add_argument("--init", type=Path, required=True, help="model path stem or folder")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--budget", type=float, default=420.0, help="wall seconds in all")
    r.add_argument("--steps", type=int, help="also stop at this total step count")
    r.add_argument("--layers", type=int, help="fresh post-filter depth (default: the model's)")
    r.add_argument("--hidden", type=int, default=384)
    r.add_argument("--resume", type=Path, help="a postfilter.pt to continue from")
    r.add_argument("--batch", type=int, default=16)
    r.add_argument("--crop-seconds", type=float, default=1.0)
    r.add_argument("--lr", type=float, default=5e-4)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--device", default="auto")
    m = sub.add_parser("merge", help="state + init model -> a loadable model")
    m.add_argument("state", type=Path)
    m.add_argument("dest", type=Path)
    m.add_argument("--init", type=Path, help="model path stem (default: the shipped one)")
    args = parser.parse_args(argv)
    if args.command == "run":
        print(json.dumps(run(args)))
    else:
        print(merge(args.state, args.init, args.dest).hex())
    return 0


if __name__ == "__main__":
    sys.exit(main())
