"""safetensors files read and written with torch alone (an accelerator machine may lack the package).

The layout is the safetensors one: an 8-byte little-endian header length, a
JSON header ``{name: {"dtype", "shape", "data_offsets": [begin, end]}}``
padded with spaces to a multiple of 8, then the raw little-endian tensor
bytes. Files written here load with `safetensors.torch.load_file` and the
other way round (a test checks both directions).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import torch

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "U32": torch.uint32, "BOOL": torch.bool,
}
NAMES: dict[torch.dtype, str] = {v: k for k, v in DTYPES.items()}
MAX_HEADER_BYTES = 100 * 2**20


def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    """Write `tensors` (any device; copied to CPU) as one safetensors file, atomically."""
    header: dict[str, object] = {}
    blobs: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        raw = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for raw in blobs:
            f.write(raw)
    os.replace(tmp, path)


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file into CPU tensors; a malformed file raises ValueError."""
    data = Path(path).read_bytes()
    if len(data) < 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    (size,) = struct.unpack("<Q", data[:8])
    if size > min(MAX_HEADER_BYTES, len(data) - 8):
        raise ValueError(f"{path}: header of {size} bytes does not fit the file")
    header = json.loads(data[8:8 + size])
    body = memoryview(data)[8 + size:]
    out: dict[str, torch.Tensor] = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        begin, end = spec["data_offsets"]
        if not 0 <= begin <= end <= len(body):
            raise ValueError(f"{path}: tensor {name} lies outside the file")
        dtype = DTYPES[spec["dtype"]]
        raw = bytearray(body[begin:end])
        flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        out[name] = flat.reshape(spec["shape"])
    return out
