"""README.md's command-line promises, tested as a user meets them: installed entry
points in subprocesses, stdout pipelines, exit codes, one-line errors, the
progress bar on a terminal, reports that tell the truth, and scripts/demo.sh.

Runs on tiny untrained weights saved to a temp folder (`--weights`), except
the demo, which uses the shipped weights as the README says.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import shutil
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from conftest import ROOT, SPEECH, make_tiny_model, read_clip

BIN = Path(sys.executable).parent
VECTORS = ROOT / "spec" / "vectors"


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    from codec.weights import save_model

    stem = tmp_path_factory.mktemp("weights") / "tiny0"
    model = make_tiny_model(0)
    save_model(stem, model.config, model.encoder, model.decoder, model.quantizer, model.tables)
    return str(stem)


@pytest.fixture
def clip(tmp_path) -> Path:
    """0.5 s of real speech as a 16-bit WAV."""
    audio, rate = read_clip(SPEECH)
    path = tmp_path / "in.wav"
    soundfile.write(str(path), audio[0, : rate // 2], rate, subtype="PCM_16")
    return path


def run(command: list[str], stdin: bytes | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, input=stdin, capture_output=True, cwd=ROOT, timeout=300,
                          **kwargs)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """README: errors print one line, `aec: error: ...`, on stderr, with no traceback."""
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aec: error: "), result.stderr.decode()
    return lines[0]


def test_installed_entry_points_pipe_through_stdout(weights, clip, tmp_path) -> None:
    """README: `aec-encode in.wav -o - | aec-decode - -o out.wav`, as installed."""
    w = ["--weights", weights, "--device", "cpu"]
    encoded = run([str(BIN / "aec-encode"), str(clip), "-o", "-", *w])
    assert encoded.returncode == 0, encoded.stderr.decode()
    assert encoded.stdout.startswith(b"\x89AEC\r\n\x1a\n")
    decoded = run([str(BIN / "aec-decode"), "-", "-o", str(tmp_path / "out.wav"), *w],
                  stdin=encoded.stdout)
    assert decoded.returncode == 0, decoded.stderr.decode()
    assert soundfile.info(str(tmp_path / "out.wav")).frames == soundfile.info(str(clip)).frames
    to_stdout = run([str(BIN / "aec"), "decode", "-", "-o", "-", *w], stdin=encoded.stdout)
    assert to_stdout.returncode == 0 and to_stdout.stdout[:4] == b"RIFF"
    info = run([str(BIN / "aec"), "info", "-", "--json"], stdin=encoded.stdout)
    assert info.returncode == 0 and json.loads(info.stdout)["size_bytes"] == len(encoded.stdout)
    assert run([str(BIN / "aec"), "--help"]).returncode == 0


@pytest.mark.parametrize("subcommand", ["info", "decode"])
def test_newer_major_is_exit_6_with_one_line(subcommand, weights, tmp_path) -> None:
    """README exit code 6: a stream from a newer, unsupported format major version."""
    args = [str(VECTORS / "newer_major.aec")]
    if subcommand == "decode":
        args += ["-o", str(tmp_path / "x.wav"), "--weights", weights]
    result = run([str(BIN / "aec"), subcommand, *args])
    assert result.returncode == 6
    assert "newer" in one_error_line(result)
    assert not (tmp_path / "x.wav").exists()


CRASH = """
import sys
from codec import cli
def boom(args):
    raise RuntimeError("simulated bug")
