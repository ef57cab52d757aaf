"""Bench outputs: results.csv (one row per clip x codec x rate), summary.md, PNG plots."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Row:
    """One clip coded by one codec at one rate point, with its honest rates and scores."""

    clip: str
    kind: str
    package: str
    seconds: float
    codec: str
    nominal_kbps: float
    rate_point: int            # aec rate point index; -1 for classic codecs
    file_bytes: int
    payload_bytes: int
    kbps_file: float           # whole file bytes * 8 / duration
    kbps_payload: float        # payload bytes * 8 / duration
    decoded_rate: int          # sample rate the decoder produced
    lag_samples: int           # alignment lag at the reference rate (decoded is late by it)
    lag_ms: float
    snr_db: float
    si_sdr_db: float
    mel_distance: float
    visqol: float
    visqol_mode: str
    pesq_wb: float
    stoi: float
    encode_x_rt: float         # audio seconds per wall second (includes tool start-up)
    decode_x_rt: float


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Row))
KIND_ORDER = {k: i for i, k in enumerate(("speech", "music", "sfx", "other", "all"))}
#: Fixed colour and marker per codec, so every plot reads the same way.
CODEC_STYLES: dict[str, tuple[str, str]] = {
    "aec": ("black", "s"), "opus": ("tab:green", "o"), "mp3": ("tab:orange", "v"),
    "aac": ("tab:blue", "^"), "vorbis": ("tab:red", "D"),
    "mdct": ("tab:gray", "x"), "mdct-nf": ("tab:purple", "P"),
}
#: Codecs the headline compares at each target rate: aec, Opus and the issue-9 floor.
HEADLINE_CODECS: tuple[str, ...] = ("aec", "opus", "mdct-nf")


@dataclass(frozen=True)
class Metric:
    """A plotted/summarised metric: its column, axis label and preferred direction."""

    column: str
    label: str
    higher_is_better: bool = True


METRICS: tuple[Metric, ...] = (
    Metric("snr_db", "SNR (dB)"),
    Metric("si_sdr_db", "SI-SDR (dB)"),
    Metric("mel_distance", "mel distance (log10 L1, lower is better)", False),
    Metric("visqol", "ViSQOL MOS-LQO (1-5)"),
    Metric("pesq_wb", "PESQ-WB MOS-LQO (1-4.64)"),
    Metric("stoi", "STOI (0-1)"),
)
SUMMARY_COLUMNS: tuple[str, ...] = ("kbps_file", "kbps_payload", *[m.column for m in METRICS],
                                    "lag_ms")


def write_csv(rows: Iterable[Row], path: Path) -> None:
    """Write the rows with a header line; floats keep full precision."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow(asdict(row))


_CASTS = {"int": int, "float": float, "str": str}


def read_rows(path: Path) -> list[Row]:
    """Rows of a results.csv written by `write_csv` (a column set mismatch -> ValueError)."""
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ValueError(f"{path}: columns differ from this bench version's")
        return [Row(**{f.name: _CASTS[str(f.type)](record[f.name]) for f in fields(Row)})
                for record in reader]


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


@dataclass(frozen=True)
class Group:
    """Mean figures of one (kind, codec, nominal rate) group."""

    kind: str
    codec: str
    nominal_kbps: float
    rate_point: int
    clips: int
    means: dict[str, float]


def _duration_weighted(rows: Sequence[Row], column: str) -> float:
    """Total-bytes-over-total-duration rate of a group: the seconds-weighted mean of
    the per-clip kbps (each from `codec.metrics.bitrate_kbps`), so short clips do not
    inflate a codec's rate with their per-file headers more than their length warrants."""
    total_s = sum(r.seconds for r in rows)
    return sum(float(getattr(r, column)) * r.seconds for r in rows) / total_s if total_s else 0.0


