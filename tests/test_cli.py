"""The `aec` command: every subcommand through a real subprocess, error paths with
exit codes and one-line messages, no partial or overwritten output.

Runs on tiny untrained weights saved to a temp folder (`--weights`), so it tests
the command, not the model; the shipped-weights report is one test at the end.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from codec import cli
from conftest import ROOT, SAMPLE, STEREO, make_tiny_model, shipped_weights_present


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, str]:
    """Two tiny models on disk: 'a' (used to encode) and 'b' (other weights)."""
    from codec.weights import save_model

    folder = tmp_path_factory.mktemp("weights")
    stems = {}
    for key, seed in (("a", 0), ("b", 1)):
        model = make_tiny_model(seed)
        stem = folder / f"tiny{seed}"
        save_model(stem, model.config, model.encoder, model.decoder, model.quantizer,
                   model.tables)
        stems[key] = str(stem)
    return stems


def aec(*args: str, stdin: bytes | None = None, cwd: Path | None = None
        ) -> subprocess.CompletedProcess[bytes]:
    """Run `python -m codec ARGS` as a user would."""
    return subprocess.run([sys.executable, "-m", "codec", *args], input=stdin,
                          capture_output=True, cwd=cwd or ROOT, timeout=120)


def one_error_line(result: subprocess.CompletedProcess[bytes]) -> str:
    """The failure's stderr: exactly one line `aec: error: ...`, never a traceback."""
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aec: error: "), result.stderr.decode()
    return lines[0]


