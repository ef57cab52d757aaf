"""The denoising encoder (codec/denoise.py, `aec encode --denoise`) and its training.

Mechanics use a seeded, untrained mask net saved next to a copy of the shipped
base model, so they do not depend on how well the shipped denoiser was trained.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from codec import Codec, chunkcoder, format
from codec.denoise import (DenoiseConfig, DenoisingEncoder, denoise_path, load_denoiser,
                           save_denoiser)
from codec.errors import WeightsError
from codec.weights import sha256_file
from conftest import PRETRAINED, ROOT, SAMPLE, SPEECH, read_clip

BASE_FILES = ("aec-base.json", "aec-base.encoder.safetensors", "aec-base.decoder.safetensors")


def _copy_base(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in BASE_FILES:
        os.symlink(PRETRAINED / name, folder / name)
    return folder


def _random_denoiser(seed: int = 0) -> DenoisingEncoder:
    """An untrained mask net whose mask varies with the input (so context matters)."""
    torch.manual_seed(seed)
    encoder = DenoisingEncoder(DenoiseConfig(hidden=16, layers=2, kernel=3, dilations=(1, 3)))
    torch.nn.init.normal_(encoder.mask.out.weight, std=0.3)
    return encoder


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """'with': base + a denoiser for it; 'without': base only; 'other': a denoiser of
    another base model (wrong decoder SHA-256)."""
    root = tmp_path_factory.mktemp("denoise")
    sha = sha256_file(PRETRAINED / "aec-base.decoder.safetensors")
    folders = {key: _copy_base(root / key) for key in ("with", "without", "other")}
    save_denoiser(denoise_path(folders["with"]), _random_denoiser(), sha)
    save_denoiser(denoise_path(folders["other"]), _random_denoiser(), bytes(32))
    return folders


@pytest.fixture(scope="module")
def noisy() -> tuple[np.ndarray, int]:
    """4 s of the speech clip plus white noise at about 5 dB SNR."""
    audio, rate = read_clip(SPEECH)
    clean = audio[0, : 4 * rate]
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(len(clean)).astype(np.float32)
    noise *= np.sqrt(np.mean(clean ** 2) / np.mean(noise ** 2) / 10 ** 0.5)
    return clean + noise, rate


def test_denoised_stream_is_a_plain_stream(folders, noisy) -> None:
    audio, rate = noisy
    codec = Codec.load(folders["with"], device="cpu")
    plain, denoised = codec.encode(audio, rate, 12), codec.encode(audio, rate, 12, denoise=True)
    assert plain != denoised
    header = format.StreamReader(io.BytesIO(denoised)).header
    assert header.model_sha256 == sha256_file(PRETRAINED / "aec-base.decoder.safetensors")
    assert [b.payload for b in header.metadata] == [b"AEC_DENOISE=1"]   # spec §3.3 tags
    # every chunk parses and entropy-decodes with the spec's coder-2 reader
    layout = codec.model.config.layout()
    chunks = list(format.StreamReader(io.BytesIO(denoised)).chunks())
    assert sum(c.num_frames for c in chunks) == header.num_frames
    for chunk in chunks:
        symbols = chunkcoder.decode_chunk(chunk.payload, layout, codec.model.tables,
                                          header.channels, chunk.num_frames)
        assert symbols.coefficients.shape == (1, layout.coefficients, chunk.num_frames)
    # the plain decoder (no encoder, no denoiser) plays it: same length and rate
    decoder = Codec.load(folders["without"], device="cpu", need_encoder=False)
    decoded, decoded_rate = decoder.decode(denoised)
    assert decoded_rate == rate and decoded.shape == (1, len(audio))
    assert np.isfinite(decoded).all() and np.abs(decoded).max() > 0.01


def test_denoise_refused_without_a_denoiser(folders, noisy, tmp_path) -> None:
    audio, rate = noisy
    codec = Codec.load(folders["without"], device="cpu")
    assert codec.encode(audio, rate, 6)                       # plain encoding still works
    with pytest.raises(WeightsError, match="no denoising encoder"):
        codec.encode(audio, rate, 6, denoise=True)
    with pytest.raises(WeightsError, match="trained for decoder weights"):
        Codec.load(folders["other"], device="cpu").encode(audio, rate, 6, denoise=True)
    out = tmp_path / "x.aec"
    result = subprocess.run([sys.executable, "-m", "codec", "encode", str(SAMPLE), "-o",
                             str(out), "--denoise", "--weights", str(folders["without"])],
                            capture_output=True, cwd=ROOT, timeout=120)
    lines = result.stderr.decode().strip().splitlines()
    assert result.returncode == 7 and len(lines) == 1, result.stderr.decode()
    assert lines[0].startswith("aec: error: ") and "denoising encoder" in lines[0]
    assert not out.exists() and not list(tmp_path.iterdir())


def test_denoiser_is_read_on_first_denoise_encode_only(folders, noisy, tmp_path) -> None:
    audio, rate = noisy
    broken = _copy_base(tmp_path / "broken")
    denoise_path(broken).write_bytes(b"not safetensors")
    codec = Codec.load(broken, device="cpu")                  # the bad file is not read here
    assert codec._denoiser is None
    codec.encode(audio, rate, 6)
    assert codec._denoiser is None
    with pytest.raises(WeightsError, match="unreadable"):
        codec.encode(audio, rate, 6, denoise=True)
    good = Codec.load(folders["with"], device="cpu")
    good.encode(audio, rate, 6, denoise=True)
    assert isinstance(good._denoiser, DenoisingEncoder)


def test_windowed_denoising_equals_whole(folders, noisy) -> None:
    audio, rate = noisy
    base = Codec.load(folders["with"], device="cpu", frames_per_chunk=15)
    narrow = Codec(base.model, base.device, frames_per_chunk=15, chunks_per_window=1)
    wide = Codec(base.model, base.device, frames_per_chunk=15, chunks_per_window=1000)
    for codec in (narrow, wide):
        codec.weights_path = folders["with"]
    data = narrow.encode(audio, rate, 12, denoise=True)
    assert narrow.info(data).num_chunks > 10
    assert data == wide.encode(audio, rate, 12, denoise=True)
    # the net's own windows: context_frames each side reproduce whole-signal output
    encoder = load_denoiser(folders["with"], base.model.decoder_sha256)
    _assert_window_equals_whole(encoder, audio, frames=60, first=20)


def _assert_window_equals_whole(encoder: DenoisingEncoder, audio: np.ndarray, frames: int,
                                first: int, count: int = 10) -> None:
    """Frames first..first+count of a window with `context_frames` each side equal the
    whole signal's (the first `frames` frames of `audio`)."""
    x = torch.from_numpy(audio[: 320 * frames]).reshape(1, 1, -1)
    whole = encoder(x)
    context = encoder.context_frames
    window = encoder(x[..., (first - context) * 320: (first + count + context) * 320])
    torch.testing.assert_close(window[..., context: context + count],
                               whole[..., first: first + count], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("head, pass_db, wiener, context", [
    (False, (), (), 4 + 7 + 1), (True, (), (), 4 + 7 + 1), (True, (5.0, 15.0), (), 4 + 7 + 1),
    (True, (5.0, 15.0), (2.0, 0.05, 10.0, 5.0, 3.0), 10 + 2 + 1),
    (True, (), (1.5, 0.1, 3.0, 3.0, 1.0), 4 + 7 + 1)])
def test_noise_floor_versions_windows_equal_whole(noisy, tmp_path, head, pass_db, wiener,
                                                  context) -> None:
    """Version 2 (noise-floor feature), 3 (plus the strength head), 4 (plus the clean
    pass-through, here at SNRs the noisy clip has) and 5 (plus the stationary-noise gain,
    whose reach is the larger in the first of its two cases) nets save, load and stay
    windowed == whole."""
    torch.manual_seed(1)
    config = DenoiseConfig(hidden=16, layers=2, kernel=3, dilations=(1, 3), floor_frames=6,
                           strength_head=head, pass_db=pass_db, wiener=wiener,
                           version=5 if wiener else 4 if pass_db else 3 if head else 2)
    encoder = DenoisingEncoder(config)
    torch.nn.init.normal_(encoder.mask.out.weight, std=0.3)
    if head:
        torch.nn.init.normal_(encoder.mask.strength.weight, std=0.3)
    folder = _copy_base(tmp_path / "v2")
    sha = sha256_file(PRETRAINED / "aec-base.decoder.safetensors")
    save_denoiser(denoise_path(folder), encoder, sha)
    loaded = load_denoiser(folder, sha)
    assert loaded.config == config and loaded.context_frames == context
    audio, rate = noisy
    _assert_window_equals_whole(loaded, audio, frames=80, first=30)
    base = Codec.load(folder, device="cpu", frames_per_chunk=15)
    narrow = Codec(base.model, base.device, frames_per_chunk=15, chunks_per_window=1)
    narrow.weights_path = folder
    assert narrow.encode(audio, rate, 12, denoise=True) == base.encode(audio, rate, 12,
                                                                       denoise=True)


@pytest.mark.parametrize("fields", [{"floor_frames": 5, "version": 1},
                                    {"floor_frames": 0, "version": 2},
                                    {"floor_frames": -1, "version": 2},
                                    {"floor_frames": 5, "strength_head": True, "version": 2},
                                    {"floor_frames": 0, "strength_head": True, "version": 3},
                                    {"version": 4},
                                    {"floor_frames": 5, "pass_db": [50, 65], "version": 2},
                                    {"floor_frames": 0, "pass_db": [50, 65], "version": 4},
                                    {"floor_frames": 5, "pass_db": [65, 50], "version": 4},
                                    {"floor_frames": 5, "pass_db": [50], "version": 4},
                                    {"floor_frames": 5, "pass_db": [50, float("nan")],
                                     "version": 4},
                                    {"floor_frames": 5, "wiener": [2, 0.05, 75, 9, 3],
                                     "version": 4},
                                    {"floor_frames": 5, "wiener": [2, 0.05, 75, 9],
                                     "version": 5},
                                    {"floor_frames": 5, "wiener": [0, 0.05, 75, 9, 3],
                                     "version": 5},
                                    {"floor_frames": 5, "wiener": [2, 1.5, 75, 9, 3],
                                     "version": 5},
                                    {"floor_frames": 5, "wiener": [2, 0.05, 7.5, 9, 3],
                                     "version": 5},
                                    {"floor_frames": 5, "wiener": [2, 0.05, 75, 8, 3],
                                     "version": 5},
                                    {"floor_frames": 5, "wiener": [2, 0.05, 75, 9, 0],
                                     "version": 5},
                                    {"floor_frames": 5, "wiener": [2, float("inf"), 75, 9, 3],
                                     "version": 5},
                                    {"floor_frames": 5, "wiener": [2, 0.05, 1e9, 9, 3],
                                     "version": 5},
                                    {"floor_frames": 5, "wiener": [2, 0.05, 75, 1001, 3],
                                     "version": 5}])
def test_config_version_must_match_features(fields) -> None:
    import json

    with pytest.raises(WeightsError, match="unsupported denoiser config"):
        DenoiseConfig.from_json(json.dumps(fields))
    old = {"bins": 320, "hidden": 8, "layers": 1, "kernel": 3, "dilations": [1], "version": 1}
    assert DenoiseConfig.from_json(json.dumps(old)).floor_frames == 0   # version 1 files load


def test_other_voice_is_seeded_and_off_by_default() -> None:
    from codec.train.denoise_data import Pools, batch, other_voice

    speech, _ = read_clip(SPEECH)
    clip = speech[0, :48000]
    a = other_voice(clip, 24000, np.random.default_rng(3))
    b = other_voice(clip, 24000, np.random.default_rng(3))
    assert np.array_equal(a, b) and a.dtype == np.float32
    assert 24000 / 2 ** 0.4 - 10 < len(a) < (24000 + 2048) * 2 ** 0.4 + 10
    pools = Pools([clip], [clip], [clip])
    plain, off = batch(pools, 0, 7, 3, 9600), batch(pools, 0, 7, 3, 9600, augment=0.0)
    assert all(np.array_equal(p, o) for p, o in zip(plain, off))   # old runs unchanged
    on = batch(pools, 0, 7, 3, 9600, augment=1.0)
    assert not np.array_equal(plain[1], on[1])
    assert not np.array_equal(plain[1], batch(pools, 0, 7, 3, 9600, stretch=1.0)[1])


def test_slow_down_keeps_the_pitch() -> None:
    from codec.train.denoise_data import slow_down

    t = np.arange(24000) / 24000
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32) * (t < 0.5)
    slow = slow_down(tone, 200000, np.random.default_rng(0))     # long enough: no crop
    active = np.flatnonzero(np.abs(slow) > 0.1)
    assert 1.4 * 0.5 * 24000 < active[-1] - active[0] < 3.1 * 0.5 * 24000
    spectrum = np.abs(np.fft.rfft(slow[active[0]: active[-1]]))
    assert abs(np.argmax(spectrum) * 24000 / (active[-1] - active[0]) - 440) < 5


