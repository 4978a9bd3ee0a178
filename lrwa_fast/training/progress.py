"""Progress of long work: a redrawn bar on a terminal, plain lines in a file or pipe (CI and cluster logs).

A plain line is printed about every 10% of the work or every 30 s, whichever comes first, and at
the end, with the rate, the estimated time left and the latest values shown.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol, TextIO

LINE_FRACTION = 0.1  # plain lines: one per tenth of the work...
LINE_SECONDS = 30.0  # ...or per 30 s, whichever comes first


class Progress(Protocol):
    def update(self, shown: dict[str, str] | None = None) -> None:
        """One unit done; ``shown`` replaces the values displayed beside the count."""

    def close(self) -> None:
        """Finish the display."""


class NoProgress:
    """Shows nothing."""

    def update(self, shown: dict[str, str] | None = None) -> None:
        """Nothing to show."""

    def close(self) -> None:
        """Nothing to close."""


class TerminalProgress:
    """A tqdm bar redrawn in place."""

    def __init__(self, total: int, name: str, stream: TextIO, unit: str) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total, desc=name, unit=unit, leave=False, dynamic_ncols=True, file=stream)

    def update(self, shown: dict[str, str] | None = None) -> None:
        self._bar.update(1)
        if shown:
            self._bar.set_postfix(shown, refresh=False)

    def close(self) -> None:
        self._bar.close()


class LineProgress:
    """One plain line per tenth of the work or per 30 s (no carriage returns)."""

    def __init__(self, total: int, name: str, stream: TextIO, unit: str) -> None:
        self.total, self.name, self.stream, self.unit = total, name, stream, unit
        self.done, self.shown = 0, {}
        self._start = self._last_line = time.monotonic()
        self._next_count = self._step()

    def _step(self) -> int:
        return self.done + max(1, round(LINE_FRACTION * self.total))

    def update(self, shown: dict[str, str] | None = None) -> None:
        self.done += 1
        if shown:
            self.shown = shown
        now = time.monotonic()
        if self.done >= self._next_count or now - self._last_line >= LINE_SECONDS or self.done == self.total:
            self._print(now)

    def _print(self, now: float) -> None:
        elapsed = now - self._start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        values = " ".join(f"{k}={v}" for k, v in self.shown.items())
        percent = 100 * self.done // max(1, self.total)
        print(f"{self.name}: {self.done}/{self.total} {self.unit} ({percent}%), {rate:.3g} {self.unit}/s, "
              f"elapsed {format_seconds(elapsed)}, ETA {format_seconds(eta)}{'  ' + values if values else ''}",
              file=self.stream, flush=True)
        self._last_line, self._next_count = now, self._step()

    def close(self) -> None:
        """The last line is printed by the last update."""


def progress(total: int, name: str, *, enabled: bool = True, stream: TextIO | None = None,
             unit: str = "it") -> Progress:
    """A bar on a terminal, plain lines elsewhere, nothing when disabled (``stream``: stderr)."""
    if not enabled or total <= 0:
        return NoProgress()
    stream = stream if stream is not None else sys.stderr
    kind: Any = TerminalProgress if _is_terminal(stream) else LineProgress
    return kind(total, name, stream, unit)


def _is_terminal(stream: TextIO) -> bool:
    """A terminal, or a notebook (whose streams are not ttys but show tqdm's widget)."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) or "ipykernel" in sys.modules


def format_seconds(seconds: float) -> str:
    """``1h02m03s`` / ``2m03s`` / ``3s``."""
    s = round(seconds)
    hours, rest = divmod(s, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
