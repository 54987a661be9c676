"""How `babble` ends: 0 done; 1 the work could not be done with what it found (a damaged model folder,
a folder another process holds, a failed write or git command, a task that failed); 2 the command or
its configuration is wrong; 130 / 143 stopped by SIGINT / SIGTERM (interrupts.py). Every error is one
line naming the place and the cause."""

from __future__ import annotations


class NotUsable(Exception):
    """What the command was given or found cannot be used as it is; `babble` exits 1."""
