"""The codec's latent as a feature: `Codec.embed`, `Codec.embed_file` and `aec embed`.

What comes out, and why. The shipped encoder is a fixed MDCT: its continuous
latent before quantization is, per audio channel, one frame of C MDCT
coefficients (C = `latent_channels`, 320 for aec-base) every `hop_length`
model-rate samples (`Codec.embed_rate` = model_rate / hop_length frames per
second: 24000 / 320 = 75 for aec-base). Signed coefficients average to about
zero, so averaging them over time says almost nothing; the default feature is
therefore the latent's log power per coefficient:

    feature "logpower" (default): 10 * log10(y**2 + 1e-10)   [dB, per coefficient]
    feature "latent":             y                           [the raw latent]

Both have `dims` = C values per frame. Pooling over time (`pool`):

    "none":    every frame                   -> [frames, dims]
    "mean":    the mean over frames          -> [dims]
    "meanstd": mean, then standard deviation -> [2 * dims]

Framing: frame j is the encoder's frame centred on model-rate sample j * hop
(for the MDCT it reads samples [(j-1) * hop, (j+1) * hop), zeros outside the
signal), and a signal of n model-rate samples has ceil(n / hop) frames.
Channels are embedded one by one: a one-channel input gives the shapes above,
a C-channel input has a leading channel axis, `[channels, frames, dims]` or
`[channels, dims]` pooled.

Memory stays constant for long inputs: the encoder runs on windows of
`Codec.window_frames` frames plus `encoder_context_frames` on each side, exactly
as `Codec.encode_to` does, so the windowed result equals whole-signal inference;
pooling keeps running sums, and `embed_file` streams frames into the `.npy` file.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import torch
from numpy.typing import NDArray

from codec import audio as audio_io
from codec.api import (
    AudioSource,
    _ModelRateBuffer,
    array_source,
    atomic_output,
    check_not_input,
    check_output,
)
from codec.errors import AudioError, UsageError, WeightsError

if TYPE_CHECKING:
    from codec.api import Codec

__all__ = ["FEATURES", "POOLS", "EmbedReport", "embed_array", "embed_file", "embed_frames",
           "embed_shape", "to_feature"]

FEATURES: tuple[str, ...] = ("logpower", "latent")
POOLS: tuple[str, ...] = ("none", "mean", "meanstd")
#: Power floor of the "logpower" feature (-100 dB: below 16-bit quantization noise).
POWER_FLOOR = 1e-10


@dataclass(frozen=True)
class EmbedReport:
    """What `embed_file` wrote: the array's shape and how to read it."""

    shape: tuple[int, ...]
    frame_rate: float          # frames per second of the unpooled features
    dims: int                  # values per frame (before pooling)
    num_frames: int            # frames per channel (pooled over when pool != "none")
    channels: int              # audio channels (a leading axis when > 1)
    feature: str
    pool: str
    model: str
    sample_rate: int           # of the input
    num_samples: int           # of the input, per channel
    seconds: float             # wall time

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate

    @property
    def layout(self) -> str:
        """The axes of the array, e.g. "[channels, frames, dims]"."""
        axes = (["channels"] if self.channels > 1 else []) + (
            ["frames", "dims"] if self.pool == "none" else ["dims"])
        return "[" + ", ".join(axes) + "]"


def check_choice(feature: str, pool: str) -> None:
    """Refuse an unknown feature or pooling (UsageError, exit 2)."""
    if feature not in FEATURES:
        raise UsageError(f"unknown embedding feature {feature!r} (choose {', '.join(FEATURES)})")
    if pool not in POOLS:
        raise UsageError(f"unknown pooling {pool!r} (choose {', '.join(POOLS)})")


def to_feature(y: torch.Tensor, feature: str) -> torch.Tensor:
    """Encoder output [channels, C, frames] -> float32 features [channels, frames, C]."""
    y = y.float()
    if feature == "logpower":
        y = 10.0 * torch.log10(y.square() + POWER_FLOOR)
    return y.transpose(1, 2)


