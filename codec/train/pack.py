"""`python -m codec.train.pack CORPUS OUT`: pack a small training subset for an accelerator segment.

Picks excerpts (default 1.5 s, so 1 s crops still vary in offset) from the
corpus train split, spread over every package of each kind in proportion to
the training config's kind weights (speech, music, sound effects), skipping
near-silent ones, plus 1 s held-out crops (valid split) for a loss before and
after. Everything is pre-decoded int16 in .npy files (`codec.train.packed`),
at most `--max-mib` (default 25 MiB) in all. Deterministic for a corpus and
seed. OUT should be an ignored folder (the repo ignores ``/train-subset/``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import wave
from collections import defaultdict
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from codec.train.data import audio_info, read_int16
from codec.train.packed import MANIFEST
from codec.train.split import KINDS, list_clips

KIND_WEIGHTS = (0.4, 0.35, 0.25)       # TrainConfig.kind_weights
SILENCE_RMS = 10 ** (-50 / 20) * 32768
RESERVE_BYTES = 256 * 1024              # manifest + .npy headers


def pick_clips(clips: list[Path], count: int, rng: np.random.Generator) -> list[Path]:
    """`count` clips spread over the packages (round robin), each package's clips shuffled."""
    by_package: dict[str, list[Path]] = defaultdict(list)
    for path in clips:
        by_package[path.parent.name].append(path)
    queues = [list(rng.permutation(np.array(by_package[p], dtype=object)))
              for p in sorted(by_package)]
    picked: list[Path] = []
    while len(picked) < count and any(queues):
        for queue in queues:
            if queue and len(picked) < count:
                picked.append(Path(queue.pop()))
    return picked


def excerpt(audio: NDArray[np.int16], length: int, rng: np.random.Generator,
            tries: int = 4) -> NDArray[np.int16] | None:
    """A random `length`-sample excerpt that is not near-silent (zero-padded if short)."""
    for _ in range(tries):
        out = np.zeros(length, np.int16)
        if len(audio) >= length:
            start = int(rng.integers(0, len(audio) - length + 1))
            out[:] = audio[start:start + length]
        else:
            out[:len(audio)] = audio
        if np.sqrt(np.mean(out.astype(np.float64) ** 2)) >= SILENCE_RMS:
            return out
    return None


def collect(clips: list[Path], count: int, length: int, rng: np.random.Generator,
            sample_rate: int) -> tuple[list[NDArray[np.int16]], list[str]]:
    """Up to `count` excerpts from distinct clips; clips at another rate are refused."""
    rows, sources = [], []
    for path in pick_clips(clips, 2 * count, rng):
        rate, _ = audio_info(path)
        if rate != sample_rate:
            raise ValueError(f"{path}: {rate} Hz, packing needs {sample_rate} Hz")
        row = excerpt(read_int16(path), length, rng)
        if row is not None:
            rows.append(row)
            sources.append(f"{path.parent.parent.name}/{path.parent.name}/{path.name}")
        if len(rows) == count:
            break
    return rows, sources


def pack(corpus: Path, out: Path, max_mib: float = 25.0, excerpt_seconds: float = 1.5,
         valid_crops: int = 24, sample_rate: int = 24000, seed: int = 0) -> dict[str, object]:
    """Write the packed folder `out` (replaced atomically); returns its manifest."""
    rng = np.random.default_rng(seed)
    length, crop = int(round(excerpt_seconds * sample_rate)), sample_rate
    budget = int(max_mib * 2**20) - RESERVE_BYTES - valid_crops * crop * 2
    total = max(0, budget // (2 * length))
    train, kinds, sources = [], [], []
    for k, (kind, weight) in enumerate(zip(KINDS, KIND_WEIGHTS, strict=True)):
        rows, src = collect(list_clips(corpus, "train", kind), int(total * weight), length, rng,
                            sample_rate)
        train += rows
        kinds += [k] * len(rows)
        sources += src
    valid: list[NDArray[np.int16]] = []
    for kind in KINDS:
        valid += collect(list_clips(corpus, "valid", kind), valid_crops // len(KINDS), crop, rng,
                         sample_rate)[0]
    meta = {"sample_rate": sample_rate, "kinds": list(KINDS), "excerpt_samples": length,
            "train_excerpts": len(train), "valid_crops": len(valid), "seed": seed,
            "per_kind": {kind: kinds.count(i) for i, kind in enumerate(KINDS)},
            "sources": sources}
    _write(out, meta, train, kinds, valid, length, crop)
    return meta


def _write(out: Path, meta: dict[str, object], train: list[NDArray[np.int16]], kinds: list[int],
           valid: list[NDArray[np.int16]], length: int, crop: int) -> None:
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    np.save(tmp / "train.npy", np.stack(train) if train else np.zeros((0, length), np.int16))
    np.save(tmp / "train_kinds.npy", np.array(kinds, np.int8))
    np.save(tmp / "valid.npy", np.stack(valid) if valid else np.zeros((0, crop), np.int16))
    (tmp / MANIFEST).write_text(json.dumps(meta, indent=1) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


def write_wav(path: Path, audio: NDArray[np.int16], sample_rate: int) -> None:
    """A mono 16-bit PCM WAV with the stdlib (test and benchmark fixtures)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(audio.astype("<i2").tobytes())


def folder_bytes(folder: Path) -> int:
    """Total size of the files in a folder."""
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m codec.train.pack", description=__doc__.split("\n")[0])
    p.add_argument("corpus", type=Path, help="corpus folder (CORPUS/train/KIND/PACKAGE/*.wav)")
    p.add_argument("out", type=Path, help="packed folder to write (e.g. train-subset)")
    p.add_argument("--max-mib", type=float, default=25.0)
    p.add_argument("--excerpt-seconds", type=float, default=1.5)
    p.add_argument("--valid-crops", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    meta = pack(args.corpus, args.out, args.max_mib, args.excerpt_seconds, args.valid_crops,
                seed=args.seed)
    size = folder_bytes(args.out) / 2**20
    print(f"packed {meta['train_excerpts']} excerpts {meta['per_kind']} + "
          f"{meta['valid_crops']} held-out crops: {size:.1f} MiB in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
