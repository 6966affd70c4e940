"""Exceptions with messages that name the problem and the fix.

The CLI turns a :class:`ReproError` into one line on stderr and exit status 2, before any
compute starts; everything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class ReproError(Exception):
    """A user-facing error: bad input, missing data, corrupt file."""


class ParameterError(ReproError):
    """A notebook parameter or scale is unknown or has the wrong type."""


class DataUnavailableError(ReproError):
    """A data set or checkpoint is not on disk and cannot be downloaded."""


class ChecksumError(ReproError):
    """A downloaded or cached file does not match the hash in its manifest."""


class CheckpointError(ReproError):
    """A checkpoint is missing, truncated or does not fit the model."""
