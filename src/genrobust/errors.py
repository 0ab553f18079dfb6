"""Exceptions that carry a message a user can act on.

Every error the library raises on purpose derives from :class:`GenrobustError`, so the CLI can print it as
one clear line instead of a traceback, and callers can catch the whole family at once.
"""

from __future__ import annotations


class GenrobustError(Exception):
    """Base class of all errors raised deliberately by genrobust."""


class DatasetError(GenrobustError):
    """A dataset is unknown, missing, or cannot be read."""


class IdxFormatError(DatasetError):
    """An IDX file is truncated, corrupt, or not the shape its role requires."""


class ChecksumError(DatasetError):
    """A file's content does not match its published checksum."""


class DownloadError(DatasetError):
    """A dataset could not be downloaded (offline, mirror gone, or bad checksum)."""


class GenrobustWarning(UserWarning):
    """Something that may make a result mean less than it seems (models from different datasets, a generator
    whose images leave the range it declared); the run goes on."""
