"""The ``python -m repro.<module>`` entry point shared by the full-scale trainers.

The command line (:mod:`repro.cli`) is the top layer: nothing below it imports it. A trainer
module that can also run on its own (``python -m repro.lm.train_gpt ...``, for torchrun) calls
:func:`standalone`, which gives it the same options and the same one-line error with exit
status 2 on bad input as ``repro train TASK``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from .errors import ReproError

__all__ = ["standalone", "report_error"]


def report_error(err: ReproError) -> int:
    """Print a user-facing error as one line on stderr; return the exit status (2)."""
    print(f"repro: error: {err}", file=sys.stderr)
    return 2


def standalone(prog: str, description: str,
               add_arguments: Callable[[argparse.ArgumentParser], None],
               run: Callable[[argparse.Namespace], int | None],
               argv: list[str] | None = None, **parser_kwargs) -> int:
    """Parse ``argv`` with ``add_arguments`` and call ``run``; a :class:`ReproError` becomes
    one line on stderr and exit status 2."""
    parser = argparse.ArgumentParser(prog=prog, description=description, **parser_kwargs)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return int(run(args) or 0)
    except ReproError as err:
        return report_error(err)
