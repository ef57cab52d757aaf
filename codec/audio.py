"""Audio in and out: files and arrays to float32 `[channels, samples]`, and back.

Reading goes through python-soundfile (libsndfile: wav, flac, ogg/vorbis, opus, mp3,
aiff, ...), block by block so that memory does not grow with duration.
Resampling uses torchaudio's windowed-sinc resampler; `StreamResampler` applies
it block by block with enough context on each side that the result equals
resampling the whole signal at once (up to float rounding), so block seams are
inaudible and memory stays bounded.

Samples are float32 at full scale +-1.0. Integer PCM is scaled by 2**(bits - 1)
(uint8 is offset by 128 first), like libsndfile does.
"""

from __future__ import annotations

import io
import math
import os
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import soundfile
import torch
import torchaudio.functional as taf
from numpy.typing import NDArray

from codec.errors import AudioError, InputError, OutputError

__all__ = [
    "MAX_CHANNELS",
    "MAX_SAMPLE_RATE",
    "AudioInfo",
    "AudioReader",
    "AudioWriter",
    "WavPipeWriter",
    "open_writer",
    "StreamResampler",
    "to_float32",
    "check_sample_rate",
    "read_audio",
    "write_audio",
    "resample",
    "output_format",
]

MAX_CHANNELS = 255
MAX_SAMPLE_RATE = 768_000
#: Samples per channel read from a file at a time.
BLOCK_SAMPLES = 1 << 16
# torchaudio.functional.resample defaults, repeated to size the context of StreamResampler.
_LOWPASS_FILTER_WIDTH = 6
_ROLLOFF = 0.99
# Largest reduced rate pair (orig * new after dividing by the gcd) resampled in one kernel:
# torchaudio builds a [new, 1, ~orig] kernel, which for co-prime rates is gigabytes.
_MAX_KERNEL_PHASES = 1_000_000

_WRITE_FORMATS = {".wav": "WAV", ".flac": "FLAC"}
_WRITE_SUBTYPES = {"pcm16": "PCM_16", "pcm24": "PCM_24", "float": "FLOAT"}


@dataclass(frozen=True)
class AudioInfo:
    """What a file or stream says about itself before any sample is read."""

    sample_rate: int
    channels: int
    num_samples: int           # per channel
    format: str                # libsndfile major format, e.g. "WAV", "FLAC", "OGG"
    subtype: str               # e.g. "PCM_16", "FLOAT", "VORBIS"

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate if self.sample_rate else 0.0


def check_sample_rate(sample_rate: int) -> int:
    """Return `sample_rate` as int if it is a whole number of Hz in 1 .. 768000, else AudioError."""
    integral_float = (isinstance(sample_rate, (float, np.floating))
                      and float(sample_rate).is_integer())
    if isinstance(sample_rate, bool) or not (isinstance(sample_rate, (int, np.integer))
                                             or integral_float):
        raise AudioError(f"sample rate must be an integer number of Hz, got {sample_rate!r}")
    if not 1 <= int(sample_rate) <= MAX_SAMPLE_RATE:
        raise AudioError(f"sample rate {sample_rate} Hz out of range 1..{MAX_SAMPLE_RATE}")
    return int(sample_rate)


