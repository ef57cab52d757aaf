"""The aec library: `Codec` turns audio into `.aec` bytes and back.

    >>> from codec import Codec
    >>> codec = Codec.load()                      # shipped weights, cuda if available
    >>> data = codec.encode(audio, 44100, kbps=6) # numpy/torch [samples] or [channels, samples]
    >>> audio, sample_rate = codec.decode(data)   # float32 [channels, samples], exact length
    >>> codec.encode_file("talk.wav", "talk.aec")
    >>> codec.decode_file("talk.aec", "talk.flac")

This is the one place where model, entropy coder and container meet. Work is
done window by window in constant memory: the encoder sees each chunk's frames
plus `encoder_context_frames` on each side, the decoder each chunk's latent plus
`decoder_context_frames` on each side (geometry from the model), so windowed
results equal whole-signal inference and chunk seams vanish. Resampling to the
model rate and back is block-wise and exact too (`audio.StreamResampler`).
For the transform coder (coder 2) each chunk's payload comes from
`ratecontrol.RateController`, which spends the whole file's `kbps` budget
chunk by chunk, and goes back through `chunkcoder.decode_chunk`.

Files are written atomically: a temporary file in the target folder, renamed
over the target only when everything succeeded; nothing is overwritten unless
`overwrite=True`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import io
import math
import os
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import numpy as np
import torch
from numpy.typing import NDArray

from codec import audio as audio_io
from codec import chunkcoder, entropy, format
from codec.errors import (
    AecError,
    AudioError,
    DeviceError,
    InputError,
    FormatError,
    LimitError,
    ModelMismatchError,
    OutputError,
    OutputExistsError,
    UsageError,
    WeightsError,
)
from codec.ratecontrol import RateController, chunk_floor_bits, mid_side, minimum_payload_bits
from codec.weights import CodecModel, pick_rate_point

if TYPE_CHECKING:
    from codec.embed import EmbedReport

__all__ = [
    "Codec",
    "EncodeReport",
    "DecodeReport",
    "AudioSource",
    "AudioSink",
    "ArraySink",
    "array_source",
    "read_header",
    "resolve_device",
    "atomic_output",
    "check_output",
    "check_not_input",
    "DEFAULT_CHUNK_SECONDS",
    "MAX_DECODE_RATIO",
]

#: Default chunk length: long enough that per-chunk overhead (length, CRC, coder
#: flush) stays far below 1 % at 6 kbps, short enough that a damaged chunk loses little.
DEFAULT_CHUNK_SECONDS = 4.0
#: The networks run on windows of about this many seconds (whole chunks) plus context:
#: long enough that the context frames cost little, short enough for constant memory.
WINDOW_SECONDS = 12.0

#: Decompression-bomb cap: decoded model-rate samples (all channels) per stream byte.
#: Silence at the lowest rate point of aec-base takes about 175; a stream that claims
#: more than 4096 (plus DECODE_RATIO_ALLOWANCE) is refused before anything is written,
#: concealed (--ignore-errors) chunks included. None or 0 lifts the cap.
MAX_DECODE_RATIO = 4096.0
#: Samples always allowed whatever the ratio, so that tiny streams decode.
DECODE_RATIO_ALLOWANCE = 1 << 20
#: Up to this many channels the decoder's window is WINDOW_SECONDS; beyond, it shrinks.
_WINDOW_CHANNELS = 8

#: progress(done_samples, total_samples), both per channel at the input rate.
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class EncodeReport:
    """What `encode_file` did, with honest rates (whole file and payload only)."""

    sample_rate: int
    channels: int
    num_samples: int
    rate_point: int
    nominal_kbps: float
    size_bytes: int            # the whole .aec file
    payload_bytes: int         # entropy-coded chunk payloads only
    seconds: float             # wall time of the encode
    device: str
    warnings: tuple[str, ...] = ()   # e.g. a truncated input that was encoded as it is
    channel_kbps: tuple[float, ...] = ()   # transform coder: ideal payload kbps per coded
    #   channel (gains, symbols, noise levels; mid and side in mid/side chunks)
    mid_side_chunks: int = 0               # stereo chunks coded as mid/side

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate

    @property
    def kbps(self) -> float:
        from codec.metrics import bitrate_kbps
        return bitrate_kbps(self.size_bytes, self.num_samples, self.sample_rate)

    @property
    def payload_kbps(self) -> float:
        from codec.metrics import bitrate_kbps
        return bitrate_kbps(self.payload_bytes, self.num_samples, self.sample_rate)

    @property
    def realtime(self) -> float:
        """Audio seconds per wall second (x real time)."""
        return self.duration_s / self.seconds if self.seconds > 0 else math.inf


@dataclass(frozen=True)
class DecodeReport:
    """What `decode_file` did; `damaged_chunks` were concealed with silence."""

    sample_rate: int
    channels: int
    num_samples: int
    rate_point: int
    size_bytes: int
    payload_bytes: int
    damaged_chunks: tuple[int, ...]
    seconds: float
    device: str

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate

    @property
    def realtime(self) -> float:
        return self.duration_s / self.seconds if self.seconds > 0 else math.inf


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" -> cuda if available else cpu; an unavailable device raises DeviceError."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(f"unknown device {device!r} ({exc})") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {device!r} requested but CUDA is not available")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise DeviceError(f"device {device!r} requested but only "
                              f"{torch.cuda.device_count()} CUDA device(s) exist")
    elif resolved.type != "cpu":
        raise DeviceError(f"unsupported device {device!r} (use auto, cpu or cuda)")
    return resolved


# ---------------------------------------------------------------- atomic output


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(dst: str | Path, overwrite: bool = False) -> Iterator[BinaryIO]:
    """Yield a binary file that becomes `dst` only if the block succeeds.

    Otherwise a temporary file in dst's folder is renamed over dst at the end,
    so readers never see a partial file and a failure leaves nothing behind.
    '-' streams to stdout as the data is produced (bounded memory, and a player
    can start at once); a pipe cannot take back what it got, so there an error
    midway leaves what was written, and the exit status says it failed.
    """
    if str(dst) == "-":
        stream = _PipeOutput(sys.stdout.buffer)
        yield cast(BinaryIO, stream)
        stream.flush()
        return
    path = Path(dst)
    check_output(path, overwrite)
    target = Path(os.path.realpath(path)) if overwrite and path.is_symlink() else path
    mode = stat.S_IMODE(os.stat(target).st_mode) if target.exists() else 0o666 & ~_umask()
    tmp = _make_temp(target)
    try:
        with open(tmp, "r+b") as fileobj:
            yield fileobj
            fileobj.flush()
            os.fsync(fileobj.fileno())
        os.chmod(tmp, mode)
        _move_into_place(tmp, target, overwrite)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if _is_write_failure(exc, path):
            raise OutputError(f"{path}: cannot write ({_reason(exc)})") from None
        raise


#: errno values that can only mean the output failed (full disk, quota, size limit, ...).
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


def _is_write_failure(exc: BaseException, path: Path) -> bool:
    """An error of the output file itself that does not name it yet."""
    if isinstance(exc, OutputError):
        return not str(exc).startswith(str(path))
    return (isinstance(exc, OSError) and not isinstance(exc, AecError)
            and exc.errno in _WRITE_ERRNOS)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OutputError):
        return str(exc).removeprefix("cannot write audio: ")
    return str(getattr(exc, "strerror", None) or exc)


class _PipeOutput(io.RawIOBase):
    """A write-only, non-seekable view of a binary stream that counts bytes (for tell)."""

    def __init__(self, target: BinaryIO) -> None:
        super().__init__()
        self._target = target
        self._count = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, data: Any) -> int:
        written = self._target.write(data)
        self._count += len(data)
        return written if written is not None else len(data)

    def tell(self) -> int:
        return self._count

    def flush(self) -> None:
        self._target.flush()


def check_not_input(src: str | Path | bytes, dst: str | Path) -> None:
    """Refuse an output that is the input (same file, even via links): UsageError (exit 2).

    With -f the input would be replaced by its own encoding; no tool should do that.
    """
    if isinstance(src, bytes) or "-" in (str(src), str(dst)):
        return
    try:
        same = os.path.samefile(src, dst)
    except OSError:                          # one of them does not exist
        same = os.path.realpath(src) == os.path.realpath(dst)
    if same:
        raise UsageError(f"{dst}: output is the input file {src}; choose another output")


def check_output(path: Path, overwrite: bool) -> None:
    """Refuse an output that exists (unless overwrite) or whose folder is missing."""
    if path.is_dir():
        raise OutputError(f"{path}: is a directory")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: exists (use -f/--force to overwrite)")
    if not path.parent.is_dir():
        raise OutputError(f"{path.parent}: no such directory")


def _make_temp(path: Path) -> str:
    try:
        handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    os.close(handle)
    return tmp


def _move_into_place(tmp: str, path: Path, overwrite: bool) -> None:
    """Rename tmp to path; without overwrite, a hard link refuses a target that appeared."""
    try:
        if overwrite:
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise OutputExistsError(f"{path}: exists (use -f/--force to overwrite)") from None
        except OSError:                     # no hard links here (e.g. some network mounts)
            os.replace(tmp, path)
            return
        os.unlink(tmp)
    except OutputExistsError:
        raise
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None


# ---------------------------------------------------------------- audio sources


@dataclass(frozen=True)
class AudioSource:
    """Audio to encode: its shape and a factory for its float32 `[channels, n]` blocks."""

    sample_rate: int
    channels: int
    num_samples: int
    blocks: Callable[[], Iterable[NDArray[np.float32]]]


def array_source(audio: Any, sample_rate: int) -> AudioSource:
    """An in-memory array (numpy/torch, `[samples]` or `[channels, samples]`) as a source."""
    array = audio_io.to_float32(audio)
    rate = audio_io.check_sample_rate(sample_rate)
    step = audio_io.BLOCK_SAMPLES

    def blocks() -> Iterator[NDArray[np.float32]]:
        for start in range(0, array.shape[1], step):
            yield array[:, start: start + step]
    return AudioSource(rate, array.shape[0], array.shape[1], blocks)


class AudioSink:
    """Where decoded audio goes: `start` once with the stream's shape, then `write` blocks."""

    def start(self, sample_rate: int, channels: int, num_samples: int) -> None:
        self.sample_rate, self.channels, self.num_samples = sample_rate, channels, num_samples

    def write(self, block: NDArray[np.float32]) -> None:
        raise NotImplementedError


