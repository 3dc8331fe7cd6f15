"""Progress lines for long loops (RL iterations, SFT steps, evaluation completions).

Plain lines through `logging`, no carriage-return bar: a terminal, a Prefect log and a DVC log all show
them the same. A line is written for the first step, the last, and then whenever `interval_s` seconds
have passed since the previous line (and every `every` steps, when set), so a 20 s run still shows
progress and a 10 h run is not flooded. The speed is the mean over the last `window` steps, not the
last step alone, so one slow step (a checkpoint, a probe) does not swing the ETA.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from typing import Callable

log = logging.getLogger(__name__)

INTERVAL_S = 10.0  # seconds between lines
WINDOW = 10  # steps the s/step mean covers


def format_duration(seconds: float) -> str:
    """4.2s, 12s, 3m05s, 2h07m: short, fixed meaning, readable in a log."""
    if seconds < 9.95:
        return f"{max(seconds, 0.0):.1f}s"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def format_fields(fields: dict[str, float | int | str]) -> str:
    """'name value' pairs; floats with 4 significant digits, strings as given (pre-formatted by the caller)."""
    return "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())


class ProgressReporter:
    """Reports `done`/`total` of a loop that starts at `start` (a resumed run: its first step's index).

    Call `update(done, fields)` after each step with the number of steps done so far; it writes a line
    when one is due and returns whether it did. `clock` is injectable (tests); `logger` receives the lines.
    """

    def __init__(self, name: str, total: int, *, start: int = 0, unit: str = "it", interval_s: float = INTERVAL_S,
                 window: int = WINDOW, every: int | None = None, clock: Callable[[], float] = time.monotonic,
                 logger: logging.Logger = log, enabled: bool = True):
        self.name, self.total, self.start, self.unit = name, total, start, unit
        self.interval_s, self.every, self.clock, self.logger, self.enabled = interval_s, every, clock, logger, enabled
        self.began = clock()
        # (steps done, time) of the last `window` steps and the point before them, for the windowed mean
        self.marks: deque[tuple[int, float]] = deque([(start, self.began)], maxlen=window + 1)
        self.last_line: float | None = None

    def seconds_per_step(self) -> float:
        """Mean seconds per step over the window (nan before the first step)."""
        (n0, t0), (n1, t1) = self.marks[0], self.marks[-1]
        return (t1 - t0) / (n1 - n0) if n1 > n0 else float("nan")

    def due(self, done: int, now: float) -> bool:
        return (self.last_line is None or done >= self.total or now - self.last_line >= self.interval_s
                or (self.every is not None and done % self.every == 0))

    def update(self, done: int, fields: dict[str, float | int | str] | None = None) -> bool:
        now = self.clock()
        self.marks.append((done, now))
        if not (self.enabled and self.due(done, now)):
            return False
        self.last_line = now
        self.logger.info("%s", self.line(done, now, fields or {}))
        return True

    def line(self, done: int, now: float, fields: dict[str, float | int | str]) -> str:
        rate = self.seconds_per_step()
        remaining = max(self.total - done, 0)
        unknown = math.isnan(rate)
        eta = "0s" if remaining == 0 else ("?" if unknown else format_duration(rate * remaining))
        speed = "?" if unknown else f"{rate:.3g}"
        head = (f"{self.name} {done}/{self.total}  {speed} s/{self.unit}  elapsed {format_duration(now - self.began)}"
                f"  ETA {eta}")
        extra = format_fields(fields)
        return f"{head}  {extra}" if extra else head
