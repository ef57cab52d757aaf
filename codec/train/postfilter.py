"""Train the transform coder's post-filter: decoder-side learning on top of fixed symbols.

The encoder (MDCT), the integer tables and the noise-fill levels come from
`codec.train.fit_tables` and stay frozen, so the bitstream never changes: only
the decoder's post-filter learns, to undo what quantization took away (holes,
noise-fill levels, reconstruction offsets), judged by multi-resolution STFT,
mel and waveform losses on the decoded audio. Each crop is quantized at a
random step so that one filter serves every bitrate.

    python -m codec.train.postfilter --init runs/tc/aec-base --data CORPUS \\
        --out runs/pf --minutes 60 --layers 3

Resumable: `--out` holds `state.pt` (post-filter, Adam moments, step, RNG
seed); a SIGTERM/SIGINT or the end of the time budget saves it, and the
exported model `OUT/aec-base.*` is rewritten at every checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from codec.model.transform import frame_gains, quantize
from codec.train.data import CropSampler, scan_clips
from codec.train.losses import DistortionLoss
from codec.train.phases import NULL_TIMER, NullTimer
from codec.weights import CodecModel, build_modules, load_model, model_geometry, save_model

STEP_RANGE = (100, 176)
"""Step indices drawn for training crops: from above 32 kbps down to about 3 kbps."""
FFT_SIZES = (256, 1024, 2048)


def quantized_latent(model: CodecModel, x: torch.Tensor, rng: np.random.Generator
                     ) -> torch.Tensor:
    """Crops [B, 1, T] -> decoder input [B, C + 1, F] at a random step per crop."""
    y = model.encoder(F.pad(x, (0, model.geometry.hop_length)))
    steps = rng.integers(*STEP_RANGE, size=(y.shape[0], 1))
    return latent_at(model, y, steps, int(rng.integers(1 << 31)))


def latent_at(model: CodecModel, y: torch.Tensor, step: int | np.ndarray, seed: int,
              device: torch.device | str = "cpu") -> torch.Tensor:
    """MDCT coefficients [B, C, F] -> the decoder input after quantizing at `step` (one
    for all, or one per item as [B, 1]), as the decoder would rebuild it (noise filling
    seeded with `seed`). The whole batch at once: numpy work per crop was most of the
    forward phase (bench.train_speed)."""
    layout = model.quantizer.layout
    gains = frame_gains(y, layout)
    q = quantize(y, gains, step, layout)
    noise, envelope = model.quantizer.noise_corrections(y, gains, q, step)
    return model.quantizer.dequantize(q.numpy(), gains.numpy(), step, noise, seed=seed,
                                      device=device, envelope=envelope)


def decoded(model: CodecModel, latent: torch.Tensor, samples: int) -> torch.Tensor:
    """Decoder output aligned with the crop: drop the MDCT delay, keep `samples`."""
    delay = model.geometry.encoder_delay
    return model.decoder(latent)[..., delay: delay + samples]


class Trainer:
    """Adam on the post-filter; state in one small file."""

    def __init__(self, model: CodecModel, out: Path, lr: float, device: str = "cpu") -> None:
        self.model, self.out, self.device = model, out, torch.device(device)
        model.decoder.to(self.device)
        self.params = list(model.decoder.postfilter.parameters())
        for p in self.params:
            p.requires_grad_(True)
        self.optimizer = torch.optim.Adam(self.params, lr=lr)
        self.loss = DistortionLoss(model.config.model_rate, FFT_SIZES, stft_weight=1.0,
                                   mel_weight=1.0, wave_weight=1.0).to(self.device)
        self.step = 0
        self.audio_seconds = 0.0

    def resume(self) -> None:
        path = self.out / "state.pt"
        if path.is_file():
            state = torch.load(path, weights_only=True)
            self.model.decoder.postfilter.load_state_dict(state["postfilter"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.step, self.audio_seconds = state["step"], state["audio_seconds"]

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        state = {"postfilter": self.model.decoder.postfilter.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "step": self.step,
                 "audio_seconds": self.audio_seconds}
        tmp = self.out / "state.pt.tmp"
        torch.save(state, tmp)
        tmp.replace(self.out / "state.pt")
        export(self.model, self.out / self.model.config.name)

    def train_step(self, x: torch.Tensor, rng: np.random.Generator,
                   timer: NullTimer = NULL_TIMER) -> dict[str, float]:
        """One Adam step on crops x [B, 1, T]; `timer` books the phases (bench.train_speed).

        The transform coder's rate is fixed by its tables, so there is no rate phase:
        building the quantized latent is booked to "forward" with the post-filter."""
        with timer.phase("forward"):
            with torch.no_grad():
                latent = quantized_latent(self.model, x, rng).to(self.device)
            x = x.to(self.device)
            x_hat = decoded(self.model, latent, x.shape[-1])
        with timer.phase("distortion"):
            terms = self.loss(x, x_hat)
        with timer.phase("backward"):
            self.optimizer.zero_grad(set_to_none=True)
            terms.total.backward()
        with timer.phase("optimizer"):
            torch.nn.utils.clip_grad_norm_(self.params, 1.0)
            self.optimizer.step()
        self.step += 1
        self.audio_seconds += x.shape[0] * x.shape[-1] / self.model.config.model_rate
        return {"loss": float(terms.total.detach()), "mel": float(terms.mel.detach()),
                "wave_db": 10 * float(terms.wave.detach())}


def with_postfilter(model: CodecModel, layers: int, hidden: int) -> CodecModel:
    """The model with a fresh (identity) post-filter of another size."""
    config = dataclasses.replace(model.config, postfilter_layers=layers,
                                 postfilter_hidden=hidden)
    _, decoder, _ = build_modules(config)
    geometry = model_geometry(config, model.encoder, decoder)
    return dataclasses.replace(model, config=config, decoder=decoder, geometry=geometry)


def export(model: CodecModel, stem: Path) -> bytes:
    """Write the model with its current post-filter (tables and levels unchanged)."""
    return save_model(stem, model.config, model.encoder, model.decoder, model.quantizer,
                      model.tables)


def run(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    model = load_model(args.init, device="cpu")
    if args.layers is not None:
        model = with_postfilter(model, args.layers, args.hidden)
    model.decoder.train()
    trainer = Trainer(model, args.out, args.lr)
    trainer.resume()
    clips = scan_clips([args.data], "train", model.config.model_rate)
    sampler = CropSampler(clips, int(args.crop_seconds * model.config.model_rate), args.seed,
                          0, (0.5, 0.3, 0.2), -50.0, 512)
    stop = {"now": False}

    def request_stop(signum: int, frame: Any) -> None:
        stop["now"] = True
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    started = last_save = time.monotonic()
    log = (args.out / "log.jsonl").open("a")
    while not stop["now"] and time.monotonic() - started < args.minutes * 60:
        rng = np.random.default_rng([args.seed, trainer.step])
        x = sampler.batch(trainer.step, args.batch)
        stats = trainer.train_step(x, rng)
        if trainer.step % 25 == 0:
            wall = time.monotonic() - started
            stats |= {"step": trainer.step, "wall_s": round(wall, 1),
                      "audio_s": trainer.audio_seconds}
            log.write(json.dumps(stats) + "\n")
            log.flush()
        if time.monotonic() - last_save > args.save_every:
            trainer.save()
            last_save = time.monotonic()
    trainer.save()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init", type=Path, required=True, help="model from fit_tables")
    parser.add_argument("--data", type=Path, required=True, help="corpus folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop-seconds", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", type=int, help="start a fresh post-filter of this depth")
    parser.add_argument("--hidden", type=int, default=384, help="its width (with --layers)")
    parser.add_argument("--save-every", type=float, default=300.0, help="seconds")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    run(args)


if __name__ == "__main__":
    main()