def summarise(rows: Sequence[Row]) -> list[Group]:
    """Means per content kind x codec x nominal bitrate, plus kind "all".

    Rates are duration-weighted (total bytes / total duration); quality metrics
    are plain means over clips, NaN entries (metric not applicable) left out.
    """
    groups: dict[tuple[str, str, float, int], list[Row]] = defaultdict(list)
    for row in rows:
        for kind in (row.kind, "all"):
            groups[(kind, row.codec, row.nominal_kbps, row.rate_point)].append(row)
    result = []
    for (kind, codec, nominal, rate_point), members in groups.items():
        means = {c: _nanmean([float(getattr(r, c)) for r in members]) for c in SUMMARY_COLUMNS}
        for column in ("kbps_file", "kbps_payload"):
            means[column] = _duration_weighted(members, column)
        result.append(Group(kind, codec, nominal, rate_point, len(members), means))
    result.sort(key=lambda g: (KIND_ORDER.get(g.kind, 9), g.kind, g.codec != "aec", g.codec,
                               g.means["kbps_file"]))
    return result


def _cell(value: float, digits: int = 2) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def summary_table(groups: Sequence[Group]) -> str:
    """A markdown table of the group means."""
    head = ("| kind | codec | setting | clips | kbps file | kbps payload | SNR dB | "
            "SI-SDR dB | mel dist | ViSQOL | PESQ-WB | STOI | lag ms |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for g in groups:
        m = g.means
        setting = (f"rp{g.rate_point} ({g.nominal_kbps:g}k nominal)" if g.rate_point >= 0
                   else f"{g.nominal_kbps:g}k")
        cells = [g.kind, g.codec, setting, str(g.clips),
                 _cell(m["kbps_file"]), _cell(m["kbps_payload"]), _cell(m["snr_db"]),
                 _cell(m["si_sdr_db"]), _cell(m["mel_distance"], 3), _cell(m["visqol"]),
                 _cell(m["pesq_wb"]), _cell(m["stoi"], 3), _cell(m["lag_ms"], 1)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _nearest(groups: Sequence[Group], kind: str, codec: str, kbps: float) -> Group | None:
    """The group of `codec` nearest `kbps` (within a factor 1.5).

    Classic codecs are matched by their nominal setting (their payload rate is on
    target; their file rate adds per-file headers). aec is matched by its measured
    whole-file rate, because its rate points' nominal labels are training targets
    that the measured rate can miss by a factor of two.
    """
    def rate(g: Group) -> float:
        return g.means["kbps_file"] if codec == "aec" else g.nominal_kbps

    candidates = [g for g in groups if g.kind == kind and g.codec == codec
                  and kbps / 1.5 <= rate(g) <= kbps * 1.5]
    return min(candidates, key=lambda g: abs(math.log(rate(g) / kbps)), default=None)


def headline(groups: Sequence[Group], targets: Sequence[float] = (6.0, 12.0, 24.0)) -> str:
    """aec vs Opus and the noise-filling MDCT floor near each target rate: measured kbps,
    SI-SDR, mel distance, ViSQOL, PESQ-WB (speech)."""
    head = ("| kind | target kbps | codec | kbps file | kbps payload | SI-SDR dB | mel dist | "
            "ViSQOL | PESQ-WB |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    kinds = sorted({g.kind for g in groups}, key=lambda k: (KIND_ORDER.get(k, 9), k))
    for kind in kinds:
        for target in targets:
            for codec in HEADLINE_CODECS:
                g = _nearest(groups, kind, codec, target)
                if g is None:
                    continue
                m = g.means
                name = (f"aec rp{g.rate_point}" if g.rate_point >= 0
                        else f"{codec} {g.nominal_kbps:g}k")
                lines.append(f"| {kind} | {target:g} | {name} | "
                             f"{_cell(m['kbps_file'])} | {_cell(m['kbps_payload'])} | "
                             f"{_cell(m['si_sdr_db'])} | {_cell(m['mel_distance'], 3)} | "
                             f"{_cell(m['visqol'])} | {_cell(m['pesq_wb'])} |")
    return "\n".join(lines)


def request_table(rows: Sequence[Row]) -> str:
    """Requested vs measured whole-file rate per codec and request, over all clips.

    For codecs driven by a requested rate (rate point -1: classic tools, the
    reference coders, aec with --aec-rates): the duration-weighted rate, the lowest
    and highest clip, and how many clips landed in [0.9 K, K] (issue 9's window).
    """
    head = ("| codec | requested kbps | clips | kbps file | lowest clip | highest clip | "
            "clips in [0.9 K, K] |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    groups: dict[tuple[str, float], list[Row]] = defaultdict(list)
    for row in rows:
        if row.rate_point < 0:
            groups[(row.codec, row.nominal_kbps)].append(row)
    for (codec, kbps), members in sorted(groups.items(), key=lambda i: (i[0][0] != "aec", i[0])):
        rates = [r.kbps_file for r in members]
        inside = sum(0.9 * kbps <= r <= kbps for r in rates)
        lines.append(f"| {codec} | {kbps:g} | {len(members)} | "
                     f"{_duration_weighted(members, 'kbps_file'):.2f} | {min(rates):.2f} | "
                     f"{max(rates):.2f} | {inside}/{len(members)} |")
    return "\n".join(lines)


def _panels(groups: Sequence[Group], kinds: Sequence[str], column: str) -> list[str]:
    """Kinds with data for a metric; "all" only when it differs from a single kind."""
    with_data = [k for k in kinds if any(g.kind == k and not math.isnan(g.means[column])
                                         for g in groups)]
    if len([k for k in with_data if k != "all"]) <= 1:
        with_data = [k for k in with_data if k != "all"] or with_data
    return with_data


def plot_metrics(groups: Sequence[Group], out_dir: Path) -> list[Path]:
    """One PNG per metric: a panel per content kind, one curve per codec vs file kbps."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    kinds = sorted({g.kind for g in groups}, key=lambda k: (KIND_ORDER.get(k, 9), k))
    codecs = sorted({g.codec for g in groups}, key=lambda c: (c != "aec", c))
    paths: list[Path] = []
    if not groups:
        return paths
    for metric in METRICS:
        if all(math.isnan(g.means[metric.column]) for g in groups):
            continue
        panels = _panels(groups, kinds, metric.column)
        fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8),
                                 squeeze=False)
        for ax, kind in zip(axes[0], panels):
            for codec in codecs:
                points = sorted((g.means["kbps_file"], g.means[metric.column]) for g in groups
                                if g.kind == kind and g.codec == codec
                                and not math.isnan(g.means[metric.column]))
                if points:
                    xs, ys = zip(*points)
                    color, marker = CODEC_STYLES.get(codec, (None, "o"))
                    ax.plot(xs, ys, marker=marker, color=color, label=codec,
                            linewidth=2.4 if codec == "aec" else 1.4)
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(FixedLocator([0.5, 1, 2, 4, 8, 16, 32, 64, 128]))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
            ax.set_title(kind)
            ax.set_xlabel("measured bitrate (kbit/s, whole file)")
            ax.grid(True, alpha=0.3)
        axes[0][0].set_ylabel(metric.label)
        axes[0][-1].legend(loc="best", fontsize=9)
        fig.suptitle(f"{metric.label} vs measured bitrate")
        fig.tight_layout()
        path = out_dir / f"{metric.column}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(path)
    return paths


def write_summary(groups: Sequence[Group], path: Path, *, command: str, commit: str,
                  notes: Sequence[str] = (), rows: Sequence[Row] = ()) -> None:
    """summary.md: how it was made, the aec-vs-Opus headline, the full table, notes."""
    text = [
        "# aec rate-distortion bench", "",
        f"Command: `{command}`  ",
        f"Commit: `{commit}`", "",
        "Rates are measured, never nominal: file bytes x 8 / duration (container and headers "
        "included) and payload bytes only (classic: sum of ffprobe packet sizes; aec: chunk "
        "payloads), totalled over the clips of a group (total bytes / total duration). "
        "Quality metrics are means over clips, each decoded clip first resampled to the "
        "reference rate and aligned to it (bounded cross-correlation lag search). Plots put "
        "each codec at its measured whole-file rate.", "",
        "## Headline: aec vs Opus", "", headline(groups), "",
        "## All results (means per kind x codec x rate)", "", summary_table(groups), "",
    ]
    if rows:
        text += ["## Requested vs measured rate (whole file)", "", request_table(rows), ""]
    if notes:
        text += ["## Notes", "", *[f"- {note}" for note in notes], ""]
    path.write_text("\n".join(text))
