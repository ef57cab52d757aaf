"""Tests of the rate-distortion bench: alignment, honest bitrates, outputs end to end.

The end-to-end test uses an in-process stand-in codec (delay + noise) so it runs
without any external tool, plus whichever classic codecs are installed. No
network, no timing assertions.
"""

from __future__ import annotations

import csv
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bench import publish, rd
from bench.align import align, apply_lag, find_lag
from bench.classic import CLASSIC_CODECS, ClassicPoint, packet_payload_bytes
from bench.clips import ClipSource, join_short, pick_per_kind, prepare_clip, sources_from_paths
from bench.coding import Coded
from bench.report import COLUMNS

RATE = 24000


def _signal(seconds: float, seed: int = 0) -> np.ndarray:
    """A speech-like test signal: an amplitude-modulated harmonic tone plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    tone = sum(np.sin(2 * np.pi * 180 * k * t) / k for k in range(1, 6))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    return (0.2 * envelope * tone + 0.02 * rng.standard_normal(t.shape)).astype(np.float32)


@pytest.mark.parametrize("lag", [0, 1, 37, -23, 2400])
def test_find_lag_recovers_known_lag_exactly(lag: int) -> None:
    reference = _signal(1.0)
    delayed = np.concatenate([np.zeros(max(lag, 0), np.float32), reference[max(-lag, 0):]])
    assert find_lag(reference, delayed, max_lag=2400) == lag
    aligned, found = align(reference, delayed, max_lag=2400)
    assert found == lag and aligned.shape == reference.shape
    interior = slice(max(-lag, 0), reference.shape[0] - max(lag, 0) - abs(lag))
    np.testing.assert_array_equal(aligned[interior], reference[interior])


def test_find_lag_is_bounded_and_silence_gives_zero() -> None:
    reference = _signal(0.5)
    late = np.concatenate([np.zeros(500, np.float32), reference])
    assert abs(find_lag(reference, late, max_lag=100)) <= 100
    assert find_lag(np.zeros(1000), np.zeros(1200), max_lag=50) == 0


def test_apply_lag_pads_and_cuts() -> None:
    estimate = np.arange(1, 6, dtype=np.float32)
    np.testing.assert_array_equal(apply_lag(estimate, 2, 5), [3, 4, 5, 0, 0])
    np.testing.assert_array_equal(apply_lag(estimate, -2, 4), [0, 0, 1, 2])


def test_pick_per_kind_round_robins_packages() -> None:
    sources = [ClipSource((Path(f"/c/{k}/{p}/{i}.wav"),), k, p)
               for k in ("speech", "music") for p in ("a", "b") for i in range(5)]
    picked = pick_per_kind(sources, 3)
    speech = [(s.package, s.path.stem) for s in picked if s.kind == "speech"]
    assert speech == [("a", "0"), ("a", "4"), ("b", "0")]   # spread within, shared across
    assert len(picked) == 6


def test_join_short_makes_clips_of_min_length(tmp_path: Path) -> None:
    folder = tmp_path / "speech" / "pkg"
    folder.mkdir(parents=True)
    for i, seconds in enumerate([1.0, 1.5, 3.0, 6.0, 0.5]):
        sf.write(folder / f"{i}.wav", _signal(seconds), RATE, subtype="PCM_16")
    joined = join_short(sources_from_paths([tmp_path]), 2.0)
    assert [[p.stem for p in s.paths] for s in joined] == [["0", "1"], ["2"], ["3"]]
    clip = prepare_clip(joined[0], tmp_path, None)
    assert clip.num_samples == int(2.5 * RATE) and clip.name.endswith("0+1")


class DelayNoiseCodec:
    """Stand-in codec: delays by 50 samples, adds noise; 1000 'file' and 900 payload bytes."""

    codec_name = "fake"
    label = "fake 8k"
    nominal_kbps = 8.0
    rate_point = -1
    delay = 50

    def run(self, clip, workdir: Path) -> Coded:
        noise = 0.001 * np.random.default_rng(1).standard_normal(clip.num_samples)
        decoded = np.concatenate([np.zeros(self.delay, np.float32),
                                  clip.audio + noise.astype(np.float32)])
        return Coded(decoded, clip.sample_rate, 1000, 900, 0.01, 0.01)


@pytest.fixture()
def input_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "in" / "speech" / "pkg"
    folder.mkdir(parents=True)
    sf.write(folder / "a.wav", _signal(1.0, seed=2), RATE, subtype="PCM_16")
    sf.write(folder / "b.wav", _signal(3.0, seed=3), RATE, subtype="PCM_16")
    return tmp_path / "in"


def test_rd_end_to_end(input_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                       ) -> None:
    present = [c for c in CLASSIC_CODECS if not c.missing_tools()]
    # One rate (--rates 32) per installed classic codec keeps the test fast.
    real_points = rd.classic_points
    monkeypatch.setattr(rd, "classic_points", lambda names, notes, rates: [
        DelayNoiseCodec(), *real_points(names, notes, rates)])
    out = tmp_path / "out"
    assert rd.main(["--input", str(input_dir), "--out", str(out), "--max-seconds", "2",
                    "--min-seconds", "0", "--codecs", "opus,mp3,aac,vorbis", "--rates", "32",
                    "--no-perceptual"]) == 0

    with open(out / "results.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert tuple(reader.fieldnames or ()) == COLUMNS
    assert len(rows) == 2 * (1 + len(present))
    fake = [r for r in rows if r["codec"] == "fake"]
    for row in fake:
        seconds = float(row["seconds"])
        assert int(row["lag_samples"]) == DelayNoiseCodec.delay
        assert math.isclose(float(row["kbps_file"]), 1000 * 8 / seconds / 1000, rel_tol=1e-3)
        assert math.isclose(float(row["kbps_payload"]), 900 * 8 / seconds / 1000, rel_tol=1e-3)
        assert float(row["snr_db"]) > 30 and float(row["mel_distance"]) < 0.5
        assert row["kind"] == "speech"
    assert sorted(float(r["seconds"]) for r in fake) == [1.0, 2.0]   # --max-seconds cut
    for row in rows:
        assert float(row["kbps_payload"]) <= float(row["kbps_file"])
    summary = (out / "summary.md").read_text()
    assert "| speech | fake | 8k | 2 |" in summary and "Commit:" in summary
    assert (out / "snr_db.png").stat().st_size > 1000
    assert (out / "mel_distance.png").exists()
    section = publish.render("model card words", out)
    assert section.startswith("## Latest results") and "| all | fake | 8k | 2 |" in section
    assert "![SI-SDR](results/si_sdr_db.png)" in section

    # A re-run reusing the classic rows runs no classic codec and gives the same rows.
    def no_run(*args: object) -> Coded:
        raise AssertionError("classic codec was run despite --reuse-classic")

    monkeypatch.setattr(DelayNoiseCodec, "run", no_run)
    monkeypatch.setattr(ClassicPoint, "run", no_run)
    again = tmp_path / "again"
    assert rd.main(["--input", str(input_dir), "--out", str(again), "--max-seconds", "2",
                    "--min-seconds", "0", "--codecs", "opus,mp3,aac,vorbis", "--rates", "32",
                    "--no-perceptual", "--reuse-classic", str(out / "results.csv")]) == 0
    assert (again / "results.csv").read_text() == (out / "results.csv").read_text()


def test_missing_tools_are_skipped_not_fatal(input_dir: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    out = tmp_path / "out"
    assert rd.main(["--input", str(input_dir), "--out", str(out), "--codecs", "opus,mp3",
                    "--min-seconds", "0", "--no-perceptual"]) == 0
    summary = (out / "summary.md").read_text()
    assert "opus skipped" in summary and "mp3 skipped" in summary


@pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                    reason="ffmpeg not installed (bench/setup.sh)")
def test_payload_bytes_from_packets(tmp_path: Path) -> None:
    source = ClipSource((tmp_path / "x.wav",), "other", "p")
    sf.write(source.path, _signal(2.0), RATE, subtype="PCM_16")
    clip = prepare_clip(source, tmp_path, None)
    aac = next(c for c in CLASSIC_CODECS if c.name == "aac")
    coded = aac.points([32])[0].run(clip, tmp_path)
    # Packets carry the audio; the MP4 container adds a little on top.
    assert 0 < coded.payload_bytes < coded.file_bytes < coded.payload_bytes + 2000
    assert coded.decoded_rate == RATE


@pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                    reason="ffmpeg not installed (bench/setup.sh)")
def test_packet_payload_bytes_sums_packets(tmp_path: Path) -> None:
    wav = tmp_path / "x.wav"
    sf.write(wav, _signal(1.0), RATE, subtype="PCM_16")
    # A WAV "packet" stream carries exactly the PCM bytes: 2 bytes per sample.
    assert packet_payload_bytes(wav) == 2 * RATE


def test_rd_runs_aec_through_the_api(input_dir: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """aec rows on a tiny untrained model: one row per rate point, payload from the stream."""
    torch = pytest.importorskip("torch")
    from conftest import make_tiny_model

    from bench.neural import aec_points_for
    from codec.api import Codec

    codec = Codec(make_tiny_model(0), torch.device("cpu"))
    monkeypatch.setattr(rd, "aec_points", lambda args, notes: aec_points_for(codec))
    out = tmp_path / "out"
    assert rd.main(["--input", str(input_dir), "--out", str(out), "--codecs", "aec",
                    "--max-seconds", "1", "--min-seconds", "0",
                    "--no-perceptual"]) == 0
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(int(r["rate_point"]) for r in rows) == [0, 0, 1, 1]
    for row in rows:
        assert row["codec"] == "aec" and int(row["decoded_rate"]) == RATE
        assert 0 < int(row["payload_bytes"]) < int(row["file_bytes"])
        assert abs(int(row["lag_samples"])) <= RATE // 10


def test_rd_requests_rates_from_aec(input_dir: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """--aec-rates: one aec row per clip and request, coded through Codec.encode(kbps=K)."""
    torch = pytest.importorskip("torch")
    from conftest import make_tiny_model

    from codec import api

    tiny = api.Codec(make_tiny_model(0), torch.device("cpu"))
    monkeypatch.setattr(api.Codec, "load", staticmethod(lambda *a, **k: tiny))
    out = tmp_path / "out"
    assert rd.main(["--input", str(input_dir), "--out", str(out), "--codecs", "aec",
                    "--aec-rates", "3,6", "--max-seconds", "1", "--min-seconds", "0",
                    "--no-perceptual"]) == 0
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(float(r["nominal_kbps"]) for r in rows) == [3.0, 3.0, 6.0, 6.0]
    assert all(int(r["rate_point"]) == -1 and r["codec"] == "aec" for r in rows)
    summary = (out / "summary.md").read_text()
    assert "| aec | 3 | 2 |" in summary.split("## Requested vs measured rate")[1]


def test_speed_bench_writes_table(input_dir: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """bench.speed on a tiny model and the installed classic codecs: one row per setting."""
    torch = pytest.importorskip("torch")
    from conftest import make_tiny_model

    from bench import speed
    from codec import api

    tiny = api.Codec(make_tiny_model(0), torch.device("cpu"))
    monkeypatch.setattr(api.Codec, "load", staticmethod(lambda *a, **k: tiny))
    out = tmp_path / "speed"
    assert speed.main(["--input", str(input_dir), "--out", str(out), "--seconds", "5",
                       "--codecs", "aec,opus", "--repeats", "1", "--threads", "1"]) == 0
    with open(out / "speed.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    aec_rows = [r for r in rows if r["codec"] == "aec" and r["device"].startswith("cpu")]
    assert len(aec_rows) == 2
    assert all(float(r["audio_s"]) >= 5.0 and float(r["encode_x_rt"]) > 0 for r in rows)
    assert all(float(r["encode_cpu_x_rt"]) > 0 and float(r["decode_cpu_x_rt"]) > 0
               for r in aec_rows)                          # CPU-time speed, aec only
    assert all(math.isnan(float(r["encode_cpu_x_rt"])) for r in rows if r["codec"] != "aec")
    assert "| aec |" in (out / "speed.md").read_text()


# --- the reference MDCT coders of issue 9 (bench/mdct_ref.py) --------------------------------

def test_mdct_is_perfectly_invertible() -> None:
    from bench import mdct_ref

    audio = _signal(1.013, seed=5)      # not a whole number of frames
    restored = mdct_ref.imdct(mdct_ref.mdct(audio), audio.shape[0])
    np.testing.assert_allclose(restored, audio, atol=1e-6)


@pytest.mark.parametrize("noise_fill", [False, True])
def test_reference_stream_round_trips_the_symbols(noise_fill: bool) -> None:
    """The decoder rebuilds the encoder's symbols: plain mdct decodes to exactly imdct(q x step)."""
    from bench import mdct_ref

    audio = _signal(2.0, seed=6)
    coefficients = mdct_ref.mdct(audio)
    quantized = mdct_ref.quantize(coefficients, 480, noise_fill)
    decoded = mdct_ref.decode(mdct_ref.encode(quantized, audio.shape[0]))
    assert decoded.shape == audio.shape
    expected = mdct_ref.imdct(quantized.q * mdct_ref.step_of(480), audio.shape[0])
    if noise_fill:
        assert quantized.energy is not None and (quantized.energy > mdct_ref.NF_FLOOR).any()
        assert not np.allclose(decoded, expected)     # filled bands add noise
    else:
        np.testing.assert_allclose(decoded, expected, atol=1e-6)


