"""Peak memory of encoding and decoding a long file: it must not grow with duration.

    .venv/bin/python -m bench.memory                 # one hour, shipped weights
    .venv/bin/python -m bench.memory --minutes 5     # quicker look
    .venv/bin/python -m bench.memory --untrained     # default architecture, random weights

Builds a long 24 kHz mono WAV of real audio (the bundled speech sample tiled,
written block by block) in a temporary folder, then runs `Codec.encode_file` and
`Codec.decode_file` each in a fresh child process and reads the child's peak
resident set size (`ru_maxrss`). A short baseline file (the sample itself) is
measured the same way, so the growth with duration is visible. Exit status 1 if
a peak exceeds --limit-mb (default 1536 = 1.5 GB).

`--untrained` saves an untrained model of the default architecture (the same
layer sizes, so the same activation memory) when no weights are shipped yet.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "codec" / "data" / "sample.flac"
DEFAULT_LIMIT_MB = 1536.0


@dataclass(frozen=True)
class Measurement:
    """One child run: what it did, how long, and its peak resident memory."""

    step: str              # "encode" or "decode"
    duration_s: float      # audio seconds
    wall_s: float
    peak_rss_mb: float
    output_bytes: int

    @property
    def realtime(self) -> float:
        return self.duration_s / self.wall_s if self.wall_s > 0 else float("inf")


def write_long_input(path: Path, minutes: float, source: Path = SAMPLE) -> float:
    """Tile `source` to `minutes` of audio, writing block by block; returns seconds."""
    audio, rate = soundfile.read(str(source), dtype="int16")
    total = int(minutes * 60 * rate)
    with soundfile.SoundFile(str(path), "w", samplerate=rate, channels=1,
                             subtype="PCM_16") as out:
        written = 0
        while written < total:
            piece = audio[: total - written]
            out.write(piece)
            written += len(piece)
    return total / rate


def save_untrained(folder: Path) -> str:
    """An untrained default-architecture model on disk (for memory only, not quality)."""
    import torch

    from codec.entropy import CdfTable
    from codec.weights import ModelConfig, build_modules, save_model

    torch.manual_seed(0)
    config = ModelConfig()
    encoder, decoder, quantizer = build_modules(config)
    values = np.arange(-64, 65)
    pmf = np.exp(-np.abs(values) / 4.0)
    tables = CdfTable.from_pmfs([pmf / pmf.sum()] * config.num_tables,
                                [-64] * config.num_tables, config.cdf_precision)
    stem = folder / "untrained"
    save_model(stem, config, encoder, decoder, quantizer, tables)
    return str(stem)


def run_child(step: str, src: Path, dst: Path, weights: str | None) -> Measurement:
    """Run one step in a fresh interpreter so its peak RSS is its own."""
    command = [sys.executable, "-m", "bench.memory", "--child", step, str(src), str(dst)]
    if weights:
        command += ["--weights", weights]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:        # the child's own error (one line for aec's), its code
        sys.stderr.write(result.stderr)
        raise SystemExit(result.returncode)
    return Measurement(**json.loads(result.stdout.strip().splitlines()[-1]))


def child(step: str, src: str, dst: str, weights: str | None) -> None:
    """The measured process: load, encode or decode one file, print a JSON line."""
    from codec.api import Codec

    codec = Codec.load(weights, device="cpu", need_encoder=step == "encode")
    started = time.perf_counter()
    if step == "encode":
        report = codec.encode_file(src, dst, overwrite=True)
        duration = report.duration_s
    else:
        decoded = codec.decode_file(src, dst, overwrite=True)
        duration = decoded.duration_s
    wall = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # Linux: KiB
    print(json.dumps(asdict(Measurement(step, duration, wall, peak_mb, Path(dst).stat().st_size))))


def measure(src: Path, folder: Path, weights: str | None) -> list[Measurement]:
    encoded, decoded = folder / (src.stem + ".aec"), folder / (src.stem + ".out.wav")
    return [run_child("encode", src, encoded, weights),
            run_child("decode", encoded, decoded, weights)]


def report(rows: list[Measurement], limit_mb: float) -> bool:
    """Print a table; True if every peak is under the limit."""
    print(f"{'step':<7} {'audio':>10} {'wall':>9} {'x rt':>7} {'peak RSS':>10} {'output':>12}")
    for m in rows:
        print(f"{m.step:<7} {m.duration_s:>9.1f}s {m.wall_s:>8.1f}s {m.realtime:>6.1f}x "
              f"{m.peak_rss_mb:>8.0f}MB {m.output_bytes:>12,d}")
    worst = max(m.peak_rss_mb for m in rows)
    print(f"worst peak RSS {worst:.0f} MB (limit {limit_mb:.0f} MB): "
          f"{'OK' if worst <= limit_mb else 'OVER'}")
    return worst <= limit_mb


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="long input length")
    parser.add_argument("--weights", default=None, help="model (default: shipped)")
    parser.add_argument("--untrained", action="store_true",
                        help="use an untrained default-architecture model")
    parser.add_argument("--limit-mb", type=float, default=DEFAULT_LIMIT_MB)
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    parser.add_argument("--child", nargs=3, metavar=("STEP", "SRC", "DST"),
                        help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.child:
        child(*args.child, args.weights)
        return 0
    with tempfile.TemporaryDirectory(prefix="aec-memory-") as tmp:
        folder = Path(tmp)
        weights = save_untrained(folder) if args.untrained else args.weights
        long_input = folder / "long.wav"
        seconds = write_long_input(long_input, args.minutes)
        label = "untrained default architecture" if args.untrained else weights or "shipped"
        print(f"input: {seconds / 60:.1f} min of tiled speech, "
              f"{long_input.stat().st_size:,d} bytes; weights: {label}")
        rows = measure(SAMPLE, folder, weights) + measure(long_input, folder, weights)
    ok = report(rows, args.limit_mb)
    if args.json:
        args.json.write_text(json.dumps([asdict(m) for m in rows], indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    from bench.entry import run

    raise SystemExit(run(main, "bench.memory"))
