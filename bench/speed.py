"""Speed bench: encode and decode x-realtime per codec on one long real input.

    python -m bench.speed --corpus /work/corpus --split valid --seconds 60 --out DIR
    python -m bench.speed --input DIR_OR_FILE [...] --out DIR

Real clips are concatenated to at least --seconds of audio. Classic codecs are
timed through their command-line tools (wall time, process start-up and file
I/O included, as a user would see it). aec is timed through `Codec.encode` /
`decode` on CPU, and on CUDA when available, where a batch of B copies of the
input is coded as B channels (the API codes channels as a batch of mono
signals). x-realtime = audio seconds coded / wall seconds. Writes speed.csv and
speed.md into --out.
"""

from __future__ import annotations

import argparse
import csv
import os
import math
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bench import clips as clip_sources
from bench.classic import CLASSIC_CODECS, ToolError
from bench.clips import Clip
from bench.rd import describe_commit, warn

GPU_BATCHES = (1, 8)


@dataclass(frozen=True)
class SpeedRow:
    """Encode/decode speed of one codec setting on the long input."""

    codec: str
    nominal_kbps: float
    device: str
    batch: int
    audio_s: float          # audio seconds coded per call (batch x input duration)
    encode_s: float
    decode_s: float
    encode_x_rt: float
    decode_x_rt: float
    encode_cpu_x_rt: float = math.nan   # aec only: audio seconds per CPU second of the process
    decode_cpu_x_rt: float = math.nan


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    clip_sources.add_source_arguments(parser)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="minimum length of the concatenated input (default 60)")
    parser.add_argument("--codecs", default="aec,opus,mp3,aac,vorbis")
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--threads", default="1,2",
                        help="torch CPU thread counts to time aec with (default 1,2)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="time each setting N times and keep the fastest (default 2)")
    return parser


def make_row(codec: str, kbps: float, device: str, batch: int, audio_s: float,
             encode_s: float, decode_s: float,
             cpu_s: tuple[float, float] = (math.nan, math.nan)) -> SpeedRow:
    return SpeedRow(codec, kbps, device, batch, round(audio_s, 3), encode_s, decode_s,
                    audio_s / max(encode_s, 1e-9), audio_s / max(decode_s, 1e-9),
                    audio_s / max(cpu_s[0], 1e-9), audio_s / max(cpu_s[1], 1e-9))


def time_classic(clip: Clip, names: Sequence[str], workdir: Path, repeats: int
                 ) -> list[SpeedRow]:
    """One row per classic codec point whose tools are installed (fastest of `repeats`)."""
    rows = []
    for codec in CLASSIC_CODECS:
        if codec.name not in names:
            continue
        if codec.missing_tools():
            warn(f"{codec.name} skipped: {', '.join(codec.missing_tools())} not installed")
            continue
        for point in codec.points():
            try:
                runs = [point.run(clip, workdir) for _ in range(max(1, repeats))]
            except ToolError as error:
                warn(f"{point.label} failed: {error}")
                continue
            rows.append(make_row(codec.name, point.nominal_kbps, "cpu (1 process)", 1,
                                 clip.duration_s, min(r.encode_s for r in runs),
                                 min(r.decode_s for r in runs)))
    return rows


def _time_roundtrip(codec: Any, audio: NDArray[np.float32], sample_rate: int, kbps: float
                    ) -> tuple[float, float, float, float]:
    """Wall seconds of one `Codec.encode` and one `Codec.decode` call, then the CPU
    seconds this process spent in each (on a busy machine, the steadier figure)."""
    start, cpu = time.perf_counter(), time.process_time()
    data = codec.encode(audio, sample_rate, kbps=kbps)
    encode_s, encode_cpu = time.perf_counter() - start, time.process_time() - cpu
    start, cpu = time.perf_counter(), time.process_time()
    codec.decode(data)
    return encode_s, time.perf_counter() - start, encode_cpu, time.process_time() - cpu


def time_aec(codec: Any, clip: Clip, device: str, batch: int, repeats: int
             ) -> list[SpeedRow]:
    """Every rate point of a loaded aec Codec on `batch` copies of the clip (fastest run)."""
    audio = np.repeat(clip.audio[None, :], batch, axis=0)
    _time_roundtrip(codec, audio[:, : clip.sample_rate], clip.sample_rate, 6.0)  # warm-up
    rows = []
    for rp in codec.model.config.rate_points:
        runs = [_time_roundtrip(codec, audio, clip.sample_rate, rp.measured_kbps + 1e-6)
                for _ in range(max(1, repeats))]
        rows.append(make_row("aec", rp.nominal_kbps, device, batch, batch * clip.duration_s,
                             min(r[0] for r in runs), min(r[1] for r in runs),
                             (min(r[2] for r in runs), min(r[3] for r in runs))))
    return rows


