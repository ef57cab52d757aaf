"""Benchmark inputs: which clips, of which content kind, cut to what length.

Two sources: a folder (or file list) of audio, or the held-out split of the
training corpus (`codec.train.split.list_clips`). Every clip is downmixed to
mono, cut to `max_seconds`, and written once as 16-bit WAV so that every codec,
classic or aec, codes exactly the same samples, and the reference is those
samples read back.
"""

from __future__ import annotations

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
    """One input file with its content kind and source package (folder name)."""

    path: Path
    kind: str
    package: str


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
    return [ClipSource(p, kind_of(p), p.parent.name) for p in sorted(set(files))]


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
    return [ClipSource(Path(p), kind_of(Path(p)), Path(p).parent.name) for p in sorted(paths)]


def pick_per_kind(sources: Sequence[ClipSource], max_per_kind: int | None
                  ) -> list[ClipSource]:
    """Up to `max_per_kind` sources per kind, round-robin over packages.

    Round-robin spreads a small budget over as many source packages as possible
    instead of taking the first package's clips; it is deterministic.
    """
    if max_per_kind is None:
        return list(sources)
    by_kind: dict[str, dict[str, list[ClipSource]]] = defaultdict(lambda: defaultdict(list))
    for source in sources:
        by_kind[source.kind][source.package].append(source)
    picked: list[ClipSource] = []
    for kind in sorted(by_kind):
        queues = [list(v) for _, v in sorted(by_kind[kind].items())]
        taken = 0
        while taken < max_per_kind and any(queues):
            for queue in queues:
                if queue and taken < max_per_kind:
                    picked.append(queue.pop(0))
                    taken += 1
    return picked


def read_mono(path: Path, max_seconds: float | None = None
              ) -> tuple[NDArray[np.float32], int]:
    """Read audio as float32 mono `[samples]`, keeping at most `max_seconds`."""
    info = sf.info(str(path))
    frames = -1 if max_seconds is None else int(round(max_seconds * info.samplerate))
    audio, sample_rate = sf.read(str(path), frames=frames, dtype="float32", always_2d=True)
    return audio.mean(axis=1).astype(np.float32), int(sample_rate)


def prepare_clip(source: ClipSource, workdir: Path, max_seconds: float | None) -> Clip:
    """Write the reference WAV (16-bit PCM) and read it back as the reference."""
    audio, sample_rate = read_mono(source.path, max_seconds)
    name = f"{source.kind}__{source.package}__{source.path.stem}"
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
