"""Per-rate-point scalar quantization: one latent, several step sizes (gain units).

A rate point r scales the latent by a learned gain vector before rounding and
by a learned inverse gain after (Cui et al., "gain units"), so one encoder and
one decoder serve every rate; the step for channel c at rate r is 1 / gain[r, c].

::

    y [B,C,F] --* gain[r]--> z --round--> symbols (int32) --* inv_gain[r]--> y_hat
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class RateQuantizer(nn.Module):
    """Learned gains [num_rates, C]; rounding at inference, mixed rounding in training."""

    def __init__(self, num_rates: int, latent_channels: int,
                 init_gains: tuple[float, ...] | None = None) -> None:
        super().__init__()
        gains = init_gains or tuple(2.0 ** (1.5 * r - 1.0) for r in range(num_rates))
        if len(gains) != num_rates:
            raise ValueError(f"{len(gains)} initial gains for {num_rates} rate points")
        log_g = torch.tensor([math.log(g) for g in gains]).unsqueeze(1).repeat(1, latent_channels)
        self.log_gain = nn.Parameter(log_g.clone())
        self.log_inv_gain = nn.Parameter(-log_g.clone())

    @property
    def num_rates(self) -> int:
        return self.log_gain.shape[0]

    def _check(self, rate_point: int) -> None:
        if not 0 <= rate_point < self.num_rates:
            raise ValueError(f"rate point {rate_point} not in 0..{self.num_rates - 1}")

    def scale(self, y: Tensor, rates: Tensor) -> Tensor:
        """y [B, C, F] * gain[rates[b]] -> z, the latent in units of quantization steps."""
        return y * self.log_gain[rates].exp().unsqueeze(-1)

    def unscale(self, z: Tensor, rates: Tensor) -> Tensor:
        """Inverse of `scale` with the learned inverse gains: steps -> decoder input."""
        return z * self.log_inv_gain[rates].exp().unsqueeze(-1)

    def quantize(self, y: Tensor, rate_point: int) -> Tensor:
        """y [B, C, F] -> int32 symbols [B, C, F] at one rate point."""
        self._check(rate_point)
        rates = torch.full((y.shape[0],), rate_point, dtype=torch.long, device=y.device)
        return torch.round(self.scale(y, rates)).to(torch.int32)

    def dequantize(self, symbols: Tensor, rate_point: int) -> Tensor:
        """int32 symbols [B, C, F] -> float latent y_hat [B, C, F] for the decoder."""
        self._check(rate_point)
        rates = torch.full((symbols.shape[0],), rate_point, dtype=torch.long,
                           device=symbols.device)
        return self.unscale(symbols.to(self.log_gain.dtype), rates)

    def train_forward(self, y: Tensor, rates: Tensor,
                      generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Training view: (z_noisy for the rate term, y_hat for the decoder).

        Mixed quantization (Minnen & Singh 2020): the prior sees z + U(-1/2, 1/2),
        which makes its density match the discrete pmf it is exported to; the
        decoder sees the true rounded value with a straight-through gradient,
        so it learns the exact inputs it gets at inference.
        """
        z = self.scale(y, rates)
        noise = torch.rand(z.shape, generator=generator, device=z.device, dtype=z.dtype) - 0.5
        z_rounded = z + (torch.round(z) - z).detach()
        return z + noise, self.unscale(z_rounded, rates)
