"""Rate-distortion bench: aec at every rate point vs Opus, MP3, AAC-LC, Vorbis and the
reference MDCT coders (plain "mdct" and band noise filling "mdct-nf", `bench.mdct_ref`).

    python -m bench.rd --corpus /work/corpus --split valid --out results/rd \
        --max-clips-per-kind 8 --max-seconds 10
    python -m bench.rd --input DIR_OR_FILE [...] --out DIR

Every clip is coded by every available codec at every rate; the decoded audio
is resampled to the reference rate, aligned by a bounded cross-correlation lag
search, cut to the reference length and scored. Writes results.csv,
summary.md and one PNG per metric into --out. A missing tool or metric package
is skipped with a warning.
"""

from __future__ import annotations

import argparse
import math
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import clips as clip_sources
from bench.align import align
from bench.classic import BENCH_KBPS, CLASSIC_CODECS, ToolError
from bench.clips import Clip
from bench.coding import CodecPoint, Coded
from bench.reference import REFERENCE_CODERS, reference_points
from bench.report import Row, plot_metrics, read_rows, summarise, write_csv, write_summary
from bench.scoring import PerceptualMeters, resample, score

ALL_CODECS = ("aec", *[c.name for c in CLASSIC_CODECS], *REFERENCE_CODERS)


def warn(message: str) -> None:
    print(f"bench: warning: {message}", file=sys.stderr)


@dataclass
class Notes:
    """Things the reader of summary.md must know: skips, failures, tool behaviour."""

    lines: list[str] = field(default_factory=list)

    def add(self, line: str, *, echo: bool = True) -> None:
        if line not in self.lines:
            self.lines.append(line)
            if echo:
                warn(line)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.rd", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    clip_sources.add_source_arguments(parser)
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--max-clips-per-kind", type=int, default=8)
    parser.add_argument("--max-seconds", type=float, default=10.0,
                        help="keep the first S seconds of each clip (default 10)")
    parser.add_argument("--min-seconds", type=float, default=5.0,
                        help="join consecutive shorter files of one package into clips of "
                             "at least S seconds (default 5; 0 = code every file alone)")
    parser.add_argument("--codecs", default=",".join(ALL_CODECS),
                        help=f"comma list from {','.join(ALL_CODECS)}")
    parser.add_argument("--rates", default=",".join(map(str, BENCH_KBPS)),
                        help="comma list of requested kbps for the classic and reference "
                             "codecs (default %(default)s; aec uses its own rate points)")
    parser.add_argument("--aec-rates", default=None, metavar="LIST",
                        help="comma list of kbps to request from aec (Codec.encode(kbps=K), "
                             "as `aec encode --kbps K`); default: every rate point of the model")
    parser.add_argument("--weights", type=Path, default=None,
                        help="aec weights (.json config path); default: shipped model")
    parser.add_argument("--device", default="cpu", help="aec device (default cpu)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads for aec (default 1: on a shared machine more "
                             "threads oversubscribe the cores; use bench.speed for speed)")
    parser.add_argument("--max-lag-ms", type=float, default=100.0,
                        help="alignment search window +-ms (default 100)")
    parser.add_argument("--no-perceptual", action="store_true",
                        help="skip ViSQOL, PESQ and STOI (fast runs)")
    parser.add_argument("--reuse-classic", type=Path, default=None, metavar="CSV",
                        help="take classic-codec and reference-coder (mdct, mdct-nf) rows from "
                             "an earlier results.csv of the same clips instead of recomputing "
                             "them (they do not depend on aec weights); aec is always run")
    parser.add_argument("--recompute", default="", metavar="LIST",
                        help="comma list of codecs to run even when --reuse-classic has their "
                             "rows (e.g. mdct-nf after a change to the reference coder)")
    return parser


def select_sources(args: argparse.Namespace) -> list[clip_sources.ClipSource]:
    sources = clip_sources.sources_from_args(args)
    if args.min_seconds > 0:
        sources = clip_sources.join_short(sources, args.min_seconds)
    return clip_sources.pick_per_kind(sources, args.max_clips_per_kind)


def parse_rates(text: str) -> list[float]:
    """The `--rates` list; anything but positive numbers is a usage error."""
    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        rates = []
    if not rates or not all(math.isfinite(r) and r > 0 for r in rates):
        raise SystemExit(f"bench: --rates must be a comma list of positive kbps, got {text!r}")
    return rates


