"""Frame geometry derived from the conv layers (DAC `get_delay` style), not hard-coded.

`Geometry.encoder_context_frames` / `decoder_context_frames` are how many latent
frames of extra context on each side a window needs so that windowed inference
equals whole-signal inference: every layer's dependency cone of the kept
frames then lies inside the window, so the zero padding at the window edges is
never read. Windows must start on a frame boundary (a multiple of `hop_length`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class Geometry:
    """Time layout of the model at the model rate."""

    hop_length: int               # model-rate samples per latent frame
    encoder_context_frames: int   # frames of context each side for exact windowed encoding
    decoder_context_frames: int   # frames of context each side for exact windowed decoding
    encoder_delay: int            # model-rate samples the decoder output lags the input
    tail_frames: int = 0          # frames coded past ceil((samples + delay) / hop)


@dataclass(frozen=True)
class _Span:
    """Positions m*j + [lo, hi] that output index j depends on, at some layer."""

    m: int
    lo: int
    hi: int


def _back_through_conv(span: _Span, conv: nn.Conv1d) -> _Span:
    (k,), (s,), (d,), (p,) = conv.kernel_size, conv.stride, conv.dilation, conv.padding
    return _Span(span.m * s, span.lo * s - p, span.hi * s - p + (k - 1) * d)


def _back_through_transposed(span: _Span, conv: nn.ConvTranspose1d) -> _Span:
    (k,), (s,), (d,), (p,) = conv.kernel_size, conv.stride, conv.dilation, conv.padding
    if span.m % s:
        raise ValueError(f"transposed stride {s} does not divide the span multiplier {span.m}")
    lo = math.ceil((span.lo + p - (k - 1) * d) / s)
    return _Span(span.m // s, lo, math.floor((span.hi + p) / s))


def dependency_span(module: nn.Module, out_span: _Span) -> _Span:
    """Walk the module's conv layers backwards (they are declared in forward order)."""
    span = out_span
    convs = [m for m in module.modules() if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d))]
    for conv in reversed(convs):
        if isinstance(conv, nn.ConvTranspose1d):
            span = _back_through_transposed(span, conv)
        else:
            span = _back_through_conv(span, conv)
    return span


def compute_geometry(encoder: nn.Module, decoder: nn.Module, hop_length: int) -> Geometry:
    """Context frames each side for encoder and decoder; delay from padding symmetry."""
    enc = dependency_span(encoder, _Span(1, 0, 0))           # frame j -> input samples
    if enc.m != hop_length:
        raise ValueError(f"encoder strides give hop {enc.m}, config says {hop_length}")
    enc_reach = max(-enc.lo, enc.hi - (hop_length - 1), 0)
    dec = dependency_span(decoder, _Span(hop_length, 0, hop_length - 1))  # samples -> frames
    if dec.m != 1:
        raise ValueError(f"decoder strides give hop {hop_length // max(dec.m, 1)}")
    dec_reach = max(-dec.lo, dec.hi, 0)
    return Geometry(
        hop_length=hop_length,
        encoder_context_frames=math.ceil(enc_reach / hop_length),
        decoder_context_frames=dec_reach,
        # Every layer pads symmetrically ("same"/length-exact), so frame j covers
        # samples [j*hop, (j+1)*hop) on both sides: no delay to drop.
        encoder_delay=0,
    )
