"""What every benched codec returns, and the interface the bench drives."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from bench.clips import Clip


@dataclass(frozen=True)
class Coded:
    """The result of coding one clip: decoded audio, honest sizes, wall times."""

    decoded: NDArray[np.float32]    # [samples], mono, at decoded_rate
    decoded_rate: int               # the rate the decoder produced (before resampling)
    file_bytes: int                 # whole coded file, container and headers included
    payload_bytes: int              # coded audio packets (classic) / chunk payloads (aec)
    encode_s: float
    decode_s: float


class CodecPoint(Protocol):
    """A codec at one rate point, as the bench sees it."""

    @property
    def codec_name(self) -> str: ...

    @property
    def label(self) -> str: ...

    @property
    def nominal_kbps(self) -> float: ...

    @property
    def rate_point(self) -> int: ...

    def run(self, clip: Clip, workdir: Path) -> Coded: ...
