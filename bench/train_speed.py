"""Training speed: audio-seconds per wall-second, steps/s and the split by phase.

    python -m bench.train_speed --data /data/corpus [--threads 1 2] [--steps 12]
    python -m bench.train_speed --arch autoencoder --init-from CHECKPOINT ...

`--arch tables` (the default) measures how the shipped model is trained:
`codec.train.fit_tables` counting the symbols of the shipped fit's training
clips (`--clips` per kind of the same seeded selection, at most 15 s each) at
every step it counts, plus its noise pass on every third clip. A "step" is one
clip; the phases are data (reading the file), mdct, quantize, tables (which
table codes each symbol), count and noise. `--arch postfilter` (alias
`transform`) measures the transform coder's optional decoder-side post-filter
(`codec.train.postfilter`, `--layers` x `--hidden`, batch 8 x 1 s crops at a
random step each) on top of the shipped model's frozen tables; it has no rate
phase (the tables fix the rate), and building the quantized latent is booked
to "forward". `--arch autoencoder` measures the earlier autoencoder (what
`aec train` trains).

For each thread count (and CUDA when present) a fresh child process builds
the architecture with the training config
of a checkpoint (`--init-from`, weights and optimizer loaded; without one, a
fresh model with the default config),
times launch -> first step (interpreter start, imports, corpus scan,
checkpoint load, first step), runs `--warmup` steps, then times `--steps`
steps on the wall clock, data included. The phases (data, forward, rate,
distortion, backward, optimizer) come from `codec.train.phases.PhaseTimer`
in the same steps. Without `--data` a synthetic corpus of noise and tones is
used (its data phase is then not representative). `--packed DIR` reads a
subset packed by `python -m codec.train.pack` instead of a corpus.

"audio s / CPU s" divides by the process's CPU time instead of the wall clock:
on a shared machine it is the figure that other jobs disturb least (at one
thread it equals the wall-clock figure of an idle machine).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_INIT = REPO / "checkpoints" / "aec-base"
TABLE_PHASES = ("mdct", "quantize", "tables", "count", "noise")
"""Phases of table fitting (`--arch tables`), after the shared "data"."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.train_speed",
                                description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, help="corpus folder (default: a synthetic one)")
    p.add_argument("--packed", type=Path, help="a packed training subset instead of a corpus")
    p.add_argument("--arch", choices=["tables", "postfilter", "transform", "autoencoder"],
                   default="tables",
                   help="tables: fitting the shipped model (default); postfilter (or "
                        "transform): its optional post-filter; autoencoder: `aec train`'s model")
    p.add_argument("--clips", type=int, default=6,
                   help="tables: clips per kind (the first of the shipped fit's selection)")
    p.add_argument("--init-from", type=Path, default=DEFAULT_INIT,
                   help="autoencoder: checkpoint whose weights and training config to use; "
                        "transform: model config .json (default: the shipped aec-base)")
    p.add_argument("--layers", type=int, default=3, help="transform: post-filter depth")
    p.add_argument("--hidden", type=int, default=384, help="transform: post-filter width")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--steps", type=int, default=12, help="timed steps per setting")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--bf16", choices=["off", "on", "both"], default="off")
    p.add_argument("--no-cuda", action="store_true")
    p.add_argument("--json", type=Path, help="also write the rows here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p


def run_child(spec: dict[str, object]) -> dict[str, object]:
    """Inside a fresh process: build a trainer, time the first step, then timed steps."""
    if spec.get("arch") == "tables":
        return run_tables_child(spec)
    if spec.get("arch") in ("transform", "postfilter"):
        return run_transform_child(spec)
    import torch

    from codec.train.loop import Trainer, setup_distributed
    from codec.train.phases import PhaseTimer

    torch.set_num_threads(int(spec["threads"]))  # type: ignore[call-overload]
    trainer = _make_trainer(spec, Trainer, setup_distributed)
    trainer.advance(trainer.step(), 0.0)
    first_step_s = time.time() - float(spec["launch"])  # type: ignore[arg-type]
    for _ in range(int(spec["warmup"])):  # type: ignore[call-overload]
        trainer.advance(trainer.step(), 0.0)
    timer = PhaseTimer(trainer.dist.device)
    timed = "timer" in inspect.signature(trainer.step).parameters   # older trees: totals only
    steps = int(spec["steps"])  # type: ignore[call-overload]
    t0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        trainer.advance(trainer.step(timer) if timed else trainer.step(), 0.0)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    audio = steps * trainer.cfg.batch_size * trainer.crop_samples / trainer.cfg.model.model_rate
    return {"device": spec["device"], "threads": spec["threads"], "bf16": spec["bf16"],
            "steps_per_s": steps / wall, "audio_x_realtime": audio / wall,
            "audio_per_cpu_s": audio / cpu,
            "first_step_s": first_step_s,
            "phases_ms": {k: 1000 * v / steps for k, v in timer.seconds.items()}}


def run_transform_child(spec: dict[str, object]) -> dict[str, object]:
    """The transform coder's post-filter training (codec.train.postfilter), timed the same way."""
    import numpy as np
    import torch

    from codec.train.data import CropSampler, scan_clips
    from codec.train.phases import PhaseTimer
    from codec.train.postfilter import Trainer, with_postfilter
    from codec.weights import load_model

    torch.set_num_threads(int(spec["threads"]))  # type: ignore[call-overload]
    torch.manual_seed(0)
    model = load_model(str(spec["init"]) if spec.get("init") else None,
                       device=str(spec["device"]))
    model = with_postfilter(model, int(spec["layers"]), int(spec["hidden"]))  # type: ignore
    model.decoder.train()
    trainer = Trainer(model, Path(str(spec["run"])), 5e-4, str(spec["device"]))
    rate = model.config.model_rate
    clips = scan_clips([Path(str(spec["data"]))], "train", rate)
    sampler = CropSampler(clips, rate, 0, 0, (0.5, 0.3, 0.2), -50.0, 512)
    batch = 8
    timer = PhaseTimer(str(spec["device"]))

    def step(i: int, timed: bool) -> None:
        with timer.phase("data"):
            x = sampler.batch(i, batch)
        with torch.autocast(torch.device(str(spec["device"])).type, torch.bfloat16,
                            enabled=bool(spec["bf16"])):
            trainer.train_step(x, np.random.default_rng([0, i]), timer)
        if not timed:
            timer.reset()

    step(0, False)
    first_step_s = time.time() - float(spec["launch"])  # type: ignore[arg-type]
    for i in range(int(spec["warmup"])):  # type: ignore[call-overload]
        step(1 + i, False)
    steps = int(spec["steps"])  # type: ignore[call-overload]
    t0, cpu0 = time.perf_counter(), time.process_time()
    for i in range(steps):
        step(1000 + i, True)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"device": spec["device"], "threads": spec["threads"], "bf16": spec["bf16"],
            "steps_per_s": steps / wall, "audio_x_realtime": steps * batch / wall,
            "audio_per_cpu_s": steps * batch / cpu,
            "first_step_s": first_step_s,
            "phases_ms": {k: 1000 * v / steps for k, v in timer.seconds.items()}}