def _tiny_corpus(root: Path) -> Path:
    """train/{speech,music,sfx}/pkg/*.wav cut from the test clips (24 kHz mono)."""
    speech, _ = read_clip(SPEECH)
    sample, _ = read_clip(SAMPLE)
    for kind, audio in (("speech", speech[0]), ("music", sample[0]), ("sfx", sample[0])):
        folder = root / "train" / kind / f"tiny-{kind}"
        folder.mkdir(parents=True)
        for i in range(3):
            soundfile.write(str(folder / f"{i}.wav"), audio[i * 24000: (i + 2) * 24000], 24000)
    return root


def test_training_resumes_exactly_and_exports(tmp_path) -> None:
    from codec.train import denoise as train

    corpus = _tiny_corpus(tmp_path / "corpus")
    common = ["--data", str(corpus), "--batch-size", "2", "--hidden", "8", "--log-every", "1",
              "--speech-clips", "3", "--music-clips", "3", "--sfx-clips", "3"]
    assert train.main([*common, "--out", str(tmp_path / "a"), "--steps", "2"]) == 0
    assert train.main([*common, "--out", str(tmp_path / "a"), "--steps", "4"]) == 0
    assert train.main([*common, "--out", str(tmp_path / "b"), "--steps", "4"]) == 0
    sha = sha256_file(PRETRAINED / "aec-base.decoder.safetensors")
    a, b = (load_denoiser(tmp_path / k / "aec-base", sha) for k in ("a", "b"))
    for (name, pa), (_, pb) in zip(a.mask.state_dict().items(), b.mask.state_dict().items()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.mask.out.weight, torch.zeros_like(a.mask.out.weight))
    # a fine-tune that adds the noise-floor feature starts at exactly the old mask
    assert train.main([*common, "--out", str(tmp_path / "c"), "--steps", "0", "--init-from",
                       str(tmp_path / "a" / "checkpoint"), "--floor-frames", "4",
                       "--augment", "0.5", "--distortion-weight", "2", "--strength-head",
                       "--compressed-weight", "1", "--clean-floor", "1e-4"]) == 0
    c = load_denoiser(tmp_path / "c" / "aec-base", sha)
    assert c.config.version == 3 and c.config.floor_frames == 4 and c.config.strength_head
    x = torch.from_numpy(read_clip(SPEECH)[0][0, : 320 * 40]).reshape(1, 1, -1)
    y = c.mdct(x)      # the new head starts at strength 1 - 3e-4: the old mask to 3e-4
    assert (c.gain(y) - a.gain(y)).abs().max() < 4e-4
    assert train.main([*common, "--out", str(tmp_path / "c"), "--steps", "2"]) == 0
    # --pass-db changes the exported config only (version 4), not the weights or the run
    trained = load_denoiser(tmp_path / "c" / "aec-base", sha)
    assert train.main([*common, "--out", str(tmp_path / "c"), "--steps", "2",
                       "--pass-db", "50", "65"]) == 0
    gated = load_denoiser(tmp_path / "c" / "aec-base", sha)
    assert gated.config.version == 4 and gated.config.pass_db == (50.0, 65.0)
    assert all(torch.equal(p, q) for p, q in zip(trained.state_dict().values(),
                                                 gated.state_dict().values()))
    # --wiener too (version 5), alongside --pass-db
    assert train.main([*common, "--out", str(tmp_path / "c"), "--steps", "2",
                       "--pass-db", "50", "65", "--wiener", "2", "0.05", "75", "9", "3"]) == 0
    steady = load_denoiser(tmp_path / "c" / "aec-base", sha)
    assert steady.config.version == 5 and steady.config.pass_db == (50.0, 65.0)
    assert steady.config.wiener == (2.0, 0.05, 75.0, 9.0, 3.0)
    assert all(torch.equal(p, q) for p, q in zip(trained.state_dict().values(),
                                                 steady.state_dict().values()))
    saved = json.loads((tmp_path / "c" / "checkpoint" / "state.json").read_text())
    assert saved["net_config"]["version"] == 3 and not saved["net_config"].get("pass_db")
    assert not saved["net_config"].get("wiener")
    shutil.rmtree(tmp_path / "corpus")


