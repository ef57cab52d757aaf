"""A textbook MDCT transform coder: the reference floor a learned codec must beat (issue 9).

    x (24 kHz mono) -> MDCT (N = 320, sine window of 640, TDAC) -> q = round(X / step)
      -> range coding with a Laplace model whose scale is chosen by context
      [-> mdct-nf: for every band of 21 whose q are all zero, a 3 dB energy index]

Rates are real bytes: a small fixed header (sample count, step index, largest
|q|, the fitted context scales) plus the range coder's words. The entropy model
is two-pass: the encoder fits one Laplace scale per context class (previous
frame's neighbouring magnitudes x frequency region) and sends its 6-bit grid
index, so the decoder rebuilds the same model. The step is searched per clip
(`encode_at_kbps`) so the whole stream lands just under the requested rate.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import constriction
import numpy as np
from numpy.typing import NDArray

SAMPLE_RATE = 24000
HOP = 320                                   # N: coefficients per frame, hop length
#: 21 bands (bin edges; one bin is 37.5 Hz): 8 x 150 Hz, 4 x 300 Hz, 4 x 600 Hz, ...
BAND_EDGES = (0, 4, 8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128,
              160, 192, 224, 256, 320)
REGION_OF_BAND = np.array([0] * 8 + [1] * 8 + [2] * 5)     # 0-1.2, 1.2-4.8, 4.8-12 kHz
MAGNITUDE_CLASSES = (1, 2, 4, 8, 16, 32, 64)                # context: 8 classes of m
NUM_CONTEXTS = 3 * (len(MAGNITUDE_CLASSES) + 1)
SCALE_GRID = 2.0 ** ((np.arange(64) - 24) / 4.0)            # Laplace scales, 1/4 octave
# Energy index meaning "silent band, no fill": -84 dB re step^2, so that quiet passages
# (16-bit dither included) are filled too: -48 dB left holes there (speech mel 0.80 at
# 6 kbps on the held-out bench). Lower floors make 3 kbps unreachable on noisy clips
# (every band of every frame then sends an index).
NF_FLOOR = -28
NF_START = -4           # prediction of a band's first energy index
MAX_Q = 65535
MAX_STEP_INDEX = 1023                       # step 2^12: every coefficient quantizes to zero
_HEADER = struct.Struct("<IHHB")            # num_samples, step index, max |q|, flags
_FLAG_NF = 1


def step_of(index: int) -> float:
    """Quantizer step of a header step index: 1/32-octave grid from 2^-20."""
    return float(2.0 ** (index / 32.0 - 20.0))


def _window() -> NDArray[np.float64]:
    n = np.arange(2 * HOP)
    return np.sin(np.pi * (n + 0.5) / (2 * HOP))


def _basis() -> NDArray[np.float64]:
    """[2N, N] orthonormal MDCT basis times the sine window (Princen-Bradley: TDAC)."""
    n = np.arange(2 * HOP)[:, None]
    k = np.arange(HOP)[None, :]
    kernel = np.cos(np.pi / HOP * (n + 0.5 + HOP / 2) * (k + 0.5))
    return np.sqrt(2.0 / HOP) * _window()[:, None] * kernel


_BASIS = _basis()


def num_frames(num_samples: int) -> int:
    """MDCT frames covering `num_samples` with both overlapping halves (TDAC needs two)."""
    return -(-num_samples // HOP) + 1


def mdct(audio: NDArray[np.floating]) -> NDArray[np.float64]:
    """Coefficients [frames, N] of a signal padded with N zeros in front and to a whole frame."""
    frames = num_frames(audio.shape[0])
    padded = np.zeros((frames + 1) * HOP)
    padded[HOP:HOP + audio.shape[0]] = audio
    blocks = np.lib.stride_tricks.sliding_window_view(padded, 2 * HOP)[::HOP]
    return blocks @ _BASIS


def imdct(coefficients: NDArray[np.float64], num_samples: int) -> NDArray[np.float32]:
    """Windowed inverse and overlap-add; exact inverse of `mdct` (time-domain aliasing cancels)."""
    blocks = coefficients @ _BASIS.T
    out = np.zeros((coefficients.shape[0] + 1) * HOP)
    for half in (0, 1):     # first halves land on frame t, second halves on frame t + 1
        part = blocks[:, half * HOP:(half + 1) * HOP].reshape(-1)
        out[half * HOP:half * HOP + part.shape[0]] += part
    return out[HOP:HOP + num_samples].astype(np.float32)


def contexts(q: NDArray[np.int64]) -> NDArray[np.int64]:
    """Context class [frames, N] of every coefficient, from the previous frame only.

    m = |q[t-1, k-1]| + 2 |q[t-1, k]| + |q[t-1, k+1]|, in 8 log2 classes, times 3
    frequency regions: the decoder computes it frame by frame from decoded values.
    """
    previous = np.zeros_like(q)
    previous[1:] = np.abs(q[:-1])
    padded = np.pad(previous, ((0, 0), (1, 1)))
    m = padded[:, :-2] + 2 * padded[:, 1:-1] + padded[:, 2:]
    region = np.repeat(REGION_OF_BAND, np.diff(BAND_EDGES))
    return np.searchsorted(MAGNITUDE_CLASSES, m, side="right") + 8 * region[None, :]


def _laplace_bits(max_q: int) -> NDArray[np.float64]:
    """[len(SCALE_GRID), max_q + 1] bits of one symbol q with |q| = v under each grid scale.

    P(0) = 1 - exp(-1/(2s)); P(q) = exp(-|q|/s) sinh(1/(2s)) otherwise (both signs alike).
    """
    s = SCALE_GRID[:, None]
    v = np.arange(max_q + 1)[None, :]
    log_p = np.where(v == 0, np.log1p(-np.exp(-0.5 / s)), -v / s + np.log(np.sinh(0.5 / s)))
    return -log_p / np.log(2.0)


def fit_scales(symbols: NDArray[np.int64], classes: NDArray[np.int64], num_classes: int
               ) -> NDArray[np.int64]:
    """Grid index of the Laplace scale that codes each class's symbols in the fewest bits."""
    magnitudes = np.abs(symbols).reshape(-1)
    flat = classes.reshape(-1)
    width = int(magnitudes.max(initial=0)) + 1
    hist = np.zeros((num_classes, width))
    np.add.at(hist, (flat, magnitudes), 1.0)
    return np.argmin(hist @ _laplace_bits(width - 1).T, axis=1)