def aec_rows(clip: Clip, weights: Path | None, repeats: int, threads: Sequence[int],
             notes: list[str]) -> list[SpeedRow]:
    """aec on CPU at each torch thread count, and on CUDA with batching when present."""
    try:
        import torch

        from codec.api import Codec
        cpu = Codec.load(weights, device="cpu")
        rows = []
        default_threads = torch.get_num_threads()
        for count in threads:
            torch.set_num_threads(count)
            rows += time_aec(cpu, clip, f"cpu ({count} thread{'s' * (count > 1)})", 1, repeats)
        torch.set_num_threads(default_threads)
        if not torch.cuda.is_available():
            notes.append("aec on GPU: skipped, no CUDA device on this machine")
            return rows
        gpu = Codec.load(weights, device="cuda")
        name = torch.cuda.get_device_name(0)
        for batch in GPU_BATCHES:
            rows += time_aec(gpu, clip, f"cuda ({name})", batch, repeats)
        return rows
    except (ImportError, OSError, RuntimeError, ValueError) as error:  # AecError included
        notes.append(f"aec skipped: {type(error).__name__}: {error}")
        warn(notes[-1])
        return []


def long_clip(args: argparse.Namespace, workdir: Path) -> Clip:
    """Real clips concatenated (round-robin over kinds and packages) to >= --seconds."""
    sources = clip_sources.sources_from_args(args)
    sources = clip_sources.pick_per_kind(sources, 12)
    clips, total = [], 0.0
    for source in sources:
        clips.append(clip_sources.prepare_clip(source, workdir, 20.0))
        total += clips[-1].duration_s
        if total >= args.seconds * 1.5:
            break
    return clip_sources.concatenate_clips(clips, args.seconds, workdir)


def _cpu(x_rt: float) -> str:
    return "-" if math.isnan(x_rt) else f"{x_rt:.1f}"


def write_speed(rows: Sequence[SpeedRow], out: Path, command: str, notes: Sequence[str],
                clip: Clip) -> None:
    """speed.csv and a speed.md table with the machine context."""
    with open(out / "speed.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[f.name for f in fields(SpeedRow)])
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    lines = ["# aec speed bench", "", f"Command: `{command}`  ",
             f"Commit: `{describe_commit()}`  ",
             f"Input: {clip.duration_s:.1f} s of real clips at {clip.sample_rate} Hz, mono; "
             f"{os.cpu_count()} CPU cores, load average {load} at the end", "",
             "| codec | nominal kbps | device | batch | encode x-rt | decode x-rt | "
             "encode x-rt per CPU s | decode x-rt per CPU s |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r.codec} | {r.nominal_kbps:g} | {r.device} | {r.batch} | "
              f"{r.encode_x_rt:.1f} | {r.decode_x_rt:.1f} | {_cpu(r.encode_cpu_x_rt)} | "
              f"{_cpu(r.decode_cpu_x_rt)} |" for r in rows]
    lines += ["", "Classic codecs: wall time of the command-line tool, start-up and file I/O "
              "included. aec: in-process `Codec.encode`/`decode` after one warm-up call, "
              "at each torch thread count. On a machine whose cores are busy with other "
              "work, 2 threads can be 10x slower than 1 (threads wait on each other). "
              "x-rt per CPU s divides by the CPU time of the process instead of the wall "
              "clock: at 1 thread it is what an idle core gives, and other jobs disturb it "
              "least (classic tools: not measured).", ""]
    lines += [f"- {note}" for note in notes]
    (out / "speed.md").write_text("\n".join(lines) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    names = [n.strip() for n in args.codecs.split(",") if n.strip()]
    args.out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="aec-speed-") as tmp:
        clip = long_clip(args, Path(tmp))
        print(f"bench.speed: input {clip.duration_s:.1f} s", file=sys.stderr)
        threads = [int(t) for t in args.threads.split(",") if t.strip()]
        rows = (aec_rows(clip, args.weights, args.repeats, threads, notes)
                if "aec" in names else [])
        rows += time_classic(clip, names, Path(tmp), args.repeats)
    command = "python -m bench.speed " + " ".join(shlex.quote(a) for a in argv)
    write_speed(rows, args.out, command, notes, clip)
    print((args.out / "speed.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
