"""A packed training subset: pre-decoded int16 excerpts in .npy files, read with numpy alone.

Written by `python -m codec.train.pack` (see there). A folder holds
``packed.json`` (sample rate, excerpt length, kinds, sources), ``train.npy``
(int16 [excerpts, excerpt_samples]), ``train_kinds.npy`` (int8 index into
``kinds``) and ``valid.npy`` (int16 [crops, crop_samples], held-out packages
only). Training on it needs no soundfile and no corpus: this is what an
accelerator segment carries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

MANIFEST = "packed.json"
MAX_DRAWS = 20


def is_packed(folder: Path) -> bool:
    """True for a folder written by `codec.train.pack`."""
    return (folder / MANIFEST).exists()


@dataclass(frozen=True)
class PackedSubset:
    """The arrays of a packed folder (memory-mapped: nothing is copied until used)."""

    sample_rate: int
    kinds: tuple[str, ...]
    train: NDArray[np.int16]          # [excerpts, excerpt_samples]
    train_kinds: NDArray[np.int8]     # [excerpts]
    valid: NDArray[np.int16]          # [crops, crop_samples]

    @classmethod
    def load(cls, folder: Path) -> PackedSubset:
        meta = json.loads((folder / MANIFEST).read_text())
        return cls(int(meta["sample_rate"]), tuple(meta["kinds"]),
                   np.load(folder / "train.npy", mmap_mode="r"),
                   np.load(folder / "train_kinds.npy"),
                   np.load(folder / "valid.npy", mmap_mode="r"))


class PackedSampler:
    """Draws batches [B, 1, crop] from the excerpts; the same contract as `data.CropSampler`.

    Deterministic per (seed, rank, step): a kind by `kind_weights`, an excerpt
    of that kind, a random offset; near-silent crops are redrawn.
    """

    def __init__(self, subset: PackedSubset, crop_samples: int, seed: int, rank: int,
                 kind_weights: dict[str, float], silence_dbfs: float) -> None:
        if subset.train.shape[1] < crop_samples:
            raise ValueError(f"packed excerpts are {subset.train.shape[1]} samples, "
                             f"shorter than a {crop_samples}-sample crop")
        present = [i for i in range(len(subset.kinds)) if (subset.train_kinds == i).any()]
        self.members = [np.flatnonzero(subset.train_kinds == i) for i in present]
        w = np.array([kind_weights.get(subset.kinds[i], 0.1) for i in present], np.float64)
        self.kind_p = w / w.sum()
        self.audio = subset.train
        self.crop, self.seed, self.rank = crop_samples, seed, rank
        self.silence_rms = 10 ** (silence_dbfs / 20) * 32768.0

    def batch(self, step: int, batch_size: int) -> torch.Tensor:
        """The crops of one step for this process: [batch_size, 1, crop_samples]."""
        rng = np.random.default_rng([self.seed, self.rank, step])
        crops = np.stack([self._draw(rng) for _ in range(batch_size)])
        return torch.from_numpy(crops.astype(np.float32) / 32768.0).unsqueeze(1)

    def _draw(self, rng: np.random.Generator) -> NDArray[np.int16]:
        crop = np.zeros(self.crop, np.int16)
        for _ in range(MAX_DRAWS):
            members = self.members[rng.choice(len(self.members), p=self.kind_p)]
            row = self.audio[members[rng.integers(len(members))]]
            start = int(rng.integers(0, len(row) - self.crop + 1))
            crop = np.asarray(row[start:start + self.crop])
            if np.sqrt(np.mean(crop.astype(np.float64) ** 2)) >= self.silence_rms:
                break
        return crop