@dataclass(frozen=True)
class Quantized:
    """What the coder sends: the step index, the symbols and (mdct-nf) the energy indices."""

    step_index: int
    q: NDArray[np.int64]                # [frames, N]
    energy: NDArray[np.int64] | None    # [frames, bands]; NF_FLOOR-1 where not sent


def band_energy_index(coefficients: NDArray[np.float64], step: float) -> NDArray[np.int64]:
    """3 dB index of each band's mean square, relative to step^2, in [NF_FLOOR, -1]."""
    sums = np.add.reduceat(coefficients ** 2, BAND_EDGES[:-1], axis=1)
    mean_square = sums / np.diff(BAND_EDGES)[None, :]
    db = 10.0 * np.log10(mean_square / step ** 2 + 1e-30)
    return np.clip(np.round(db / 3.0), NF_FLOOR, -1).astype(np.int64)


def zero_bands(q: NDArray[np.int64]) -> NDArray[np.bool_]:
    """[frames, bands]: True where every coefficient of the band quantized to zero."""
    return np.add.reduceat(np.abs(q), BAND_EDGES[:-1], axis=1) == 0


def quantize(coefficients: NDArray[np.float64], step_index: int, noise_fill: bool
             ) -> Quantized:
    """Uniform rounding at the indexed step; with `noise_fill`, the energy index of every
    all-zero band (NF_FLOOR - 1 marks bands that send none)."""
    step = step_of(step_index)
    q = np.round(coefficients / step).astype(np.int64)
    energy = None
    if noise_fill:
        energy = np.where(zero_bands(q), band_energy_index(coefficients, step), NF_FLOOR - 1)
    return Quantized(step_index, q, energy)


def energy_predictions(energy: NDArray[np.int64]) -> NDArray[np.float64]:
    """Mean of each sent energy index: the band's last sent index (NF_START at first)."""
    predicted = np.empty(energy.shape)
    last = np.full(energy.shape[1], NF_START)
    for t, row in enumerate(energy):
        predicted[t] = last
        last = np.where(row >= NF_FLOOR, row, last)
    return predicted


def fill_noise(coefficients: NDArray[np.float64], energy: NDArray[np.int64], step: float,
               seed: int = 0) -> NDArray[np.float64]:
    """Fill every band with an energy index above NF_FLOOR with noise of exactly that mean
    square (step^2 x 10^(0.3 e)); such bands are all zero, so the noise is added."""
    widths = np.diff(BAND_EDGES)
    noise = np.random.default_rng(seed).standard_normal(coefficients.shape)
    noise_power = np.add.reduceat(noise ** 2, BAND_EDGES[:-1], axis=1) / widths
    target = np.where(energy > NF_FLOOR, step ** 2 * 10.0 ** (0.3 * energy), 0.0)
    gain = np.sqrt(target / np.maximum(noise_power, 1e-30))
    return coefficients + noise * np.repeat(gain, widths, axis=1)


def _laplace(bound: int) -> object:
    return constriction.stream.model.QuantizedLaplace(-bound, bound)


def _energy_model() -> object:
    return constriction.stream.model.QuantizedLaplace(NF_FLOOR, -1)


