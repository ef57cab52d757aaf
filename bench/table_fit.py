"""Does the shipped model learn more from more training audio? Held-out bits per fit size.

    python -m bench.table_fit --corpus /data/corpus [--sizes 40x15,120x20,360x30] \\
        [--valid-per-kind 25] [--steps 112,136,160] [--out bench/results]

The shipped model is trained by counting (`codec.train.fit_tables`): its
"held-out loss" is the ideal code length of held-out symbols under the fitted
tables. For each fit size (clips per kind x seconds per clip, the same seeded
selection the shipped fit uses, `40x15` being the shipped one) this counts the
training clips, builds the integer tables exactly as the export does, and
reports the CPU seconds the counting took and the held-out bits per second of
audio (coefficients and frame gains, escapes included, `entropy.block_bits`)
at a few quantizer steps (indices; on the default held-out clips 112, 136 and
160 cost about 20, 3.6 and 0.25 kbps in gains and coefficients, to which the
coder adds its noise-fill side information). Held-out clips: `--valid-per-kind` seeded valid-split clips
per kind, at most 15 s each. Only the first pass (symbol tables) is fitted:
the noise-fill side information is not part of this figure.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from codec.chunkcoder import gain_residuals
from codec.entropy import CdfTable, block_bits
from codec.errors import InputError
from codec.model.transform import frame_gains, quantize
from codec.scales import ScaleLayout, coefficient_tables
from codec.train import fit_tables as fit

RATE = 24000
MAX_SECONDS = fit.CLIP_SECONDS


def held_out_clips(corpus: Path, per_kind: int, seed: int = 1) -> list[NDArray[np.float32]]:
    """A seeded selection of valid-split clips, `per_kind` of each kind."""
    clips = fit.read_clips(fit.sampled_clips(corpus, "valid", per_kind, seed), MAX_SECONDS,
                           RATE)
    if not clips:
        raise InputError(f"no {RATE} Hz held-out clips under {corpus}")
    return clips


def fitted_tables(clips: list[NDArray[np.float32]], layout: ScaleLayout
                  ) -> tuple[CdfTable, float]:
    """Symbol tables counted from `clips`, and the CPU seconds the counting took."""
    counts = fit.Counts.empty(layout)
    started = time.process_time()
    for x in clips:
        fit.count_clip(x, layout, counts)
    seconds = time.process_time() - started
    return fit.build_tables(counts), seconds


def held_out_bits(clips: list[NDArray[np.float32]], layout: ScaleLayout, tables: CdfTable,
                  step: int) -> float:
    """Ideal bits of the clips' gains and coefficients at one step, per second of audio."""
    bits = 0.0
    for x in clips:
        y = fit._coefficients(x, layout)
        gains = frame_gains(y, layout)
        g = gains.numpy()
        q = quantize(y, gains, step, layout).numpy()
        bits += block_bits(*gain_residuals(layout, g.astype(np.int64)), tables)
        bits += block_bits(q.ravel().astype(np.int64),
                           coefficient_tables(layout, g, step, q).ravel().astype(np.int64),
                           tables)
    return bits / (sum(len(x) for x in clips) / RATE)


def parse_sizes(text: str) -> list[tuple[int, float]]:
    """'40x15,120x20' -> [(40, 15.0), (120, 20.0)]."""
    sizes = []
    for item in text.split(","):
        clips, _, seconds = item.strip().partition("x")
        sizes.append((int(clips), float(seconds)))
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.table_fit",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--sizes", default="40x15,120x20,360x30",
                        help="fit sizes, clips per kind x seconds per clip")
    parser.add_argument("--valid-per-kind", type=int, default=25)
    parser.add_argument("--steps", default="112,136,160", help="quantizer step indices")
    parser.add_argument("--out", type=Path, help="also write table_fit.md here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    layout = fit.default_config().layout()
    steps = [int(s) for s in args.steps.split(",")]
    valid = held_out_clips(args.corpus, args.valid_per_kind)   # InputError: bench.entry.run
    valid_s = sum(len(x) for x in valid) / RATE
    lines = [f"Held-out: {len(valid)} clips, {valid_s:.0f} s. Bits per second of held-out "
             "audio (gains + coefficients) at each step index.", "",
             "| fit (clips/kind x s) | training audio s | counting CPU s | "
             + " | ".join(f"step {s} bit/s" for s in steps) + " |",
             "|---|---:|---:|" + "---:|" * len(steps)]
    first: list[float] = []
    for per_kind, seconds in parse_sizes(args.sizes):
        clips = fit.read_clips(fit.training_clips(args.corpus, per_kind), seconds, RATE)
        tables, cpu_s = fitted_tables(clips, layout)
        bits = [held_out_bits(valid, layout, tables, s) for s in steps]
        first = first or bits
        cells = [f"{b:.0f} ({100 * (b / f - 1):+.2f} %)" for b, f in zip(bits, first)]
        lines.append(f"| {per_kind} x {seconds:g} | {sum(len(x) for x in clips) / RATE:.0f} | "
                     f"{cpu_s:.0f} | " + " | ".join(cells) + " |")
        print(lines[-1], file=sys.stderr, flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "table_fit.md").write_text(text)
    return 0


if __name__ == "__main__":
    from bench.entry import run

    sys.exit(run(main, "bench.table_fit"))
