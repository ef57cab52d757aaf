"""The one definition of every quality and rate figure aec reports.

The CLI (`aec roundtrip`), the tests, training evaluation and `bench/` all call
these functions, so a number printed anywhere means the same thing everywhere.
Pure numpy, float64 internally, deterministic.

Signals are `[samples]` or `[channels, samples]`; reference and estimate must
have the same shape. Multi-channel signals are scored jointly: energies are
summed over all channels (for SI-SDR each channel gets its own scale factor),
and the mel distance averages over channels.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "MEL_SCALES",
    "MEL_FLOOR",
    "snr_db",
    "si_sdr_db",
    "mel_distance",
    "bitrate_kbps",
    "ratio_db",
]

#: (n_fft, n_mels) pairs of the multi-scale mel distance; hop = n_fft // 4.
MEL_SCALES: tuple[tuple[int, int], ...] = ((512, 32), (1024, 64), (2048, 128))
#: Floor on mel magnitudes before log10, so silence does not dominate the distance.
MEL_FLOOR = 1e-5
# Frames per STFT block: bounds memory for long signals (about 32 MB at n_fft 2048).
_FRAMES_PER_BLOCK = 2048


def _as_pair(reference: NDArray[np.generic], estimate: NDArray[np.generic]
             ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Check shapes and return both signals as float64 `[channels, samples]`."""
    ref = np.asarray(reference, dtype=np.float64)
    est = np.asarray(estimate, dtype=np.float64)
    if ref.shape != est.shape:
        raise ValueError(f"reference shape {ref.shape} != estimate shape {est.shape}")
    if ref.ndim not in (1, 2):
        raise ValueError(f"expected [samples] or [channels, samples], got shape {ref.shape}")
    return np.atleast_2d(ref), np.atleast_2d(est)


def ratio_db(signal_energy: float, noise_energy: float) -> float:
    """10 log10(signal / noise) with the limits spelled out: +inf for no noise."""
    if noise_energy == 0.0:
        return math.inf
    if signal_energy == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal_energy / noise_energy)


def snr_db(reference: NDArray[np.generic], estimate: NDArray[np.generic]) -> float:
    """Signal-to-noise ratio in dB: 10 log10(sum ref^2 / sum (ref - est)^2).

    Sums run over all channels and samples. Identical signals give +inf; a silent
    reference with a non-silent error gives -inf. Not scale invariant: a decoder
    that gets the level wrong is penalised.
    """
    ref, est = _as_pair(reference, estimate)
    return ratio_db(float(np.sum(ref * ref)), float(np.sum((ref - est) ** 2)))


