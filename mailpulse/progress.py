"""Progress of long commands (sending a large audience, replay, export) on standard error.

On a terminal a tqdm bar (count, rate, time left); elsewhere (a log, CI) a line at the start, one every
few seconds and one at the end, since a bar redrawn with carriage returns reads as noise in a file.
Standard output stays for results.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any

from tqdm import tqdm

LINE_EVERY_SECONDS = 5.0


class Progress:
    def __init__(self, description: str, total: int | None, unit: str) -> None:
        self.description, self.total, self.unit = description, total, unit
        self.done = 0
        self._bar: Any = None
        self._started = time.monotonic()
        self._last_line: float | None = None  # when a line was last written (None: not yet)
        self._shown = 0  # the count the last line showed
        self._details: dict[str, object] = {}
        if sys.stderr.isatty():
            self._bar = tqdm(total=total, desc=description, unit=unit, unit_scale=True, file=sys.stderr, leave=True)

    def update(self, count: int = 1, **details: object) -> None:
        self.done += count
        if self._bar is not None:
            self._bar.update(count)
            if details:
                self._bar.set_postfix(details, refresh=False)
            return
        self._details = details or self._details
        now = time.monotonic()
        if self._last_line is None or now - self._last_line >= LINE_EVERY_SECONDS:
            self._last_line = now
            self._line()

    def set_total(self, total: int) -> None:
        self.total = total
        if self._bar is not None:
            self._bar.total = total
            self._bar.refresh()

    def _line(self) -> None:
        self._shown = self.done
        details = self._details
        share = f" ({100 * self.done / self.total:.0f} %)" if self.total else ""
        of = f"/{self.total}" if self.total else ""
        rate = self.done / max(time.monotonic() - self._started, 1e-9)
        extra = "".join(f", {key} {value}" for key, value in details.items())
        print(f"  {self.description}: {self.done}{of} {self.unit}s{share}, {rate:.0f}/s{extra}", file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.done != self._shown:
            self._line()  # where it ended
            self._last_line = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
