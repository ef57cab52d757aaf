"""codec.train.fit_tables: the counting that trains the shipped model, and the training benches.

The shipped files are reproduced byte for byte by the model card's command on
the real corpus (minutes, not part of the suite); here the same code runs on a
small synthetic corpus, and the fast counting is checked against `np.add.at`,
which it replaced.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from codec.api import Codec
from codec.train import fit_tables as fit

REPO = Path(__file__).resolve().parent.parent
RATE = 24000


def _corpus(root: Path) -> Path:
    """Tones and noise in the corpus layout: two training packages and one held-out
    package (klettres-data) per kind."""
    rng = np.random.default_rng(0)
    t = np.arange(int(1.5 * RATE)) / RATE
    for i, kind in enumerate(("speech", "music", "sfx")):
        for package in ("train-a", "train-b", "klettres-data"):
            folder = root / "train" / kind / package
            folder.mkdir(parents=True)
            for j in range(2):
                x = 0.2 * np.sin(2 * np.pi * (200 + 150 * i + 40 * j) * t) \
                    + 0.02 * rng.standard_normal(t.size)
                sf.write(folder / f"c{j}.wav", x.astype(np.float32), RATE, subtype="PCM_16")
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _corpus(tmp_path_factory.mktemp("corpus"))


def test_add_symbols_counts_exactly_like_add_at() -> None:
    layout = fit.default_config().layout()
    rng = np.random.default_rng(1)
    tables = rng.integers(0, layout.num_tables, size=5000)
    symbols = rng.integers(-2000, 2000, size=5000)       # some beyond MAX_SYMBOL: clipped
    counts, expected = fit.Counts.empty(layout), np.zeros((layout.num_tables,
                                                            2 * fit.MAX_SYMBOL + 1))
    for _ in range(2):
        counts.add_symbols(tables, symbols)
        np.add.at(expected, (tables, np.clip(symbols, -fit.MAX_SYMBOL, fit.MAX_SYMBOL)
                             + fit.MAX_SYMBOL), 1)
    assert np.array_equal(counts.symbols, expected)


def test_add_zero_energy_is_bit_for_bit_add_at() -> None:
    layout = fit.default_config().layout()
    rng = np.random.default_rng(2)
    counts = fit.Counts.empty(layout)
    expected = np.zeros_like(counts.zero_energy)
    for _ in range(3):                                   # running sums, not just one call
        tables = rng.integers(0, 50, size=20000)         # many energies per table
        energies = rng.random(20000).astype(np.float32) ** 3 * 0.3
        counts.add_zero_energy(tables, energies)
        np.add.at(expected, (tables, 0), energies)
        np.add.at(expected, (tables, 1), 1)
    assert counts.zero_energy.tobytes() == expected.tobytes()


def test_pending_symbols_flush_in_batches_without_losing_any(monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    layout = fit.default_config().layout()
    monkeypatch.setattr(fit._PendingSymbols, "LIMIT", 100)
    counts = fit.Counts.empty(layout)
    pending = fit._PendingSymbols(counts)
    for k in range(7):
        pending.add(np.full(45, k), np.arange(45) - 20)
    assert counts.symbols.sum() == 270                   # two flushes of 3 x 45 so far
    pending.flush()
    assert counts.symbols.sum() == 7 * 45 and counts.symbols[3, fit.MAX_SYMBOL - 20] == 1


def test_fit_writes_a_working_model_deterministically(corpus: Path, tmp_path: Path) -> None:
    fit.fit(corpus, tmp_path / "a" / "m", per_kind=2, seconds=1.0, name="m")
    fit.fit(corpus, tmp_path / "b" / "m", per_kind=2, seconds=1.0, name="m")
    for suffix in (".json", ".encoder.safetensors", ".decoder.safetensors"):
        assert (tmp_path / "a" / f"m{suffix}").read_bytes() == \
            (tmp_path / "b" / f"m{suffix}").read_bytes()
    codec = Codec.load(tmp_path / "a" / "m", device="cpu")
    x, _ = sf.read(corpus / "train" / "music" / "train-a" / "c0.wav", dtype="float32")
    decoded, _ = codec.decode(codec.encode(x, RATE, kbps=12.0))
    assert decoded.shape == (1, x.size) and np.isfinite(decoded).all()


def test_table_fit_bench_reports_held_out_bits(corpus: Path, tmp_path: Path) -> None:
    from bench import table_fit

    assert table_fit.main(["--corpus", str(corpus), "--sizes", "1x1,2x1.5",
                           "--valid-per-kind", "2", "--steps", "120,150",
                           "--out", str(tmp_path)]) == 0
    rows = [line for line in (tmp_path / "table_fit.md").read_text().splitlines()
            if line.startswith("| 1 x 1") or line.startswith("| 2 x 1.5")]
    assert len(rows) == 2
    cells = rows[0].strip("|").split("|")
    assert float(cells[1]) == pytest.approx(3.0)        # 1 clip per kind, 1 s each
    assert "(+0.00 %)" in cells[3]                      # the first size is the reference
    bits = [float(c.split()[0]) for c in cells[3:5]]
    assert bits[0] > bits[1] > 0                        # a coarser step costs fewer bits


def test_train_speed_times_table_fitting(corpus: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "bench.train_speed", "--arch", "tables",
                          "--data", str(corpus), "--threads", "1", "--clips", "2"],
                         capture_output=True, text=True, cwd=REPO, check=False, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    row = json.loads(out.stderr.strip().splitlines()[-1])
    assert row["audio_per_cpu_s"] > 0 and row["first_step_s"] > 0
    assert {"data", "mdct", "quantize", "tables", "count", "noise"} <= set(row["phases_ms"])
    assert "| mdct ms |" in out.stdout and "| backward ms |" not in out.stdout


def test_defaults_are_the_shipped_fit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """README: the plain command's defaults (40 clips per kind, at most 15 s) are the
    shipped fit's, the model card's `--clips-per-kind 40 --seconds 15`."""
    seen: dict[str, object] = {}
    monkeypatch.setattr(fit, "fit", lambda corpus, out, per_kind, seconds, envelope_edges:
                        seen.update(per_kind=per_kind, seconds=seconds, edges=envelope_edges))
    fit.main(["--data", str(tmp_path), "--out", str(tmp_path / "m")])
    assert seen == {"per_kind": 40, "seconds": 15.0, "edges": fit.ENVELOPE_EDGES}
    card = (REPO / "codec" / "pretrained" / "README.md").read_text()
    assert "--clips-per-kind 40 --seconds 15" in " ".join(card.split())


def test_no_training_audio_is_one_line_and_no_model(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Tables counted from nothing would be useless: refuse (exit 3), write nothing."""
    assert fit.main(["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "m")]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no 24000 Hz training-split clips" in err
    assert not list(tmp_path.iterdir())
    from bench import table_fit
    from bench.entry import run

    assert run(lambda: table_fit.main(["--corpus", str(tmp_path / "missing")]),
               "bench.table_fit") == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no 24000 Hz held-out clips" in err


def test_train_speed_still_times_the_post_filter(corpus: Path) -> None:
    """`--arch postfilter` (the default before table fitting) keeps its own phases."""
    out = subprocess.run([sys.executable, "-m", "bench.train_speed", "--arch", "postfilter",
                          "--data", str(corpus), "--threads", "1", "--steps", "1",
                          "--warmup", "0", "--layers", "1", "--hidden", "8"],
                         capture_output=True, text=True, cwd=REPO, check=False, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    row = json.loads(out.stderr.strip().splitlines()[-1])
    assert row["audio_x_realtime"] > 0
    assert {"forward", "distortion", "backward", "optimizer"} <= set(row["phases_ms"])
    assert "| backward ms |" in out.stdout and "| mdct ms |" not in out.stdout