def _pcm_to_float(array: NDArray[Any]) -> NDArray[np.float32]:
    """Scale integer PCM to +-1.0 floats; floats pass through as float32."""
    if array.dtype == np.uint8:
        return ((array.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    if np.issubdtype(array.dtype, np.signedinteger):
        scale = float(2 ** (8 * array.dtype.itemsize - 1))
        return (array.astype(np.float64) / scale).astype(np.float32)
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32, copy=False)
    raise AudioError(f"unsupported sample type {array.dtype} (use float or integer PCM)")


def to_float32(audio: Any) -> NDArray[np.float32]:
    """Any numpy array or torch tensor, `[samples]` or `[channels, samples]`, to float32 2-D.

    Raises AudioError for other shapes, too many channels (with a hint when the
    array looks transposed) and non-finite samples.
    """
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().to("cpu").numpy()
    array = np.asarray(audio)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise AudioError(f"audio must be [samples] or [channels, samples], got shape {array.shape}")
    if array.shape[0] > MAX_CHANNELS:
        transposed = array.shape[1] <= MAX_CHANNELS
        hint = " (is it [samples, channels]? pass audio.T)" if transposed else ""
        raise AudioError(f"{array.shape[0]} channels exceed the limit of {MAX_CHANNELS}{hint}")
    if array.shape[0] == 0:
        raise AudioError("audio has no channels")
    result = np.ascontiguousarray(_pcm_to_float(array))
    if not np.all(np.isfinite(result)):
        raise AudioError("audio contains NaN or infinite samples")
    return result


def _open_input(source: str | Path | BinaryIO) -> str | BinaryIO:
    """Resolve '-' to a seekable copy of stdin; a missing path raises InputError."""
    if isinstance(source, (str, Path)) and str(source) == "-":
        return io.BytesIO(sys.stdin.buffer.read())
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise InputError(f"{path}: no such file")
        if path.is_dir():
            raise InputError(f"{path}: is a directory")
        if not os.access(path, os.R_OK):
            raise InputError(f"{path}: permission denied")
        return str(path)
    return source


class AudioReader:
    """Streaming reader of one audio file (or '-' for stdin, or a binary file object).

    Use as a context manager; `blocks()` yields float32 `[channels, n]` blocks so a
    long file never sits in memory whole.
    """

    def __init__(self, source: str | Path | BinaryIO) -> None:
        self.name = str(source) if isinstance(source, (str, Path)) else "<stream>"
        target = _open_input(source)
        try:
            self._file = soundfile.SoundFile(target)
        except (soundfile.LibsndfileError, RuntimeError, TypeError) as exc:
            raise AudioError(f"{self.name}: not a supported audio file ({exc})") from None
        self.info = self._make_info()

    def _make_info(self) -> AudioInfo:
        f = self._file
        if f.frames < 0 or not f.seekable():
            raise AudioError(f"{self.name}: length unknown (unseekable or damaged file)")
        try:
            check_sample_rate(f.samplerate)
        except AudioError as exc:
            raise AudioError(f"{self.name}: {exc}") from None
        if not 1 <= f.channels <= MAX_CHANNELS:
            raise AudioError(f"{self.name}: {f.channels} channels (supported: 1..{MAX_CHANNELS})")
        return AudioInfo(f.samplerate, f.channels, f.frames, f.format, f.subtype)

    def blocks(self, block_samples: int = BLOCK_SAMPLES) -> Iterator[NDArray[np.float32]]:
        """Yield the whole file from the start as float32 `[channels, <= block_samples]` blocks."""
        self._file.seek(0)
        remaining = self.info.num_samples
        while remaining > 0:
            block = self._read(min(block_samples, remaining))
            if block.shape[1] == 0:
                raise AudioError(f"{self.name}: file ends {remaining} samples early")
            remaining -= block.shape[1]
            yield block

    def _read(self, count: int) -> NDArray[np.float32]:
        try:
            data = self._file.read(count, dtype="float32", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError) as exc:
            raise AudioError(f"{self.name}: cannot decode audio ({exc})") from None
        block = np.ascontiguousarray(data.T)
        if not np.all(np.isfinite(block)):
            raise AudioError(f"{self.name}: audio contains NaN or infinite samples")
        return block

    def read_all(self) -> NDArray[np.float32]:
        """The whole file as one float32 `[channels, samples]` array."""
        blocks = list(self.blocks())
        if not blocks:
            return np.zeros((self.info.channels, 0), dtype=np.float32)
        return np.concatenate(blocks, axis=1)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> AudioReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_audio(source: str | Path | BinaryIO) -> tuple[NDArray[np.float32], int]:
    """Read a whole file into float32 `[channels, samples]`; returns (audio, sample_rate)."""
    with AudioReader(source) as reader:
        return reader.read_all(), reader.info.sample_rate


def output_format(path: str | Path, sample_format: str = "pcm16") -> tuple[str, str]:
    """(libsndfile format, subtype) for an output path: by extension, '-' means WAV.

    `sample_format` is "pcm16" (default), "pcm24" or "float" (WAV only).
    """
    suffix = ".wav" if str(path) == "-" else Path(path).suffix.lower()
    if suffix not in _WRITE_FORMATS:
        raise AudioError(f"{path}: cannot write {suffix or 'extensionless'} files "
                         f"(use {', '.join(sorted(_WRITE_FORMATS))})")
    if sample_format not in _WRITE_SUBTYPES:
        raise AudioError(f"unknown sample format {sample_format!r} "
                         f"(use {', '.join(sorted(_WRITE_SUBTYPES))})")
    kind = _WRITE_FORMATS[suffix]
    if kind == "FLAC" and sample_format == "float":
        raise AudioError(f"{path}: FLAC cannot store float samples (use .wav)")
    return kind, _WRITE_SUBTYPES[sample_format]


class AudioWriter:
    """Streaming writer of float32 `[channels, n]` blocks to a binary file object.

    PCM output is clipped to +-1.0 first (libsndfile would wrap around otherwise).
    The caller owns the file object (see `api` for atomic replacement).
    """

    def __init__(self, fileobj: BinaryIO, sample_rate: int, channels: int, kind: str,
                 subtype: str) -> None:
        self._clip = subtype != "FLOAT"
        try:
            self._file = soundfile.SoundFile(fileobj, "w", samplerate=sample_rate,
                                             channels=channels, format=kind, subtype=subtype)
        except (soundfile.LibsndfileError, RuntimeError) as exc:
            raise OutputError(f"cannot write {kind}/{subtype} audio: {exc}") from None

    def write(self, block: NDArray[np.float32]) -> None:
        data = np.clip(block, -1.0, 1.0) if self._clip else block
        try:
            self._file.write(np.ascontiguousarray(data.T))
        except (soundfile.LibsndfileError, RuntimeError) as exc:
            raise OutputError(f"cannot write audio: {exc}") from None

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> AudioWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class WavPipeWriter:
    """Streams a WAV to a non-seekable binary stream (a pipe, stdout).

    libsndfile must seek back to fill in the sizes; here they are known up front
    (the .aec header gives the exact sample count), so the header goes out first
    and samples follow as they are decoded. PCM is floor(x * 2**(bits-1)), clipped:
    libsndfile's own rounding agrees on > 99.9 % of samples and is 1 LSB off on the
    rest; FLOAT is written as is.
    """

    _FORMATS = {"PCM_16": (1, 2), "PCM_24": (1, 3), "FLOAT": (3, 4)}   # tag, bytes/sample

    def __init__(self, fileobj: BinaryIO, sample_rate: int, channels: int, num_samples: int,
                 subtype: str = "PCM_16") -> None:
        if subtype not in self._FORMATS:
            raise AudioError(f"cannot stream {subtype} WAV")
        tag, width = self._FORMATS[subtype]
        data_bytes = num_samples * channels * width
        if data_bytes + 36 > 0xFFFFFFFF:
            raise OutputError("too long for a WAV stream (4 GB); write to a file instead")
        self._f, self._subtype, self._width = fileobj, subtype, width
        block_align = channels * width
        header = (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVEfmt "
                  + struct.pack("<IHHIIHH", 16, tag, channels, sample_rate,
                                sample_rate * block_align, block_align, 8 * width)
                  + b"data" + struct.pack("<I", data_bytes))
        fileobj.write(header)

    def write(self, block: NDArray[np.float32]) -> None:
        """Write float32 `[channels, n]` samples, interleaved."""
        frames = np.ascontiguousarray(block.T)
        if self._subtype == "FLOAT":
            self._f.write(frames.astype("<f4").tobytes())
            return
        scale = float(1 << (8 * self._width - 1))
        ints = np.clip(np.floor(frames.astype(np.float64) * scale), -scale, scale - 1)
        if self._width == 2:
            self._f.write(ints.astype("<i2").tobytes())
        else:
            packed = ints.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3]
            self._f.write(np.ascontiguousarray(packed).tobytes())

    def close(self) -> None:
        self._f.flush()


