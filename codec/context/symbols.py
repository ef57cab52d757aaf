"""The latent symbols of real 6 kbps streams: extract them, cache them, batch them.

"6 kbps" is the rate-control setting ``Codec.encode(audio, rate, kbps=6.0)``: the
controller picks each chunk's step so the whole file costs 6 kbps. The symbols are
read back from the stream with `chunkcoder.decode_chunk`, so they are exactly what
a decoder sees. Mono only (the corpus is mono; a stereo stream's first channel).

A cached set (`SymbolSet`) is flat over frames, with chunk and clip boundaries:

- ``q`` [N, C] int16 symbols, ``gains`` [N], ``steps`` [N] (each frame's stream step
  index: the chunk's step, + 1 from the split on);
- per chunk: ``chunk_start`` [M + 1] frame offsets, ``chunk_step``, ``chunk_split``,
  ``chunk_clip``, ``chunk_bytes`` (payload length), and its noise corrections
  (``noise`` [bands, S], ``noise_start`` [M + 1] segment offsets);
- per clip: ``clip_kind`` and ``clip_path`` (strings), ``clip_seconds``.
"""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from codec import chunkcoder, format
from codec.chunkcoder import ChunkSymbols

KBPS = 6.0
"""The rate-control setting whose symbols the model learns."""


def stream_symbols(codec: object, data: bytes) -> list[tuple[ChunkSymbols, int]]:
    """Every chunk of a coder-2 stream: (its symbols, its payload length in bytes)."""
    reader = format.StreamReader(io.BytesIO(data))
    layout = codec.model.config.layout()                    # type: ignore[attr-defined]
    tables = codec.model.tables                             # type: ignore[attr-defined]
    out = []
    for chunk in reader.chunks():
        payload = chunk.payload or b""
        out.append((chunkcoder.decode_chunk(payload, layout, tables, reader.header.channels,
                                            chunk.num_frames), len(payload)))
    return out


def encode_symbols(codec: object, audio: NDArray[np.float32], sample_rate: int,
                   kbps: float = KBPS) -> list[tuple[ChunkSymbols, int]]:
    """Audio -> the chunks of its `kbps` stream (see module docstring)."""
    data = codec.encode(audio, sample_rate, kbps=kbps)      # type: ignore[attr-defined]
    return stream_symbols(codec, data)


@dataclass
class SymbolSet:
    """Flat symbol arrays of many clips (see module docstring)."""

    q: NDArray[np.int16]
    gains: NDArray[np.int16]
    steps: NDArray[np.int16]
    chunk_start: NDArray[np.int64]
    chunk_step: NDArray[np.int64]
    chunk_split: NDArray[np.int64]
    chunk_clip: NDArray[np.int64]
    chunk_bytes: NDArray[np.int64]
    noise: NDArray[np.int16]
    noise_start: NDArray[np.int64]
    clip_kind: NDArray[np.str_]
    clip_path: NDArray[np.str_]
    clip_seconds: NDArray[np.float64]
    envelope: NDArray[np.int16] | None = None     # [N, R] where the codec sends one

    @property
    def num_chunks(self) -> int:
        return int(self.chunk_step.size)

    def chunk(self, i: int) -> ChunkSymbols:
        """Chunk i as the coder's `ChunkSymbols` (mono)."""
        a, b = int(self.chunk_start[i]), int(self.chunk_start[i + 1])
        s, t = int(self.noise_start[i]), int(self.noise_start[i + 1])
        extra = {} if self.envelope is None else {
            "envelope": self.envelope[a:b].T[None].astype(np.int64)}
        return ChunkSymbols(int(self.chunk_step[i]), False,
                            self.gains[None, a:b].astype(np.int64),
                            self.noise[None, :, s:t].astype(np.int64),
                            self.q[a:b].T[None].astype(np.int64), int(self.chunk_split[i]),
                            **extra)

    def subset(self, chunks: NDArray[np.int64]) -> SymbolSet:
        """Only the given chunks (in order), clips kept as they are."""
        parts = [self.chunk(int(i)) for i in chunks]
        return from_chunks([(p, int(self.chunk_bytes[i])) for p, i in zip(parts, chunks)],
                           self.chunk_clip[chunks], self.clip_kind, self.clip_path,
                           self.clip_seconds)

    def save(self, path: str | Path) -> None:
        np.savez_compressed(path, **{k: getattr(self, k) for k in self.__dataclass_fields__
                                     if getattr(self, k) is not None})

    @classmethod
    def load(cls, path: str | Path) -> SymbolSet:
        with np.load(path) as z:
            return cls(**{k: z[k] for k in cls.__dataclass_fields__ if k in z.files})


