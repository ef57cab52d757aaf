"""Generate audio with the context model: sample gains and symbols frame by frame.

Each frame: the model reads the last HISTORY frames, a gain is drawn from its gain
head, then every bin's symbol from its categorical (an escape draws a sign and
A + an Elias-gamma-distributed magnitude). Logits are divided by `temperature`.
The symbols are then dequantized by the codec's own `TransformQuantizer` (noise
filling at the learned level, zero corrections) at one fixed step and synthesized
by its decoder, exactly as a 6 kbps stream would be.

With a prompt (mono, 24 kHz): it is encoded at 6 kbps; its symbols are the
context, the output's first samples are exactly what decoding that stream gives,
and the generated frames follow from the first frame that no prompt sample needs.
Deterministic for a seed on CPU (one `torch.Generator`, fixed thread count).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from codec import audio as audio_io
from codec.context.model import (HISTORY, ContextModel, current_features, frame_levels,
                                 pass_of_bin)
from codec.context.symbols import KBPS, stream_symbols
from codec.errors import UsageError


@dataclass
class Context:
    """The frames generation continues from (history) and the prompt's part of the output."""

    q: NDArray[np.int64]            # [K, C] symbols of the kept prompt frames
    gains: NDArray[np.int64]        # [K]
    steps: NDArray[np.int64]        # [K] stream step index of every frame
    latent: Tensor                  # [1, C + 1, K] their dequantized latent
    audio: NDArray[np.float32]      # [n] the prompt's decoded audio (6 kbps stream)


def empty_context(bins: int) -> Context:
    return Context(np.zeros((0, bins), np.int64), np.zeros(0, np.int64),
                   np.zeros(0, np.int64), torch.zeros(1, bins + 1, 0), np.zeros(0, np.float32))


def prompt_context(codec: Any, audio: NDArray[np.float32]) -> Context:
    """Mono model-rate audio -> its 6 kbps symbols and decoded audio (see module doc)."""
    try:
        data = codec.encode(audio, codec.model_rate, kbps=KBPS)
    except UsageError as exc:      # the user gave no --kbps: say what is wrong with the prompt
        raise UsageError(f"the prompt ({len(audio) / codec.model_rate:.3g} s) is too short to "
                         f"encode at {KBPS:g} kbps; give a longer one") from exc
    decoded = codec.decode(data)[0][0]
    chunks = stream_symbols(codec, data)
    quantizer = codec.model.quantizer
    q = np.concatenate([c.coefficients[0].T for c, _ in chunks])
    gains = np.concatenate([c.gains[0] for c, _ in chunks])
    steps = np.concatenate([c.frame_steps for c, _ in chunks])
    latent = torch.cat([quantizer.dequantize(c.coefficients, c.gains, c.frame_steps, c.noise, i,
                                             *_envelope_arg(c))
                        for i, (c, _) in enumerate(chunks)], dim=2)
    hop = codec.model.geometry.hop_length
    keep = (len(decoded) - 1) // hop + 2 if len(decoded) else 0
    return Context(q[:keep].astype(np.int64), gains[:keep].astype(np.int64),
                   steps[:keep].astype(np.int64), latent[:, :, :keep], decoded)


def _envelope_arg(chunk: Any) -> tuple[Any, ...]:
    """(device, envelope) for codecs whose chunks carry a noise-fill envelope, else ()."""
    envelope = getattr(chunk, "envelope", None)
    return () if envelope is None else ("cpu", envelope)


def _sample(logits: Tensor, temperature: float, generator: torch.Generator) -> Tensor:
    """[..., K] logits -> [...] indices drawn from softmax(logits / temperature)."""
    probs = torch.softmax(logits.double() / temperature, dim=-1).reshape(-1, logits.shape[-1])
    return torch.multinomial(probs, 1, generator=generator).reshape(logits.shape[:-1])


def _symbols(classes: Tensor, alphabet: int, generator: torch.Generator) -> Tensor:
    """Class indices -> symbols; an escape gets a random sign and A + n, n Elias-gamma."""
    q = classes - alphabet
    escaped = classes == 2 * alphabet + 1
    if escaped.any():
        count = int(escaped.sum())
        u = torch.rand(count, 3, generator=generator, dtype=torch.float64)
        k = torch.floor(-torch.log2(1.0 - u[:, 0])).clamp(max=10)    # P(k) = 2^-(k+1)
        n = torch.floor(2.0 ** k * (1.0 + u[:, 1])).long()          # uniform in [2^k, 2^k+1)
        sign = torch.where(u[:, 2] < 0.5, -1, 1)
        q[escaped] = sign * (alphabet + n)
    return q


