"""codec.train: split, crops, loss falls, exact resume, 2-process gloo DDP, export."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
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
from codec.train.stopping import StopFlag
from codec.weights import ModelConfig, RatePoint

RATE = 24000
REPO = Path(__file__).resolve().parent.parent


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

    from codec.train.loop import Trainer, close_distributed, setup_distributed

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    place = setup_distributed("cpu")
    trainer = Trainer(tiny_config(batch_size=2), [Path(corpus)], Path(out), place, resume=False)
    for _ in range(3):
        trainer.advance(trainer.step(), 0.0)
    weights = {k: v.contiguous() for k, v in trainer.model.state_dict().items()}
    save_file(weights, os.path.join(out, f"rank{rank}.safetensors"))
    trainer.save()
    del trainer
    close_distributed(place)
    assert not torch.distributed.is_initialized()


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
    """`python -m codec.train --init-from CHECKPOINT` (any compact checkpoint folder)
    picks up step, weights, config."""
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


# ---------------------------------------------------------------- stopping, checkpoints, segments

OPTIONAL = ("soundfile", "torchaudio", "tqdm", "safetensors", "constriction")
WATCHING_RUNNER = f"""
import json, runpy, sys
import numpy, torch   # what torch itself picks up when present (tqdm via torch.hub) is not ours
def optional():
    return {{m.split('.')[0] for m in sys.modules}} & set({OPTIONAL!r})
baseline = optional()
module = sys.argv[1]
sys.argv = [module] + sys.argv[2:]
try:
    runpy.run_module(module, run_name='__main__', alter_sys=True)
finally:
    used = sorted(optional() - baseline)
    print('OPTIONAL-IMPORTS ' + json.dumps(used), file=sys.stderr)
