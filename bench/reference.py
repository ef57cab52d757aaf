"""The reference transform coders of `bench.mdct_ref` as benched codecs ("mdct", "mdct-nf").

They are the floor of issue 9: a learned codec must beat a textbook MDCT coder
with band noise filling. Each point searches the quantizer step per clip so the
whole stream lands just under the requested rate; the file is the stream bytes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import mdct_ref
from bench.clips import Clip
from bench.coding import Coded
from bench.scoring import resample

#: Benched reference coder names -> noise filling on/off.
REFERENCE_CODERS: dict[str, bool] = {"mdct": False, "mdct-nf": True}


@dataclass(frozen=True)
class ReferencePoint:
    """One reference coder at one requested rate."""

    codec_name: str
    nominal_kbps: float

    @property
    def label(self) -> str:
        return f"{self.codec_name} {self.nominal_kbps:g}k"

    @property
    def rate_point(self) -> int:
        return -1

    def run(self, clip: Clip, workdir: Path) -> Coded:
        """Code the clip at 24 kHz in memory; the stream has no container beyond its header."""
        audio = resample(clip.audio, clip.sample_rate, mdct_ref.SAMPLE_RATE)
        start = time.perf_counter()
        data = mdct_ref.encode_at_kbps(audio, self.nominal_kbps,
                                       REFERENCE_CODERS[self.codec_name])
        encode_s = time.perf_counter() - start
        start = time.perf_counter()
        decoded = mdct_ref.decode(data)
        decode_s = time.perf_counter() - start
        return Coded(decoded, mdct_ref.SAMPLE_RATE, len(data), len(data), encode_s, decode_s)


def reference_points(names: Sequence[str], rates: Sequence[float]) -> list[ReferencePoint]:
    """The requested reference coders at every rate."""
    return [ReferencePoint(name, float(kbps)) for name in REFERENCE_CODERS if name in names
            for kbps in rates]
