"""A power-law compressed spectral loss for the denoising encoder's training.

The SDR-type terms of `codec.train.denoise` weigh every coefficient by its
energy, so loud bins dominate and the quiet parts that a listener (and
PESQ, which compares loudness-like compressed spectra) hears as residual
noise or muffled speech count little. This term compares the decoded
waveforms on an STFT after raising magnitudes to the power 0.3, as is common
in speech enhancement:

    0.5 * mean(( |X|^c - |S|^c )^2) + 0.5 * mean(| |X|^c e^{j arg X} - |S|^c e^{j arg S} |^2)

with X the STFT of the masked coefficients' IMDCT, S the clean one's, c =
0.3, both waveforms first divided by the clean signal's RMS so that every
example counts alike whatever its level. The MDCT is orthonormal and the
post-filter the identity, so the IMDCT of the masked coefficients is the
decoded waveform before quantization.

``added_weight`` A > 1 makes the magnitude part asymmetric, ``A (|X|^c - |S|^c)^2``
where the estimate is louder than the clean signal: PESQ's disturbance weighs
added energy (residual noise) up to several times more than missing energy, and
on clean input the mask can only remove energy, so this pushes noisy input
only.
"""

from __future__ import annotations

import torch
from torch import Tensor

from codec.model.mdct import IMDCT

#: Magnitude compression exponent, STFT size and hop at 24 kHz (21 ms / 5.3 ms).
COMPRESSION = 0.3
STFT_SIZE, STFT_HOP = 512, 128
#: Added to |X|^2 before compressing (in units of the clean RMS): keeps the gradient finite.
POWER_EPS = 1e-8


class CompressedSpectralLoss(torch.nn.Module):
    """(estimate, clean) MDCT coefficients [B, C, F] -> the loss above (a scalar)."""

    def __init__(self, bins: int, added_weight: float = 1.0) -> None:
        super().__init__()
        self.added_weight = added_weight
        self.imdct = IMDCT(bins)
        self.register_buffer("window", torch.hann_window(STFT_SIZE), persistent=False)

    def compressed(self, wave: Tensor) -> tuple[Tensor, Tensor]:
        """Waveforms [B, T] -> (|X|^c, |X|^c e^{j arg X}) of their STFT."""
        spec = torch.stft(wave, STFT_SIZE, STFT_HOP, window=self.window, return_complex=True)
        power = spec.real.square() + spec.imag.square() + POWER_EPS
        magnitude = power ** (COMPRESSION / 2)
        return magnitude, spec * (power ** ((COMPRESSION - 1) / 2))

    def forward(self, estimate: Tensor, clean: Tensor) -> Tensor:
        rms = (clean.square().mean(dim=(1, 2)) + 1e-10).sqrt()[:, None]      # [B, 1]
        mag_est, cplx_est = self.compressed(self.imdct(estimate).squeeze(1) / rms)
        mag_ref, cplx_ref = self.compressed(self.imdct(clean).squeeze(1) / rms)
        error = mag_est - mag_ref
        if self.added_weight != 1.0:
            error = error * torch.where(error > 0, self.added_weight ** 0.5, 1.0)
        magnitude = error.square().mean()
        complex_part = (cplx_est - cplx_ref).abs().square().mean()
        return 0.5 * magnitude + 0.5 * complex_part
