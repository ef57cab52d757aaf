"""Audio in and out: files and arrays to float32 `[channels, samples]`, and back.

Reading goes through python-soundfile (libsndfile: wav, flac, ogg/vorbis, opus, mp3,
aiff, ...), block by block so that memory does not grow with duration. Inputs that
cannot seek (stdin, a named pipe, `<(process substitution)`) are read once into
memory, since libsndfile needs to seek.
Resampling uses libsoxr (python-soxr, "HQ"), which takes any pair of rates in
constant memory; `StreamResampler` feeds it block by block, and the result is the
same, sample for sample, as resampling the whole signal at once.

Accepted in-memory input (`to_float32`, the library's input contract):

- float16/32/64 (numpy or torch, bfloat16 too) at full scale +-1.0. Peaks up to
  `MAX_FLOAT_PEAK` (2.0, +6 dBFS) are clipped to +-1.0; anything louder is an
  AudioError that suggests normalising (it is usually PCM-scale data as float);
- int16 (/ 2**15), int8 (/ 2**7), uint8 ((x - 128) / 2**7) and int32 (/ 2**31,
  24/32-bit PCM as libsndfile gives it). An int32 array whose peak is within the
  int16 range is refused: it is int16 audio in a wider container
  (`.astype(np.int16)` fixes it);
- int64 arrays and Python lists of ints are refused (ambiguous scale);
- shape `[samples]` or `[channels, samples]`; an array with more channels than
  samples and at most 8 samples per channel is refused with a hint to pass `.T`.
"""

from __future__ import annotations

import io
import os
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import soundfile
import soxr
import torch
from numpy.typing import NDArray

from codec.errors import AudioError, InputError, OutputError

