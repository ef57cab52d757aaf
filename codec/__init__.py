"""aec: a neural audio codec with a versioned, re-implementable `.aec` format.

`from codec import Codec` is the library entry point; the byte layer
(`codec.format`, `codec.entropy`) imports no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Codec", "__version__"]

if TYPE_CHECKING:
    from codec.api import Codec


def __getattr__(name: str) -> Any:
    # Lazy so that `import codec.format` stays free of torch.
    if name == "Codec":
        from codec.api import Codec

        return Codec
    raise AttributeError(f"module 'codec' has no attribute {name!r}")