def test_stationary_gain_in_the_training_loop(tmp_path, monkeypatch) -> None:
    """--wiener-in-loop multiplies the mask by the stationary gain in each step (the loss
    sees the product), is stored with the run, and a resume keeps it."""
    from codec import denoise as dn
    from codec.train import denoise as train

    corpus = _tiny_corpus(tmp_path / "corpus")
    common = ["--data", str(corpus), "--batch-size", "2", "--hidden", "8", "--log-every", "1",
              "--speech-clips", "3", "--music-clips", "3", "--sfx-clips", "3"]
    calls: list[tuple[float, ...]] = []
    real = train.stationary_gain
    monkeypatch.setattr(train, "stationary_gain",
                        lambda y, setting: calls.append(setting) or real(y, setting))
    assert train.main([*common, "--out", str(tmp_path / "a"), "--steps", "1"]) == 0
    assert calls == []
    assert train.main([*common, "--out", str(tmp_path / "b"), "--steps", "1",
                       "--wiener-in-loop", "2", "0.05", "75", "9", "3"]) == 0
    assert calls == [(2.0, 0.05, 75.0, 9.0, 3.0)]
    saved = json.loads((tmp_path / "b" / "checkpoint" / "state.json").read_text())
    assert saved["train_config"]["wiener_in_loop"] == [2.0, 0.05, 75.0, 9.0, 3.0]
    assert train.main([*common, "--out", str(tmp_path / "b"), "--steps", "2"]) == 0
    assert len(calls) == 2                 # the resume kept the run's setting
    assert dn.stationary_gain is real