def si_sdr_db(reference: NDArray[np.generic], estimate: NDArray[np.generic]) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019), no mean removal.

    Per channel, the reference is scaled by alpha = <est, ref> / <ref, ref> to the
    target t = alpha * ref; the residual is e = est - t. The result is
    10 log10(sum_c |t_c|^2 / sum_c |e_c|^2). A silent reference channel has
    alpha = 0 (all of its estimate counts as error). Identical signals give +inf.
    """
    ref, est = _as_pair(reference, estimate)
    ref_energy = np.sum(ref * ref, axis=1)
    dot = np.sum(ref * est, axis=1)
    alpha = np.divide(dot, ref_energy, out=np.zeros_like(dot), where=ref_energy > 0)
    target = alpha[:, None] * ref
    residual = est - target
    return ratio_db(float(np.sum(target * target)), float(np.sum(residual * residual)))


def _hz_to_mel(hz: NDArray[np.float64]) -> NDArray[np.float64]:
    """HTK mel scale: 2595 log10(1 + f / 700)."""
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: NDArray[np.float64]) -> NDArray[np.float64]:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> NDArray[np.float64]:
    """Triangular HTK-mel filters from 0 Hz to Nyquist, peak 1, `[n_mels, n_fft // 2 + 1]`."""
    bin_hz = np.arange(n_fft // 2 + 1, dtype=np.float64) * sample_rate / n_fft
    edges_mel = np.linspace(0.0, float(_hz_to_mel(np.array(sample_rate / 2.0))), n_mels + 2)
    edges_hz = _mel_to_hz(edges_mel)
    lower, centre, upper = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (bin_hz[None, :] - lower) / (centre - lower)
    falling = (upper - bin_hz[None, :]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling))


def _frame_blocks(signal: NDArray[np.float64], n_fft: int) -> Iterator[NDArray[np.float64]]:
    """Yield `[frames, n_fft]` blocks of hop-n_fft/4 frames of the zero-padded signal.

    The signal gets n_fft // 2 zeros on each side (centred frames) and enough at the
    end for a whole last frame, so every sample, even of a 1-sample signal, is seen.
    """
    hop = n_fft // 4
    num_frames = signal.shape[0] // hop + 1
    padded_length = (num_frames - 1) * hop + n_fft
    padded = np.zeros(padded_length, dtype=np.float64)
    padded[n_fft // 2: n_fft // 2 + signal.shape[0]] = signal
    for start in range(0, num_frames, _FRAMES_PER_BLOCK):
        stop = min(num_frames, start + _FRAMES_PER_BLOCK)
        offsets = np.arange(start, stop)[:, None] * hop + np.arange(n_fft)[None, :]
        yield padded[offsets]


def _log_mel_l1(ref: NDArray[np.float64], est: NDArray[np.float64], sample_rate: int,
                n_fft: int, n_mels: int) -> tuple[float, int]:
    """Sum of |log10 mel(ref) - log10 mel(est)| over one channel, and the entry count."""
    filters = mel_filterbank(sample_rate, n_fft, n_mels).T
    window = np.hanning(n_fft + 1)[:-1]    # periodic Hann
    total, count = 0.0, 0
    for ref_frames, est_frames in zip(_frame_blocks(ref, n_fft), _frame_blocks(est, n_fft)):
        ref_mel = np.abs(np.fft.rfft(ref_frames * window, axis=1)) @ filters
        est_mel = np.abs(np.fft.rfft(est_frames * window, axis=1)) @ filters
        diff = np.log10(np.maximum(ref_mel, MEL_FLOOR)) - np.log10(np.maximum(est_mel, MEL_FLOOR))
        total += float(np.sum(np.abs(diff)))
        count += diff.size
    return total, count


def mel_distance(reference: NDArray[np.generic], estimate: NDArray[np.generic],
                 sample_rate: int) -> float:
    """Multi-scale log-mel L1 distance; 0 for identical signals, lower is better.

    For each (n_fft, n_mels) in `MEL_SCALES`: periodic Hann window, hop n_fft // 4,
    centred frames with zero padding, magnitude spectrum, HTK mel filterbank
    (0 Hz to Nyquist, triangles of peak 1), then log10(max(mel, MEL_FLOOR)). The
    distance of a scale is the mean absolute difference over all channels,
    frames and mel bands; the result is the mean over the scales. Audio at full
    scale is +-1.0; typical codec figures are 0.1 (transparent) to 1+ (poor).
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    ref, est = _as_pair(reference, estimate)
    per_scale = []
    for n_fft, n_mels in MEL_SCALES:
        total, count = 0.0, 0
        for ref_channel, est_channel in zip(ref, est):
            channel_total, channel_count = _log_mel_l1(ref_channel, est_channel, sample_rate,
                                                       n_fft, n_mels)
            total, count = total + channel_total, count + channel_count
        per_scale.append(total / count if count else 0.0)
    return float(np.mean(per_scale))


def bitrate_kbps(size_bytes: int, num_samples: int, sample_rate: int) -> float:
    """Rate in kbit/s: size_bytes * 8 / duration / 1000, duration = num_samples / sample_rate.

    Pass the whole file size for the honest rate, or the payload bytes alone for
    the coder's rate. `num_samples` counts samples per channel. A zero-length
    signal has no defined rate; 0.0 is returned for it.
    """
    if size_bytes < 0 or num_samples < 0 or sample_rate <= 0:
        raise ValueError(f"invalid bitrate arguments: size_bytes={size_bytes}, "
                         f"num_samples={num_samples}, sample_rate={sample_rate}")
    if num_samples == 0:
        return 0.0
    return size_bytes * 8.0 * sample_rate / num_samples / 1000.0