@pytest.mark.parametrize("noise_fill", [False, True])
@pytest.mark.parametrize("kbps", [3.0, 6.0, 12.0])
def test_reference_rate_lands_just_under_the_request(noise_fill: bool, kbps: float) -> None:
    from bench import mdct_ref
    from codec.metrics import bitrate_kbps, si_sdr_db

    audio = _signal(3.0, seed=7)
    data = mdct_ref.encode_at_kbps(audio, kbps, noise_fill)
    measured = bitrate_kbps(len(data), audio.shape[0], RATE)
    assert 0.9 * kbps <= measured <= kbps
    decoded = mdct_ref.decode(data)
    assert decoded.shape == audio.shape and np.isfinite(decoded).all()
    if not noise_fill:      # noise in filled bands is uncorrelated: no SI-SDR bound for nf
        assert si_sdr_db(audio, decoded) > 0.0


def test_noise_filling_fills_zero_bands_at_their_energy() -> None:
    """Bands whose symbols are all zero come back as noise at the band's energy (3 dB grid)."""
    from bench import mdct_ref

    rng = np.random.default_rng(8)
    t = np.arange(2 * RATE) / RATE
    audio = 0.3 * np.sin(2 * np.pi * 300 * t) + 0.003 * rng.standard_normal(t.shape)
    coefficients = mdct_ref.mdct(audio)
    step_index = 500
    quantized = mdct_ref.quantize(coefficients, step_index, noise_fill=True)
    decoded = mdct_ref.decode(mdct_ref.encode(quantized, audio.shape[0]))
    widths = np.diff(mdct_ref.BAND_EDGES)

    def band_db(c: np.ndarray) -> np.ndarray:
        power = np.add.reduceat(c ** 2, mdct_ref.BAND_EDGES[:-1], axis=1) / widths
        return 10 * np.log10(np.maximum(power, 1e-30))

    interior = slice(1, -2)     # edge frames lose half their support to the cut
    filled = (quantized.energy > mdct_ref.NF_FLOOR)[interior]
    assert filled.sum() > 100
    error_db = (band_db(mdct_ref.mdct(decoded)) - band_db(coefficients))[interior][filled]
    assert np.abs(error_db).max() <= 1.5 + 1e-6     # half of one 3 dB index step
    # The index is sent only for all-zero bands, and the fill is exactly on the grid.
    assert (quantized.energy[~mdct_ref.zero_bands(quantized.q)] < mdct_ref.NF_FLOOR).all()
    step = mdct_ref.step_of(step_index)
    zero = np.zeros_like(coefficients)
    filled_all = mdct_ref.fill_noise(zero, quantized.energy, step)
    grid_db = 10 * np.log10(step ** 2) + 3.0 * quantized.energy
    on = quantized.energy > mdct_ref.NF_FLOOR
    np.testing.assert_allclose(band_db(filled_all)[on], grid_db[on], atol=1e-9)


