"""A progress bar (tqdm, imported only when shown) with a no-op stand-in."""

from __future__ import annotations


class _Quiet:
    total = None

    def update(self, n=1):
        pass

    def set_postfix(self, **kw):
        pass

    def write(self, text):
        import sys

        print(text, file=sys.stderr)

    def close(self):
        pass


def progress_bar(total=None, initial=0, enabled=True, desc="train", unit="step"):
    """tqdm bar showing rate and ETA, or a silent stand-in when disabled."""
    if not enabled:
        return _Quiet()
    from tqdm.auto import tqdm

    # Redraw at most twice a second: a log file (not a terminal) then stays readable.
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True,
                mininterval=0.5)
