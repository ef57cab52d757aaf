"""Wall time per phase of a training step (data, forward, rate, distortion, backward, optimizer).

The loop wraps each phase in ``with timer.phase("data"):``. The default
`NULL_TIMER` does nothing; `PhaseTimer` adds up wall seconds per phase, and on
CUDA synchronizes at each boundary so the time lands in the phase that spent
it (which costs a little throughput: use it for benchmarks, not long runs).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

PHASES: tuple[str, ...] = ("data", "forward", "rate", "distortion", "backward", "optimizer")


class NullTimer:
    """Times nothing (the default in the training loop)."""

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        yield


class PhaseTimer(NullTimer):
    """Adds up the wall seconds spent in each named phase."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.cuda = torch.device(device).type == "cuda"
        self.seconds: dict[str, float] = {}
        self._open: list[str] = []

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time a block; a phase nested in another is booked to itself, not to both."""
        self._sync()
        t0 = time.perf_counter()
        self._open.append(name)
        try:
            yield
        finally:
            self._sync()
            self._open.pop()
            spent = time.perf_counter() - t0
            self.seconds[name] = self.seconds.get(name, 0.0) + spent
            if self._open:
                parent = self._open[-1]
                self.seconds[parent] = self.seconds.get(parent, 0.0) - spent

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def reset(self) -> None:
        """Forget what was timed so far (e.g. after warm-up steps)."""
        self.seconds = {}


NULL_TIMER = NullTimer()
