"""Module boundaries from DESIGN.md/STYLE.md, enforced on the source itself."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODEC = ROOT / "codec"

# module (relative to codec/) -> top-level imports it must not make
FORBIDDEN: dict[str, set[str]] = {
    "errors.py": {"numpy", "torch", "torchaudio", "constriction", "soundfile", "codec"},
    "format.py": {"torch", "torchaudio", "constriction", "codec.model", "codec.api", "codec.cli"},
    "entropy.py": {"torch", "torchaudio", "codec.format", "codec.model", "codec.api", "codec.cli"},
    "weights.py": {"codec.format", "codec.cli", "codec.api"},
    "scales.py": {"torch", "torchaudio", "constriction", "codec.format", "codec.entropy",
                  "codec.model", "codec.api", "codec.cli"},
    "chunkcoder.py": {"torch", "torchaudio", "codec.format", "codec.model", "codec.api",
                      "codec.cli"},
    "ratecontrol.py": {"codec.format", "codec.api", "codec.cli"},
    "audio.py": {"codec.model", "codec.entropy", "codec.format", "codec.cli"},
    "metrics.py": {"codec.api", "codec.cli", "codec.model"},
    "api.py": {"codec.cli", "argparse"},
    "cli.py": {"constriction", "codec.model"},
    "model": {"codec.format", "codec.entropy", "codec.audio", "codec.cli", "codec.api"},
}


def imported_modules(path: Path) -> set[str]:
    """Every module name a file imports, at any depth (lazy imports count too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def violates(name: str, forbidden: set[str]) -> bool:
    return any(name == f or name.startswith(f + ".") for f in forbidden)


def files_for(entry: str) -> list[Path]:
    target = CODEC / entry
    if target.is_dir():
        return sorted(target.rglob("*.py"))
    return [target] if target.exists() else []


@pytest.mark.parametrize("entry", sorted(FORBIDDEN))
def test_module_imports_stay_in_their_room(entry: str) -> None:
    files = files_for(entry)
    if not files:
        pytest.fail(f"codec/{entry} is missing")
    for path in files:
        bad = sorted(n for n in imported_modules(path) if violates(n, FORBIDDEN[entry]))
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_byte_layer_imports_no_torch() -> None:
    code = (
        "import sys, codec.errors, codec.format, codec.entropy; "
        "bad = [m for m in ('torch', 'torchaudio') if m in sys.modules]; "
        "sys.exit(f'byte layer pulled in {bad}' if bad else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_every_error_exit_code_is_documented() -> None:
    from codec import errors

    documented = {int(line.split()[0]) for line in (errors.__doc__ or "").splitlines()
                  if line[:1].isdigit()}
    for name in errors.__all__:
        code = getattr(errors, name).exit_code
        assert code in documented, f"{name} exit code {code} is not in the table"
        if name != "UsageError":         # exit 2 is usage; UsageError is a usage error
            assert code not in (0, 2), f"{name} reuses a reserved exit code"