def classic_points(names: Sequence[str], notes: Notes, rates: Sequence[float]
                   ) -> list[CodecPoint]:
    """Points of the requested classic codecs whose tools are installed."""
    points: list[CodecPoint] = []
    for codec in CLASSIC_CODECS:
        if codec.name not in names:
            continue
        missing = codec.missing_tools()
        if missing:
            notes.add(f"{codec.name} skipped: {', '.join(missing)} not installed "
                      "(run bench/setup.sh)")
            continue
        refused = [r for r in rates if r < codec.min_kbps]
        if refused:
            notes.add(f"{codec.name} not run at {', '.join(f'{r:g}' for r in refused)} kbps: "
                      f"its tool refuses rates under {codec.min_kbps} kbps", echo=False)
        points.extend(codec.points(rates))
    return points


def aec_points(args: argparse.Namespace, notes: Notes) -> list[CodecPoint]:
    """The aec rate points, or none (with a note) if the API or weights are not usable."""
    try:
        import torch

        from bench.neural import load_aec_points
        torch.set_num_threads(max(1, args.threads))
        requests = parse_rates(args.aec_rates) if args.aec_rates else None
        return list(load_aec_points(args.weights, args.device, requests))
    except (ImportError, OSError, RuntimeError, ValueError) as error:  # AecError included
        notes.add(f"aec skipped: {type(error).__name__}: {error}")
        return []


def make_row(clip: Clip, point: CodecPoint, coded: Coded, meters: PerceptualMeters,
             max_lag: int) -> tuple[Row, int]:
    """Resample, align and score one coded clip; returns the row and the lag."""
    from codec.metrics import bitrate_kbps

    decoded = resample(coded.decoded, coded.decoded_rate, clip.sample_rate)
    aligned, lag = align(clip.audio, decoded, max_lag)
    scores = score(clip.audio, aligned, clip.sample_rate, clip.kind, meters)
    duration = clip.duration_s
    row = Row(
        clip=clip.name, kind=clip.kind, package=clip.package, seconds=duration,
        codec=point.codec_name, nominal_kbps=point.nominal_kbps, rate_point=point.rate_point,
        file_bytes=coded.file_bytes, payload_bytes=coded.payload_bytes,
        kbps_file=bitrate_kbps(coded.file_bytes, clip.num_samples, clip.sample_rate),
        kbps_payload=bitrate_kbps(coded.payload_bytes, clip.num_samples, clip.sample_rate),
        decoded_rate=coded.decoded_rate, lag_samples=lag,
        lag_ms=1000.0 * lag / clip.sample_rate,
        snr_db=scores.snr_db, si_sdr_db=scores.si_sdr_db, mel_distance=scores.mel_distance,
        visqol=scores.visqol, visqol_mode=scores.visqol_mode, pesq_wb=scores.pesq_wb,
        stoi=scores.stoi, encode_x_rt=duration / max(coded.encode_s, 1e-9),
        decode_x_rt=duration / max(coded.decode_s, 1e-9))
    return row, lag


def note_behaviour(clip: Clip, point: CodecPoint, coded: Coded, lag: int, max_lag: int,
                   notes: Notes) -> None:
    """Record what a codec did that the nominal setting hides (resampling, lag at the edge)."""
    if coded.decoded_rate != clip.sample_rate:
        notes.add(f"{point.label}: decoder output is {coded.decoded_rate} Hz for "
                  f"{clip.sample_rate} Hz input (the encoder resampled); resampled back "
                  "before scoring", echo=False)
    requested = point.nominal_kbps * clip.duration_s * 125.0    # bytes at the request
    if point.codec_name != "aec" and coded.payload_bytes > 1.1 * requested:
        notes.add(f"{point.label}: the tool codes above the request on some or all clips; "
                  "the requested-vs-measured table shows the real rate", echo=False)
    if abs(lag) == max_lag:
        notes.add(f"{point.label} on {clip.name}: lag hit the search bound "
                  f"({lag} samples); alignment may be wrong")


ReuseKey = tuple[str, str, float, int]


def load_reusable(path: Path | None, recompute: Sequence[str] = ()) -> dict[ReuseKey, Row]:
    """Classic and reference-coder rows of an earlier run (every codec but aec and those
    in `recompute`), keyed by clip, codec, rate and rate point."""
    if path is None:
        return {}
    return {(r.clip, r.codec, r.nominal_kbps, r.rate_point): r
            for r in read_rows(path) if r.codec != "aec" and r.codec not in recompute}


