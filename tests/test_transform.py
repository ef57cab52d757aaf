"""The transform codec's torch side: MDCT invertibility, noise filling, post-filter identity."""

from __future__ import annotations

import numpy as np
import torch

from codec.model.mdct import IMDCT, MDCT, TAIL_FRAMES
from codec.model.transform import PostFilter, TransformQuantizer, frame_gains, quantize
from codec.scales import ScaleLayout, step_index, step_size


def test_mdct_pair_reconstructs_every_sample_after_the_delay() -> None:
    n = 320
    x = torch.randn(2, 1, n * 9 + 123, dtype=torch.float64)
    frames = -(-(x.shape[-1] + n // 2) // n) + TAIL_FRAMES
    padded = torch.nn.functional.pad(x, (0, frames * n - x.shape[-1]))
    y = IMDCT(n)(MDCT(n)(padded))[..., n // 2: n // 2 + x.shape[-1]]
    assert torch.max(torch.abs(y - x)) < 1e-6     # float32 basis


def test_mdct_is_orthonormal_in_energy() -> None:
    x = torch.randn(1, 1, 320 * 50)
    y = MDCT(320)(torch.nn.functional.pad(x, (0, 320)))
    ratio = float(y.pow(2).sum() / x.pow(2).sum())
    assert abs(ratio - 1.0) < 0.02


LAYOUT = ScaleLayout((0, 40, 160, 320), levels=8, gain_max=47, noise_segment=4)


def test_noise_fill_matches_the_zeroed_energy() -> None:
    """With noise_rms set to what was zeroed and no correction, band energy comes back."""
    rng = np.random.default_rng(0)
    y = torch.from_numpy(rng.normal(0, 1e-3, (1, 320, 40))).float()
    gains = frame_gains(y, LAYOUT)
    step = 150
    q = quantize(y, gains, step, LAYOUT)
    assert (q == 0).float().mean() > 0.9
    quantizer = TransformQuantizer(LAYOUT)
    steps = step_size(step_index(LAYOUT, gains.numpy(), step))[:, None, :]
    zero_rms = float(np.sqrt(np.mean((y.numpy() / steps)[q.numpy() == 0] ** 2)))
    quantizer.noise_rms.fill_(zero_rms)
    corrections, _ = quantizer.noise_corrections(y, gains, q, step)
    assert np.abs(corrections).max() <= 1
    latent = quantizer.dequantize(q.numpy(), gains.numpy(), step, corrections, seed=5)
    filled = latent[:, :-1].numpy()
    ratio_db = 10 * np.log10(np.mean(filled ** 2) / np.mean(y.numpy() ** 2))
    assert abs(ratio_db) < 1.6
    again = quantizer.dequantize(q.numpy(), gains.numpy(), step, corrections, seed=5)
    assert torch.equal(latent, again)                       # seeded: decodes the same


def test_untrained_postfilter_is_the_identity() -> None:
    latent = torch.randn(2, 321, 12)
    latent[:, -1] = -7.0
    out = PostFilter(320, 32, 2)(latent)
    assert torch.equal(out, latent[:, :-1])


def _frame_band_db(latent: torch.Tensor, bins: slice) -> np.ndarray:
    return 10 * np.log10(np.mean(latent[0, bins].numpy().astype(np.float64) ** 2, axis=0))


def test_noise_envelope_follows_the_frames_that_segments_average_away() -> None:
    """Two loud frames in a 4-frame noise segment: the envelope puts the fill's energy in
    those frames, where per-segment corrections alone spread it over all four."""
    rng = np.random.default_rng(1)
    y = rng.normal(0, 1e-3, (1, 320, 40))
    y[:, 40:, 10:12] *= 4.0                                  # +12 dB in bands 1-2, frames 10-11
    y = torch.from_numpy(y).float()
    gains = frame_gains(y, LAYOUT)
    step = 150
    q = quantize(y, gains, step, LAYOUT)
    steps = step_size(step_index(LAYOUT, gains.numpy(), step))[:, None, :]
    zero_rms = float(np.sqrt(np.mean((y.numpy() / steps)[q.numpy() == 0] ** 2)))
    truth = _frame_band_db(y, slice(40, 320))
    errors = {}
    for edges in ((), (0, 1, 3)):
        layout = ScaleLayout((0, 40, 160, 320), levels=8, gain_max=47, noise_segment=4,
                             envelope_edges=edges)
        quantizer = TransformQuantizer(layout)
        quantizer.noise_rms.fill_(zero_rms)
        corrections, envelope = quantizer.noise_corrections(y, gains, q, step)
        assert envelope.shape == (1, layout.envelope_regions, 40)
        latent = quantizer.dequantize(q.numpy(), gains.numpy(), step, corrections, seed=2,
                                      envelope=envelope if edges else None)
        errors[edges] = np.abs(_frame_band_db(latent, slice(40, 320)) - truth)[8:12]
        if edges:
            assert envelope[0, 1, 10] == envelope[0, 1, 11] > envelope[0, 1, 9]
            assert envelope[0, 0, 10] < envelope[0, 1, 10]   # band 0 was not boosted
    assert errors[(0, 1, 3)].max() < 1.5 < 3.0 < errors[()].max()   # measured 1.4 and 3.4 dB
    assert errors[(0, 1, 3)].mean() < 0.5 * errors[()].mean()
