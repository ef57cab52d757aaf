"""codec.audio: reading, writing, PCM scaling, errors, exact block-wise resampling."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import soxr

from codec import audio
from codec.errors import AudioError, InputError, OutputError
from codec.metrics import snr_db

DATA = Path(__file__).resolve().parent / "data"
SPEECH = DATA / "speech_24k_mono.flac"
STEREO = DATA / "music_44k_stereo.flac"


def test_read_flac_matches_soundfile(speech) -> None:
    data, rate = audio.read_audio(SPEECH)
    assert rate == 24000 and data.dtype == np.float32
    np.testing.assert_array_equal(data, speech[0])


def test_blocks_concatenate_to_the_whole_file(stereo) -> None:
    with audio.AudioReader(STEREO) as reader:
        assert reader.info.channels == 2 and reader.info.sample_rate == 44100
        blocks = list(reader.blocks(1000))
    assert all(b.shape[1] <= 1000 for b in blocks)
    np.testing.assert_array_equal(np.concatenate(blocks, axis=1), stereo[0])


@pytest.mark.parametrize("fmt,subtype", [("WAV", "PCM_16"), ("WAV", "PCM_24"), ("WAV", "FLOAT"),
                                         ("FLAC", "PCM_16"), ("OGG", "VORBIS")])
def test_reads_common_formats(tmp_path, speech, fmt, subtype) -> None:
    path = tmp_path / f"x.{fmt.lower()}"
    soundfile.write(str(path), speech[0].T, 24000, format=fmt, subtype=subtype)
    data, rate = audio.read_audio(path)
    assert rate == 24000 and data.shape == speech[0].shape
    if subtype == "VORBIS":                 # lossy: close, not equal
        assert snr_db(speech[0], data) > 10.0
    else:
        assert np.max(np.abs(data - speech[0])) < 1e-4


def test_reads_stdin(monkeypatch, speech) -> None:
    buffer = io.BytesIO()
    soundfile.write(buffer, speech[0].T, 24000, format="WAV", subtype="PCM_16")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(buffer.getvalue())))
    data, rate = audio.read_audio("-")
    np.testing.assert_array_equal(data, speech[0])


def test_missing_and_unsupported_inputs(tmp_path) -> None:
    with pytest.raises(InputError, match="no such file"):
        audio.read_audio(tmp_path / "missing.wav")
    with pytest.raises(InputError, match="directory"):
        audio.read_audio(tmp_path)
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n" * 10)
    with pytest.raises(AudioError, match="not a supported audio file"):
        audio.read_audio(text)


def test_pcm_scaling_of_integer_arrays() -> None:
    np.testing.assert_array_equal(audio.to_float32(np.array([-32768, 0, 16384], np.int16)),
                                  [[-1.0, 0.0, 0.5]])
    np.testing.assert_array_equal(audio.to_float32(np.array([0, 128, 192], np.uint8)),
                                  [[-1.0, 0.0, 0.5]])
    np.testing.assert_array_equal(audio.to_float32(np.array([-2**31], np.int32)), [[-1.0]])
    tensor = torch.tensor([[0.25, -0.5]], dtype=torch.float64)
    assert audio.to_float32(tensor).dtype == np.float32


@pytest.mark.parametrize("bad,message", [
    (np.zeros((2, 2, 2)), "shape"),
    (np.array([0.0, np.nan]), "NaN"),
    (np.zeros((1000, 2)), "audio.T"),
    (np.zeros((0, 5)), "no channels"),
    (np.array(["a"]), "sample type"),
])
def test_bad_arrays_raise_audio_error(bad, message) -> None:
    with pytest.raises(AudioError, match=message):
        audio.to_float32(bad)


def test_sample_rate_checks() -> None:
    assert audio.check_sample_rate(np.int64(44100)) == 44100
    assert audio.check_sample_rate(16000.0) == 16000      # e.g. from a float-typed library
    for bad in (0, -1, 10**7, 44100.5, True):
        with pytest.raises(AudioError):
            audio.check_sample_rate(bad)  # type: ignore[arg-type]


def test_writer_clips_pcm_and_keeps_float(tmp_path) -> None:
    loud = np.array([[2.0, -2.0, 0.5]], np.float32)
    for name, sample_format, expected in (("a.wav", "pcm16", [1.0, -1.0, 0.5]),
                                          ("b.wav", "float", [2.0, -2.0, 0.5]),
                                          ("c.flac", "pcm16", [1.0, -1.0, 0.5])):
        kind, subtype = audio.output_format(tmp_path / name, sample_format)
        with open(tmp_path / name, "wb") as f:
            audio.write_audio(f, loud, 8000, kind, subtype)
        data, rate = soundfile.read(str(tmp_path / name), dtype="float32")
        assert rate == 8000
        np.testing.assert_allclose(data, expected, atol=1e-4)


def test_output_format_rules() -> None:
    assert audio.output_format("-") == ("WAV", "PCM_16")
    assert audio.output_format("x.FLAC") == ("FLAC", "PCM_16")
    with pytest.raises(AudioError, match="cannot write .mp3"):
        audio.output_format("x.mp3")
    with pytest.raises(AudioError, match="FLAC cannot store float"):
        audio.output_format("x.flac", "float")


def test_writer_error_is_output_error() -> None:
    with pytest.raises(OutputError):
        audio.AudioWriter(io.BytesIO(), 0, 1, "WAV", "PCM_16")


@pytest.mark.parametrize("from_rate,to_rate", [(44100, 24000), (24000, 44100), (8000, 24000),
                                               (24000, 16000), (22050, 24000), (48000, 24000)])
def test_stream_resampler_equals_whole_signal(from_rate, to_rate, speech) -> None:
    signal = np.concatenate([speech[0], speech[0][:, ::-1]])[:, :20011]    # 2 channels
    whole = soxr.resample(signal.T, from_rate, to_rate, quality="HQ").T
    pad = audio.resampled_length(signal.shape[1], from_rate, to_rate) - whole.shape[1]
    whole = np.pad(whole, ((0, 0), (0, pad)))           # ceil(n * to / from) samples
    resampler = audio.StreamResampler(from_rate, to_rate, 2)
    rng = np.random.default_rng(from_rate + to_rate)
    pieces, pos = [], 0
    while pos < signal.shape[1]:
        step = int(rng.integers(1, 5000))
        pieces.append(resampler.push(signal[:, pos: pos + step]))
        pos += step
    pieces.append(resampler.flush())
    blockwise = np.concatenate(pieces, axis=1)
    assert blockwise.shape == whole.shape
    np.testing.assert_array_equal(blockwise, whole)


@pytest.mark.parametrize("length", [0, 1, 2, 7])
def test_resample_lengths_of_tiny_signals(length) -> None:
    out = audio.resample(np.ones((1, length), np.float32), 44100, 24000)
    assert out.shape == (1, audio.resampled_length(length, 44100, 24000))
    assert audio.resampled_length(1, 44100, 24000) == 1
    assert audio.resampled_length(3, 8000, 24000) == 9


@pytest.mark.parametrize("from_rate,to_rate", [(44101, 24000), (44056, 24000), (12345, 24000),
                                               (767999, 24000), (24000, 767999)])
def test_any_rate_pair_resamples_in_bounded_blocks(from_rate, to_rate) -> None:
    """Issue 13 item 18: co-prime and odd rates work (libsoxr), with exact lengths."""
    t = np.arange(from_rate // 10) / from_rate
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)[None, :]
    out = audio.resample(tone, from_rate, to_rate)
    assert out.shape == (1, audio.resampled_length(tone.shape[1], from_rate, to_rate))
    expected = np.sin(2 * np.pi * 440 * np.arange(out.shape[1]) / to_rate)
    middle = slice(out.shape[1] // 4, 3 * out.shape[1] // 4)     # away from the edges
    np.testing.assert_allclose(out[0, middle], expected[middle], atol=2e-3)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
def test_wav_pipe_writer_matches_libsndfile(stereo, subtype) -> None:
    """The header-first WAV streamer (for stdout) holds the same samples as libsndfile's
    file writer, up to 1 LSB where libsndfile's float rounding differs (< 1 % of samples)."""
    signal = stereo[0] * 1.2                                # some samples clip
    reference = io.BytesIO()
    kept = signal if subtype == "FLOAT" else np.clip(signal, -1, 1)
    soundfile.write(reference, kept.T, 44100, format="WAV", subtype=subtype)
    streamed = io.BytesIO()
    writer = audio.WavPipeWriter(streamed, 44100, 2, signal.shape[1], subtype)
    writer.write(signal[:, :777])
    writer.write(signal[:, 777:])
    writer.close()
    ours, rate = soundfile.read(io.BytesIO(streamed.getvalue()), dtype="float32")
    theirs, _ = soundfile.read(io.BytesIO(reference.getvalue()), dtype="float32")
    assert rate == 44100 and ours.shape == theirs.shape
    one_lsb = {"PCM_16": 2.0**-15, "PCM_24": 2.0**-23, "FLOAT": 0.0}[subtype]
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=one_lsb * 1.01)
    assert np.mean(ours == theirs) > 0.99


