"""The context model (codec/context): bit bookkeeping, exact resume, generation.

Fast and on tiny data: the bundled sample's 6 kbps symbols and a small, untrained
context model written next to the test (its quality means nothing here; the
measured figures are in bench/results/context_bits.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from codec import chunkcoder
from codec.context import store
from codec.context.bits import NeuralPrior, TablePrior
from codec.context.model import ContextConfig, ContextModel
from codec.context.envelope import EnvelopeConfig, EnvelopeModel, envelope_features
from codec.context.noise import NoiseConfig, NoiseModel, noise_features
from codec.context.symbols import from_chunks, stream_symbols
from codec.context.train import Trainer
from codec.errors import UsageError, WeightsError
from codec.scales import zero_regions, zero_segments
from tests.conftest import SAMPLE, read_clip


@pytest.fixture(scope="module")
def sample_stream(codec) -> tuple[bytes, np.ndarray]:
    audio, rate = read_clip(SAMPLE)
    return codec.encode(audio[:, : 5 * rate], rate, kbps=6.0), audio[:, : 5 * rate]


@pytest.fixture(scope="module")
def chunks(codec, sample_stream):
    return stream_symbols(codec, sample_stream[0])


@pytest.fixture(scope="module")
def tiny_weights(codec, tmp_path_factory) -> Path:
    """An untrained small context model tied to the shipped codec."""
    torch.manual_seed(0)
    model = ContextModel(ContextConfig.for_layout(codec.model.config.layout(), hidden=4))
    meta = {"decoder_sha256": codec.model.decoder_sha256.hex(), "generation_step": 120}
    weights, _ = store.export(model, meta, tmp_path_factory.mktemp("ctx"), "tiny")
    return weights


def test_table_prior_bits_match_the_coded_length(codec, chunks) -> None:
    layout, tables = codec.model.config.layout(), codec.model.tables
    prior = TablePrior(layout, tables)
    parts = [prior.chunk_bits(c) for c, _ in chunks]
    measured = sum(b.total for b in parts)
    ideal = sum(chunkcoder.chunk_bits(c, layout, tables) for c, _ in chunks)
    coded = 8 * sum(n for _, n in chunks)
    assert measured == pytest.approx(ideal, rel=1e-9)
    assert measured == pytest.approx(coded, rel=0.01)
    # the envelope is its own part now: side is only the step and split (uniform)
    assert sum(b.envelope for b in parts) > 0
    uniform = sum(np.log2(256) + np.log2(c.gains.shape[1] + 1) for c, _ in chunks)
    assert sum(b.side for b in parts) == pytest.approx(uniform, rel=1e-6)


def test_neural_prior_counts_every_frame(codec, chunks, tiny_weights) -> None:
    """Finite, positive bits; an untrained model costs more than the tables."""
    model, _ = store.load(codec, tiny_weights)
    layout, tables = codec.model.config.layout(), codec.model.tables
    c = chunks[0][0]
    neural = NeuralPrior(model, layout, tables).chunk_bits(c)
    table = TablePrior(layout, tables).chunk_bits(c)
    assert neural.side == table.side
    assert np.isfinite(neural.coef) and neural.coef > table.coef > 0 and neural.gain > 0


def test_noise_features_cover_every_coded_correction(codec, chunks) -> None:
    """One feature row per correction the coder sends, in its order, with its value."""
    layout = codec.model.config.layout()
    for c, _ in chunks:
        feats, targets = noise_features(c, layout)
        residual, _ = chunkcoder.noise_symbols(layout, c.noise, c.coefficients)
        assert len(feats) == len(targets) == len(residual)
        values = targets + layout.noise_low
        mask = zero_segments(layout, c.coefficients)[0]
        assert np.array_equal(values, c.noise[0][mask])
    model = NoiseModel(NoiseConfig.for_layout(layout))
    prior = NeuralPrior(ContextModel(ContextConfig.for_layout(layout, hidden=4)), layout,
                        codec.model.tables, model)
    assert 0 < prior.noise_bits(chunks[0][0]) < np.inf


def test_envelope_features_cover_every_coded_value(codec, chunks) -> None:
    """One feature row per envelope value the coder sends, in its order, with its value;
    a model's bits replace the tables' envelope bits and nothing else."""
    layout = codec.model.config.layout()
    for c, _ in chunks:
        feats, targets = envelope_features(c, layout)
        residual, _ = chunkcoder.envelope_symbols(layout, c.envelope_values(layout),
                                                  c.coefficients)
        assert len(feats) == len(targets) == len(residual) > 0
        mask = zero_regions(layout, c.coefficients)[0]
        assert np.array_equal(targets + layout.envelope_low, c.envelope[0][mask])
        assert feats.min() >= 0
    model = EnvelopeModel(EnvelopeConfig.for_layout(layout, hidden=4))
    base = ContextModel(ContextConfig.for_layout(layout, hidden=4))
    base.set_layout(layout)
    tables = codec.model.tables
    with_env = NeuralPrior(base, layout, tables, envelope=model).chunk_bits(chunks[0][0])
    without = NeuralPrior(base, layout, tables).chunk_bits(chunks[0][0])
    table = TablePrior(layout, tables).chunk_bits(chunks[0][0])
    assert 0 < with_env.envelope < np.inf and without.envelope == table.envelope
    assert (with_env.coef, with_env.noise, with_env.side) == (without.coef, without.noise,
                                                             without.side)


def test_shipped_files_of_another_network_version_fail(codec, tiny_weights, tmp_path) -> None:
    config = json.loads(tiny_weights.with_name("tiny.context.json").read_text())
    config["config"].pop("version")                      # a version-1 file has none
    (tmp_path / "old.context.json").write_text(json.dumps(config))
    (tmp_path / "old.context.safetensors").write_bytes(tiny_weights.read_bytes())
    with pytest.raises(WeightsError, match="version"):
        store.load(codec, tmp_path / "old.context.safetensors")


def test_side_models_round_trip_through_the_shipped_files(codec, tmp_path) -> None:
    layout = codec.model.config.layout()
    torch.manual_seed(0)
    model = ContextModel(ContextConfig.for_layout(layout, hidden=4))
    model.noise = NoiseModel(NoiseConfig.for_layout(layout, hidden=4))
    model.envelope = EnvelopeModel(EnvelopeConfig.for_layout(layout, hidden=4))
    meta = {"decoder_sha256": codec.model.decoder_sha256.hex(), "generation_step": 120}
    weights, _ = store.export(model, meta, tmp_path, "side")
    loaded, _ = store.load(codec, weights)
    assert loaded.noise is not None and loaded.envelope is not None
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name


def _trainer(codec, chunks) -> Trainer:
    symbols = from_chunks(chunks, np.zeros(len(chunks), np.int64), np.array(["music"]),
                          np.array(["sample"]), np.array([5.0]))
    layout = codec.model.config.layout()
    return Trainer(symbols, layout, ContextConfig.for_layout(layout, hidden=4), steps=4,
                   batch=2, length=8)


def test_validation_holds_out_whole_clips(codec, chunks) -> None:
    """Every N-th training clip is held out whole; the model's bits on it are finite."""
    from codec.context.train import split_validation, validate
    many = (chunks * 3)[:3]                             # three pretend clips
    symbols = from_chunks(many, np.arange(3), np.array(["music"] * 3),
                          np.array(["a", "b", "c"]), np.full(3, 5.0))
    train, val = split_validation(symbols, 3)
    assert val is not None and set(val.chunk_clip) == {2} and 2 not in set(train.chunk_clip)
    assert train.num_chunks + val.num_chunks == symbols.num_chunks
    assert split_validation(symbols, 0) == (symbols, None)
    layout = codec.model.config.layout()
    model = ContextModel(ContextConfig.for_layout(layout, hidden=4))
    model.set_layout(layout)
    got = validate(model, val, layout)
    assert 0 < got["val_coef"] < np.inf and 0 < got["val_gain"] < np.inf


