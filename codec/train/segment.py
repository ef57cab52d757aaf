"""One accelerator segment: resume, train for a wall-clock budget, ship the checkpoint back in parts.

    python -m codec.train.segment run --subset train-subset --init-from checkpoints/aec-base \
        --budget 420 --out "$OUT"           # on the accelerator (scripts/train_segment.sh)
    python -m codec.train.segment merge FILES_DIR runs/segment    # back here

`run` needs torch and numpy only (no soundfile, torchaudio, tqdm, safetensors
or constriction; a test runs it with those imports blocked). The whole
command, start-up and held-out checks included, keeps to `--budget` seconds:
a `StopFlag` started first ends training early enough to save. SIGTERM or
SIGINT end it the same way. It writes into OUT, within the transfer limits
(at most 8 files of at most 16 MiB):

- ``checkpoint.tar.NN``: the resumed run's checkpoint as a tar, cut into
  16 MiB parts (compacted to bf16 first if it would need more than 6 parts);
- ``segment.json``: steps before/after, wall time, audio seconds per second,
  held-out loss before/after, device, and the SHA-256 of every part;
- ``log.jsonl``: the training log of the segment.

`merge` checks the hashes, joins the parts and unpacks the checkpoint into
DEST/checkpoint (atomically), with the log and summary beside it; continue
with `python -m codec.train --resume --out DEST ...` or compact it into
checkpoints/ (`python -m codec.train.checkpoint`, see README's policy).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch

from codec.train.checkpoint import compact_copy, load_checkpoint
from codec.train.config import TrainConfig
from codec.train.loop import CHECKPOINT_DIR, LOG_FILE, resolve_device, train
from codec.train.losses import DistortionLoss
from codec.train.network import TrainableCodec
from codec.train.packed import PackedSubset
from codec.train.stopping import StopFlag

PART_BYTES = 16 * 2**20
MAX_PARTS = 6                 # + segment.json + log.jsonl = 8 files
SUMMARY = "segment.json"
PART_PREFIX = "checkpoint.tar."


def heldout_loss(run_dir: Path, subset: PackedSubset, device: str, bf16: bool) -> dict[str, object]:
    """Distortion and coded kbps per rate point on the packed held-out crops (fixed noise)."""
    cfg = TrainConfig.from_dict(json.loads((run_dir / CHECKPOINT_DIR / "state.json")
                                           .read_text())["train_config"])
    model = TrainableCodec(cfg.model).to(device)
    load_checkpoint(run_dir / CHECKPOINT_DIR, model, None)
    loss_fn = DistortionLoss(cfg.model.model_rate, cfg.fft_sizes, cfg.stft_weight,
                             cfg.mel_weight, cfg.wave_weight).to(device)
    num_rates = len(cfg.model.rate_points)
    x = torch.from_numpy(subset.valid.astype("float32") / 32768.0).unsqueeze(1).to(device)
    rates = torch.arange(x.shape[0], device=device) % num_rates
    gen = torch.Generator(device=device).manual_seed(1234)
    with torch.no_grad():
        out = model(x, rates, gen, bf16)
        terms = loss_fn.forward_groups(x, out.x_hat, [rates == r for r in range(num_rates)])
    seconds = x.shape[-1] / cfg.model.model_rate
    kbps = [float(out.coded_bits[rates == r].mean()) / seconds / 1000 for r in range(num_rates)]
    return {"distortion": [round(float(t.total), 5) for t in terms],
            "snr_db": [round(-10 * float(t.wave), 3) for t in terms],
            "coded_kbps": [round(k, 3) for k in kbps], "crops": int(x.shape[0])}


def run_segment(args: argparse.Namespace, stop: StopFlag) -> dict[str, object]:
    """Seed a run from --init-from, train until the budget ends, measure before and after."""
    device = resolve_device(args.device)
    run_dir = Path(tempfile.mkdtemp(prefix="aec-segment-")) if args.run_dir is None else args.run_dir
    if not (run_dir / CHECKPOINT_DIR / "state.json").exists():
        shutil.copytree(args.init_from, run_dir / CHECKPOINT_DIR, dirs_exist_ok=True)
    state_file = run_dir / CHECKPOINT_DIR / "state.json"
    cfg = TrainConfig.from_dict(json.loads(state_file.read_text())["train_config"])
    cfg = dataclasses.replace(cfg, bf16=not args.no_bf16, checkpoint_every_s=1e9, steps=10**12)
    subset = PackedSubset.load(args.subset)
    start_step = json.loads(state_file.read_text())["state"]["step"]
    before = heldout_loss(run_dir, subset, device, cfg.bf16)
    t0 = time.monotonic()
    state = train(cfg, [args.subset], run_dir, resume=True, device=device, progress=False,
                  stop=stop)
    train_s = time.monotonic() - t0
    after = heldout_loss(run_dir, subset, device, cfg.bf16)
    steps = state.step - start_step
    audio = steps * cfg.batch_size * cfg.crop_seconds
    return {"run_dir": str(run_dir), "device": _device_name(device), "bf16": cfg.bf16,
            "start_step": start_step, "end_step": state.step, "steps": steps,
            "train_wall_s": round(train_s, 1), "audio_seconds": audio,
            "audio_x_realtime": round(audio / max(train_s, 1e-9), 1),
            "stopped": stop.reason, "heldout_before": before, "heldout_after": after}


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return f"cuda ({torch.cuda.get_device_name()})"
    return device


def write_parts(checkpoint: Path, out: Path) -> list[dict[str, object]]:
    """Tar the checkpoint (compacting it if too big) and cut it into PART_BYTES pieces in out."""
    data = _tar_bytes(checkpoint)
    for level in ("bf16", "weights"):
        if len(data) <= MAX_PARTS * PART_BYTES:
            break
        compact_copy(checkpoint, checkpoint.with_name("compact"), level)
        data = _tar_bytes(checkpoint.with_name("compact"))
    if len(data) > MAX_PARTS * PART_BYTES:
        raise ValueError(f"checkpoint of {len(data)} bytes does not fit {MAX_PARTS} parts")
    parts = []
    for i in range(0, max(len(data), 1), PART_BYTES):
        name = f"{PART_PREFIX}{i // PART_BYTES:02d}"
        chunk = data[i:i + PART_BYTES]
        (out / name).write_bytes(chunk)
        parts.append({"name": name, "bytes": len(chunk),
                      "sha256": hashlib.sha256(chunk).hexdigest()})
    return parts


def _tar_bytes(folder: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path in sorted(folder.iterdir()):
            tar.add(path, arcname=path.name)
    return buf.getvalue()


def merge(files: Path, dest: Path) -> dict[str, object]:
    """Check and join the parts in `files` into dest/checkpoint; copy the log and summary."""
    summary = json.loads((files / SUMMARY).read_text())
    blob = bytearray()
    for part in summary["parts"]:
        chunk = (files / part["name"]).read_bytes()
        if hashlib.sha256(chunk).hexdigest() != part["sha256"]:
            raise ValueError(f"{part['name']}: SHA-256 mismatch (damaged or incomplete transfer)")
        blob += chunk
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / (CHECKPOINT_DIR + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(bytes(blob)), mode="r") as tar:
        members = tar.getmembers()
        if any(not m.isfile() or "/" in m.name or m.name.startswith(".") for m in members):
            raise ValueError("checkpoint archive holds something other than plain files")
        tar.extractall(tmp, members=members)
    target = dest / CHECKPOINT_DIR
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    for name in (SUMMARY, LOG_FILE):
        if (files / name).exists():
            shutil.copy2(files / name, dest / f"segment-{name}")
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m codec.train.segment",
                                description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train for a budget and write parts into --out")
    r.add_argument("--subset", type=Path, required=True, help="packed folder (codec.train.pack)")
    r.add_argument("--init-from", type=Path, required=True, help="checkpoint folder to resume")
    r.add_argument("--budget", type=float, default=420.0, help="wall seconds for everything")
    r.add_argument("--out", type=Path, required=True, help="folder for the parts ($OUT)")
    r.add_argument("--device", default="auto")
    r.add_argument("--no-bf16", action="store_true", help="train in fp32")
    r.add_argument("--margin", type=float, default=25.0,
                   help="seconds kept for saving, the held-out check and packing")
    r.add_argument("--run-dir", type=Path, help="run folder (default: a temporary one)")
    m = sub.add_parser("merge", help="join the parts of a segment into DEST/checkpoint")
    m.add_argument("files", type=Path)
    m.add_argument("dest", type=Path)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "merge":
        summary = merge(args.files, args.dest)
        print(f"merged step {summary['end_step']} into {args.dest / CHECKPOINT_DIR}",
              file=sys.stderr)
        return 0
    with StopFlag(args.budget, save_margin_s=args.margin) as stop:
        summary = run_segment(args, stop)
    args.out.mkdir(parents=True, exist_ok=True)
    run_dir = Path(str(summary["run_dir"]))
    summary["parts"] = write_parts(run_dir / CHECKPOINT_DIR, args.out)
    if (run_dir / LOG_FILE).exists():
        shutil.copy2(run_dir / LOG_FILE, args.out / LOG_FILE)
    (args.out / SUMMARY).write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "parts"}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
