"""Render the "Latest results" section of bench/README.md from bench/results/.

    python -m bench.rd --corpus /work/corpus --split valid --out bench/results \
        --max-clips-per-kind 6 --max-seconds 10
    python -m bench.speed --corpus /work/corpus --split valid --out bench/results
    python -m bench.publish --model "what the weights are (steps, data)"

Only the "## Latest results" section of the README is rebuilt (from summary.md
and speed.md, which carry their own command and commit); everything before it
and every `## ` section after it is kept as it is.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path

BENCH = Path(__file__).resolve().parent
MARKER = "## Latest results"
PLOTS = (("si_sdr_db", "SI-SDR"), ("mel_distance", "mel distance"), ("visqol", "ViSQOL"),
         ("snr_db", "SNR"), ("pesq_wb", "PESQ-WB"), ("stoi", "STOI"))


def section(text: str, title: str) -> str:
    """The body of a `## title` section of a markdown text (up to the next `## `)."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    return match.group(1).strip() if match else ""


def stamp(text: str, field: str) -> str:
    """The backquoted value of a `Field: `...`` line."""
    match = re.search(rf"{field}: `([^`]*)`", text)
    return match.group(1) if match else "unknown"


def rd_part(summary: str, results: Path) -> list[str]:
    table = section(summary, "All results (means per kind x codec x rate)").splitlines()
    all_rows = table[:2] + [line for line in table if line.startswith("| all |")]
    plots = [f"![{label}](results/{name}.png)" for name, label in PLOTS
             if (results / f"{name}.png").exists()]
    command = stamp(summary, "Command")
    about = ("Held-out split: source packages never used in training "
             "(`codec/train/split.py`), clips picked as the command says:"
             if "--split valid" in command else "Clips as the command says:")
    return [
        about, "", "    " + command, "",
        f"measured at commit `{stamp(summary, 'Commit')}`. Full table, notes and per-clip "
        "rows: [`results/summary.md`](results/summary.md), "
        "[`results/results.csv`](results/results.csv).", "",
        "### Headline: aec vs Opus and the MDCT + noise-filling floor near 6, 12 and 24 kbps", "",
        "aec is matched by its measured whole-file rate, Opus by its setting "
        "(`--hard-cbr --bitrate K`: its payload is on target, its file rate adds Ogg/Opus "
        "headers), mdct-nf (`bench/mdct_ref.py`) by its request (its step is searched per "
        "clip so the whole stream lands just under it).", "",
        section(summary, "Headline: aec vs Opus"), "",
        "### All content kinds together", "",
        "PESQ-WB and STOI are speech-only; ViSQOL mixes speech mode (speech) and audio mode "
        "(music, sfx).", "", *all_rows, "",
        "### Plots (metric vs measured whole-file kbps, a panel per content kind)", "", *plots,
    ]


def speed_part(speed: str) -> list[str]:
    if not speed:
        return []
    lines = speed.splitlines()
    inputs = re.search(r"Input: (.*)", speed)
    return [
        "", "### Speed (x-realtime = audio seconds / wall seconds)", "",
        "    " + stamp(speed, "Command"), "",
        f"measured at commit `{stamp(speed, 'Commit')}`; {inputs.group(1) if inputs else ''}. "
        "The 2 cores were shared with a training job: noisy lower bounds.", "",
        *[line for line in lines if line.startswith("|")], "",
        *[line for line in lines if line.startswith("- ")],
    ]


def render(model: str, results: Path) -> str:
    summary = (results / "summary.md").read_text()
    speed_path = results / "speed.md"
    speed = speed_path.read_text() if speed_path.exists() else ""
    body = [MARKER, "", model, ""] if model else [MARKER, ""]
    return "\n".join(body + rd_part(summary, results) + speed_part(speed)) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.publish", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="", help="a paragraph on the weights measured")
    parser.add_argument("--results", type=Path, default=BENCH / "results")
    parser.add_argument("--readme", type=Path, default=BENCH / "README.md")
    args = parser.parse_args(argv)
    args.readme.write_text(replace_section(args.readme.read_text(),
                                           render(args.model, args.results)))
    return 0


def replace_section(readme: str, rendered: str) -> str:
    """The README with its Latest results section (up to the next `## `) replaced by
    `rendered`, or `rendered` appended when there is none; other sections untouched."""
    if MARKER not in readme:
        return readme.rstrip("\n") + "\n\n" + rendered
    start = readme.index(MARKER)
    after = re.search(r"^## ", readme[start + len(MARKER):], re.M)
    tail = readme[start + len(MARKER) + after.start():] if after else ""
    return readme[:start] + rendered + ("\n" + tail if tail else "")


if __name__ == "__main__":
    raise SystemExit(main())
