"""Errors that name the offending file and what is wrong with it, so a user can fix the input."""

from __future__ import annotations

from pathlib import Path


class MMAffectError(Exception):
    """Base class of every error this package raises on purpose."""


class DataError(MMAffectError):
    """A data file is missing, unreadable or holds values we cannot use.

    The message is one line: ``<path>: <reason>``.
    """

    def __init__(self, path: str | Path | None, reason: str):
        self.path = None if path is None else str(path)
        self.reason = reason
        super().__init__(reason if path is None else f"{path}: {reason}")


class MediaError(DataError):
    """A media file cannot be decoded or lacks the stream we need (no audio track, no frames, ...)."""


class ConfigError(MMAffectError):
    """A configuration value or command-line option is invalid."""


class OutputError(MMAffectError):
    """An output location cannot be written (a folder where a file is expected, no permission, disk full).

    The message is one line: ``<path>: <reason>``.
    """

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")
