"""python -m bench.probe: is the codec's latent a good feature? A linear probe (issue 11).

    python -m bench.probe --corpus /work/corpus --out bench/results

Segments of at most 1 s (whole clips when shorter, down to 0.5 s; near-silent
ones skipped) are drawn from the TRAIN split (`codec.train.split.split_of`, by
source package) and from the held-out VALID split. Each segment becomes one
vector per feature, pooled over its frames ("mean", or "meanstd" = mean then
standard deviation):

- latent logpower: `Codec.embed` (10 log10(y^2 + 1e-10) per MDCT coefficient,
  `latent_channels` = 320 dims at 75 frames/s for aec-base);
- log-mel: torchaudio's MelSpectrogram with as many mel bands as the latent has
  dims, at the same hop and window length (2 x hop), in dB with the same floor:
  the baseline of the same dimension;
- log-mel-64: a conventional 64-band log-mel, for reference.

A multinomial logistic regression (standardised inputs, L2 weight `--l2`,
class-weighted loss, full-batch LBFGS) is fitted on the train segments only and
scored on the valid segments: accuracy and macro accuracy (the mean of the
per-class recalls, chance = 1 / classes). Nothing is tuned on valid: the
features were fixed beforehand, and L2 = 0.1 was the best of 0.001 / 0.01 /
0.1 on the kind task with a third of the TRAIN packages held out as a dev set.

Tasks: "kind" (speech / music / sfx) and "lang" (spoken language of speech
clips, manifest column `lang`), among the languages with at least
`LANG_MIN_CLIPS` usable clips in both splits (picked by code, listed in the
report). "kind-seen" is a diagnostic, not a held-out result: speech / music /
sfx with train and test both from the TRAIN packages, split by source file
(a hash of `orig_file`), so it shows what the features can do without the
package shift between the splits. Results go to OUT/probe.csv and OUT/probe.md.

``--ceiling`` adds a non-linear probe on the "meanstd" features: an MLP (two
hidden layers of 256, GELU, dropout 0.3; AdamW, learning rate 1e-3, weight
decay 1e-3, 600 full-batch steps, seed 0), fitted on the same train segments.
Its settings were fixed once, never tuned on valid. It asks whether a probe
that can bend its boundary does better on the same features: if it does not,
what limits the held-out score is the features or the shift between packages,
not the probe being linear.
"""

from __future__ import annotations

import argparse
import csv
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile
import torch
from numpy.typing import NDArray

if TYPE_CHECKING:
    from codec.api import Codec

SEGMENT_S = 1.0
MIN_SEGMENT_S = 0.5
SILENCE_DBFS = -50.0
#: A language takes part in "lang" with at least this many clips of >= MIN_SEGMENT_S
#: in the train split and in the valid split.
LANG_MIN_CLIPS = {"train": 60, "valid": 45}
POWER_FLOOR = 1e-10
TASKS = ("kind", "lang", "kind-seen")
KINDS = ("speech", "music", "sfx")

Extractor = Callable[[NDArray[np.float32]], dict[str, NDArray[np.float64]]]


@dataclass(frozen=True)
class Clip:
    """One corpus file with its label for a task."""

    path: Path
    label: str
    seconds: float


# ---------------------------------------------------------------- choosing segments


