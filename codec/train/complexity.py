"""Parameters, MACs per second of audio, and CPU speed of a model's encoder and decoder.

`python -m codec.train.complexity [--weights DIR] [--seconds 10] [--threads 2]`

MACs are counted from the conv layers actually run (forward hooks), so they
follow the architecture. Speed is x-realtime (audio seconds / wall seconds),
whole signal, fp32, best of `--repeats` runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn


@dataclass(frozen=True)
class Complexity:
    """Cost of one transform."""

    params: int
    macs_per_second: float
    x_realtime: float


def count_macs(module: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of every Conv1d / ConvTranspose1d for one forward pass."""
    total = 0

    def hook(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.ConvTranspose1d):
            total += inputs[0].numel() * m.out_channels * m.kernel_size[0] // m.groups
        elif isinstance(m, nn.Conv1d):
            total += out.numel() * m.in_channels * m.kernel_size[0] // m.groups

    handles = [m.register_forward_hook(hook) for m in module.modules()]
    with torch.no_grad():
        module(x)
    for h in handles:
        h.remove()
    return total


def measure(module: nn.Module, x: torch.Tensor, seconds: float, repeats: int) -> Complexity:
    with torch.no_grad():
        module(x)
        best = min(_timed(module, x) for _ in range(repeats))
    return Complexity(sum(p.numel() for p in module.parameters()),
                      count_macs(module, x) / seconds, seconds / best)


def _timed(module: nn.Module, x: torch.Tensor) -> float:
    start = time.perf_counter()
    module(x)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    from codec.weights import load_model

    p = argparse.ArgumentParser(prog="python -m codec.train.complexity", description=__doc__)
    p.add_argument("--weights", type=Path)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model(args.weights)
    if model.encoder is None:
        raise SystemExit("encoder weights missing")
    hop = model.config.hop_length
    n = int(args.seconds * model.config.model_rate) // hop * hop
    x = torch.randn(1, 1, n, generator=torch.Generator().manual_seed(0)) * 0.1
    enc = measure(model.encoder, x, n / model.config.model_rate, args.repeats)
    with torch.no_grad():
        y = model.encoder(x)
    dec = measure(model.decoder, y, n / model.config.model_rate, args.repeats)
    for name, c in (("encoder", enc), ("decoder", dec)):
        print(f"{name}: {c.params / 1e6:.2f} M params, {c.macs_per_second / 1e9:.3f} GMAC per "
              f"second of audio, {c.x_realtime:.0f}x realtime ({args.threads} threads)")
    print(asdict(enc), asdict(dec), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
