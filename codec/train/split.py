"""The held-out split, by source package (so no recording is in both sides).

Corpus layout (contracts "Data"): ``CORPUS/train/KIND/PACKAGE/*.wav`` with KIND in
speech / music / sfx. A package is held out as a whole, in every kind it appears
in. The valid set below is fixed (deterministic, no hashing or ordering games)
and covers all three kinds, about 100 minutes of the 11.85 h corpus:

================== ====== ====== ====== ==========================================
package            speech music  sfx    why
================== ====== ====== ====== ==========================================
klettres-data      48.8   -      -      multilingual read speech (letters, words)
supertux-data      0.7    19.7   2.2    game music + voices + effects
megaglest-data     -      14.3   15.3   orchestral music + many short effects
================== ====== ====== ====== ==========================================

(minutes, from the corpus SUMMARY.txt of this build). Everything else trains.
"""

from __future__ import annotations

from pathlib import Path

VALID_PACKAGES: frozenset[str] = frozenset({"klettres-data", "supertux-data", "megaglest-data"})
KINDS: tuple[str, ...] = ("speech", "music", "sfx")
AUDIO_SUFFIXES: tuple[str, ...] = (".wav", ".flac", ".ogg")


def split_of(source_package: str) -> str:
    """'valid' for the held-out packages, else 'train'."""
    return "valid" if source_package in VALID_PACKAGES else "train"


def list_clips(corpus_dir: str | Path, split: str, kind: str | None = None) -> list[Path]:
    """Sorted audio files of one split (optionally one kind) under a corpus folder.

    Accepts the corpus root (holding ``train/``) or the ``train/`` folder itself.
    The package of a file is its parent folder's name.
    """
    if split not in ("train", "valid"):
        raise ValueError(f"split must be 'train' or 'valid', got {split!r}")
    root = Path(corpus_dir)
    if (root / "train").is_dir():
        root = root / "train"
    kinds = (kind,) if kind else KINDS
    clips = [p for k in kinds for p in (root / k).rglob("*")
             if p.suffix.lower() in AUDIO_SUFFIXES and split_of(p.parent.name) == split]
    return sorted(clips)


def kind_of(path: Path) -> str:
    """The kind folder (speech/music/sfx) a clip lives in, or 'other'."""
    kind = path.parent.parent.name
    return kind if kind in KINDS else "other"


def eval_clips(corpus_dir: str | Path, per_kind: int = 8) -> list[Path]:
    """A fixed, evenly spaced selection of held-out clips per kind (for export and evaluation).

    Deterministic: the sorted valid clips of each kind, every n-th one.
    """
    picked: list[Path] = []
    for kind in KINDS:
        clips = list_clips(corpus_dir, "valid", kind)
        if clips:
            step = max(1, len(clips) // per_kind)
            picked += clips[::step][:per_kind]
    return picked
