"""Held-out rate-distortion of shipped weights next to Opus, for the model card.

`python -m codec.train.evaluate --corpus /work/corpus [--weights codec/pretrained]
[--json out.json] [--markdown out.md]`

Clips: `split.eval_clips` (fixed held-out clips, first 10 s of each, 24 kHz mono).
Our codec runs through `codec.api.Codec` (real `.aec` files: kbps = file bytes x 8
/ duration, header included; payload-only kbps also given). Opus runs through
`opusenc --hard-cbr --bitrate K` and `opusdec --rate 24000` on the same clips
(kbps = .opus file bytes x 8 / duration, Ogg overhead included). Metrics come
from `codec.metrics` and are averaged over clips.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from numpy.typing import NDArray

from codec import metrics
from codec.train.export import read_eval_audio
from codec.train.split import eval_clips, kind_of

OPUS_MIN_KBPS = 6


@dataclass(frozen=True)
class RdPoint:
    """Averages over the evaluation clips for one codec setting."""

    codec: str
    setting: str
    kbps: float            # file bytes x 8 / duration (all clips together)
    payload_kbps: float    # entropy-coded payload only (ours); = kbps for Opus
    snr_db: float
    si_sdr_db: float
    mel_distance: float


def _scores(refs: list[NDArray[np.float32]], outs: list[NDArray[np.float32]],
            rate: int) -> tuple[float, float, float]:
    snr = [metrics.snr_db(r, o) for r, o in zip(refs, outs, strict=True)]
    sdr = [metrics.si_sdr_db(r, o) for r, o in zip(refs, outs, strict=True)]
    mel = [metrics.mel_distance(r, o, rate) for r, o in zip(refs, outs, strict=True)]
    return float(np.mean(snr)), float(np.mean(sdr)), float(np.mean(mel))


def evaluate_ours(weights: Path | None, clips: list[NDArray[np.float32]], rate: int,
                  label: str) -> list[RdPoint]:
    """Every rate point of the model, through real .aec bytes."""
    from codec.api import Codec

    codec = Codec.load(weights, device="cpu")
    seconds = sum(len(c) for c in clips) / rate
    points = []
    for rp in codec.model.config.rate_points:
        streams = [codec.encode(c, rate, kbps=rp.measured_kbps) for c in clips]
        if any(codec.info(s).rate_point != rp.index for s in streams):
            raise RuntimeError(f"kbps {rp.measured_kbps} did not select rate point {rp.index}")
        outs = [codec.decode(s)[0][0, : len(c)] for s, c in zip(streams, clips, strict=True)]
        payload = _payload_bytes(codec, streams)
        total = sum(len(s) for s in streams)
        points.append(RdPoint(label, f"rate point {rp.index}", total * 8 / seconds / 1000,
                              payload * 8 / seconds / 1000, *_scores(clips, outs, rate)))
    return points


def _payload_bytes(codec: object, streams: list[bytes]) -> int:
    from codec import format as aec_format

    total = 0
    for s in streams:
        _, chunks = aec_format.read_stream(s)
        total += sum(len(c.payload or b"") for c in chunks)
    return total


def evaluate_opus(clips: list[NDArray[np.float32]], rate: int, kbps: int) -> RdPoint:
    """Opus (hard CBR) at one nominal bitrate on the same clips."""
    outs, size = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, clip in enumerate(clips):
            wav, opus, dec = (Path(tmp) / f"{i}.{ext}" for ext in ("wav", "opus", "out.wav"))
            sf.write(wav, clip, rate, subtype="PCM_16")
            subprocess.run(["opusenc", "--quiet", "--hard-cbr", "--bitrate", str(kbps),
                            str(wav), str(opus)], check=True)
            subprocess.run(["opusdec", "--quiet", "--rate", str(rate), str(opus), str(dec)],
                           check=True)
            size += opus.stat().st_size
            out, _ = sf.read(dec, dtype="float32", always_2d=True)
            outs.append(_fit_length(out[:, 0], len(clip)))
    seconds = sum(len(c) for c in clips) / rate
    k = size * 8 / seconds / 1000
    return RdPoint("opus", f"--hard-cbr --bitrate {kbps}", k, k, *_scores(clips, outs, rate))


def _fit_length(x: NDArray[np.float32], n: int) -> NDArray[np.float32]:
    return x[:n] if len(x) >= n else np.pad(x, (0, n - len(x)))


def opus_bitrates(points: list[RdPoint]) -> list[int]:
    """Opus at the closest bitrate to each of our points (>= Opus's 6 kbps), plus 6 and 12."""
    wanted = {max(OPUS_MIN_KBPS, round(p.kbps)) for p in points} | {6, 12}
    return sorted(wanted)


def markdown_table(points: list[RdPoint]) -> str:
    rows = ["| codec | setting | kbps (file) | kbps (payload) | SNR dB | SI-SDR dB | mel dist |",
            "|---|---|---:|---:|---:|---:|---:|"]
    rows += [f"| {p.codec} | {p.setting} | {p.kbps:.2f} | {p.payload_kbps:.2f} | "
             f"{p.snr_db:.2f} | {p.si_sdr_db:.2f} | {p.mel_distance:.3f} |" for p in points]
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m codec.train.evaluate", description=__doc__)
    p.add_argument("--corpus", required=True, type=Path)
    p.add_argument("--weights", type=Path, help="model folder or name stem (default: shipped)")
    p.add_argument("--per-kind", type=int, default=8, help="held-out clips per kind")
    p.add_argument("--json", type=Path)
    p.add_argument("--markdown", type=Path)
    args = p.parse_args(argv)
    paths = eval_clips(args.corpus, args.per_kind)
    rate = 24000
    clips = read_eval_audio(paths, rate)
    points = evaluate_ours(args.weights, clips, rate, "aec-base")
    if shutil.which("opusenc") and shutil.which("opusdec"):
        points += [evaluate_opus(clips, rate, k) for k in opus_bitrates(points)]
    else:
        print("opusenc/opusdec not found (apt-get install opus-tools): no Opus rows",
              file=sys.stderr)
    table = markdown_table(points)
    kinds = sorted({kind_of(pth) for pth in paths})
    print(f"{len(clips)} held-out clips ({', '.join(kinds)}), "
          f"{sum(len(c) for c in clips) / rate:.1f} s\n\n{table}")
    if args.json:
        args.json.write_text(json.dumps({"clips": [str(x) for x in paths],
                                         "points": [asdict(x) for x in points]}, indent=2))
    if args.markdown:
        args.markdown.write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