__all__ = [
    "MAX_CHANNELS",
    "MAX_SAMPLE_RATE",
    "AudioInfo",
    "AudioReader",
    "open_input",
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
#: The FLAC format's channel limit.
MAX_FLAC_CHANNELS = 8
#: Float input louder than this (linear peak) is refused; up to it, it is clipped to +-1.0.
MAX_FLOAT_PEAK = 2.0
#: Up to this many samples per channel, more channels than samples suggests `[samples, ch]`.
_LIKELY_MAX_CHANNELS = 8
#: libsoxr quality recipe: "HQ" (20-bit precision, 95 % bandwidth, linear phase).
_SOXR_QUALITY = "HQ"

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
    """Scale integer PCM to +-1.0 floats and range-check floats (module docstring)."""
    if array.dtype == np.uint8:
        return ((array.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    if array.dtype in (np.int8, np.int16, np.int32):
        _refuse_narrow_int32(array)
        scale = float(2 ** (8 * array.dtype.itemsize - 1))
        return (array.astype(np.float64) / scale).astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        raise AudioError(f"{array.dtype} samples have no defined scale: pass int16 or int32 "
                         f"PCM, or float in [-1, 1] (e.g. np.asarray(x, np.int16))")
    if np.issubdtype(array.dtype, np.floating):
        return _check_float_range(array.astype(np.float32, copy=False))
    raise AudioError(f"unsupported sample type {array.dtype} (use float or integer PCM)")


def _refuse_narrow_int32(array: NDArray[Any]) -> None:
    """int16-range values in an int32 array would decode as near-silence: refuse them."""
    if array.dtype != np.int32 or array.size == 0:
        return
    peak = int(np.abs(array.astype(np.int64)).max())
    if 0 < peak <= 32768:
        raise AudioError(f"int32 samples peak at {peak} of 2**31 (below -96 dBFS): this looks "
                         f"like int16 audio in an int32 array; pass audio.astype(np.int16)")


def _check_float_range(array: NDArray[np.float32]) -> NDArray[np.float32]:
    """Non-finite or louder than MAX_FLOAT_PEAK: AudioError; otherwise clipped to +-1.0."""
    if not np.all(np.isfinite(array)):
        raise AudioError("audio contains NaN or infinite samples")
    peak = float(np.abs(array).max()) if array.size else 0.0
    if peak > MAX_FLOAT_PEAK:
        raise AudioError(f"float samples peak at {peak:.6g}, but float audio must lie within "
                         f"+-1.0 (up to +-{MAX_FLOAT_PEAK:g} is clipped): normalise it, e.g. "
                         f"divide int16-scale data by 32768")
    return np.clip(array, -1.0, 1.0) if peak > 1.0 else array


def _as_array(audio: Any) -> NDArray[Any]:
    """A numpy view of a numpy array, torch tensor (any float dtype) or nested list."""
    if isinstance(audio, torch.Tensor):
        tensor = audio.detach().to("cpu")
        if tensor.is_complex():
            raise AudioError(f"unsupported sample type {tensor.dtype} (use float or integer PCM)")
        if tensor.is_floating_point() and tensor.dtype not in (torch.float32, torch.float64):
            tensor = tensor.to(torch.float32)          # bfloat16 has no numpy dtype
        return tensor.numpy()
    try:
        return np.asarray(audio)
    except (ValueError, TypeError) as exc:
        raise AudioError(f"audio is not a rectangular array of samples ({exc})") from None


def _check_shape(array: NDArray[Any]) -> NDArray[Any]:
    """`[samples]` -> `[1, samples]`; refuse other ranks, no channels, likely transpositions."""
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise AudioError(f"audio must be [samples] or [channels, samples], got shape {array.shape}")
    channels, samples = array.shape
    if channels == 0:
        raise AudioError("audio has no channels")
    if channels > max(2, samples) and samples <= _LIKELY_MAX_CHANNELS:
        raise AudioError(f"audio of shape {array.shape} would be {channels} channels of "
                         f"{samples} samples: is it [samples, channels]? pass audio.T")
    if channels > MAX_CHANNELS:
        raise AudioError(f"{channels} channels exceed the limit of {MAX_CHANNELS}")
    return array


def to_float32(audio: Any) -> NDArray[np.float32]:
    """Any numpy array, torch tensor or list, `[samples]` or `[channels, samples]`, to float32.

    Follows the input contract of the module docstring: integer PCM is scaled by
    its width, float is range-checked, anything ambiguous is an AudioError with a hint.
    """
    return np.ascontiguousarray(_pcm_to_float(_check_shape(_as_array(audio))))


def open_input(source: str | Path | BinaryIO) -> str | BinaryIO:
    """A path to a regular file, or stdin/a pipe/a FIFO read once into memory (they
    cannot seek); a missing, unreadable or folder path raises InputError."""
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
        if not path.is_file():               # a FIFO, /dev/fd/N: cannot seek, read it once
            return io.BytesIO(_read_all(path))
        return str(path)
    return source


def _read_all(path: Path) -> bytes:
    try:
        with open(path, "rb") as fileobj:
            return fileobj.read()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None


def wav_declared_frames(target: str | BinaryIO) -> int | None:
    """Sample frames a RIFF/WAVE header declares in its data chunk (None: unknown).

    libsndfile silently shortens a truncated WAV to what is present; comparing with
    this tells a truncated file from a complete one. Streaming writers put 0 or
    0xFFFFFFFF in the size when they do not know it: that is "unknown", not damage.
    """
    head = _peek(target, 1 << 16)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    at, block_align = 12, 0
    while at + 8 <= len(head):
        kind, size = head[at:at + 4], struct.unpack("<I", head[at + 4:at + 8])[0]
        if kind == b"fmt " and at + 20 <= len(head):
            block_align = struct.unpack("<H", head[at + 20:at + 22])[0]
        if kind == b"data":
            unknown = size in (0, 0xFFFFFFFF) or block_align == 0
            return None if unknown else size // block_align
        at += 8 + size + (size & 1)
    return None


def _peek(target: str | BinaryIO, count: int) -> bytes:
    if isinstance(target, str):
        with open(target, "rb") as fileobj:
            return fileobj.read(count)
    here = target.tell()
    try:
        return target.read(count)
    finally:
        target.seek(here)


class AudioReader:
    """Streaming reader of one audio file (or '-' for stdin, or a binary file object).

    Use as a context manager; `blocks()` yields float32 `[channels, n]` blocks so a
    long file never sits in memory whole. `missing_samples` counts samples per
    channel that a truncated WAV declares but does not hold (libsndfile reads what
    is there); with `strict=True` such a file is an AudioError instead.
    """

    def __init__(self, source: str | Path | BinaryIO, *, strict: bool = False) -> None:
        self.name = str(source) if isinstance(source, (str, Path)) else "<stream>"
        target = open_input(source)
        declared = wav_declared_frames(target) if _can_peek(target) else None
        try:
            self._file = soundfile.SoundFile(target)
        except (soundfile.LibsndfileError, RuntimeError, TypeError) as exc:
            raise AudioError(f"{self.name}: not a supported audio file ({exc})") from None
        self.info = self._make_info()
        self.missing_samples = max(0, (declared or 0) - self.info.num_samples)
        if strict and self.missing_samples:
            self.close()
            raise AudioError(self.truncation_message())

    def truncation_message(self) -> str:
        """One line about a truncated input (empty if it is complete)."""
        if not self.missing_samples:
            return ""
        declared = self.info.num_samples + self.missing_samples
        return (f"{self.name}: truncated: the header declares {declared} samples, "
                f"{self.info.num_samples} are present")

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
        try:
            return _check_float_range(np.ascontiguousarray(data.T))
        except AudioError as exc:
            raise AudioError(f"{self.name}: {exc}") from None

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


def _can_peek(target: str | BinaryIO) -> bool:
    if isinstance(target, str):
        return True
    try:
        return bool(target.seekable())
    except (AttributeError, OSError, ValueError):
        return False


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
        self._guard = _GuardedFile(fileobj)
        try:
            self._file = soundfile.SoundFile(self._guard, "w", samplerate=sample_rate,
                                             channels=channels, format=kind, subtype=subtype)
        except (soundfile.LibsndfileError, RuntimeError) as exc:
            raise self._error(f"cannot write {kind}/{subtype} audio: {exc}") from None

    def write(self, block: NDArray[np.float32]) -> None:
        data = np.clip(block, -1.0, 1.0) if self._clip else block
        try:
            self._file.write(np.ascontiguousarray(data.T))
        except (soundfile.LibsndfileError, RuntimeError) as exc:
            raise self._error(f"cannot write audio: {exc}") from None
        self._raise_failure()

    def close(self) -> None:
        try:
            self._file.close()
        except (soundfile.LibsndfileError, RuntimeError) as exc:
            raise self._error(f"cannot write audio: {exc}") from None
        self._raise_failure()

    def _error(self, fallback: str) -> OutputError:
        """The OS error libsndfile saw through its callbacks (e.g. disk full), else fallback."""
        failure = self._guard.failure
        if failure is None:
            return OutputError(fallback)
        return OutputError(f"cannot write audio: {failure.strerror or failure}")

    def _raise_failure(self) -> None:
        if self._guard.failure is not None:
            raise self._error("")

    def __enter__(self) -> AudioWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _GuardedFile:
    """A file object for libsndfile's callbacks that never raises into them.

    An OSError inside a cffi callback prints "Exception ignored from cffi callback"
    tracebacks and libsndfile carries on; instead the first error is kept in
    `failure`, the callback reports a short write, and AudioWriter raises one
    OutputError with the OS's reason.
    """

    def __init__(self, fileobj: BinaryIO) -> None:
        self._f = fileobj
        self.failure: OSError | None = None

    def write(self, data: bytes) -> int:
        if self.failure is not None:
            return 0
        try:
            written = self._f.write(data)
        except OSError as exc:
            self.failure = exc
            return 0
        return len(data) if written is None else written

    def seek(self, offset: int, whence: int = 0) -> int:
        try:
            return self._f.seek(offset, whence)
        except OSError as exc:
            self.failure = self.failure or exc
            return -1

    def tell(self) -> int:
        return self._f.tell()

    def read(self, size: int = -1) -> bytes:
        try:
            return self._f.read(size)
        except OSError as exc:
            self.failure = self.failure or exc
            return b""

    def flush(self) -> None:
        try:
            self._f.flush()
        except OSError as exc:
            self.failure = self.failure or exc


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
    if kind == "FLAC" and channels > MAX_FLAC_CHANNELS:
        raise AudioError(f"FLAC holds at most {MAX_FLAC_CHANNELS} channels, the audio has "
                         f"{channels} (write .wav instead)")
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
    """Resample an unbounded signal block by block (libsoxr), equal to resampling it whole.

    Any pair of integer rates works, in constant memory. libsoxr compensates its
    filter delay, so output sample j is at time j / to_rate; the total length is
    exactly `resampled_length(pushed, from_rate, to_rate)` (libsoxr's rounding is
    topped up with zeros, which is what the signal's zero padding would give).
    """

    def __init__(self, from_rate: int, to_rate: int, channels: int) -> None:
        self.from_rate, self.to_rate, self.channels = from_rate, to_rate, channels
        self._soxr = None if from_rate == to_rate else soxr.ResampleStream(
            from_rate, to_rate, channels, dtype="float32", quality=_SOXR_QUALITY)
        self._pushed = 0             # input samples pushed so far
        self._emitted = 0            # output samples returned so far

    @property
    def identity(self) -> bool:
        return self._soxr is None

    def push(self, block: NDArray[np.float32]) -> NDArray[np.float32]:
        """Add input samples `[channels, n]`; return the output samples that are ready."""
        self._pushed += block.shape[1]
        if self._soxr is None:
            self._emitted += block.shape[1]
            return block
        return self._emit(self._soxr.resample_chunk(_interleaved(block)))

    def flush(self) -> NDArray[np.float32]:
        """Return the rest of the output, as if the input ended with zeros."""
        if self._soxr is None:
            return np.zeros((self.channels, 0), dtype=np.float32)
        empty = np.zeros((0, self.channels), dtype=np.float32)
        tail = self._emit(self._soxr.resample_chunk(empty, last=True))
        missing = resampled_length(self._pushed, self.from_rate, self.to_rate) - self._emitted
        if missing <= 0:
            self._emitted += missing
            return tail[:, :tail.shape[1] + missing]
        self._emitted += missing
        return np.concatenate([tail, np.zeros((self.channels, missing), np.float32)], axis=1)

    def _emit(self, frames: NDArray[np.float32]) -> NDArray[np.float32]:
        self._emitted += frames.shape[0]
        return np.ascontiguousarray(frames.T, dtype=np.float32)


def _interleaved(block: NDArray[np.float32]) -> NDArray[np.float32]:
    """`[channels, n]` -> contiguous `[n, channels]`, as libsoxr takes it."""
    return np.ascontiguousarray(block.T, dtype=np.float32)


def resample(audio: NDArray[np.float32], from_rate: int, to_rate: int) -> NDArray[np.float32]:
    """Resample float32 `[channels, samples]` whole; the output has ceil(n * to / from) samples."""
    if from_rate == to_rate:
        return audio
    resampler = StreamResampler(from_rate, to_rate, audio.shape[0])
    return np.concatenate([resampler.push(audio), resampler.flush()], axis=1)
