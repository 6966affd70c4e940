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


class NotebookFailed(ReproError):
    """A notebook run by ``repro run`` raised in a cell (or timed out, or its kernel died).

    Nothing is left at the output path; the partial run, with the full traceback, is at
    :attr:`failed_path` (None when the kernel never wrote one). :attr:`traceback` holds the
    cell's traceback as plain text, for a test log (the CLI shows only the one-line message).
    """

    def __init__(self, message: str, *, notebook: str = "", failed_path: str | None = None,
                 cell: int | None = None, ename: str = "", evalue: str = "",
                 traceback: str = "") -> None:
        super().__init__(message)
        self.notebook = notebook
        self.failed_path = failed_path
        self.cell = cell
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback


class CorruptDataError(DataUnavailableError):
    """A data file exists but cannot be read (truncated archive, bad JSON, a missing field):
    the message names the file, the line or record, and what to do."""
