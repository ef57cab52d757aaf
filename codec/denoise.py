"""The denoising encoder: MDCT, then a learned per-bin gain mask, for the same stream.

::

    x [B, 1, T] --MDCT--> y [B, C, F] --features--> log power (+ noise floor) [B, kC, F]
        --MaskNet (convs over frames, radius R)--> gain [B, C, F] in (0, 1)
    y * gain --> the plain encoder's coefficients (rate control, tables, stream unchanged)

The shipped file is version 5 (both features, the strength head, the clean
pass-through and the stationary-noise gain, below).

The shipped encoder is a fixed MDCT, so "a second encoder" is this front end:
it estimates the clean signal's coefficients from the noisy ones and hands them
to the unchanged quantizer and entropy coder. Every aec decoder plays the
result; the stream format does not change.

Weights are one small file next to the base model, ``NAME.denoise.safetensors``,
with its config and the SHA-256 of the decoder it was trained for in the
safetensors metadata: loading it against other base weights raises
WeightsError. `Codec` reads it on the first ``denoise=True`` encode only.

Version 2 files (``floor_frames > 0``) add a second feature per bin: a noise
floor estimate, the minimum over +-floor_frames frames of the power smoothed
over 3 x 3 (bins x frames) neighbours ("minimum statistics"). It tells the net
how far each bin sits above the quiet level around it, so a clean recording
(whose floor is far below its speech) can pass almost untouched while a noisy
one is masked. Version 1 files (log power only) still load.

Version 3 files (``strength_head``) add a per-frame strength s in (0, 1), a
1x1 conv plus sigmoid over both features: the applied gain is
``1 - s * (1 - mask)``. It lets the net learn to relax the whole frame towards
pass-through when the floor says the input is clean, rather than relying on
the mask net to recognise every clean sound. (Trained, it stays near 1: it
did not learn to relax.)

Version 4 files (``pass_db``) keep version 3's net and add a fixed rule at
encoding time (`DenoisingEncoder.applied_gain`): where the local SNR, the sound's
power over the noise floor's within the net's radius, is far above what mixtures
at the training SNRs (-5 to 20 dB) reach, the gain is relaxed towards 1. There,
the noise the mask could remove is 50 dB or more below the sound, so masking can
gain almost nothing and a wrong mask costs a lot: on one held-out clean clip (a
held "n") the net removed 23 dB of the speech. Nothing is learned, and training
ignores it (it trains `gain`).

Version 5 files (``wiener``) add a second fixed rule at encoding time: the
mask is multiplied by a Wiener-like gain against stationary noise,
``max(gain_floor, 1 - alpha * N / P)`` per bin and frame (`stationary_gain`),
where P is the power averaged over ``bins`` x ``frames`` neighbours and N the
minimum of that over +-``half_window`` frames: minimum statistics, a noise
profile measured on the input itself, as sox's noisered takes one from a
noise-only stretch. The net, trained on every kind of noise at once, left
steady noise (hum, brown noise) under-suppressed; the rule removes what is
present throughout the window (2 s for the shipped ±75 frames). Its settings were chosen on train-split validation
(`bench.denoise_val --wiener`), not on the bench's held-out clips. The
pass-through then relaxes the product, so clean input stays untouched.

Windowed encoding equals whole-signal encoding when a window carries
`DenoisingEncoder.context_frames` frames of context each side: the mask net
reaches `radius` frames, the floor feature `floor_frames + 1` more, and the
MDCT frame at the edge needs one frame more. The pass-through's window is the
net's radius over the same features, so it needs no more; the Wiener gain
reaches ``half_window + frames // 2`` frames, and the larger reach counts.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from codec.errors import WeightsError
from codec.model.mdct import MDCT
from codec.weights import model_paths

DENOISE_SUFFIX = ".denoise.safetensors"
FORMAT_TAG = "aec-denoise-1"
#: Log-power features: 10*log10(y^2 + floor) with the floor at -100 dBFS per bin,
#: then shifted and scaled to about unit range.
POWER_FLOOR = 1e-10
FEATURE_OFFSET_DB = 60.0
FEATURE_SCALE_DB = 20.0


@dataclass(frozen=True)
class DenoiseConfig:
    """Sizes of the mask net, stored as JSON in the weights file's metadata."""

    bins: int = 320
    hidden: int = 160
    layers: int = 5
    kernel: int = 3
    dilations: tuple[int, ...] = (1, 2, 4, 8, 1)   # one per layer; () means all 1
    floor_frames: int = 0      # noise-floor feature half-window (frames); 0: none (version 1)
    strength_head: bool = False   # per-frame strength from the features (version 3)
    pass_db: tuple[float, ...] = ()   # (from, full): clean pass-through (version 4); (): off
    #: (alpha, gain_floor, half_window, frames, bins): stationary-noise gain (version 5); (): off
    wiener: tuple[float, ...] = ()
    version: int = 1

    @property
    def features(self) -> int:
        """Input features per bin: log power, plus the noise floor in version 2."""
        return 2 if self.floor_frames else 1

    @property
    def feature_radius(self) -> int:
        """Frames each side one feature frame depends on (the floor's window and smoothing)."""
        return self.floor_frames + 1 if self.floor_frames else 0

    def dilation(self, layer: int) -> int:
        return self.dilations[layer] if self.dilations else 1

    @property
    def radius(self) -> int:
        """Frames of features each side one output frame depends on."""
        return sum(self.dilation(i) * (self.kernel // 2) for i in range(self.layers))

    @property
    def wiener_radius(self) -> int:
        """Frames of coefficients each side the Wiener gain of one frame depends on."""
        if not self.wiener:
            return 0
        return int(self.wiener[2]) + int(self.wiener[3]) // 2

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DenoiseConfig:
        try:
            data = json.loads(text)
            data["dilations"] = tuple(int(d) for d in data.get("dilations", ()))
            data["pass_db"] = tuple(float(d) for d in data.get("pass_db", ()))
            data["wiener"] = tuple(float(d) for d in data.get("wiener", ()))
            config = cls(**data)
        except (ValueError, TypeError, AttributeError) as exc:
            raise WeightsError(f"malformed denoiser config: {exc}") from exc
        if min(config.bins, config.hidden, config.layers, config.kernel,
               *config.dilations) < 1 or config.kernel % 2 == 0 or \
                config.version != config.expected_version or config.floor_frames < 0 or \
                (config.strength_head and not config.floor_frames) or \
                not _valid_pass(config) or not _valid_wiener(config) or \
                len(config.dilations) not in (0, config.layers):
            raise WeightsError(f"unsupported denoiser config {config}")
        return config

    def versioned(self) -> DenoiseConfig:
        """This config with `version` set to what its fields make it (`expected_version`)."""
        return replace(self, version=self.expected_version)

    @property
    def expected_version(self) -> int:
        """1: log power only; 2: plus the noise floor; 3: plus the strength head; 4: pass_db;
        5: the Wiener gain."""
        if self.wiener:
            return 5
        if self.pass_db:
            return 4
        return 3 if self.strength_head else 2 if self.floor_frames else 1


def _valid_pass(config: DenoiseConfig) -> bool:
    """pass_db is empty, or (from, full) with from < full, over a noise-floor feature."""
    if not config.pass_db:
        return True
    return (len(config.pass_db) == 2 and bool(config.floor_frames)
            and all(math.isfinite(d) for d in config.pass_db)
            and config.pass_db[0] < config.pass_db[1])


#: Bounds on the Wiener gain's windows (frames, frames, bins): far beyond any sensible
#: setting, so that a forged file cannot ask for an absurd pooling window.
WIENER_MAX = (7500, 999, 999)


def _valid_wiener(config: DenoiseConfig) -> bool:
    return not config.wiener or valid_wiener(config.wiener)


def valid_wiener(setting: tuple[float, ...]) -> bool:
    """(alpha > 0, 0 <= gain_floor <= 1, half_window >= 1, frames and bins odd >= 1), the
    last three whole numbers within WIENER_MAX."""
    if len(setting) != 5 or not all(math.isfinite(v) for v in setting):
        return False
    alpha, gain_floor, half_window, frames, bins = setting
    whole = all(v == int(v) for v in (half_window, frames, bins))
    within = all(1 <= v <= top for v, top in zip((half_window, frames, bins), WIENER_MAX))
    return (whole and within and alpha > 0 and 0 <= gain_floor <= 1
            and frames % 2 == 1 and bins % 2 == 1)


def log_power_features(y: Tensor) -> Tensor:
    """Coefficients [B, C, F] -> normalised log power [B, C, F] (level in dB / 20)."""
    power_db = 10.0 * torch.log10(y.square() + POWER_FLOOR)
    return (power_db + FEATURE_OFFSET_DB) / FEATURE_SCALE_DB


def smoothed_power(y: Tensor) -> Tensor:
    """Coefficients [B, C, F] -> power averaged over 3 x 3 bins x frames [B, C, F] (zero
    padded, edges averaged over what they have): MDCT power flickers with phase."""
    return torch.nn.functional.avg_pool2d(y.square().unsqueeze(1), 3, stride=1, padding=1,
                                          count_include_pad=False).squeeze(1)


def noise_floor_features(y: Tensor, half_window: int) -> Tensor:
    """Coefficients [B, C, F] -> normalised noise floor [B, C, F] (module docstring).

    Power averaged over 3 x 3 bins x frames (zero padded: MDCT power flickers with
    phase, the average is steadier), then the minimum over +-half_window frames
    (edges see a shorter window, the same in a chunk and in the whole signal).
    """
    power_db = 10.0 * torch.log10(smoothed_power(y) + POWER_FLOOR)
    floor_db = -torch.nn.functional.max_pool1d(-power_db, 2 * half_window + 1, stride=1,
                                               padding=half_window)
    return (floor_db + FEATURE_OFFSET_DB) / FEATURE_SCALE_DB


def local_snr_db(y: Tensor, floor: Tensor, half_window: int) -> Tensor:
    """Coefficients [B, C, F] and their floor feature -> local SNR in dB [B, 1, F].

    The 3 x 3-smoothed power of all bins over +-half_window frames, over the noise
    floor's power summed the same way: how far the sound sits above the quiet level
    around it. Mixtures at the training SNRs (-5 to 20 dB) stay mostly under about
    35 dB here; clean recordings with quiet pauses reach 60-80 dB.
    """
    power = smoothed_power(y).sum(dim=1, keepdim=True)
    floor_power = torch.pow(10.0, (floor * FEATURE_SCALE_DB - FEATURE_OFFSET_DB) / 10.0)
    pooled = [torch.nn.functional.avg_pool1d(v, 2 * half_window + 1, stride=1,
                                             padding=half_window, count_include_pad=False)
              for v in (power, floor_power.sum(dim=1, keepdim=True))]
    return 10.0 * torch.log10(pooled[0] / pooled[1])


def stationary_gain(y: Tensor, wiener: tuple[float, ...]) -> Tensor:
    """Coefficients [B, C, F] -> the version-5 Wiener gain [B, C, F] (module docstring).

    P: power averaged over `bins` x `frames` neighbours (edges over what they have);
    N: P's minimum over +-`half_window` frames, in dB as the floor feature takes it;
    gain: 1 - alpha * N / P, no lower than `gain_floor`.
    """
    alpha, gain_floor, half_window, frames, bins = wiener
    window = (int(bins), int(frames))
    power = torch.nn.functional.avg_pool2d(
        y.square().unsqueeze(1), window, stride=1, padding=(window[0] // 2, window[1] // 2),
        count_include_pad=False).squeeze(1) + POWER_FLOOR
    power_db = 10.0 * torch.log10(power)
    floor_db = -torch.nn.functional.max_pool1d(-power_db, 2 * int(half_window) + 1, stride=1,
                                               padding=int(half_window))
    return (1.0 - alpha * torch.pow(10.0, floor_db / 10.0) / power).clamp(min=gain_floor)


def features(y: Tensor, config: DenoiseConfig) -> Tensor:
    """The mask net's input [B, features * C, F]: log power (and the noise floor)."""
    power = log_power_features(y)
    if not config.floor_frames:
        return power
    return torch.cat([power, noise_floor_features(y, config.floor_frames)], dim=1)


class MaskNet(nn.Module):
    """log power [B, C, F] -> gain mask [B, C, F] in (0, 1); 'same' convs over frames.

    The last layer's bias starts high, so an untrained net passes nearly everything.
    """

    def __init__(self, config: DenoiseConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = config.bins * config.features
        for i in range(config.layers):
            dilation = config.dilation(i)
            layers += [nn.Conv1d(width, config.hidden, config.kernel, dilation=dilation,
                                 padding=dilation * (config.kernel // 2)), nn.SiLU()]
            width = config.hidden
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv1d(width, config.bins, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.constant_(self.out.bias, 4.0)
        self.strength = nn.Conv1d(config.bins * config.features, 1, 1) \
            if config.strength_head else None
        if self.strength is not None:     # starts at s = 1 - 3e-4: the plain mask
            nn.init.zeros_(self.strength.weight)
            nn.init.constant_(self.strength.bias, 8.0)

    def forward(self, features: Tensor) -> Tensor:
        mask = torch.sigmoid(self.out(self.body(features)))
        if self.strength is None:
            return mask
        return 1.0 - torch.sigmoid(self.strength(features)) * (1.0 - mask)


class DenoisingEncoder(nn.Module):
    """x [B, 1, T] -> denoised MDCT coefficients [B, C, T / C]: a drop-in encoder."""

    def __init__(self, config: DenoiseConfig) -> None:
        super().__init__()
        self.config = config
        self.mdct = MDCT(config.bins)
        self.mask = MaskNet(config)

    @property
    def context_frames(self) -> int:
        """Frames of context each side for windowed == whole (module docstring)."""
        config = self.config
        return max(config.radius + config.feature_radius, config.wiener_radius) + 1

    def gain(self, y: Tensor) -> Tensor:
        """Noisy coefficients [B, C, F] -> the mask [B, C, F] in (0, 1)."""
        return self.mask(features(y, self.config))

    def applied_gain(self, y: Tensor) -> Tensor:
        """The mask, relaxed to 1 where the input is far cleaner than any training mixture.

        Version 4 (`pass_db` = (from, full)): where the local SNR (`local_snr_db`, over
        the net's own radius) exceeds `from` dB, the gain moves linearly towards 1,
        reaching it at `full` dB: there is almost no noise left to remove, and on such
        input the net can mistake a held vowel or nasal for hum. Training uses `gain`
        (no pass). Version 5 (`wiener`) multiplies the mask by `stationary_gain` first.
        """
        feats = features(y, self.config)
        gain = self.mask(feats)
        if self.config.wiener:
            gain = gain * stationary_gain(y, self.config.wiener)
        if not self.config.pass_db:
            return gain
        low, full = self.config.pass_db
        floor = feats[:, self.config.bins:]
        share = ((local_snr_db(y, floor, self.config.radius) - low) / (full - low)).clamp(0, 1)
        return gain + share * (1.0 - gain)

    def denoise(self, y: Tensor) -> Tensor:
        """Noisy coefficients [B, C, F] -> estimated clean coefficients [B, C, F]."""
        return y * self.applied_gain(y)

    def forward(self, x: Tensor) -> Tensor:
        return self.denoise(self.mdct(x))


def denoise_path(weights: str | Path | None) -> Path:
    """The denoiser file of a base model given as `Codec.load` takes it (None: shipped)."""
    config_path = model_paths(weights)[0]
    return config_path.with_name(config_path.name[: -len(".json")] + DENOISE_SUFFIX)


def save_denoiser(path: Path, encoder: DenoisingEncoder, decoder_sha256: bytes) -> None:
    """Write the mask net (float16, to stay small) with config and base identity, atomically.

    The metadata is a single key: safetensors keeps metadata as an unordered map,
    so one JSON string keeps the file's bytes the same for the same weights.
    """
    from safetensors.torch import save

    state = {k: v.detach().cpu().to(torch.float16).contiguous()
             for k, v in encoder.mask.state_dict().items()}
    meta = {"aec": json.dumps({"format": FORMAT_TAG, "config": asdict(encoder.config),
                               "decoder_sha256": decoder_sha256.hex()}, sort_keys=True)}
    data = save(state, metadata=meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _read_meta(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(tensors as numpy, parsed metadata); any problem -> WeightsError."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            meta = json.loads((handle.metadata() or {}).get("aec", "{}"))
            arrays = {k: handle.get_tensor(k) for k in handle.keys()}
    except (OSError, SafetensorError, ValueError) as exc:
        raise WeightsError(f"denoiser weights unreadable: {path}: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_TAG:
        raise WeightsError(f"{path}: not an aec denoiser file (format {FORMAT_TAG!r} expected)")
    return arrays, meta


def load_denoiser(weights: str | Path | None, decoder_sha256: bytes,
                  device: torch.device | str = "cpu") -> DenoisingEncoder:
    """The denoising encoder that belongs to a base model, in eval mode.

    WeightsError when the base model has no denoiser file, or when the file was
    trained for other decoder weights (its stored SHA-256 differs).
    """
    path = denoise_path(weights)
    if not path.is_file():
        raise WeightsError(f"these weights carry no denoising encoder ({path.name} not found "
                           f"next to the model); train one with python -m codec.train.denoise")
    arrays, meta = _read_meta(path)
    if meta.get("decoder_sha256") != decoder_sha256.hex():
        raise WeightsError(f"{path.name} was trained for decoder weights sha256 "
                           f"{meta.get('decoder_sha256')}, but the loaded model has "
                           f"{decoder_sha256.hex()}; retrain it for this model")
    encoder = DenoisingEncoder(DenoiseConfig.from_json(json.dumps(meta.get("config", {}))))
    state = {k: torch.from_numpy(v.astype("float32")) for k, v in arrays.items()}
    try:
        encoder.mask.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{path.name}: weights do not match its config: {exc}") from exc
    return encoder.to(device).eval().requires_grad_(False)


def parameter_count(encoder: DenoisingEncoder) -> int:
    """Learned parameters (for the model card)."""
    return sum(math.prod(p.shape) for p in encoder.mask.parameters())