def num_embed_frames(codec: Codec, num_samples: int, sample_rate: int) -> int:
    """Frames of a signal: ceil(model-rate samples / hop)."""
    samples = audio_io.resampled_length(num_samples, sample_rate, codec.model_rate)
    return -(-samples // codec.model.geometry.hop_length)


def embed_frames(codec: Codec, source: AudioSource,
                 feature: str = "logpower") -> Iterator[NDArray[np.float32]]:
    """Features of a source, window by window: float32 blocks `[channels, frames, dims]`.

    Concatenated along frames they equal whole-signal inference (see module docstring).
    """
    check_choice(feature, "none")
    encoder = codec.model.encoder
    if encoder is None:
        raise WeightsError("these weights were loaded without the encoder; cannot embed")
    hop = codec.model.geometry.hop_length
    context = codec.model.geometry.encoder_context_frames
    total = num_embed_frames(codec, source.num_samples, source.sample_rate)
    buffer = _ModelRateBuffer(source, codec.model_rate, None)
    for first in range(0, total, codec.window_frames):
        count = min(codec.window_frames, total - first)
        start, stop = max(0, first - context), first + count + context
        window = buffer.window(start * hop, stop * hop)
        buffer.drop_before(max(0, first + count - context) * hop)
        with torch.inference_mode():
            x = torch.from_numpy(window).to(codec.device).unsqueeze(1)     # [ch, 1, T]
            y = encoder(x)[:, :, first - start: first - start + count]     # [ch, C, count]
            yield to_feature(y, feature).to("cpu").numpy()


class _Pooler:
    """Running float64 sums over frames, so pooling a long input takes constant memory."""

    def __init__(self) -> None:
        self.count = 0
        self.total: NDArray[np.float64] | None = None
        self.squares: NDArray[np.float64] | None = None

    def add(self, block: NDArray[np.float32]) -> None:
        """block: [channels, frames, dims]."""
        values = block.astype(np.float64)
        if self.total is None or self.squares is None:
            self.total = np.zeros((block.shape[0], block.shape[2]))
            self.squares = np.zeros_like(self.total)
        self.total += values.sum(axis=1)
        self.squares += np.square(values).sum(axis=1)
        self.count += block.shape[1]

    def result(self, pool: str) -> NDArray[np.float32]:
        """[channels, dims] (mean) or [channels, 2 * dims] (mean, then std)."""
        if self.count == 0 or self.total is None or self.squares is None:
            raise AudioError("cannot pool the features of an empty input (no frames)")
        mean = self.total / self.count
        if pool == "mean":
            return mean.astype(np.float32)
        std = np.sqrt(np.maximum(self.squares / self.count - np.square(mean), 0.0))
        return np.concatenate([mean, std], axis=1).astype(np.float32)


def embed_shape(channels: int, frames: int, dims: int, pool: str) -> tuple[int, ...]:
    """The output's shape: no channel axis for one channel, frames only when not pooled."""
    tail = (frames, dims) if pool == "none" else ((dims,) if pool == "mean" else (2 * dims,))
    return tail if channels == 1 else (channels, *tail)


def embed_source(codec: Codec, source: AudioSource, feature: str = "logpower",
                 pool: str = "none") -> NDArray[np.float32]:
    """A source's features in memory, shaped as `embed_shape` says."""
    check_choice(feature, pool)
    dims = int(codec.model.config.latent_channels)
    if pool == "none":
        blocks = list(embed_frames(codec, source, feature))
        out = (np.concatenate(blocks, axis=1) if blocks
               else np.zeros((source.channels, 0, dims), np.float32))
    else:
        pooler = _Pooler()
        for block in embed_frames(codec, source, feature):
            pooler.add(block)
        out = pooler.result(pool)
    return out[0] if source.channels == 1 else out


def embed_array(codec: Codec, audio: Any, sample_rate: int, feature: str = "logpower",
                pool: str = "none") -> NDArray[np.float32]:
    """`Codec.embed`: audio (numpy/torch, `[samples]` or `[channels, samples]`) -> features."""
    return embed_source(codec, array_source(audio, sample_rate), feature, pool)


def embed_file(codec: Codec, src: str | Path, dst: str | Path, feature: str = "logpower",
               pool: str = "none", *, overwrite: bool = False) -> EmbedReport:
    """`Codec.embed_file`: an audio file ('-' = stdin) -> a float32 `.npy` file, atomically.

    Unpooled frames are streamed into the file (constant memory whatever the length);
    an existing `dst` is refused unless `overwrite`.
    """
    check_choice(feature, pool)
    if str(dst) == "-":
        raise UsageError("embed writes a .npy file; give its path with -o (not -)")
    check_not_input(src, dst)
    check_output(Path(dst), overwrite)
    started = time.perf_counter()
    with audio_io.AudioReader(src) as reader:
        info = reader.info
        source = AudioSource(info.sample_rate, info.channels, info.num_samples, reader.blocks)
        dims = int(codec.model.config.latent_channels)
        frames = num_embed_frames(codec, info.num_samples, info.sample_rate)
        shape = embed_shape(info.channels, frames, dims, pool)
        with atomic_output(dst, overwrite) as fileobj:
            _write_npy(fileobj, codec, source, feature, pool, shape)
    return EmbedReport(shape, codec.embed_rate, dims, frames, info.channels, feature, pool,
                       codec.model_name, info.sample_rate, info.num_samples,
                       time.perf_counter() - started)


def _write_npy(fileobj: BinaryIO, codec: Codec, source: AudioSource, feature: str, pool: str,
               shape: tuple[int, ...]) -> None:
    """A float32 C-order `.npy`; unpooled channel c's frames land at their own offset."""
    np.lib.format.write_array_header_1_0(
        fileobj, {"descr": "<f4", "fortran_order": False, "shape": shape})
    if pool != "none":
        fileobj.write(np.ascontiguousarray(embed_source(codec, source, feature, pool),
                                           "<f4").tobytes())
        return
    data_start, frames, done = fileobj.tell(), shape[-2], 0
    row_bytes = shape[-1] * 4
    for block in embed_frames(codec, source, feature):
        for channel, rows in enumerate(np.ascontiguousarray(block, "<f4")):
            fileobj.seek(data_start + (channel * frames + done) * row_bytes)
            fileobj.write(rows.tobytes())
        done += block.shape[1]
