"""Fit the transform coder's probability model and noise levels from real audio.

The entropy model of the transform coder is a set of frozen integer tables,
one per (band, level) plus two for the frame gains (`codec.scales`). They are
learned here by counting: MDCT symbols of training clips are quantized at a
spread of steps (every rate the codec serves), each symbol is counted in the
table the decoder will pick for it, and the counts (smoothed towards a
Laplacian of the same mean, so that rare tables still code well) become
probabilities. The same pass measures, per table, the RMS of the coefficients
that quantize to zero: the decoder's noise-fill level.

    python -m codec.train.fit_tables --data CORPUS --out runs/tc/aec-base

writes a complete model (config, encoder, decoder with an identity post-filter,
tables). `codec.train.postfilter` then trains the post-filter on top.
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from numpy.typing import NDArray

from codec.chunkcoder import envelope_symbols, gain_residuals, noise_symbols
from codec.entropy import CdfTable
from codec.errors import AecError, InputError
from codec.model.transform import TransformEncoder, TransformQuantizer, frame_gains, frame_steps, quantize
from codec.scales import ScaleLayout, band_level_tables, coefficient_tables
from codec.train.phases import NULL_TIMER, NullTimer
from codec.train.split import list_clips
from codec.weights import ModelConfig, RatePoint, build_modules, save_model

BAND_EDGES = (0, 4, 8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128,
              160, 192, 224, 256, 288, 320)
"""MDCT bins (37.5 Hz each at 24 kHz): 150 Hz bands to 1.2 kHz, widening to 1.2 kHz."""
LEVELS, LEVEL_BIAS = 37, 120
"""Level l holds frames whose RMS is about 2**(l/2 - 14) steps: -42 dB to +51 dB."""
POSTFILTER_LAYERS = 0
"""Hidden layers of the post-filter: 0 ships a single zero-initialised 1x1 layer (the
identity), because no trained filter has beaten the identity on held-out audio yet
(`codec.train.postfilter` trains one with --layers)."""
CONTEXTS = 5
"""Previous-frame context classes per table: 18 % fewer symbol bits on held-out clips."""
NOISE_SEGMENT = 4
"""Frames per noise-fill correction (53 ms). On the held-out bench 4 beat 8 on mel,
ViSQOL and PESQ at 6, 12 and 24 kbps, for 0.2-0.8 dB of SI-SDR."""
ENVELOPE_EDGES = (0, 8, 15, 22)
"""Noise-envelope regions (bands): 0-1.2 kHz, 1.2-3.6 kHz, 3.6-12 kHz. With exact
per-frame, per-band noise energies given for free, held-out music ViSQOL at 6 kbps
rose from 4.21 to 4.54; one envelope value per frame reached 4.34, three 4.44."""
FIT_STEPS = tuple(range(64, 200, 4))
"""Step indices counted: from above 64 kbps down to below 2 kbps on typical audio."""
CLIPS_PER_KIND, CLIP_SECONDS = 40, 15.0
"""The shipped fit: 40 training clips per kind, at most 15 s of each."""
MAX_SYMBOL = 1023
MAX_TABLE_LENGTH = 512
TAIL_MASS = 1e-6
PRECISION = 16


def default_config(name: str = "aec-base",
                   envelope_edges: tuple[int, ...] = ENVELOPE_EDGES) -> ModelConfig:
    """The shipped transform-coder architecture."""
    layout = ScaleLayout(BAND_EDGES, levels=LEVELS, level_bias=LEVEL_BIAS,
                         noise_segment=NOISE_SEGMENT, contexts=CONTEXTS,
                         envelope_edges=envelope_edges)
    return ModelConfig(name=name, model_rate=24000, latent_channels=layout.coefficients,
                       strides=(layout.coefficients,), encoder_channels=(),
                       decoder_channels=(), dilations=(),
                       rate_points=(RatePoint(0, 2.0, 2.0), RatePoint(1, 64.0, 64.0)),
                       cdf_precision=PRECISION, arch="transform",
                       scale_layout=layout.to_dict(), postfilter_hidden=384,
                       postfilter_layers=POSTFILTER_LAYERS)


@dataclass
class Counts:
    """Symbol histograms per table and zero-coefficient energies."""

    symbols: NDArray[np.float64]      # [tables, 2 * MAX_SYMBOL + 1]
    zero_energy: NDArray[np.float64]  # [tables, 2]: sum of u^2, count

    @classmethod
    def empty(cls, layout: ScaleLayout) -> Counts:
        return cls(np.zeros((layout.num_tables, 2 * MAX_SYMBOL + 1)),
                   np.zeros((layout.num_tables, 2)))

    def add_symbols(self, tables: NDArray[np.integer], symbols: NDArray[np.integer]) -> None:
        """Count each symbol (clipped to +-MAX_SYMBOL) in its table; same shapes. Call it
        with many symbols at once (`_PendingSymbols`): each call adds a table-sized array.

        One bincount over (table, symbol) pairs: the counts are whole numbers, so this
        equals `np.add.at` exactly, at a fraction of its cost (`np.add.at` was three
        quarters of fitting's CPU time, `bench.train_speed --arch tables`)."""
        width = 2 * MAX_SYMBOL + 1
        index = (np.asarray(tables, dtype=np.int64).ravel() * width
                 + np.clip(symbols, -MAX_SYMBOL, MAX_SYMBOL).ravel() + MAX_SYMBOL)
        self.symbols += np.bincount(index, minlength=self.symbols.size).reshape(
            self.symbols.shape)

    def add_zero_energy(self, tables: NDArray[np.integer], energies: NDArray[np.floating]
                        ) -> None:
        """Add zero-quantized coefficients' energies (step units) and counts per table.

        Bit for bit `np.add.at`: bincount adds its weights in order into zeroed bins, so
        each table's running sum goes first and every energy is added after it in turn."""
        n = len(self.zero_energy)
        self.zero_energy[:, 0] = np.bincount(
            np.concatenate([np.arange(n), tables]), minlength=n,
            weights=np.concatenate([self.zero_energy[:, 0], energies.astype(np.float64)]))
        self.zero_energy[:, 1] += np.bincount(tables, minlength=n)


def count_clip(x: NDArray[np.float32], layout: ScaleLayout, counts: Counts,
               steps: tuple[int, ...] = FIT_STEPS, timer: NullTimer = NULL_TIMER) -> None:
    """Add one mono clip's symbols at every step to the counts; `timer` books the phases
    (mdct, quantize, tables; the rest is counting) for `bench.train_speed --arch tables`."""
    with timer.phase("mdct"):
        y = _coefficients(x, layout)
        gains = frame_gains(y, layout)
    g = gains.numpy()
    pending = _PendingSymbols(counts)
    residuals, tables = gain_residuals(layout, g.astype(np.int64))
    pending.add(tables, residuals)
    for step in steps:
        with timer.phase("quantize"):
            q = quantize(y, gains, step, layout).numpy()
            units = (y / frame_steps(gains, step, layout)).numpy()
        with timer.phase("tables"):
            coefficient = coefficient_tables(layout, g, step, q)
            t = band_level_tables(layout, g, step)
        pending.add(coefficient, q)
        zero = q == 0
        counts.add_zero_energy(t[zero], units[zero] ** 2)
    pending.flush()


class _PendingSymbols:
    """Collects (table, symbol) pairs and counts them in a few large batches: each
    `Counts.add_symbols` call costs a table-sized array, so one per step would be slow,
    and one per clip would hold every step's symbols of a long clip at once."""

    LIMIT = 1 << 22

    def __init__(self, counts: Counts) -> None:
        self.counts, self.size = counts, 0
        self.tables: list[NDArray[np.integer]] = []
        self.symbols: list[NDArray[np.integer]] = []

    def add(self, tables: NDArray[np.integer], symbols: NDArray[np.integer]) -> None:
        self.tables.append(np.ravel(tables))
        self.symbols.append(np.ravel(symbols))
        self.size += self.tables[-1].size
        if self.size >= self.LIMIT:
            self.flush()

    def flush(self) -> None:
        if self.tables:
            self.counts.add_symbols(np.concatenate(self.tables), np.concatenate(self.symbols))
        self.tables, self.symbols, self.size = [], [], 0


def count_noise(x: NDArray[np.float32], quantizer: TransformQuantizer, counts: Counts,
                steps: tuple[int, ...] = FIT_STEPS[::2]) -> None:
    """Add one clip's noise-fill corrections and envelope (second pass, with fitted noise
    levels)."""
    layout = quantizer.layout
    y = _coefficients(x, layout)
    gains = frame_gains(y, layout)
    pending = _PendingSymbols(counts)
    for step in steps:
        q = quantize(y, gains, step, layout)
        corrections, envelope = quantizer.noise_corrections(y, gains, q, step)
        for residuals, tables in (noise_symbols(layout, corrections, q.numpy()),
                                  envelope_symbols(layout, envelope, q.numpy())):
            pending.add(tables, residuals)
    pending.flush()


def _coefficients(x: NDArray[np.float32], layout: ScaleLayout) -> torch.Tensor:
    """MDCT of a mono clip padded to whole frames: [1, C, F]."""
    n = layout.coefficients
    padded = np.pad(x, (0, (-len(x)) % n + n))
    return TransformEncoder(n)(torch.from_numpy(padded)[None, None])


def _laplace(mean_abs: float) -> NDArray[np.float64]:
    """Discrete Laplacian pmf over -MAX_SYMBOL..MAX_SYMBOL with the given E|q|."""
    v = np.arange(-MAX_SYMBOL, MAX_SYMBOL + 1, dtype=np.float64)
    scale = max(mean_abs, 0.02)
    pmf = np.exp(-np.abs(v) / scale)
    return pmf / pmf.sum()


def table_pmf(hist: NDArray[np.float64], prior_weight: float = 20.0
              ) -> tuple[NDArray[np.float64], int]:
    """Smoothed pmf of one table trimmed to its support, and the support's first value."""
    total = hist.sum()
    v = np.arange(-MAX_SYMBOL, MAX_SYMBOL + 1)
    mean_abs = float((np.abs(v) * hist).sum() / total) if total else 0.02
    pmf = (hist + prior_weight * _laplace(mean_abs)) / (total + prior_weight)
    cdf = np.cumsum(pmf)
    tail = TAIL_MASS
    while True:   # wide tables leave more to the escape, so every entry's count fits
        lo = min(int(np.searchsorted(cdf, tail / 2)), MAX_SYMBOL - 1)
        hi = max(int(np.searchsorted(cdf, 1 - tail / 2)), MAX_SYMBOL + 1)
        if hi - lo + 1 <= MAX_TABLE_LENGTH:
            return pmf[lo: hi + 1], int(v[lo])
        tail *= 4


def build_tables(counts: Counts) -> CdfTable:
    pmfs, offsets = zip(*(table_pmf(h) for h in counts.symbols))
    return CdfTable.from_pmfs(list(pmfs), list(offsets), precision=PRECISION)


def noise_levels(counts: Counts, layout: ScaleLayout) -> NDArray[np.float64]:
    """RMS (step units) of zero-quantized coefficients per coefficient table."""
    coef = counts.zero_energy[: layout.num_bands * layout.levels]
    return np.sqrt(coef[:, 0] / np.maximum(coef[:, 1], 1.0))


def read_clips(paths: list[Path], seconds: float, rate: int) -> list[NDArray[np.float32]]:
    """The first channel of each file cut to `seconds`; files at other rates are skipped."""
    clips = []
    for path in paths:
        x, file_rate = sf.read(path, dtype="float32", always_2d=True)
        if file_rate == rate:
            clips.append(x[: int(seconds * rate), 0])
    return clips


def training_clips(corpus: Path, per_kind: int, seed: int = 0) -> list[Path]:
    """A seeded, kind-balanced sample of training-split clips."""
    return sampled_clips(corpus, "train", per_kind, seed)


def sampled_clips(corpus: Path, split: str, per_kind: int, seed: int) -> list[Path]:
    """`per_kind` clips of each kind of one split, shuffled with `seed`."""
    rng = random.Random(seed)
    picked: list[Path] = []
    for kind in ("speech", "music", "sfx"):
        clips = list_clips(corpus, split, kind)
        rng.shuffle(clips)
        picked += clips[:per_kind]
    return picked


def fit(corpus: Path, out: Path, per_kind: int, seconds: float, name: str = "aec-base",
        envelope_edges: tuple[int, ...] = ENVELOPE_EDGES) -> None:
    config = default_config(name, envelope_edges)
    layout = config.layout()
    counts = Counts.empty(layout)
    clips = read_clips(training_clips(corpus, per_kind), seconds, config.model_rate)
    if not clips:      # tables counted from nothing would be silently useless
        raise InputError(f"no {config.model_rate} Hz training-split clips under {corpus}")
    for x in clips:
        count_clip(x, layout, counts)
    torch.manual_seed(0)
    encoder, decoder, quantizer = build_modules(config)
    quantizer.noise_rms.copy_(torch.from_numpy(noise_levels(counts, layout)))
    for x in clips[::3]:
        count_noise(x, quantizer, counts)
    save_model(out, config, encoder, decoder, quantizer, build_tables(counts))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="corpus folder")
    parser.add_argument("--out", type=Path, required=True, help="model path stem")
    parser.add_argument("--clips-per-kind", type=int, default=CLIPS_PER_KIND,
                        help="training clips per kind (default: the shipped fit's)")
    parser.add_argument("--seconds", type=float, default=CLIP_SECONDS,
                        help="seconds used per clip at most (default: the shipped fit's)")
    parser.add_argument("--envelope-edges", default=",".join(map(str, ENVELOPE_EDGES)),
                        help="noise-envelope region edges in bands, comma list "
                             "('' = no envelope)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    edges = tuple(int(v) for v in args.envelope_edges.split(",") if v.strip())
    try:
        fit(args.data, args.out, args.clips_per_kind, args.seconds, envelope_edges=edges)
    except AecError as exc:
        print(f"fit_tables: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
