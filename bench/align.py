"""Time alignment of decoded audio to its reference.

Codecs add delay (encoder look-ahead, MP3 and AAC priming, resampler filters),
and waveform metrics are meaningless on misaligned signals. We find the lag
that maximises the cross-correlation within a bounded window and shift the
decoded signal by it, then cut or zero-pad it to the reference length.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def find_lag(reference: NDArray[np.floating], estimate: NDArray[np.floating],
             max_lag: int) -> int:
    """The lag L in [-max_lag, max_lag] maximising sum_n estimate[n + L] * reference[n].

    A positive L means the estimate is late by L samples. Silent or uncorrelated
    inputs (no positive correlation) give 0. Computed with one real FFT.
    """
    if max_lag < 0:
        raise ValueError(f"max_lag must be >= 0, got {max_lag}")
    ref = np.asarray(reference, dtype=np.float64)
    est = np.asarray(estimate, dtype=np.float64)
    size = 1 << int(np.ceil(np.log2(max(2, ref.shape[0] + est.shape[0]))))
    corr = np.fft.irfft(np.fft.rfft(est, size) * np.conj(np.fft.rfft(ref, size)), size)
    lags = np.arange(-max_lag, max_lag + 1)
    values = corr[lags % size]
    best = int(np.argmax(values))
    return int(lags[best]) if values[best] > 0 else 0


def apply_lag(estimate: NDArray[np.floating], lag: int, length: int) -> NDArray[np.float32]:
    """estimate shifted left by `lag` samples, cut or zero-padded to `length`."""
    out = np.zeros(length, dtype=np.float32)
    start = max(0, lag)
    dest = max(0, -lag)
    count = max(0, min(length - dest, estimate.shape[0] - start))
    out[dest:dest + count] = estimate[start:start + count]
    return out


def align(reference: NDArray[np.floating], estimate: NDArray[np.floating],
          max_lag: int) -> tuple[NDArray[np.float32], int]:
    """Aligned estimate (same length as reference) and the lag that was removed."""
    lag = find_lag(reference, estimate, max_lag)
    return apply_lag(estimate, lag, reference.shape[0]), lag