def bench_clip(clip: Clip, points: Sequence[CodecPoint], workdir: Path,
               meters: PerceptualMeters, max_lag_ms: float, notes: Notes,
               reusable: dict[ReuseKey, Row] | None = None) -> list[Row]:
    """All rows of one clip; a failing codec run is noted and skipped.

    A reusable row (same clip name and exact duration) is taken instead of a run.
    """
    rows = []
    max_lag = int(round(max_lag_ms * clip.sample_rate / 1000.0))
    for point in points:
        old = (reusable or {}).get((clip.name, point.codec_name, point.nominal_kbps,
                                    point.rate_point))
        if old is not None and old.seconds == clip.duration_s:
            rows.append(old)
            continue
        try:
            coded = point.run(clip, workdir)
        except (ToolError, RuntimeError, ValueError, OSError) as error:
            notes.add(f"{point.label} failed on {clip.name}: {error}")
            continue
        row, lag = make_row(clip, point, coded, meters, max_lag)
        note_behaviour(clip, point, coded, lag, max_lag, notes)
        rows.append(row)
    return rows


def describe_commit() -> str:
    """HEAD's hash, plus any uncommitted changes under codec/ or bench/ (what the figures
    depend on); other people's work in progress elsewhere in the checkout is not listed."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                check=False)
        return result.stdout

    commit = git("rev-parse", "--short=12", "HEAD").strip() or "unknown"
    changed = [line[3:] for line in git("status", "--porcelain", "--", "codec", "bench")
               .splitlines() if line[3:].endswith((".py", ".json", ".safetensors"))]
    if changed:
        commit += f" + uncommitted changes in {', '.join(sorted(changed))}"
    return commit


def run_bench(args: argparse.Namespace, argv: Sequence[str]) -> list[Row]:
    """Prepare clips, run every point on every clip, write all outputs; returns the rows."""
    notes = Notes()
    commit = describe_commit()    # at the start: the code that produces the figures
    names = [n.strip() for n in args.codecs.split(",") if n.strip()]
    unknown = sorted(set(names) - set(ALL_CODECS))
    if unknown:
        raise SystemExit(f"bench: unknown codec(s): {', '.join(unknown)}")
    rates = parse_rates(args.rates)
    points = ((aec_points(args, notes) if "aec" in names else [])
              + classic_points(names, notes, rates) + reference_points(names, rates))
    sources = select_sources(args)
    if not sources:
        raise SystemExit("bench: no input clips found")
    perceptual = not args.no_perceptual
    meters = PerceptualMeters(use_visqol=perceptual, use_pesq=perceptual, use_stoi=perceptual)
    recompute = [n.strip() for n in args.recompute.split(",") if n.strip()]
    reusable = load_reusable(args.reuse_classic, recompute)
    if reusable:
        again = f"; {', '.join(recompute)} recomputed" if recompute else ""
        notes.add(f"classic and reference rows reused from {args.reuse_classic} (an earlier "
                  f"run on the same clips; they do not depend on the aec weights){again}",
                  echo=False)
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="aec-bench-") as tmp:
        for number, source in enumerate(sources, 1):
            clip = clip_sources.prepare_clip(source, Path(tmp), args.max_seconds)
            print(f"bench: [{number}/{len(sources)}] {clip.name} ({clip.duration_s:.1f} s)",
                  file=sys.stderr)
            rows += bench_clip(clip, points, Path(tmp), meters, args.max_lag_ms, notes,
                               reusable)
            write_csv(rows, args.out / "results.csv")
    for package in sorted(meters.missing):
        notes.add(f"{package} not installed: its metric is left empty (run bench/setup.sh)")
    write_outputs(rows, args, argv, notes, commit)
    return rows


def write_outputs(rows: Sequence[Row], args: argparse.Namespace, argv: Sequence[str],
                  notes: Notes, commit: str) -> None:
    write_csv(rows, args.out / "results.csv")
    groups = summarise(rows)
    command = "python -m bench.rd " + " ".join(shlex.quote(a) for a in argv)
    write_summary(groups, args.out / "summary.md", command=command, commit=commit,
                  notes=notes.lines, rows=rows)
    plots = plot_metrics(groups, args.out)
    print(f"bench: {len(rows)} rows -> {args.out}/results.csv, summary.md, "
          f"{len(plots)} plots", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if not math.isfinite(args.max_lag_ms) or args.max_lag_ms < 0:
        raise SystemExit("bench: --max-lag-ms must be a non-negative number")
    run_bench(args, argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