@pytest.fixture
def work(tmp_path) -> Path:
    """A folder with a short stereo 44.1 kHz input, `in.flac`."""
    audio, rate = soundfile.read(str(STEREO), dtype="int16")
    soundfile.write(str(tmp_path / "in.flac"), audio[: rate // 4], rate, subtype="PCM_16")
    return tmp_path


# ---------------------------------------------------------------- subprocess: each subcommand


def test_encode_decode_info_roundtrip_as_a_user_runs_them(work, weights) -> None:
    w = ("--weights", weights["a"])
    result = aec("encode", "in.flac", *w, cwd=work)
    assert result.returncode == 0, result.stderr
    assert b"in.flac -> in.aec" in result.stderr and result.stdout == b""
    assert (work / "in.aec").is_file()

    result = aec("decode", "in.aec", "-o", "out.flac", *w, cwd=work)
    assert result.returncode == 0, result.stderr
    info = soundfile.info(str(work / "out.flac"))
    assert (info.frames, info.channels, info.samplerate) == (11025, 2, 44100)

    result = aec("info", "in.aec", "--json", cwd=work)
    assert result.returncode == 0, result.stderr
    fields = json.loads(result.stdout)
    assert fields["num_samples"] == 11025 and fields["channels"] == 2
    assert fields["size_bytes"] == (work / "in.aec").stat().st_size
    assert fields["kbps"] == pytest.approx(fields["size_bytes"] * 8 / 0.25 / 1000, abs=1e-3)
    decoder_file = Path(weights["a"] + ".decoder.safetensors").read_bytes()
    assert fields["model_sha256"] == hashlib.sha256(decoder_file).hexdigest()

    result = aec("roundtrip", "in.flac", "--json", "-o", "rt.wav", *w, cwd=work)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for key in ("snr_db", "si_sdr_db", "mel_distance", "kbps", "payload_kbps",
                "encode_realtime", "decode_realtime", "rate_point", "nominal_kbps", "device"):
        assert key in report
    assert soundfile.info(str(work / "rt.wav")).frames == 11025


def test_stdin_to_stdout_pipeline(work, weights) -> None:
    w = ("--weights", weights["a"])
    encoded = aec("encode", "-", "-q", *w, stdin=(work / "in.flac").read_bytes())
    assert encoded.returncode == 0 and encoded.stderr == b"", encoded.stderr.decode()
    decoded = aec("decode", "-", "-q", *w, stdin=encoded.stdout)
    assert decoded.returncode == 0, decoded.stderr
    audio, rate = soundfile.read(io.BytesIO(decoded.stdout))
    assert audio.shape == (11025, 2) and rate == 44100
    # streamed to a pipe or written to a file: the same samples
    (work / "piped.aec").write_bytes(encoded.stdout)
    assert cli.main(["decode", str(work / "piped.aec"), "-q", *w]) == 0
    from_file = soundfile.read(str(work / "piped.wav"))[0]
    np.testing.assert_allclose(from_file, audio, rtol=0, atol=1.01 * 2.0**-15)   # <= 1 LSB
    # the same bytes as encoding the file by name: stdin changes nothing
    assert cli.main(["encode", str(work / "in.flac"), "-q", *w]) == 0
    assert (work / "in.aec").read_bytes() == encoded.stdout


def test_error_paths_exit_codes_and_no_partial_output(work, weights, capsys) -> None:
    w = ("--weights", weights["a"])
    assert cli.main(["encode", str(work / "in.flac"), "-q", *w]) == 0
    data = (work / "in.aec").read_bytes()
    (work / "cut.aec").write_bytes(data[: len(data) // 2])
    os.chdir(work)
    cases = [
        (("encode", "missing.wav", *w), 3),
        (("decode", "cut.aec", "-o", "cut.wav", *w), 4),
        (("decode", "in.aec", "-o", "other.wav", "--weights", weights["b"]), 7),
        (("encode", "in.flac", "-o", "x.aec", "--weights", str(work / "none")), 7),
        (("encode", "in.aec", "-o", "x.aec", *w), 8),
        (("encode", "in.flac", *w), 9),
        (("encode", "in.flac", "-o", "no/such/dir/x.aec", *w), 10),
    ]                                   # --device nonsense: exit 2, test_hardening.py
    before = sorted(os.listdir(work))
    for args, code in cases:
        got, out, err = run(list(args), capsys)
        assert got == code, (args, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("aec: error: "), err
    # the same as real processes: exit code, one line, no traceback
    for args, code in (cases[1], cases[2]):
        result = aec(*args, cwd=work)
        assert result.returncode == code
        line = one_error_line(result)
        if code == 7:                   # names both hashes
            assert line.count("sha256") == 2
    assert sorted(os.listdir(work)) == before            # nothing written, nothing left over
    assert (work / "in.aec").read_bytes() == data        # nothing overwritten


def test_usage_error_is_exit_2() -> None:
    result = aec("encode")
    assert result.returncode == 2 and b"usage:" in result.stderr


# ---------------------------------------------------------------- in process: the rest


def run(args: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


def _corrupt_middle_chunk(path: Path) -> None:
    from codec import format

    data = path.read_bytes()
    reader = format.StreamReader(io.BytesIO(data))
    chunks = list(reader.chunks())
    assert len(chunks) >= 3
    offset = reader.chunks_start + len(format.pack_chunk(0, chunks[0].payload or b""))
    damaged = bytearray(data)
    damaged[offset + 3] ^= 0x5A
    path.write_bytes(bytes(damaged))


def test_damaged_chunk_with_and_without_ignore_errors(work, weights, capsys) -> None:
    w = ["--weights", weights["a"]]
    src = str(work / "in.flac")
    from codec.api import Codec

    small = Codec.load(weights["a"], device="cpu", frames_per_chunk=10)
    small.encode_file(src, work / "small.aec")
    _corrupt_middle_chunk(work / "small.aec")
    code, _, err = run(["decode", str(work / "small.aec"), "-o", str(work / "d.wav"), *w], capsys)
    assert code == 5 and "chunk 1" in err and not (work / "d.wav").exists()
    code, _, err = run(["decode", str(work / "small.aec"), "-o", str(work / "d.wav"),
                        "--ignore-errors", "--json", *w], capsys)
    assert code == 0, err
    assert soundfile.info(str(work / "d.wav")).frames == 11025
    code, out, _ = run(["info", str(work / "small.aec"), "--json"], capsys)
    assert code == 0 and json.loads(out)["damaged_chunks"] == [1]


def test_force_overwrites_and_default_names(work, weights, capsys) -> None:
    w = ["--weights", weights["a"]]
    src = str(work / "in.flac")
    assert run(["encode", src, "--kbps", "3", *w], capsys)[0] == 0
    assert run(["encode", src, "--kbps", "6", *w], capsys)[0] == 9
    code, out, _ = run(["info", str(work / "in.aec"), "--json"], capsys)
    assert json.loads(out)["rate_point"] == 0
    assert run(["encode", src, "--kbps", "6", "-f", "-q", *w], capsys) == (0, "", "")
    code, out, _ = run(["info", str(work / "in.aec"), "--json"], capsys)
    assert json.loads(out)["rate_point"] == 1
    assert run(["decode", str(work / "in.aec"), "-q", *w], capsys)[0] == 0
    assert (work / "in.wav").is_file()                   # x.aec -> x.wav next to it
    code, _, err = run(["decode", str(work / "in.aec"), "-o", str(work / "f.flac"),
                        "--sample-format", "float", *w], capsys)
    assert code == 8 and err.startswith("aec: error:")


def test_entry_points_and_text_reports(work, weights, capsys) -> None:
    w = ["--weights", weights["a"]]
    assert cli.main_encode([str(work / "in.flac"), *w]) == 0
    assert cli.main_decode([str(work / "in.aec"), "-o", str(work / "e.wav"), *w]) == 0
    capsys.readouterr()
    code, out, _ = run(["info", str(work / "in.aec")], capsys)
    assert code == 0 and "num_samples" in out and "kbps" in out
    code, out, _ = run(["roundtrip", str(work / "in.flac"), "--threads", "1", *w], capsys)
    assert code == 0 and "SNR" in out and "SI-SDR" in out and "mel distance" in out
    assert "x real time" in out


@pytest.mark.parametrize("flag, expected", [([], 1), (["--threads", "2"], 2)])
def test_threads_default_to_one(work, weights, capsys, flag, expected) -> None:
    """README: `--threads N` sets torch's CPU threads; the default is 1."""
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        code, _, _ = run(["encode", str(work / "in.flac"), "-o", str(work / "t.aec"), "-f",
                          "--weights", weights["a"], *flag], capsys)
        assert code == 0 and torch.get_num_threads() == expected
    finally:
        torch.set_num_threads(before)


def test_cuda_request_without_cuda_is_exit_11(work, weights, capsys) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, _, err = run(["encode", str(work / "in.flac"), "--device", "cuda",
                        "--weights", weights["a"]], capsys)
    assert code == 11 and "CUDA is not available" in err
    assert not (work / "in.aec").exists()


def test_info_on_stdin_garbage_and_missing_files(work, weights, tmp_path, capsys,
                                                 monkeypatch) -> None:
    assert cli.main(["encode", str(work / "in.flac"), "-q", "--weights", weights["a"]]) == 0
    data = (work / "in.aec").read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    code, out, _ = run(["info", "-", "--json"], capsys)
    assert code == 0 and json.loads(out)["size_bytes"] == len(data)
    (tmp_path / "x.aec").write_bytes(b"RIFF" + bytes(100))
    assert run(["info", str(tmp_path / "x.aec")], capsys)[0] == 4
    assert run(["info", str(tmp_path / "missing.aec")], capsys)[0] == 3
    assert run(["info", str(tmp_path)], capsys)[0] == 3


def test_train_is_delegated(capsys) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["train", "--help"])
    assert caught.value.code == 0
    assert "--data" in capsys.readouterr().out


@pytest.mark.skipif(not shipped_weights_present(), reason="no shipped weights yet")
def test_roundtrip_of_the_bundled_sample_with_shipped_weights() -> None:
    result = aec("roundtrip", str(SAMPLE), "--json", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["num_samples"] == 240000 and report["sample_rate"] == 24000
    assert report["snr_db"] > 0.0 and report["mel_distance"] < 2.0