def test_rd_runs_the_reference_coders(input_dir: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    assert rd.main(["--input", str(input_dir), "--out", str(out), "--codecs", "mdct,mdct-nf",
                    "--rates", "6,12", "--min-seconds", "0", "--no-perceptual"]) == 0
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted((r["codec"], float(r["nominal_kbps"])) for r in rows) == sorted(
        (c, k) for c in ("mdct", "mdct-nf") for k in (6.0, 12.0) for _ in range(2))
    for row in rows:
        assert 0.9 * float(row["nominal_kbps"]) <= float(row["kbps_file"]) \
            <= float(row["nominal_kbps"])
        assert int(row["lag_samples"]) == 0
    mel = {(r["codec"], r["clip"], r["nominal_kbps"]): float(r["mel_distance"]) for r in rows}
    for (codec, clip, kbps), value in mel.items():    # noise filling closes spectral holes
        if codec == "mdct":
            assert mel[("mdct-nf", clip, kbps)] < value
    summary = (out / "summary.md").read_text()
    assert "| speech | mdct-nf | 6k | 2 |" in summary
    requested = summary.split("## Requested vs measured rate")[1]
    assert "| mdct-nf | 6 | 2 |" in requested and "| 2/2 |" in requested

    # --recompute reruns only the named codec; the others come from --reuse-classic.
    from bench.reference import ReferencePoint

    real_run, ran = ReferencePoint.run, []

    def run_only_nf(self: ReferencePoint, clip: object, workdir: Path) -> Coded:
        assert self.codec_name == "mdct-nf", "mdct was run despite --reuse-classic"
        ran.append(self.label)
        return real_run(self, clip, workdir)

    monkeypatch.setattr(ReferencePoint, "run", run_only_nf)
    again = tmp_path / "again"
    assert rd.main(["--input", str(input_dir), "--out", str(again), "--codecs", "mdct,mdct-nf",
                    "--rates", "6,12", "--min-seconds", "0", "--no-perceptual",
                    "--reuse-classic", str(out / "results.csv"), "--recompute", "mdct-nf"]) == 0
    assert len(ran) == 4 and "mdct-nf recomputed" in (again / "summary.md").read_text()


def test_publish_replaces_only_the_latest_results_section() -> None:
    readme = ("# bench\n\nintro\n\n## Latest results\n\nold table\n\n### Speed\n\nold\n\n"
              "## Training speed\n\nkept words\n\n## Linear probe\n\nkept too\n")
    rendered = "## Latest results\n\nnew table\n"
    out = publish.replace_section(readme, rendered)
    assert out.startswith("# bench\n\nintro\n\n## Latest results\n\nnew table\n")
    assert "old" not in out
    assert "## Training speed\n\nkept words\n\n## Linear probe\n\nkept too\n" in out
    assert publish.replace_section("# bench\n", rendered) == "# bench\n\n" + rendered
    assert publish.replace_section(out, rendered) == out            # idempotent


def test_denoise_val_scores_a_stationary_gain_setting_without_touching_the_weights() -> None:
    """`bench.denoise_val --wiener` re-saves the folder's denoiser with each setting in a
    temporary copy of the base model; 'off' takes the gain out (version 4)."""
    import argparse

    from bench.denoise_val import parse_wiener, with_wiener
    from codec.denoise import denoise_path, load_denoiser
    from codec.weights import sha256_file

    pretrained = Path(__file__).resolve().parents[1] / "codec" / "pretrained"
    sha = sha256_file(pretrained / "aec-base.decoder.safetensors")
    shipped = denoise_path(None).read_bytes()
    assert parse_wiener("off") == () and parse_wiener("2,0.05,75,9,3") == (2, 0.05, 75, 9, 3)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_wiener("2,0.05")
    for setting, version in (((), 4), ((1.5, 0.1, 20.0, 5.0, 1.0), 5)):
        with with_wiener(str(pretrained), setting) as folder:
            variant = load_denoiser(folder, sha)
            assert variant.config.wiener == setting and variant.config.version == version
            assert variant.config.pass_db == load_denoiser(None, sha).config.pass_db
            assert (Path(folder) / "aec-base.decoder.safetensors").is_file()
        assert not Path(folder).exists()
    assert denoise_path(None).read_bytes() == shipped


def test_denoise_paired_pesq_compares_clip_by_clip() -> None:
    """The paired table: mean and standard error of the per-clip PESQ difference, the
    clips ahead, and the best sox amount on PESQ, from rows as bench.denoise writes them."""
    from bench.denoise import KBPS, SNRS_DB, paired_pesq

    rows = []
    for snr in SNRS_DB:
        for kbps in KBPS:
            for clip, ours, sox in (("a", 2.0, 1.5), ("b", 1.0, 1.2), ("c", 3.0, 2.7)):
                for method, pesq in (("aec --denoise", ours), ("sox noisered 0.21 + aec", sox),
                                     ("sox noisered 0.1 + aec", sox + 0.1),
                                     ("sox noisered 0.3 + aec", sox - 0.1)):
                    rows.append({"clip": clip, "noise": "hum", "snr_db": f"{snr:g}",
                                 "kbps": str(kbps), "method": method, "pesq_wb": pesq})
    lines = paired_pesq(rows, "sox noisered 0.21 + aec")
    assert len(lines) == 2 + len(SNRS_DB) * len(KBPS)
    # differences +0.5, -0.2, +0.3: mean +0.2, sd 0.3606, se 0.208; sox 0.1's mean 1.90
    assert lines[2].endswith("| +0.200 | 0.208 | 2 of 3 | 1.90 (0.1) |")


@pytest.mark.parametrize("module", ["bench.denoise", "bench.denoise_val"])
@pytest.mark.parametrize("with_denoiser", [False, True])
def test_denoise_benches_refuse_wrong_weights_in_one_line(tmp_path: Path, module: str,
                                                          with_denoiser: bool) -> None:
    """A folder without a model, or a model without a denoiser: one line on stderr and the
    weights exit code (7), before any corpus is read (the corpus here does not exist)."""
    folder = tmp_path / "weights"
    folder.mkdir()
    if with_denoiser:        # the base model is there, its denoiser is not
        pretrained = Path(__file__).resolve().parents[1] / "codec" / "pretrained"
        for name in ("aec-base.json", "aec-base.encoder.safetensors",
                     "aec-base.decoder.safetensors"):
            (folder / name).symlink_to(pretrained / name)
    result = subprocess.run([sys.executable, "-m", module, "--corpus", str(tmp_path / "none"),
                             "--weights", str(folder)], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 7
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{module}: error: ")
    assert ("denoising encoder" in lines[0]) == with_denoiser


def test_bench_entry_turns_aec_errors_into_one_line(tmp_path: Path) -> None:
    """bench.entry.run: `python -m bench.probe` with a missing model exits 7 with one line;
    main() itself still raises (for tests and callers)."""
    from bench import probe
    from codec.errors import WeightsError

    result = subprocess.run([sys.executable, "-m", "bench.probe", "--corpus", str(tmp_path),
                             "--weights", str(tmp_path / "none")], capture_output=True,
                            text=True, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 7
    assert result.stderr.strip().splitlines() == [
        f"bench.probe: error: model config not found: {tmp_path / 'none'}.json"]
    with pytest.raises(WeightsError):
        probe.main(["--corpus", str(tmp_path), "--weights", str(tmp_path / "none")])


def test_memory_bench_passes_the_childs_error_and_code_through(tmp_path: Path) -> None:
    """bench.memory measures in a child process; a wrong --weights there is the child's one
    line and exit 7, not a wrapped traceback."""
    result = subprocess.run([sys.executable, "-m", "bench.memory", "--minutes", "0.05",
                             "--weights", str(tmp_path / "none")], capture_output=True,
                            text=True, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 7
    assert result.stderr.strip().splitlines() == [
        f"bench.memory: error: model config not found: {tmp_path / 'none'}.json"]