cli.run_info = boom
sys.exit(cli.main(["info", sys.argv[1]]))
"""


def test_unexpected_exception_is_exit_1_with_one_line() -> None:
    """README exit code 1 (internal error): still one line, no traceback."""
    result = run([sys.executable, "-c", CRASH, str(VECTORS / "one_chunk.aec")])
    assert result.returncode == 1
    assert "Traceback" not in result.stderr.decode()
    one_error_line(result)


def test_ignore_errors_report_names_the_damaged_chunks(weights, tmp_path) -> None:
    """README: `--ignore-errors` conceals damaged chunks and names them (text and JSON)."""
    from codec.api import Codec
    from codec.format import StreamReader

    audio, rate = read_clip(SPEECH)
    small = Codec.load(weights, device="cpu", frames_per_chunk=10)
    path = tmp_path / "d.aec"
    data = bytearray(small.encode(audio[:, : rate // 2], rate))
    reader = StreamReader(__import__("io").BytesIO(bytes(data)))
    at = reader.seek_index.offsets(reader.chunks_start)[2]
    data[at + 3] ^= 0x5A                                     # chunk 2's payload
    path.write_bytes(bytes(data))
    w = ["--weights", weights, "--device", "cpu"]
    result = run([str(BIN / "aec"), "decode", str(path), "-o", str(tmp_path / "a.wav"),
                  "--ignore-errors", "--json", *w])
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout)["damaged_chunks"] == [2]
    result = run([str(BIN / "aec"), "decode", str(path), "-o", str(tmp_path / "b.wav"),
                  "--ignore-errors", *w])
    assert result.returncode == 0 and "[2]" in (result.stdout + result.stderr).decode()
    strict = run([str(BIN / "aec"), "decode", str(path), "-o", str(tmp_path / "c.wav"), *w])
    assert strict.returncode == 5 and "chunk 2" in one_error_line(strict)


def test_encode_report_values_match_the_file(weights, clip, tmp_path) -> None:
    """The encode report's sizes and rates are the file's: bytes, payload bytes, kbps."""
    from codec.format import read_stream

    out = tmp_path / "x.aec"
    result = run([str(BIN / "aec"), "encode", str(clip), "-o", str(out), "--json",
                  "--weights", weights, "--device", "cpu"])
    assert result.returncode == 0, result.stderr.decode()
    report = json.loads(result.stdout)
    data = out.read_bytes()
    _, chunks = read_stream(data)
    seconds = soundfile.info(str(clip)).frames / soundfile.info(str(clip)).samplerate
    assert report["size_bytes"] == len(data)
    assert report["payload_bytes"] == sum(len(c.payload) for c in chunks)
    assert report["kbps"] == pytest.approx(len(data) * 8 / seconds / 1000, rel=1e-3)
    assert report["payload_kbps"] == pytest.approx(report["payload_bytes"] * 8 / seconds / 1000,
                                                   rel=1e-3)


def read_pty(fd: int, proc: subprocess.Popen, timeout_s: float) -> bytes:
    """Everything written to a pty until the process ends."""
    out, deadline = b"", time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    return out


def test_progress_bar_only_on_a_terminal(tmp_path) -> None:
    """README: a progress bar on stderr for long jobs when stderr is a terminal (a pty
    here); none when it is not. A minute of audio keeps the shipped model busy for
    longer than the bar's delay (`codec.cli.PROGRESS_DELAY_SECONDS`, about a second)."""
    audio, rate = read_clip(SPEECH)
    src = tmp_path / "long.wav"
    soundfile.write(str(src), np.tile(audio[0], 24), rate, subtype="PCM_16")     # 60 s
    command = [str(BIN / "aec"), "encode", str(src), "--device", "cpu", "--threads", "1"]
    main, child = pty.openpty()
    # a fresh pty is 0 columns wide, and tqdm draws nothing in 0 columns
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(command + ["-o", str(tmp_path / "a.aec")], stderr=child,
                            stdout=subprocess.DEVNULL, cwd=ROOT)
    os.close(child)
    shown = read_pty(main, proc, 240).decode(errors="replace")
    os.close(main)
    assert proc.wait(timeout=60) == 0, shown
    assert "encode" in shown and "%|" in shown, shown
    piped = run(command + ["-o", str(tmp_path / "b.aec")])
    assert piped.returncode == 0 and "%|" not in piped.stderr.decode()


def test_demo_script_smoke(tmp_path) -> None:
    """scripts/demo.sh as written, with its setup step stubbed (the venv exists): it
    round-trips the bundled sample with the shipped weights and prints the report."""
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    (root / "codec" / "data").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "demo.sh", root / "scripts" / "demo.sh")
    (root / "scripts" / "setup.sh").write_text("exit 0\n")
    (root / ".venv").symlink_to(ROOT / ".venv")
    (root / "codec" / "data" / "sample.flac").symlink_to(ROOT / "codec" / "data" /
                                                          "sample.flac")
    result = run(["bash", str(root / "scripts" / "demo.sh"), "--json", "--device", "cpu",
                  "--threads", "1"])
    assert result.returncode == 0, result.stderr.decode()
    report = json.loads(result.stdout)
    assert report["num_samples"] == 240000 and report["snr_db"] > 0