class ArraySink(AudioSink):
    """Collects decoded blocks in memory (for `Codec.decode`)."""

    def __init__(self) -> None:
        self.blocks: list[NDArray[np.float32]] = []

    def write(self, block: NDArray[np.float32]) -> None:
        self.blocks.append(block)

    def audio(self) -> NDArray[np.float32]:
        if not self.blocks:
            return np.zeros((self.channels, 0), dtype=np.float32)
        return np.concatenate(self.blocks, axis=1)


class _WriterSink(AudioSink):
    """Streams decoded blocks into a wav/flac file object (or a WAV pipe)."""

    def __init__(self, fileobj: BinaryIO, kind: str, subtype: str) -> None:
        self.fileobj, self.kind, self.subtype = fileobj, kind, subtype
        self.writer: audio_io.AudioWriter | audio_io.WavPipeWriter | None = None

    def start(self, sample_rate: int, channels: int, num_samples: int) -> None:
        super().start(sample_rate, channels, num_samples)
        self.writer = audio_io.open_writer(self.fileobj, sample_rate, channels, num_samples,
                                           self.kind, self.subtype)

    def write(self, block: NDArray[np.float32]) -> None:
        if self.writer is None:
            raise RuntimeError("_WriterSink.write before start")
        self.writer.write(block)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class _ModelRateBuffer:
    """Model-rate samples pulled on demand from a source, with old ones dropped.

    Samples past the (resampled) end of the signal read as zeros, which is what
    whole-signal inference sees as padding.
    """

    def __init__(self, source: AudioSource, model_rate: int,
                 progress: ProgressCallback | None) -> None:
        self._blocks = iter(source.blocks())
        self._resampler = audio_io.StreamResampler(source.sample_rate, model_rate, source.channels)
        self._buffer = np.zeros((source.channels, 0), dtype=np.float32)
        self._start = 0
        self._done = False
        self._read = 0
        self._source = source
        self._progress = progress

    def window(self, start: int, stop: int) -> NDArray[np.float32]:
        """Samples [start, stop) as float32 `[channels, stop - start]`."""
        while not self._done and self._start + self._buffer.shape[1] < stop:
            self._pull()
        out = np.zeros((self._buffer.shape[0], stop - start), dtype=np.float32)
        have = self._buffer[:, max(0, start - self._start): stop - self._start]
        out[:, :have.shape[1]] = have
        return out

    def _pull(self) -> None:
        block = next(self._blocks, None)
        if block is None:
            self._done = True
            more = self._resampler.flush()
        else:
            more = self._resampler.push(block)
            self._read += block.shape[1]
            if self._progress:
                self._progress(self._read, self._source.num_samples)
        self._buffer = np.concatenate([self._buffer, more], axis=1)

    def drop_before(self, index: int) -> None:
        if index > self._start:
            self._buffer = self._buffer[:, index - self._start:]
            self._start = index


