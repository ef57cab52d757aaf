"""Learned factorized prior: one univariate density per (rate point, channel) table.

Ballé et al. 2018 ("Variational image compression with a scale hyperprior",
appendix 6.1): a monotone cumulative c(x) = sigmoid(f(x)) built from small
positive matrices and tanh gates. The probability of the integer symbol q is
c(q + 1/2) - c(q - 1/2), exactly what the frozen CDF tables carry after export.
Table index = rate_point * latent_channels + channel (contracts §1).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import Tensor, nn

LIKELIHOOD_FLOOR = 1e-9   # keeps -log2 p finite for symbols far in the tails


class FactorizedPrior(nn.Module):
    """num_tables independent learned densities, evaluated in batch."""

    def __init__(self, num_tables: int, filters: tuple[int, ...] = (3, 3, 3),
                 init_scale: float = 2.0) -> None:
        super().__init__()
        dims = (1, *filters, 1)
        scale = init_scale ** (1 / (len(filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(filters) + 1):
            init = math.log(math.expm1(1 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((num_tables, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(num_tables, dims[i + 1], 1) - 0.5))
            if i < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(num_tables, dims[i + 1], 1)))

    @property
    def num_tables(self) -> int:
        return self.matrices[0].shape[0]

    def _logits_cumulative(self, x: Tensor, tables: slice) -> Tensor:
        """x [T, 1, N] -> logit of the cumulative at x, per table in the slice."""
        for i, matrix in enumerate(self.matrices):
            x = torch.matmul(F.softplus(matrix[tables]), x) + self.biases[i][tables]
            if i < len(self.factors):
                x = x + torch.tanh(self.factors[i][tables]) * torch.tanh(x)
        return x

    def likelihood(self, z: Tensor, first_table: int) -> Tensor:
        """P(bin of width 1 centred on z) for z [C, N], rows using tables first_table + c."""
        tables = slice(first_table, first_table + z.shape[0])
        z = z.unsqueeze(1).float()
        lower = self._logits_cumulative(z - 0.5, tables)
        upper = self._logits_cumulative(z + 0.5, tables)
        # Evaluate on the side of the median where the sigmoids are not saturated.
        sign = -torch.sign(lower + upper).detach()
        p = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return p.squeeze(1)

    def bits(self, z: Tensor, first_table: int) -> Tensor:
        """Sum of -log2 P over z [C, N] (a differentiable rate estimate in bits)."""
        p = self.likelihood(z, first_table).clamp_min(LIKELIHOOD_FLOOR)
        return -torch.log2(p).sum()

    @torch.no_grad()
    def export_pmfs(self, max_symbol: int = 4096, tail_mass: float = 1e-7,
                    max_length: int = 1024) -> tuple[list[NDArray[np.float64]], list[int]]:
        """Per table: pmf over the integer range that holds all but tail_mass, and its offset.

        A very wide density gets a larger tail mass (x10 at a time) until its range
        fits max_length entries: every entry costs at least one count of the
        integer table, so hundreds of far-tail entries would not fit 2**16.
        Evaluated in float64 so the tails are resolved. Symbols outside a
        table's range are still coded exactly, through the escape entry of the
        integer tables (codec.entropy).
        """
        prior = copy.deepcopy(self).double().cpu()
        grid = torch.arange(-max_symbol, max_symbol + 1, dtype=torch.float64)
        edges = torch.cat([grid - 0.5, grid[-1:] + 0.5]).view(1, 1, -1)
        edges = edges.expand(self.num_tables, 1, -1)
        cdfs = torch.sigmoid(prior._logits_cumulative(edges, slice(None))).squeeze(1).numpy()
        pmfs: list[NDArray[np.float64]] = []
        offsets: list[int] = []
        for cdf in cdfs:
            lo, hi = _support(cdf, tail_mass)
            tail = tail_mass
            while hi - lo + 1 > max_length and tail < 0.1:
                tail *= 10
                lo, hi = _support(cdf, tail)
            hi = min(hi, lo + max_length - 1)
            pmfs.append(np.clip(np.diff(cdf)[lo:hi + 1], 0.0, 1.0))
            offsets.append(int(grid[lo].item()))
        return pmfs, offsets

def _support(cdf: NDArray[np.float64], tail_mass: float) -> tuple[int, int]:
    """Bins [lo, hi] between the tail_mass/2 quantiles; cdf holds the bin edges."""
    last = len(cdf) - 2
    lo = int(np.clip(np.searchsorted(cdf, tail_mass / 2, side="right") - 1, 0, last))
    hi = int(np.clip(np.searchsorted(cdf, 1 - tail_mass / 2, side="left") - 1, lo, last))
    return lo, hi
