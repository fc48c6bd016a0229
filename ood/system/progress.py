"""Progress of the long loops: a training epoch, a backbone pass, a sweep's grid points.

On a terminal a tqdm bar shows it. tqdm's bar is disabled when stderr is not a terminal (nohup, SLURM, a
pipe), so a run there used to print nothing until it ended, and a stalled job looked like a slow one.
There, ``track`` prints a plain line to stderr every ``EVERY`` seconds and at the end of each loop: what
runs, done/total, the rate and the time left, lines a log file keeps readable (no carriage returns).
"""
import sys
import time

from tqdm import tqdm

EVERY = 30.0  # seconds between two plain progress lines (the end of a loop always prints one)


def track(items, what, total, quiet=False, size=len, unit="images"):
    """Iterate over ``items`` (a DataLoader's batches, a sweep's grid points) and report the progress:
    ``total`` ``unit`` in all, ``size(item)`` of them in each item. ``quiet``: nothing (--quiet, or a
    torchrun process other than rank 0). An item counts as done when the loop asks for the next one, so
    the rate includes the work done on it."""
    if quiet:
        yield from items
        return
    if sys.stderr.isatty():
        yield from tqdm(items, desc=what, leave=False)
        return
    lines = Lines(what, total, unit)
    for item in items:
        yield item
        lines.add(size(item))
    lines.end()


class Lines:
    """The plain progress lines of one loop."""

    def __init__(self, what, total, unit):
        self.what, self.total, self.unit = what, total, unit
        self.done, self.said = 0, None
        self.start = self.last = time.monotonic()

    def add(self, n):
        self.done += n
        if time.monotonic() - self.last >= EVERY:
            self.say()

    def end(self):
        if self.said != self.done:  # unless the last line, just printed, said so already
            self.say()

    def say(self):
        now = time.monotonic()
        self.last, self.said = now, self.done
        rate = self.done / (now - self.start) if now > self.start else 0.0
        left = max(0, self.total - self.done)
        eta = clock(left / rate) if rate > 0 else clock(0) if left == 0 else "unknown"
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        print(f"{self.what}: {self.done}/{self.total} {self.unit}{share}, {rate:.1f} {self.unit}/s, ETA {eta}",
              file=sys.stderr, flush=True)


def clock(seconds):
    """``seconds`` as h:mm:ss."""
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
