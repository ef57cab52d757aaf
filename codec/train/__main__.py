"""`python -m codec.train --data DIR... --out RUN_DIR [--config JSON] [--resume]`.

SIGINT, SIGTERM and the end of `--time-budget` each write a resumable
checkpoint before exiting. Exit status: 0 when the steps or the budget ran
out, 128 + signal number (130, 143) after a signal, 11 when CUDA was asked
for and is missing.

Also reachable as `aec train` through `main(argv)`. Multi-process:
`torchrun --nproc_per_node N -m codec.train ...` (gloo on CPU, nccl on CUDA).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

from codec.train.config import TrainConfig
from codec.train.loop import CHECKPOINT_DIR, train
from codec.train.stopping import StopFlag


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m codec.train", description=__doc__.split("\n")[0])
    p.add_argument("--data", nargs="+", required=True, type=Path,
                   help="corpus folders (CORPUS/train/KIND/PACKAGE/*.wav at the model rate)")
    p.add_argument("--out", required=True, type=Path, help="run folder (config, log, checkpoint)")
    p.add_argument("--config", type=Path, help="JSON with TrainConfig fields to override")
    p.add_argument("--resume", action="store_true",
                   help="continue from RUN_DIR/checkpoint (and its saved config)")
    p.add_argument("--init-from", type=Path,
                   help="start from this checkpoint folder (e.g. checkpoints/aec-base) "
                        "and continue its step count, optimizer and rate control")
    p.add_argument("--device", default="auto",
                   help="auto, cpu or cuda (default: auto = cuda when available)")
    p.add_argument("--steps", type=int, help="stop after this many total steps")
    p.add_argument("--time-budget", type=float, metavar="SECONDS",
                   help="stop (with a checkpoint) before this much wall time has passed")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast on the conv stacks")
    p.add_argument("--threads", type=int, help="torch intra-op threads")
    p.add_argument("--no-progress", action="store_true")
    return p


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """Saved run config on --resume, else defaults + --config; then CLI overrides."""
    saved = args.out / CHECKPOINT_DIR / "state.json"
    if args.resume and saved.exists():
        cfg = TrainConfig.from_dict(json.loads(saved.read_text())["train_config"])
    elif args.init_from is not None:
        cfg = TrainConfig.from_dict(json.loads((args.init_from / "state.json").read_text())
                                    ["train_config"])
    else:
        cfg = TrainConfig()
    if args.config is not None:
        cfg = dataclasses.replace(cfg, **_overrides(cfg, json.loads(args.config.read_text())))
    overrides = {"steps": args.steps, "batch_size": args.batch_size,
                 "bf16": True if args.bf16 else None}
    return dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def _overrides(cfg: TrainConfig, data: dict[str, object]) -> dict[str, object]:
    merged = TrainConfig.from_dict({**json.loads(cfg.to_json()), **data})
    return {k: getattr(merged, k) for k in data}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but CUDA is not available", file=sys.stderr)
        return 11
    cfg = resolve_config(args)
    if args.init_from is not None and not (args.out / CHECKPOINT_DIR / "state.json").exists():
        _seed_run(args.init_from, args.out)
    with StopFlag(args.time_budget) as stop:
        state = train(cfg, args.data, args.out, resume=args.resume or args.init_from is not None,
                      device=args.device, progress=not args.no_progress, stop=stop)
    why = f" ({stop.reason})" if stop.reason else ""
    print(f"stopped at step {state.step}{why}; checkpoint in {args.out / CHECKPOINT_DIR}",
          file=sys.stderr)
    return stop.exit_code


def _seed_run(source: Path, out_dir: Path) -> None:
    """Copy a (compact) checkpoint into a new run folder so training continues from it."""
    import shutil

    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, out_dir / CHECKPOINT_DIR, dirs_exist_ok=True)


if __name__ == "__main__":
    sys.exit(main())
