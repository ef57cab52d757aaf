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

``--wiener SPEC [SPEC ...]`` scores each folder's denoiser once per setting of
the version-5 stationary-noise gain (`codec.denoise.stationary_gain`): SPEC is
``off`` or ``ALPHA,FLOOR,HALF,FRAMES,BINS``. The shipped setting was chosen
this way::

    python -m bench.denoise_val --corpus /work/corpus --clips 60 --weights codec/pretrained \
        --wiener off 2,0.05,37,9,3 2,0.05,75,9,3 1.5,0.05,75,9,3 2,0.05,37,9,1 \
        1.5,0.05,37,9,3 2,0.05,37,7,3 2,0.05,75,11,3
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from bench.denoise import (LEAD_IN_S, NOISE_CYCLE, RATE, Item, Scorer, _read, _speech,
                           code, load_with_denoiser)
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


def parse_wiener(spec: str) -> tuple[float, ...]:
    """``off`` -> (); ``ALPHA,FLOOR,HALF,FRAMES,BINS`` -> five floats."""
    if spec == "off":
        return ()
    values = tuple(float(v) for v in spec.split(","))
    if len(values) != 5:
        raise argparse.ArgumentTypeError(f"--wiener: 'off' or five numbers, not {spec!r}")
    return values


@contextmanager
def with_wiener(weights: str, wiener: tuple[float, ...]) -> Iterator[str]:
    """A temporary base-model folder: `weights`' files, its denoiser re-saved with `wiener`."""
    from codec.denoise import denoise_path, load_denoiser, save_denoiser
    from codec.weights import load_model, model_paths

    sha = load_model(weights, need_encoder=False).decoder_sha256
    encoder = load_denoiser(weights, sha)
    stem = model_paths(weights)[0].name[: -len(".json")]
    with tempfile.TemporaryDirectory() as folder:
        for path in model_paths(weights)[0].parent.glob(stem + ".*"):
            if path != denoise_path(weights):
                (Path(folder) / path.name).symlink_to(path.resolve())
        variant = type(encoder)(replace(encoder.config, wiener=wiener).versioned())
        variant.mask.load_state_dict(encoder.mask.state_dict())
        save_denoiser(Path(folder) / denoise_path(weights).name, variant, sha)
        yield folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.denoise_val",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--weights", nargs="+", required=True, help="base-model folders")
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--wiener", nargs="+", type=parse_wiener, default=None,
                        metavar="SPEC", help="score each denoiser with these stationary-noise "
                                            "gains: off or ALPHA,FLOOR,HALF,FRAMES,BINS")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for weights in args.weights:             # a wrong folder fails before any clip is made
        load_with_denoiser(weights)
    items = make_items(args.corpus, args.clips)
    scorer = Scorer()
    for weights in args.weights:
        if args.wiener is None:
            _print(weights, score(weights, items, scorer))
            continue
        for wiener in args.wiener:
            with with_wiener(weights, wiener) as folder:
                label = ",".join(f"{v:g}" for v in wiener) or "off"
                _print(f"{weights} --wiener {label}", score(folder, items, scorer))
    return 0


def _print(label: str, means: dict[str, tuple[float, float]]) -> None:
    cells = " | ".join(f"{k} {s:.2f} dB / {p:.3f}" for k, (s, p) in means.items())
    print(f"{label}: {cells}", flush=True)


if __name__ == "__main__":
    from bench.entry import run

    sys.exit(run(main, "bench.denoise_val"))