def test_training_refuses_export_rules_that_would_not_load(tmp_path, capsys) -> None:
    """An invalid --wiener (or --wiener-in-loop) is a usage error; --pass-db on a net
    without the noise-floor feature is refused before any training (exit 2, one line)."""
    from codec.train import denoise as train

    corpus = _tiny_corpus(tmp_path / "corpus")
    common = ["--data", str(corpus), "--out", str(tmp_path / "run"), "--steps", "1"]
    for option in ("--wiener", "--wiener-in-loop"):
        with pytest.raises(SystemExit) as stop:
            train.main([*common, option, "2", "0.05", "75", "8", "3"])     # even FRAMES
        assert stop.value.code == 2
    capsys.readouterr()
    assert train.main([*common, "--pass-db", "50", "65"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("codec.train.denoise: error:") and "\n" not in err
    assert not (tmp_path / "run").exists()


def test_compressed_spectral_loss_scores_the_decoded_waveform() -> None:
    """Zero for a perfect estimate, the same at any level, larger for more noise, and
    differentiable in the mask."""
    from codec.train.denoise_loss import CompressedSpectralLoss

    loss = CompressedSpectralLoss(320)
    x = torch.from_numpy(read_clip(SPEECH)[0][0, : 320 * 60]).reshape(1, 1, -1)
    mdct = DenoisingEncoder(DenoiseConfig(hidden=8, layers=1)).mdct
    clean = mdct(x)
    noise = mdct(torch.randn_like(x) * x.std())
    assert float(loss(clean, clean)) < 1e-6
    light, heavy = float(loss(clean + 0.1 * noise, clean)), float(loss(clean + noise, clean))
    assert 0.0 < light < heavy
    assert abs(float(loss(0.01 * (clean + noise), 0.01 * clean)) - heavy) < 1e-3 * heavy
    asymmetric = CompressedSpectralLoss(320, added_weight=3.0)
    assert float(asymmetric(1.5 * clean, clean)) > float(loss(1.5 * clean, clean)) * 1.5
    assert abs(float(asymmetric(0.5 * clean, clean)) - float(loss(0.5 * clean, clean))) < \
        0.3 * float(loss(0.5 * clean, clean))      # missing energy: (almost) the same
    mask = torch.full_like(clean, 0.9, requires_grad=True)
    loss(mask * (clean + noise), clean).backward()
    assert mask.grad is not None and torch.isfinite(mask.grad).all()


def test_clean_floor_applies_to_clean_examples_only() -> None:
    from codec.train import denoise as train

    torch.manual_seed(0)
    clean = torch.randn(2, 320, 10)
    noisy = clean.clone()
    noisy[1] += 0.5 * torch.randn(320, 10)
    mask = torch.full_like(clean, 0.99)
    edges = (0, 160, 320)
    base = train.DenoiseTrainConfig()
    low = train.DenoiseTrainConfig(clean_floor=1e-5)
    a, b = train.losses(mask, noisy, clean, base, edges), train.losses(mask, noisy, clean, low,
                                                                        edges)
    # example 0 is clean: nmse 1e-4 -> log10(1.1e-3) becomes log10(1.1e-4), halved over 2
    assert abs((float(a.total) - float(b.total)) - 0.5 * np.log10(1.1e-3 / 1.1e-4)) < 2e-3
    noisy[0, 0, 0] += 1e-3                                 # no longer clean: floor unchanged
    assert torch.equal(train.losses(mask, noisy, clean, low, edges).total,
                       train.losses(mask, noisy, clean, base, edges).total)


def test_shipped_denoiser_removes_white_noise(codec, noisy) -> None:
    """The shipped denoiser (codec/pretrained/aec-base.denoise.safetensors) on the speech
    clip at 5 dB white-noise SNR, 12 kbps: measured 10.06 dB SI-SDR against 2.35 dB for plain
    encoding; the bound is loose. (On this clip's clean input it costs 1.5 dB: see the
    model card.)"""
    from codec import metrics

    audio, rate = noisy
    clean, _ = read_clip(SPEECH)
    clean = clean[0, : len(audio)]
    plain = codec.decode(codec.encode(audio, rate, 12))[0][0]
    denoised = codec.decode(codec.encode(audio, rate, 12, denoise=True))[0][0]
    assert metrics.si_sdr_db(clean, denoised) > metrics.si_sdr_db(clean, plain) + 4.0


def test_clean_pass_through_relaxes_only_very_clean_frames(codec, noisy) -> None:
    """Version 4 and on (the shipped file is 5): the applied gain is the net's mask (times
    the stationary gain) wherever the local
    SNR is under pass_db's first value (all of the 5 dB clip), 1 where it is over the
    second (the clean clip after a silent lead-in, as in bench.denoise), and never below
    the mask."""
    from codec.denoise import features, local_snr_db, stationary_gain

    encoder = codec._encoder(True)
    low, full = encoder.config.pass_db
    assert encoder.config.version == 5      # below: the mask times the stationary gain
    audio, rate = noisy
    clean, _ = read_clip(SPEECH)
    lead_in = np.concatenate([np.zeros(rate, np.float32), clean[0, : len(audio) - rate]])
    for x in (audio, lead_in):
        y = encoder.mdct(torch.from_numpy(np.ascontiguousarray(x)).reshape(1, 1, -1))
        with torch.no_grad():
            gain = encoder.gain(y) * stationary_gain(y, encoder.config.wiener)
            applied = encoder.applied_gain(y)
            snr = local_snr_db(y, features(y, encoder.config)[:, 320:], encoder.config.radius)
        below, above = (snr <= low).expand_as(gain), (snr >= full).expand_as(gain)
        assert torch.equal(applied[below], gain[below]) and bool((applied >= gain).all())
        assert bool((applied[above] == 1).all())
        if x is audio:
            assert bool(below.all())
        else:
            assert bool(above.any()) and bool((applied[~below] > gain[~below]).any())


@pytest.mark.parametrize("kind, gain_db", [("hum", 8.0), ("white", 6.0), ("brown", 2.5)])
def test_stationary_gain_removes_steady_noise_and_spares_speech(kind, gain_db) -> None:
    """The shipped version-5 setting alone, in the MDCT domain, on the speech clip after a
    0.5 s lead-in: steady noise at 5 dB SNR is cut (measured +9.6 dB SDR for hum, +7.9 for
    white, +3.7 for brown noise), and on the clean clip the gain costs almost nothing
    (measured 54 dB SDR left)."""
    from codec.denoise import stationary_gain
    from codec.model.mdct import MDCT
    from codec.train.denoise_data import colored_noise

    audio, rate = read_clip(SPEECH)
    clean = np.concatenate([np.zeros(rate // 2, np.float32), audio[0, : 4 * rate]])
    noise = colored_noise(kind, len(clean), np.random.default_rng(0))
    noise *= np.sqrt(np.mean(clean ** 2) / np.mean(noise ** 2) / 10 ** 0.5)
    mdct = MDCT(320)
    target = mdct(torch.from_numpy(clean).reshape(1, 1, -1))

    def sdr_db(estimate: torch.Tensor) -> float:
        error = float((estimate - target).square().sum()) + 1e-30
        return 10 * np.log10(float(target.square().sum()) / error)

    setting = load_denoiser(None, sha256_file(PRETRAINED / "aec-base.decoder.safetensors")
                            ).config.wiener
    for signal, bound in ((clean + noise, None), (clean, 45.0)):
        y = mdct(torch.from_numpy(signal).reshape(1, 1, -1))
        gain = stationary_gain(y, setting)
        assert bool(((gain >= setting[1]) & (gain <= 1)).all())
        if bound is None:
            assert sdr_db(y * gain) > sdr_db(y) + gain_db
        else:
            assert sdr_db(y * gain) > bound


def test_stationary_gain_is_the_documented_formula() -> None:
    """max(floor, 1 - alpha N / P): P the power over bins x frames, N its minimum over
    +-half_window frames. One bin, no smoothing: a frame 10 dB above the steady level keeps
    1 - 2 / 10 of its amplitude, the steady frames fall to the floor; with 3-frame
    smoothing, P is the mean over what the window holds (edges: fewer frames)."""
    from codec.denoise import stationary_gain

    y = torch.ones(1, 1, 7)
    y[0, 0, 3] = 10 ** 0.5
    gain = stationary_gain(y, (2.0, 0.05, 10.0, 1.0, 1.0))
    expected = torch.full((1, 1, 7), 0.05)
    expected[0, 0, 3] = 0.8
    torch.testing.assert_close(gain, expected, atol=1e-6, rtol=0)
    smooth = stationary_gain(y, (1.0, 0.0, 10.0, 3.0, 1.0))
    power = torch.tensor([1, 1, 4, 4, 4, 1, 1], dtype=torch.float32)   # (1 + 1 + 10) / 3 = 4
    torch.testing.assert_close(smooth[0, 0], 1 - 1 / power, atol=1e-6, rtol=0)


def test_shipped_denoiser_windows_cover_the_stationary_gain() -> None:
    """README: the net sees 54 frames each side, the stationary gain 79 (75 + 9 // 2), so
    windows carry 80 frames of audio each side (one more for the MDCT's edge frame)."""
    shipped = load_denoiser(None, sha256_file(PRETRAINED / "aec-base.decoder.safetensors"))
    config = shipped.config
    assert config.version == 5 and config.wiener == (2.0, 0.05, 75.0, 9.0, 3.0)
    assert config.radius + config.feature_radius == 54 and config.wiener_radius == 79
    assert shipped.context_frames == 80