def read_manifest(corpus: Path) -> list[dict[str, str]]:
    """manifest.csv rows, each with its split from `codec.train.split` (by package), and
    `file_half` ("a"/"b": a fixed hash of the source file, for the "kind-seen" task)."""
    from codec.train.split import split_of

    with open(corpus / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["split"] = split_of(row["source_package"])
        source = row.get("orig_file") or row["path"]
        row["file_half"] = "ab"[zlib.crc32(source.encode()) & 1]
    return rows


def usable(row: dict[str, str]) -> bool:
    return float(row["seconds"]) >= MIN_SEGMENT_S


def pick_languages(rows: Sequence[dict[str, str]]) -> list[str]:
    """Languages with >= LANG_MIN_CLIPS usable speech clips in both splits."""
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for row in rows:
        if row["kind"] == "speech" and row["lang"] and usable(row):
            counts[row["lang"], row["split"]] += 1
    langs = {lang for lang, _ in counts}
    return sorted(lang for lang in langs
                  if all(counts[lang, split] >= n for split, n in LANG_MIN_CLIPS.items()))


def in_split(row: dict[str, str], task: str, split: str) -> bool:
    """"kind-seen" trains on TRAIN files of half a and tests on half b (same packages,
    other source files); the other tasks train on TRAIN and test on VALID."""
    if task == "kind-seen":
        return row["split"] == "train" and row["file_half"] == ("a" if split == "train" else "b")
    return row["split"] == split


def task_clips(corpus: Path, rows: Sequence[dict[str, str]], task: str, split: str
               ) -> dict[str, list[Clip]]:
    """label -> usable clips of one split, for "kind" or "lang"."""
    labels = list(KINDS) if task != "lang" else pick_languages(rows)
    clips: dict[str, list[Clip]] = {label: [] for label in labels}
    for row in rows:
        if not usable(row) or not in_split(row, task, split):
            continue
        label = row["kind"] if task != "lang" else (
            row["lang"] if row["kind"] == "speech" else "")
        if label in clips:
            clips[label].append(Clip(corpus / row["path"], label, float(row["seconds"])))
    return clips


def clip_segments(clip: Clip, per_clip: int, rate: int, rng: np.random.Generator
                  ) -> list[NDArray[np.float32]]:
    """Up to per_clip non-silent segments of SEGMENT_S (the whole clip when shorter)."""
    info = soundfile.info(str(clip.path))
    if info.samplerate != rate:
        raise ValueError(f"{clip.path}: {info.samplerate} Hz, the probe reads {rate} Hz")
    length = int(SEGMENT_S * rate)
    starts = np.arange(0, max(1, info.frames - length + 1), length)
    picked: list[NDArray[np.float32]] = []
    for start in rng.permutation(starts)[: 3 * per_clip]:
        audio, _ = soundfile.read(str(clip.path), start=int(start), frames=length,
                                  dtype="float32", always_2d=True)
        segment = audio.mean(axis=1)
        rms = float(np.sqrt(np.mean(np.square(segment, dtype=np.float64)) + 1e-20))
        if segment.size >= MIN_SEGMENT_S * rate and 20 * np.log10(rms) > SILENCE_DBFS:
            picked.append(segment)
        if len(picked) == per_clip:
            break
    return picked


def collect(clips: dict[str, list[Clip]], per_class: int, per_clip: int, rate: int,
            extract: Extractor, rng: np.random.Generator
            ) -> tuple[dict[str, NDArray[np.float64]], NDArray[np.int64]]:
    """Features (name -> [segments, dims]) and class indices of up to per_class segments
    per label, clips visited in a seeded random order."""
    features: dict[str, list[NDArray[np.float64]]] = defaultdict(list)
    labels: list[int] = []
    for index, label in enumerate(clips):
        taken = 0
        for clip_index in rng.permutation(len(clips[label])):
            for segment in clip_segments(clips[label][clip_index], per_clip, rate, rng):
                if taken == per_class:
                    break
                for name, vector in extract(segment).items():
                    features[name].append(vector)
                labels.append(index)
                taken += 1
            if taken == per_class:
                break
    return {k: np.stack(v) for k, v in features.items()}, np.asarray(labels, np.int64)


# ---------------------------------------------------------------- features


def pooled(frames: NDArray[np.float64], name: str) -> dict[str, NDArray[np.float64]]:
    """[frames, dims] -> {"NAME mean": [dims], "NAME meanstd": [2 * dims]}."""
    mean = frames.mean(axis=0)
    return {f"{name} mean": mean,
            f"{name} meanstd": np.concatenate([mean, frames.std(axis=0)])}


def make_extractor(codec: Codec) -> Extractor:
    """Segment -> pooled latent, same-dimension log-mel and 64-band log-mel features."""
    import torchaudio

    hop, dims = codec.model.geometry.hop_length, int(codec.model.config.latent_channels)
    rate = codec.model_rate
    mels = {name: torchaudio.transforms.MelSpectrogram(
        rate, n_fft=max(2048, 4 * hop), win_length=2 * hop, hop_length=hop, n_mels=n)
        for name, n in (("log-mel", dims), ("log-mel-64", 64))}

    def extract(segment: NDArray[np.float32]) -> dict[str, NDArray[np.float64]]:
        out = pooled(codec.embed(segment, rate).astype(np.float64), "latent logpower")
        x = torch.from_numpy(segment)
        for name, mel in mels.items():
            power = mel(x).T.double().numpy()                        # [frames, bands]
            out |= pooled(10.0 * np.log10(power + POWER_FLOOR), name)
        return out
    return extract


# ---------------------------------------------------------------- the probe


@dataclass(frozen=True)
class Probe:
    """A fitted linear classifier on standardised inputs."""

    mean: NDArray[np.float64]
    scale: NDArray[np.float64]
    weight: NDArray[np.float64]       # [dims, classes]
    bias: NDArray[np.float64]         # [classes]

    def predict(self, x: NDArray[np.float64]) -> NDArray[np.int64]:
        logits = ((x - self.mean) / self.scale) @ self.weight + self.bias
        return np.argmax(logits, axis=1)


def fit_probe(x: NDArray[np.float64], y: NDArray[np.int64], classes: int, l2: float = 0.1,
              iterations: int = 500) -> Probe:
    """Multinomial logistic regression, class-weighted, L2 on the weights, LBFGS."""
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-8
    inputs = torch.from_numpy((x - mean) / scale)
    targets = torch.from_numpy(y)
    counts = np.bincount(y, minlength=classes).astype(np.float64)
    weights = torch.from_numpy(np.where(counts > 0, len(y) / (classes * np.maximum(counts, 1)),
                                        0.0))
    weight = torch.zeros(x.shape[1], classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=iterations, tolerance_grad=1e-9,
                                  tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(inputs @ weight + bias, targets, weights)
        loss = loss + l2 * weight.square().sum()
        loss.backward()
        return loss
    optimizer.step(closure)
    return Probe(mean, scale, weight.detach().numpy(), bias.detach().numpy())


@dataclass(frozen=True)
class MlpProbe:
    """A fitted MLP on standardised inputs (the --ceiling check)."""

    mean: NDArray[np.float64]
    scale: NDArray[np.float64]
    net: torch.nn.Module

    def predict(self, x: NDArray[np.float64]) -> NDArray[np.int64]:
        inputs = torch.from_numpy(((x - self.mean) / self.scale).astype(np.float32))
        with torch.no_grad():
            return self.net(inputs).argmax(dim=1).numpy()


def fit_mlp(x: NDArray[np.float64], y: NDArray[np.int64], classes: int, hidden: int = 256,
            steps: int = 600, seed: int = 0) -> MlpProbe:
    """Two hidden layers, class-weighted cross-entropy, AdamW, full batch (module docstring)."""
    torch.manual_seed(seed)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-8
    inputs = torch.from_numpy(((x - mean) / scale).astype(np.float32))
    targets = torch.from_numpy(y)
    counts = np.bincount(y, minlength=classes).astype(np.float32)
    weights = torch.from_numpy(np.where(counts > 0, len(y) / (classes * np.maximum(counts, 1)),
                                        0.0).astype(np.float32))
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.GELU(),
                              torch.nn.Dropout(0.3), torch.nn.Linear(hidden, hidden),
                              torch.nn.GELU(), torch.nn.Linear(hidden, classes))
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-3)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(inputs), targets, weights).backward()
        optimizer.step()
    return MlpProbe(mean, scale, net.eval())


