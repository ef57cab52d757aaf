"""Quality with the shipped weights, held to measured bounds in the library, CLI and bench.

The bounds come from `tests/data/quality_bounds.json`, written by
`python -m tests.measure_bounds` (`tests/measure_bounds.py`): each is the value
the shipped weights measured minus a small margin. Nothing here is typed by
hand. Missing weights, a missing bounds file or bounds measured with other
weights fail (never skip), with the command that re-measures them.

`test_bounds_reject_broken_output` proves the bounds mean something: a +-6 dB
level error, a one-frame shift, silence and untrained weights each cross one.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import measure_bounds as mb
from conftest import SAMPLE


@pytest.fixture(scope="module")
def bounds() -> dict[str, Any]:
    try:
        return mb.load_bounds()
    except (FileNotFoundError, ValueError) as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def shipped(bounds) -> Any:
    """The shipped model, one thread (after `bounds`, which fails first if it is missing)."""
    return mb.load_codec()


def check(measured: dict[str, dict[str, float]], bounds: dict[str, Any], prefix: str) -> None:
    """Fail with every value of the `prefix` cases that is outside its bound."""
    cases = {k: v for k, v in bounds["cases"].items() if k.startswith(prefix)}
    assert cases, f"no {prefix}* cases in the bounds file: {mb.REMEASURE}"
    problems = mb.violations(measured, {"cases": cases})
    assert not problems, "\n".join(problems) + f"\n(if the change is intended: {mb.REMEASURE})"


def test_bounds_file_belongs_to_the_shipped_weights(bounds) -> None:
    assert bounds["weights_sha256"] == mb.weights_sha256()
    assert set(bounds["margins"]) == set(mb.MARGINS)


def test_library_quality_within_bounds(shipped, bounds) -> None:
    check(mb.measure_api(shipped), bounds, "api_")


def test_bench_quality_within_bounds(shipped, bounds, tmp_path) -> None:
    check(mb.measure_bench(shipped, tmp_path), bounds, "bench_")


def test_cli_quality_within_bounds_and_report_tells_the_truth(bounds, tmp_path) -> None:
    """`aec roundtrip` on the bundled sample: its decoded file meets the bounds, and the
    report's SNR, SI-SDR, mel and kbps are the values recomputed from the files."""
    from codec.metrics import mel_distance, si_sdr_db, snr_db

    report = mb.run_cli_roundtrip(SAMPLE, tmp_path / "dec.wav")
    audio, rate = mb.read_clip(SAMPLE)
    decoded, decoded_rate = mb.read_clip(tmp_path / "dec.wav")
    assert (decoded_rate, decoded.shape) == (rate, audio.shape)
    check({"cli_sample": mb.score(audio, decoded, rate, int(report["size_bytes"]))},
          bounds, "cli_")
    # The report scores float output, the file holds 16-bit samples: small differences
    # (0.06 dB at 15.8 dB SNR).
    assert report["snr_db"] == pytest.approx(snr_db(audio, decoded), abs=0.25)
    assert report["si_sdr_db"] == pytest.approx(si_sdr_db(audio, decoded), abs=0.25)
    assert report["mel_distance"] == pytest.approx(mel_distance(audio, decoded, rate), abs=0.01)
    seconds = audio.shape[1] / rate
    assert report["kbps"] == pytest.approx(report["size_bytes"] * 8 / seconds / 1000, rel=1e-3)
    assert report["payload_kbps"] == pytest.approx(
        report["payload_bytes"] * 8 / seconds / 1000, rel=1e-3)
    assert 0 < report["payload_bytes"] < report["size_bytes"]


# ---------------------------------------------------------------- the bounds have teeth


def untrained_copy(codec: Any) -> Any:
    """The same architecture, tables and identity with freshly initialised networks."""
    import torch

    from codec.api import Codec

    model = dataclasses.replace(codec.model, encoder=copy.deepcopy(codec.model.encoder),
                                decoder=copy.deepcopy(codec.model.decoder))
    torch.manual_seed(0)
    for network in (model.encoder, model.decoder):
        for module in network.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    return Codec(model, codec.device)


def broken_outputs(codec: Any) -> tuple[dict[str, np.ndarray], np.ndarray, int, int]:
    """({damage: decoded}, reference, rate, size_bytes) for the speech clip; "_ok" is the
    undamaged output."""
    audio, rate = mb.read_clip(mb.SPEECH)
    data = codec.encode(audio, rate, kbps=mb.KBPS)
    decoded, _ = codec.decode(data)
    frame = round(codec.model.geometry.hop_length * rate / codec.model_rate)
    shifted = np.zeros_like(decoded)
    shifted[:, frame:] = decoded[:, :-frame]
    untrained = untrained_copy(codec)
    garbage, _ = untrained.decode(untrained.encode(audio, rate, kbps=mb.KBPS))
    return {"gain x0.5 (-6 dB)": decoded * 0.5, "gain x2 (+6 dB)": decoded * 2.0,
            "one-frame shift": shifted, "silence": np.zeros_like(decoded),
            "untrained weights": garbage, "_ok": decoded}, audio, rate, len(data)


def test_bounds_reject_broken_output(shipped, bounds) -> None:
    """Each kind of broken decoder output crosses at least one api_speech bound."""
    outputs, audio, rate, size = broken_outputs(shipped)
    case = {"cases": {"api_speech": bounds["cases"]["api_speech"]}}
    for name, decoded in outputs.items():
        problems = mb.violations({"api_speech": mb.score(audio, decoded, rate, size)}, case)
        if name == "_ok":
            assert not problems, problems
        else:
            assert problems, f"{name} passes every api_speech bound: the bounds are too loose"


@pytest.mark.parametrize("kbps", [3.0, 6.0, 12.0, 24.0])
def test_readme_kbps_promise_with_shipped_weights(shipped, kbps) -> None:
    """README: `--kbps K` never goes over K, for the whole stream (all channels): the
    bundled sample in mono, and two of its stretches as stereo."""
    audio, rate = mb.read_clip(SAMPLE)
    half = audio.shape[1] // 2
    for clip in (audio, np.stack([audio[0, :half], audio[0, half: 2 * half]])):
        data = shipped.encode(clip, rate, kbps=kbps)
        file_kbps = len(data) * 8 / (clip.shape[1] / rate) / 1000
        assert file_kbps <= kbps, (clip.shape, kbps, file_kbps)


def test_bounds_file_is_plain_json_with_finite_values() -> None:
    data = json.loads(Path(mb.BOUNDS_PATH).read_text())
    for case in data["cases"].values():
        for entry in case.values():
            assert math.isfinite(entry["measured"])
