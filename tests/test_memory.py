"""Memory does not grow with duration: a one-hour file against the 10 s sample.

`bench/memory.py` encodes and decodes the bundled sample (10 s) and a one-hour
file of it tiled, each in a fresh child process, and reads each child's peak RSS.
The check is growth, not a fixed limit: the hour may cost at most `GROWTH_MB`
more than the 10 s file, for encode and for decode (README: "Memory stays flat
from 10 s to 60 min").

Marked slow: with the shipped transform coder, 10 minutes took 6 min 44 s on the
shared 2-core machine (encode at 2x real time), so the hour takes over 30 minutes,
far beyond the default run's budget. Run it with `bash scripts/test.sh -m slow`.
"""

from __future__ import annotations

import json

import pytest

import measure_bounds

#: Allowed peak RSS growth from 10 s to 60 min. Measured: +5 MB encode, +19 MB decode
#: at 10 min; +66 MB encode at 60 min with the earlier model. Buffering the whole hour
#: at 24 kHz float32 would add 345 MB.
GROWTH_MB = 100.0


@pytest.mark.slow
def test_one_hour_costs_no_more_memory_than_ten_seconds(tmp_path) -> None:
    from bench.memory import main as memory_main

    assert measure_bounds.DECODER_WEIGHTS.is_file(), "shipped weights missing"
    out = tmp_path / "memory.json"
    assert memory_main(["--minutes", "60", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    short = {r["step"]: r for r in rows if r["duration_s"] < 60}
    long = {r["step"]: r for r in rows if r["duration_s"] >= 3600}
    assert set(short) == set(long) == {"encode", "decode"}, rows
    for step in ("encode", "decode"):
        growth = long[step]["peak_rss_mb"] - short[step]["peak_rss_mb"]
        assert growth < GROWTH_MB, (step, short[step], long[step])
