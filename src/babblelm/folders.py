"""Folders babblelm writes: one process at a time, and whole or not at all.

    with folder_lock(run_path, "run folder"):          # a second process is refused, naming this one's pid
        with written_whole(out) as tmp:                # written in .tmp-<name>-<pid>, moved into place complete
            write_everything_into(tmp)

`folder_lock` is an exclusive `flock` on a lock file (`<folder>/.babble-lock`, or beside the folder
with `beside=True` for an output that must stay empty until it is complete). The kernel releases it
when its process ends however it ends (kill -9 too), so a lock file left by a dead process is stale:
the next process takes it over and says so. Locks are re-entrant within a process. A lock file
records the holder's pid and command line, which a refused process names; it is deleted on release.

`written_whole` writes into a temporary sibling and renames it into place when complete; an older
folder of the same name (only with `replace`) is moved aside to `.old-<name>-<pid>` first and
deleted after. `recover` sorts out what a process killed in between left (called under the lock,
so no living process is writing those folders). Write failures (a full disk, a read-only folder,
a path under a file) become one `OSError` naming the path and the cause (`write_error`).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import NotUsable

LOCK_FILE = ".babble-lock"


class FolderBusy(NotUsable):
    """Another living process holds the folder's lock."""


_held: dict[str, int] = {}  # lock file (resolved) -> how many times this process holds it


def lock_path(folder: str | Path, beside: bool = False) -> Path:
    folder = Path(folder)
    return folder.parent / f".{folder.name}{LOCK_FILE}" if beside else folder / LOCK_FILE


@contextmanager
def folder_lock(folder: str | Path, what: str = "folder", beside: bool = False, log=print) -> Iterator[None]:
    """Hold `folder`'s exclusive lock (creating the folder, unless `beside`) for the block; raise
    `FolderBusy` at once, naming the holder's pid, when another process holds it. Folders this call
    created are removed again if they are still empty at the end (a refused start leaves nothing)."""
    folder = Path(folder)
    path = lock_path(folder, beside)
    created = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(path)
    if _held.get(key):
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    try:
        fd = _acquire(path, folder, what, log)
    except BaseException:
        _remove_empty(created)
        raise
    _held[key] = 1
    try:
        yield
    finally:
        del _held[key]
        path.unlink(missing_ok=True)  # before the unlock: a waiting process then finds the file gone and retries
        os.close(fd)
        _remove_empty(created)


def _remove_empty(folders: list[Path]) -> None:
    """Remove those of `folders` (deepest first) that hold nothing."""
    for folder in folders:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _acquire(path: Path, folder: Path, what: str, log) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise FolderBusy(f"{folder}: the {what} is in use by process {holder.get('pid', '?')} "
                             f"({holder.get('command', 'another babble command')}, since {holder.get('since', '?')}); "
                             "wait for it to end or stop it, then run this again") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # its last holder deleted the file after we opened it: lock the new one
    stale = _read_holder(fd)
    if stale.get("pid") not in (None, os.getpid()):
        log(f"{folder}: took over the lock of process {stale['pid']} ({stale.get('command', '?')}), which is no longer running")
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "command": " ".join(["babble", *sys.argv[1:]])[:200],
                              "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode(), 0)
    return fd


def _read_holder(fd: int) -> dict:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}


def write_error(path: str | Path, err: BaseException) -> OSError | None:
    """`err` (raised while writing `path`) as one OSError naming the path and the cause, when it is
    a failed write: an OSError, or a library's error wrapping one (safetensors and torch.save do)."""
    cause: BaseException | None = err
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__ or cause.__context__
    code = cause.errno if isinstance(cause, OSError) and cause.errno else None
    if code is None and (found := re.search(r"\(os error (\d+)\)", str(err))):
        code = int(found.group(1))
    if code is None:
        return None
    return OSError(code, f"cannot write: {os.strerror(code)}", str(path))


def check_new_folder(path: str | Path, what: str, empty: bool = True) -> Path:
    """`path` if a folder can be written there whole: nothing there yet, or an empty folder (any folder,
    unless `empty`). A file in the way is an OSError naming it; a folder with something in it a ValueError."""
    path = Path(path)
    for above in [path, *path.parents]:
        if above.exists() or above.is_symlink():
            if not above.is_dir():
                why = "exists and is a file" if above == path else "is a file, so nothing can be written under it"
                raise NotADirectoryError(errno.ENOTDIR, f"{why}; expected a new or empty folder for the {what}",
                                         str(above))
            break
    if empty and path.is_dir() and any(path.iterdir()):
        raise ValueError(f"{path} exists and is not empty; choose a new folder for the {what}")
    return path


def _temporary(path: Path, kind: str) -> Path:
    return path.parent / f".{kind}-{path.name}-{os.getpid()}"


@contextmanager
def written_whole(path: str | Path, replace: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary folder to write `path` into; when the block ends, move it into place.
    On any failure the temporary folder is deleted (a write failure re-raised as `write_error`) and
    `path` is as it was. `path` may exist only as an empty folder, unless `replace`."""
    path = Path(path)
    tmp = _temporary(path, "tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        tmp.mkdir(parents=True)
        yield tmp
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        failed = write_error(path, err) if isinstance(err, Exception) else None
        if failed is None:
            raise
        raise failed from None
    swap_in(tmp, path, replace)


def swap_in(tmp: Path, path: Path, replace: bool) -> None:
    """Rename the complete folder `tmp` to `path`: an older `path` is moved aside first (`replace`),
    or must be an empty folder, and is deleted once the new one is in place."""
    old = _temporary(path, "old")
    try:
        if path.exists() or path.is_symlink():
            if not path.is_dir() or path.is_symlink() or not replace and any(path.iterdir()):
                raise FileExistsError(errno.EEXIST, "exists and is not an empty folder (it appeared while writing)",
                                      str(path))
            os.replace(path, old)
        os.replace(tmp, path)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not path.exists():
            os.replace(old, path)
        raise write_error(path, err) or err from None
    if old.exists():
        shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()


def recover(parent: str | Path, name: str | None = None, complete: Callable[[Path], bool] | None = None,
            what: str = "write") -> list[str]:
    """Finish or undo the folder writes (`written_whole`, checkpoints) of processes killed mid-write,
    in `parent`, for the folder `name` (default: every one); what was done, as messages. With a
    `complete` test, a complete leftover replaces a missing or incomplete folder of its name; without
    one the renames are trusted (a `.tmp-*` was never finished, a folder moved aside was whole). Every
    other leftover is deleted, so a folder moved aside comes back only if none of its name remains."""
    done = []
    parent = Path(parent)
    for prefix in (".tmp-", ".old-"):  # new writes first: a complete one beats the copy it replaced
        for leftover in sorted(parent.glob(f"{prefix}{name or '*'}-*")):
            target_name, _, pid = leftover.name[len(prefix):].rpartition("-")
            if not pid.isdigit() or (name is not None and target_name != name):
                continue
            target = parent / target_name
            if complete is None:
                wins = prefix == ".old-" and not target.exists()
            else:
                wins = complete(leftover) and not complete(target)
            if wins:
                if target.exists():
                    shutil.rmtree(target)
                os.replace(leftover, target)
                done.append(f"restored {target.name} from an interrupted {what}")
            else:
                shutil.rmtree(leftover) if leftover.is_dir() and not leftover.is_symlink() else leftover.unlink()
    return done
