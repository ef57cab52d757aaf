"""What the side-information models share: small integer features -> a categorical value.

The noise-fill corrections (`codec.context.noise`) and the noise-fill envelope
(`codec.context.envelope`) are each modelled by a sum of one embedding per
feature column followed by a small MLP, trained by sampling rows of every
chunk's features. Only the features and the sizes differ.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import Tensor, nn

from codec.context.model import nats_to_bits
from codec.scales import ScaleLayout

FeatureFn = Callable[[Any, ScaleLayout], tuple[NDArray[np.int64], NDArray[np.int64]]]


class SideModel(nn.Module):
    """features [n, len(sizes)] (column i in 0..sizes[i]-1) -> logits [n, values]."""

    def __init__(self, sizes: Sequence[int], hidden: int, values: int) -> None:
        super().__init__()
        self.embed = nn.ModuleList(nn.Embedding(n, hidden) for n in sizes)
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden), nn.SiLU(),
                                 nn.Linear(2 * hidden, values))

    def forward(self, feats: Tensor) -> Tensor:
        return self.out(sum(e(feats[:, i]) for i, e in enumerate(self.embed)))

    def bits(self, feats: Tensor, targets: Tensor) -> Tensor:
        """[n] bits of each coded value."""
        return nats_to_bits(F.cross_entropy(self(feats), targets, reduction="none"))


def stacked_features(symbols: Any, layout: ScaleLayout, features: FeatureFn, width: int
                     ) -> tuple[Tensor, Tensor]:
    """`features` of every chunk of a `SymbolSet`, concatenated: [n, width] and [n]."""
    feats, targets = [], []
    for i in range(symbols.num_chunks):
        f, t = features(symbols.chunk(i), layout)
        feats.append(f)
        targets.append(t)
    if not feats:
        return torch.zeros((0, width), dtype=torch.long), torch.zeros(0, dtype=torch.long)
    return torch.from_numpy(np.concatenate(feats)), torch.from_numpy(np.concatenate(targets))


def fit(model: SideModel, feats: Tensor, targets: Tensor, steps: int, batch: int, lr: float,
        seed: int) -> SideModel:
    """Adam with a cosine schedule on random rows (deterministic for a seed); eval mode."""
    if not len(targets):
        return model.eval()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr * 0.5 * (1 + np.cos(np.pi * step / steps))
        idx = torch.randint(0, len(targets), (batch,), generator=generator)
        loss = model.bits(feats[idx], targets[idx]).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


def neighbour_buckets(bucket: NDArray[np.int64], absent: int
                      ) -> list[NDArray[np.int64]]:
    """bucket [rows, n] (rows: bands or regions, low to high) -> the buckets of the row
    above, of the place before and of the place after, `absent` where there is none."""
    above, before, after = (np.full(bucket.shape, absent) for _ in range(3))
    above[:-1], before[:, 1:], after[:, :-1] = bucket[1:], bucket[:, :-1], bucket[:, 1:]
    return [above, before, after]
