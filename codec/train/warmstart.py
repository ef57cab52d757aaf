"""Starting a network from another one's weights when a layer reads more inputs now.

A fine-tune may give a layer new input features (the denoiser's noise floor, the
context model's sign features). Padding the saved weights with zero input channels
makes the new network compute exactly what the old one did at its first step.
"""

from __future__ import annotations

import torch


def widen_inputs(own: torch.Tensor, saved: torch.Tensor) -> torch.Tensor | None:
    """`saved` padded with zero input channels (dim 1) to `own`'s shape, if more input
    channels are the only difference; else None (same shape, or not a widening)."""
    if own.dim() < 2 or own.shape == saved.shape or own.shape[0] != saved.shape[0] or \
            own.shape[2:] != saved.shape[2:] or own.shape[1] < saved.shape[1]:
        return None
    out = torch.zeros_like(own)
    out[:, :saved.shape[1]] = saved
    return out
