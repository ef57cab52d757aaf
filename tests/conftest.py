"""Shared fixtures: the real test clips, and one loaded codec per session.

Clips are short real recordings (see tests/data/README.md). The codec fixture
loads the shipped weights once; tests that need it are skipped with a clear
reason only while no weights are shipped (never silently otherwise).
"""

from __future__ import annotations

from pathlib import Path

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
def codec():  # type: ignore[no-untyped-def]
    """The shipped model on the CPU, loaded once."""
    if not shipped_weights_present():
        pytest.skip("no shipped weights in codec/pretrained yet")
    from codec.api import Codec

    return Codec.load(device="cpu")
