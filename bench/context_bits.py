"""Bits a context model would save over the shipped coder's frozen tables (issue 12).

    python -m bench.context_bits [--corpus /work/corpus] [--weights PATH] \
        [--minutes-per-kind 60] [--out bench/results]

On the held-out split's 6 kbps symbols (rate-control setting ``kbps=6.0``, read
back from real streams; cached by `codec.context.symbols`), per kind and overall,
in bits per second of audio:

- ``coded``: the shipped coder's actual payload bits (chunk payload bytes x 8);
- ``tables``: the frozen tables' ideal bits on the same symbols, split into
  coefficients, gains, noise-fill corrections and noise-fill envelope, plus side
  (step, split: everything else the coder sends);
- ``model``: the context model's cross-entropy on coefficients and gains, its
  noise-fill models' on the corrections and the envelope, plus the same side bits;
- savings in %: per part, and of the whole payload against ``coded``.

Writes ``context_bits.md`` and ``context_bits.csv`` under --out.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from codec.context import store
from codec.context.bits import NeuralPrior, Prior, TablePrior
from codec.context.symbols import SymbolSet, load_or_extract

FIELDS = ("kind", "seconds", "coded_bps", "table_coef_bps", "table_gain_bps",
          "table_noise_bps", "table_env_bps", "side_bps", "model_coef_bps", "model_gain_bps",
          "model_noise_bps", "model_env_bps", "saving_coef_gain_pct", "saving_noise_pct",
          "saving_env_pct", "saving_total_pct")


def measure(prior: Prior, symbols: SymbolSet) -> np.ndarray:
    """[M, 5] bits (coef, gain, noise, envelope, side) of every chunk."""
    rows = []
    for i in range(symbols.num_chunks):
        b = prior.chunk_bits(symbols.chunk(i))
        rows.append((b.coef, b.gain, b.noise, b.envelope, b.side))
    return np.array(rows, dtype=np.float64).reshape(-1, 5)


def thread_check(model, symbols: SymbolSet, layout, chunks: int = 40,
                 threads: tuple[int, ...] = (1, 2, 4)) -> str:
    """Are the float model's logits bit-identical across CPU thread counts? (They must
    be, and across machines, before a model could choose a decoder's probabilities.)"""
    from codec.context.bits import chunk_batch
    before = torch.get_num_threads()
    runs = []
    for n in threads:
        torch.set_num_threads(n)
        with torch.inference_mode():
            runs.append([model(*_inputs(chunk_batch(symbols.chunk(i), layout)))[1].numpy()
                         for i in range(min(chunks, symbols.num_chunks))])
    torch.set_num_threads(before)
    diff = max((float(np.abs(a - b).max()) for run in runs[1:] for a, b in zip(runs[0], run)),
               default=0.0)
    same = "yes" if diff == 0.0 else "no"
    return (f"Float logits bit-identical with {', '.join(map(str, threads))} CPU threads "
            f"(first {chunks} chunks): {same} (largest difference {diff:.3g}).")


def _inputs(batch):
    return batch.q, batch.gains, batch.steps, batch.levels


def summarize(symbols: SymbolSet, table: np.ndarray, model: np.ndarray) -> list[dict]:
    """Per kind and overall rows of FIELDS (bits per second of audio)."""
    kinds = symbols.clip_kind[symbols.chunk_clip]
    rows = []
    for kind in [*sorted(set(symbols.clip_kind)), "all"]:
        pick = np.ones(len(kinds), bool) if kind == "all" else kinds == kind
        clips = np.unique(symbols.chunk_clip[pick])
        seconds = float(symbols.clip_seconds[clips].sum())
        t, m = table[pick].sum(0) / seconds, model[pick].sum(0) / seconds
        coded = float(symbols.chunk_bytes[pick].sum()) * 8 / seconds
        rows.append({
            "kind": kind, "seconds": round(seconds, 1), "coded_bps": round(coded, 1),
            "table_coef_bps": round(t[0], 1), "table_gain_bps": round(t[1], 1),
            "table_noise_bps": round(t[2], 1), "table_env_bps": round(t[3], 1),
            "side_bps": round(t[4], 1),
            "model_coef_bps": round(m[0], 1), "model_gain_bps": round(m[1], 1),
            "model_noise_bps": round(m[2], 1), "model_env_bps": round(m[3], 1),
            "saving_coef_gain_pct": round(100 * (1 - (m[0] + m[1]) / (t[0] + t[1])), 2),
            "saving_noise_pct": round(100 * (1 - m[2] / max(t[2], 1e-9)), 2),
            "saving_env_pct": round(100 * (1 - m[3] / max(t[3], 1e-9)), 2),
            "saving_total_pct": round(100 * (1 - m.sum() / coded), 2)})
    return rows