def score(y: NDArray[np.int64], predicted: NDArray[np.int64], classes: int
          ) -> tuple[float, float, list[float]]:
    """(accuracy, macro accuracy, per-class recall); absent classes are left out of macro."""
    recalls = [float(np.mean(predicted[y == c] == c)) if np.any(y == c) else float("nan")
               for c in range(classes)]
    present = [r for r in recalls if r == r]
    return float(np.mean(predicted == y)), float(np.mean(present)), recalls


# ---------------------------------------------------------------- running it


def run_task(corpus: Path, rows: Sequence[dict[str, str]], task: str,
             args: argparse.Namespace, extract: Extractor, rate: int) -> list[dict[str, object]]:
    """Collect train and valid segments of one task, fit and score every feature."""
    rng = np.random.default_rng(args.seed)
    train_clips = task_clips(corpus, rows, task, "train")
    labels = list(train_clips)
    x_train, y_train = collect(train_clips, args.train_per_class, args.per_clip, rate,
                               extract, rng)
    x_test, y_test = collect(task_clips(corpus, rows, task, "valid"), args.test_per_class,
                             args.per_clip, rate, extract, rng)
    fits = [(name, "linear") for name in x_train]
    if args.ceiling:
        fits += [(name, "mlp") for name in x_train if name.endswith("meanstd")]
    results = []
    for name, kind in fits:
        probe = fit_probe(x_train[name], y_train, len(labels), args.l2) if kind == "linear" \
            else fit_mlp(x_train[name], y_train, len(labels))
        predicted = probe.predict(x_test[name])
        accuracy, macro, recalls = score(y_test, predicted, len(labels))
        results.append({
            "task": task, "feature": name, "probe": kind, "dims": x_train[name].shape[1],
            "classes": " ".join(labels), "train_segments": len(y_train),
            "test_segments": len(y_test), "accuracy": round(accuracy, 4),
            "macro_accuracy": round(macro, 4),
            "per_class_recall": " ".join(f"{label}={r:.3f}" for label, r in zip(labels, recalls)),
            "train_per_class": _counts(y_train, len(labels)),
            "test_per_class": _counts(y_test, len(labels)),
            "confusion": " / ".join(_counts(predicted[y_test == c], len(labels))
                                    for c in range(len(labels))),
        })
    return results


