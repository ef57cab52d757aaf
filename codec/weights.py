"""Shipped weights <-> model: safetensors + JSON config, SHA-256 identity, no pickle.

A model named NAME is three files in one folder:

- ``NAME.json``: the `ModelConfig` (architecture, rate points, CDF precision);
- ``NAME.encoder.safetensors``: encoder weights (only encoding needs them);
- ``NAME.decoder.safetensors``: decoder weights, quantizer gains and the frozen
  integer CDF tables: everything decoding needs. The SHA-256 of this file's
  bytes is the model identity recorded in every `.aec` stream.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codec.errors import WeightsError

if TYPE_CHECKING:
    from codec.entropy import CdfTable
    from codec.model import Geometry
    from codec.scales import ScaleLayout

DEFAULT_MODEL = "aec-base"
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
CONFIG_VERSION = 1
TABLE_PREFIX = "cdf."          # CdfTable arrays inside the decoder file
QUANTIZER_PREFIX = "quantizer."
DECODER_PREFIX = "decoder."
ENCODER_PREFIX = "encoder."


@dataclass(frozen=True)
class RatePoint:
    """One operating point of the model: a gain vector and its CDF tables."""

    index: int
    nominal_kbps: float      # the training target
    measured_kbps: float     # payload-inclusive rate measured on held-out audio at export


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and rate points; serialized as JSON next to the weights."""

    name: str = DEFAULT_MODEL
    model_rate: int = 24000
    latent_channels: int = 64
    strides: tuple[int, ...] = (8, 5, 4, 2)                  # encoder order
    encoder_channels: tuple[int, ...] = (32, 64, 128, 256)
    decoder_channels: tuple[int, ...] = (384, 192, 96, 48)
    dilations: tuple[int, ...] = (1, 3)
    rate_points: tuple[RatePoint, ...] = field(default_factory=lambda: tuple(
        RatePoint(i, k, k) for i, k in enumerate((3.0, 6.0, 12.0, 24.0))))
    cdf_precision: int = 16
    version: int = CONFIG_VERSION
    arch: str = "autoencoder"                 # or "transform" (MDCT + learned post-filter)
    scale_layout: dict[str, Any] | None = None  # transform: codec.scales.ScaleLayout fields
    postfilter_hidden: int = 256
    postfilter_layers: int = 2

    @property
    def hop_length(self) -> int:
        return math.prod(self.strides)

    @property
    def num_tables(self) -> int:
        if self.arch == "transform":
            return self.layout().num_tables
        return len(self.rate_points) * self.latent_channels

    def layout(self) -> ScaleLayout:
        """The transform coder's integer layout (WeightsError for other architectures)."""
        from codec.scales import ScaleLayout

        if self.arch != "transform" or not self.scale_layout:
            raise WeightsError(f"a {self.arch!r} model has no scale layout")
        data = dict(self.scale_layout)
        data["band_edges"] = tuple(int(v) for v in data["band_edges"])
        data["envelope_edges"] = tuple(int(v) for v in data.get("envelope_edges", ()))
        return ScaleLayout(**data)

    def to_json(self) -> str:
        data = asdict(self)
        data["hop_length"] = self.hop_length
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        """Parse and validate; any problem -> WeightsError."""
        try:
            data: dict[str, Any] = json.loads(text)
            data.pop("hop_length", None)
            data["rate_points"] = tuple(RatePoint(**rp) for rp in data["rate_points"])
            for key in ("strides", "encoder_channels", "decoder_channels", "dilations"):
                data[key] = tuple(int(v) for v in data[key])
            config = cls(**data)
        except (ValueError, TypeError, KeyError) as exc:
            raise WeightsError(f"malformed model config: {exc}") from exc
        _validate_config(config)
        return config

    def with_measured(self, measured_kbps: tuple[float, ...]) -> ModelConfig:
        """Copy with each rate point's measured_kbps replaced."""
        points = tuple(RatePoint(rp.index, rp.nominal_kbps, float(k))
                       for rp, k in zip(self.rate_points, measured_kbps, strict=True))
        return ModelConfig(**{**asdict(self), "rate_points": points})


