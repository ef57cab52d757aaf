"""Denoising bench: `aec encode --denoise` against the noisy input, plain aec and sox noisered.

    python -m bench.denoise [--corpus /work/corpus] [--clips 16] [--weights W]

Held-out material only (split=valid): speech clips (klettres-data words,
consecutive files joined to >= 3 s) mixed with held-out noise (valid music and
sound effects, and synthetic white / pink / brown noise and mains hum, in turn)
at input SNRs 0, 5 and 10 dB. The SNR is the speech's power over the noise
power (`codec.train.denoise_data.mix_at_snr`, the training rule). Each input
starts with LEAD_IN_S of noise alone, from which the sox path takes its noise
profile; scores are on the speech part after the lead-in.

Rows per (SNR, kbps): the noisy input itself; plain aec of the noisy input;
``sox noisered`` (profile from the lead-in) at each of SOX_AMOUNTS then plain
aec (the table shows the amount with the best mean SI-SDR over all conditions;
the CSV has all); ``aec encode --denoise``. Clean input (speech after silence)
is coded plain and with --denoise to show what the denoiser costs when there is
no noise. SI-SDR and PESQ-WB (bench.scoring) against the clean source, means
over the clips. Writes RESULTS/denoise.md and RESULTS/denoise.csv.
"""

from __future__ import annotations

import argparse
import csv
import math
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from numpy.typing import NDArray

from bench.scoring import PerceptualMeters
from codec import Codec, metrics
from codec.train.denoise_data import colored_noise, mix_at_snr
from codec.train.split import list_clips

RATE = 24000
LEAD_IN_S = 0.5
MIN_SPEECH_S = 3.0
SNRS_DB = (0.0, 5.0, 10.0)
KBPS = (6.0, 12.0)
SOX_AMOUNTS = (0.1, 0.21, 0.3)
NOISE_CYCLE = ("music", "sfx", "pink", "music", "sfx", "white", "brown", "hum")
SOX = "/usr/bin/sox"
RESULTS = Path(__file__).resolve().parent / "results"

Array = NDArray[np.float32]


@dataclass(frozen=True)
class Item:
    """One bench clip: clean speech after a silent lead-in, and its noise (same length)."""

    name: str
    clean: Array
    noise: Array
    noise_kind: str

    def mixed(self, snr_db: float) -> Array:
        lead = int(LEAD_IN_S * RATE)
        power = float(np.mean(self.clean[lead:].astype(np.float64) ** 2))
        return mix_at_snr(self.clean, self.noise, snr_db, power)


def _read(path: Path) -> Array:
    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    if rate != RATE:
        raise SystemExit(f"{path}: {rate} Hz, expected {RATE}")
    return audio.mean(axis=1)


def _speech(paths: list[Path], start: int) -> tuple[str, Array]:
    """Consecutive files from `start`, joined with 0.15 s gaps until MIN_SPEECH_S."""
    parts, total, i = [], 0, start
    gap = np.zeros(int(0.15 * RATE), dtype=np.float32)
    while total < MIN_SPEECH_S * RATE and i < len(paths):
        parts += [_read(paths[i]), gap]
        total += len(parts[-2]) + len(gap)
        i += 1
    return paths[start].stem, np.concatenate(parts)


def _noise(kind: str, pools: dict[str, list[Path]], k: int, length: int,
           rng: np.random.Generator) -> Array:
    if kind in ("white", "pink", "brown", "hum"):
        return colored_noise(kind, length, rng)
    paths = pools[kind]
    clip = _read(paths[(k * 7919) % len(paths)])
    while len(clip) < length:            # short effects: several, back to back
        clip = np.concatenate([clip, _read(paths[int(rng.integers(len(paths)))])])
    start = int(rng.integers(0, len(clip) - length + 1))
    return clip[start: start + length].copy()