def run_tables_child(spec: dict[str, object]) -> dict[str, object]:
    """Table fitting (codec.train.fit_tables): one clip per step, timed like the others.

    Code without the `timer` keyword (older trees) is timed as a whole: its count_clip
    time is all booked to "count". Only what older trees have is used here (clips are
    read as the shipped fit reads them, 15 s at most), so a before/after pair stays
    runnable with this file."""
    import soundfile as sf
    import torch

    from codec.train import fit_tables as fit
    from codec.train.phases import PhaseTimer
    from codec.weights import load_model

    torch.set_num_threads(int(spec["threads"]))  # type: ignore[call-overload]
    config = fit.default_config()
    layout, rate = config.layout(), config.model_rate
    quantizer = load_model(None, device="cpu").quantizer
    counts = fit.Counts.empty(layout)
    kw = "timer" in inspect.signature(fit.count_clip).parameters
    timer = PhaseTimer("cpu")
    paths = fit.training_clips(Path(str(spec["data"])), int(spec["clips"]))  # type: ignore
    seconds = 0.0

    def step(i: int, timed: bool) -> None:
        nonlocal seconds
        with timer.phase("data"):
            x = sf.read(paths[i], dtype="float32", always_2d=True)[0][: 15 * rate, 0]
        with timer.phase("count"):
            fit.count_clip(x, layout, counts, **({"timer": timer} if kw else {}))
        if i % 3 == 0:
            with timer.phase("noise"):
                fit.count_noise(x, quantizer, counts)
        if timed:
            seconds += len(x) / rate
        else:
            timer.reset()

    step(0, False)
    first_step_s = time.time() - float(spec["launch"])  # type: ignore[arg-type]
    t0, cpu0 = time.perf_counter(), time.process_time()
    for i in range(1, len(paths)):
        step(i, True)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    steps = len(paths) - 1
    return {"device": "cpu", "threads": spec["threads"], "bf16": False,
            "steps_per_s": steps / wall, "audio_x_realtime": seconds / wall,
            "audio_per_cpu_s": seconds / cpu, "first_step_s": first_step_s,
            "phases_ms": {k: 1000 * v / steps for k, v in timer.seconds.items()}}


