"""codec.weights: save/load round trip, identity, WeightsError on bad files, rate points,
and the shipped model's tables (coded bytes agree with ideal bits within 1 %)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from codec.entropy import CdfTable
from codec.errors import WeightsError
from codec.weights import (ModelConfig, RatePoint, build_modules, load_model, model_paths,
                           pick_rate_point, save_model)

PRETRAINED = Path(__file__).resolve().parents[1] / "codec" / "pretrained"
TINY = ModelConfig(name="tiny", latent_channels=4, strides=(4, 5), encoder_channels=(8, 16),
                   decoder_channels=(16, 8), dilations=(1,),
                   rate_points=(RatePoint(0, 3.0, 2.5), RatePoint(1, 12.0, 11.0)))


def _tables(config: ModelConfig) -> CdfTable:
    values = np.arange(-8, 9)
    pmf = np.exp(-np.abs(values) / 2.0)
    return CdfTable.from_pmfs([pmf / pmf.sum()] * config.num_tables, [-8] * config.num_tables,
                              config.cdf_precision)


@pytest.fixture()
def saved(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    enc, dec, quant = build_modules(TINY)
    save_model(tmp_path / "tiny", TINY, enc, dec, quant, _tables(TINY))
    return tmp_path / "tiny"


def test_round_trip_keeps_weights_tables_and_identity(saved: Path) -> None:
    model = load_model(saved)
    assert model.config == TINY
    _, _, dec_path = model_paths(saved)
    assert model.decoder_sha256 == hashlib.sha256(dec_path.read_bytes()).digest()
    assert model.tables == _tables(TINY)
    assert model.geometry.hop_length == 20 and not model.decoder.training
    torch.manual_seed(0)
    enc, _, _ = build_modules(TINY)
    assert model.encoder is not None
    for a, b in zip(model.encoder.state_dict().values(), enc.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_decoder_only_load_needs_no_encoder_file(saved: Path) -> None:
    model_paths(saved)[1].unlink()
    model = load_model(saved, need_encoder=False)
    assert model.encoder is None
    with pytest.raises(WeightsError, match="encoder"):
        load_model(saved)


@pytest.mark.parametrize("damage", ["missing_config", "missing_decoder", "truncated",
                                    "garbage_json", "wrong_latents", "wrong_tables"])
def test_bad_files_raise_weights_error(saved: Path, damage: str) -> None:
    config_path, _, dec_path = model_paths(saved)
    if damage == "missing_config":
        config_path.unlink()
    elif damage == "missing_decoder":
        dec_path.unlink()
    elif damage == "truncated":
        dec_path.write_bytes(dec_path.read_bytes()[:1000])
    elif damage == "garbage_json":
        config_path.write_text("{not json")
    elif damage == "wrong_latents":
        config_path.write_text(config_path.read_text().replace('"latent_channels": 4',
                                                               '"latent_channels": 5'))
    else:
        enc, dec, quant = build_modules(TINY)
        other = ModelConfig(**{**TINY.__dict__, "latent_channels": 2})
        save_model(saved, TINY, enc, dec, quant, _tables(other))
    with pytest.raises(WeightsError):
        load_model(saved)


def test_pick_rate_point_takes_the_highest_that_fits() -> None:
    assert pick_rate_point(TINY, 100.0).index == 1
    assert pick_rate_point(TINY, 11.0).index == 1
    assert pick_rate_point(TINY, 10.9).index == 0
    assert pick_rate_point(TINY, 0.1).index == 0


def test_config_json_round_trip() -> None:
    assert ModelConfig.from_json(TINY.to_json()) == TINY
    assert ModelConfig.from_json(ModelConfig().to_json()).hop_length == 320


def test_shipped_model_codes_at_its_ideal_rate(speech: tuple[np.ndarray, int]) -> None:
    """Real constriction bytes within 1 % of -log2 P under the frozen tables, at steps
    from about 3 to about 32 kbps (issue 9: estimated and coded bits agree)."""
    from codec.chunkcoder import ChunkSymbols, chunk_bits, encode_chunk
    from codec.model.transform import frame_gains, quantize

    model = load_model(None)
    audio, rate = speech
    assert rate == model.config.model_rate and model.encoder is not None
    assert model.is_transform
    layout, hop = model.config.layout(), model.config.hop_length
    assert model.tables.num_tables == layout.num_tables
    n = len(audio[0]) // hop * hop
    with torch.no_grad():
        y = model.encoder(torch.from_numpy(audio[:1, :n]).unsqueeze(0))
    gains = frame_gains(y, layout)
    for step in (100, 120, 140, 160):
        q = quantize(y, gains, step, layout)
        noise, _ = model.quantizer.noise_corrections(y, gains, q, step)
        symbols = ChunkSymbols(step, False, gains.numpy(), noise, q.numpy())
        coded = 8 * len(encode_chunk(symbols, layout, model.tables))
        ideal = chunk_bits(symbols, layout, model.tables)
        assert abs(coded - ideal) <= 0.01 * ideal + 64, (step, coded, ideal)

def test_exporting_the_same_weights_twice_gives_the_same_identity(tmp_path) -> None:
    """The decoder file's SHA-256 is the model identity: it may depend on the weights only
    (safetensors metadata is an unordered map, so it holds one key)."""
    model = load_model(None)
    digests = {save_model(tmp_path / f"m{i}" / "aec-base", model.config, model.encoder,
                          model.decoder, model.quantizer, model.tables) for i in range(3)}
    assert digests == {model.decoder_sha256}
