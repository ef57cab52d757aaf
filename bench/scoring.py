"""Scores of one decoded clip against its reference.

Waveform metrics (SNR, SI-SDR, mel distance) come from `codec.metrics`, the
project's one definition. Perceptual metrics are optional extras: ViSQOL
(speech mode at 16 kHz for speech, audio mode at 48 kHz otherwise), PESQ-WB
and STOI for speech; each is NaN when its package is not installed.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torchaudio
from numpy.typing import NDArray

from codec import metrics

VISQOL_SPEECH_RATE = 16000
VISQOL_AUDIO_RATE = 48000
PESQ_RATE = 16000
NAN = math.nan


@dataclass(frozen=True)
class Scores:
    """Every metric of one clip; NaN where a metric does not apply or is missing."""

    snr_db: float
    si_sdr_db: float
    mel_distance: float
    visqol: float = NAN
    visqol_mode: str = ""
    pesq_wb: float = NAN
    stoi: float = NAN


def resample(audio: NDArray[np.floating], from_rate: int, to_rate: int
             ) -> NDArray[np.float32]:
    """Band-limited resampling (torchaudio sinc); a no-op when the rates match."""
    if from_rate == to_rate:
        return np.asarray(audio, dtype=np.float32)
    tensor = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    return torchaudio.functional.resample(tensor, from_rate, to_rate).numpy()


def _finite(value: float) -> float:
    """Clip +-inf (identical signals) to a large finite number so means stay usable."""
    return float(np.clip(value, -200.0, 200.0))


@dataclass
class PerceptualMeters:
    """Lazily created ViSQOL/PESQ/STOI scorers; remembers which are unavailable."""

    use_visqol: bool = True
    use_pesq: bool = True
    use_stoi: bool = True
    missing: set[str] = field(default_factory=set)
    _visqol: dict[str, Any] = field(default_factory=dict)

    def _visqol_api(self, mode: str) -> Any | None:
        if mode not in self._visqol:
            try:
                from visqol import VisqolApi
            except ImportError:
                self.missing.add("visqol")
                self._visqol[mode] = None
                return None
            api = VisqolApi()
            # The polynomial speech mapper needs no TFLite runtime; same choice every run.
            if mode == "speech":
                api.create(mode=mode, use_lattice_model=False)
            else:
                api.create(mode=mode)
            self._visqol[mode] = api
        return self._visqol[mode]

    def visqol(self, reference: NDArray[np.float32], estimate: NDArray[np.float32],
               sample_rate: int, speech: bool) -> tuple[float, str]:
        """ViSQOL MOS-LQO (1-5) in speech or audio mode, and the mode used."""
        mode, rate = ("speech", VISQOL_SPEECH_RATE) if speech else ("audio", VISQOL_AUDIO_RATE)
        api = self._visqol_api(mode) if self.use_visqol else None
        if api is None:
            return NAN, ""
        ref = resample(reference, sample_rate, rate).astype(np.float64)
        est = resample(estimate, sample_rate, rate).astype(np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return float(api.measure_from_arrays(ref, est, rate).moslqo), mode
            except (ValueError, RuntimeError, IndexError) as error:
                warnings.warn(f"ViSQOL failed: {error}", stacklevel=2)
                return NAN, mode

    def pesq_wb(self, reference: NDArray[np.float32], estimate: NDArray[np.float32],
                sample_rate: int) -> float:
        """Wide-band PESQ (MOS-LQO) at 16 kHz; NaN if missing or no utterance found."""
        if not self.use_pesq:
            return NAN
        try:
            from pesq import pesq
        except ImportError:
            self.missing.add("pesq")
            return NAN
        ref = resample(reference, sample_rate, PESQ_RATE)
        est = resample(estimate, sample_rate, PESQ_RATE)
        try:
            return float(pesq(PESQ_RATE, ref, est, "wb"))
        except Exception:  # pesq raises its own error classes for silent/short input
            return NAN

    def stoi(self, reference: NDArray[np.float32], estimate: NDArray[np.float32],
             sample_rate: int) -> float:
        """STOI intelligibility (0-1); pystoi resamples to 10 kHz itself."""
        if not self.use_stoi:
            return NAN
        try:
            from pystoi import stoi
        except ImportError:
            self.missing.add("pystoi")
            return NAN
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(stoi(reference, estimate, sample_rate, extended=False))


def score(reference: NDArray[np.float32], estimate: NDArray[np.float32], sample_rate: int,
          kind: str, meters: PerceptualMeters) -> Scores:
    """All metrics of an aligned estimate (same length and rate as the reference)."""
    speech = kind == "speech"
    visqol, mode = meters.visqol(reference, estimate, sample_rate, speech)
    return Scores(
        snr_db=_finite(metrics.snr_db(reference, estimate)),
        si_sdr_db=_finite(metrics.si_sdr_db(reference, estimate)),
        mel_distance=metrics.mel_distance(reference, estimate, sample_rate),
        visqol=visqol,
        visqol_mode=mode,
        pesq_wb=meters.pesq_wb(reference, estimate, sample_rate) if speech else NAN,
        stoi=meters.stoi(reference, estimate, sample_rate) if speech else NAN,
    )
