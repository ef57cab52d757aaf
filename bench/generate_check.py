"""Does the context model make audio? Continuations of held-out prompts vs real audio.

    python -m bench.generate_check [--corpus /work/corpus] [--per-kind 4] \
        [--prompt-s 3] [--seconds 3] [--out bench/results]

Held-out (split=valid) audio of each kind is cut into segments of prompt + seconds
(short clips of a kind joined in order first). For each segment, rows:

- ``real``: the held-out audio after the prompt itself;
- ``real@6kbps``: the same through the codec at 6 kbps (what the symbols can say);
- ``model``: the context model's continuation of the prompt (temperature 1);
- ``model-uncond``: unconditional samples of the model (no prompt);
- ``tables``: samples of the frozen tables (the factorized prior of the shipped
  coder): gains from the gain tables, every symbol drawn on its own from the
  table the coder would use (band x level x previous-frame class), same step
  and synthesis as the model's samples.

Per kind: loudness (RMS dBFS), spectral flatness (mean over 1024-point frames of
geometric / arithmetic mean power; 1 = white noise), and the Frechet distance of
log-mel frame statistics (64 mels, mean and covariance) to the prompts of the
same kind (real held-out audio that no row contains). Also the model's generation
speed (x real time, 1 CPU thread). Writes generate_check.md/.csv under --out.
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
from numpy.typing import NDArray

from codec import audio as audio_io
from codec.context import store
from codec.context.generate import empty_context, generate, prompt_context
from codec.metrics import mel_filterbank
from codec.scales import frame_tables
from codec.train.split import KINDS, list_clips

RATE = 24000
N_FFT, N_MELS = 1024, 64
ROWS = ("real", "real@6kbps", "model", "model-uncond", "tables")


def segments(corpus: str, kind: str, count: int, seconds: float) -> list[NDArray[np.float32]]:
    """`count` mono 24 kHz segments of `seconds` from the kind's held-out clips, evenly
    spread over the sorted clips (short clips joined in order)."""
    clips = list_clips(corpus, "valid", kind)
    need = int(seconds * RATE)
    out: list[NDArray[np.float32]] = []
    stride = max(1, len(clips) // count)
    for start in range(0, len(clips), stride):
        parts, have, i = [], 0, start
        while have < need and i < len(clips):
            x, rate = audio_io.read_audio(str(clips[i]))
            x = audio_io.resample(x.mean(axis=0, keepdims=True), rate, RATE)[0]
            parts.append(x)
            have += x.size
            i += 1
        if have >= need:
            out.append(np.concatenate(parts)[:need].astype(np.float32))
        if len(out) == count:
            break
    return out


def table_sample(codec, frames: int, step: int, rng: np.random.Generator) -> NDArray[np.float32]:
    """Audio from the frozen tables: every symbol drawn from its own table."""
    layout, tables = codec.model.config.layout(), codec.model.tables
    draw = lambda t: _draw(tables, np.atleast_1d(t), rng)          # noqa: E731
    gains = np.zeros(frames, np.int64)
    q = np.zeros((layout.coefficients, frames), np.int64)
    previous = None
    for f in range(frames):
        if f == 0:
            gains[0] = draw(layout.gain_first_table)[0]
        else:
            gains[f] = gains[f - 1] + draw(layout.gain_delta_table)[0]
        gains[f] = np.clip(gains[f], 0, layout.gain_max)
        table_of = frame_tables(layout, gains[None, f], step, previous)[0]
        q[:, f] = draw(table_of)
        previous = q[None, :, f]
    noise = np.zeros((1, layout.num_bands, layout.noise_segments(frames)), np.int64)
    latent = codec.model.quantizer.dequantize(q[None], gains[None], np.full(frames, step),
                                              noise, 0)
    with torch.inference_mode():
        audio = codec.model.decoder(latent)[0, 0].numpy()
    return audio[codec.model.geometry.encoder_delay:].astype(np.float32)


def _draw(tables, table_of: NDArray[np.int64], rng: np.random.Generator) -> NDArray[np.int64]:
    """One value from each given table (an escape draws the first value past the range)."""
    out = np.empty(table_of.size, np.int64)
    u = rng.integers(0, 1 << tables.precision, size=table_of.size)
    for t in np.unique(table_of):
        at = table_of == t
        n = int(tables.length[t])
        index = np.searchsorted(tables.cdf[t, 1:n + 1].astype(np.int64), u[at], side="right")
        out[at] = int(tables.offset[t]) + index
    return out


def rms_dbfs(x: NDArray[np.float32]) -> float:
    return float(10 * np.log10(np.mean(x.astype(np.float64) ** 2) + 1e-12))


def _power_frames(x: NDArray[np.float32]) -> NDArray[np.float64]:
    hop = N_FFT // 2
    count = max(1, 1 + (x.size - N_FFT) // hop)
    idx = np.arange(N_FFT)[None, :] + hop * np.arange(count)[:, None]
    frames = np.pad(x, (0, max(0, N_FFT - x.size)))[idx] * np.hanning(N_FFT)
    return np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-12


def flatness(x: NDArray[np.float32]) -> float:
    p = _power_frames(x)
    return float(np.mean(np.exp(np.mean(np.log(p), axis=1)) / np.mean(p, axis=1)))


def log_mel(x: NDArray[np.float32]) -> NDArray[np.float64]:
    return np.log(_power_frames(x) @ mel_filterbank(RATE, N_FFT, N_MELS).T + 1e-8)


def frechet(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    """Frechet distance of Gaussians fitted to frame sets a and b [n, mels]."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b)
                 - 2 * trace_sqrt_product(cov_a, cov_b))


