"""Progress display: a tqdm bar (rate and ETA) on a terminal; plain periodic lines in a log file
(a bar redrawn with carriage returns turns a log into one endless line); nothing when disabled."""

from __future__ import annotations

import sys
import time


class _Quiet:
    """No display; messages still reach stderr."""

    total = None

    def update(self, n=1):
        pass

    def set_postfix(self, **kw):
        pass

    def write(self, text):
        print(text, file=sys.stderr, flush=True)

    def close(self):
        pass


class _Lines(_Quiet):
    """One line every `every` seconds: step/total, the latest numbers, rate and ETA."""

    def __init__(self, total, initial, desc, unit, every=10.0):
        self.total, self.n, self.desc, self.unit, self.every = total, initial, desc, unit, every
        self.start = self.last = time.perf_counter()
        self.first = initial
        self.postfix = ""

    def update(self, n=1):
        self.n += n
        now = time.perf_counter()
        if now - self.last >= self.every or (self.total and self.n >= self.total):
            self.last = now
            rate = (self.n - self.first) / max(now - self.start, 1e-9)
            left = f", ETA {_clock((self.total - self.n) / rate)}" if self.total and rate > 0 else ""
            of = f"/{self.total}" if self.total else ""
            self.write(f"{self.desc} {self.n}{of} {self.postfix} ({rate:.2f} {self.unit}/s{left})")

    def set_postfix(self, **kw):
        self.postfix = ", ".join(f"{k} {v}" for k, v in kw.items())


def _clock(seconds):
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"


def progress_bar(total=None, initial=0, enabled=True, desc="train", unit="step"):
    """A tqdm bar on a terminal, periodic lines otherwise, or a silent stand-in when disabled."""
    if not enabled:
        return _Quiet()
    if not sys.stderr.isatty():
        return _Lines(total, initial, desc, unit)
    return _bar_class()(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True,
                        mininterval=0.5)  # redraw at most twice a second


def _bar_class():
    """tqdm, except that `set_postfix` does not redraw by itself: a loop that sets the postfix
    every step would otherwise redraw every step, whatever `mininterval` says. The new postfix
    shows at the next redraw that `update` makes."""
    from tqdm.auto import tqdm

    class Bar(tqdm):
        def set_postfix(self, ordered_dict=None, refresh=False, **kwargs):
            super().set_postfix(ordered_dict, refresh=refresh, **kwargs)

    return Bar