"""


def _run_watched(module: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a module in a child; its stderr ends with the optional packages it imported.

    An accelerator machine has torch and numpy only, so the segment path must
    import none of `OPTIONAL`.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", WATCHING_RUNNER, module, *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=timeout, check=False)


def _optional_imports(proc: subprocess.CompletedProcess) -> list[str]:
    line = [x for x in proc.stderr.splitlines() if x.startswith("OPTIONAL-IMPORTS ")][-1]
    return list(json.loads(line.split(" ", 1)[1]))


def test_time_budget_ends_with_a_checkpoint(corpus: Path, tmp_path: Path) -> None:
    stop = StopFlag(time_budget_s=0.5, save_margin_s=0.0)
    with stop:
        state = train(tiny_config(steps=10**6), [corpus], tmp_path, progress=False, stop=stop)
    saved = json.loads((tmp_path / "checkpoint" / "state.json").read_text())["state"]
    assert 1 <= state.step < 10**6 and saved["step"] == state.step, (state, saved)
    assert stop.reason and "budget" in stop.reason and stop.exit_code == 0, stop.reason
    assert _log(tmp_path)[-1]["stopped"] == stop.reason, _log(tmp_path)[-2:]


def test_stop_flag_signals_and_budget_arithmetic() -> None:
    with StopFlag(time_budget_s=100.0, save_margin_s=10.0) as stop:
        assert not stop.should_stop(step_s=1.0)
        assert stop.should_stop(step_s=95.0) and "budget" in str(stop.reason)
    with StopFlag() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.should_stop() and stop.reason == "SIGTERM" and stop.exit_code == 143
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_sigterm_writes_a_resumable_checkpoint(corpus: Path, tmp_path: Path) -> None:
    config = tmp_path / "tiny.json"
    config.write_text(tiny_config(steps=10**6).to_json())
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "codec.train", "--data", str(corpus), "--out", str(run),
           "--config", str(config), "--no-progress", "--threads", "1", "--device", "cpu"]
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (run / "log.jsonl").exists() or len(_log(run)) < 3:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    saved = json.loads((run / "checkpoint" / "state.json").read_text())["state"]
    assert saved["step"] >= 3 and _log(run)[-1]["stopped"] == "SIGTERM"


@pytest.mark.parametrize("level", ["bf16", "weights"])
def test_compact_levels_resume(corpus: Path, tmp_path: Path, level: str) -> None:
    from codec.train.checkpoint import compact_copy, load_checkpoint
    from codec.train.loop import make_optimizer
    from codec.train.network import TrainableCodec

    train(tiny_config(steps=3), [corpus], tmp_path / "a", progress=False)
    compact_copy(tmp_path / "a" / "checkpoint", tmp_path / "c", level)
    full = sum(p.stat().st_size for p in (tmp_path / "a" / "checkpoint").iterdir())
    small = sum(p.stat().st_size for p in (tmp_path / "c").iterdir())
    assert small < full * (0.6 if level == "bf16" else 0.25)   # tiny model: headers weigh in
    model = TrainableCodec(tiny_config().model)
    state, _ = load_checkpoint(tmp_path / "c", model, make_optimizer(model, tiny_config()))
    assert state.step == 3 and state.lr_warmup_from == (3 if level == "weights" else 0)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_tensorfile_matches_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import load_file as st_load
    from safetensors.torch import save_file as st_save

    from codec.train.tensorfile import load_tensors, save_tensors

    tensors = {"a": torch.randn(3, 4), "b": torch.randn(5).bfloat16(),
               "c": torch.arange(7, dtype=torch.int32), "empty": torch.zeros(0)}
    save_tensors(tensors, tmp_path / "ours")
    st_save(tensors, str(tmp_path / "theirs"))
    for loaded in (st_load(str(tmp_path / "ours")), load_tensors(tmp_path / "theirs")):
        assert all(torch.equal(loaded[k], v) and loaded[k].dtype == v.dtype
                   for k, v in tensors.items())


def test_loss_without_torchaudio_and_with_shared_stfts() -> None:
    torchaudio = pytest.importorskip("torchaudio")
    from codec.train.losses import DistortionLoss, mel_filterbank

    for n, mels in ((2048, 128), (256, 32)):
        ours = mel_filterbank(n // 2 + 1, 12000.0, mels, 24000)
        ref = torchaudio.functional.melscale_fbanks(n // 2 + 1, 0.0, 12000.0, mels, 24000,
                                                    norm="slaney", mel_scale="slaney")
        assert torch.allclose(ours, ref, atol=1e-7)
    loss = DistortionLoss(RATE, (512, 128))
    gen = torch.Generator().manual_seed(0)
    x = 0.1 * torch.randn(6, 1, 2400, generator=gen)
    x_hat = x + 0.05 * torch.randn(6, 1, 2400, generator=gen)
    groups = [torch.arange(6) % 3 == r for r in range(3)]
    for shared, alone in zip(loss.forward_groups(x, x_hat, groups),
                             [loss(x[g], x_hat[g]) for g in groups], strict=True):
        assert torch.allclose(shared.total, alone.total, rtol=1e-5)
        assert torch.allclose(shared.wave, alone.wave, rtol=1e-5)


def test_packed_subset_is_small_covers_kinds_and_samples_deterministically(
        corpus: Path, tmp_path: Path) -> None:
    from codec.train.pack import folder_bytes, pack
    from codec.train.packed import PackedSampler, PackedSubset

    meta = pack(corpus, tmp_path / "p", max_mib=0.5, excerpt_seconds=0.1, valid_crops=3)
    assert folder_bytes(tmp_path / "p") <= 0.5 * 2**20
    assert all(v > 0 for v in meta["per_kind"].values())  # type: ignore[union-attr]
    assert not any("klettres" in s for s in meta["sources"])  # type: ignore[union-attr]
    subset = PackedSubset.load(tmp_path / "p")
    weights = {"speech": 0.4, "music": 0.35, "sfx": 0.25}
    a = PackedSampler(subset, 1200, 0, 0, weights, -50.0).batch(5, 4)
    assert a.shape == (4, 1, 1200)
    assert torch.equal(a, PackedSampler(subset, 1200, 0, 0, weights, -50.0).batch(5, 4))


def test_segment_cpu_dry_run_without_optional_packages(corpus: Path, tmp_path: Path) -> None:
    """The accelerator path end to end on CPU: a few seconds of budget, parts, merge."""
    from codec.train.pack import pack

    train(tiny_config(steps=2), [corpus], tmp_path / "init", progress=False)
    pack(corpus, tmp_path / "subset", max_mib=0.5, excerpt_seconds=0.1, valid_crops=3)
    out = tmp_path / "OUT"
    proc = _run_watched("codec.train.segment", "run", "--subset", str(tmp_path / "subset"),
                        "--init-from", str(tmp_path / "init" / "checkpoint"), "--budget", "6",
                        "--margin", "2", "--device", "cpu", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _optional_imports(proc) == []
    files = sorted(out.iterdir())
    assert len(files) <= 8 and all(f.stat().st_size <= 16 * 2**20 for f in files)
    summary = json.loads((out / "segment.json").read_text())
    assert summary["steps"] >= 1 and summary["end_step"] == 2 + summary["steps"]
    assert summary["heldout_before"]["crops"] == summary["heldout_after"]["crops"] > 0
    proc = _run_watched("codec.train.segment", "merge", str(out), str(tmp_path / "merged"))
    assert proc.returncode == 0 and _optional_imports(proc) == [], proc.stderr[-2000:]
    state = json.loads((tmp_path / "merged" / "checkpoint" / "state.json").read_text())
    assert state["state"]["step"] == summary["end_step"]
    assert train(tiny_config(steps=summary["end_step"] + 1), [corpus], tmp_path / "merged",
                 resume=True, progress=False).step == summary["end_step"] + 1


def test_postfilter_segment_cpu_dry_run_without_optional_packages(tmp_path: Path) -> None:
    """The shipped transform coder's accelerator path on CPU: train its post-filter for a
    few seconds from a packed subset with torch + numpy only, then merge a loadable model."""
    from codec.api import Codec
    from codec.train.pack import pack

    longer = tmp_path / "corpus"                      # held-out crops need 1 s clips
    for kind, package in (("speech", "pkg-a"), ("speech", "klettres-data"),
                          ("music", "supertux-data")):
        (longer / "train" / kind / package).mkdir(parents=True)
        sf.write(longer / "train" / kind / package / "c.wav", _tone(1.5, 330, 1), RATE)
    pack(longer, tmp_path / "subset", max_mib=2.0, excerpt_seconds=0.4, valid_crops=6)
    out = tmp_path / "OUT"
    proc = _run_watched("codec.train.pf_segment", "run", "--crop-seconds", "0.32",
                        "--subset", str(tmp_path / "subset"),
                        "--init", str(REPO / "codec" / "pretrained" / "aec-base"),
                        "--layers", "1", "--hidden", "16", "--batch", "2", "--budget", "25",
                        "--device", "cpu", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _optional_imports(proc) == []
    summary = json.loads((out / "segment.json").read_text())
    assert summary["steps"] >= 1 and summary["held_out_crops"] == 2
    assert 0 < summary["held_out_loss_after"] < 10 and 0 < summary["held_out_loss_before"] < 10
    assert all(f.stat().st_size <= 16 * 2**20 for f in out.iterdir())
    again = _run_watched("codec.train.pf_segment", "run", "--crop-seconds", "0.32",
                         "--subset", str(tmp_path / "subset"),
                         "--resume", str(out / "postfilter.pt"),
                         "--init", str(REPO / "codec" / "pretrained" / "aec-base"), "--batch", "2",
                         "--budget", "30", "--steps", str(summary["step"] + 2),
                         "--device", "cpu", "--out", str(tmp_path / "OUT2"))
    assert again.returncode == 0, again.stderr[-2000:]
    resumed = json.loads((tmp_path / "OUT2" / "segment.json").read_text())
    assert resumed["step"] == summary["step"] + resumed["steps"] == summary["step"] + 2
    assert resumed["stopped_by"] == f"step {summary['step'] + 2}"
    assert 0 <= resumed["train_cpu_s"] < 30
    from codec.train.pf_segment import merge

    merge(out / "postfilter.pt", REPO / "codec" / "pretrained" / "aec-base", tmp_path / "m")
    codec = Codec.load(tmp_path / "m", device="cpu")
    assert codec.model.config.postfilter_layers == 1
    audio = np.sin(np.arange(RATE) / 7.0).astype(np.float32) * 0.3
    decoded, _ = codec.decode(codec.encode(audio, RATE))
    assert decoded.shape == (1, RATE) and np.isfinite(decoded).all()
