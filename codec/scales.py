"""Integer scales of the transform coder: band layout, step indices, table selection.

Everything a decoder needs to pick a probability table is computed here from
integers only (stream step index, decoded frame gains, the layout stored with
the weights), so every machine decodes the same symbols (DESIGN "Determinism").
Floats appear only in `step_size`, which scales the *decoded* symbols back to
MDCT coefficients for synthesis and never chooses a table (spec §5.6).

Units: a frame gain ``g`` is the frame's RMS in 3 dB steps (``rms ~ 2**(g/2 - 15)``);
a step index ``s`` is the quantizer step in 0.75 dB steps (``step = 2**(s/8 - 20)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

NUM_STEPS = 256
"""Step indices 0..255, one per chunk."""
GAIN_RMS_OFFSET = 15
"""A gain g stands for RMS 2**(g/2 - 15): g = 0 is about -90 dBFS."""
STEP_OFFSET = 20
"""A step index s stands for a quantizer step 2**(s/8 - 20)."""
CONTEXT_THRESHOLDS = (1, 3, 7, 15)
"""Context class of a symbol = how many of these its previous-frame neighbourhood reaches."""
_THRESHOLDS = np.asarray(CONTEXT_THRESHOLDS, dtype=np.int64)


@dataclass(frozen=True)
class ScaleLayout:
    """The integers that define the transform coder's symbols and tables (stored in weights).

    band_edges: MDCT bins where each band starts, plus the bin count at the end.
    levels: tables per band (L); level of a (band, frame) is
        clamp((4 * g - step_index + level_bias) >> 2, 0, L - 1).
    gain_max: largest frame gain (gains are 0..gain_max).
    gamma_eighths: how much the step follows the frame gain (gamma = n / 8):
        step_index = s + ((gamma_eighths * 4 * (g - gain_ref)) >> 3).
    noise_segment, noise_low, noise_high: every band of every `noise_segment` frames
        carries a noise-fill correction in 3 dB steps, noise_low..noise_high.
    contexts: K, how many classes of the previous frame's neighbourhood
        (`context_classes`) split each (band, level) table; 1 = no context.
    envelope_edges: bands where each noise-envelope region starts, plus the band count
        at the end; () = no envelope. With R regions, every (channel, region, frame)
        that holds a zero symbol carries a noise-fill envelope value in 3 dB steps,
        envelope_low..envelope_high, which scales the fill of that frame only: the
        per-frame shape that the per-segment corrections cannot follow (spec §5.6).
    """

    band_edges: tuple[int, ...]
    levels: int = 24
    gain_max: int = 47
    gamma_eighths: int = 5
    gain_ref: int = 20
    level_bias: int = 64
    noise_segment: int = 24
    noise_low: int = -16
    noise_high: int = 4
    contexts: int = 1
    envelope_edges: tuple[int, ...] = ()
    envelope_low: int = -8
    envelope_high: int = 8

    def __post_init__(self) -> None:
        edges = np.asarray(self.band_edges)
        if edges.ndim != 1 or edges.size < 2 or edges[0] != 0 or np.any(np.diff(edges) < 1):
            raise ValueError("band_edges must start at 0 and strictly increase")
        regions = np.asarray(self.envelope_edges, dtype=np.int64)
        if regions.size and (regions.size < 2 or regions[0] != 0 or np.any(np.diff(regions) < 1)
                             or regions[-1] != edges.size - 1):
            raise ValueError("envelope_edges must run from band 0 to the band count, "
                             "strictly increasing")
        if not self.envelope_low <= 0 <= self.envelope_high:
            raise ValueError("envelope_low <= 0 <= envelope_high")
        if not (1 <= self.levels <= 256 and 1 <= self.gain_max <= 255
                and 0 <= self.gamma_eighths <= 8 and 0 <= self.gain_ref <= self.gain_max
                and self.noise_segment >= 1 and self.noise_low <= 0 <= self.noise_high
                and 1 <= self.contexts <= len(CONTEXT_THRESHOLDS) + 1):
            raise ValueError("scale layout integers out of range")

    @property
    def coefficients(self) -> int:
        """MDCT bins per frame (C)."""
        return int(self.band_edges[-1])

    @property
    def num_bands(self) -> int:
        return len(self.band_edges) - 1

    @property
    def coefficient_table_count(self) -> int:
        """B * L * K tables for the MDCT symbols."""
        return self.num_bands * self.levels * self.contexts

    @property
    def gain_first_table(self) -> int:
        """Table of a chunk's first gain of each channel (values 0..gain_max)."""
        return self.coefficient_table_count

    @property
    def gain_delta_table(self) -> int:
        """Table of the later gains, coded as g[f] - g[f - 1]."""
        return self.coefficient_table_count + 1

    @property
    def noise_first_table(self) -> int:
        """Table of a band's first coded noise-fill correction in a chunk."""
        return self.coefficient_table_count + 2

    @property
    def noise_delta_table(self) -> int:
        """Table of a band's later corrections, coded as the change from the previous one."""
        return self.coefficient_table_count + 3

    @property
    def envelope_regions(self) -> int:
        """R: noise-envelope regions per frame (0: no envelope block)."""
        return max(len(self.envelope_edges) - 1, 0)

    @property
    def envelope_first_table(self) -> int:
        """Table of a region's first coded envelope value in a chunk (only when R > 0)."""
        return self.coefficient_table_count + 4

    @property
    def envelope_delta_table(self) -> int:
        """Table of a region's later envelope values, as the change from the previous one."""
        return self.coefficient_table_count + 5

    @property
    def num_tables(self) -> int:
        return self.coefficient_table_count + 4 + (2 if self.envelope_regions else 0)

    def region_of_band(self) -> NDArray[np.int64]:
        """[B]: the envelope region of each band (all 0 without an envelope)."""
        if not self.envelope_regions:
            return np.zeros(self.num_bands, dtype=np.int64)
        return np.searchsorted(np.asarray(self.envelope_edges), np.arange(self.num_bands),
                               side="right") - 1

    def noise_segments(self, frames: int) -> int:
        """Noise-fill segments in a chunk of `frames` frames (the last may be shorter)."""
        return -(-frames // self.noise_segment)

    def band_of_bin(self) -> NDArray[np.int64]:
        """[C]: the band of each MDCT bin (read-only, cached per layout)."""
        return _band_of_bin(self.band_edges)

    def to_dict(self) -> dict[str, object]:
        return {"band_edges": list(self.band_edges), "levels": self.levels,
                "gain_max": self.gain_max, "gamma_eighths": self.gamma_eighths,
                "gain_ref": self.gain_ref, "level_bias": self.level_bias,
                "noise_segment": self.noise_segment, "noise_low": self.noise_low,
                "noise_high": self.noise_high, "contexts": self.contexts,
                **({"envelope_edges": list(self.envelope_edges),
                    "envelope_low": self.envelope_low, "envelope_high": self.envelope_high}
                   if self.envelope_regions else {})}


@lru_cache(maxsize=16)
def _band_of_bin(edges: tuple[int, ...]) -> NDArray[np.int64]:
    out = np.repeat(np.arange(len(edges) - 1), np.diff(np.asarray(edges)))
    out.setflags(write=False)
    return out


def step_index(layout: ScaleLayout, gains: NDArray[np.integer],
               step: int | NDArray[np.integer]) -> NDArray[np.int64]:
    """[..., F] gains, the chunk's step (or one per frame, [F]) -> [..., F] step index of
    every frame (integer floor shift)."""
    g = np.asarray(gains, dtype=np.int64)
    follow = (layout.gamma_eighths * 4 * (g - layout.gain_ref)) >> 3
    return np.asarray(step, dtype=np.int64) + follow


def band_levels(layout: ScaleLayout, gains: NDArray[np.integer],
                step: int | NDArray[np.integer]) -> NDArray[np.int64]:
    """[..., F] gains -> [..., F] level 0..L-1 (the frame's RMS over its step, 3 dB units)."""
    g = np.asarray(gains, dtype=np.int64)
    raw = (4 * g - step_index(layout, g, step) + layout.level_bias) >> 2
    return np.clip(raw, 0, layout.levels - 1)


def band_level_tables(layout: ScaleLayout, gains: NDArray[np.integer],
                      step: int | NDArray[np.integer]) -> NDArray[np.int64]:
    """gains [ch, F] -> band * L + level of every coefficient [ch, C, F] (the noise-fill
    level's index, and the coefficient table before the context split)."""
    level = band_levels(layout, gains, step)[:, None, :]
    band = layout.band_of_bin()[None, :, None]
    return band * layout.levels + level


def context_classes(layout: ScaleLayout, previous: NDArray[np.integer]) -> NDArray[np.int64]:
    """Symbols of the previous frame [..., C] -> context class 0..K-1 of every bin [..., C].

    m = 2|q[k]| + |q[k-1]| + |q[k+1]| (missing neighbours count 0), class = the number of
    CONTEXT_THRESHOLDS that m reaches, at most K - 1.
    """
    a = np.abs(np.asarray(previous, dtype=np.int64))
    m = 2 * a
    m[..., 1:] += a[..., :-1]
    m[..., :-1] += a[..., 1:]
    classes = np.searchsorted(_THRESHOLDS, m, side="right")     # thresholds <= m
    return np.minimum(classes, layout.contexts - 1)


def coefficient_tables(layout: ScaleLayout, gains: NDArray[np.integer],
                       step: int | NDArray[np.integer],
                       symbols: NDArray[np.integer] | None = None) -> NDArray[np.int64]:
    """gains [ch, F] (and the symbols [ch, C, F] themselves when K > 1) -> the table of
    every symbol [ch, C, F]: (band * L + level) * K + the class of the previous frame's
    neighbourhood (class 0 in a chunk's first frame)."""
    base = band_level_tables(layout, gains, step) * layout.contexts
    if layout.contexts == 1:
        return base
    if symbols is None:
        raise ValueError("context tables need the symbols of the previous frames")
    previous = np.zeros(np.shape(symbols), dtype=np.int64)
    previous[:, :, 1:] = np.asarray(symbols)[:, :, :-1]
    return base + np.moveaxis(context_classes(layout, np.moveaxis(previous, 1, -1)), -1, 1)


def frame_tables(layout: ScaleLayout, gains: NDArray[np.integer], step: int,
                 previous: NDArray[np.integer] | None) -> NDArray[np.int64]:
    """One frame: gains [ch], its step index, the previous frame's symbols [ch, C] (None in
    a chunk's first frame) -> the table of each of its symbols [ch, C]."""
    base = band_level_tables(layout, np.asarray(gains)[:, None], step)[:, :, 0] * layout.contexts
    if layout.contexts == 1 or previous is None:
        return base
    return base + context_classes(layout, previous)


def step_size(index: NDArray[np.integer]) -> NDArray[np.float64]:
    """Quantizer step of a step index: 2**(index / 8 - 20) (floats, synthesis only)."""
    return np.exp2(np.asarray(index, dtype=np.float64) / 8.0 - STEP_OFFSET)


def zero_segments(layout: ScaleLayout, symbols: NDArray[np.integer]) -> NDArray[np.bool_]:
    """symbols [ch, C, F] -> [ch, bands, segments]: whether the band has a zero symbol in
    the segment (only those carry a noise-fill correction)."""
    zeros = (np.asarray(symbols) == 0).astype(np.int64)
    by_band = np.add.reduceat(zeros, np.asarray(layout.band_edges[:-1]), axis=1)
    frames = zeros.shape[-1]
    return np.add.reduceat(by_band, np.arange(0, frames, layout.noise_segment), axis=2) > 0


def zero_regions(layout: ScaleLayout, symbols: NDArray[np.integer]) -> NDArray[np.bool_]:
    """symbols [ch, C, F] -> [ch, R, F]: whether each envelope region of each frame holds
    a zero symbol (only those carry an envelope value)."""
    zeros = (np.asarray(symbols) == 0).astype(np.int64)
    if not layout.envelope_regions:
        return np.zeros((zeros.shape[0], 0, zeros.shape[-1]), dtype=bool)
    first_bins = np.asarray(layout.band_edges)[list(layout.envelope_edges[:-1])]
    return np.add.reduceat(zeros, first_bins, axis=1) > 0
