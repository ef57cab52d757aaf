"""aec as a benched codec: one `AecPoint` per rate point of the loaded model, or one
`AecRequestPoint` per requested rate (`--aec-rates`: what `aec encode --kbps K` gives)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.clips import Clip
from bench.coding import Coded


@dataclass(frozen=True)
class AecPoint:
    """aec at one rate point, coding through the public `Codec.encode`/`decode` API."""

    codec: Any               # codec.api.Codec
    index: int               # rate point index
    nominal_kbps: float
    measured_kbps: float     # the model's own export-time figure, used only to select the point

    codec_name = "aec"

    @property
    def label(self) -> str:
        return f"aec rp{self.index}"

    @property
    def rate_point(self) -> int:
        return self.index

    def run(self, clip: Clip, workdir: Path) -> Coded:
        """Encode and decode the clip's samples in memory; sizes come from the stream bytes."""
        header, coded = code_in_memory(self.codec, clip, self.measured_kbps + 1e-6)
        if header.rate_point != self.index:
            raise RuntimeError(f"asked for rate point {self.index}, stream has "
                               f"{header.rate_point}")
        return coded


@dataclass(frozen=True)
class AecRequestPoint:
    """aec asked for `nominal_kbps` through `Codec.encode(kbps=...)`, whatever point or step
    the codec picks for each clip (rows carry rate_point -1: it may differ per clip)."""

    codec: Any               # codec.api.Codec
    nominal_kbps: float

    codec_name = "aec"

    @property
    def label(self) -> str:
        return f"aec {self.nominal_kbps:g}k"

    @property
    def rate_point(self) -> int:
        return -1

    def run(self, clip: Clip, workdir: Path) -> Coded:
        """Encode at the request and decode in memory; sizes come from the stream bytes."""
        return code_in_memory(self.codec, clip, self.nominal_kbps)[1]


def code_in_memory(codec: Any, clip: Clip, kbps: float) -> tuple[Any, Coded]:
    """(stream header, Coded) of one clip through `Codec.encode(kbps=...)` and `decode`."""
    from codec.format import read_stream

    start = time.perf_counter()
    data = codec.encode(clip.audio[None, :], clip.sample_rate, kbps=kbps)
    encode_s = time.perf_counter() - start
    header, chunks = read_stream(data)
    start = time.perf_counter()
    audio, sample_rate = codec.decode(data)
    decode_s = time.perf_counter() - start
    payload_bytes = sum(len(chunk.payload or b"") for chunk in chunks)
    return header, Coded(audio.mean(axis=0), int(sample_rate), len(data), payload_bytes,
                         encode_s, decode_s)


ANY_RATE_DEFAULTS = (3.0, 6.0, 12.0, 24.0, 32.0)
"""Requests benched for a model that takes any rate (it has no rate points to list)."""


def load_aec_points(weights: Path | None, device: str,
                    requests: Sequence[float] | None = None
                    ) -> list[AecPoint] | list[AecRequestPoint]:
    """The shipped (or given) model at every rate point, lowest first, or at each request."""
    from codec.api import Codec

    codec = Codec.load(weights, device=device)
    if not requests and codec.model.is_transform:
        requests = ANY_RATE_DEFAULTS          # no rate points: bench the usual requests
    if requests:
        return [AecRequestPoint(codec, float(kbps)) for kbps in requests]
    return aec_points_for(codec)


def aec_points_for(codec: Any) -> list[AecPoint]:
    """Every rate point of a loaded `codec.api.Codec`, lowest rate first."""
    config = codec.model.config
    return [AecPoint(codec, rp.index, rp.nominal_kbps, rp.measured_kbps)
            for rp in sorted(config.rate_points, key=lambda r: r.measured_kbps)]
