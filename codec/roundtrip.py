"""Encode, decode and compare with the input, in constant memory (`aec roundtrip`).

The input is read twice, block by block: once to encode, once beside the decoded
blocks to measure quality; nothing is held whole. Stdin and pipes, which cannot
be read twice, are kept as their (compressed) bytes in memory, like every other
non-seekable input. Quality uses `codec.metrics` definitions: SNR and SI-SDR
from running sums (exactly the whole-signal values, up to float64 summation
order), and the mel distance per block of `MEL_BLOCK_SECONDS`, weighted by length
(equal to the whole-signal value for inputs up to one block long).
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.typing import NDArray

from codec import audio as audio_io
from codec.api import (
    AudioSink,
    AudioSource,
    Codec,
    DecodeReport,
    EncodeReport,
    ProgressCallback,
    atomic_output,
    check_not_input,
    check_output,
)
from codec.metrics import mel_distance, ratio_db

__all__ = ["RoundtripReport", "roundtrip", "MEL_BLOCK_SECONDS"]

#: The mel distance is computed on blocks of this length and averaged by length.
MEL_BLOCK_SECONDS = 30.0


@dataclass(frozen=True)
class RoundtripReport:
    """Rates and speeds of both halves, and quality of the decoded audio vs the input."""

    encode: EncodeReport
    decode: DecodeReport
    snr_db: float
    si_sdr_db: float
    mel_distance: float


class _Quality:
    """Running sums for SNR and SI-SDR, and length-weighted block mel distances."""

    def __init__(self, channels: int, sample_rate: int) -> None:
        self.ref_energy = np.zeros(channels)
        self.dot = np.zeros(channels)
        self.est_energy = np.zeros(channels)
        self.error_energy = 0.0
        self.sample_rate = sample_rate
        self.mel_block = max(1, int(MEL_BLOCK_SECONDS * sample_rate))
        self.mel_ref: list[NDArray[np.float32]] = []
        self.mel_est: list[NDArray[np.float32]] = []
        self.mel_total, self.mel_samples, self.buffered = 0.0, 0, 0

    def add(self, ref: NDArray[np.float32], est: NDArray[np.float32]) -> None:
        r, e = ref.astype(np.float64), est.astype(np.float64)
        self.ref_energy += np.sum(r * r, axis=1)
        self.dot += np.sum(r * e, axis=1)
        self.est_energy += np.sum(e * e, axis=1)
        self.error_energy += float(np.sum((r - e) ** 2))
        self.mel_ref.append(ref)
        self.mel_est.append(est)
        self.buffered += ref.shape[1]
        if self.buffered >= self.mel_block:
            self._mel_flush()

    def _mel_flush(self) -> None:
        if not self.buffered:
            return
        ref, est = np.concatenate(self.mel_ref, axis=1), np.concatenate(self.mel_est, axis=1)
        self.mel_total += mel_distance(ref, est, self.sample_rate) * ref.shape[1]
        self.mel_samples += ref.shape[1]
        self.mel_ref, self.mel_est, self.buffered = [], [], 0

    def results(self) -> tuple[float, float, float]:
        """(SNR dB, SI-SDR dB, mel distance), as `codec.metrics` defines them."""
        self._mel_flush()
        snr = ratio_db(float(self.ref_energy.sum()), self.error_energy)
        alpha = np.divide(self.dot, self.ref_energy, out=np.zeros_like(self.dot),
                          where=self.ref_energy > 0)
        target = alpha * alpha * self.ref_energy
        residual = np.maximum(self.est_energy - 2 * alpha * self.dot + target, 0.0)
        si_sdr = ratio_db(float(target.sum()), float(residual.sum()))
        mel = self.mel_total / self.mel_samples if self.mel_samples else 0.0
        return snr, si_sdr, mel


class _CompareSink(AudioSink):
    """Pairs each decoded block with the same input samples; optionally writes it out."""

    def __init__(self, reference: audio_io.AudioReader, output: BinaryIO | None, kind: str,
                 subtype: str) -> None:
        self.reference = reference.blocks()
        self.pending = np.zeros((reference.info.channels, 0), dtype=np.float32)
        self.quality = _Quality(reference.info.channels, reference.info.sample_rate)
        self.output, self.kind, self.subtype = output, kind, subtype
        self.writer: audio_io.AudioWriter | audio_io.WavPipeWriter | None = None
        self.seconds = 0.0                    # time spent here, not decoding

    def start(self, sample_rate: int, channels: int, num_samples: int) -> None:
        super().start(sample_rate, channels, num_samples)
        if self.output is not None:
            self.writer = audio_io.open_writer(self.output, sample_rate, channels, num_samples,
                                               self.kind, self.subtype)

    def write(self, block: NDArray[np.float32]) -> None:
        started = time.perf_counter()
        if self.writer is not None:
            self.writer.write(block)
        self.quality.add(self._reference(block.shape[1]), block)
        self.seconds += time.perf_counter() - started

    def _reference(self, count: int) -> NDArray[np.float32]:
        while self.pending.shape[1] < count:
            self.pending = np.concatenate([self.pending, next(self.reference)], axis=1)
        out, self.pending = self.pending[:, :count], self.pending[:, count:]
        return out

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _open(source: str | BinaryIO, strict: bool) -> audio_io.AudioReader:
    if not isinstance(source, str):
        source.seek(0)
    return audio_io.AudioReader(source, strict=strict)


def roundtrip(codec: Codec, src: str | Path, kbps: float, *, output: str | Path | None = None,
              overwrite: bool = False, sample_format: str = "pcm16", strict: bool = False,
              encode_progress: ProgressCallback | None = None,
              decode_progress: ProgressCallback | None = None) -> RoundtripReport:
    """Encode `src` at `kbps`, decode it (to `output` if given) and measure the quality."""
    if output is not None:
        check_not_input(src, output)
        kind, subtype = audio_io.output_format(output, sample_format)
        if str(output) != "-":
            check_output(Path(output), overwrite)
    source = audio_io.open_input(src)
    stream = io.BytesIO()
    with _open(source, strict) as reader:
        info = reader.info
        blocks = AudioSource(info.sample_rate, info.channels, info.num_samples, reader.blocks)
        encoded = codec.encode_to(stream, blocks, kbps, encode_progress)
    with _open(source, strict) as reference:
        if output is None:
            decoded, quality = _decode(codec, stream, reference, None, "", "", decode_progress)
        else:
            with atomic_output(output, overwrite) as fileobj:
                decoded, quality = _decode(codec, stream, reference, fileobj, kind, subtype,
                                           decode_progress)
    return RoundtripReport(encoded, decoded, *quality)


def _decode(codec: Codec, stream: io.BytesIO, reference: audio_io.AudioReader,
            fileobj: BinaryIO | None, kind: str, subtype: str,
            progress: ProgressCallback | None) -> tuple[DecodeReport, tuple[float, float, float]]:
    sink = _CompareSink(reference, fileobj, kind, subtype)
    stream.seek(0)
    try:
        report = codec.decode_from(stream, sink, progress=progress)
    finally:
        sink.close()
    report = DecodeReport(report.sample_rate, report.channels, report.num_samples,
                          report.rate_point, report.size_bytes, report.payload_bytes,
                          report.damaged_chunks, max(report.seconds - sink.seconds, 0.0),
                          report.device)
    return report, sink.quality.results()
