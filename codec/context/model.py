"""The causal context model: past frames' symbols -> this frame's gain and symbols.

For frame t of a chunk it sees only frames t - HISTORY .. t - 1 of the same chunk
(zeros before the chunk's start, like the frozen tables' class 0), plus what a
decoder reads before the frame's coefficients: the step index of every frame and
the frame's own gain (the coder sends all gains of a chunk first). It outputs

- ``gain_logits`` [B, T, gain_max + 1]: the frame gain, from the past only (with
  the frame's step): this is what generation samples;
- ``coef_logits`` [B, T, C, 2A + 2]: each bin's symbol as a categorical over
  -A..A plus one escape class for |q| > A (then sign and |q| - A cost
  1 + Elias-gamma bits, counted in `escape_bits`).

Per-bin features of the past (signed and absolute log-magnitudes of the last two
frames, exponential averages over HISTORY frames) go through convolutions along
frequency; a frame summary (their mean over bins) carries global state; the
current frame's table base (band x level, exactly what the frozen tables key on)
and its gain change are added as embeddings. Small (tens of kB), CPU-friendly.

With ``passes=2`` a frame is predicted in two passes: the even bins from the past
only, then the odd bins from the past and the frame's even bins
(`current_features`), as a decoder that decodes the even bins first could do.
``passes=4`` (version 3) goes coarse to fine: bins 0 mod 4, then 2 mod 4, then
1 mod 4, then 3 mod 4, each pass seeing every bin decoded before it
(`pass_of_bin`). With ``signs=1`` (version 3) the past also brings signs
(`sign_features`: a steady tone's coefficient follows a two-frame recurrence).
With ``reach=1`` (version 3) the frame's decoded bins also reach
further along frequency (a dilated convolution, +-12 bins) and as a frame-level
summary (their mean over bins).
Training and measuring run every pass in one forward call.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import Tensor, nn

from codec.scales import ScaleLayout, band_levels

HISTORY = 16
"""Past frames the model reads (its receptive field in time)."""
EMA_DECAY = 0.75
"""Decay per frame of the two fast exponential averages of the past."""
SLOW_DECAY = 0.9
"""Decay per frame of the slow average of magnitudes (steady tones; version 2)."""
CONFIG_VERSION = 3
"""Version of the network layout written now; files of a version not in
READABLE_VERSIONS fail to load (WeightsError).
1: 5 past features, two frequency convolutions. 2: + a slow magnitude average and a
dilated frequency convolution (wider reach along frequency, for harmonics); the
noise-fill model's richer features and the noise-fill envelope model. 3: + 4-pass
(coarse-to-fine) frames, the `reach` layers on the frame's decoded bins and the
`signs` past features; a version-2 file is a version-3 network with passes <= 2,
reach 0 and signs 0, so it still loads."""
READABLE_VERSIONS = (2, 3)
PAST_FEATURES = 6
SIGN_FEATURES = 3
"""Extra past features of a model with ``signs=1`` (version 3): see `sign_features`;
``signs=2`` adds one more (`tone_prediction` with c fitted over two frames) and a
direct sign term on the logits (`ContextModel.sign_term`)."""
GAIN_DELTA = 8
"""Gain changes are clipped to -GAIN_DELTA..GAIN_DELTA for the embedding."""


@dataclass(frozen=True)
class ContextConfig:
    """Shape of the network (stored in the JSON config next to the weights)."""

    bins: int = 320
    num_bands: int = 22
    levels: int = 37
    gain_max: int = 47
    alphabet: int = 6             # A: classes -A..A plus escape
    hidden: int = 24
    num_steps: int = 256
    passes: int = 1               # 2 or 4: later bins also see the frame's decoded bins
    reach: int = 0                # 1: wider and frame-level use of the decoded bins (v3)
    signs: int = 0                # 1: past signs and a tone's recurrence as features;
                                  # 2: + a two-frame fit of it and a direct sign term (v3)
    version: int = CONFIG_VERSION

    @property
    def classes(self) -> int:
        return 2 * self.alphabet + 2

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def for_layout(cls, layout: ScaleLayout, **kw: int) -> ContextConfig:
        return cls(bins=layout.coefficients, num_bands=layout.num_bands, levels=layout.levels,
                   gain_max=layout.gain_max, **kw)


def past_features(q: Tensor) -> Tensor:
    """q [B, T + H, C] symbols (H = HISTORY leading frames of history, zeros before a
    chunk) -> features [B, 6, T, C] of frames t - H .. t - 1 for each of the last T:
    signed and absolute log-magnitude of t - 1, absolute of t - 2, fast averages of the
    nonzero mask and magnitude, a slow average of magnitude."""
    a = torch.log1p(q.abs().float())
    s = torch.sign(q.float()) * a
    nz = (q != 0).float()
    total = q.shape[1]
    frames = total - HISTORY
    last = lambda x, k: x[:, HISTORY - k: total - k]     # noqa: E731  frame t - k
    feats = [last(s, 1), last(a, 1), last(a, 2), _ema(nz, EMA_DECAY)[:, :frames],
             _ema(a, EMA_DECAY)[:, :frames], _ema(a, SLOW_DECAY)[:, :frames]]
    return torch.stack(feats, dim=1)


def sign_features(q: Tensor) -> Tensor:
    """q [B, T + H, C] -> [B, 3, T, C]: signed log-magnitudes of frames t - 2 and t - 3,
    and a steady tone's prediction of frame t. A sinusoid's MDCT coefficient in one bin
    follows x_t = c x_{t-1} - x_{t-2} (c = 2 cos of its phase advance per hop), so with
    c estimated from the past, (x_{t-1} + x_{t-3}) / x_{t-2} clipped to [-2, 2], the
    signed log-magnitude of c x_{t-1} - x_{t-2} predicts the sign a frame's previous
    sign alone does not."""
    return torch.stack([_signed(_frame(q, 2)), _signed(_frame(q, 3)), tone_prediction(q, 1)],
                       dim=1)


def tone_prediction(q: Tensor, fit: int) -> Tensor:
    """q [B, T + H, C] -> [B, T, C]: signed log-magnitude of c x_{t-1} - x_{t-2}, c (the
    steady tone's 2 cos, clipped to [-2, 2]) fitted by least squares to the last `fit`
    triples (x_{t-1-k} + x_{t-3-k} = c x_{t-2-k}, k < fit)."""
    x = [_frame(q, k) for k in range(1, fit + 3)]
    if fit == 1:                                  # c = (x_{t-1} + x_{t-3}) / x_{t-2}
        num, den = x[0] + x[2], x[1]
    else:
        num = sum((x[k] + x[k + 2]) * x[k + 1] for k in range(fit))
        den = sum(x[k + 1] ** 2 for k in range(fit))
    c = torch.where(den != 0, num / torch.where(den != 0, den, 1.0), 0.0).clamp(-2, 2)
    return _signed(c * x[0] - x[1])


def _frame(q: Tensor, k: int) -> Tensor:
    """q [B, T + H, C] -> frames t - k of the last T frames, float."""
    return q[:, HISTORY - k: q.shape[1] - k].float()


def _signed(v: Tensor) -> Tensor:
    return torch.sign(v) * torch.log1p(v.abs())


def _ema(x: Tensor, decay: float) -> Tensor:
    """[B, T + H, C] -> [B, T, C]: normalized exponential average of the H frames before."""
    w = decay ** torch.arange(1, HISTORY + 1, dtype=torch.float32)
    kernel = (w / w.sum()).flip(0).view(1, 1, HISTORY, 1)
    return F.conv2d(x[:, None, :x.shape[1] - 1], kernel)[:, 0]


class ContextModel(nn.Module):
    """See the module docstring; `forward` gives (gain_logits, coef_logits)."""

    def __init__(self, config: ContextConfig) -> None:
        super().__init__()
        self.config = config
        h, c = config.hidden, config.bins
        inputs = PAST_FEATURES + (SIGN_FEATURES if config.signs else 0) + (config.signs > 1)
        self.past1 = nn.Conv2d(inputs, h, (1, 5), padding=(0, 2))
        if config.signs > 1:          # starts at zero: a model it is initialized from is kept
            self.sign_net = nn.Sequential(nn.Conv2d(inputs + h, 8, 1), nn.SiLU(),
                                          nn.Conv2d(8, 2, 1))
            nn.init.zeros_(self.sign_net[2].weight)
            nn.init.zeros_(self.sign_net[2].bias)
        self.past2 = nn.Conv2d(h, h, (1, 5), padding=(0, 2))
        self.past3 = nn.Conv2d(h, h, (1, 5), padding=(0, 8), dilation=(1, 4))
        self.summary = nn.Linear(h, h)
        self.table = nn.Embedding(config.num_bands * config.levels, h)
        self.delta = nn.Embedding(2 * GAIN_DELTA + 2, h)        # last index: chunk's first frame
        self.mix = nn.Conv2d(h, h, (1, 3), padding=(0, 1))
        self.head = nn.Conv2d(h, config.classes, 1)
        self.gain_prev = nn.Embedding(config.gain_max + 2, h)   # last index: none
        self.gain_prev2 = nn.Embedding(config.gain_max + 2, h)
        self.gain_step = nn.Embedding(config.num_steps, h)
        self.gain_out = nn.Sequential(nn.SiLU(), nn.Linear(h, h), nn.SiLU(),
                                      nn.Linear(h, config.gain_max + 1))
        if config.passes not in PASSES:
            raise ValueError(f"passes must be one of {PASSES}, got {config.passes}")
        if config.passes > 1:
            self.current = nn.Conv2d(3, h, (1, 5), padding=(0, 2))
        if config.passes > 1 and config.reach:
            self.current_wide = nn.Conv2d(3, h, (1, 9), padding=(0, 12), dilation=(1, 3))
            self.current_frame = nn.Linear(3, h)
        self.noise: nn.Module | None = None    # a `codec.context.noise.NoiseModel`, optional
        self.envelope: nn.Module | None = None   # a `codec.context.envelope.EnvelopeModel`
        with torch.no_grad():                  # start near the truth: most symbols are 0
            self.head.bias[config.alphabet] += 4.0
        self.register_buffer("band_of_bin", torch.zeros(c, dtype=torch.long), persistent=False)

    def set_layout(self, layout: ScaleLayout) -> None:
        """The codec's scale layout (band of every bin, levels): needed before use."""
        self.band_of_bin = torch.from_numpy(np.array(layout.band_of_bin())).long()
        self.layout = layout

    def forward(self, q: Tensor, gains: Tensor, steps: Tensor, levels: Tensor
                ) -> tuple[Tensor, Tensor]:
        """q [B, T + H, C] (history first), gains and steps [B, T + H] (-1 where no frame
        precedes in the chunk), levels [B, T] of the last T frames -> logits."""
        feats = self.features(q)
        x, summary = self.encode_features(feats)
        gain = self.gain_logits(summary, gains, steps)
        base = self.coef_base(x, summary, gains, levels)
        logits = self.coef_head(base)
        now = q[:, HISTORY:]
        order = pass_of_bin(now.shape[-1], self.config.passes).to(now.device)
        for p in range(1, self.config.passes):
            later = self.coef_head(base, current_features(now, order < p))
            logits = torch.where((order == p)[None, None, :, None], later, logits)
        if self.config.signs > 1:
            logits = logits + self.sign_term(feats, x)
        return gain, logits

    def encode_features(self, feats: Tensor) -> tuple[Tensor, Tensor]:
        """`features` -> per-bin features of the past [B, h, T, C], summary [B, T, h]."""
        x = F.silu(self.past1(feats))
        x = F.silu(self.past2(x))
        x = x + F.silu(self.past3(x))
        return x, self.summary(x.mean(dim=3).transpose(1, 2))

    def features(self, q: Tensor) -> Tensor:
        """q [B, T + H, C] -> every past feature the network reads [B, inputs, T, C]."""
        feats = [past_features(q)]
        if self.config.signs:
            feats.append(sign_features(q))
        if self.config.signs > 1:
            feats.append(tone_prediction(q, 2)[:, None])
        return torch.cat(feats, dim=1)

    def sign_term(self, feats: Tensor, x: Tensor) -> Tensor:
        """`features` and the past's per-bin features x -> [B, T, C, 2A + 2] (signs=2):
        added to the logits, s0 + s1 log(1 + |v|) times the sign of class v (0 for zero and
        escape), s0 and s1 per bin from both: the odds of + against - from the
        steady-tone prediction, here and (through x) in the neighbouring bins."""
        a = self.config.alphabet
        v = torch.arange(-a, a + 2, dtype=torch.float32, device=feats.device)
        v[-1] = 0.0                                                     # escape
        s = self.sign_net(torch.cat([feats, x], dim=1)).permute(0, 2, 3, 1)   # [B, T, C, 2]
        return torch.sign(v) * (s[..., :1] + s[..., 1:] * torch.log1p(v.abs()))

    def gain_logits(self, summary: Tensor, gains: Tensor, steps: Tensor) -> Tensor:
        """[B, T, gain_max + 1]: each frame's gain from the past gains, its step, the summary."""
        none = self.config.gain_max + 1
        g_prev, g_prev2 = gains[:, HISTORY - 1:-1], gains[:, HISTORY - 2:-2]
        step = steps[:, HISTORY:].clamp(0, self.config.num_steps - 1)
        return self.gain_out(summary + self.gain_prev(torch.where(g_prev < 0, none, g_prev))
                             + self.gain_prev2(torch.where(g_prev2 < 0, none, g_prev2))
                             + self.gain_step(step))

    def coef_base(self, x: Tensor, summary: Tensor, gains: Tensor, levels: Tensor) -> Tensor:
        """[B, h, T, C]: what every pass shares (past features + table, gain change and
        summary embeddings)."""
        g_now, g_prev = gains[:, HISTORY:], gains[:, HISTORY - 1:-1]
        delta = (g_now - g_prev).clamp(-GAIN_DELTA, GAIN_DELTA) + GAIN_DELTA
        delta = torch.where(g_prev < 0, 2 * GAIN_DELTA + 1, delta)
        table = self.band_of_bin[None, None, :] * self.config.levels + levels[:, :, None]
        cond = self.table(table).permute(0, 3, 1, 2)                # [B, h, T, C]
        cond = cond + (self.delta(delta) + summary).transpose(1, 2)[..., None]
        return x + cond

    def coef_head(self, base: Tensor, current: Tensor | None = None) -> Tensor:
        """`coef_base` -> [B, T, C, 2A + 2]: each bin's symbol logits (for a later pass of
        a multi-pass model, given `current_features` of the bins of this frame decoded in
        the passes before; None: the first pass)."""
        if self.config.passes > 1 and current is not None:
            here = self.current(current)
            if self.config.reach:
                frame = self.current_frame(current.mean(dim=3).transpose(1, 2))   # [B, T, h]
                here = here + self.current_wide(current) + frame.transpose(1, 2)[..., None]
            base = base + here
        z = F.silu(self.mix(F.silu(base)))
        return self.head(z).permute(0, 2, 3, 1)


PASSES = (1, 2, 4)
"""Passes a frame may be decoded in."""
COARSE_TO_FINE = (0, 2, 1, 3)
"""Pass of a bin by bin mod 4 in a 4-pass model: 0, 2, 1, 3 mod 4 in that order."""


def pass_of_bin(bins: int, passes: int) -> Tensor:
    """[C] long: the pass (0..passes-1) in which each bin is predicted."""
    k = torch.arange(bins)
    if passes == 4:
        return torch.tensor(COARSE_TO_FINE)[k % 4]
    return k % passes


def current_features(q: Tensor, known: Tensor) -> Tensor:
    """q [B, T, C] of the current frames, known [C] bool -> [B, 3, T, C]: signed and
    absolute log-magnitude of the known bins (0 elsewhere) and the known mask."""
    mask = known.to(q.device).float()[None, None, :].expand(q.shape)
    a = torch.log1p(q.abs().float()) * mask
    return torch.stack([torch.sign(q.float()) * a, a, mask], dim=1)


def frame_levels(layout: ScaleLayout, gains: NDArray[np.integer],
                 steps: NDArray[np.integer]) -> NDArray[np.int64]:
    """The frozen tables' level of each frame (0..L-1) from its gain and stream step."""
    return band_levels(layout, np.maximum(np.asarray(gains), 0), np.asarray(steps))


def coef_classes(q: Tensor, alphabet: int) -> Tensor:
    """Symbols -> class index: q + A for |q| <= A, else the escape class 2A + 1."""
    return torch.where(q.abs() <= alphabet, q + alphabet, torch.full_like(q, 2 * alphabet + 1))


def escape_bits(q: Tensor, alphabet: int) -> Tensor:
    """Extra bits of an escaped symbol: its sign (1) + Elias-gamma of |q| - A (>= 1)."""
    n = (q.abs() - alphabet).clamp_min(1).float()
    gamma = 2.0 * torch.floor(torch.log2(n)) + 1.0
    return torch.where(q.abs() > alphabet, 1.0 + gamma, torch.zeros_like(gamma))


def nats_to_bits(x: Tensor) -> Tensor:
    return x / math.log(2.0)
