"""Torch modules of the codec's two architectures.

The shipped one is the transform coder (`codec.model.mdct`, `codec.model.transform`):
MDCT analysis, quantization with integer scales (`codec.scales`), noise filling and
a post-filter before the inverse MDCT. The first model's autoencoder is below;
`aec train` still builds and trains it.

Data flow (one audio channel at the model rate)::

    x [B, 1, T] --Encoder--> y [B, C, T/hop] --RateQuantizer.quantize(r)--> symbols (int32)
    symbols --RateQuantizer.dequantize(r)--> y_hat [B, C, F] --Decoder--> x_hat [B, 1, F*hop]

The prior (`FactorizedPrior`) gives the probability of every symbol per
(rate point, channel) table; it is frozen into integer CDF tables at export.
This package never touches bytes or files.
"""

from __future__ import annotations

from codec.model.decoder import Decoder
from codec.model.encoder import Encoder
from codec.model.geometry import Geometry, compute_geometry
from codec.model.prior import FactorizedPrior
from codec.model.quantizer import RateQuantizer

__all__ = ["Decoder", "Encoder", "FactorizedPrior", "Geometry", "RateQuantizer", "compute_geometry"]
