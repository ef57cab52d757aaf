"""Test docstrings cite files that exist: a path named in a docstring of tests/*.py
(for example `codec/format.py` or `spec/vectors/`) must be in the repository, so a
reader who follows a citation finds what the test is about."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CITED = re.compile(r"(?<![\w/.-])((?:codec|bench|spec|scripts|tests|checkpoints|\.ci)/"
                   r"[\w./*-]*[\w*/])")


def docstrings(path: Path) -> list[tuple[str, str]]:
    """(where, docstring) of the module and of every class and function in it."""
    tree = ast.parse(path.read_text())
    nodes = [tree] + [n for n in ast.walk(tree)
                      if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    return [(getattr(n, "name", "module"), ast.get_docstring(n) or "") for n in nodes]


def exists(cited: str) -> bool:
    """A file, a folder, or a glob (`tests/data/*.flac`) with at least one match."""
    cited = cited.rstrip("/.")
    return any(ROOT.glob(cited)) if "*" in cited else (ROOT / cited).exists()


def test_every_cited_path_exists() -> None:
    missing = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for where, text in docstrings(path):
            for cited in CITED.findall(text):
                if not exists(cited):
                    missing.append(f"{path.relative_to(ROOT)}:{where} cites {cited}")
    assert not missing, "\n".join(missing)


def test_the_pattern_finds_citations() -> None:
    assert CITED.findall("see `codec/format.py` and spec/vectors/ or tests/data/*.flac.") == [
        "codec/format.py", "spec/vectors/", "tests/data/*.flac"]