def _validate_config(config: ModelConfig) -> None:
    if config.version != CONFIG_VERSION:
        raise WeightsError(f"model config version {config.version}, expected {CONFIG_VERSION}")
    if config.arch == "transform":
        _validate_transform(config)
        return
    if config.arch != "autoencoder":
        raise WeightsError(f"unknown model architecture {config.arch!r}")
    if not (len(config.strides) == len(config.encoder_channels) == len(config.decoder_channels)):
        raise WeightsError("strides and channel lists differ in length")
    if not config.rate_points or any(rp.index != i for i, rp in enumerate(config.rate_points)):
        raise WeightsError("rate points must be indexed 0..n-1 in order")
    if min(config.strides + (config.latent_channels, config.model_rate)) < 1:
        raise WeightsError("strides, latent_channels and model_rate must be positive")


def _validate_transform(config: ModelConfig) -> None:
    try:
        layout = config.layout()
    except (TypeError, ValueError, KeyError) as exc:
        raise WeightsError(f"malformed scale layout: {exc}") from exc
    if config.strides != (layout.coefficients,) or config.latent_channels != layout.coefficients:
        raise WeightsError("a transform model's stride and latent_channels are its MDCT bins")
    if min(config.postfilter_hidden, config.model_rate) < 1 or config.postfilter_layers < 0:
        raise WeightsError("postfilter sizes must be positive (layers >= 0), model_rate too")


@dataclass(frozen=True)
class CodecModel:
    """A loaded model: modules in eval mode, frozen tables and identity."""

    config: ModelConfig
    encoder: Any                      # None when only decoder-side weights were loaded
    decoder: Any
    quantizer: Any
    tables: CdfTable
    decoder_sha256: bytes
    geometry: Geometry

    @property
    def is_transform(self) -> bool:
        return self.config.arch == "transform"


def build_modules(config: ModelConfig) -> tuple[Any, Any, Any]:
    """Fresh (untrained) encoder, decoder and quantizer for a config."""
    from codec.model import Decoder, Encoder, RateQuantizer

    if config.arch == "transform":
        from codec.model.transform import TransformDecoder, TransformEncoder, TransformQuantizer

        bins = config.latent_channels
        return (TransformEncoder(bins),
                TransformDecoder(bins, config.postfilter_hidden, config.postfilter_layers),
                TransformQuantizer(config.layout()))

    encoder = Encoder(config.encoder_channels, config.strides, config.latent_channels,
                      config.dilations)
    decoder = Decoder(config.decoder_channels, tuple(reversed(config.strides)),
                      config.latent_channels, config.dilations)
    return encoder, decoder, RateQuantizer(len(config.rate_points), config.latent_channels)


def pick_rate_point(config: ModelConfig, kbps: float) -> RatePoint:
    """Highest measured_kbps <= kbps, else the lowest point."""
    fitting = [rp for rp in config.rate_points if rp.measured_kbps <= kbps]
    if fitting:
        return max(fitting, key=lambda rp: rp.measured_kbps)
    return min(config.rate_points, key=lambda rp: rp.measured_kbps)


def model_paths(path: str | Path | None) -> tuple[Path, Path, Path]:
    """(config, encoder, decoder) file paths for a model.

    `path` may be None (shipped default), a folder holding aec-base.*, the
    JSON config file, or a name prefix such as ``runs/x/aec-base``.
    """
    if path is None:
        stem = PRETRAINED_DIR / DEFAULT_MODEL
    else:
        p = Path(path)
        if p.is_dir():
            stem = p / DEFAULT_MODEL
        elif p.name.endswith(".json"):
            stem = p.with_name(p.name[: -len(".json")])
        else:
            stem = p
    return (stem.with_name(stem.name + ".json"),
            stem.with_name(stem.name + ".encoder.safetensors"),
            stem.with_name(stem.name + ".decoder.safetensors"))


def sha256_file(path: Path) -> bytes:
    """SHA-256 digest of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).digest()


def _read_safetensors(path: Path, what: str) -> tuple[dict[str, Any], bytes]:
    """(numpy arrays, file bytes); any read or parse problem -> WeightsError."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    if not path.is_file():
        raise WeightsError(f"{what} weights not found: {path}")
    try:
        data = path.read_bytes()
        return load(data), data
    except (OSError, SafetensorError, ValueError) as exc:
        raise WeightsError(f"{what} weights unreadable: {path}: {exc}") from exc