def trace_sqrt_product(cov_a: NDArray[np.float64], cov_b: NDArray[np.float64]) -> float:
    """tr sqrt(A B) for covariances A, B: the eigenvalues of A B are those of the
    symmetric sqrt(A) B sqrt(A), so two `eigh` calls do it (numpy only)."""
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    inner = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    return float(np.sum(np.sqrt(np.clip(inner, 0.0, None))))


def run_kind(codec, model, meta, kind: str, args: argparse.Namespace,
             timing: list[tuple[float, float]]) -> list[dict]:
    segs = segments(args.corpus, kind, args.per_kind, args.prompt_s + args.seconds)
    cut = int(args.prompt_s * RATE)
    n = int(args.seconds * RATE)
    audio: dict[str, list[NDArray[np.float32]]] = {r: [] for r in ROWS}
    prompts = []
    rng = np.random.default_rng(0)
    step = int(meta["generation_step"])
    hop = codec.model.geometry.hop_length
    for i, seg in enumerate(segs):
        prompts.append(seg[:cut])
        audio["real"].append(seg[cut:])
        audio["real@6kbps"].append(codec.decode(codec.encode(seg, RATE, 6.0))[0][0][cut:])
        context = prompt_context(codec, seg[:cut])
        t0 = time.perf_counter()
        out = generate(codec, model, args.seconds, i, context, 1.0)
        timing.append((args.seconds, time.perf_counter() - t0))
        audio["model"].append(out[cut:])
        audio["model-uncond"].append(generate(codec, model, args.seconds, 100 + i,
                                              empty_context(model.config.bins), 1.0, step))
        audio["tables"].append(table_sample(codec, n // hop + 2, step, rng)[:n])
    reference = np.concatenate([log_mel(p) for p in prompts])
    rows = []
    for name in ROWS:
        xs = audio[name]
        rows.append({"kind": kind, "row": name, "clips": len(xs),
                     "rms_dbfs": round(float(np.mean([rms_dbfs(x) for x in xs])), 1),
                     "flatness": round(float(np.mean([flatness(x) for x in xs])), 3),
                     "mel_frechet": round(frechet(np.concatenate([log_mel(x) for x in xs]),
                                                  reference), 1)})
    return rows


def render(rows: list[dict], speed: float, command: str) -> str:
    lines = ["# Context model: does it make audio? (held-out prompts)", "",
             f"Command: `{command}`", "",
             "Per kind, mean over segments: RMS loudness (dBFS), spectral flatness (1 = white "
             "noise, 0 = pure tones), Frechet distance of log-mel frame statistics to the "
             "real held-out prompts of the same kind (lower = closer to real audio). "
             f"Model generation speed (continuations, 1 CPU thread): {speed:.1f}x real time.",
             "", "| kind | row | clips | RMS dBFS | flatness | log-mel Frechet |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['kind']} | {r['row']} | {r['clips']} | {r['rms_dbfs']} | "
              f"{r['flatness']} | {r['mel_frechet']} |" for r in rows]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.generate_check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True, help="corpus root (scripts/make_corpus.sh)")
    p.add_argument("--weights", default=None, help="context model (default: the shipped one)")
    p.add_argument("--per-kind", type=int, default=4)
    p.add_argument("--prompt-s", type=float, default=3.0)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    from codec.api import Codec
    codec = Codec.load(device="cpu")
    model, meta = store.load(codec, args.weights)
    rows: list[dict] = []
    timing: list[tuple[float, float]] = []
    for kind in KINDS:
        rows += run_kind(codec, model, meta, kind, args, timing)
    speed = sum(s for s, _ in timing) / max(sum(t for _, t in timing), 1e-9)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "generate_check.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    command = "python -m bench.generate_check " + " ".join(
        sys.argv[1:] if argv is None else argv)
    text = render(rows, speed, command.strip())
    (args.out / "generate_check.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    from bench.entry import run

    sys.exit(run(main, "bench.generate_check"))
