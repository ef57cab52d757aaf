"""The MDCT as a strided convolution pair: the invertible path of the transform codec.

A Conv1d with kernel 2N and stride N whose filters are the MDCT basis times a
sine window *is* an MDCT; the ConvTranspose1d with the same weights is its
inverse (time-domain aliasing cancellation, Princen-Bradley window). So the
codec stays a working transform coder whose fidelity grows with the rate,
whatever the learned layers around it do.

Framing: frame j covers input samples ``[N*j - N, N*j + N)`` with
``D = N / 2`` (the "delay"), and synthesis writes it back to output samples
``[N*j - D, N*j - D + 2N)``, so ``output[n] = input[n - D]``: the decoder drops
``D`` samples at the start (the stream's ``encoder_delay``). With that shift every
kept output sample lies where two frames overlap, including the first one, and
the last one when the stream carries one frame past the signal
(``TAIL_FRAMES``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

TAIL_FRAMES = 1
"""Frames coded past ceil((samples + delay) / N) so the last samples get both overlaps."""


def mdct_basis(n: int) -> Tensor:
    """[n, 2n] float64: sqrt(2/n) * sine window * cos(pi/n (t + 1/2 + n/2)(k + 1/2))."""
    t = torch.arange(2 * n, dtype=torch.float64)
    k = torch.arange(n, dtype=torch.float64)
    window = torch.sin(math.pi * (t + 0.5) / (2 * n))
    phase = math.pi / n * (t[None, :] + 0.5 + n / 2) * (k[:, None] + 0.5)
    return math.sqrt(2.0 / n) * window[None, :] * torch.cos(phase)


class MDCT(nn.Module):
    """x [B, 1, T] (T a multiple of n) -> coefficients [B, n, T / n] (orthonormal TDAC)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.register_buffer("basis", mdct_basis(n).float().unsqueeze(1), persistent=False)

    @property
    def delay(self) -> int:
        return self.n // 2

    def forward(self, x: Tensor) -> Tensor:
        # frame j reads x[n*j - n, n*j + n): n zeros of left padding, T/n frames
        return F.conv1d(F.pad(x, (self.n, 0)), self.basis.to(x.dtype), stride=self.n)


class IMDCT(nn.Module):
    """coefficients [B, n, F] -> x [B, 1, F * n], output[m] = input[m - delay]."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.register_buffer("basis", mdct_basis(n).float().unsqueeze(1), persistent=False)

    def forward(self, coefficients: Tensor) -> Tensor:
        n = self.n
        full = F.conv_transpose1d(coefficients, self.basis.to(coefficients.dtype), stride=n)
        start = n // 2                                     # frame j starts at N*j - D
        return full[..., start: start + coefficients.shape[-1] * n]
