"""Training crops: random 1 s (configurable) excerpts, near-silent ones redrawn.

Data order is a pure function of (seed, rank, step): resuming at step k draws
exactly the crops an uninterrupted run would have drawn, with no sampler state
to save. Decoded clips are cached in memory (int16) up to a size cap.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from codec.train.split import KINDS, kind_of, list_clips

MAX_DRAWS = 20   # redraws for a silent crop before accepting it anyway


@dataclass(frozen=True)
class Clip:
    """One audio file with its length in samples."""

    path: Path
    num_samples: int


def scan_clips(data_dirs: list[Path], split: str, sample_rate: int) -> dict[str, list[Clip]]:
    """Clips of one split per kind; files at another sample rate are refused."""
    by_kind: dict[str, list[Clip]] = {}
    for data_dir in data_dirs:
        for path in list_clips(data_dir, split):
            rate, frames = audio_info(path)
            if rate != sample_rate:
                raise ValueError(f"{path}: {rate} Hz, training needs {sample_rate} Hz")
            by_kind.setdefault(kind_of(path), []).append(Clip(path, frames))
    if not by_kind:
        raise ValueError(f"no {split} audio under {[str(d) for d in data_dirs]}")
    return by_kind


class CropSampler:
    """Draws batches [B, 1, crop] of float32 audio, deterministic per step."""

    def __init__(self, clips: dict[str, list[Clip]], crop_samples: int, seed: int, rank: int,
                 kind_weights: tuple[float, ...], silence_dbfs: float, cache_mb: int) -> None:
        self.kinds = [k for k in (*KINDS, "other") if clips.get(k)]
        weights = dict(zip(KINDS, kind_weights, strict=True))
        w = np.array([weights.get(k, 0.1) for k in self.kinds], dtype=np.float64)
        self.kind_p = w / w.sum()
        self.clips = [clips[k] for k in self.kinds]
        self.clip_p = [_length_weights(c) for c in self.clips]
        self.crop = crop_samples
        self.seed, self.rank = seed, rank
        self.silence_rms = 10 ** (silence_dbfs / 20)
        self.cache: dict[Path, NDArray[np.int16]] = {}
        self.cache_bytes_left = cache_mb * 2**20

    def batch(self, step: int, batch_size: int) -> torch.Tensor:
        """The crops of one step for this process: [batch_size, 1, crop_samples]."""
        rng = np.random.default_rng([self.seed, self.rank, step])
        crops = [self._draw(rng) for _ in range(batch_size)]
        return torch.from_numpy(np.stack(crops)).unsqueeze(1)

    def _draw(self, rng: np.random.Generator) -> NDArray[np.float32]:
        crop = np.zeros(self.crop, dtype=np.float32)
        for _ in range(MAX_DRAWS):
            k = rng.choice(len(self.kinds), p=self.kind_p)
            clip = self.clips[k][rng.choice(len(self.clips[k]), p=self.clip_p[k])]
            crop = self._crop(clip, rng)
            if np.sqrt(np.mean(crop**2)) >= self.silence_rms:
                break
        return crop

    def _crop(self, clip: Clip, rng: np.random.Generator) -> NDArray[np.float32]:
        """A random excerpt; clips shorter than a crop are placed at a random offset in zeros."""
        audio = self._audio(clip)
        out = np.zeros(self.crop, dtype=np.float32)
        if len(audio) >= self.crop:
            start = int(rng.integers(0, len(audio) - self.crop + 1))
            out[:] = audio[start:start + self.crop]
        else:
            start = int(rng.integers(0, self.crop - len(audio) + 1))
            out[start:start + len(audio)] = audio
        return out / 32768.0

    def _audio(self, clip: Clip) -> NDArray[np.int16]:
        cached = self.cache.get(clip.path)
        if cached is not None:
            return cached
        mono = read_int16(clip.path)
        if mono.nbytes <= self.cache_bytes_left:
            self.cache[clip.path] = mono
            self.cache_bytes_left -= mono.nbytes
        return mono


def audio_info(path: Path) -> tuple[int, int]:
    """(sample rate, frames) of a file; WAV headers are read with the stdlib (fast, no soundfile).

    Reading ~10 k headers with soundfile took most of the time to the first step.
    """
    if path.suffix.lower() == ".wav":
        try:
            with wave.open(str(path)) as w:
                return w.getframerate(), w.getnframes()
        except (wave.Error, EOFError):
            pass
    import soundfile as sf   # FLAC/OGG only: the packed-subset path never needs it

    info = sf.info(str(path))
    return int(info.samplerate), int(info.frames)


def read_int16(path: Path) -> NDArray[np.int16]:
    """First channel of a file as int16; 16-bit PCM WAV without soundfile."""
    if path.suffix.lower() == ".wav":
        try:
            with wave.open(str(path)) as w:
                if w.getsampwidth() == 2:
                    raw = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
                    return np.ascontiguousarray(raw[::w.getnchannels()]).astype(np.int16)
        except (wave.Error, EOFError):
            pass
    import soundfile as sf

    audio, _ = sf.read(str(path), dtype="int16", always_2d=True)
    return np.ascontiguousarray(audio[:, 0])


def _length_weights(clips: list[Clip]) -> NDArray[np.float64]:
    """Pick a clip with probability proportional to its length (at least one crop)."""
    lengths = np.array([max(c.num_samples, 1) for c in clips], dtype=np.float64)
    return lengths / lengths.sum()
