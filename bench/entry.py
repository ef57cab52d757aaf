"""How a bench command ends on bad input: one line on stderr and aec's exit code.

A bench is run by people comparing models, so a wrong ``--weights`` or an
unreadable input should read like `aec`'s errors (`codec.errors`), not as a
traceback. Benches call `run(main, prog)` under ``if __name__ == "__main__"``;
their `main` stays importable and raises as before, for tests.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from codec.errors import AecError


def run(main: Callable[[], int], prog: str) -> int:
    """`main()`'s exit code, or the AecError's after printing ``PROG: error: MESSAGE``."""
    try:
        return main()
    except AecError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