def make_items(corpus: Path, count: int) -> list[Item]:
    """`count` deterministic held-out items (module docstring)."""
    speech = list_clips(corpus, "valid", "speech")
    pools = {kind: list_clips(corpus, "valid", kind) for kind in ("music", "sfx")}
    rng = np.random.default_rng(11)
    items = []
    for k in range(count):
        name, clean = _speech(speech, k * len(speech) // count)
        clean = np.concatenate([np.zeros(int(LEAD_IN_S * RATE), np.float32), clean])
        clean *= 10 ** (-26 / 20) / math.sqrt(float(np.mean(clean ** 2)) + 1e-12)
        kind = NOISE_CYCLE[k % len(NOISE_CYCLE)]
        items.append(Item(name, clean, _noise(kind, pools, k, len(clean), rng), kind))
    return items


def sox_noisered(noisy: Array, amount: float, workdir: Path) -> Array:
    """Debian sox: noise profile from the lead-in, then spectral gating at `amount`."""
    src, out, prof = workdir / "in.wav", workdir / "out.wav", workdir / "noise.prof"
    sf.write(str(src), noisy, RATE, subtype="FLOAT")
    subprocess.run([SOX, str(src), "-n", "trim", "0", str(LEAD_IN_S), "noiseprof", str(prof)],
                   check=True, capture_output=True)
    subprocess.run([SOX, str(src), str(out), "noisered", str(prof), str(amount)],
                   check=True, capture_output=True)
    audio, _ = sf.read(str(out), dtype="float32")
    # noisered drops the last partial window (1024 samples here), with no delay; the
    # clips end in a 0.15 s pause, so zeros there cost sox nothing
    return np.pad(audio, (0, max(0, len(noisy) - len(audio))))[: len(noisy)]


class Scorer:
    """SI-SDR and PESQ-WB of the speech part (after the lead-in) against the clean source."""

    def __init__(self) -> None:
        self.meters = PerceptualMeters(use_visqol=False, use_stoi=False)

    def __call__(self, clean: Array, estimate: Array) -> tuple[float, float]:
        lead = int(LEAD_IN_S * RATE)
        ref, est = clean[lead:], estimate[lead: len(clean)]
        return (float(metrics.si_sdr_db(ref, est)), self.meters.pesq_wb(ref, est, RATE))


def load_with_denoiser(weights: str | None) -> Codec:
    """The base model with its denoiser read (one short encode), so that a wrong folder
    fails before any clip is made: WeightsError (`bench.entry.run` makes it one line)."""
    codec = Codec.load(weights, device="cpu")
    codec.encode(np.zeros(RATE, np.float32), RATE, 12.0, denoise=True)
    return codec


def code(codec: Codec, audio: Array, kbps: float, denoise: bool) -> Array:
    """Encode and decode in memory (the --denoise stream decodes with the plain decoder)."""
    decoded, _ = codec.decode(codec.encode(audio, RATE, kbps, denoise=denoise))
    return decoded[0]


def run_item(codec: Codec, item: Item, scorer: Scorer, workdir: Path,
             timing: dict[str, float]) -> list[dict[str, object]]:
    """Every row of one item: all conditions and methods."""
    rows: list[dict[str, object]] = []

    def add(snr: str, kbps: float | str, method: str, audio: Array) -> None:
        si_sdr, pesq = scorer(item.clean, audio)
        rows.append({"clip": item.name, "noise": item.noise_kind, "snr_db": snr,
                     "kbps": kbps, "method": method, "si_sdr_db": round(si_sdr, 3),
                     "pesq_wb": round(pesq, 3)})

    for snr in SNRS_DB:
        noisy = item.mixed(snr)
        add(f"{snr:g}", "-", "noisy input", noisy)
        gated = {a: sox_noisered(noisy, a, workdir) for a in SOX_AMOUNTS}
        for kbps in KBPS:
            for denoise in (False, True):
                t0 = time.perf_counter()
                audio = code(codec, noisy, kbps, denoise)
                timing["denoise" if denoise else "plain"] += time.perf_counter() - t0
                add(f"{snr:g}", kbps, "aec --denoise" if denoise else "aec", audio)
            for amount, audio in gated.items():
                add(f"{snr:g}", kbps, f"sox noisered {amount:g} + aec", code(codec, audio, kbps,
                                                                            False))
    for kbps in KBPS:
        for denoise in (False, True):
            add("clean", kbps, "aec --denoise" if denoise else "aec",
                code(codec, item.clean, kbps, denoise))
    return rows


#: A clean voice unlike the training speech (a cartoon voice): where the denoiser fails.
_ROOT = Path(__file__).resolve().parents[1]
#: Clean voices from outside the bench's speech: (path, what it is).
OUT_OF_DOMAIN = ((_ROOT / "tests" / "data" / "speech_24k_mono.flac",
                  "the SuperTux cartoon voice, whole clip"),
                 (_ROOT / "codec" / "data" / "sample.flac", "the bundled sample, Tux talking"))


def out_of_domain_line(codec: Codec, scorer: Scorer) -> str:
    """Each clean OUT_OF_DOMAIN clip at 12 kbps, plain against --denoise (whole clip scored)."""
    lines = []
    for path, what in OUT_OF_DOMAIN:
        clean = _read(path)
        cells = []
        for denoise in (False, True):
            estimate = code(codec, clean, 12.0, denoise)
            cells.append(f"{metrics.si_sdr_db(clean, estimate):.2f} dB / "
                         f"{scorer.meters.pesq_wb(clean, estimate, RATE):.2f}")
        lines.append(f"Clean out-of-domain voice ({path.name}, {what}), 12 kbps: "
                     f"aec {cells[0]}, aec --denoise {cells[1]}.")
    return "\n" + "\n\n".join(lines) + "\n"


def encode_speed(codec: Codec, items: list[Item]) -> dict[str, float]:
    """Encode x-realtime (best of 3), plain and --denoise, on all items at 5 dB joined."""
    audio = np.concatenate([item.mixed(5.0) for item in items])
    codec.encode(audio[:RATE], RATE, 12.0, denoise=True)          # load and warm up
    speed = {"plain": 0.0, "denoise": 0.0}
    for _ in range(3):              # alternating, best of 3: the machine may be shared
        for key in speed:
            t0 = time.perf_counter()
            codec.encode(audio, RATE, 12.0, denoise=key == "denoise")
            speed[key] = max(speed[key], len(audio) / RATE / (time.perf_counter() - t0))
    return speed


def _means(rows: list[dict[str, object]]) -> dict[tuple[str, str, str], tuple[float, float]]:
    groups: dict[tuple[str, str, str], list[tuple[float, float]]] = defaultdict(list)
    for r in rows:
        groups[(str(r["snr_db"]), str(r["kbps"]), str(r["method"]))].append(
            (float(r["si_sdr_db"]), float(r["pesq_wb"])))
    return {k: (float(np.mean([v[0] for v in vs])), float(np.nanmean([v[1] for v in vs])))
            for k, vs in groups.items()}


def by_noise(rows: list[dict[str, object]], snr: str = "5", kbps: str = "12.0"
             ) -> list[str]:
    """Markdown rows: mean SI-SDR gain of --denoise and of sox over the noisy input, per
    noise kind, at one condition."""
    def mean(method: str, noise: str, key: str = "si_sdr_db") -> float:
        return float(np.mean([float(r[key]) for r in rows if r["noise"] == noise and
                              str(r["snr_db"]) == snr and str(r["method"]) == method and
                              str(r["kbps"]) in (kbps, "-")]))
    sox = best_sox(_means(rows))
    lines = [f"| noise ({snr} dB, {float(kbps):g} kbps) | clips | plain aec | sox + aec | "
             f"aec --denoise |", "|---|---|---|---|---|"]
    for noise in dict.fromkeys(str(r["noise"]) for r in rows):
        base = mean("noisy input", noise)
        clips = len({r["clip"] for r in rows if r["noise"] == noise})
        gains = [mean(m, noise) - base for m in ("aec", sox, "aec --denoise")]
        lines.append(f"| {noise} | {clips} | " + " | ".join(f"{g:+.2f} dB" for g in gains)
                     + " |")
    return lines


def paired_pesq(rows: list[dict[str, object]], sox: str) -> list[str]:
    """Markdown rows: per noisy condition, PESQ-WB of --denoise minus the sox path's, clip
    by clip: the mean, its standard error, the clips where --denoise is ahead, and the
    best mean PESQ of any sox amount (the table's sox row is picked on SI-SDR)."""
    def pesq(method: str, snr: str, kbps: str) -> dict[str, float]:
        return {f"{r['clip']} {r['noise']}": float(str(r["pesq_wb"])) for r in rows
                if str(r["method"]) == method and str(r["snr_db"]) == snr
                and str(r["kbps"]) == kbps}
    lines = ["| input SNR | kbps | mean difference | standard error | clips ahead | "
             "best sox PESQ (amount) |", "|---|---|---|---|---|---|"]
    for snr in SNRS_DB:
        for kbps in KBPS:
            key = (f"{snr:g}", str(kbps))
            ours, theirs = pesq("aec --denoise", *key), pesq(sox, *key)
            diff = np.array([ours[k] - theirs[k] for k in ours if k in theirs])
            error = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else \
                float("nan")
            sox_means = {a: float(np.mean(list(pesq(f"sox noisered {a:g} + aec", *key)
                                               .values()))) for a in SOX_AMOUNTS}
            best = max(sox_means, key=sox_means.__getitem__)
            lines.append(f"| {snr:g} dB | {kbps:g} | {diff.mean():+.3f} | {error:.3f} | "
                         f"{int((diff > 0).sum())} of {len(diff)} | {sox_means[best]:.2f} "
                         f"({best:g}) |")
    return lines


def best_sox(means: dict[tuple[str, str, str], tuple[float, float]]) -> str:
    """The sox amount with the best mean SI-SDR over every noisy condition."""
    def mean_sdr(amount: float) -> float:
        method = f"sox noisered {amount:g} + aec"
        return float(np.mean([v[0] for k, v in means.items() if k[2] == method]))
    return f"sox noisered {max(SOX_AMOUNTS, key=mean_sdr):g} + aec"


def report(rows: list[dict[str, object]], timing: dict[str, float], speed: dict[str, float],
           seconds: float, command: str, extra: str = "") -> str:
    """The markdown results page."""
    means = _means(rows)
    sox = best_sox(means)
    clips = len({r["clip"] for r in rows})
    lines = [f"# Denoising bench\n\n`{command}`\n",
             f"{clips} held-out speech clips (klettres-data, >= {MIN_SPEECH_S:g} s each after a "
             f"{LEAD_IN_S:g} s noise-only lead-in) mixed with held-out music, sound effects and "
             f"synthetic noise. Scores are on the speech after the lead-in, means over the "
             f"clips. The sox row is `sox noisered` with the amount of best mean SI-SDR "
             f"({sox.split()[2]}; tried {', '.join(f'{a:g}' for a in SOX_AMOUNTS)}, all in "
             f"denoise.csv), then plain aec.\n",
             "| input SNR | kbps | noisy input | aec | sox + aec | aec --denoise |",
             "|---|---|---|---|---|---|"]
    for snr in SNRS_DB:
        for kbps in KBPS:
            key = (f"{snr:g}", str(kbps))
            cells = [means[(f"{snr:g}", "-", "noisy input")]] + [
                means[key + (m,)] for m in ("aec", sox, "aec --denoise")]
            lines.append(f"| {snr:g} dB | {kbps:g} | " + " | ".join(
                f"{s:.2f} dB / {p:.2f}" for s, p in cells) + " |")
    lines += ["\nCells: SI-SDR / PESQ-WB.\n", "| clean input | kbps | aec | aec --denoise |",
              "|---|---|---|---|"]
    for kbps in KBPS:
        cells = [means[("clean", str(kbps), m)] for m in ("aec", "aec --denoise")]
        lines.append(f"| clean | {kbps:g} | " + " | ".join(
            f"{s:.2f} dB / {p:.2f}" for s, p in cells) + " |")
    lines += [extra, "\nSI-SDR gain over the noisy input by noise kind:\n", *by_noise(rows),
              f"\nPESQ-WB of --denoise minus {sox.removesuffix(' + aec')} + aec, clip by "
              f"clip:\n", *paired_pesq(rows, sox)]
    ratio = timing["denoise"] / max(timing["plain"], 1e-9)
    lines.append(f"\nEncode + decode wall time, --denoise over plain: {ratio:.2f}x. Encode "
                 f"speed at 12 kbps on all clips joined: plain {speed['plain']:.0f}x, --denoise "
                 f"{speed['denoise']:.0f}x real time (1 torch thread). Bench wall time "
                 f"{seconds:.0f} s.\n")
    return "\n".join(lines)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.denoise",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True,
                        help="corpus root (scripts/make_corpus.sh)")
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--weights", default=None, help="base model (default: shipped)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    codec = load_with_denoiser(args.weights)
    items = make_items(args.corpus, args.clips)
    scorer, timing = Scorer(), {"plain": 0.0, "denoise": 0.0}
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for item in items:
            rows += run_item(codec, item, scorer, Path(tmp), timing)
    speed = encode_speed(codec, items)
    extra = out_of_domain_line(codec, scorer)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "denoise.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    command = "python -m bench.denoise" + (f" --clips {args.clips}" if args.clips != 16 else "")
    text = report(rows, timing, speed, time.perf_counter() - started, command, extra)
    (args.out / "denoise.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    from bench.entry import run

    sys.exit(run(main, "bench.denoise"))
