"""Classic codecs driven through their command-line tools: Opus, MP3, AAC-LC, Vorbis.

Each codec is a recipe of two commands (encode a WAV, decode to a WAV). A
missing tool makes the codec unavailable, and the bench skips it with a
warning. Bitrates are never taken from the command line: the file size and the
sum of the packet sizes that `ffprobe -show_packets` reports are measured.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from bench.clips import Clip
from bench.coding import Coded

Command = Callable[[Path, Path, int], list[str]]

# opusdec can only output these rates; anything else is decoded at 48 kHz.
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
_FFMPEG = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y"]


def _opus_encode(src: Path, dst: Path, kbps: int) -> list[str]:
    return ["opusenc", "--quiet", "--hard-cbr", "--bitrate", str(kbps), str(src), str(dst)]


def _opus_decode(src: Path, dst: Path, sample_rate: int) -> list[str]:
    rate = sample_rate if sample_rate in _OPUS_RATES else 48000
    return ["opusdec", "--quiet", "--rate", str(rate), str(src), str(dst)]


def _mp3_encode(src: Path, dst: Path, kbps: int) -> list[str]:
    return ["lame", "--quiet", "--cbr", "-b", str(kbps), "-m", "m", str(src), str(dst)]


def _mp3_decode(src: Path, dst: Path, sample_rate: int) -> list[str]:
    return ["lame", "--quiet", "--decode", str(src), str(dst)]


def _aac_encode(src: Path, dst: Path, kbps: int) -> list[str]:
    return [*_FFMPEG, "-i", str(src), "-c:a", "aac", "-b:a", f"{kbps}k", str(dst)]


def _ffmpeg_decode(src: Path, dst: Path, sample_rate: int) -> list[str]:
    return [*_FFMPEG, "-i", str(src), "-c:a", "pcm_f32le", str(dst)]


def _vorbis_encode(src: Path, dst: Path, kbps: int) -> list[str]:
    return ["oggenc", "--quiet", "--managed", "-b", str(kbps), "-o", str(dst), str(src)]


def _vorbis_decode(src: Path, dst: Path, sample_rate: int) -> list[str]:
    return ["oggdec", "--quiet", "-o", str(dst), str(src)]


@dataclass(frozen=True)
class ClassicCodec:
    """A classic codec: its tools, file suffix, command recipes and benched bitrates."""

    name: str
    suffix: str
    tools: tuple[str, ...]
    encode_command: Command
    decode_command: Command
    kbps: tuple[int, ...]           # default benched rates
    min_kbps: int = 0               # the tool refuses lower rates (no file at all)

    def missing_tools(self) -> list[str]:
        """Tools of this codec not found on PATH (ffprobe is needed for payload sizes)."""
        return [tool for tool in (*self.tools, "ffprobe") if shutil.which(tool) is None]

    def points(self, rates: Sequence[float] | None = None) -> list[ClassicPoint]:
        """Points at the given rates (default: this codec's own), none below its floor."""
        chosen = self.kbps if rates is None else rates
        return [ClassicPoint(self, float(kbps)) for kbps in chosen if kbps >= self.min_kbps]


#: The rates of issue 9. Below its floor a tool may still write a file at a higher
#: rate (lame: 8 kbps); the bench reports the measured rate and notes the gap.
BENCH_KBPS = (3, 6, 12, 24, 32)

CLASSIC_CODECS: tuple[ClassicCodec, ...] = (
    ClassicCodec("opus", ".opus", ("opusenc", "opusdec"), _opus_encode, _opus_decode,
                 BENCH_KBPS),
    ClassicCodec("mp3", ".mp3", ("lame",), _mp3_encode, _mp3_decode, BENCH_KBPS),
    ClassicCodec("aac", ".m4a", ("ffmpeg",), _aac_encode, _ffmpeg_decode, BENCH_KBPS),
    # oggenc refuses < 16 kbps for 24 kHz mono ("invalid parameters for bitrate").
    ClassicCodec("vorbis", ".ogg", ("oggenc", "oggdec"), _vorbis_encode, _vorbis_decode,
                 (16, 24, 32), min_kbps=16),
)


class ToolError(RuntimeError):
    """An external codec tool failed; carries its command and stderr."""


def run_tool(command: Sequence[str]) -> float:
    """Run a tool, returning its wall time in seconds; failure -> ToolError."""
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise ToolError(f"{command[0]} exited {result.returncode}: {' | '.join(message)}")
    return elapsed


def packet_payload_bytes(path: Path) -> int:
    """Sum of the audio packet sizes in a file, as ffprobe reports them (no container)."""
    command = ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
               "packet=size", "-of", "csv=p=0", str(path)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ToolError(f"ffprobe failed on {path}: {result.stderr.strip()}")
    return sum(int(line.split(",")[0]) for line in result.stdout.split() if line.strip())


@dataclass(frozen=True)
class ClassicPoint:
    """One classic codec at one nominal bitrate: codes a WAV file through its tools."""

    codec: ClassicCodec
    nominal_kbps: float

    @property
    def codec_name(self) -> str:
        return self.codec.name

    @property
    def label(self) -> str:
        return f"{self.codec.name} {self.nominal_kbps:g}k"

    @property
    def rate_point(self) -> int:
        return -1

    def run(self, clip: Clip, workdir: Path) -> Coded:
        """Encode and decode the clip's WAV; return the decoded audio, sizes and timings."""
        wav_path = clip.wav_path
        stem = f"{wav_path.stem}.{self.codec.name}{self.nominal_kbps:g}"
        coded_path = workdir / f"{stem}{self.codec.suffix}"
        decoded_path = workdir / f"{stem}.decoded.wav"
        encode_s = run_tool(self.codec.encode_command(wav_path, coded_path,
                                                      int(self.nominal_kbps)))
        if not coded_path.exists() or coded_path.stat().st_size == 0:
            raise ToolError(f"{self.label}: the encoder wrote no data")
        decode_s = run_tool(self.codec.decode_command(coded_path, decoded_path,
                                                                clip.sample_rate))
        audio, decoded_rate = sf.read(str(decoded_path), dtype="float32", always_2d=True)
        coded = Coded(audio.mean(axis=1), int(decoded_rate), coded_path.stat().st_size,
                      packet_payload_bytes(coded_path), encode_s, decode_s)
        coded_path.unlink()
        decoded_path.unlink()
        return coded