def _take(arrays: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


def _load_state(module: Any, arrays: dict[str, Any], what: str) -> None:
    """Strict load from numpy arrays; missing, extra or misshapen keys -> WeightsError."""
    import torch

    state = {k: torch.from_numpy(v.copy()).float() for k, v in arrays.items()}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{what} weights do not match the config: {exc}") from exc


def _read_config(path: Path) -> ModelConfig:
    if not path.is_file():
        raise WeightsError(f"model config not found: {path}")
    try:
        return ModelConfig.from_json(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise WeightsError(f"model config unreadable: {path}: {exc}") from exc


def _read_tables(arrays: dict[str, Any], config: ModelConfig) -> CdfTable:
    from codec.entropy import CdfTable

    try:
        tables = CdfTable.from_arrays(_take(arrays, TABLE_PREFIX))
    except (ValueError, TypeError) as exc:
        raise WeightsError(f"CDF tables invalid: {exc}") from exc
    if tables.num_tables != config.num_tables or tables.precision != config.cdf_precision:
        raise WeightsError(f"CDF tables: {tables.num_tables} tables at precision "
                           f"{tables.precision}, config needs {config.num_tables} at "
                           f"{config.cdf_precision}")
    return tables


def load_model(path: str | Path | None = None, *, device: str = "cpu",
               need_encoder: bool = True) -> CodecModel:
    """None -> shipped default in codec/pretrained/. Bad/missing files -> WeightsError.

    Never unpickles: weights are safetensors, the config is JSON. Modules come
    back in eval mode with gradients off.
    """
    config_path, encoder_path, decoder_path = model_paths(path)
    config = _read_config(config_path)
    dec_arrays, dec_bytes = _read_safetensors(decoder_path, "decoder")
    tables = _read_tables(dec_arrays, config)
    encoder, decoder, quantizer = build_modules(config)
    _load_state(decoder, _take(dec_arrays, DECODER_PREFIX), "decoder")
    _load_state(quantizer, _take(dec_arrays, QUANTIZER_PREFIX), "quantizer")
    geometry = model_geometry(config, encoder, decoder)
    loaded_encoder = None
    if need_encoder:
        enc_arrays, _ = _read_safetensors(encoder_path, "encoder")
        _load_state(encoder, _take(enc_arrays, ENCODER_PREFIX), "encoder")
        loaded_encoder = encoder.to(device).eval().requires_grad_(False)
    return CodecModel(config=config, encoder=loaded_encoder,
                      decoder=decoder.to(device).eval().requires_grad_(False),
                      quantizer=quantizer.to(device).eval().requires_grad_(False),
                      tables=tables, decoder_sha256=hashlib.sha256(dec_bytes).digest(),
                      geometry=geometry)


def model_geometry(config: ModelConfig, encoder: Any, decoder: Any) -> Geometry:
    """Windowing geometry: walked from the convs, or the transform coder's fixed framing."""
    from codec.model import Geometry, compute_geometry
    from codec.model.mdct import TAIL_FRAMES

    if config.arch == "transform":
        hop = config.hop_length
        return Geometry(hop_length=hop, encoder_context_frames=1,
                        decoder_context_frames=decoder.context_frames,
                        encoder_delay=hop // 2, tail_frames=TAIL_FRAMES)
    return compute_geometry(encoder, decoder, config.hop_length)


def save_model(path_stem: str | Path, config: ModelConfig, encoder: Any, decoder: Any,
               quantizer: Any, tables: CdfTable) -> bytes:
    """Write NAME.json, NAME.encoder.safetensors, NAME.decoder.safetensors atomically.

    `path_stem` is e.g. ``codec/pretrained/aec-base``. Returns the decoder SHA-256.
    """
    from safetensors.numpy import save

    config_path, encoder_path, decoder_path = model_paths(path_stem)
    enc = {ENCODER_PREFIX + k: v for k, v in _numpy_state(encoder).items()}
    dec = {DECODER_PREFIX + k: v for k, v in _numpy_state(decoder).items()}
    dec |= {QUANTIZER_PREFIX + k: v for k, v in _numpy_state(quantizer).items()}
    dec |= {TABLE_PREFIX + k: np_array for k, np_array in tables.to_arrays().items()}
    # One metadata key only: safetensors stores metadata as an unordered map, so two
    # keys could come out in either order and the decoder's SHA-256 (the model
    # identity) would change from one export of the same weights to the next.
    meta = {"format": "aec-weights-1"}
    dec_bytes = save(dec, metadata=meta)
    _atomic_write(encoder_path, save(enc, metadata=meta))
    _atomic_write(decoder_path, dec_bytes)
    _atomic_write(config_path, config.to_json().encode())
    return hashlib.sha256(dec_bytes).digest()


def _numpy_state(module: Any) -> dict[str, Any]:
    return {k: v.detach().cpu().float().contiguous().numpy() for k, v in
            module.state_dict().items()}


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
