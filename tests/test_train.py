"""codec.train: split, crops, loss falls, exact resume, 2-process gloo DDP, export."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.multiprocessing as mp
from safetensors.numpy import load_file

from codec.train.config import TrainConfig
from codec.train.data import CropSampler, scan_clips
from codec.train.loop import train
from codec.train.split import eval_clips, list_clips, split_of
from codec.weights import ModelConfig, RatePoint

RATE = 24000


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config(**overrides: object) -> TrainConfig:
    model = ModelConfig(name="tiny", latent_channels=4, strides=(4, 5),
                        encoder_channels=(8, 16), decoder_channels=(16, 8), dilations=(1,),
                        rate_points=(RatePoint(0, 3.0, 3.0), RatePoint(1, 12.0, 12.0)))
    base = dict(model=model, steps=4, batch_size=4, crop_seconds=0.05, fft_sizes=(256, 64),
                warmup_steps=1, log_every=1, checkpoint_every_s=1e9, cache_mb=16)
    return TrainConfig(**{**base, **overrides})  # type: ignore[arg-type]


def _tone(seconds: float, freq: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(t.size)).astype(
        np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic corpus in the real layout: train/KIND/PACKAGE/*.wav."""
    root = tmp_path_factory.mktemp("corpus")
    layout = {("speech", "pkg-a"): 3, ("music", "pkg-b"): 2, ("sfx", "pkg-c"): 2,
              ("speech", "klettres-data"): 1, ("music", "supertux-data"): 1,
              ("sfx", "megaglest-data"): 1}
    for i, ((kind, pkg), n) in enumerate(layout.items()):
        folder = root / "train" / kind / pkg
        folder.mkdir(parents=True)
        for j in range(n):
            sf.write(folder / f"c{j}.wav", _tone(0.5, 200 + 150 * i + 40 * j, i * 10 + j), RATE)
    sf.write(root / "train" / "sfx" / "pkg-c" / "silent.wav", np.zeros(RATE, np.float32), RATE)
    return root


def test_split_is_by_package_and_covers_every_kind(corpus: Path) -> None:
    assert split_of("klettres-data") == "valid" and split_of("pkg-a") == "train"
    valid = list_clips(corpus, "valid")
    assert {p.parent.parent.name for p in valid} == {"speech", "music", "sfx"}
    assert not set(valid) & set(list_clips(corpus, "train"))
    assert eval_clips(corpus) == eval_clips(corpus / "train")


def test_crops_are_deterministic_per_step_and_skip_silence(corpus: Path) -> None:
    clips = scan_clips([corpus], "train", RATE)
    def sampler(rank: int) -> CropSampler:
        return CropSampler(clips, 1200, 0, rank, (0.4, 0.35, 0.25), -50.0, 1)
    a, b = sampler(0).batch(7, 6), sampler(0).batch(7, 6)
    assert a.shape == (6, 1, 1200) and torch.equal(a, b)
    assert not torch.equal(a, sampler(1).batch(7, 6))
    assert (a.pow(2).mean(dim=-1).sqrt() > 0.01).all()


def _params(run: Path) -> dict[str, np.ndarray]:
    return load_file(str(run / "checkpoint" / "model.safetensors"))


def _log(run: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_loss_falls(corpus: Path, tmp_path: Path) -> None:
    cfg = tiny_config(steps=16, batch_size=2, lr=1e-2, log_every=1)
    train(cfg, [corpus], tmp_path, progress=False)
    log = _log(tmp_path)
    dist = [float(r["distortion"]) for r in log]  # type: ignore[arg-type]
    assert np.mean(dist[-4:]) < 0.85 * dist[0], dist
    assert float(log[-1]["loss"]) < float(log[0]["loss"])  # type: ignore[arg-type]


def test_resume_reproduces_the_uninterrupted_run(corpus: Path, tmp_path: Path) -> None:
    whole, part = tmp_path / "whole", tmp_path / "part"
    train(tiny_config(steps=4), [corpus], whole, progress=False)
    train(tiny_config(steps=2), [corpus], part, progress=False)
    state = train(tiny_config(steps=4), [corpus], part, resume=True, progress=False)
    assert state.step == 4
    a, b = _params(whole), _params(part)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    log_a, log_b = _log(whole), _log(part)
    assert log_a[-1]["loss"] == log_b[-1]["loss"] and log_a[-1]["beta"] == log_b[-1]["beta"]


def _ddp_worker(rank: int, world: int, port: int, corpus: str, out: str) -> None:
    """One rank: 3 DDP steps, then its own copy of the weights for comparison."""
    from safetensors.torch import save_file

    from codec.train.loop import Trainer, setup_distributed

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    trainer = Trainer(tiny_config(batch_size=2), [Path(corpus)], Path(out),
                      setup_distributed("cpu"), resume=False)
    for _ in range(3):
        trainer.advance(trainer.step(), 0.0)
    weights = {k: v.contiguous() for k, v in trainer.model.state_dict().items()}
    save_file(weights, os.path.join(out, f"rank{rank}.safetensors"))
    trainer.save()
    torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_process_gloo_training(corpus: Path, tmp_path: Path) -> None:
    """Ranks draw different crops but stay identical (gradients are all-reduced)."""
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(corpus), str(tmp_path)), nprocs=2,
             join=True)
    a, b = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    state = json.loads((tmp_path / "checkpoint" / "state.json").read_text())["state"]
    assert state["step"] == 3 and state["audio_seconds"] == pytest.approx(3 * 2 * 2 * 0.05)
    fresh = load_file(str(tmp_path / "rank0.safetensors"))
    assert any(not np.array_equal(fresh[k], _untrained()[k]) for k in fresh)


def _untrained() -> dict[str, np.ndarray]:
    from codec.train.network import TrainableCodec

    torch.manual_seed(0)
    model = TrainableCodec(tiny_config().model)
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


def test_cli_continues_from_a_compact_checkpoint(corpus: Path, tmp_path: Path) -> None:
    """`python -m codec.train --init-from checkpoints/X` picks up step, weights, config."""
    from codec.train.__main__ import main
    from codec.train.checkpoint import compact_copy

    train(tiny_config(steps=2), [corpus], tmp_path / "a", progress=False)
    compact_copy(tmp_path / "a" / "checkpoint", tmp_path / "compact")
    from safetensors.torch import load_file as load_tensors

    moments = load_tensors(str(tmp_path / "compact" / "optimizer.safetensors"))
    assert moments and all(v.dtype == torch.bfloat16 for v in moments.values())
    rc = main(["--data", str(corpus), "--out", str(tmp_path / "b"), "--init-from",
               str(tmp_path / "compact"), "--steps", "3", "--no-progress"])
    assert rc == 0
    state = json.loads((tmp_path / "b" / "checkpoint" / "state.json").read_text())
    assert state["state"]["step"] == 3 and state["train_config"]["model"]["name"] == "tiny"
