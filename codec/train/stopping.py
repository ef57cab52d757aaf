"""Stop a training loop cleanly: on SIGINT, SIGTERM or a wall-clock budget, at a step boundary.

A run killed mid-way should lose nothing: the loop finishes the step it is in,
writes a resumable checkpoint and returns. `StopFlag` is the one object any
training loop (this package's `loop.train`, or another model's) polls for that.

API::

    with StopFlag(time_budget_s=420.0) as stop:     # installs SIGINT/SIGTERM handlers
        while not done:
            t0 = time.monotonic()
            train_one_step()
            if stop.should_stop(step_s=time.monotonic() - t0):
                break                              # then save a checkpoint
    if stop.reason: print(f"stopped: {stop.reason}")
    sys.exit(stop.exit_code)                       # 0, or 128 + signal number

- `should_stop(step_s)` is True once a signal arrived or once the budget would
  be overrun by one more step plus `save_margin_s` (time reserved for writing
  the checkpoint). Pass the last step's wall time so the budget is kept even
  when steps are slow.
- A second SIGINT/SIGTERM while stopping raises `KeyboardInterrupt` at once
  (the user insists; the last checkpoint on disk still stands, since
  checkpoints are written atomically).
- `request(reason)` stops from code (tests, a caller's own condition).
- Handlers are restored on exit. Outside the main thread signals cannot be
  caught: the flag then only keeps the budget.
- Multi-process (DDP) loops must stop every rank at the same step: reduce the
  local `stop.should_stop(...)` over ranks (`loop.Trainer` folds it into the
  step's all-reduce) and stop when any rank asks.
"""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType, TracebackType

DEFAULT_SAVE_MARGIN_S = 10.0
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)


class StopFlag:
    """Set by a stop signal or a time budget; polled by the loop once per step."""

    def __init__(self, time_budget_s: float | None = None,
                 save_margin_s: float = DEFAULT_SAVE_MARGIN_S,
                 signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> None:
        self.time_budget_s = time_budget_s
        self.save_margin_s = save_margin_s
        self.signals = signals
        self.reason: str | None = None
        self.signal_number: int | None = None
        self._start = time.monotonic()
        self._previous: dict[signal.Signals, object] = {}

    def __enter__(self) -> StopFlag:
        self._start = time.monotonic()
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.signal_number is not None:
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name} while stopping")
        self.signal_number = signum
        self.reason = signal.Signals(signum).name

    @property
    def elapsed_s(self) -> float:
        """Seconds since the flag was entered (or created)."""
        return time.monotonic() - self._start

    def request(self, reason: str) -> None:
        """Ask the loop to stop at the next step boundary."""
        if self.reason is None:
            self.reason = reason

    def should_stop(self, step_s: float = 0.0) -> bool:
        """True if a stop was asked for, or one more step would overrun the time budget."""
        if self.reason is not None:
            return True
        if self.time_budget_s is not None and \
                self.elapsed_s + step_s + self.save_margin_s >= self.time_budget_s:
            self.reason = f"time budget of {self.time_budget_s:g} s"
        return self.reason is not None

    @property
    def exit_code(self) -> int:
        """0 after a budget or requested stop; 128 + signal number after a signal (shell rule)."""
        return 128 + self.signal_number if self.signal_number is not None else 0
