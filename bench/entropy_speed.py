"""Entropy coder throughput and container overhead (`python -m bench.entropy_speed`).

Runs on one core (thread pools pinned to 1, process affinity to one CPU where
the OS allows) and never imports torch. Reports:
- encode and decode throughput in symbols/s over realistic chunks (64 latent
  channels x 150 frames of quantized Laplacian/Gaussian latents, one payload per
  chunk as the codec writes them), and payload bits vs `ideal_bits`;
- container overhead (all bytes outside chunk payloads) in bytes per second of
  audio at 6 kbps and as a percentage of a 10-second file.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402

import numpy as np  # noqa: E402
from numpy.typing import NDArray  # noqa: E402

from codec import format as fmt  # noqa: E402
from codec.entropy import CdfTable, decode_symbols, encode_symbols, ideal_bits  # noqa: E402

LATENT_CHANNELS = 64
FRAMES_PER_CHUNK = 150
FRAME_RATE = 75  # 24 kHz / hop 320


@dataclass(frozen=True)
class SpeedResult:
    """Throughput of one workload."""

    workload: str
    num_symbols: int
    encode_msym_s: float
    decode_msym_s: float
    payload_bits: int
    ideal_bits: float
    excess_percent: float


@dataclass(frozen=True)
class OverheadResult:
    """Container bytes outside payloads for one file geometry."""

    duration_s: float
    kbps: float
    file_bytes: int
    overhead_bytes: int
    overhead_percent: float
    overhead_bytes_per_s: float


def laplace_tables(scales: NDArray[np.float64], half: int = 60) -> CdfTable:
    """Discretized Laplace priors, one table per latent channel (precision 16)."""
    x = np.arange(-half, half + 1, dtype=np.float64)

    def cdf(z: NDArray[np.float64], s: float) -> NDArray[np.float64]:
        return np.where(z < 0, 0.5 * np.exp(np.minimum(z, 0) / s),
                        1 - 0.5 * np.exp(-np.maximum(z, 0) / s))

    pmfs = [cdf(x + 0.5, s) - cdf(x - 0.5, s) for s in scales]
    return CdfTable.from_pmfs(pmfs, [-half] * len(scales), precision=16)


def make_chunks(kind: str, num_chunks: int, scales: NDArray[np.float64]
                ) -> list[NDArray[np.int32]]:
    """Quantized latents [64, 150] per chunk; per-channel scales like a trained prior."""
    rng = np.random.default_rng(0)
    shape = (LATENT_CHANNELS, FRAMES_PER_CHUNK)
    chunks = []
    for _ in range(num_chunks):
        if kind == "laplace":
            latent = rng.laplace(0.0, scales[:, None], shape)
        else:
            latent = rng.normal(0.0, 1.4 * scales[:, None], shape)
        chunks.append(np.round(latent).astype(np.int32))
    return chunks


def measure_speed(kind: str, num_chunks: int, repeats: int) -> SpeedResult:
    """Best-of-`repeats` wall time of coding every chunk as its own payload."""
    scales = np.geomspace(0.15, 6.0, LATENT_CHANNELS)
    tables = laplace_tables(scales)
    index = np.arange(LATENT_CHANNELS, dtype=np.int32)
    chunks = make_chunks(kind, num_chunks, scales)
    encode_symbols(chunks[0], index, tables)  # build the cached models outside timing
    encode_s = decode_s = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        payloads = [encode_symbols(c, index, tables) for c in chunks]
        encode_s = min(encode_s, time.perf_counter() - start)
        start = time.perf_counter()
        decoded = [decode_symbols(p, index, FRAMES_PER_CHUNK, tables) for p in payloads]
        decode_s = min(decode_s, time.perf_counter() - start)
    if not all(np.array_equal(a, b) for a, b in zip(chunks, decoded)):
        raise SystemExit("round trip failed")
    n = num_chunks * LATENT_CHANNELS * FRAMES_PER_CHUNK
    bits = 8 * sum(len(p) for p in payloads)
    ideal = sum(ideal_bits(c, index, tables) for c in chunks)
    return SpeedResult(kind, n, n / encode_s / 1e6, n / decode_s / 1e6, bits, ideal,
                       100.0 * (bits / ideal - 1.0))


def measure_overhead(duration_s: float, kbps: float, encoder_block: bool) -> OverheadResult:
    """Write a real stream of that duration and rate; count bytes outside payloads."""
    frames = int(duration_s * FRAME_RATE)
    metadata = (fmt.MetadataBlock(fmt.META_ENCODER, b"aec 0.1.0"),) if encoder_block else ()
    header = fmt.StreamHeader(
        sample_rate=44100, channels=1, num_samples=int(duration_s * 44100), model_rate=24000,
        hop_length=320, latent_channels=LATENT_CHANNELS, num_frames=frames,
        frames_per_chunk=FRAMES_PER_CHUNK, encoder_delay=0, rate_point=0,
        model_name="aec-base", model_sha256=hashlib.sha256(b"weights").digest(),
        coder_id=1, cdf_precision=16, metadata=metadata,
    )
    total = int(duration_s * kbps * 1000 / 8)
    overhead = len(fmt.write_stream(header, [b""] * header.num_chunks))
    for _ in range(3):  # length varints grow with the payloads: settle the split
        payloads = split_bytes(total - overhead, header.num_chunks)
        data = fmt.write_stream(header, payloads)
        overhead = len(data) - sum(len(p) for p in payloads)
    return OverheadResult(duration_s, kbps, len(data), overhead,
                          100.0 * overhead / len(data), overhead / duration_s)


def split_bytes(total: int, parts: int) -> list[bytes]:
    """`total` payload bytes over `parts` chunks, the remainder in the last one."""
    size = total // parts
    return [b"\x01" * size] * (parts - 1) + [b"\x01" * (total - size * (parts - 1))]


def pin_to_one_core() -> str:
    """Restrict this process to one CPU when the OS supports it."""
    if hasattr(os, "sched_setaffinity"):
        cpu = sorted(os.sched_getaffinity(0))[0]
        os.sched_setaffinity(0, {cpu})
        return f"cpu {cpu}"
    return "unpinned"


def main(argv: list[str] | None = None) -> int:
    """Print (or emit as JSON) throughput and overhead figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=200, help="chunks per workload")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    pinned = pin_to_one_core()
    speeds = [measure_speed(k, args.chunks, args.repeats) for k in ("laplace", "gaussian")]
    overheads = [measure_overhead(10, 6, False), measure_overhead(10, 6, True),
                 measure_overhead(3600, 6, True)]
    if args.json:
        print(json.dumps({"pinned": pinned, "speed": [asdict(s) for s in speeds],
                          "overhead": [asdict(o) for o in overheads]}, indent=1))
        return 0
    print(f"entropy coder, one core ({pinned}), load average {os.getloadavg()[0]:.2f}, "
          f"chunks of {LATENT_CHANNELS} x {FRAMES_PER_CHUNK} symbols")
    for s in speeds:
        print(f"  {s.workload:8s} {s.num_symbols:>9,d} symbols: encode {s.encode_msym_s:6.1f} "
              f"M sym/s, decode {s.decode_msym_s:6.1f} M sym/s, payload {s.payload_bits:,d} "
              f"bits vs ideal {s.ideal_bits:,.0f} (+{s.excess_percent:.3f} %)")
    print("container overhead (bytes outside payloads) at 6 kbps, 150 frames per chunk:")
    for o, label in zip(overheads, ("no metadata", "encoder block", "encoder block")):
        print(f"  {o.duration_s:6.0f} s, {label:13s}: {o.overhead_bytes} of {o.file_bytes} "
              f"bytes = {o.overhead_percent:.2f} %, {o.overhead_bytes_per_s:.2f} bytes/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
