"""Applies $AEC_MUTANT (tests/mutants.py) at interpreter start; only on PYTHONPATH under
scripts/mutants.sh, so pytest and every `aec` subprocess it starts carry the same bug."""

import os

if os.environ.get("AEC_MUTANT"):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import mutants

    mutants.apply_from_environment()
