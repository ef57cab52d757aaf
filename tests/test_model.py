"""codec.model: shapes, geometry (windowed == whole-signal), quantizer, prior export,
and the agreement of estimated bits with real entropy-coded bytes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from codec import entropy
from codec.entropy import CdfTable
from codec.model import Decoder, Encoder, FactorizedPrior, RateQuantizer, compute_geometry

STRIDES = (4, 4, 5)
HOP = 80
LATENT = 4


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def nets() -> tuple[Encoder, Decoder]:
    torch.manual_seed(0)
    enc = Encoder((8, 8, 16), STRIDES, LATENT).eval()
    dec = Decoder((16, 8, 8), tuple(reversed(STRIDES)), LATENT).eval()
    return enc, dec


def test_shapes_follow_the_hop(nets: tuple[Encoder, Decoder]) -> None:
    enc, dec = nets
    x = torch.randn(2, 1, 30 * HOP)
    with torch.no_grad():
        y = enc(x)
        assert y.shape == (2, LATENT, 30)
        assert dec(y).shape == (2, 1, 30 * HOP)


def test_geometry_is_derived_from_the_layers(nets: tuple[Encoder, Decoder]) -> None:
    enc, dec = nets
    geo = compute_geometry(enc, dec, HOP)
    assert geo.hop_length == HOP and geo.encoder_delay == 0
    assert geo.encoder_context_frames >= 1 and geo.decoder_context_frames >= 1
    with pytest.raises(ValueError):
        compute_geometry(enc, dec, HOP * 2)


def test_windowed_inference_matches_whole_signal(nets: tuple[Encoder, Decoder]) -> None:
    """Frames [a, b) computed from a window with the geometry's context == whole signal."""
    enc, dec = nets
    geo = compute_geometry(enc, dec, HOP)
    frames, a, b = 60, 25, 35
    x = torch.randn(1, 1, frames * HOP)
    with torch.no_grad():
        y = enc(x)
        c = geo.encoder_context_frames
        y_win = enc(x[..., (a - c) * HOP:(b + c) * HOP])[..., c:c + b - a]
        torch.testing.assert_close(y_win, y[..., a:b], atol=1e-5, rtol=1e-4)
        d = geo.decoder_context_frames
        x_hat = dec(y)
        x_win = dec(y[..., a - d:b + d])[..., d * HOP:(d + b - a) * HOP]
        torch.testing.assert_close(x_win, x_hat[..., a * HOP:b * HOP], atol=1e-5, rtol=1e-4)


def test_too_little_context_shows_seams(nets: tuple[Encoder, Decoder]) -> None:
    """The context is not oversized for nothing: with none, windows differ."""
    enc, _ = nets
    x = torch.randn(1, 1, 60 * HOP)
    with torch.no_grad():
        diff = (enc(x[..., 25 * HOP:35 * HOP]) - enc(x)[..., 25:35]).abs().max()
    assert diff > 1e-4


def test_quantizer_rounds_and_scales_per_rate_point() -> None:
    q = RateQuantizer(3, LATENT, init_gains=(0.5, 2.0, 8.0))
    y = torch.linspace(-3, 3, 5 * LATENT).view(1, LATENT, 5)
    for r, gain in enumerate((0.5, 2.0, 8.0)):
        symbols = q.quantize(y, r)
        assert symbols.dtype == torch.int32
        torch.testing.assert_close(symbols, torch.round(y * gain).to(torch.int32))
        torch.testing.assert_close(q.dequantize(symbols, r), symbols.float() / gain)
    with pytest.raises(ValueError):
        q.quantize(y, 3)


def test_training_view_uses_rounded_values_for_the_decoder() -> None:
    q = RateQuantizer(2, LATENT)
    y = torch.randn(4, LATENT, 7, requires_grad=True)
    rates = torch.tensor([0, 1, 0, 1])
    z_noisy, y_hat = q.train_forward(y, rates, torch.Generator().manual_seed(0))
    z = q.scale(y, rates)
    assert (z_noisy - z).abs().max() <= 0.5
    torch.testing.assert_close(y_hat, q.unscale(torch.round(z), rates))
    y_hat.sum().backward()           # straight-through: gradients reach the encoder side
    assert y.grad is not None and y.grad.abs().sum() > 0


def _fit_prior(symbols: torch.Tensor, steps: int = 200) -> FactorizedPrior:
    """Fit a 1-rate-point prior to integer symbols [C, N] (noise relaxation)."""
    torch.manual_seed(0)
    prior = FactorizedPrior(symbols.shape[0])
    opt = torch.optim.Adam(prior.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        noisy = symbols.float() + torch.rand(symbols.shape, generator=gen) - 0.5
        loss = prior.bits(noisy, 0) / symbols.numel()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return prior


def test_prior_pmfs_are_distributions() -> None:
    prior = FactorizedPrior(6)
    pmfs, offsets = prior.export_pmfs()
    assert len(pmfs) == len(offsets) == 6
    for pmf in pmfs:
        assert np.all(pmf >= 0) and 0.999999 <= pmf.sum() <= 1.0 + 1e-9


def test_estimated_bits_match_coded_bytes_within_one_percent() -> None:
    """Float-prior estimate vs. real constriction bytes through the frozen tables."""
    rng = np.random.default_rng(0)
    scales = np.array([0.3, 1.0, 3.0, 10.0])[:, None]
    symbols = np.round(rng.laplace(size=(4, 4000)) * scales).astype(np.int32)
    prior = _fit_prior(torch.from_numpy(symbols))
    pmfs, offsets = prior.export_pmfs()
    tables = CdfTable.from_pmfs(pmfs, offsets, precision=16)
    index = np.arange(4, dtype=np.int32)
    payload = entropy.encode_symbols(symbols, index, tables)
    with torch.no_grad():
        p = prior.likelihood(torch.from_numpy(symbols).float(), 0).clamp_min(1e-9)
        estimated = float(-torch.log2(p).sum())
    real = len(payload) * 8
    assert abs(real - estimated) / estimated < 0.01, (real, estimated)
    assert np.array_equal(entropy.decode_symbols(payload, index, 4000, tables), symbols)