# ---------------------------------------------------------------- the codec


class Codec:
    """A loaded model ready to encode and decode; see the module docstring."""

    def __init__(self, model: CodecModel, device: torch.device,
                 frames_per_chunk: int | None = None, chunks_per_window: int | None = None
                 ) -> None:
        """Wrap a loaded model; `frames_per_chunk` sets the stream's chunk size (default
        DEFAULT_CHUNK_SECONDS), `chunks_per_window` how many chunks the networks see at once
        (default: about WINDOW_SECONDS), which trades memory for context overhead."""
        self.model = model
        self.device = device
        frames_per_second = model.config.model_rate / model.geometry.hop_length
        self.frames_per_chunk = int(frames_per_chunk or
                                    max(1, round(DEFAULT_CHUNK_SECONDS * frames_per_second)))
        per_window = chunks_per_window or round(WINDOW_SECONDS / DEFAULT_CHUNK_SECONDS)
        if self.frames_per_chunk < 1 or per_window < 1:
            raise ValueError(f"frames_per_chunk ({frames_per_chunk}) and chunks_per_window "
                             f"({chunks_per_window}) must be >= 1")
        self.window_frames = self.frames_per_chunk * int(per_window)
        self.weights_path: str | Path | None = None   # where load() found the model
        self._denoiser: torch.nn.Module | None = None  # read on first denoise=True encode

    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "auto", *,
             need_encoder: bool = True, frames_per_chunk: int | None = None,
             chunks_per_window: int | None = None) -> Codec:
        """Load weights (None: the shipped default model) onto a device.

        `device` is "auto" (cuda if available, else cpu), "cpu", "cuda" or "cuda:N";
        an unavailable device raises DeviceError, bad weights WeightsError.
        `need_encoder=False` loads only what decoding needs.
        """
        from codec.weights import load_model

        resolved = resolve_device(device)
        model = load_model(path, device=str(resolved), need_encoder=need_encoder)
        codec = cls(model, resolved, frames_per_chunk, chunks_per_window)
        codec.weights_path = path
        return codec

    @property
    def model_rate(self) -> int:
        return int(self.model.config.model_rate)

    @property
    def model_name(self) -> str:
        return str(self.model.config.name)

    @property
    def latent_rows(self) -> int:
        """Rows of the decoder's input per audio channel (the transform adds its log step)."""
        return int(self.model.config.latent_channels) + int(self.model.is_transform)

    @torch.inference_mode()
    def warm_up(self) -> None:
        """Run the networks once on a little silence, so that one-time setup (kernel
        selection, allocator growth) is not billed to the first timed call."""
        geometry = self.model.geometry
        frames = 2 * max(geometry.encoder_context_frames, geometry.decoder_context_frames) + 1
        x = torch.zeros(1, 1, frames * geometry.hop_length, device=self.device)
        if self.model.encoder is not None:
            self.model.encoder(x)
        self.model.decoder(torch.zeros(1, self.latent_rows, frames, device=self.device))

    # ------------------------------------------------------------ bytes API

    def encode(self, audio: Any, sample_rate: int, kbps: float = 6.0, *,
               denoise: bool = False) -> bytes:
        """Encode audio (numpy/torch, `[samples]` or `[channels, samples]`, any rate) to .aec.

        `denoise=True` encodes with the denoising encoder (`codec.denoise`); same stream.
        """
        buffer = io.BytesIO()
        self.encode_to(buffer, array_source(audio, sample_rate), kbps, denoise=denoise)
        return buffer.getvalue()

    def decode(self, data: bytes, *, ignore_errors: bool = False,
               max_ratio: float | None = MAX_DECODE_RATIO) -> tuple[NDArray[np.float32], int]:
        """Decode .aec bytes to (float32 `[channels, samples]`, sample_rate), original length."""
        sink = ArraySink()
        self.decode_from(io.BytesIO(data), sink, ignore_errors=ignore_errors, max_ratio=max_ratio)
        return sink.audio(), sink.sample_rate

    def info(self, data_or_path: bytes | str | Path) -> format.StreamHeader:
        """The stream header of .aec bytes or of an .aec file (no decoding)."""
        return read_header(data_or_path)

    # ------------------------------------------------------------ file API

    def encode_file(self, src: str | Path, dst: str | Path, kbps: float = 6.0, *,
                    overwrite: bool = False, progress: ProgressCallback | None = None,
                    strict: bool = False, denoise: bool = False) -> EncodeReport:
        """Encode an audio file ('-' = stdin) to an .aec file ('-' = stdout), streaming.

        A truncated input (a WAV whose header declares more samples than it holds) is
        encoded as it is, with a line in `report.warnings`; `strict=True` refuses it.
        """
        check_not_input(src, dst)
        if str(dst) != "-":
            check_output(Path(dst), overwrite)
        with audio_io.AudioReader(src, strict=strict) as reader:
            info = reader.info
            source = AudioSource(info.sample_rate, info.channels, info.num_samples, reader.blocks)
            with atomic_output(dst, overwrite) as fileobj:
                report = self.encode_to(fileobj, source, kbps, progress, denoise=denoise)
            note = reader.truncation_message()
        return dataclasses.replace(report, warnings=(note,)) if note else report

    def decode_file(self, src: str | Path, dst: str | Path, *, overwrite: bool = False,
                    ignore_errors: bool = False, sample_format: str = "pcm16",
                    progress: ProgressCallback | None = None,
                    max_ratio: float | None = MAX_DECODE_RATIO) -> DecodeReport:
        """Decode an .aec file ('-' = stdin) to wav/flac by dst's extension ('-' = wav on stdout).

        `sample_format` is "pcm16" (default), "pcm24" or "float" (wav only). With
        `ignore_errors`, damaged chunks are concealed with silence and listed in the
        report; otherwise the first one raises and no output is left behind.
        """
        kind, subtype = audio_io.output_format(dst, sample_format)
        check_not_input(src, dst)
        if str(dst) != "-":
            check_output(Path(dst), overwrite)
        with _open_aec(src) as stream, atomic_output(dst, overwrite) as fileobj:
            sink = _WriterSink(fileobj, kind, subtype)
            try:
                report = self.decode_from(stream, sink, ignore_errors=ignore_errors,
                                          progress=progress, max_ratio=max_ratio)
            finally:
                sink.close()          # before the temp file closes (or is removed)
        return report

    # ------------------------------------------------------------ the latent as a feature

    @property
    def embed_rate(self) -> float:
        """Frames per second of `embed` (model_rate / hop_length: 75.0 for aec-base)."""
        return self.model_rate / self.model.geometry.hop_length

    def embed(self, audio: Any, sample_rate: int, *, pool: str = "none",
              feature: str = "logpower") -> NDArray[np.float32]:
        """The encoder's latent as features: float32 `[frames, dims]` for one channel,
        `[channels, frames, dims]` for more; pool "mean"/"meanstd" drops the frame axis.
        Features, framing and pooling are documented in `codec.embed`."""
        from codec.embed import embed_array
        return embed_array(self, audio, sample_rate, feature, pool)

    def embed_file(self, src: str | Path, dst: str | Path, *, pool: str = "none",
                   feature: str = "logpower", overwrite: bool = False) -> EmbedReport:
        """`embed` of an audio file, streamed into a float32 `.npy` file (atomic write);
        returns a `codec.embed.EmbedReport`."""
        from codec.embed import embed_file
        return embed_file(self, src, dst, feature, pool, overwrite=overwrite)

    def generate(self, seconds: float, seed: int = 0, prompt: Any = None,
                 prompt_rate: int | None = None, temperature: float = 1.0, *,
                 weights: str | None = None, progress: bool = False
                 ) -> tuple[NDArray[np.float32], int]:
        """Sample `seconds` of audio with the context model (`codec.context.generate`):
        (float32 `[1, samples]`, model rate). With a prompt (any rate; mixed to mono)
        the output starts with the prompt's 6 kbps decoded audio and continues it.
        Deterministic for a seed on CPU."""
        from codec.context.generate import generate_audio
        audio = generate_audio(self, seconds, seed, prompt, prompt_rate, temperature,
                               weights, progress)
        return audio, self.model_rate

    # ------------------------------------------------------------ file-object cores

    def encode_to(self, fileobj: BinaryIO, source: AudioSource, kbps: float = 6.0,
                  progress: ProgressCallback | None = None, *,
                  denoise: bool = False) -> EncodeReport:
        """Stream-encode a source into fileobj at the rate point for `kbps`.

        `denoise=True` swaps the MDCT encoder for the denoising one (WeightsError when
        the weights carry none); everything after it, the stream included, is unchanged.
        """
        started = time.perf_counter()
        if self.model.encoder is None:
            raise WeightsError("these weights were loaded without the encoder; cannot encode")
        encoder = self._encoder(denoise)
        if isinstance(kbps, bool) or not isinstance(kbps, (int, float)) or not (
                math.isfinite(kbps) and kbps > 0):
            raise AudioError(f"kbps must be a positive number, got {kbps!r}")
        header = self._make_header(source, kbps)
        if denoise:        # spec §3.3 tags block: says so without changing the format
            header = dataclasses.replace(header, metadata=(
                format.MetadataBlock(format.META_TAGS, b"AEC_DENOISE=1"),))
        code_chunk, controller = self._chunk_coder(header, kbps)
        buffer = _ModelRateBuffer(source, self.model_rate, progress)
        offset, payload_bytes = fileobj.tell(), 0
        with format.StreamWriter(fileobj, header) as writer:
            for first in range(0, header.num_frames, self.window_frames):
                for payload in self._encode_window(buffer, header, first, code_chunk, encoder):
                    writer.write_chunk(payload)
                    payload_bytes += len(payload)
        if progress:
            progress(source.num_samples, source.num_samples)
        report = self._encode_report(header, fileobj.tell() - offset, payload_bytes,
                                     time.perf_counter() - started, kbps)
        if controller is None:
            return report
        duration = max(report.duration_s, 1e-9)
        return dataclasses.replace(
            report, channel_kbps=tuple(b / duration / 1000 for b in controller.channel_bits),
            mid_side_chunks=controller.mid_side_chunks)

    def _make_header(self, source: AudioSource, kbps: float) -> format.StreamHeader:
        """The stream header; for the transform coder `rate_point` is the requested kbps
        (floor, informational: every chunk carries its own step, spec §5.6)."""
        config, geometry = self.model.config, self.model.geometry
        if source.channels > format.MAX_CHANNELS:
            raise AudioError(f"{source.channels} channels: .aec streams hold at most "
                             f"{format.MAX_CHANNELS}")
        model_samples = audio_io.resampled_length(source.num_samples, source.sample_rate,
                                                  config.model_rate)
        num_frames = -(-(model_samples + geometry.encoder_delay) // geometry.hop_length)
        num_frames = num_frames + geometry.tail_frames if model_samples else 0
        if self.model.is_transform:
            rate_point, coder_id = min(format.MAX_RATE_POINT, int(kbps)), chunkcoder.CODER_ID
        else:
            rate_point = pick_rate_point(self.model.config, kbps).index
            coder_id = entropy.CODER_ID
        return format.StreamHeader(
            sample_rate=source.sample_rate, channels=source.channels,
            num_samples=source.num_samples, model_rate=config.model_rate,
            hop_length=geometry.hop_length, latent_channels=config.latent_channels,
            num_frames=num_frames, frames_per_chunk=self.frames_per_chunk,
            encoder_delay=geometry.encoder_delay, rate_point=rate_point,
            model_name=config.name, model_sha256=self.model.decoder_sha256,
            coder_id=coder_id, cdf_precision=self.model.tables.precision)

    def _chunk_coder(self, header: format.StreamHeader, kbps: float
                     ) -> tuple[Callable[[torch.Tensor], bytes], RateController | None]:
        """A function from one chunk's encoder output [ch, C, F] to its payload.

        The transform coder spends the whole file's budget (kbps x duration, minus
        the container's fixed bytes) chunk by chunk (`codec.ratecontrol`).
        """
        if not self.model.is_transform:
            table_index = self._table_index(header)

            def code_rows(y: torch.Tensor) -> bytes:
                symbols = self.model.quantizer.quantize(y, header.rate_point).to("cpu").numpy()
                rows = np.ascontiguousarray(symbols.reshape(-1, symbols.shape[2]), np.int32)
                return bytes(entropy.encode_symbols(rows, table_index, self.model.tables))
            return code_rows, None
        seconds = header.num_samples / header.sample_rate
        fixed = len(header.pack()) + format.END_BLOCK_BYTES + format.INDEX_FIXED_BYTES
        budget = kbps * 1000.0 * seconds - 8.0 * fixed
        layout = self.model.config.layout()
        floor = minimum_payload_bits(header.num_chunks, header.num_frames,
                                     chunk_floor_bits(layout, header.channels))
        if header.num_frames and budget < floor:   # an empty input is an empty stream
            lowest = (floor + 8.0 * fixed) / 1000.0 / max(seconds, 1e-9)
            raise UsageError(f"--kbps {kbps:g} is too low for {seconds:.3g} s of audio: the "
                             f"stream needs at least {lowest:.3g} kbps (container included)")
        controller = RateController(layout, self.model.tables, self.model.quantizer, budget,
                                    header.num_frames, header.num_chunks, header.channels)
        return (lambda y: controller.code_chunk(y)[0]), controller

    def _table_index(self, header: format.StreamHeader) -> NDArray[np.int32]:
        """Row ch * C + c of a chunk is coded with table rate_point * C + c (contracts §1)."""
        latent = header.latent_channels
        rows = np.arange(header.channels * latent) % latent
        return (header.rate_point * latent + rows).astype(np.int32)

    def _encoder(self, denoise: bool) -> torch.nn.Module:
        """The plain encoder, or the denoising one (loaded on first use, `codec.denoise`)."""
        if not denoise:
            return self.model.encoder
        if self._denoiser is None:
            from codec.denoise import load_denoiser
            if not self.model.is_transform:
                raise WeightsError(f"{self.model_name!r} is not a transform model; "
                                   "it has no denoising encoder")
            self._denoiser = load_denoiser(self.weights_path, self.model.decoder_sha256,
                                           self.device)
        return self._denoiser

    @torch.inference_mode()
    def _encode_window(self, buffer: _ModelRateBuffer, header: format.StreamHeader,
                       first: int, code_chunk: Callable[[torch.Tensor], bytes],
                       encoder: torch.nn.Module | None = None) -> list[bytes]:
        """Encoder on the window's frames plus context; one entropy-coded payload per chunk.

        An encoder with its own `context_frames` (the denoiser) gets that much context.
        """
        encoder = encoder if encoder is not None else self.model.encoder
        hop = header.hop_length
        context = getattr(encoder, "context_frames", self.model.geometry.encoder_context_frames)
        count = min(self.window_frames, header.num_frames - first)
        start = max(0, first - context)
        stop = min(header.num_frames, first + count + context)
        window = buffer.window(start * hop, stop * hop)
        buffer.drop_before(max(0, first + count - context) * hop)
        x = torch.from_numpy(window).to(self.device).unsqueeze(1)          # [ch, 1, T]
        if encoder is None:
            raise WeightsError("these weights were loaded without the encoder; cannot encode")
        y = encoder(x)[:, :, first - start: first - start + count]         # [ch, C, count]
        return [code_chunk(y[:, :, offset: offset + header.frames_per_chunk])
                for offset in range(0, count, header.frames_per_chunk)]

    def decode_from(self, fileobj: BinaryIO, sink: AudioSink, *, ignore_errors: bool = False,
                    progress: ProgressCallback | None = None,
                    max_ratio: float | None = MAX_DECODE_RATIO) -> DecodeReport:
        """Stream-decode fileobj into `sink` (float32 `[channels, n]` blocks, original rate).

        Everything the header promises is checked before `sink.start` (weights, tables,
        sample count, the MAX_DECODE_RATIO bomb cap), so a bad stream writes nothing.
        """
        started = time.perf_counter()
        reader = format.StreamReader(fileobj)
        header = reader.header
        self._check_stream(header)
        ratio = _DecodeRatio(header, max_ratio)
        ratio.check(reader.size_bytes, header.num_frames)
        sink.start(header.sample_rate, header.channels, header.num_samples)
        decoder = _StreamDecoder(self, header, sink.write, progress)
        payload_bytes, damaged = 0, []
        for chunk in reader.chunks(ignore_errors=ignore_errors):
            ratio.check_chunk(chunk, header)
            latent = None if chunk.payload is None else self._chunk_latent_at(
                header, chunk, ignore_errors)
            if latent is None:
                damaged.append(chunk.index)
            else:
                payload_bytes += len(chunk.payload or b"")
            decoder.add_latent(latent, chunk.num_frames)
        decoder.finish()
        size_bytes = reader.size_bytes if reader.size_bytes is not None else reader.bytes_read
        return DecodeReport(header.sample_rate, header.channels, header.num_samples,
                            header.rate_point, size_bytes, payload_bytes, tuple(damaged),
                            time.perf_counter() - started, str(self.device))

    def _chunk_latent_at(self, header: format.StreamHeader, chunk: format.Chunk,
                         ignore_errors: bool) -> torch.Tensor | None:
        """The chunk's latent; an invalid payload (valid CRC) names chunk and offset (spec §8).

        With ignore_errors such a chunk is concealed like a damaged one (None).
        """
        try:
            return self._chunk_latent(header, chunk)
        except FormatError as exc:
            if ignore_errors:
                return None
            message = str(exc).removesuffix(f" (at byte {exc.offset})")
            raise FormatError(f"chunk {chunk.index}: invalid payload: {message}",
                              chunk.offset) from None

    def _check_stream(self, header: format.StreamHeader) -> None:
        """Refuse streams made with other weights (naming both hashes) or geometry,
        CDF tables of another precision, or a header promising more samples than its
        frames hold."""
        mine = self.model.decoder_sha256
        if header.model_sha256 != mine:
            raise ModelMismatchError(
                f"stream needs model {header.model_name!r} with weights sha256 "
                f"{header.model_sha256.hex()}, but the loaded weights "
                f"({self.model_name!r}) have sha256 {mine.hex()}")
        config = self.model.config
        expected = (config.model_rate, self.model.geometry.hop_length, config.latent_channels)
        got = (header.model_rate, header.hop_length, header.latent_channels)
        if got != expected:
            raise ModelMismatchError(f"stream geometry (rate, hop, latent channels) {got} "
                                     f"does not match the model's {expected}")
        if not self.model.is_transform and not 0 <= header.rate_point < len(config.rate_points):
            raise ModelMismatchError(f"stream rate point {header.rate_point} not in the model's "
                                     f"0..{len(config.rate_points) - 1}")
        precision = self.model.tables.precision
        if header.cdf_precision != precision:       # spec §3.2: the decoder MUST check it
            raise FormatError(f"stream says cdf_precision = {header.cdf_precision}, but the "
                              f"weights it names have {precision}-bit CDF tables")
        format.check_sample_count(header)

    @torch.inference_mode()
    def _chunk_latent(self, header: format.StreamHeader, chunk: format.Chunk) -> torch.Tensor:
        """Entropy-decode a chunk's payload and dequantize: latent `[channels, C, frames]`."""
        if self.model.is_transform:
            return self._transform_latent(header, chunk)
        rows = entropy.decode_symbols(chunk.payload or b"", self._table_index(header),
                                      chunk.num_frames, self.model.tables)
        # writable + contiguous: torch warns on read-only numpy memory
        symbols = torch.from_numpy(np.require(rows, np.int32, ["C", "W"])).to(self.device)
        symbols = symbols.reshape(header.channels, header.latent_channels, chunk.num_frames)
        return self.model.quantizer.dequantize(symbols, header.rate_point)

    def _transform_latent(self, header: format.StreamHeader, chunk: format.Chunk
                          ) -> torch.Tensor:
        """Coder-2 chunk -> dequantized, noise-filled latent [channels, C + 1, frames].

        The noise is seeded by the chunk index, so a stream always decodes the same.
        """
        symbols = chunkcoder.decode_chunk(chunk.payload or b"", self.model.config.layout(),
                                          self.model.tables, header.channels, chunk.num_frames)
        latent = self.model.quantizer.dequantize(symbols.coefficients, symbols.gains,
                                                 symbols.frame_steps, symbols.noise, chunk.index,
                                                 self.device, symbols.envelope)
        if symbols.mid_side:           # orthonormal mid/side is its own inverse
            latent[:, :-1] = mid_side(latent[:, :-1])
        return latent

    def _encode_report(self, header: format.StreamHeader, size_bytes: int, payload_bytes: int,
                       seconds: float, kbps: float) -> EncodeReport:
        """Rate point -1 and the requested kbps for the transform coder (no rate points)."""
        point, nominal = -1, float(kbps)
        if not self.model.is_transform:
            point = header.rate_point
            nominal = float(self.model.config.rate_points[point].nominal_kbps)
        return EncodeReport(header.sample_rate, header.channels, header.num_samples,
                            point, nominal, size_bytes,
                            payload_bytes, seconds, str(self.device))


class _DecodeRatio:
    """The MAX_DECODE_RATIO cap: model-rate samples a stream promises per byte it has.

    Checked on the header against the stream size when it is known (before any
    output), else chunk by chunk against the bytes read so far. Concealed chunks
    count like decoded ones, so --ignore-errors cannot lift it.
    """

    def __init__(self, header: format.StreamHeader, max_ratio: float | None) -> None:
        if max_ratio is not None and not max_ratio >= 0:
            raise UsageError(f"max_ratio must be >= 0 (0 or None: no cap), got {max_ratio!r}")
        self.limit = float(max_ratio or 0.0)
        self.header = header
        self.size_known = False

    def check(self, size_bytes: int | None, frames: int) -> None:
        """Refuse `frames` frames (all channels) from a stream of `size_bytes` bytes."""
        if not self.limit or size_bytes is None:
            return
        self.size_known = frames == self.header.num_frames
        samples = frames * self.header.hop_length * self.header.channels
        if samples > self.limit * size_bytes + DECODE_RATIO_ALLOWANCE:
            raise LimitError(
                f"a stream of {size_bytes} bytes claims {samples} samples "
                f"({self.header.channels} channels at {self.header.model_rate} Hz), over the "
                f"cap of {self.limit:g} per byte: a decompression bomb or a damaged header "
                f"(if you trust it, raise the cap: --max-ratio / max_ratio=)")

    def check_chunk(self, chunk: format.Chunk, header: format.StreamHeader) -> None:
        if self.size_known or chunk.offset is None:
            return
        frames = chunk.index * header.frames_per_chunk + chunk.num_frames
        self.check(chunk.offset + format.MIN_CHUNK_RECORD_BYTES, frames)


class _StreamDecoder:
    """Latent chunks in, audio blocks at the original rate out, in bounded memory.

    Chunk k's audio is synthesised from its latent plus `decoder_context_frames`
    on each side, so it must wait for the next chunk's first frames. Damaged
    chunks (latent None) decode from zeros and their samples are silenced.
    """

    def __init__(self, codec: Codec, header: format.StreamHeader,
                 write: Callable[[NDArray[np.float32]], None],
                 progress: ProgressCallback | None) -> None:
        self.codec, self.header, self.write, self.progress = codec, header, write, progress
        self.context = codec.model.geometry.decoder_context_frames
        self.latents: list[torch.Tensor] = []       # frames [latent_start, latent_end)
        self.damaged: list[tuple[int, int]] = []    # frame ranges to silence
        self.latent_start = 0
        self.latent_end = 0
        # many channels: shorter windows, so the [channels, window] block stays bounded
        self.window_frames = max(1, codec.window_frames * _WINDOW_CHANNELS // max(
            _WINDOW_CHANNELS, header.channels))
        self.next_first = 0                         # first frame of the next window
        model_samples = audio_io.resampled_length(header.num_samples, header.sample_rate,
                                                  header.model_rate)
        self.skip = header.encoder_delay              # model-rate samples still to drop
        self.model_samples_left = model_samples       # model-rate samples still to emit
        self.resampler = audio_io.StreamResampler(header.model_rate, header.sample_rate,
                                                  header.channels)
        self.samples_left = header.num_samples        # output samples still to write

    def add_latent(self, latent: torch.Tensor | None, num_frames: int) -> None:
        if latent is None:
            latent = torch.zeros(self.header.channels, self.codec.latent_rows, num_frames,
                                 device=self.codec.device)
            self.damaged.append((self.latent_end, self.latent_end + num_frames))
        self.latents.append(latent)
        self.latent_end += num_frames
        while self._ready():
            self._synthesise()

    def _ready(self) -> bool:
        """Whether the next window and its right context have arrived."""
        if self.next_first >= self.header.num_frames:
            return False
        need = min(self.header.num_frames, self.next_first + self.window_frames + self.context)
        return self.latent_end >= need

    def finish(self) -> None:
        if self.latent_end != self.header.num_frames or self.next_first < self.header.num_frames:
            raise format.FormatError(f"stream holds {self.latent_end} of "
                                     f"{self.header.num_frames} frames")
        self._emit(self.resampler.flush())

    @torch.inference_mode()
    def _synthesise(self) -> None:
        """Decoder on the next window plus context; keep the window's own samples."""
        first = self.next_first
        count = min(self.window_frames, self.header.num_frames - first)
        start = max(0, first - self.context)
        stop = min(self.header.num_frames, first + count + self.context)
        latent = torch.cat(self.latents, dim=2)[:, :, start - self.latent_start:
                                                 stop - self.latent_start]
        hop = self.header.hop_length
        keep = slice((first - start) * hop, (first - start + count) * hop)
        # one channel at a time: the networks' memory does not grow with the channel count
        block = np.concatenate([
            self.codec.model.decoder(latent[c: c + 1])[:, 0, keep].float().to("cpu").numpy()
            for c in range(latent.shape[0])])
        self._silence_damaged(block, first, first + count)
        self._drop_latent_before(first + count - self.context)
        self.next_first += count
        self._push_model_rate(block)

    def _silence_damaged(self, block: NDArray[np.float32], first: int, stop: int) -> None:
        hop = self.header.hop_length
        for lo, hi in self.damaged:
            lo, hi = max(lo, first), min(hi, stop)
            if hi > lo:
                block[:, (lo - first) * hop: (hi - first) * hop] = 0.0

    def _drop_latent_before(self, frame: int) -> None:
        """Keep the latent concatenated as one tensor starting at >= frame - 0."""
        merged = torch.cat(self.latents, dim=2)
        keep_from = max(0, frame - self.latent_start)
        self.latents = [merged[:, :, keep_from:]]
        self.latent_start += keep_from

    def _push_model_rate(self, block: NDArray[np.float32]) -> None:
        """Drop the encoder delay, cut the padding at the end, resample, write."""
        drop = min(self.skip, block.shape[1])
        self.skip -= drop
        block = block[:, drop: drop + self.model_samples_left]
        self.model_samples_left -= block.shape[1]
        self._emit(self.resampler.push(np.ascontiguousarray(block)))

    def _emit(self, block: NDArray[np.float32]) -> None:
        block = block[:, :self.samples_left]
        if block.shape[1]:
            self.samples_left -= block.shape[1]
            self.write(block)
            if self.progress:
                self.progress(self.header.num_samples - self.samples_left,
                              self.header.num_samples)


# ---------------------------------------------------------------- headers


@contextlib.contextmanager
def _open_aec(src: str | Path | bytes) -> Iterator[BinaryIO]:
    """Open an .aec source: bytes, a path, or '-' (stdin); missing -> InputError."""
    if isinstance(src, bytes):
        yield io.BytesIO(src)
        return
    if str(src) == "-":
        yield io.BytesIO(sys.stdin.buffer.read())
        return
    path = Path(src)
    if not path.is_file():
        if not path.exists() or path.is_dir():
            raise InputError(f"{path}: no such file" if not path.exists() else
                             f"{path}: not a file")
    try:
        fileobj = open(path, "rb")
        if not path.is_file():                 # a FIFO or /dev/fd/N: cannot seek
            with fileobj:
                fileobj = cast(Any, io.BytesIO(fileobj.read()))
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with fileobj:
        yield fileobj


def read_header(data_or_path: bytes | str | Path) -> format.StreamHeader:
    """The validated header of .aec bytes or an .aec file."""
    with _open_aec(data_or_path) as fileobj:
        return format.StreamReader(fileobj).header
