"""Noisy/clean training pairs for the denoising encoder, reproducible from (seed, step).

Clean speech from the train split is mixed with train-split music, sound effects
or synthetic noise (white, pink, brown, mains hum) at a random SNR in
[-5, 20] dB; a share of examples stays clean so that clean input is not harmed.
The SNR is the speech clip's own power (its unpadded samples) over the noise
power across the segment, the same rule `bench.denoise` mixes with.

With ``augment`` > 0, that share of the speech clips is first made into
another voice: resampled by a random factor within +-VOICE_OCTAVES (pitch and
formants move together, as in a cartoon or a child's voice; band-limited, by
FFT) and tilted by a random first-order EQ, so that voices unlike the few
training speakers still pass through. Both the clean target and the mixture
use the changed voice. With ``stretch`` > 0, that share of the speech is slowed
down 1.5 to 3 times at the same pitch (`slow_down`, a phase vocoder), so that
held vowels and hums of a voice ("aaa", "nnn", as in spelled letters) are in
the clean data too, not only in the noise (mains hum, music).

Pools of clips are read once (seeded choice); every batch is then a pure
function of (seed, step), so a resumed run sees the same data as an
uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from numpy.typing import NDArray

from codec.train.split import list_clips

SAMPLE_RATE = 24000
SNR_RANGE_DB = (-5.0, 20.0)
#: Share of each noise source per example; "clean" adds nothing.
SOURCE_WEIGHTS: dict[str, float] = {"clean": 0.12, "music": 0.28, "sfx": 0.2, "synthetic": 0.4}
SYNTHETIC = ("white", "pink", "brown", "hum")
#: Mixture RMS drawn in this range (dBFS), so the net sees many levels.
LEVEL_RANGE_DB = (-42.0, -14.0)
MUSIC_EXCERPT_S = 8.0
#: Voice augmentation: resampling factor 2**U(-VOICE_OCTAVES, VOICE_OCTAVES), EQ tilt
#: y[n] = x[n] - a x[n-1] with a in U(-VOICE_TILT, VOICE_TILT).
VOICE_OCTAVES = 0.4
VOICE_TILT = 0.5
#: Slow-down factors for `stretch` (same pitch): U(SLOW_RANGE).
SLOW_RANGE = (1.5, 3.0)
STFT_SIZE, STFT_HOP = 1024, 256

Array = NDArray[np.float32]


@dataclass(frozen=True)
class Pools:
    """Clips in memory: clean speech, music excerpts, sound effects (24 kHz mono)."""

    speech: list[Array]
    music: list[Array]
    sfx: list[Array]


def _read(path: Path, rng: np.random.Generator, max_seconds: float | None = None) -> Array:
    """A clip as float32 mono; a random excerpt of at most max_seconds."""
    info = sf.info(str(path))
    frames = info.frames
    start = 0
    if max_seconds is not None and frames > max_seconds * info.samplerate:
        length = int(max_seconds * info.samplerate)
        start = int(rng.integers(0, frames - length))
        frames = length
    audio, rate = sf.read(str(path), start=start, frames=frames, dtype="float32",
                          always_2d=True)
    if rate != SAMPLE_RATE:
        raise ValueError(f"{path}: {rate} Hz, the corpus is {SAMPLE_RATE} Hz")
    return np.ascontiguousarray(audio.mean(axis=1))


def _pick(paths: list[Path], count: int, rng: np.random.Generator) -> list[Path]:
    if not paths:
        return []
    index = rng.choice(len(paths), size=min(count, len(paths)), replace=False)
    return [paths[i] for i in sorted(index)]


def load_pools(corpus: str | Path, seed: int, speech: int = 1500, music: int = 160,
               sfx: int = 500) -> Pools:
    """Read seeded subsets of the train split (never split=valid)."""
    rng = np.random.default_rng(seed)
    kinds = {"speech": speech, "music": music, "sfx": sfx}
    pools: dict[str, list[Array]] = {}
    for kind, count in kinds.items():
        paths = _pick(list_clips(corpus, "train", kind), count, rng)
        limit = MUSIC_EXCERPT_S if kind == "music" else None
        clips = [_read(p, rng, limit) for p in paths]
        pools[kind] = [c for c in clips if np.abs(c).max() > 1e-4]
    if not pools["speech"]:
        raise ValueError(f"{corpus}: no train-split speech clips")
    return Pools(**pools)


def _place(clip: Array, length: int, rng: np.random.Generator) -> Array:
    """A random crop of clip, or clip at a random offset in zeros when it is shorter."""
    out = np.zeros(length, dtype=np.float32)
    if len(clip) >= length:
        start = int(rng.integers(0, len(clip) - length + 1))
        return clip[start: start + length].copy()
    start = int(rng.integers(0, length - len(clip) + 1))
    out[start: start + len(clip)] = clip
    return out


def _tile(clip: Array, length: int, rng: np.random.Generator) -> Array:
    """clip repeated from a random phase to fill length (music beds)."""
    reps = -(-length // max(1, len(clip))) + 1
    long = np.tile(clip, reps)
    start = int(rng.integers(0, max(1, len(long) - length)))
    return long[start: start + length].copy()


def colored_noise(kind: str, length: int, rng: np.random.Generator) -> Array:
    """white / pink (1/f) / brown (1/f^2) noise, or mains hum (50 or 60 Hz + harmonics)."""
    if kind == "hum":
        t = np.arange(length) / SAMPLE_RATE
        base = rng.choice([50.0, 60.0]) * rng.uniform(0.99, 1.01)
        hum = sum(rng.uniform(0.1, 1.0) / k * np.sin(2 * np.pi * base * k * t
                                                    + rng.uniform(0, 2 * np.pi))
                  for k in range(1, 12))
        return (hum + 0.02 * rng.standard_normal(length)).astype(np.float32)
    white = rng.standard_normal(length)
    if kind == "white":
        return white.astype(np.float32)
    exponent = {"pink": 0.5, "brown": 1.0}[kind]
    spectrum = np.fft.rfft(white)
    freqs = np.maximum(np.fft.rfftfreq(length, 1.0 / SAMPLE_RATE), 20.0)
    return np.fft.irfft(spectrum / freqs ** exponent, n=length).astype(np.float32)


def _noise(source: str, pools: Pools, length: int, rng: np.random.Generator) -> Array:
    if source == "music" and pools.music:
        return _tile(pools.music[int(rng.integers(len(pools.music)))], length, rng)
    if source == "sfx" and pools.sfx:
        count = int(rng.integers(1, 4))
        return sum((_place(pools.sfx[int(rng.integers(len(pools.sfx)))], length, rng)
                    for _ in range(count)), np.zeros(length, dtype=np.float32))
    return colored_noise(SYNTHETIC[int(rng.integers(len(SYNTHETIC)))], length, rng)


def mix_at_snr(speech: Array, noise: Array, snr_db: float, speech_power: float) -> Array:
    """speech + noise scaled so that speech_power / noise power = snr_db."""
    noise_power = float(np.mean(noise.astype(np.float64) ** 2))
    if noise_power <= 0.0:
        return speech.copy()
    scale = np.sqrt(speech_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return (speech + scale * noise).astype(np.float32)


def other_voice(clip: Array, length: int, rng: np.random.Generator) -> Array:
    """clip (or a random stretch of it long enough for `length`) resampled and tilted."""
    factor = 2.0 ** rng.uniform(-VOICE_OCTAVES, VOICE_OCTAVES)
    need = int(length * factor) + 2048
    if len(clip) > need:
        start = int(rng.integers(0, len(clip) - need + 1))
        clip = clip[start: start + need]
    size = max(1, int(round(len(clip) / factor)))
    spectrum = np.fft.rfft(clip.astype(np.float64))
    kept = np.zeros(size // 2 + 1, dtype=complex)
    count = min(len(kept), len(spectrum))
    kept[:count] = spectrum[:count]
    voice = np.fft.irfft(kept, n=size)
    tilt = rng.uniform(-VOICE_TILT, VOICE_TILT)
    voice[1:] -= tilt * voice[:-1].copy()
    return voice.astype(np.float32)


def slow_down(clip: Array, length: int, rng: np.random.Generator) -> Array:
    """clip (or a random stretch of it) made 1.5-3x longer at the same pitch.

    A phase vocoder: STFT (Hann, STFT_SIZE / STFT_HOP), magnitudes interpolated
    between frames, phases advanced by each bin's measured frequency, overlap-add.
    """
    factor = rng.uniform(*SLOW_RANGE)
    need = int(length / factor) + 2 * STFT_SIZE
    if len(clip) > need:
        start = int(rng.integers(0, len(clip) - need + 1))
        clip = clip[start: start + need]
    window = np.hanning(STFT_SIZE + 1)[:-1]
    padded = np.pad(clip.astype(np.float64), (STFT_SIZE, STFT_SIZE))
    count = 1 + (len(padded) - STFT_SIZE) // STFT_HOP
    frames = np.stack([padded[i * STFT_HOP: i * STFT_HOP + STFT_SIZE] for i in range(count)])
    spec = np.fft.rfft(frames * window, axis=1)                       # [frames, bins]
    spec = np.concatenate([spec, np.zeros((2, spec.shape[1]))])
    steps = np.arange(0.0, count - 1, 1.0 / factor)
    low = steps.astype(int)
    alpha = (steps - low)[:, None]
    magnitude = (1 - alpha) * np.abs(spec[low]) + alpha * np.abs(spec[low + 1])
    expected = 2 * np.pi * STFT_HOP * np.arange(spec.shape[1]) / STFT_SIZE
    delta = np.angle(spec[low + 1]) - np.angle(spec[low]) - expected
    delta -= 2 * np.pi * np.round(delta / (2 * np.pi))
    phase = np.angle(spec[0]) + np.concatenate(
        [np.zeros((1, spec.shape[1])), np.cumsum(expected + delta, axis=0)[:-1]])
    out_frames = np.fft.irfft(magnitude * np.exp(1j * phase), n=STFT_SIZE, axis=1) * window
    size = STFT_HOP * (len(steps) - 1) + STFT_SIZE
    out, norm = np.zeros(size), np.zeros(size)
    for i, frame in enumerate(out_frames):
        out[i * STFT_HOP: i * STFT_HOP + STFT_SIZE] += frame
        norm[i * STFT_HOP: i * STFT_HOP + STFT_SIZE] += window ** 2
    out = out / np.maximum(norm, 1e-3)
    return out[STFT_SIZE: size - STFT_SIZE].astype(np.float32)


def example(pools: Pools, length: int, rng: np.random.Generator,
            clean_share: float | None = None, augment: float = 0.0,
            stretch: float = 0.0) -> tuple[Array, Array]:
    """One (noisy, clean) pair of `length` samples at a random level.

    `clean_share` overrides SOURCE_WEIGHTS["clean"] (the noise sources keep their ratios);
    `augment` is the share of examples whose voice is changed (`other_voice`), `stretch`
    the share slowed down (`slow_down`).
    """
    clip = pools.speech[int(rng.integers(len(pools.speech)))]
    if augment > 0.0 and rng.uniform() < augment:   # no draw when off: old runs unchanged
        clip = other_voice(clip, length, rng)
    if stretch > 0.0 and rng.uniform() < stretch:
        clip = slow_down(clip, length, rng)
    clean = _place(clip, length, rng)
    sources = list(SOURCE_WEIGHTS)
    weights = np.array([SOURCE_WEIGHTS[s] for s in sources])
    if clean_share is not None:
        clean_at = sources.index("clean")
        weights[clean_at] = 0.0
        weights = weights / weights.sum() * (1.0 - clean_share)
        weights[clean_at] = clean_share
    source = sources[int(rng.choice(len(sources), p=weights / weights.sum()))]
    noisy = clean.copy()
    if source != "clean":
        # the speech's own power: over the samples it occupies, not the zero padding
        power = float(np.sum(clean.astype(np.float64) ** 2)) / min(len(clip), length)
        noisy = mix_at_snr(clean, _noise(source, pools, length, rng),
                           float(rng.uniform(*SNR_RANGE_DB)), power)
    rms = float(np.sqrt(np.mean(noisy.astype(np.float64) ** 2))) or 1.0
    gain = 10.0 ** (rng.uniform(*LEVEL_RANGE_DB) / 20.0) / rms
    return (noisy * gain).astype(np.float32), (clean * gain).astype(np.float32)


def batch(pools: Pools, seed: int, step: int, size: int, length: int,
          clean_share: float | None = None, augment: float = 0.0,
          stretch: float = 0.0) -> tuple[Array, Array]:
    """(noisy, clean) float32 [size, length]: a pure function of (seed, step)."""
    rng = np.random.default_rng([seed, step])
    pairs = [example(pools, length, rng, clean_share, augment, stretch) for _ in range(size)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
