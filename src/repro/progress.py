"""Progress bars that leave one clean line in an executed notebook.

In an interactive session (Jupyter, a terminal) :func:`progress` is a live ``tqdm.auto`` bar.
In a notebook executed by ``repro run`` / papermill (``REPRO_PROGRESS=summary``, which
``repro run`` sets), a live bar would leave its intermediate states in the saved output
(``0%| | 0/200`` then ``100%|...``); there the bar is replaced by one summary line printed when
the loop ends::

    FP8 O2: 200/200 steps in 41.3 s (4.8 steps/s), loss=1.2345

``REPRO_PROGRESS=off`` silences both. Every loop in the library (``repro.train.fit`` and the
chapters' own sampling or evaluation loops) uses this one function.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["progress", "mode", "Summary"]

MODES = ("bar", "summary", "off")


def mode() -> str:
    """``$REPRO_PROGRESS`` if set (bar, summary or off), else ``bar``."""
    value = os.environ.get("REPRO_PROGRESS", "bar").strip().lower() or "bar"
    if value not in MODES:
        raise ValueError(f"REPRO_PROGRESS={value!r}: use one of {', '.join(MODES)}")
    return value


class Summary:
    """A tqdm look-alike that prints one line when closed (the non-interactive mode)."""

    def __init__(self, iterable: Iterable | None = None, *, total: int | None = None,
                 desc: str = "", unit: str = "it", initial: int = 0,
                 disable: bool = False, file=None) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.desc, self.unit = total, desc, unit
        self.n = self.initial = initial
        self.disable = disable
        self.postfix: str = ""
        self.file = file
        self._start = time.perf_counter()
        self._closed = False

    # the parts of tqdm's interface the library uses
    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True,
                    **kwargs: Any) -> None:
        items = dict(ordered_dict or {}, **kwargs)
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def refresh(self) -> None:  # nothing is drawn until close
        pass

    def line(self) -> str:
        seconds = time.perf_counter() - self._start
        done = self.n - self.initial
        count = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        rate = f" ({done / seconds:.3g} {self.unit}/s)" if seconds > 0 and done else ""
        head = f"{self.desc}: " if self.desc else ""
        tail = f", {self.postfix}" if self.postfix else ""
        return f"{head}{count} {self.unit} in {seconds:.1f} s{rate}{tail}"

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self.disable:
            print(self.line(), file=self.file or sys.stdout, flush=True)

    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("this progress bar was made without an iterable")
        try:
            for item in self.iterable:
                yield item
                self.n += 1
        finally:
            self.close()

    def __enter__(self) -> Summary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self.total or 0


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
             unit: str = "it", initial: int = 0, enabled: bool = True, leave: bool = True):
    """A progress bar over ``iterable`` (or a manual one of ``total`` steps).

    Returns a ``tqdm.auto.tqdm`` in ``bar`` mode and a :class:`Summary` in ``summary`` mode;
    both support ``update``, ``set_postfix``, ``close``, iteration and ``with``.
    ``enabled=False`` (for example on every rank but the first) silences it.
    """
    m = mode()
    if m == "bar" and enabled:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "IProgress not found": fall back to text bars
            from tqdm.auto import tqdm
        mininterval = float(os.environ.get("TQDM_MININTERVAL", "0.5"))
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial,
                    mininterval=mininterval, leave=leave)
    return Summary(iterable, total=total, desc=desc, unit=unit, initial=initial,
                   disable=(m == "off" or not enabled))
