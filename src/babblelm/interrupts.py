"""SIGINT (Ctrl-C) and SIGTERM (what SLURM, Docker and Kubernetes send before a kill).

`babble` turns SIGTERM into `Interrupted`, raised like the `KeyboardInterrupt` of SIGINT (which it
subclasses), so every command unwinds the same way on both and exits with 128 + the signal's number
(130, 143). Training defers them instead (`deferred`): the first signal only sets a flag that the
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


def raise_on_sigterm() -> Callable[[], None]:
    """SIGTERM raises `Interrupted` (in the main thread), as SIGINT raises KeyboardInterrupt; returns the
    function that puts the previous handler back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.signal(signal.SIGTERM, _raise)
    return lambda: signal.signal(signal.SIGTERM, previous)


def _raise(signum, frame):
    raise Interrupted(signum)


class Pending:
    """The signal received inside `deferred` (None until one arrives)."""

    signum: int | None = None


@contextmanager
def deferred() -> Iterator[Pending]:
    """Within the block, the first SIGINT or SIGTERM sets `pending.signum` and nothing else; a second
    one raises `Interrupted`. Outside the main thread (where signals cannot be caught) a no-op."""
    pending = Pending()
    if threading.current_thread() is not threading.main_thread():
        yield pending
        return

    def handler(signum, frame):
        if pending.signum is not None:
            raise Interrupted(signum)
        pending.signum = signum

    previous = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    try:
        yield pending
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
