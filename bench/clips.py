"""Benchmark inputs: which clips, of which content kind, cut to what length.

Two sources: a folder (or file list) of audio, or the held-out split of the
training corpus (`codec.train.split.list_clips`). Every clip is downmixed to
mono, cut to `max_seconds`, and written once as 16-bit WAV so that every codec,
classic or aec, codes exactly the same samples, and the reference is those
samples read back.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from numpy.typing import NDArray

#: Content kinds the corpus uses; any other folder name gives kind "other".
KINDS: tuple[str, ...] = ("speech", "music", "sfx")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".m4a", ".aiff", ".aif")


@dataclass(frozen=True)
class ClipSource:
    """Input file(s) of one clip with its content kind and source package (folder name).

    Usually one file; short files of one package are joined into one clip (see
    `join_short`), so that every clip is long enough for fair container overhead
    and for the perceptual metrics.
    """

    paths: tuple[Path, ...]
    kind: str
    package: str

    @property
    def path(self) -> Path:
        return self.paths[0]

    @property
    def name(self) -> str:
        extra = f"+{len(self.paths) - 1}" if len(self.paths) > 1 else ""
        return f"{self.kind}__{self.package}__{self.path.stem}{extra}"


@dataclass(frozen=True)
class Clip:
    """A prepared reference: mono float32 samples and the 16-bit WAV holding them."""

    name: str
    kind: str
    package: str
    wav_path: Path
    audio: NDArray[np.float32]    # [samples]
    sample_rate: int

    @property
    def num_samples(self) -> int:
        return int(self.audio.shape[0])

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate


def kind_of(path: Path) -> str:
    """The content kind named by the nearest folder in `KINDS`, else "other"."""
    for part in reversed(path.parts[:-1]):
        if part in KINDS:
            return part
    return "other"


def sources_from_paths(paths: Iterable[Path]) -> list[ClipSource]:
    """Expand files and folders (recursively) into sorted audio sources."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"no such input: {path}")
    return [ClipSource((p,), kind_of(p), p.parent.name) for p in sorted(set(files))]


def _manifest_clips(corpus_dir: Path, split: str) -> list[Path]:
    """Fallback split from manifest.csv, used only while codec.train.split is missing."""
    with open(corpus_dir / "manifest.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == split]
    return [corpus_dir / row["path"] for row in rows]


def sources_from_corpus(corpus_dir: Path, split: str) -> list[ClipSource]:
    """The clips of one corpus split, with kind and package from the corpus layout."""
    try:
        from codec.train.split import list_clips
    except ImportError:
        print("bench: codec.train.split missing; using manifest.csv split column",
              file=sys.stderr)
        paths = _manifest_clips(corpus_dir, split)
    else:
        paths = list(list_clips(corpus_dir, split))
    return [ClipSource((Path(p),), kind_of(Path(p)), Path(p).parent.name)
            for p in sorted(paths)]


def join_short(sources: Sequence[ClipSource], min_seconds: float) -> list[ClipSource]:
    """Join consecutive files of one kind and package until each clip lasts >= min_seconds.

    The held-out speech is mostly 1-3 s files (letters, syllables); coded one by
    one, container headers would dominate the rate and ViSQOL/PESQ would see too
    little speech. A trailing remainder shorter than min_seconds is dropped.
    """
    joined: list[ClipSource] = []
    pending: list[Path] = []
    pending_s = 0.0
    for index, source in enumerate(sources):
        pending += source.paths
        pending_s += sum(sf.info(str(p)).duration for p in source.paths)
        following = sources[index + 1] if index + 1 < len(sources) else None
        same_group = following is not None and (following.kind, following.package) == (
            source.kind, source.package)
        if pending_s >= min_seconds:
            joined.append(ClipSource(tuple(pending), source.kind, source.package))
        if pending_s >= min_seconds or not same_group:
            pending, pending_s = [], 0.0
    return joined


def _quotas(sizes: Sequence[int], budget: int) -> list[int]:
    """Share `budget` picks round-robin over groups of the given sizes."""
    quotas = [0] * len(sizes)
    while budget > 0 and any(q < n for q, n in zip(quotas, sizes)):
        for i, size in enumerate(sizes):
            if budget > 0 and quotas[i] < size:
                quotas[i] += 1
                budget -= 1
    return quotas


def _spread(items: Sequence[ClipSource], count: int) -> list[ClipSource]:
    """`count` items evenly spaced over the sorted list (first and last included)."""
    if count >= len(items):
        return list(items)
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, count).round()]


