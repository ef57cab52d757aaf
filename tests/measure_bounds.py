"""Measure the shipped weights on the test clips and write the quality bounds the tests use.

    .venv/bin/python -m tests.measure_bounds            # re-measure, write the bounds file
    .venv/bin/python -m tests.measure_bounds --check    # measure and compare, write nothing

Quality bounds are never typed by hand. This command codes the test clips
(`tests/data/*.flac`, `codec/data/sample.flac`) with the shipped weights
(`codec/pretrained/`) through the three ways users reach the model: the library
(`Codec.encode`/`decode`), the command line (`aec roundtrip`, a subprocess) and
the bench (`bench/neural.py`). It records every measured value and its bound,
the measured value minus a small margin (`MARGINS`), in
`tests/data/quality_bounds.json`, with the SHA-256 of the decoder weights. The
tests (`tests/test_quality.py`) measure the same way and fail when a value
crosses its bound, or when the shipped weights are not the ones measured.
Re-run this command when new weights ship; never loosen a bound by hand.

Measures per case: `snr_db`, `si_sdr_db`, `mel_distance`, `kbps` (whole file)
and `level_db` (decoded energy over source energy, the level-sensitive check
beside the level-blind SI-SDR and mel distance).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
BOUNDS_PATH = DATA / "quality_bounds.json"
SAMPLE = ROOT / "codec" / "data" / "sample.flac"
SPEECH = DATA / "speech_24k_mono.flac"
STEREO = DATA / "music_44k_stereo.flac"
DECODER_WEIGHTS = ROOT / "codec" / "pretrained" / "aec-base.decoder.safetensors"
REMEASURE = "re-run `.venv/bin/python -m tests.measure_bounds` and commit tests/data/quality_bounds.json"
KBPS = 6.0

#: metric -> (kind, margin). "min": bound = value - margin; "max": value * (1 + margin);
#: "range": value +- margin; "rate": value * (1 -+ margin) on both sides.
MARGINS: dict[str, tuple[str, float]] = {
    "snr_db": ("min", 1.0),
    "si_sdr_db": ("min", 1.0),
    "mel_distance": ("max", 0.10),
    "level_db": ("range", 1.5),
    "kbps": ("rate", 0.05),
}

Audio = NDArray[np.float32]


def read_clip(path: Path) -> tuple[Audio, int]:
    """A clip as float32 [channels, samples] and its rate (soundfile, not our reader)."""
    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    return np.ascontiguousarray(data.T), rate


def weights_sha256() -> str:
    """SHA-256 (hex) of the shipped decoder weights: the identity the bounds belong to."""
    return hashlib.sha256(DECODER_WEIGHTS.read_bytes()).hexdigest()


def level_db(reference: NDArray[Any], estimate: NDArray[Any]) -> float:
    """10 log10(energy of estimate / energy of reference): 0 dB is the right level."""
    ref = float(np.sum(np.asarray(reference, np.float64) ** 2))
    est = float(np.sum(np.asarray(estimate, np.float64) ** 2))
    if est == 0.0:
        return -math.inf
    return 10.0 * math.log10(est / ref)


def score(reference: NDArray[Any], decoded: NDArray[Any], rate: int,
          size_bytes: int) -> dict[str, float]:
    """Every measured value of one coded clip (metrics from `codec/metrics.py`)."""
    from codec.metrics import bitrate_kbps, mel_distance, si_sdr_db, snr_db

    return {"snr_db": snr_db(reference, decoded), "si_sdr_db": si_sdr_db(reference, decoded),
            "mel_distance": mel_distance(reference, decoded, rate),
            "level_db": level_db(reference, decoded),
            "kbps": bitrate_kbps(size_bytes, reference.shape[-1], rate)}


# ---------------------------------------------------------------- the three paths


def measure_api(codec: Any) -> dict[str, dict[str, float]]:
    """The library path: `Codec.encode`/`decode` on the speech and the stereo music clip."""
    out = {}
    for name, path in (("api_speech", SPEECH), ("api_music_stereo", STEREO)):
        audio, rate = read_clip(path)
        data = codec.encode(audio, rate, kbps=KBPS)
        decoded, decoded_rate = codec.decode(data)
        assert decoded_rate == rate and decoded.shape == audio.shape
        out[name] = score(audio, decoded, rate, len(data))
    return out


def run_cli_roundtrip(src: Path, dst: Path) -> dict[str, Any]:
    """`aec roundtrip SRC -o DST --json` as a user runs it; its JSON report."""
    command = [sys.executable, "-m", "codec", "roundtrip", str(src), "-o", str(dst), "-f",
               "--json", "--device", "cpu", "--threads", "1", "--kbps", str(KBPS)]
    result = subprocess.run(command, capture_output=True, cwd=ROOT, timeout=300,
                            env=os.environ.copy())
    if result.returncode != 0:
        raise RuntimeError(f"aec roundtrip failed ({result.returncode}): "
                           f"{result.stderr.decode()[-2000:]}")
    return json.loads(result.stdout)


def measure_cli(workdir: Path) -> dict[str, dict[str, float]]:
    """The command-line path: the bundled sample through `aec roundtrip`, scored from its
    decoded file (the report's own figures are checked against these in the tests)."""
    report = run_cli_roundtrip(SAMPLE, workdir / "sample.wav")
    audio, rate = read_clip(SAMPLE)
    decoded, _ = read_clip(workdir / "sample.wav")
    values = score(audio, decoded, rate, int(report["size_bytes"]))
    return {"cli_sample": values}


#: The bench's rate requests measured on the speech clip (`python -m bench.rd --kbps ...`).
BENCH_KBPS = (6.0, 12.0)


def measure_bench(codec: Any, workdir: Path) -> dict[str, dict[str, float]]:
    """The bench path (`bench/neural.py`, `AecRequestPoint`): the speech clip at each of
    BENCH_KBPS, scored on the decoded samples as returned (no lag alignment, so a time
    shift shows)."""
    from bench.clips import Clip
    from bench.neural import AecRequestPoint

    audio, rate = read_clip(SPEECH)
    clip = Clip("speech", "speech", "tests", SPEECH, audio[0], rate)
    out = {}
    for kbps in BENCH_KBPS:
        coded = AecRequestPoint(codec, kbps).run(clip, workdir)
        assert coded.decoded_rate == rate
        out[f"bench_speech_{kbps:g}k"] = score(audio[0], coded.decoded, rate, coded.file_bytes)
    return out


def load_codec() -> Any:
    """The shipped model on the CPU, one thread (kinder to a busy machine, and steady)."""
    import torch

    from codec.api import Codec

    torch.set_num_threads(1)
    return Codec.load(device="cpu")


def measure_all(codec: Any | None = None) -> dict[str, dict[str, float]]:
    """Every case of every path, with the shipped weights."""
    codec = codec or load_codec()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        return measure_api(codec) | measure_cli(workdir) | measure_bench(codec, workdir)


# ---------------------------------------------------------------- bounds


def bound_for(metric: str, value: float) -> list[float]:
    """[low, high] allowed for a metric measured at `value` (None-free: +-inf for open)."""
    kind, margin = MARGINS[metric]
    if kind == "min":
        return [value - margin, math.inf]
    if kind == "max":
        return [-math.inf, value * (1.0 + margin)]
    if kind == "range":
        return [value - margin, value + margin]
    return [value * (1.0 - margin), value * (1.0 + margin)]


def make_bounds(measured: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The bounds file's content: weights identity, margins, values and bounds per case."""
    cases = {case: {metric: {"measured": round(value, 4),
                             "bounds": [round(b, 4) if math.isfinite(b) else None
                                        for b in bound_for(metric, value)]}
                    for metric, value in values.items()}
             for case, values in measured.items()}
    return {"weights_sha256": weights_sha256(), "command": "python -m tests.measure_bounds",
            "margins": {k: list(v) for k, v in MARGINS.items()}, "cases": cases}


def violations(measured: dict[str, dict[str, float]], bounds: dict[str, Any]) -> list[str]:
    """Every measured value outside its recorded bound, as readable lines (empty: all in)."""
    out = []
    for case, metrics in bounds["cases"].items():
        if case not in measured:
            out.append(f"{case}: not measured")
            continue
        for metric, entry in metrics.items():
            value = measured[case][metric]
            low, high = (-math.inf if entry["bounds"][0] is None else entry["bounds"][0],
                         math.inf if entry["bounds"][1] is None else entry["bounds"][1])
            if not (low <= value <= high):    # NaN fails too
                out.append(f"{case}: {metric} = {value:.4f} outside [{low}, {high}] "
                           f"(measured {entry['measured']} when the bounds were made)")
    return out


def load_bounds(path: Path = BOUNDS_PATH) -> dict[str, Any]:
    """The recorded bounds; raises with the re-measure command if they do not fit the weights."""
    if not DECODER_WEIGHTS.is_file():
        raise FileNotFoundError(f"shipped weights missing: {DECODER_WEIGHTS}")
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: {REMEASURE}")
    bounds = json.loads(path.read_text())
    if bounds.get("weights_sha256") != weights_sha256():
        raise ValueError(f"{path.name} was measured with weights sha256 "
                         f"{bounds.get('weights_sha256')}, the shipped weights have "
                         f"{weights_sha256()}: {REMEASURE}")
    return bounds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.measure_bounds",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="compare with the recorded bounds; write nothing")
    args = parser.parse_args(argv)
    measured = measure_all()
    for case, values in measured.items():
        print(case, " ".join(f"{k}={v:.3f}" for k, v in values.items()))
    if args.check:
        problems = violations(measured, load_bounds())
        print("\n".join(problems) or "all values within their bounds")
        return 1 if problems else 0
    BOUNDS_PATH.write_text(json.dumps(make_bounds(measured), indent=1) + "\n")
    print(f"wrote {BOUNDS_PATH.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
