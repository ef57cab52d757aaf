"""codec.audio: reading, writing, PCM scaling, errors, exact block-wise resampling."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import torchaudio.functional as taf

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
    whole = taf.resample(torch.from_numpy(signal), from_rate, to_rate).numpy()
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
    np.testing.assert_allclose(blockwise, whole, atol=1e-6)


@pytest.mark.parametrize("length", [0, 1, 2, 7])
def test_resample_lengths_of_tiny_signals(length) -> None:
    out = audio.resample(np.ones((1, length), np.float32), 44100, 24000)
    assert out.shape == (1, audio.resampled_length(length, 44100, 24000))
    assert audio.resampled_length(1, 44100, 24000) == 1
    assert audio.resampled_length(3, 8000, 24000) == 9


def test_resampling_co_prime_rates_is_refused_clearly() -> None:
    with pytest.raises(AudioError, match="resample"):
        audio.StreamResampler(44101, 24000, 1)


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
