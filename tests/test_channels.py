"""Channel order and independence with the shipped weights, in the library, CLI and bench.

Every channel carries different content: a different 1.5 s stretch of the bundled
speech sample (`codec/data/sample.flac`). Each decoded channel must correlate with
its own source channel and not with any other, so a codec that swaps, reverses,
mixes or duplicates channels fails. The bench codes mono clips by design
(`bench/clips.py` downmixes); its test proves the downmix holds every channel and
that its aec path (`bench/neural.py`) keeps the clip's own content.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from conftest import ROOT, SAMPLE, read_clip

SEGMENT_S = 1.5
OWN_MIN = 0.5      # |corr| with its own source: a working codec is far above this
OTHER_MAX = 0.25   # |corr| with any other source: unrelated speech sits near 0


def distinct_channels(count: int) -> tuple[np.ndarray, int]:
    """[count, samples] float32: channel i is the sample's i-th 1.5 s stretch."""
    audio, rate = read_clip(SAMPLE)
    n = int(SEGMENT_S * rate)
    assert audio.shape[1] >= count * n, "the bundled sample is too short for this test"
    return np.stack([audio[0, i * n:(i + 1) * n] for i in range(count)]), rate


def correlations(source: np.ndarray, decoded: np.ndarray) -> np.ndarray:
    """[decoded channel, source channel] normalised correlation at lag 0."""
    a = decoded - decoded.mean(axis=1, keepdims=True)
    b = source - source.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(a, axis=1)[:, None] * np.linalg.norm(b, axis=1)[None, :]
    return (a @ b.T) / np.maximum(norms, 1e-12)


def assert_own_channels(source: np.ndarray, decoded: np.ndarray) -> None:
    """Each decoded channel follows its own source and none of the others."""
    assert decoded.shape == source.shape
    corr = np.abs(correlations(source, decoded))
    own = np.diag(corr)
    others = corr[~np.eye(len(corr), dtype=bool)]
    assert own.min() > OWN_MIN, f"own-channel correlations {np.round(own, 2)}"
    assert others.max() < OTHER_MAX, f"cross-channel correlations\n{np.round(corr, 2)}"


@pytest.fixture(scope="module")
def shipped():
    """The shipped model, one CPU thread; missing weights fail (see tests/test_quality.py)."""
    import measure_bounds

    if not measure_bounds.DECODER_WEIGHTS.is_file():
        pytest.fail(f"shipped weights missing: {measure_bounds.DECODER_WEIGHTS}")
    return measure_bounds.load_codec()


def test_distinct_channels_are_distinct() -> None:
    """The premise: the source channels do not correlate with each other."""
    audio, _ = distinct_channels(6)
    corr = np.abs(correlations(audio, audio))
    assert corr[~np.eye(6, dtype=bool)].max() < OTHER_MAX / 2


@pytest.mark.parametrize("channels", [2, 6])
def test_library_keeps_channel_order_and_independence(shipped, channels) -> None:
    audio, rate = distinct_channels(channels)
    decoded, decoded_rate = shipped.decode(shipped.encode(audio, rate, kbps=6.0 * channels))
    assert decoded_rate == rate
    assert_own_channels(audio, decoded)


@pytest.mark.parametrize("channels", [2, 6])
def test_cli_keeps_channel_order_and_independence(shipped, channels, tmp_path) -> None:
    """`aec encode` then `aec decode` as subprocesses, through files."""
    audio, rate = distinct_channels(channels)
    src, coded, out = tmp_path / "in.wav", tmp_path / "in.aec", tmp_path / "out.wav"
    soundfile.write(str(src), audio.T, rate, subtype="FLOAT")
    for args in (["encode", str(src), "-o", str(coded), "--kbps", str(6 * channels)],
                 ["decode", str(coded), "-o", str(out), "--sample-format", "float"]):
        result = subprocess.run([sys.executable, "-m", "codec", *args, "--device", "cpu",
                                 "--threads", "1", "-q"], capture_output=True, cwd=ROOT,
                                timeout=300)
        assert result.returncode == 0, result.stderr.decode()
    decoded, decoded_rate = read_clip(out)
    assert decoded_rate == rate
    assert_own_channels(audio, decoded)


def test_cli_info_reports_the_channel_count(shipped, tmp_path) -> None:
    audio, rate = distinct_channels(6)
    path = tmp_path / "six.aec"
    path.write_bytes(shipped.encode(audio, rate, kbps=36.0))
    result = subprocess.run([sys.executable, "-m", "codec", "info", str(path), "--json"],
                            capture_output=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout)["channels"] == 6


def test_bench_downmix_holds_every_channel_and_aec_keeps_it(shipped, tmp_path) -> None:
    """bench/clips.py codes mono: its clip is the mean of all channels (not one of them),
    and the aec point (bench/neural.py) returns audio that follows that mix."""
    from bench.clips import ClipSource, prepare_clip
    from bench.neural import AecRequestPoint

    audio, rate = distinct_channels(2)
    src = tmp_path / "two.wav"
    soundfile.write(str(src), audio.T, rate, subtype="FLOAT")
    clip = prepare_clip(ClipSource((Path(src),), "speech", "tests"), tmp_path, None)
    mix = audio.mean(axis=0)
    assert clip.audio.shape == mix.shape
    np.testing.assert_allclose(clip.audio, mix, atol=1e-4)       # 16-bit WAV in between
    coded = AecRequestPoint(shipped, 6.0).run(clip, tmp_path)
    corr = np.abs(correlations(np.stack([mix, *audio]), coded.decoded[None, :]))[0]
    assert corr[0] > OWN_MIN and corr[0] > corr[1:].max() + 0.1, np.round(corr, 2)
