"""SIGINT (Ctrl-C) and SIGTERM (what SLURM, Docker and Kubernetes send before a kill).

`babble` turns both into `Interrupted`, a `KeyboardInterrupt`, so every command unwinds the same way
on both and exits with 128 + the signal's number (130, 143). Each one is also recorded (`received`):
the exception can be lost (Python drops one raised inside a finalizer, and library code may catch
it), so a signal that lands there would otherwise go unnoticed; `babble run` checks the record
between stages, training when it starts, and `babble` before it exits. Training defers them instead (`deferred`): the first signal only sets a flag that the
loop reads between optimizer steps, so a step and a checkpoint being written always finish; the run
then saves an exact resume point and stops. A second signal stops at once (`Interrupted`), saving
nothing: the newest complete checkpoint is the resume point.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A SIGINT or SIGTERM that stops a command; `signum` says which."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def signal_of(err: KeyboardInterrupt) -> int:
    return getattr(err, "signum", signal.SIGINT)


def exit_code(signum: int) -> int:
    return 128 + signum


def name(signum: int) -> str:
    return signal.Signals(signum).name


_received: list[int] = []  # the signals `_raise` turned into `Interrupted`, in order


def raise_on_signals() -> Callable[[], None]:
    """SIGINT and SIGTERM raise `Interrupted` (in the main thread) and are recorded; returns the function
    that puts the previous handlers back and forgets the record."""
    _received.clear()
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.signal(sig, _raise) for sig in SIGNALS}

    def restore():
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _received.clear()

    return restore


def received() -> int | None:
    """The last signal raised as `Interrupted` since `raise_on_signals`, even if the raise was lost."""
    return _received[-1] if _received else None


def _raise(signum, frame):
    _received.append(signum)
    raise Interrupted(signum)


class Pending:
    """The signal received inside `deferred` (None until one arrives)."""

    signum: int | None = None


@contextmanager
def deferred() -> Iterator[Pending]:
    """Within the block, the first SIGINT or SIGTERM sets `pending.signum` and nothing else; a second
    one raises `Interrupted`. One received before the block whose raise was lost counts as the first.
    Outside the main thread (where signals cannot be caught) a no-op."""
    pending = Pending()
    pending.signum = received()
    if threading.current_thread() is not threading.main_thread():
        yield pending
        return

    def handler(signum, frame):
        if pending.signum is not None:
            _raise(signum, frame)
        pending.signum = signum

    previous = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    try:
        yield pending
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
