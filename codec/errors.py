"""The one exception tree of aec: every failure a user or a file can cause.

Each class carries the process exit code that `aec` uses for it, so the CLI
maps errors to exit codes in one place (`exit_code`) and library users can
catch broad (`AecError`) or narrow (`ChecksumError`) as they like. Builtin
mix-ins (`ValueError`, `OSError`, `FileExistsError`) keep ordinary
`except` clauses working, in the manner of python-soundfile.

Exit codes (documented in README.md and `aec --help`):

==== ===========================================================
code meaning
==== ===========================================================
0    success
1    internal error (a bug: please report it)
2    bad command-line usage
3    input missing or unreadable
4    malformed or truncated `.aec` stream
5    damaged chunk (CRC mismatch) in an `.aec` stream
6    `.aec` stream from a newer, unsupported format major version
7    weights missing, malformed, or not the ones the stream needs
8    unsupported or invalid audio
9    output exists (use -f/--force)
10   output cannot be written (permission, full disk, ...)
11   requested device not available
==== ===========================================================
"""

from __future__ import annotations

__all__ = [
    "AecError",
    "UsageError",
    "InputError",
    "FormatError",
    "TruncatedError",
    "ChecksumError",
    "UnsupportedVersionError",
    "LimitError",
    "WeightsError",
    "ModelMismatchError",
    "AudioError",
    "OutputExistsError",
    "OutputError",
    "DeviceError",
]


class AecError(Exception):
    """Base of all errors aec raises for bad input, files or environment."""

    exit_code: int = 1


class UsageError(AecError, ValueError):
    """A request that cannot be right whatever the files hold, e.g. output == input."""

    exit_code = 2


class InputError(AecError, OSError):
    """An input path is missing or cannot be read."""

    exit_code = 3


class FormatError(AecError, ValueError):
    """An `.aec` stream is malformed; `offset` is the byte position, if known."""

    exit_code = 4

    def __init__(self, message: str, offset: int | None = None) -> None:
        if offset is not None:
            message = f"{message} (at byte {offset})"
        super().__init__(message)
        self.offset = offset


class TruncatedError(FormatError):
    """The stream ends before a field or chunk that it announces."""


class LimitError(FormatError):
    """A length, count or value exceeds what the spec allows a reader to accept."""


class ChecksumError(FormatError):
    """A chunk's CRC-32 does not match its bytes; `chunk_index` says which."""

    exit_code = 5

    def __init__(self, message: str, chunk_index: int, offset: int | None = None) -> None:
        super().__init__(f"chunk {chunk_index}: {message}", offset)
        self.chunk_index = chunk_index


class UnsupportedVersionError(FormatError):
    """The stream's format major version is newer than this reader knows."""

    exit_code = 6


class WeightsError(AecError, ValueError):
    """Model weights are missing, malformed, or inconsistent with their config."""

    exit_code = 7


class ModelMismatchError(WeightsError):
    """The stream was made with other weights than the ones loaded (SHA-256 differs)."""


class AudioError(AecError, ValueError):
    """Audio input is unsupported (format, rate, channels) or invalid (NaN, empty shape)."""

    exit_code = 8


class OutputExistsError(AecError, FileExistsError):
    """The output exists and overwriting was not asked for (-f/--force)."""

    exit_code = 9


class OutputError(AecError, OSError):
    """The output cannot be written: permission, missing folder, full disk."""

    exit_code = 10


class DeviceError(AecError, RuntimeError):
    """The requested compute device (e.g. cuda) is not available."""

    exit_code = 11
