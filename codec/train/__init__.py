"""Training, checkpoints, export and evaluation of the learned codec (not on the runtime path).

Entry points: `python -m codec.train` / `aec train` (`main`), `python -m codec.train.export`,
`python -m codec.train.evaluate`, `python -m codec.train.checkpoint`,
`python -m codec.train.complexity`.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """`aec train ...`: see `python -m codec.train --help`."""
    from codec.train.__main__ import main as train_main

    return train_main(argv)
