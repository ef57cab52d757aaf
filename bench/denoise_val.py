"""Train-split validation of a denoiser: choose between runs without the bench clips.

    python -m bench.denoise_val --corpus /work/corpus --weights DIR [DIR ...]

`bench.denoise` scores held-out clips, and choosing a training recipe by
looking at it would tune on the test. This scores each base-model folder
(`aec --weights`, holding a ``*.denoise.safetensors``) on train-split speech
the training never draws: the pools take a seeded subset of the train speech
(`codec.train.denoise_data.load_pools`), and these clips come from the rest.
The noise is train-split music and effects (which the training may have seen
as noise) and the synthetic kinds, mixed as `bench.denoise` does (0.5 s noise-only lead-in, 5 dB
SNR). Rows: SI-SDR / PESQ-WB at 12 kbps of plain aec and --denoise, on the
noisy and the clean input, means over the clips.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

from bench.denoise import (LEAD_IN_S, NOISE_CYCLE, RATE, Item, Scorer, _read, _speech,
                           code)
from codec import Codec
from codec.train.denoise_data import colored_noise
from codec.train.split import list_clips

SNR_DB = 5.0
KBPS = 12.0


def unused_speech(corpus: Path, seed: int = 0, pool: int = 4000) -> list[Path]:
    """Train-split speech outside the pool `load_pools(corpus, seed, pool)` picks.

    The pools' first draw from `default_rng(seed)` is the speech choice; repeat it.
    """
    speech = list_clips(corpus, "train", "speech")
    rng = np.random.default_rng(seed)
    taken = set(int(i) for i in rng.choice(len(speech), size=min(pool, len(speech)),
                                            replace=False))
    return [p for i, p in enumerate(speech) if i not in taken]


def make_items(corpus: Path, count: int) -> list[Item]:
    """`count` train-split items outside the training pools (module docstring)."""
    speech = unused_speech(corpus)
    noise = {kind: list_clips(corpus, "train", kind) for kind in ("music", "sfx")}
    rng = np.random.default_rng(23)
    items = []
    for k in range(count):
        name, clean = _speech(speech, (k * len(speech)) // count)
        clean = np.concatenate([np.zeros(int(LEAD_IN_S * RATE), np.float32), clean])
        clean *= 10 ** (-26 / 20) / math.sqrt(float(np.mean(clean ** 2)) + 1e-12)
        kind = NOISE_CYCLE[k % len(NOISE_CYCLE)]
        if kind in noise:
            clip = _read(noise[kind][(k * 7919) % len(noise[kind])])
            while len(clip) < len(clean):
                clip = np.concatenate([clip, _read(noise[kind][int(rng.integers(
                    len(noise[kind])))])])
            start = int(rng.integers(0, len(clip) - len(clean) + 1))
            noise_audio = clip[start: start + len(clean)].copy()
        else:
            noise_audio = colored_noise(kind, len(clean), rng)
        items.append(Item(name, clean, noise_audio, kind))
    return items


def score(weights: str, items: list[Item], scorer: Scorer) -> dict[str, tuple[float, float]]:
    """Mean (SI-SDR, PESQ-WB) per row for one base-model folder."""
    codec = Codec.load(weights, device="cpu")
    rows: dict[str, list[tuple[float, float]]] = {}
    for item in items:
        for label, audio in (("5 dB", item.mixed(SNR_DB)), ("clean", item.clean)):
            for denoise in (False, True):
                key = f"{label} {'--denoise' if denoise else 'aec'}"
                rows.setdefault(key, []).append(
                    scorer(item.clean, code(codec, audio, KBPS, denoise)))
    return {k: (float(np.mean([v[0] for v in vs])), float(np.nanmean([v[1] for v in vs])))
            for k, vs in rows.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.denoise_val",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--weights", nargs="+", required=True, help="base-model folders")
    parser.add_argument("--clips", type=int, default=16)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    items = make_items(args.corpus, args.clips)
    scorer = Scorer()
    for weights in args.weights:
        means = score(weights, items, scorer)
        cells = " | ".join(f"{k} {s:.2f} dB / {p:.2f}" for k, (s, p) in means.items())
        print(f"{weights}: {cells}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