def render(rows: list[dict], command: str, weights: str, threads: str = "") -> str:
    head = ("| kind | seconds | coded bit/s | tables: coef / gain / noise / envelope | "
            "side (both) | model: coef / gain / noise / envelope | saving coef+gain | "
            "saving noise | saving envelope | **saving vs coded** |")
    lines = ["# Context model: bits saved over the frozen tables (6 kbps symbols)", "",
             f"Command: `{command}`  ", f"Context model: `{weights}`", "",
             "Held-out split (`split=valid`), rate-control setting `kbps=6.0`; bits per "
             "second of audio. *coded* = actual payload bits of the shipped coder; "
             "*tables* = the frozen tables' ideal bits (with their previous-frame context); "
             "*noise* = the noise-fill corrections, *envelope* = the noise-fill envelope "
             "(each with the model's own small model of it when it has one); *side* = "
             "everything else the coder sends (step, split), which the model does not "
             "predict: counted the same for both. "
             "*saving vs coded* = 1 - (model coef + gain + noise + envelope + side) / coded.",
             "", head, "|" + "---|" * 10]
    for r in rows:
        lines.append(f"| {r['kind']} | {r['seconds']} | {r['coded_bps']} | "
                     f"{r['table_coef_bps']} / {r['table_gain_bps']} / {r['table_noise_bps']} / "
                     f"{r['table_env_bps']} | {r['side_bps']} | {r['model_coef_bps']} / "
                     f"{r['model_gain_bps']} / {r['model_noise_bps']} / {r['model_env_bps']} | "
                     f"{r['saving_coef_gain_pct']} % | {r['saving_noise_pct']} % | "
                     f"{r['saving_env_pct']} % | **{r['saving_total_pct']} %** |")
    if threads:
        lines += ["", threads]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.context_bits", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True, help="corpus root (scripts/make_corpus.sh)")
    p.add_argument("--cache", default="runs/context-cache", help="symbol cache folder")
    p.add_argument("--weights", default=None, help="context model (default: the shipped one)")
    p.add_argument("--minutes-per-kind", type=float, default=60.0)
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    from codec.api import Codec
    codec = Codec.load(device="cpu")
    layout, tables = codec.model.config.layout(), codec.model.tables
    model, _ = store.load(codec, args.weights)
    symbols = load_or_extract(args.corpus, args.cache, "valid", args.minutes_per_kind, codec)
    t0 = time.perf_counter()
    table = measure(TablePrior(layout, tables), symbols)
    neural = measure(NeuralPrior(model, layout, tables, model.noise, model.envelope), symbols)
    print(f"measured {symbols.num_chunks} chunks in {time.perf_counter() - t0:.0f} s",
          file=sys.stderr)
    rows = summarize(symbols, table, neural)
    threads = thread_check(model, symbols, layout)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "context_bits.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    command = "python -m bench.context_bits " + " ".join(sys.argv[1:] if argv is None else argv)
    text = render(rows, command.strip(), args.weights or "codec/pretrained/aec-base.context",
                  threads)
    (args.out / "context_bits.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    from bench.entry import run

    sys.exit(run(main, "bench.context_bits"))