def test_training_resumes_exactly(codec, chunks, tmp_path, one_thread) -> None:
    straight = _trainer(codec, chunks)
    for _ in range(4):
        straight.train_step()
    first = _trainer(codec, chunks)
    for _ in range(2):
        first.train_step()
    first.save(tmp_path / "ckpt")
    resumed = _trainer(codec, chunks)
    assert resumed.resume(tmp_path / "ckpt") and resumed.step == 2
    for _ in range(2):
        resumed.train_step()
    for (name, a), b in zip(straight.model.state_dict().items(),
                            resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_generation_is_deterministic_for_a_seed(codec, tiny_weights, one_thread) -> None:
    a, rate = codec.generate(0.3, seed=5, weights=str(tiny_weights))
    b, _ = codec.generate(0.3, seed=5, weights=str(tiny_weights))
    c, _ = codec.generate(0.3, seed=6, weights=str(tiny_weights))
    assert rate == 24000 and a.shape == (1, round(0.3 * rate)) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.all(np.isfinite(a))


def test_continuation_starts_with_the_prompt(codec, sample_stream, tiny_weights,
                                             one_thread) -> None:
    data, prompt = sample_stream
    decoded = codec.decode(data)[0][0]
    out, rate = codec.generate(0.25, seed=1, prompt=prompt, prompt_rate=24000,
                               weights=str(tiny_weights))
    assert out.shape == (1, decoded.size + round(0.25 * rate))
    assert np.array_equal(out[0, : decoded.size], decoded)


def test_bad_arguments_and_foreign_weights(codec, tiny_weights, tmp_path) -> None:
    with pytest.raises(UsageError):
        codec.generate(1.0, temperature=0.0, weights=str(tiny_weights))
    with pytest.raises(UsageError):
        codec.generate(-1.0, weights=str(tiny_weights))
    with pytest.raises(UsageError, match="prompt .* too short"):   # not "--kbps 6 is too low"
        codec.generate(0.1, prompt=np.zeros(10, np.float32), prompt_rate=24000,
                       weights=str(tiny_weights))
    config = json.loads(tiny_weights.with_name("tiny.context.json").read_text())
    config["decoder_sha256"] = "00" * 32
    other = tmp_path / "other.context.json"
    other.write_text(json.dumps(config))
    (tmp_path / "other.context.safetensors").write_bytes(tiny_weights.read_bytes())
    with pytest.raises(WeightsError, match="retrain"):
        store.load(codec, tmp_path / "other.context.safetensors")


def test_cli_generate_force_and_json(tiny_weights, tmp_path, capsys) -> None:
    from codec import cli
    out = tmp_path / "gen.wav"
    args = ["generate", "--seconds", "0.2", "--seed", "3", "-o", str(out),
            "--context-weights", str(tiny_weights), "--device", "cpu", "--threads", "1"]
    assert cli.main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["seconds"] == pytest.approx(0.2) and out.stat().st_size > 44
    before = out.read_bytes()
    assert cli.main(args) == 9                          # exists, no -f
    assert out.read_bytes() == before
    assert cli.main([*args, "-f", "--temperature", "-1"]) == 2
    assert cli.main([*args, "-f", "-q"]) == 0 and out.read_bytes() == before
    assert not list(tmp_path.glob("*.tmp*"))


@pytest.mark.parametrize("passes,reach,signs", [(1, 0, 0), (2, 0, 0), (4, 0, 0), (4, 1, 1), (4, 1, 2)])
def test_a_frame_is_predicted_only_from_what_a_decoder_has(codec, chunks, passes, reach,
                                                           signs) -> None:
    """Changing a frame's own symbols in one pass changes only the logits of that frame's
    later passes (a 1-pass model's: none), never those of earlier frames."""
    from codec.context.bits import chunk_batch
    from codec.context.model import pass_of_bin
    torch.manual_seed(0)
    layout = codec.model.config.layout()
    model = ContextModel(ContextConfig.for_layout(layout, hidden=4, passes=passes,
                                                  reach=reach, signs=signs)).eval()
    model.set_layout(layout)
    if signs > 1:                                         # its sign term starts at zero
        torch.nn.init.normal_(model.sign_net[2].weight)
    batch = chunk_batch(chunks[0][0], layout)
    order = pass_of_bin(batch.q.shape[-1], passes)
    with torch.no_grad():
        _, before = model(batch.q, batch.gains, batch.steps, batch.levels)
        last = batch.q.shape[1] - 1
        for p in range(passes):
            q = batch.q.clone()
            q[0, last, order == p] += 3
            _, after = model(q, batch.gains, batch.steps, batch.levels)
            assert torch.equal(after[0, :-1], before[0, :-1])
            assert torch.equal(after[0, -1, order <= p], before[0, -1, order <= p])
            if p < passes - 1:
                assert not torch.equal(after[0, -1, order > p], before[0, -1, order > p])


def test_four_pass_order_is_coarse_to_fine() -> None:
    from codec.context.model import pass_of_bin
    assert pass_of_bin(8, 4).tolist() == [0, 2, 1, 3, 0, 2, 1, 3]
    assert pass_of_bin(4, 2).tolist() == [0, 1, 0, 1] and pass_of_bin(3, 1).tolist() == [0] * 3


def test_version_2_files_still_load_and_measure_alike(codec, chunks, tmp_path) -> None:
    """A version-2 file (2-pass, no reach layers, 9 noise and 10 envelope features) loads
    and measures what it measured; --init starts a 4-pass network from it."""
    from codec.context.train import init_from
    layout = codec.model.config.layout()
    torch.manual_seed(0)
    model = ContextModel(ContextConfig.for_layout(layout, hidden=4, passes=2, version=2))
    model.set_layout(layout)
    model.noise = NoiseModel(NoiseConfig.for_layout(layout, hidden=4))
    model.envelope = EnvelopeModel(EnvelopeConfig.for_layout(layout, hidden=4))
    meta = {"decoder_sha256": codec.model.decoder_sha256.hex(), "generation_step": 120}
    weights, config = store.export(model, meta, tmp_path, "v2")
    saved = json.loads(config.read_text())
    for key, fields in (("config", ("reach",)), ("noise_config", ("features",)),
                        ("envelope_config", ("features",))):
        for field in fields:
            saved[key].pop(field)
    config.write_text(json.dumps(saved))
    loaded, _ = store.load(codec, weights)
    assert loaded.config.version == 2 and loaded.noise.config.features == 9
    tables = codec.model.tables
    a = NeuralPrior(model.eval(), layout, tables, model.noise, model.envelope)
    b = NeuralPrior(loaded, layout, tables, loaded.noise, loaded.envelope)
    assert a.chunk_bits(chunks[0][0]) == b.chunk_bits(chunks[0][0])
    wider = ContextModel(ContextConfig.for_layout(layout, hidden=4, passes=4, reach=1))
    assert set(init_from(wider, weights)) == {"current_wide.weight", "current_wide.bias",
                                              "current_frame.weight", "current_frame.bias"}
    assert torch.equal(wider.current.weight, model.current.weight)


@pytest.mark.parametrize("passes", [2, 4])
def test_multi_pass_generation_is_deterministic(codec, tmp_path, one_thread, passes) -> None:
    torch.manual_seed(0)
    model = ContextModel(ContextConfig.for_layout(codec.model.config.layout(), hidden=4,
                                                  passes=passes, reach=passes // 4,
                                                  signs=passes // 2))
    if passes == 4:
        torch.nn.init.normal_(model.sign_net[2].weight)
    meta = {"decoder_sha256": codec.model.decoder_sha256.hex(), "generation_step": 120}
    weights, _ = store.export(model, meta, tmp_path, "two")
    a, _ = codec.generate(0.2, seed=2, weights=str(weights))
    b, _ = codec.generate(0.2, seed=2, weights=str(weights))
    assert np.array_equal(a, b) and np.all(np.isfinite(a))


def test_sign_features_predict_a_steady_tone() -> None:
    """A sinusoid's MDCT coefficients in a bin follow x_t = c x_{t-1} - x_{t-2}: the
    recurrence feature has the sign of the next value; the past features see only the
    past."""
    from codec.context.model import HISTORY, sign_features
    t = np.arange(HISTORY + 8)
    x = np.round(20 * np.cos(0.9 * t + 0.3)).astype(np.int64)       # c = 2 cos 0.9
    q = torch.from_numpy(np.stack([x, np.zeros_like(x)], axis=1))[None]
    feats = sign_features(q)                                         # [1, 3, 8, 2]
    assert feats.shape == (1, 3, 8, 2) and torch.all(feats[..., 1] == 0)
    now = torch.from_numpy(x[HISTORY:]).float()
    assert torch.equal(torch.sign(feats[0, 2, :, 0]), torch.sign(now))
    assert torch.equal(feats[0, 0, :, 0], torch.sign(torch.from_numpy(x[HISTORY - 2:-2]))
                       * torch.log1p(torch.from_numpy(np.abs(x[HISTORY - 2:-2])).float()))


def test_init_widens_a_layer_that_reads_new_features(codec, chunks, tmp_path) -> None:
    """--init from a model without sign features: same logits until training moves the new
    (zero) input weights."""
    from codec.context.bits import chunk_batch
    from codec.context.train import init_from
    layout = codec.model.config.layout()
    torch.manual_seed(0)
    old = ContextModel(ContextConfig.for_layout(layout, hidden=4, passes=4, reach=1))
    old.set_layout(layout)
    meta = {"decoder_sha256": codec.model.decoder_sha256.hex(), "generation_step": 120}
    weights, _ = store.export(old, meta, tmp_path, "old")
    new = ContextModel(ContextConfig.for_layout(layout, hidden=4, passes=4, reach=1, signs=1))
    new.set_layout(layout)
    assert init_from(new, weights) == []
    batch = chunk_batch(chunks[0][0], layout)
    with torch.no_grad():
        a = old.eval()(batch.q, batch.gains, batch.steps, batch.levels)
        b = new.eval()(batch.q, batch.gains, batch.steps, batch.levels)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("bench_name", ["context_bits", "generate_check"])
def test_benches_refuse_a_missing_context_model_with_one_line(bench_name, tmp_path,
                                                              capsys) -> None:
    """A wrong --weights is one line on stderr and the weights exit code, no traceback."""
    import importlib

    from bench.entry import run

    bench = importlib.import_module(f"bench.{bench_name}")
    code = run(lambda: bench.main(["--corpus", str(tmp_path), "--weights",
                                   str(tmp_path / "no.safetensors"), "--out",
                                   str(tmp_path / "out")]), f"bench.{bench_name}")
    err = capsys.readouterr().err.strip()
    assert code == 7 and err.startswith(f"bench.{bench_name}: error:") and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_frechet_trace_term_needs_only_numpy() -> None:
    """bench.generate_check's tr sqrt(A B): diagonal covariances give sum sqrt(a b), and
    B = A gives tr A, in any rotation."""
    from bench.generate_check import trace_sqrt_product

    a, b = np.array([4.0, 1.0, 9.0]), np.array([1.0, 16.0, 4.0])
    assert trace_sqrt_product(np.diag(a), np.diag(b)) == pytest.approx(2 + 4 + 6)
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((3, 3)))
    cov = q @ np.diag(a) @ q.T
    assert trace_sqrt_product(cov, cov) == pytest.approx(14.0)
