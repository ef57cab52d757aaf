"""aec as a benched codec: one `AecPoint` per rate point of the loaded model."""

from __future__ import annotations

import time
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
        from codec.format import read_stream

        start = time.perf_counter()
        data = self.codec.encode(clip.audio[None, :], clip.sample_rate,
                                 kbps=self.measured_kbps + 1e-6)
        encode_s = time.perf_counter() - start
        header, chunks = read_stream(data)
        if header.rate_point != self.index:
            raise RuntimeError(f"asked for rate point {self.index}, stream has "
                               f"{header.rate_point}")
        start = time.perf_counter()
        audio, sample_rate = self.codec.decode(data)
        decode_s = time.perf_counter() - start
        payload_bytes = sum(len(chunk.payload or b"") for chunk in chunks)
        return Coded(audio.mean(axis=0), int(sample_rate), len(data), payload_bytes,
                     encode_s, decode_s)


def load_aec_points(weights: Path | None, device: str) -> list[AecPoint]:
    """Every rate point of the shipped (or given) model, lowest rate first."""
    from codec.api import Codec

    return aec_points_for(Codec.load(weights, device=device))


def aec_points_for(codec: Any) -> list[AecPoint]:
    """Every rate point of a loaded `codec.api.Codec`, lowest rate first."""
    config = codec.model.config
    return [AecPoint(codec, rp.index, rp.nominal_kbps, rp.measured_kbps)
            for rp in sorted(config.rate_points, key=lambda r: r.measured_kbps)]
