"""Exceptions that the CLI and the demo turn into one readable line (no deep library traceback)."""

from __future__ import annotations

from pathlib import Path


class GdkvmError(Exception):
    """Base class of every error gdkvm raises on purpose."""


class InputError(GdkvmError, ValueError):
    """Bad user input: a missing file, a corrupt video, a wrong shape, an unknown format.

    Args:
        message: what is wrong, in words a user understands.
        path: the file or folder concerned; it is put in front of the message.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)
