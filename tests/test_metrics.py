"""codec.metrics: exact values on constructed cases, properties on a real clip."""

from __future__ import annotations

import math

import numpy as np
import pytest

from codec.metrics import bitrate_kbps, mel_distance, mel_filterbank, si_sdr_db, snr_db


def test_snr_of_known_noise_level(speech) -> None:
    ref = speech[0][0].astype(np.float64)
    est = ref + 0.1 * ref[::-1]                        # error energy = 1 % of the signal
    expected = 10 * math.log10(np.sum(ref**2) / np.sum((0.1 * ref[::-1]) ** 2))
    assert snr_db(ref, est) == pytest.approx(expected, abs=1e-9)
    assert snr_db(ref, est) == pytest.approx(20.0, abs=1e-6)


def test_snr_limits() -> None:
    x = np.array([0.5, -0.25, 0.125])
    assert snr_db(x, x) == math.inf
    assert snr_db(np.zeros(3), x) == -math.inf
    assert snr_db(x, np.zeros(3)) == 0.0


def test_si_sdr_ignores_gain_but_snr_does_not(speech) -> None:
    ref = speech[0]
    noisy = ref + 0.05 * np.roll(ref, 1234)
    assert si_sdr_db(ref, 0.5 * noisy) == pytest.approx(si_sdr_db(ref, noisy), abs=1e-9)
    assert snr_db(ref, 0.5 * noisy) < snr_db(ref, noisy) - 3.0
    assert si_sdr_db(ref, ref * 3.0) == math.inf


def test_si_sdr_matches_definition_on_orthogonal_error() -> None:
    ref = np.array([1.0, 0.0, 1.0, 0.0])
    est = np.array([2.0, 1.0, 2.0, 0.0])        # 2 * ref + e, e orthogonal to ref
    assert si_sdr_db(ref, est) == pytest.approx(10 * math.log10(8.0 / 1.0))


def test_multichannel_sums_energies(stereo) -> None:
    ref = stereo[0]
    est = ref.copy()
    est[1] += 0.01
    expected = 10 * math.log10(np.sum(ref.astype(np.float64) ** 2) / (0.01**2 * ref.shape[1]))
    assert snr_db(ref, est) == pytest.approx(expected, rel=1e-6)


def test_mel_distance_is_zero_for_identity_and_grows_with_noise(speech) -> None:
    audio, rate = speech
    rng = np.random.default_rng(0)
    assert mel_distance(audio, audio, rate) == 0.0
    small = mel_distance(audio, audio + 0.001 * rng.standard_normal(audio.shape), rate)
    large = mel_distance(audio, audio + 0.05 * rng.standard_normal(audio.shape), rate)
    assert 0.0 < small < large


def test_mel_distance_handles_tiny_and_empty_signals() -> None:
    assert mel_distance(np.zeros((1, 0)), np.zeros((1, 0)), 8000) == 0.0
    assert mel_distance(np.array([0.5]), np.array([0.4]), 8000) > 0.0


def test_mel_filterbank_shape_and_peak() -> None:
    bank = mel_filterbank(24000, 1024, 64)
    assert bank.shape == (64, 513)
    assert np.all(bank >= 0) and np.all(bank.max(axis=1) > 0.5) and bank.max() <= 1.0


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="shape"):
        snr_db(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError):
        mel_distance(np.zeros((1, 2, 3)), np.zeros((1, 2, 3)), 8000)


def test_bitrate() -> None:
    assert bitrate_kbps(750, 24000, 24000) == 6.0
    assert bitrate_kbps(1000, 44100, 44100) == 8.0
    assert bitrate_kbps(100, 0, 24000) == 0.0
    with pytest.raises(ValueError):
        bitrate_kbps(-1, 10, 24000)
