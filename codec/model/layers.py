"""Building blocks shared by encoder and decoder: Snake activation, residual units,
and the padding rules that keep every strided layer length-exact."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Snake(nn.Module):
    """Snake activation x + sin^2(a x) / a with a learned per-channel frequency a.

    A periodic inductive bias that helps tonal audio (DAC, BigVGAN); elementwise,
    so it costs nothing next to the convolutions.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.log_alpha = nn.Parameter(torch.zeros(1, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        alpha = self.log_alpha.exp()
        return x + torch.sin(alpha * x).pow(2) / (alpha + 1e-9)


class ResidualUnit(nn.Module):
    """x + 1x1(act(dilated k-conv(act(x)))): widens the receptive field cheaply.

    "Same" padding, so the time length is unchanged; the residual branch starts
    near zero (small init of the last conv) to keep early training stable.
    """

    def __init__(self, channels: int, dilation: int, kernel_size: int = 7) -> None:
        super().__init__()
        pad = (kernel_size - 1) * dilation // 2
        self.act1 = Snake(channels)
        self.conv1 = nn.Conv1d(channels, channels, kernel_size, dilation=dilation, padding=pad)
        self.act2 = Snake(channels)
        self.conv2 = nn.Conv1d(channels, channels, 1)
        nn.init.normal_(self.conv2.weight, std=0.1 / channels**0.5)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(self.act2(self.conv1(self.act1(x))))


def strided_kernel(stride: int) -> tuple[int, int]:
    """(kernel_size, padding) of a stride-s conv whose output is exactly T / s long.

    k = 2s (+1 for odd s) and p = ceil(s / 2) make both Conv1d (T -> T/s) and
    ConvTranspose1d (F -> F*s) length-exact, for every T that is a multiple of s.
    """
    kernel = 2 * stride + (stride % 2)
    return kernel, (stride + 1) // 2


def residual_stack(channels: int, dilations: tuple[int, ...]) -> list[nn.Module]:
    """One residual unit per dilation, in forward order."""
    return [ResidualUnit(channels, d) for d in dilations]
