"""Shared fixtures: the real test clips, and one loaded codec per session.

Clips are short real recordings (see tests/data/README.md). The codec fixture
loads the shipped weights once; missing shipped weights make every test that
needs them fail, never skip (aec ships its weights; their absence is a bug).
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import soundfile
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
SAMPLE = ROOT / "codec" / "data" / "sample.flac"
SPEECH = DATA / "speech_24k_mono.flac"
STEREO = DATA / "music_44k_stereo.flac"
PRETRAINED = ROOT / "codec" / "pretrained"


def read_clip(path: Path) -> tuple[NDArray[np.float32], int]:
    """A clip as float32 [channels, samples] and its rate (soundfile, not our reader)."""
    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    return np.ascontiguousarray(data.T), rate


@pytest.fixture(scope="session")
def speech() -> tuple[NDArray[np.float32], int]:
    return read_clip(SPEECH)


@pytest.fixture(scope="session")
def stereo() -> tuple[NDArray[np.float32], int]:
    return read_clip(STEREO)


def shipped_weights_present() -> bool:
    return (PRETRAINED / "aec-base.decoder.safetensors").is_file()


@pytest.fixture(scope="session")
def codec():
    """The shipped model on the CPU, loaded once."""
    if not shipped_weights_present():
        pytest.fail(f"shipped weights missing in {PRETRAINED}")
    from codec.api import Codec

    return Codec.load(device="cpu")


def make_tiny_model(seed: int = 0):
    """A small untrained model with Laplace CDF tables: fast, for mechanics only.

    Its quality means nothing; tests of quality use the shipped weights (`codec`).
    `seed` changes the weights and the model identity (SHA-256 of a seed string).
    """
    import hashlib

    import torch

    from codec.entropy import CdfTable
    from codec.model.geometry import compute_geometry
    from codec.weights import CodecModel, ModelConfig, RatePoint, build_modules

    torch.manual_seed(seed)
    config = ModelConfig(name=f"tiny{seed}", latent_channels=4, strides=(4, 4, 5),
                         encoder_channels=(8, 8, 16), decoder_channels=(16, 8, 8),
                         rate_points=(RatePoint(0, 3.0, 3.0), RatePoint(1, 6.0, 6.0)))
    encoder, decoder, quantizer = build_modules(config)
    for module in (encoder, decoder, quantizer):
        module.eval()
    values = np.arange(-20, 21)
    pmfs = [np.exp(-np.abs(values) / (1.0 + r)) for r in range(2)
            for _ in range(config.latent_channels)]
    tables = CdfTable.from_pmfs([p / p.sum() for p in pmfs], [-20] * len(pmfs), precision=16)
    return CodecModel(config, encoder, decoder, quantizer, tables,
                      hashlib.sha256(f"tiny{seed}".encode()).digest(),
                      compute_geometry(encoder, decoder, config.hop_length))


@pytest.fixture(scope="session")
def tiny():
    """A Codec on the tiny model with small chunks (10 frames) and 2-chunk windows."""
    import torch

    from codec.api import Codec

    return Codec(make_tiny_model(0), torch.device("cpu"), frames_per_chunk=10,
                 chunks_per_window=2)


class PipeReader(io.RawIOBase):
    """A non-seekable source with short reads of at most `max_read` bytes, like stdin."""

    def __init__(self, data: bytes, max_read: int) -> None:
        self._buf = io.BytesIO(data)
        self._max_read = max_read

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, n: int = -1) -> bytes:
        return self._buf.read(min(n, self._max_read) if n and n > 0 else n)


@pytest.fixture()
def one_thread() -> Iterator[None]:
    """Tiny tensors: one thread is faster, and kinder to a training job on the same CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def load_make_vectors() -> ModuleType:
    """spec/make_vectors.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location(
        "make_vectors", Path(__file__).resolve().parents[1] / "spec" / "make_vectors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
