"""Training, checkpoints, export and evaluation of the learned codec (not on the runtime path)."""

from __future__ import annotations