def open_writer(fileobj: BinaryIO, sample_rate: int, channels: int, num_samples: int,
                kind: str, subtype: str) -> AudioWriter | WavPipeWriter:
    """A streaming writer for fileobj: libsndfile if it can seek, else a WAV pipe writer."""
    if fileobj.seekable():
        return AudioWriter(fileobj, sample_rate, channels, kind, subtype)
    if kind != "WAV":
        raise AudioError(f"only WAV can be streamed to a pipe, not {kind}")
    return WavPipeWriter(fileobj, sample_rate, channels, num_samples, subtype)


def write_audio(fileobj: BinaryIO, audio: NDArray[np.float32], sample_rate: int, kind: str = "WAV",
                subtype: str = "PCM_16") -> None:
    """Write a whole float32 `[channels, samples]` array to a binary file object or pipe."""
    writer = open_writer(fileobj, sample_rate, audio.shape[0], audio.shape[1], kind, subtype)
    writer.write(audio)
    writer.close()


def resampled_length(num_samples: int, from_rate: int, to_rate: int) -> int:
    """Samples after resampling: ceil(num_samples * to_rate / from_rate), in integers."""
    return -(-num_samples * to_rate // from_rate)


class StreamResampler:
    """Resample an unbounded signal block by block, equal to resampling it whole.

    torchaudio's resampler computes output j from the inputs within `width` of
    time j * from / to. We keep `margin` (>= width + one period, a multiple of the
    reduced input period) of input on each side of every block we resample and
    start blocks on period boundaries, so each output sample sees exactly the
    inputs (or zero padding past the ends) it would see in one whole-signal call.
    """

    def __init__(self, from_rate: int, to_rate: int, channels: int) -> None:
        common = math.gcd(from_rate, to_rate)
        self.orig, self.new = from_rate // common, to_rate // common
        if self.orig * self.new > _MAX_KERNEL_PHASES:
            raise AudioError(f"cannot resample {from_rate} Hz to {to_rate} Hz: the rates share "
                             f"too small a divisor ({common}); resample the input first")
        self.from_rate, self.to_rate = from_rate, to_rate
        width = math.ceil(_LOWPASS_FILTER_WIDTH * self.orig / (min(self.orig, self.new) * _ROLLOFF))
        self.margin = -(-(width + self.orig) // self.orig) * self.orig
        self._buffer = np.zeros((channels, 0), dtype=np.float32)
        self._buffer_start = 0       # input index of _buffer[:, 0]
        self._pushed = 0             # input samples pushed so far
        self._emitted = 0            # output samples returned so far

    @property
    def identity(self) -> bool:
        return self.orig == self.new

    def push(self, block: NDArray[np.float32]) -> NDArray[np.float32]:
        """Add input samples; return every output sample that is now final."""
        if self.identity:
            self._pushed += block.shape[1]
            self._emitted += block.shape[1]
            return block
        self._buffer = np.concatenate([self._buffer, block], axis=1)
        self._pushed += block.shape[1]
        periods = (self._pushed - self.margin) // self.orig
        return self._emit(max(self._emitted, periods * self.new))

    def flush(self) -> NDArray[np.float32]:
        """Return the rest of the output, as if the input ended with zeros."""
        if self.identity:
            return self._buffer[:, :0]
        total = resampled_length(self._pushed, self.orig, self.new)
        return self._emit(total)

    def _emit(self, stop: int) -> NDArray[np.float32]:
        """Resample outputs [_emitted, stop) from the buffered input (zeros past the ends)."""
        count = stop - self._emitted
        if count <= 0:
            return self._buffer[:, :0]
        first_input = self._emitted // self.new * self.orig - self.margin
        skip = (self._emitted % self.new) + self.margin * self.new // self.orig
        length = -(-(skip + count) * self.orig // self.new) + self.margin
        window = self._input_window(first_input, length)
        out = taf.resample(torch.from_numpy(window), self.orig, self.new)
        result = out.numpy()[:, skip: skip + count]
        self._emitted = stop
        self._drop_before(self._emitted // self.new * self.orig - self.margin)
        return np.ascontiguousarray(result, dtype=np.float32)

    def _input_window(self, start: int, length: int) -> NDArray[np.float32]:
        """Input samples [start, start + length), zeros where nothing was pushed."""
        window = np.zeros((self._buffer.shape[0], length), dtype=np.float32)
        lo, hi = max(start, self._buffer_start), min(start + length, self._pushed)
        if hi > lo:
            window[:, lo - start: hi - start] = self._buffer[:, lo - self._buffer_start:
                                                                 hi - self._buffer_start]
        return window

    def _drop_before(self, index: int) -> None:
        if index > self._buffer_start:
            self._buffer = self._buffer[:, index - self._buffer_start:]
            self._buffer_start = index


def resample(audio: NDArray[np.float32], from_rate: int, to_rate: int) -> NDArray[np.float32]:
    """Resample float32 `[channels, samples]` whole; the output has ceil(n * to / from) samples."""
    if from_rate == to_rate:
        return audio
    resampler = StreamResampler(from_rate, to_rate, audio.shape[0])
    return np.concatenate([resampler.push(audio), resampler.flush()], axis=1)
