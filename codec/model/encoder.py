"""Analysis transform: waveform [B, 1, T] -> latent y [B, C, T / hop]."""

from __future__ import annotations

from torch import Tensor, nn

from codec.model.layers import Snake, residual_stack, strided_kernel


class Encoder(nn.Module):
    """Strided 1-D conv encoder (SEANet-like, built for CPU speed).

    ::

        x [B,1,T] -> conv k=2s0 stride s0 (a learned filterbank "patchify" stem)
          -> for each stage i: residual units (dilations) at width channels[i]
             -> Snake -> conv stride s_{i+1} to channels[i+1]
          -> Snake -> conv k=3 -> y [B, latent_channels, T / prod(strides)]

    The first stride is large so that no convolution runs at the full 24 kHz
    rate with few channels: those layers are memory-bound on CPU and decide speed.
    """

    def __init__(self, channels: tuple[int, ...], strides: tuple[int, ...],
                 latent_channels: int, dilations: tuple[int, ...] = (1, 3)) -> None:
        super().__init__()
        if len(channels) != len(strides):
            raise ValueError("encoder needs one width per stride")
        kernel, pad = strided_kernel(strides[0])
        layers: list[nn.Module] = [nn.Conv1d(1, channels[0], kernel, strides[0], pad)]
        for i, width in enumerate(channels):
            layers += residual_stack(width, dilations)
            if i + 1 < len(channels):
                kernel, pad = strided_kernel(strides[i + 1])
                layers += [Snake(width),
                           nn.Conv1d(width, channels[i + 1], kernel, strides[i + 1], pad)]
        layers += [Snake(channels[-1]), nn.Conv1d(channels[-1], latent_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """x [B, 1, T] (T a multiple of hop) -> y [B, latent_channels, T // hop]."""
        return self.net(x)