def test_open_writer_picks_the_pipe_writer_for_unseekable_outputs() -> None:
    class Pipe(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def seekable(self) -> bool:
            return False

        def write(self, data: bytes) -> int:  # type: ignore[override]
            return len(data)

    assert isinstance(audio.open_writer(Pipe(), 8000, 1, 10, "WAV", "PCM_16"),
                      audio.WavPipeWriter)
    with pytest.raises(AudioError, match="only WAV"):
        audio.open_writer(Pipe(), 8000, 1, 10, "FLAC", "PCM_16")


# ---------------------------------------------------------------- issue 13: input contract


@pytest.mark.parametrize("bad,message", [
    (np.array([0, 26541, -1000], np.int32), "astype\\(np.int16\\)"),      # int16 in int32
    (np.array([0, 26541, -1000], np.int64), "no defined scale"),
    ([0, 26541, -1000], "no defined scale"),                             # list of ints
    (np.array([0.0, 26541.0, -1.0]), "normalise"),                       # PCM scale as float
    (np.array([0.0, 3e38], np.float32), "normalise"),
    (np.zeros((48, 2), np.float32), "audio.T"),                          # [n, ch], n <= 64
    (np.zeros((6, 1), np.float32), "audio.T"),
    ([[0.0, 1.0], [2.0]], "rectangular"),
    (torch.zeros(4, dtype=torch.complex64), "sample type"),
])
def test_ambiguous_inputs_are_refused_with_a_hint(bad, message) -> None:
    with pytest.raises(AudioError, match=message):
        audio.to_float32(bad)


def test_accepted_inputs_and_their_scales() -> None:
    np.testing.assert_array_equal(audio.to_float32(np.array([0, 2**30], np.int32)), [[0, 0.5]])
    np.testing.assert_array_equal(audio.to_float32(np.array([0, 64], np.int8)), [[0, 0.5]])
    np.testing.assert_array_equal(audio.to_float32([0.0, 0.5, -0.25]), [[0, 0.5, -0.25]])
    np.testing.assert_array_equal(audio.to_float32(np.array([1.5, -2.0, 0.5])), [[1, -1, 0.5]])
    bf16 = torch.tensor([0.5, -0.25], dtype=torch.bfloat16)
    np.testing.assert_array_equal(audio.to_float32(bf16), [[0.5, -0.25]])
    assert audio.to_float32(np.zeros(3, np.int32)).shape == (1, 3)       # silence is fine
    assert audio.to_float32(np.zeros((2, 1), np.float32)).shape == (2, 1)


def _truncated_wav(tmp_path: Path, declared: int, present: int) -> Path:
    full, half = tmp_path / "full.wav", tmp_path / "truncated.wav"
    soundfile.write(str(full), np.zeros(declared, np.int16), 24000, subtype="PCM_16")
    half.write_bytes(full.read_bytes()[: 44 + 2 * present])
    return half


def test_truncated_wav_is_flagged_and_refused_when_strict(tmp_path) -> None:
    path = _truncated_wav(tmp_path, 144_000, 71_989)
    with audio.AudioReader(path) as reader:
        assert reader.info.num_samples == 71_989 and reader.missing_samples == 72_011
        assert "declares 144000 samples, 71989 are present" in reader.truncation_message()
    with pytest.raises(AudioError, match="truncated"):
        audio.AudioReader(path, strict=True)
    with audio.AudioReader(tmp_path / "full.wav", strict=True) as reader:
        assert reader.missing_samples == 0 and reader.truncation_message() == ""


def test_float_file_beyond_range_is_refused(tmp_path) -> None:
    path = tmp_path / "loud.wav"
    soundfile.write(str(path), np.array([0.0, 3e38], np.float32), 8000, subtype="FLOAT")
    with pytest.raises(AudioError, match="loud.wav: float samples peak"):
        audio.read_audio(path)


def test_flac_holds_at_most_8_channels() -> None:
    with pytest.raises(AudioError, match="FLAC holds at most 8 channels"):
        audio.open_writer(io.BytesIO(), 24000, 10, 100, "FLAC", "PCM_16")