class Sampler:
    """Frame-by-frame sampling of gains and symbols with a fixed step."""

    def __init__(self, model: ContextModel, step: int, temperature: float,
                 generator: torch.Generator) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self.model, self.step = model, int(step)
        self.temperature, self.generator = float(temperature), generator
        self.layout = model.layout

    @torch.inference_mode()
    def frames(self, context: Context, count: int, progress: bool = False
               ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """`count` new frames after the context: symbols [count, C], gains [count]."""
        bins = self.model.config.bins
        q = np.zeros((HISTORY + count, bins), np.int64)
        gains = np.full(HISTORY + count, -1, np.int64)
        steps = np.full(HISTORY + count, -1, np.int64)
        past = min(HISTORY, len(context.gains))
        if past:
            q[HISTORY - past:HISTORY] = context.q[-past:]
            gains[HISTORY - past:HISTORY] = context.gains[-past:]
            steps[HISTORY - past:HISTORY] = context.steps[-past:]
        steps[HISTORY:] = self.step
        bar = _bar(count, progress)
        for t in range(HISTORY, HISTORY + count):
            window = slice(t - HISTORY, t + 1)
            qt = torch.from_numpy(q[window])[None]
            gt, st = torch.from_numpy(gains[window])[None], torch.from_numpy(steps[window])[None]
            feats = self.model.features(qt)
            x, summary = self.model.encode_features(feats)
            gain = _sample(self.model.gain_logits(summary, gt, st), self.temperature,
                           self.generator)
            gains[t] = int(gain[0, 0])
            gt = torch.from_numpy(gains[window])[None]
            level = torch.from_numpy(frame_levels(self.layout, gains[t:t + 1], steps[t:t + 1]))
            sign = self.model.sign_term(feats, x) if self.model.config.signs > 1 else None
            q[t] = self._frame(x, summary, gt, level[None], sign)
            bar.update(1)
        bar.close()
        return q[HISTORY:HISTORY + count], gains[HISTORY:HISTORY + count]

    def _sample_bins(self, logits: Tensor, bins: Tensor | None = None) -> NDArray[np.int64]:
        """Symbols drawn for `bins` ([C] bool; None: all) from logits [1, 1, C, K]."""
        picked = logits[0, 0] if bins is None else logits[0, 0, bins]
        classes = _sample(picked, self.temperature, self.generator)
        return _symbols(classes, self.model.config.alphabet, self.generator).numpy()

    def _frame(self, x: Tensor, summary: Tensor, gains: Tensor, level: Tensor,
               sign: Tensor | None = None) -> NDArray[np.int64]:
        """One frame's symbols: all bins at once, or (multi-pass model) pass by pass,
        each pass's bins drawn given the bins drawn in the passes before (`sign`: the
        model's sign term, added to every pass's logits)."""
        base = self.model.coef_base(x, summary, gains, level)
        extra = 0.0 if sign is None else sign
        passes = self.model.config.passes
        if passes == 1:
            return self._sample_bins(self.model.coef_head(base) + extra)
        order = pass_of_bin(self.model.config.bins, passes)
        q = np.zeros(self.model.config.bins, np.int64)
        for p in range(passes):
            current = current_features(torch.from_numpy(q)[None, None], order < p) if p else None
            logits = self.model.coef_head(base, current) + extra
            q[(order == p).numpy()] = self._sample_bins(logits, order == p)
        return q


def _bar(total: int, enabled: bool) -> Any:
    from tqdm import tqdm
    return tqdm(total=total, unit="frame", desc="generate", disable=not enabled, leave=False)


def generate(codec: Any, model: ContextModel, seconds: float, seed: int = 0,
             prompt: Context | None = None, temperature: float = 1.0, step: int | None = None,
             progress: bool = False) -> NDArray[np.float32]:
    """Mono model-rate audio [n + seconds * rate]: the prompt's decoded audio (n samples,
    none without a prompt), then `seconds` of generated audio."""
    if not seconds >= 0:
        raise ValueError(f"seconds must be >= 0, got {seconds!r}")
    hop = codec.model.geometry.hop_length
    context = prompt or empty_context(model.config.bins)
    n, length = len(context.audio), int(round(seconds * codec.model_rate))
    total_frames = (n + length - 1) // hop + 2 if n + length else 0
    count = max(0, total_frames - len(context.gains))
    generator = torch.Generator().manual_seed(int(seed))
    if step is None:
        step = int(context.steps[-1]) if len(context.steps) else 128
    q, gains = Sampler(model, step, temperature, generator).frames(context, count, progress)
    layout = codec.model.config.layout()
    noise = np.zeros((1, layout.num_bands, layout.noise_segments(count)), np.int64)
    latent = codec.model.quantizer.dequantize(q.T[None], gains[None], np.full(count, step),
                                              noise, int(seed))
    with torch.inference_mode():
        full = torch.cat([context.latent.float(), latent], dim=2).to(codec.device)
        audio = (codec.model.decoder(full)[0, 0].float().cpu().numpy() if full.shape[-1]
                 else np.zeros(0, np.float32))
    audio = audio[codec.model.geometry.encoder_delay:][:n + length].astype(np.float32)
    audio[:n] = context.audio
    return audio


MAX_SECONDS = 3600.0
"""Longest generation accepted (an hour), so a typo cannot run for days."""


def _model_for(codec: Any, weights: str | None) -> tuple[ContextModel, dict[str, Any]]:
    """The context model for this codec, loaded once per (codec, weights) and cached."""
    from codec.context import store
    cache = codec.__dict__.setdefault("_context_models", {})
    if weights not in cache:
        cache[weights] = store.load(codec, weights)
    return cache[weights]


def prompt_audio(audio: Any, sample_rate: int, model_rate: int) -> NDArray[np.float32]:
    """Any prompt -> mono (channel mean) float32 at the model rate."""
    x = audio_io.to_float32(audio)
    x = x[None] if x.ndim == 1 else x
    mono = x.mean(axis=0, keepdims=True).astype(np.float32)
    return audio_io.resample(mono, audio_io.check_sample_rate(sample_rate), model_rate)[0]


def generate_audio(codec: Any, seconds: float, seed: int = 0, prompt: Any = None,
                   prompt_rate: int | None = None, temperature: float = 1.0,
                   weights: str | None = None, progress: bool = False
                   ) -> NDArray[np.float32]:
    """`Codec.generate`: mono audio [1, n] at the model rate (UsageError on bad arguments)."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not (
            0 <= seconds <= MAX_SECONDS):
        raise UsageError(f"seconds must be a number in 0..{MAX_SECONDS:g}, got {seconds!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
            0 < temperature <= 10):
        raise UsageError(f"temperature must be in (0, 10], got {temperature!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 63:
        raise UsageError(f"seed must be an integer in 0..2**63 - 1, got {seed!r}")
    model, meta = _model_for(codec, weights)
    context = None
    if prompt is not None:
        if prompt_rate is None:
            raise UsageError("a prompt needs its sample rate")
        context = prompt_context(codec, prompt_audio(prompt, prompt_rate, codec.model_rate))
    step = None if context is not None and len(context.steps) else int(meta["generation_step"])
    audio = generate(codec, model, float(seconds), seed, context, float(temperature), step,
                     progress)
    return audio[None]


def generate_file(codec: Any, dst: str, seconds: float, seed: int = 0,
                  prompt: str | None = None, temperature: float = 1.0, overwrite: bool = False,
                  weights: str | None = None, progress: bool = False) -> dict[str, Any]:
    """`aec generate`: write the audio to dst (wav/flac by extension, atomic); a report."""
    from codec.api import atomic_output, check_output
    kind, subtype = audio_io.output_format(dst)
    if dst != "-":
        check_output(Path(dst), overwrite)
    x, rate = audio_io.read_audio(prompt) if prompt is not None else (None, None)
    started = time.perf_counter()
    audio = generate_audio(codec, seconds, seed, x, rate, temperature, weights, progress)
    elapsed = time.perf_counter() - started
    with atomic_output(dst, overwrite) as f:
        audio_io.write_audio(f, audio, codec.model_rate, kind, subtype)
    generated = float(seconds)
    return {"output": dst, "seconds": round(audio.shape[1] / codec.model_rate, 4),
            "generated_seconds": generated, "prompt": prompt, "seed": seed,
            "temperature": temperature, "sample_rate": codec.model_rate,
            "wall_s": round(elapsed, 3),
            "realtime": round(generated / elapsed, 2) if elapsed > 0 and generated else None}
