"""`TrainableCodec`: encoder, quantizer, prior and decoder in one module for training.

::

    x [B,1,T] -> Encoder -> y -> RateQuantizer(rates[b]) -> (z_noisy, y_hat)
                                  z_noisy -> FactorizedPrior -> bits per item [B]
                                  y_hat   -> Decoder -> x_hat [B,1,T]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from codec.model import FactorizedPrior
from codec.train.phases import NULL_TIMER, NullTimer
from codec.weights import ModelConfig, build_modules


@dataclass(frozen=True)
class CodecOutput:
    """What one training forward returns."""

    x_hat: Tensor          # [B, 1, T]
    bits: Tensor           # [B] estimated bits per item (differentiable w.r.t. the encoder)
    prior_bits: Tensor     # scalar: bits on the detached latent (trains only the prior)
    coded_bits: Tensor     # [B] bits of the rounded symbols (what the coder will spend), no grad


class TrainableCodec(nn.Module):
    """All learned parts; `forward` is the training view (mixed quantization)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder, self.decoder, self.quantizer = build_modules(config)
        self.prior = FactorizedPrior(config.num_tables)

    def forward(self, x: Tensor, rates: Tensor, generator: torch.Generator | None = None,
                bf16: bool = False, timer: NullTimer = NULL_TIMER) -> CodecOutput:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            y = self.encoder(x)
        z_noisy, y_hat = self.quantizer.train_forward(y.float(), rates, generator)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            x_hat = self.decoder(y_hat)
        with timer.phase("rate"):
            return self._rate_terms(x, y, x_hat, z_noisy, rates)

    def _rate_terms(self, x: Tensor, y: Tensor, x_hat: Tensor, z_noisy: Tensor,
                    rates: Tensor) -> CodecOutput:
        """Bits under the prior: per item (trains the encoder), detached (the prior), coded."""
        with torch.no_grad():
            z_rounded = torch.round(self.quantizer.scale(y.float(), rates))
        bits = torch.zeros(x.shape[0], device=x.device)
        coded = torch.zeros(x.shape[0], device=x.device)
        prior_bits = x.new_zeros(())
        for r in torch.unique(rates).tolist():
            idx = torch.nonzero(rates == r).squeeze(1)
            bits = bits.index_add(0, idx, self._item_bits(z_noisy[idx], r))
            prior_bits = prior_bits + self._item_bits(z_noisy[idx].detach(), r).sum()
            with torch.no_grad():
                coded = coded.index_add(0, idx, self._item_bits(z_rounded[idx], r))
        return CodecOutput(x_hat.float(), bits, prior_bits, coded)

    def _item_bits(self, z: Tensor, rate_point: int) -> Tensor:
        """z [n, C, F] at one rate point -> bits per item [n]."""
        n, c, f = z.shape
        rows = z.permute(1, 0, 2).reshape(c, n * f)
        p = self.prior.likelihood(rows, rate_point * c).clamp_min(1e-9)
        return -torch.log2(p).view(c, n, f).sum(dim=(0, 2))
