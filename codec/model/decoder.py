"""Synthesis transform: latent y_hat [B, C, F] -> waveform [B, 1, F * hop]."""

from __future__ import annotations

from torch import Tensor, nn

from codec.model.layers import Snake, residual_stack, strided_kernel


class Decoder(nn.Module):
    """Mirror of the encoder with transposed convolutions.

    ::

        y_hat [B,C,F] -> conv k=7 to channels[0]
          -> for each stage i: residual units at channels[i]
             -> Snake -> transposed conv stride strides[i] to channels[i+1] (or 1 at the end)
          -> x_hat [B, 1, F * prod(strides)]

    The last transposed conv (stride = the encoder's stem stride) is a learned
    synthesis filterbank, so nothing runs at 24 kHz with many channels.
    """

    def __init__(self, channels: tuple[int, ...], strides: tuple[int, ...],
                 latent_channels: int, dilations: tuple[int, ...] = (1, 3)) -> None:
        super().__init__()
        if len(channels) != len(strides):
            raise ValueError("decoder needs one width per stride")
        layers: list[nn.Module] = [nn.Conv1d(latent_channels, channels[0], 7, padding=3)]
        for i, width in enumerate(channels):
            out = channels[i + 1] if i + 1 < len(channels) else 1
            kernel, pad = strided_kernel(strides[i])
            layers += residual_stack(width, dilations)
            layers += [Snake(width), nn.ConvTranspose1d(width, out, kernel, strides[i], pad)]
        self.net = nn.Sequential(*layers)

    def forward(self, y_hat: Tensor) -> Tensor:
        """y_hat [B, latent_channels, F] -> x_hat [B, 1, F * hop]."""
        return self.net(y_hat)