def pick_per_kind(sources: Sequence[ClipSource], max_per_kind: int | None
                  ) -> list[ClipSource]:
    """Up to `max_per_kind` sources per kind: shared round-robin over packages, and
    evenly spaced within a package.

    This spreads a small budget over as many packages (and, in a package, as many
    speakers or languages, which sort together) as possible; it is deterministic.
    """
    if max_per_kind is None:
        return list(sources)
    by_kind: dict[str, dict[str, list[ClipSource]]] = defaultdict(lambda: defaultdict(list))
    for source in sources:
        by_kind[source.kind][source.package].append(source)
    picked: list[ClipSource] = []
    for kind in sorted(by_kind):
        groups = [group for _, group in sorted(by_kind[kind].items())]
        quotas = _quotas([len(g) for g in groups], max_per_kind)
        for group, quota in zip(groups, quotas):
            picked += _spread(group, quota)
    return picked


def read_mono(paths: Sequence[Path], max_seconds: float | None = None
              ) -> tuple[NDArray[np.float32], int]:
    """Read and concatenate files as float32 mono `[samples]`, keeping <= `max_seconds`.

    Files at another rate than the first are skipped (joined files share a package,
    so in practice they share a rate).
    """
    sample_rate = sf.info(str(paths[0])).samplerate
    limit = None if max_seconds is None else int(round(max_seconds * sample_rate))
    parts, total = [], 0
    for path in paths:
        if sf.info(str(path)).samplerate != sample_rate or (limit is not None and total >= limit):
            continue
        frames = -1 if limit is None else limit - total
        audio, _ = sf.read(str(path), frames=frames, dtype="float32", always_2d=True)
        parts.append(audio.mean(axis=1))
        total += audio.shape[0]
    return np.concatenate(parts).astype(np.float32), int(sample_rate)


def prepare_clip(source: ClipSource, workdir: Path, max_seconds: float | None) -> Clip:
    """Write the reference WAV (16-bit PCM) and read it back as the reference."""
    audio, sample_rate = read_mono(source.paths, max_seconds)
    name = source.name
    wav_path = workdir / f"{name}.wav"
    sf.write(str(wav_path), audio, sample_rate, subtype="PCM_16")
    reference, _ = sf.read(str(wav_path), dtype="float32")
    return Clip(name, source.kind, source.package, wav_path, reference, sample_rate)


def concatenate_clips(clips: Sequence[Clip], min_seconds: float, workdir: Path,
                      name: str = "long") -> Clip:
    """Concatenate clips (cycling if needed) into one clip of at least `min_seconds`.

    Used by the speed bench, which needs a long real input; clips at other rates
    than the first are skipped rather than resampled.
    """
    if not clips:
        raise ValueError("no clips to concatenate")
    sample_rate = clips[0].sample_rate
    parts = [c.audio for c in clips if c.sample_rate == sample_rate and c.num_samples]
    needed, total, pieces = int(min_seconds * sample_rate), 0, []
    while total < needed:
        for part in parts:
            pieces.append(part)
            total += part.shape[0]
    audio = np.concatenate(pieces)
    wav_path = workdir / f"{name}.wav"
    sf.write(str(wav_path), audio, sample_rate, subtype="PCM_16")
    reference, _ = sf.read(str(wav_path), dtype="float32")
    return Clip(name, "mixed", "mixed", wav_path, reference, sample_rate)


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """The `--input PATH... | --corpus DIR [--split S]` choice shared by the bench commands."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", type=Path, nargs="+", help="audio files or folders")
    source.add_argument("--corpus", type=Path, help="training corpus root (uses --split)")
    parser.add_argument("--split", default="valid", help="corpus split (default: valid)")


def sources_from_args(args: argparse.Namespace) -> list[ClipSource]:
    """The clip sources that `add_source_arguments`' options name."""
    if args.corpus is not None:
        return sources_from_corpus(args.corpus, args.split)
    return sources_from_paths(args.input)