def encode(quantized: Quantized, num_samples: int) -> bytes:
    """The stream: header, context scale indices, [energy scale index], range-coder words."""
    q, energy = quantized.q, quantized.energy
    max_q = int(np.abs(q).max(initial=0))
    if max_q > MAX_Q:
        raise ValueError(f"step too small: |q| reaches {max_q} > {MAX_Q}")
    classes = contexts(q)
    scales = fit_scales(q, classes, NUM_CONTEXTS)
    coder = constriction.stream.queue.RangeEncoder()
    coder.encode(q.reshape(-1).astype(np.int32), _laplace(max(max_q, 1)),
                 np.zeros(q.size), SCALE_GRID[scales[classes]].reshape(-1))
    side = bytes(scales.astype(np.uint8))
    if energy is not None:
        sent = energy >= NF_FLOOR
        predicted = energy_predictions(energy)[sent]
        delta = energy[sent] - predicted.astype(np.int64)
        energy_scale = int(fit_scales(delta, np.zeros_like(delta), 1)[0])
        coder.encode(energy[sent].astype(np.int32), _energy_model(), predicted,
                     np.full(predicted.shape, SCALE_GRID[energy_scale]))
        side += bytes([energy_scale])
    flags = _FLAG_NF if energy is not None else 0
    header = _HEADER.pack(num_samples, quantized.step_index, max_q, flags)
    return header + side + coder.get_compressed().astype("<u4").tobytes()


def decode(data: bytes) -> NDArray[np.float32]:
    """Audio [samples] at SAMPLE_RATE from a stream written by `encode`."""
    num_samples, step_index, max_q, flags = _HEADER.unpack_from(data)
    offset = _HEADER.size + NUM_CONTEXTS + (1 if flags & _FLAG_NF else 0)
    scales = np.frombuffer(data, np.uint8, NUM_CONTEXTS, _HEADER.size).astype(np.int64)
    words = np.frombuffer(data[offset:], "<u4").astype(np.uint32)
    coder = constriction.stream.queue.RangeDecoder(words)
    q = np.zeros((num_frames(num_samples), HOP), np.int64)
    model, zeros = _laplace(max(max_q, 1)), np.zeros(HOP)
    for t in range(q.shape[0]):
        previous = q[t - 1] if t else q[t]      # q[t] is still all zero here
        classes = contexts(np.vstack([previous, q[t]]))[1]
        q[t] = coder.decode(model, zeros, SCALE_GRID[scales[classes]])
    step = step_of(step_index)
    coefficients = q * step
    if flags & _FLAG_NF:
        energy = _decode_energy(coder, q, int(data[offset - 1]))
        coefficients = fill_noise(coefficients, energy, step)
    return imdct(coefficients, num_samples)


def _decode_energy(coder: object, q: NDArray[np.int64], scale_index: int
                   ) -> NDArray[np.int64]:
    """Energy indices of the all-zero bands, frame by frame (prediction = last sent)."""
    zero = zero_bands(q)
    energy = np.full(zero.shape, NF_FLOOR - 1, np.int64)
    last = np.full(zero.shape[1], float(NF_START))
    model, scale = _energy_model(), SCALE_GRID[scale_index]
    for t in range(zero.shape[0]):
        count = int(zero[t].sum())
        if count:
            energy[t, zero[t]] = coder.decode(model, last[zero[t]], np.full(count, scale))
            last[zero[t]] = energy[t, zero[t]]
    return energy


def encode_at_kbps(audio: NDArray[np.floating], kbps: float, noise_fill: bool) -> bytes:
    """The stream with the finest step whose whole size stays within `kbps` (24 kHz audio).

    Size is not monotonic in the step at the coarse end (with noise filling, every band
    that empties starts sending an energy index), so the search walks down in octaves
    from the coarsest step until streams grow past 4x the budget, keeps the finest
    octave that fits, then bisects the octave below it. A step is only accepted after its real encoded size
    was measured under the budget.
    """
    coefficients = mdct(audio)
    budget_bytes = int(kbps * 1000.0 * audio.shape[0] / SAMPLE_RATE / 8.0)
    peak = float(np.abs(coefficients).max(initial=1e-9))
    finest = max(0, int(np.ceil(32.0 * (np.log2(peak / (MAX_Q - 1)) + 20.0))))

    def stream(index: int) -> bytes:
        return encode(quantize(coefficients, index, noise_fill), audio.shape[0])

    hi, best = -1, b""
    for index in range(MAX_STEP_INDEX, finest - 1, -32):
        candidate = stream(index)
        if len(candidate) <= budget_bytes:
            hi, best = index, candidate
        elif len(candidate) > 4 * budget_bytes:     # deep in the monotonic (fine) region
            break
    if hi < 0:
        raise ValueError(f"{kbps:g} kbps is below this coder's floor on this clip")
    lo = max(finest, hi - 31)
    while lo < hi:
        middle = (lo + hi) // 2
        candidate = stream(middle)
        if len(candidate) <= budget_bytes:
            hi, best = middle, candidate
        else:
            lo = middle + 1
    return best
