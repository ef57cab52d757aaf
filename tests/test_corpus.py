"""codec.train.corpus (scripts/make_corpus.sh): options, rules, caps, cutting and the split, offline."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from codec.train import corpus
from codec.train.split import VALID_PACKAGES, split_of

REPO = Path(__file__).resolve().parent.parent


def _rule(package: str):  # type: ignore[no-untyped-def]
    names = [s for s in corpus.SOURCES if package in (s[0] if isinstance(s[0], tuple) else (s[0],))]
    return names[0][3]


def test_options_parse_like_the_script() -> None:
    a = corpus.parse_args(["OUT", "--strict", "--sr", "16000", "--clip-sec", "10",
                           "--music-cap-min", "5"])
    assert (a.out, a.strict, a.narrowband, a.sr, a.channels) == ("OUT", True, False, 16000, 1)
    assert (a.clip_sec, a.music_cap_min, a.sfx_cap_min, a.speech_cap_min) == (10.0, 5.0, 15.0, 0.0)
    with pytest.raises(SystemExit):
        corpus.parse_args(["OUT", "--channels", "3"])


def test_script_usage_errors_without_downloading() -> None:
    bad = subprocess.run(["bash", str(REPO / "scripts" / "make_corpus.sh")], capture_output=True,
                         text=True, check=False)
    assert bad.returncode == 2 and "usage" in bad.stderr
    helped = subprocess.run(["bash", str(REPO / "scripts" / "make_corpus.sh"), "--help"],
                            capture_output=True, text=True, check=False)
    assert helped.returncode == 0 and "VALID_PACKAGES" in helped.stdout


def test_source_selection_follows_the_options() -> None:
    base = {s[0] for s in corpus.wanted_sources(narrow=False, strict=False)}
    assert "fillets-ng-data-cs" in base and not any("asterisk" in str(p) for p in base)
    assert "fillets-ng-data-cs" not in {s[0] for s in corpus.wanted_sources(False, True)}
    narrow = corpus.wanted_sources(narrow=True, strict=False)
    assert any("asterisk" in str(s[0]) for s in narrow) and all(s[1] == "train" for s in narrow)


def test_held_out_packages_are_sources_and_cover_every_kind() -> None:
    sources = {p for s in corpus.SOURCES for p in (s[0] if isinstance(s[0], tuple) else (s[0],))}
    assert VALID_PACKAGES <= sources
    kinds = {corpus.classify(_rule("klettres-data"), "usr/share/klettres/en/alpha/a.ogg"),
             corpus.classify(_rule("supertux-data"), "usr/share/games/supertux2/music/x.ogg"),
             corpus.classify(_rule("megaglest-data"), "usr/share/games/megaglest/data/sounds/a.wav")}
    assert {k[0] for k in kinds if k} == {"speech", "music", "sfx"}
    assert [split_of(p) for p in sorted(VALID_PACKAGES)] == ["valid"] * len(VALID_PACKAGES)
    assert split_of("tuxpaint-stamps-default") == "train"


@pytest.mark.parametrize(("package", "rel", "expected"), [
    ("tuxpaint-stamps-default", "stamps/animals/cat_desc_fr.ogg", ("speech", "fr")),
    ("tuxpaint-stamps-default", "stamps/animals/cat.ogg", ("sfx", "")),
    ("fillets-ng-data-cs", "share/fillets/sound/fish/cs/hello.ogg", ("speech", "cs")),
    ("fillets-ng-data-cs", "share/fillets/sound/fish/en/hello.ogg", None),
    ("openarena-data", "sound/festivox/a.wav", None),
    ("frozen-bubble-data", "snd/zik/intro.ogg", ("music", "")),
    ("scratch", "media/sounds/vocals/la.wav", ("music", "")),
    ("scratch", "media/sounds/effects/pop.wav", ("sfx", "")),
])
def test_classification_rules(package: str, rel: str, expected: tuple[str, str] | None) -> None:
    assert corpus.classify(_rule(package), rel) == expected


def test_caps_per_package_and_per_music_track() -> None:
    files = [(f"k{i}", f"/x/{i}.ogg", f"{i}.ogg", "", 300.0, 44100) for i in range(10)]
    caps = {"music": 20.0, "sfx": 15.0, "speech": 0.0}
    music = corpus.plan_kind(files, "pkg", "train", "music", "GPL", {}, caps, 30.0)
    assert all(j["keep"] == 120 for j in music) and len(music) == 10     # 120 s per track
    sfx = corpus.plan_kind(files, "pkg", "train", "sfx", "GPL", {}, caps, 30.0)
    assert len(sfx) == 3 and sum(j["keep"] for j in sfx) <= 15 * 60 + 30  # 15 min per package
    speech = corpus.plan_kind(files, "pkg", "train", "speech", "GPL", {}, caps, 30.0)
    assert len(speech) == 10 and all(j["keep"] == 300.0 for j in speech)  # 0 = no cap


def test_cutting_into_clips() -> None:
    starts, seg = corpus.segment_starts(70 * 24000, 24000, 30.0, 70.0)
    assert len(starts) == 3 and seg * 3 >= 70 * 24000 and seg <= 30 * 24000
    starts, seg = corpus.segment_starts(300 * 24000, 24000, 30.0, 120.0)
    assert len(starts) == 4 and starts[0] > 0 and starts[-1] < 290 * 24000   # evenly spaced
    assert corpus.segment_starts(5 * 24000, 24000, 30.0, 5.0) == ([0], 5 * 24000)