def _counts(y: NDArray[np.int64], classes: int) -> str:
    return " ".join(str(int(n)) for n in np.bincount(y, minlength=classes))


def write_results(out: Path, results: list[dict[str, object]], command: str,
                  seconds: float) -> None:
    """OUT/probe.csv (every field) and OUT/probe.md (one table per task)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "probe.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(results[0]))
        writer.writeheader()
        writer.writerows(results)
    lines = ["# Linear probe: the codec's latent as a feature", "",
             f"Command: `{command}` ({seconds:.0f} s). Protocol: `bench/probe.py`'s docstring.",
             "Confusion: one group per true class (in the order of the classes), counts of "
             "the predicted classes in the same order.", ""]
    for task in dict.fromkeys(str(r["task"]) for r in results):
        rows = [r for r in results if r["task"] == task]
        lines += [f"## {task}: {rows[0]['classes']}", "",
                  f"train segments per class: {rows[0]['train_per_class']}; "
                  f"valid (test) segments per class: {rows[0]['test_per_class']}", "",
                  "| feature | probe | dims | accuracy | macro accuracy | per-class recall | "
                  "confusion |", "|---|---|---:|---:|---:|---|---|"]
        lines += [f"| {r['feature']} | {r['probe']} | {r['dims']} | "
                  f"{100 * float(str(r['accuracy'])):.1f} % | "
                  f"{100 * float(str(r['macro_accuracy'])):.1f} % | {r['per_class_recall']} | "
                  f"{r['confusion']} |" for r in rows]
        lines.append("")
    (out / "probe.md").write_text("\n".join(lines))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.probe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, required=True,
                   help="corpus folder holding manifest.csv (scripts/make_corpus.sh)")
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    p.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    p.add_argument("--train-per-class", type=int, default=400)
    p.add_argument("--test-per-class", type=int, default=200)
    p.add_argument("--per-clip", type=int, default=2, help="segments per clip at most")
    p.add_argument("--l2", type=float, default=0.1,
                   help="L2 weight (default 0.1: the best of 0.001/0.01/0.1 on packages held "
                        "out of the TRAIN split, never on valid)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ceiling", action="store_true",
                   help="also fit a non-linear (MLP) probe on the meanstd features")
    p.add_argument("--weights", default=None, help="model weights (default: shipped)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    import sys

    from codec.api import Codec

    args = build_parser().parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    codec = Codec.load(args.weights, device="cpu")
    extract = make_extractor(codec)
    rows = read_manifest(args.corpus)
    results = [r for task in args.tasks
               for r in run_task(args.corpus, rows, task, args, extract, codec.model_rate)]
    command = "python -m bench.probe " + " ".join(sys.argv[1:] if argv is None else argv)
    write_results(args.out, results, command.strip(), time.perf_counter() - started)
    for r in results:
        print(f"{r['task']:5s} {r['feature']:26s} {r['probe']:6s} acc {r['accuracy']:.3f} "
              f"macro {r['macro_accuracy']:.3f}  {r['per_class_recall']}")
    return 0


if __name__ == "__main__":
    from bench.entry import run

    raise SystemExit(run(main, "bench.probe"))