def _make_trainer(spec: dict[str, object], trainer_cls: type, setup: object) -> object:
    from codec.train.config import TrainConfig

    run = Path(str(spec["run"]))
    init = Path(str(spec["init"])) if spec.get("init") else None
    cfg = TrainConfig()
    if init is not None and (init / "state.json").exists():
        cfg = TrainConfig.from_dict(json.loads((init / "state.json").read_text())["train_config"])
        shutil.copytree(init, run / "checkpoint", dirs_exist_ok=True)
    cfg = replace(cfg, bf16=bool(spec["bf16"]))
    data = [Path(str(spec["packed"] or spec["data"]))]
    return trainer_cls(cfg, data, run, setup(str(spec["device"])),  # type: ignore[operator]
                       resume=init is not None)


def measure(spec: dict[str, object]) -> dict[str, object]:
    """Run one setting in a child process (clean thread state, honest launch time)."""
    with tempfile.TemporaryDirectory() as tmp:
        spec = {**spec, "run": tmp, "launch": time.time()}
        env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"])}
        out = subprocess.run([sys.executable, "-m", "bench.train_speed", "--child",
                              json.dumps(spec)], capture_output=True, text=True, cwd=REPO,
                             env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"child failed: {out.stderr.strip().splitlines()[-1:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def settings(args: argparse.Namespace) -> list[dict[str, object]]:
    """CPU at each thread count, each bf16 choice; CUDA once per bf16 choice when present
    (not for table fitting: it counts with numpy on the CPU)."""
    import torch

    bf16s = {"off": [False], "on": [True], "both": [False, True]}[args.bf16]
    rows: list[dict[str, object]] = [{"device": "cpu", "threads": t, "bf16": b}
                                     for b in bf16s for t in args.threads]
    if torch.cuda.is_available() and not args.no_cuda and args.arch != "tables":
        rows += [{"device": "cuda", "threads": 1, "bf16": b} for b in bf16s]
    return rows


def format_table(rows: list[dict[str, object]]) -> str:
    """Markdown: one row per setting, phases in ms per step."""
    from codec.train.phases import PHASES

    seen = {p for r in rows for p in r["phases_ms"]}  # type: ignore[attr-defined]
    phases = [p for p in (*PHASES, *TABLE_PHASES) if p in seen] or list(PHASES)
    head = ("| device | threads | bf16 | audio s / wall s | audio s / CPU s | steps/s | "
            "launch -> 1st step s | " + " | ".join(f"{p} ms" for p in phases) + " |")
    lines = [head, "|" + "---|" * (7 + len(phases))]
    for r in rows:
        ph: dict[str, float] = r["phases_ms"]  # type: ignore[assignment]
        lines.append(f"| {r['device']} | {r['threads']} | {'on' if r['bf16'] else 'off'} | "
                     f"{r['audio_x_realtime']:.1f} | {float(r.get('audio_per_cpu_s', 0)):.1f} | "
                     f"{r['steps_per_s']:.2f} | "
                     f"{r['first_step_s']:.1f} | "
                     + " | ".join(f"{ph.get(p, 0.0):.0f}" for p in phases) + " |")
    return "\n".join(lines)


def _synthetic_corpus(root: Path) -> Path:
    """A few minutes of tones + noise in the corpus layout (when no --data is given)."""
    import numpy as np

    from codec.train.pack import write_wav

    rng = np.random.default_rng(0)
    for i, kind in enumerate(("speech", "music", "sfx")):
        folder = root / "train" / kind / f"synthetic-{kind}"
        folder.mkdir(parents=True)
        for j in range(4):
            t = np.arange(24000 * 20) / 24000
            x = 0.3 * np.sin(2 * np.pi * (150 + 100 * i + 30 * j) * t) \
                + 0.05 * rng.standard_normal(t.size)
            write_wav(folder / f"c{j}.wav", (x * 32767).astype(np.int16), 24000)
    return root


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.child:
        print(json.dumps(run_child(json.loads(args.child))))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or _synthetic_corpus(Path(tmp))
        init = args.init_from if args.arch == "autoencoder" or args.init_from != DEFAULT_INIT \
            else None
        base = {"data": str(data), "packed": str(args.packed) if args.packed else "",
                "init": str(init) if init is not None and init.exists() else "",
                "steps": args.steps, "warmup": args.warmup, "arch": args.arch,
                "layers": args.layers, "hidden": args.hidden, "clips": args.clips}
        rows = []
        for s in settings(args):
            rows.append(measure({**base, **s}))
            print(json.dumps(rows[-1]), file=sys.stderr)
    print(format_table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
