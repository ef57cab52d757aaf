"""spec/vectors coder-2 streams (spec §5.6): stored bytes, hashes, and a second decoder.

`RefChunkDecoder` below decodes a coder-2 chunk payload with plain Python integers,
written from spec §5.3, §5.4 and §5.6 only: no constriction, no codec.chunkcoder,
no codec.scales, no codec.entropy. Its layout and tables come straight from the
JSON of spec/vectors/tables_coder2.json. The vectors must decode to the same
integers with it as with `codec.chunkcoder.decode_chunk`, and damaged payloads
must be refused by both or decode to the same integers in both.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from codec.errors import FormatError
from codec.format import StreamReader
from conftest import load_make_vectors

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT / "spec" / "vectors"
EXPECTED = json.loads((VECTORS / "expected.json").read_text())
RAW = json.loads((VECTORS / "tables_coder2.json").read_text())
NAMES = sorted(n for n, e in EXPECTED.items() if e.get("header", {}).get("coder_id") == 2)
ONE = 1 << 24  # the coder's probability scale (spec §5.3)
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


MV = load_make_vectors()
MODEL = MV.load_coder2()  # the implementation's view of tables_coder2.json


class Malformed(Exception):
    """A payload that spec §5 calls malformed (the implementation raises FormatError)."""


# --- the reference decoder (spec §5.3, §5.4, §5.6) -----------------------------------

class Rans:
    """Spec §5.3 decoder: a state and a stack of 32-bit words."""

    def __init__(self, payload: bytes) -> None:
        if len(payload) % 4:
            raise Malformed("payload length is not a multiple of 4")
        self.words = [int.from_bytes(payload[i : i + 4], "little")
                      for i in range(0, len(payload), 4)]
        if self.words and self.words[-1] == 0:
            raise Malformed("payload ends in a zero word")
        self.state = self.words.pop() if self.words else 0
        while self.state < 1 << 32 and self.words:
            self.state = (self.state << 32) | self.words.pop()

    def _advance(self, q: int, left: int, prob: int) -> None:
        self.state = (self.state >> 24) * prob + (q - left)
        if self.state < 1 << 32 and self.words:
            self.state = (self.state << 32) | self.words.pop()

    def uniform(self, size: int) -> int:
        """Uniform(size): w = floor(2^24 / size); the last symbol takes the remainder."""
        w = ONE // size
        q = self.state & 0xFFFFFF
        s = min(q // w, size - 1)
        self._advance(q, s * w, w if s < size - 1 else ONE - (size - 1) * w)
        return s

    def categorical(self, cdf24: list[int]) -> int:
        """Entry i with cdf24[i] <= q < cdf24[i + 1] (cdf scaled to 2^24)."""
        q = self.state & 0xFFFFFF
        i = bisect.bisect_right(cdf24, q) - 1
        self._advance(q, cdf24[i], cdf24[i + 1] - cdf24[i])
        return i

    def finish(self) -> None:
        if self.state != 0 or self.words:
            raise Malformed("payload has data left after the last symbol")


@dataclass(frozen=True)
class RefTables:
    """Spec §5.1 tables from the JSON: cdf scaled to 2^24, n_t and offset_t."""

    cdf24: list[list[int]]
    length: list[int]
    offset: list[int]

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RefTables:
        shift = 24 - raw["precision"]
        cdf = [[c << shift for c in row[: n + 1]] for row, n in zip(raw["cdf"], raw["length"])]
        return cls(cdf, list(raw["length"]), list(raw["offset"]))


@dataclass
class RefChunk:
    """One decoded chunk, as nested lists, plus how many escapes each block had."""

    step: int
    split: int
    mid_side: bool
    gains: list[list[int]]
    noise: list[list[list[int]]]
    coefficients: list[list[list[int]]]
    envelope: list[list[list[int]]]
    escapes: dict[str, int]


def unzigzag(u: int) -> int:
    return u // 2 if u % 2 == 0 else -(u + 1) // 2


class RefChunkDecoder:
    """Spec §5.6 for one chunk, given the layout dict and tables of tables_coder2.json."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.tables = RefTables.from_json(raw)
        layout = raw["layout"]
        self.edges: list[int] = layout["band_edges"]
        self.B, self.L, self.C = len(self.edges) - 1, layout["levels"], self.edges[-1]
        self.K = layout.get("contexts", 1)
        self.side = self.B * self.L * self.K          # first of the side tables
        self.layout = layout

    def block(self, rans: Rans, table_ids: list[int]) -> tuple[list[int], int]:
        """A block: all categorical steps, then the escapes' widths, then their mantissas."""
        t = self.tables
        entries = [rans.categorical(t.cdf24[i]) for i in table_ids]
        values = [e + t.offset[i] for e, i in zip(entries, table_ids)]
        escaped = [k for k, (e, i) in enumerate(zip(entries, table_ids)) if e == t.length[i] - 1]
        widths = [rans.uniform(33) for _ in escaped]
        for k, w in zip(escaped, widths):
            m = max(w - 1, 0)
            a = min(m, 16)
            low = rans.uniform(1 << a) if a else 0
            high = rans.uniform(1 << (m - a)) if m - a else 0
            v = unzigzag(((1 << (w - 1)) if w else 0) + low + (high << a))
            i = table_ids[k]
            if 0 <= v - t.offset[i] <= t.length[i] - 2 or not INT32_MIN <= v <= INT32_MAX:
                raise Malformed(f"escaped value {v} is in the direct range or not int32")
            values[k] = v
        return values, len(escaped)

    def gains(self, rans: Rans, ch: int, frames: int) -> tuple[list[list[int]], int]:
        """Step 3: first gain with table B*L, differences with B*L + 1, summed."""
        first, delta = self.side, self.side + 1
        ids = [first if f == 0 else delta for _ in range(ch) for f in range(frames)]
        r, escapes = self.block(rans, ids)
        gains = []
        for c in range(ch):
            running = [sum(r[c * frames : c * frames + f + 1]) for f in range(frames)]
            if any(not 0 <= g <= self.layout["gain_max"] for g in running):
                raise Malformed("a frame gain is outside 0..gain_max")
            gains.append(running)
        return gains, escapes

    def first_delta(self, rans: Rans, coded: list[list[list[bool]]], first: int, delta: int
                    ) -> tuple[list[list[list[int]]], int]:
        """One block for the flagged places of [c][x][t]: along t, the first flagged value
        with table `first`, each later one as the change from the previous (table `delta`);
        unflagged places are 0."""
        ids: list[int] = []
        for per_channel in coded:
            for row in per_channel:
                n = sum(row)
                ids += [first] + [delta] * (n - 1) if n else []
        flat, escapes = self.block(rans, ids)
        values, at = [], 0
        for per_channel in coded:
            out = []
            for row in per_channel:
                running, line = 0, []
                for flagged in row:
                    if flagged:
                        running += flat[at]
                        at += 1
                    line.append(running if flagged else 0)
                out.append(line)
            values.append(out)
        return values, escapes

    def noise(self, rans: Rans, coefficients: list[list[list[int]]], frames: int
              ) -> tuple[list[list[list[int]]], int]:
        """Step 5: a correction for each (c, b, s) whose band holds a zero symbol in the
        segment; a band's first with table B*L + 2, later ones as changes (B*L + 3)."""
        seg = self.layout["noise_segment"]
        segments = -(-frames // seg)
        coded = [[[any(channel[k][f] == 0
                       for k in range(self.edges[b], self.edges[b + 1])
                       for f in range(s * seg, min(frames, (s + 1) * seg)))
                   for s in range(segments)] for b in range(self.B)] for channel in coefficients]
        noise, escapes = self.first_delta(rans, coded, self.side + 2, self.side + 3)
        low, high = self.layout["noise_low"], self.layout["noise_high"]
        if any(not low <= n <= high for c in noise for b in c for n in b):
            raise Malformed("a noise-fill correction is outside noise_low..noise_high")
        return noise, escapes

    def envelope(self, rans: Rans, coefficients: list[list[list[int]]], frames: int
                 ) -> tuple[list[list[list[int]]], int]:
        """Step 6 (layouts with envelope_edges only): a value for each (c, r, f) whose
        region's bins hold a zero symbol in frame f; a region's first with table
        B*L*K + 4, later ones as changes (B*L*K + 5)."""
        regions = self.layout.get("envelope_edges", [])
        bins = [(self.edges[regions[r]], self.edges[regions[r + 1]])
                for r in range(len(regions) - 1)]
        if not bins:
            return [[] for _ in coefficients], 0
        coded = [[[any(channel[k][f] == 0 for k in range(*span)) for f in range(frames)]
                  for span in bins] for channel in coefficients]
        envelope, escapes = self.first_delta(rans, coded, self.side + 4, self.side + 5)
        low, high = self.layout["envelope_low"], self.layout["envelope_high"]
        if any(not low <= v <= high for c in envelope for r in c for v in r):
            raise Malformed("an envelope value is outside envelope_low..envelope_high")
        return envelope, escapes

    def table_of(self, step: int, g: int, k: int, previous: list[int] | None = None) -> int:
        """Step 4: t = (band(k) * L + l) * K + context, from integers with floor shifts;
        the context counts how many of 1, 3, 7, 15 the previous frame's
        2|q[k]| + |q[k-1]| + |q[k+1]| reaches (at most K - 1; 0 in a first frame)."""
        lay = self.layout
        e = step + ((lay["gamma_eighths"] * 4 * (g - lay["gain_ref"])) >> 3)
        level = min(max((4 * g - e + lay["level_bias"]) >> 2, 0), self.L - 1)
        band = next(b for b in range(self.B) if self.edges[b] <= k < self.edges[b + 1])
        context = 0
        if previous is not None:
            m = 2 * abs(previous[k]) + sum(abs(previous[j]) for j in (k - 1, k + 1)
                                            if 0 <= j < self.C)
            context = min(sum(m >= t for t in (1, 3, 7, 15)), self.K - 1)
        return (band * self.L + level) * self.K + context

    def coefficients(self, rans: Rans, step: int, split: int, gains: list[list[int]]
                     ) -> tuple[list[list[list[int]]], int]:
        """Step 4: one block per frame, its symbols sorted by (table, c*C + k); frames
        from the split on use step + 1."""
        ch, frames = len(gains), len(gains[0])
        out = [[[0] * frames for _ in range(self.C)] for _ in range(ch)]
        escapes = 0
        for f in range(frames):
            prev = [[out[c][k][f - 1] for k in range(self.C)] for c in range(ch)] if f else None
            tables = [self.table_of(step + (f >= split), gains[c][f], k,
                                    prev[c] if prev else None)
                      for c in range(ch) for k in range(self.C)]
            order = sorted(range(len(tables)), key=lambda i: (tables[i], i))
            coded, n = self.block(rans, [tables[i] for i in order])
            escapes += n
            for i, v in zip(order, coded):
                out[i // self.C][i % self.C][f] = v
        return out, escapes

    def decode(self, payload: bytes, channels: int, frames: int) -> RefChunk:
        """Steps 1-6 of spec §5.6, then the coder must be empty."""
        rans = Rans(payload)
        step = rans.uniform(256)
        split = rans.uniform(frames + 1)
        mid_side = bool(rans.uniform(2)) if channels == 2 else False
        gains, gain_escapes = self.gains(rans, channels, frames)
        coefficients, coef_escapes = self.coefficients(rans, step, split, gains)
        noise, noise_escapes = self.noise(rans, coefficients, frames)
        envelope, envelope_escapes = self.envelope(rans, coefficients, frames)
        rans.finish()
        return RefChunk(step, split, mid_side, gains, noise, coefficients, envelope,
                        {"gains": gain_escapes, "noise": noise_escapes,
                         "coefficients": coef_escapes, "envelope": envelope_escapes})


REF = RefChunkDecoder(RAW)


# --- helpers ------------------------------------------------------------------------

def chunk_payloads(name: str) -> tuple[Any, list[tuple[bytes, int]]]:
    """Header and (payload, frames) of every chunk of a vector."""
    reader = StreamReader(io.BytesIO((VECTORS / name).read_bytes()))
    return reader.header, [(c.payload, c.num_frames) for c in reader.chunks()]


def ref_flat(chunk: RefChunk) -> bytes:
    """Spec §9: gains, noise, coefficients, envelope, row-major, as int32 little-endian."""
    values = ([g for row in chunk.gains for g in row]
              + [n for c in chunk.noise for b in c for n in b]
              + [q for c in chunk.coefficients for k in c for q in k]
              + [e for c in chunk.envelope for r in c for e in r])
    return b"".join(v.to_bytes(4, "little", signed=True) for v in values)


def implementation_decode(payload: bytes, channels: int, frames: int) -> Any:
    return MV.decode_chunk(payload, MODEL.layout, MODEL.tables, channels, frames)


def same(ref: RefChunk, ours: Any) -> bool:
    return (ref.step == ours.step and ref.split == ours.split_frame
            and ref.mid_side == ours.mid_side
            and ref.gains == ours.gains.tolist() and ref.noise == ours.noise.tolist()
            and ref.coefficients == ours.coefficients.tolist()
            and ref.envelope == ours.envelope_values(MODEL.layout).tolist())


# --- tests --------------------------------------------------------------------------

def test_there_are_coder2_vectors() -> None:
    assert {"coder2_mono.aec", "coder2_stereo.aec"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_stored_bytes_and_hashes_match(name: str) -> None:
    data = (VECTORS / name).read_bytes()
    want = EXPECTED[name]
    assert hashlib.sha256(data).hexdigest() == want["stream_sha256"]
    assert len(data) == want["size_bytes"]
    header, chunks = MV.decode_all(data, None)
    assert MV.symbols_sha256(chunks) == want["symbols_sha256"]
    for key, value in want["header"].items():
        assert getattr(header, key) == value


@pytest.mark.parametrize("name", NAMES)
def test_the_reference_decoder_gives_the_recorded_integers(name: str) -> None:
    header, payloads = chunk_payloads(name)
    ref = [REF.decode(p, header.channels, frames) for p, frames in payloads]
    digest = hashlib.sha256(b"".join(ref_flat(c) for c in ref)).hexdigest()
    assert digest == EXPECTED[name]["symbols_sha256"]
    assert [c.step for c in ref] == EXPECTED[name]["steps"]
    assert [c.mid_side for c in ref] == EXPECTED[name]["mid_side"]


@pytest.mark.parametrize("name", NAMES)
def test_the_reference_decoder_agrees_with_chunkcoder(name: str) -> None:
    header, payloads = chunk_payloads(name)
    for payload, frames in payloads:
        ours = implementation_decode(payload, header.channels, frames)
        assert same(REF.decode(payload, header.channels, frames), ours)


def test_the_vectors_exercise_what_spec_9_says() -> None:
    """Short last chunk, mid_side on and off, escapes in every block incl. INT32 extremes,
    every coefficient table used (levels clamp at both ends), a seek index."""
    mono, mono_chunks = chunk_payloads("coder2_mono.aec")
    last = mono_chunks[-1][1]
    assert last < mono.frames_per_chunk and last % RAW["layout"]["noise_segment"]
    stereo, stereo_chunks = chunk_payloads("coder2_stereo.aec")
    ref = [REF.decode(p, 2, f) for p, f in stereo_chunks]
    assert {c.mid_side for c in ref} == {True, False}
    values = [q for c in ref for ch in c.coefficients for k in ch for q in k]
    assert INT32_MIN in values and INT32_MAX in values
    for name in NAMES:
        header, payloads = chunk_payloads(name)
        chunks = [REF.decode(p, header.channels, f) for p, f in payloads]
        for block in ("gains", "noise", "coefficients", "envelope"):
            assert sum(c.escapes[block] for c in chunks) > 0, (name, block)
        assert StreamReader(io.BytesIO((VECTORS / name).read_bytes())).seek_index is not None
    used = {REF.table_of(c.step, g, k) // REF.K for c in ref for row in c.gains
            for g in row for k in range(REF.C)}
    assert used == set(range(REF.B * REF.L))                  # every (band, level)
    contexts = {REF.table_of(c.step, c.gains[0][1], k, [q[0] for q in c.coefficients[0]])
                % REF.K for c in ref for k in range(REF.C)}
    assert contexts == set(range(REF.K))                      # and every context class


def damaged_payloads(count: int) -> list[tuple[bytes, int, int]]:
    """Seeded damage to the vectors' payloads: bit flips, word drops, swaps, truncation."""
    rng = random.Random(2)
    sources = [(p, h.channels, f) for n in NAMES
               for h, chunks in [chunk_payloads(n)] for p, f in chunks]
    out = []
    for _ in range(count):
        payload, channels, frames = rng.choice(sources)
        data = bytearray(payload)
        kind = rng.randrange(4)
        if kind == 0:
            for _ in range(rng.randint(1, 3)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif kind == 1:
            at = rng.randrange(len(data) // 4) * 4
            del data[at : at + 4]
        elif kind == 2:
            data = data[: rng.randrange(len(data) + 1)]
        else:
            channels = 3 - channels                       # the other channel count
        out.append((bytes(data), channels, frames))
    return out


def test_damaged_payloads_are_refused_by_both_or_decode_alike() -> None:
    """Differential check: for each damaged payload both decoders refuse it, or both
    return the same integers (rANS may decode garbage; the chunk CRC catches that)."""
    outcomes = {"refused": 0, "decoded": 0}
    for payload, channels, frames in damaged_payloads(300):
        try:
            ref: RefChunk | None = REF.decode(payload, channels, frames)
        except Malformed:
            ref = None
        try:
            ours = implementation_decode(payload, channels, frames)
        except FormatError:
            ours = None
        assert (ref is None) == (ours is None), (len(payload), channels, frames)
        if ref is not None:
            assert same(ref, ours)
        outcomes["refused" if ref is None else "decoded"] += 1
    assert outcomes["refused"] > 50, outcomes


def test_regenerating_gives_identical_coder2_files() -> None:
    files = MV.expected_files()
    for name in [*NAMES, "tables_coder2.json"]:
        assert (VECTORS / name).read_bytes() == files[name], name
    assert np.array_equal(MV.load_tables(VECTORS / "tables_coder2.json").cdf,
                          MV.coder2_tables().tables.cdf)
