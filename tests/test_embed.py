"""codec.embed (`Codec.embed`, `aec embed`) and bench.probe on real clips and the shipped model."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import soundfile

from codec import cli
from codec.errors import AudioError, UsageError
from conftest import SPEECH, STEREO, read_clip


@pytest.fixture(scope="module")
def small_windows(codec):
    """The shipped model with 7-frame windows: many seams, to test windowing."""
    from codec.api import Codec

    return Codec(codec.model, codec.device, frames_per_chunk=7, chunks_per_window=1)


def test_shapes_dtype_and_frame_rate_come_from_the_model(codec, speech) -> None:
    audio, rate = speech
    hop, dims = codec.model.geometry.hop_length, codec.model.config.latent_channels
    assert codec.embed_rate == codec.model_rate / hop
    frames = codec.embed(audio, rate)
    assert frames.dtype == np.float32
    assert frames.shape == (math.ceil(audio.shape[1] / hop), dims)
    assert codec.embed(audio[0], rate).shape == frames.shape         # [samples] == [1, samples]
    np.testing.assert_allclose(codec.embed(audio, rate, pool="mean"), frames.mean(0), atol=1e-3)
    meanstd = codec.embed(audio, rate, pool="meanstd")
    assert meanstd.shape == (2 * dims,)
    np.testing.assert_allclose(meanstd[dims:], frames.std(0), atol=1e-3)


def test_logpower_is_the_latent_in_db_and_the_latent_is_the_mdct(codec, speech) -> None:
    audio, rate = speech
    latent = codec.embed(audio, rate, feature="latent")
    np.testing.assert_allclose(codec.embed(audio, rate),
                               10 * np.log10(latent.astype(np.float64) ** 2 + 1e-10), atol=1e-3)
    # Parseval (orthonormal TDAC): the latent's energy is the signal's energy
    assert np.sum(latent.astype(np.float64) ** 2) == pytest.approx(
        np.sum(audio.astype(np.float64) ** 2), rel=1e-3)


def test_a_tone_peaks_in_its_bin(codec) -> None:
    """Bin k of an N-bin MDCT at rate R is centred on (k + 1/2) R / (2N) Hz."""
    rate, hz = codec.model_rate, 3000.0
    tone = 0.5 * np.sin(2 * np.pi * hz * np.arange(rate) / rate).astype(np.float32)
    bins = codec.model.config.latent_channels
    expected = hz / (rate / 2 / bins) - 0.5
    assert abs(int(np.argmax(codec.embed(tone, rate, pool="mean"))) - expected) <= 1


def test_windowed_equals_whole_for_a_long_input(codec, small_windows, speech) -> None:
    audio, rate = speech
    long = np.tile(audio, 3)                        # 7.5 s: 81 windows of 7 frames
    whole = codec.embed(long, rate, feature="latent")
    windowed = small_windows.embed(long, rate, feature="latent")
    assert whole.shape == windowed.shape == (math.ceil(long.shape[1] / 320), 320)
    np.testing.assert_allclose(windowed, whole, rtol=0, atol=1e-5)
    np.testing.assert_allclose(small_windows.embed(long, rate, pool="meanstd"),
                               codec.embed(long, rate, pool="meanstd"), rtol=0, atol=1e-3)


def test_multichannel_has_a_channel_axis_of_per_channel_embeddings(codec, small_windows,
                                                                   stereo) -> None:
    audio, rate = stereo                             # 44.1 kHz stereo: resampled as it streams
    both = codec.embed(audio, rate)
    assert both.shape == (2, math.ceil(audio.shape[1] * 24000 / rate / 320), 320)
    for channel in range(2):
        np.testing.assert_allclose(both[channel], codec.embed(audio[channel], rate), atol=1e-3)
    np.testing.assert_allclose(small_windows.embed(audio, rate), both, atol=1e-2)
    assert codec.embed(audio, rate, pool="mean").shape == (2, 320)


def test_empty_input_and_bad_choices(codec) -> None:
    empty = np.zeros((1, 0), np.float32)
    assert codec.embed(empty, 24000).shape == (0, 320)
    with pytest.raises(AudioError, match="empty"):
        codec.embed(empty, 24000, pool="mean")
    with pytest.raises(UsageError, match="pooling"):
        codec.embed(np.zeros(100, np.float32), 24000, pool="max")
    with pytest.raises(UsageError, match="feature"):
        codec.embed(np.zeros(100, np.float32), 24000, feature="mel")


# ---------------------------------------------------------------- the CLI


def test_cli_writes_the_api_s_array_refuses_overwrite_and_prints_json(codec, tmp_path,
                                                                      capsys) -> None:
    out = tmp_path / "feats.npy"
    args = ["embed", str(STEREO), "-o", str(out), "--device", "cpu"]
    assert cli.main([*args, "--json"]) == 0
    header = json.loads(capsys.readouterr().out)
    saved = np.load(out)
    audio, rate = read_clip(STEREO)
    np.testing.assert_allclose(saved, codec.embed(audio, rate), atol=1e-4)
    assert header["shape"] == list(saved.shape) and saved.dtype == np.float32
    assert header["frame_rate"] == 75.0 and header["dims"] == 320
    assert header["layout"] == "[channels, frames, dims]" and header["channels"] == 2

    before = out.read_bytes()
    assert cli.main([*args, "--pool", "mean"]) == 9                 # exists, no -f
    assert "exists" in capsys.readouterr().err and out.read_bytes() == before
    assert cli.main([*args, "--pool", "mean", "-f", "-q"]) == 0
    assert np.load(out).shape == (2, 320)
    assert [p.name for p in tmp_path.iterdir()] == ["feats.npy"]   # no temp file left


def test_cli_default_name_and_errors(tmp_path, capsys) -> None:
    audio, rate = read_clip(SPEECH)
    soundfile.write(str(tmp_path / "in.wav"), audio[0, :rate], rate)
    assert cli.main(["embed", str(tmp_path / "in.wav"), "-q", "--pool", "meanstd"]) == 0
    assert np.load(tmp_path / "in.npy").shape == (640,)
    assert cli.main(["embed", str(tmp_path / "missing.wav")]) == 3
    assert cli.main(["embed", str(tmp_path / "in.wav"), "-o", "-"]) == 2
    assert cli.main(["embed", str(tmp_path / "in.wav"), "-o", str(tmp_path / "no" / "x.npy")]
                    ) == 10
    capsys.readouterr()


# ---------------------------------------------------------------- bench.probe


def write_tiny_corpus(root, rate: int = 24000) -> None:
    """Three easily told apart kinds (low tones, noise, high tones), train and valid."""
    rng = np.random.default_rng(0)
    rows = []
    for split, package in (("train", "pkg-a"), ("valid", "klettres-data")):
        for kind in ("speech", "music", "sfx"):
            folder = root / "train" / kind / package
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(4):
                t = np.arange(2 * rate) / rate
                hz = rng.uniform(200, 400) if kind == "speech" else rng.uniform(4000, 6000)
                x = 0.3 * np.sin(2 * np.pi * hz * t) if kind != "music" else \
                    0.1 * rng.standard_normal(t.size)
                path = folder / f"{i}.wav"
                soundfile.write(str(path), x.astype(np.float32), rate)
                rows.append({"path": str(path.relative_to(root)), "split": split, "kind": kind,
                             "source_package": package, "seconds": 2.0,
                             "lang": "xx" if kind == "speech" else ""})
    with open(root / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_probe_runs_end_to_end_and_beats_chance(tmp_path) -> None:
    from bench import probe

    write_tiny_corpus(tmp_path / "corpus")
    out = tmp_path / "results"
    assert probe.main(["--corpus", str(tmp_path / "corpus"), "--out", str(out),
                       "--tasks", "kind", "--train-per-class", "8",
                       "--test-per-class", "8", "--ceiling"]) == 0
    with open(out / "probe.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["feature"] for row in rows} >= {"latent logpower mean", "log-mel mean"}
    # --ceiling: an MLP row for each meanstd feature, none for the mean ones
    mlp = {row["feature"] for row in rows if row["probe"] == "mlp"}
    assert mlp == {row["feature"] for row in rows if row["feature"].endswith("meanstd")}
    assert {row["probe"] for row in rows} == {"linear", "mlp"}
    for row in rows:
        assert row["task"] == "kind" and int(row["test_segments"]) == 24
        assert float(row["macro_accuracy"]) > 0.9          # chance is 1/3
    assert "latent logpower" in (out / "probe.md").read_text()
