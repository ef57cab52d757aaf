"""Issue 13: every promise holds under hostile use. One regression test per item
(CLI behaviour through real subprocesses), on tiny untrained weights unless the
item is about the shipped model."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import resource
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from codec import api, cli, format
from codec.errors import AudioError, FormatError, LimitError, UsageError
from conftest import ROOT, STEREO, make_tiny_model


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    """The tiny model (seed 0) on disk, for --weights."""
    from codec.weights import save_model

    model = make_tiny_model(0)
    stem = tmp_path_factory.mktemp("weights") / "tiny0"
    save_model(stem, model.config, model.encoder, model.decoder, model.quantizer, model.tables)
    return str(stem)


def aec(*args: str, stdin: bytes | None = None, cwd: Path | None = None, timeout: float = 120,
        **kwargs) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "codec", *args], input=stdin,
                          capture_output=True, cwd=cwd or ROOT, timeout=timeout, **kwargs)


def error_line(result: subprocess.CompletedProcess[bytes]) -> str:
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aec: error: "), result.stderr.decode()
    return lines[0]


@pytest.fixture(scope="module")
def disk(weights) -> api.Codec:
    """The --weights model loaded in-process: streams it makes decode with --weights."""
    return api.Codec.load(weights, device="cpu")


@pytest.fixture
def work(tmp_path, disk) -> Path:
    """in.wav (0.25 s stereo 44.1 kHz) and in.aec, as `aec encode --weights` makes it."""
    audio, rate = soundfile.read(str(STEREO), dtype="float32")
    audio = audio[: rate // 4]
    soundfile.write(str(tmp_path / "in.wav"), audio, rate, subtype="PCM_16")
    audio, rate = soundfile.read(str(tmp_path / "in.wav"), dtype="float32", always_2d=True)
    (tmp_path / "in.aec").write_bytes(disk.encode(audio.T, rate))
    return tmp_path


def forge(data: bytes, **fields) -> bytes:
    """The stream with header fields replaced and a valid header CRC."""
    reader = format.StreamReader(io.BytesIO(data))
    header = dataclasses.replace(reader.header, **fields)
    return header.pack() + data[reader.chunks_start:]


# ---------------------------------------------------------------- 1: -f onto the input


def test_output_that_is_the_input_is_refused_even_with_force(work, weights) -> None:
    original = (work / "in.wav").read_bytes()
    os.symlink(work / "in.wav", work / "link.wav")
    for output in ("in.wav", "link.wav", "./in.wav"):
        result = aec("encode", "in.wav", "-o", output, "-f", "--weights", weights, cwd=work)
        assert result.returncode == 2 and "is the input" in error_line(result)
    result = aec("decode", "in.aec", "-o", "in.aec", "-f", "--weights", weights, cwd=work)
    assert result.returncode == 2
    assert (work / "in.wav").read_bytes() == original
    with pytest.raises(UsageError):
        api.check_not_input(work / "in.wav", work / "link.wav")


# ---------------------------------------------------------------- 2: SIGTERM / SIGHUP


@pytest.mark.parametrize("signum", [signal.SIGTERM,
                                    pytest.param(signal.SIGHUP, marks=pytest.mark.slow)])
def test_terminating_signals_remove_the_temporary_output(tmp_path, disk, weights,
                                                        signum) -> None:
    long = np.random.default_rng(0).uniform(-0.1, 0.1, 24000 * 300).astype(np.float32)
    (tmp_path / "long.aec").write_bytes(disk.encode(long, 24000))
    proc = subprocess.Popen([sys.executable, "-m", "codec", "decode", "long.aec", "-o",
                             "term.wav", "--weights", weights, "--threads", "1"],
                            cwd=tmp_path, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not any(p.name.endswith(".part") for p in tmp_path.iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline, "no temp file seen"
        time.sleep(0.01)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum
    assert err.decode().strip().splitlines() == [
        f"aec: error: terminated by {signal.Signals(signum).name}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.aec"]


# ---------------------------------------------------------------- 3, 4: forged headers


@pytest.mark.parametrize("fields", [{"num_samples": "x2"}, {"num_samples": 1 << 40},
                                    {"encoder_delay": 1 << 24}])
def test_header_promising_more_samples_than_its_frames_is_exit_4(work, weights, fields) -> None:
    data = (work / "in.aec").read_bytes()
    header = format.StreamReader(io.BytesIO(data)).header
    if fields.get("num_samples") == "x2":
        fields = {"num_samples": 2 * header.num_samples}
    (work / "forged.aec").write_bytes(forge(data, **fields))
    result = aec("decode", "forged.aec", "-o", "x.wav", "--weights", weights, cwd=work)
    assert result.returncode == 4 and "frames hold only" in error_line(result)
    piped = aec("decode", "-", "--weights", weights, stdin=forge(data, **fields), cwd=work)
    assert piped.returncode == 4 and piped.stdout == b""       # no WAV header promised
    assert not (work / "x.wav").exists()
    checked = aec("info", "--check", "forged.aec", cwd=work)
    assert checked.returncode == 4


def test_cdf_precision_is_checked_against_the_tables(tiny) -> None:
    data = tiny.encode(np.zeros(4000, np.float32), 24000)
    with pytest.raises(FormatError, match="cdf_precision = 24") as info:
        tiny.decode(forge(data, cdf_precision=24))
    assert info.value.exit_code == 4


# ---------------------------------------------------------------- 5: roundtrip -o -


def test_roundtrip_to_stdout_keeps_the_report_off_the_audio(work, weights) -> None:
    for extra in ((), ("--json",)):
        result = aec("roundtrip", "in.wav", "-o", "-", "--weights", weights, *extra, cwd=work)
        assert result.returncode == 0, result.stderr.decode()
        audio, rate = soundfile.read(io.BytesIO(result.stdout), dtype="float32")
        assert rate == 44100 and audio.shape == (44100 // 4, 2)
        assert b"SNR" in result.stderr or b"snr_db" in result.stderr


# ---------------------------------------------------------------- 6: library input contract


@pytest.mark.parametrize("bad,message", [
    (np.full(1000, 2000, np.int32), "int16"),
    ([0, 2000, -2000] * 100, "no defined scale"),
    (np.full(1000, 26541.0), "normalise"),
    (np.array([0.0, 3e38] * 500, np.float32), "normalise"),
    (np.zeros((2000, 2), np.float32)[:48], "audio.T"),
])
def test_misread_library_inputs_are_clear_audio_errors(tiny, bad, message) -> None:
    with pytest.raises(AudioError, match=message):
        tiny.encode(bad, 24000)


def test_bfloat16_tensor_encodes(tiny) -> None:
    audio = torch.linspace(-0.5, 0.5, 2400, dtype=torch.bfloat16)
    assert tiny.decode(tiny.encode(audio, 24000))[0].shape == (1, 2400)


# ---------------------------------------------------------------- 7: truncated WAV


def test_truncated_wav_warns_or_fails_with_strict(tmp_path, weights) -> None:
    soundfile.write(str(tmp_path / "full.wav"), np.zeros(24000, np.int16), 24000)
    (tmp_path / "cut.wav").write_bytes((tmp_path / "full.wav").read_bytes()[:44 + 2 * 10000])
    result = aec("encode", "cut.wav", "--weights", weights, cwd=tmp_path)
    assert result.returncode == 0
    assert "aec: warning: cut.wav: truncated: the header declares 24000 samples, 10000 are " \
           "present" in result.stderr.decode()
    strict = aec("encode", "cut.wav", "-o", "s.aec", "--strict", "--weights", weights,
                 cwd=tmp_path)
    assert strict.returncode == 8 and "truncated" in error_line(strict)
    assert not (tmp_path / "s.aec").exists()


# ---------------------------------------------------------------- 10: train errors


def test_train_with_a_missing_data_folder_is_one_line_and_leaves_nothing(tmp_path) -> None:
    result = aec("train", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "run"))
    assert result.returncode == 3 and "no such folder" in error_line(result)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- 11: named pipes


def _feed_fifo(path: Path, data: bytes) -> threading.Thread:
    os.mkfifo(path)

    def feed() -> None:
        with open(path, "wb") as fifo:
            fifo.write(data)
    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    return thread


def test_named_pipe_inputs_are_read_once(work, weights) -> None:
    _feed_fifo(work / "f.wav", (work / "in.wav").read_bytes())
    result = aec("encode", "f.wav", "-o", "f.aec", "--weights", weights, cwd=work, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    assert (work / "f.aec").read_bytes() == (work / "in.aec").read_bytes()
    _feed_fifo(work / "g.aec", (work / "in.aec").read_bytes())
    info = aec("info", "g.aec", "--json", cwd=work, timeout=60)
    assert info.returncode == 0 and json.loads(info.stdout)["channels"] == 2
    _feed_fifo(work / "h.aec", (work / "in.aec").read_bytes())
    decoded = aec("decode", "h.aec", "-o", "h.wav", "--weights", weights, cwd=work, timeout=60)
    assert decoded.returncode == 0 and (work / "h.wav").is_file()


# ---------------------------------------------------------------- 12: full disk


def test_full_disk_is_one_line_naming_the_output(work, weights) -> None:
    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
    result = aec("decode", "in.aec", "-o", "big.wav", "--sample-format", "float",
                 "--weights", weights, cwd=work, preexec_fn=small_files)
    assert result.returncode == 10
    line = error_line(result)
    assert "big.wav: cannot write" in line and "File too large" in line
    assert sorted(p.name for p in work.iterdir()) == ["in.aec", "in.wav"]


# ---------------------------------------------------------------- 13: FLAC channel limit


def test_ten_channels_to_flac_is_exit_8(tmp_path, disk, weights) -> None:
    (tmp_path / "ten.aec").write_bytes(disk.encode(np.zeros((10, 2400), np.float32), 24000))
    result = aec("decode", "ten.aec", "-o", "ten.flac", "--weights", weights, cwd=tmp_path)
    assert result.returncode == 8 and "FLAC holds at most 8 channels" in error_line(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ten.aec"]


# ---------------------------------------------------------------- 14: damaged major byte


def test_flipped_major_byte_is_damage_not_a_newer_version(work) -> None:
    data = bytearray((work / "in.aec").read_bytes())
    for major in (0, 2):
        data[8] = major
        result = aec("info", "-", stdin=bytes(data))
        assert result.returncode == 4 and "damaged or not an .aec stream" in error_line(result)


# ---------------------------------------------------------------- 15: --device


@pytest.mark.parametrize("device", ["foo", "CPU", "cuda:x"])
def test_bad_device_is_a_usage_error_with_the_choices(work, device) -> None:
    result = aec("encode", "in.wav", "-o", "x.aec", "--device", device, cwd=work)
    assert result.returncode == 2
    assert "auto, cpu, cuda or cuda:N" in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()


# ---------------------------------------------------------------- 16: garbage payloads


def test_garbage_payload_with_valid_crc_names_chunk_and_offset(tiny) -> None:
    data = tiny.encode(np.random.default_rng(1).uniform(-0.5, 0.5, 24000).astype(np.float32),
                       24000)
    reader = format.StreamReader(io.BytesIO(data))
    header, chunks = reader.header, list(reader.chunks())
    payloads = [c.payload or b"" for c in chunks]
    payloads[2] = bytes(len(payloads[2]))                   # zeros: not an rANS stream
    forged = format.write_stream(header, payloads)
    offset = list(format.StreamReader(io.BytesIO(forged)).chunks())[2].offset
    with pytest.raises(FormatError, match=f"chunk 2: invalid payload.*at byte {offset}"):
        tiny.decode(forged)
    audio, _ = tiny.decode(forged, ignore_errors=True)      # concealed like a damaged chunk
    assert audio.shape == (1, 24000)


# ---------------------------------------------------------------- 17, 18: any sample rate


@pytest.mark.parametrize("rate", [44056, 12345, 767999])
def test_any_sample_rate_codes_with_exact_length(tiny, rate) -> None:
    audio = np.sin(np.arange(rate // 5) * 2 * np.pi * 440 / rate).astype(np.float32) * 0.5
    decoded, decoded_rate = tiny.decode(tiny.encode(audio, rate))
    assert decoded_rate == rate and decoded.shape == (1, audio.shape[0])


# ---------------------------------------------------------------- 19: streaming roundtrip


def test_roundtrip_streams_from_stdin_with_whole_signal_metrics(work, disk, weights) -> None:
    from codec.metrics import mel_distance, si_sdr_db, snr_db
    from codec.roundtrip import roundtrip

    result = aec("roundtrip", "-", "--json", "-o", "dec.wav", "--weights", weights,
                 stdin=(work / "in.wav").read_bytes(), cwd=work)
    assert result.returncode == 0, result.stderr.decode()
    original, rate = soundfile.read(str(work / "in.wav"), dtype="float32", always_2d=True)
    assert soundfile.info(str(work / "dec.wav")).frames == original.shape[0]
    report = roundtrip(disk, work / "in.wav", 6.0)
    decoded, _ = disk.decode(disk.encode(original.T, rate))
    assert report.snr_db == pytest.approx(snr_db(original.T, decoded), abs=1e-6)
    assert report.si_sdr_db == pytest.approx(si_sdr_db(original.T, decoded), abs=1e-6)
    assert report.mel_distance == pytest.approx(mel_distance(original.T, decoded, rate), abs=1e-9)
    assert json.loads(result.stdout)["snr_db"] == pytest.approx(report.snr_db, abs=1e-3)


def test_roundtrip_shows_progress_bars_on_a_terminal(work, weights, monkeypatch,
                                                     capsys) -> None:
    monkeypatch.setattr(cli, "PROGRESS_DELAY_SECONDS", 0.0)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert cli.main(["roundtrip", str(work / "in.wav"), "--weights", weights]) == 0
    err = capsys.readouterr().err
    assert "encode" in err and "decode" in err and "smp" in err


# ---------------------------------------------------------------- 20: info --check


def test_info_check_finds_damage_that_plain_info_does_not(work) -> None:
    data = (work / "in.aec").read_bytes()
    assert aec("info", "--check", "in.aec", cwd=work).returncode == 0
    trailer_crc = bytearray(data)
    trailer_crc[-9] ^= 0xFF                                  # last byte of the index CRC
    for damaged, code in ((data[:-1], 4), (data + b"\0", 4), (bytes(trailer_crc), 4)):
        assert aec("info", "-", stdin=damaged).returncode == 0          # lenient view
        checked = aec("info", "--check", "-", stdin=damaged)
        assert checked.returncode == code, checked.stderr.decode()
        error_line(checked)


# ---------------------------------------------------------------- 22: decompression bomb


def test_decompression_bomb_is_refused_before_any_output(tiny, tmp_path) -> None:
    header = format.StreamHeader(
        sample_rate=24000, channels=64, num_samples=24000 * 600, model_rate=24000,
        hop_length=tiny.model.geometry.hop_length, latent_channels=4,
        num_frames=600 * 24000 // tiny.model.geometry.hop_length + 1, frames_per_chunk=1000,
        encoder_delay=0, rate_point=0, model_name="tiny0", model_sha256=tiny.model.decoder_sha256,
        coder_id=1, cdf_precision=16)
    bomb = format.write_stream(header, [b""] * header.num_chunks)      # all chunks "damaged"
    for ignore in (False, True):
        with pytest.raises(LimitError, match="decompression bomb"):
            tiny.decode_file(bomb, tmp_path / "bomb.wav", ignore_errors=ignore)
    assert list(tmp_path.iterdir()) == []
    assert api.MAX_DECODE_RATIO == 4096.0


def test_decoder_runs_one_channel_at_a_time(tiny) -> None:
    data = tiny.encode(np.zeros((5, 2400), np.float32), 24000)
    widths = []
    decoder = tiny.model.decoder
    hook = decoder.register_forward_hook(lambda m, args, out: widths.append(args[0].shape[0]))
    try:
        assert tiny.decode(data)[0].shape == (5, 2400)
    finally:
        hook.remove()
    assert widths and set(widths) == {1}


# ---------------------------------------------------------------- observations


def test_force_writes_through_a_symlink_and_keeps_the_mode(work, weights) -> None:
    """Like cp: -f replaces the link's target, keeps the link and the target's mode."""
    target = work / "target.aec"
    target.write_bytes(b"old")
    target.chmod(0o600)
    os.symlink("target.aec", work / "link.aec")
    result = aec("encode", "in.wav", "-o", "link.aec", "-f", "--weights", weights, cwd=work)
    assert result.returncode == 0, result.stderr.decode()
    assert (work / "link.aec").is_symlink()
    assert target.read_bytes() == (work / "in.aec").read_bytes()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_decoded_pcm_is_thread_invariant_within_the_documented_tolerance(codec, speech) -> None:
    """Symbols are identical; float synthesis may differ in the last bits between thread
    counts (README: within 2e-4 of full scale, i.e. a few 16-bit LSB)."""
    audio = speech[0][:, : 24000 * 3]
    data = codec.encode(audio, 24000)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one, _ = codec.decode(data)
        torch.set_num_threads(2)
        two, _ = codec.decode(data)
    finally:
        torch.set_num_threads(before)
    assert np.max(np.abs(one - two)) <= 2e-4