def from_chunks(chunks: list[tuple[ChunkSymbols, int]], clip_of: NDArray[np.int64],
                kinds: NDArray[np.str_], paths: NDArray[np.str_],
                seconds: NDArray[np.float64]) -> SymbolSet:
    """Chunks (mono, or the first channel) -> a `SymbolSet`."""
    frames = [c.gains.shape[1] for c, _ in chunks]
    segs = [c.noise.shape[-1] for c, _ in chunks]
    cat = (lambda xs, **kw: np.concatenate(xs, **kw) if xs else np.zeros(0, np.int16))
    bands = chunks[0][0].noise.shape[1] if chunks else 0
    return SymbolSet(
        q=(np.concatenate([c.coefficients[0].T for c, _ in chunks]).astype(np.int16)
           if chunks else np.zeros((0, 0), np.int16)),
        gains=cat([c.gains[0] for c, _ in chunks]).astype(np.int16),
        steps=cat([c.frame_steps for c, _ in chunks]).astype(np.int16),
        chunk_start=np.concatenate([[0], np.cumsum(frames)]).astype(np.int64),
        chunk_step=np.array([c.step for c, _ in chunks], np.int64),
        chunk_split=np.array([c.split_frame for c, _ in chunks], np.int64),
        chunk_clip=np.asarray(clip_of, np.int64),
        chunk_bytes=np.array([n for _, n in chunks], np.int64),
        noise=(np.concatenate([c.noise[0] for c, _ in chunks], axis=1).astype(np.int16)
               if chunks else np.zeros((bands, 0), np.int16)),
        noise_start=np.concatenate([[0], np.cumsum(segs)]).astype(np.int64),
        clip_kind=np.asarray(kinds, dtype=np.str_), clip_path=np.asarray(paths, np.str_),
        clip_seconds=np.asarray(seconds, np.float64), envelope=_envelopes(chunks))


def _envelopes(chunks: list[tuple[ChunkSymbols, int]]) -> NDArray[np.int16] | None:
    """[N, R] of chunks that carry a noise-fill envelope (newer layouts), else None."""
    found = [getattr(c, "envelope", None) for c, _ in chunks]
    if not chunks or any(e is None for e in found):
        return None
    return np.concatenate([e[0].T for e in found]).astype(np.int16)


def pick_clips(corpus: str | Path, split: str, minutes_per_kind: float,
               ) -> list[tuple[Path, str]]:
    """Evenly spaced clips of each kind, up to `minutes_per_kind` each (deterministic)."""
    import soundfile as sf

    from codec.train.split import KINDS, list_clips
    picked = []
    for kind in KINDS:
        clips = list_clips(corpus, split, kind)
        budget = minutes_per_kind * 60.0
        order = _spread(len(clips))
        for i in order:
            if budget <= 0:
                break
            budget -= sf.info(str(clips[i])).duration
            picked.append((clips[i], kind))
    return picked


def _spread(n: int) -> list[int]:
    """0..n-1 in a well-spread order (bit-reversal-like stride), deterministic."""
    stride = max(1, int(n ** 0.5))
    return [i for r in range(stride) for i in range(r, n, stride)]


def extract(codec: object, clips: list[tuple[Path, str]], progress: bool = True) -> SymbolSet:
    """Encode every clip at 6 kbps and read its symbols back (first channel)."""
    from codec import audio as audio_io
    chunks, clip_of, seconds = [], [], []
    for n, (path, _) in enumerate(clips):
        audio, rate = audio_io.read_audio(str(path))
        got = encode_symbols(codec, audio[:1], rate)
        chunks += [(_first_channel(c), b) for c, b in got]
        clip_of += [n] * len(got)
        seconds.append(audio.shape[-1] / rate)
        if progress and n % 50 == 0:
            print(f"  {n}/{len(clips)} clips", file=sys.stderr, flush=True)
    return from_chunks(chunks, np.array(clip_of), np.array([k for _, k in clips]),
                       np.array([str(p) for p, _ in clips]), np.array(seconds))


def _first_channel(c: ChunkSymbols) -> ChunkSymbols:
    envelope = getattr(c, "envelope", None)
    extra = {} if envelope is None else {"envelope": envelope[:1]}
    return ChunkSymbols(c.step, False, c.gains[:1], c.noise[:1], c.coefficients[:1], c.split,
                        **extra)


def cache_path(cache_dir: str | Path, split: str, decoder_sha256: str,
               minutes_per_kind: float) -> Path:
    """One cache file per split, codec model (first 12 hex digits of its decoder SHA) and
    amount of audio (minutes per kind), so a run asking for more audio never reads less."""
    return Path(cache_dir) / f"symbols-{split}-{decoder_sha256[:12]}-{minutes_per_kind:g}m.npz"


def load_or_extract(corpus: str | Path, cache_dir: str | Path, split: str,
                    minutes_per_kind: float, codec: object | None = None) -> SymbolSet:
    """The cached symbols of a split for this codec model, extracted (and cached) on
    first use; a new codec model gets a new cache file, so stale symbols are never read."""
    if codec is None:
        from codec.api import Codec
        codec = Codec.load(device="cpu")
    sha = codec.model.decoder_sha256.hex()                  # type: ignore[attr-defined]
    path = cache_path(cache_dir, split, sha, minutes_per_kind)
    if path.exists():
        return SymbolSet.load(path)
    clips = pick_clips(corpus, split, minutes_per_kind)
    print(f"extracting {split}: {len(clips)} clips", file=sys.stderr, flush=True)
    symbols = extract(codec, clips)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    symbols.save(tmp)
    tmp.replace(path)
    return symbols
