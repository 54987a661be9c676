"""A Hub-ready git repository of a run: `main` holds the final model, one branch per `chck_*` checkpoint.

    export_repo("runs/demo", "hf/demo")      # babble export runs/demo hf/demo --branches

This is the BabyLM submission layout: after `git push` to a Hugging Face model repo,
`from_pretrained("user/repo", revision="chck_5M")` loads the 5M-word checkpoint. Every branch is
a complete exported folder (weights, modeling code, tokenizer, `hyperparameters.json`, model card)
committed on top of `main`. Nothing contacts the network; the `git` command line does the work.

Locally, transformers ignores `revision` for a folder path (it reads the files on disk, i.e. the
checked-out branch), so open a local branch with `git worktree add DIR chck_5M` (see `checkout`).

The repository is built in a temporary sibling folder and moved into place only when every branch
is committed, under a lock on the target (folders.py): an interrupted or failed export leaves no
half-built repository, and a second export into the same target is refused.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

from .errors import NotUsable
from .export import write_export
from .folders import check_new_folder, folder_lock, recover, written_whole
from .rundir import RunDir, milestone_count, resolve_checkpoint

# The Hub stores these through git LFS (its standard .gitattributes patterns for model files).
LFS_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.onnx", "*.msgpack", "*.model")
HUB_FILE_LIMIT = 10 * 1024 * 1024  # files above this size need LFS to be pushed to the Hub


class GitError(NotUsable):
    """A git command failed (its message, on one line)."""


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` (no user config needed, never prompts); raise GitError with git's message on failure."""
    cmd = ["git", "-c", "user.name=babblelm", "-c", "user.email=babblelm@localhost", "-c", "commit.gpgsign=false",
           "-C", str(repo), *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    except FileNotFoundError:
        raise GitError("git is not installed (the Hub repository is a git repository): install git") from None
    if proc.returncode != 0:
        message = "; ".join(line.strip() for line in proc.stderr.splitlines() if line.strip())
        raise GitError(f"git {' '.join(args)} failed in {repo}: {message or f'exit status {proc.returncode}'}")
    return proc.stdout


def _has_lfs() -> bool:
    return subprocess.run(["git", "lfs", "version"], capture_output=True).returncode == 0


def export_repo(run_dir: str | Path, out_dir: str | Path, remote_code: bool = False, replace: bool = False) -> Path:
    """Write the repository; return its path. `out_dir` must not exist or be empty, unless `replace`
    (then the repository there is replaced once the new one is complete)."""
    run_dir, out = Path(run_dir), Path(out_dir)
    resolve_checkpoint(run_dir)  # a run folder with a final model, else a clear error
    if not RunDir(run_dir).is_run():
        raise ValueError(f"--branches needs a run folder (with checkpoints/), got {run_dir}")
    with folder_lock(out, "export target", beside=True):
        if not replace:
            check_new_folder(out, "repository")
        recover(out.parent, out.name)
        with written_whole(out, replace=replace) as tmp:
            _build_repo(tmp, run_dir, remote_code)
    return out


def _build_repo(out: Path, run_dir: Path, remote_code: bool) -> None:
    git(out, "init", "-q", "-b", "main")
    lfs = _has_lfs()
    if lfs:
        git(out, "lfs", "install", "--local")
    _commit_model(out, run_dir, None, "final model", remote_code)
    for folder in RunDir(run_dir).milestones():
        git(out, "checkout", "-q", "-b", folder.name, "main")
        _commit_model(out, run_dir, folder.name, f"checkpoint {folder.name}", remote_code)
    git(out, "checkout", "-q", "main")
    if not lfs:
        big = [p for p in out.rglob("*") if ".git" not in p.parts and p.is_file() and p.stat().st_size > HUB_FILE_LIMIT]
        if big:
            warnings.warn(f"git-lfs is not installed, so {len(big)} file(s) over 10 MB were committed as plain git "
                          "blobs; the Hub refuses those on `git push`: install git-lfs and export again, or upload "
                          "with `hf upload` (see the README)", stacklevel=3)


def _commit_model(repo: Path, run_dir: Path, checkpoint: str | None, message: str, remote_code: bool) -> None:
    """Replace the working tree with the exported checkpoint and commit it."""
    for item in repo.iterdir():
        if item.name != ".git":
            shutil.rmtree(item) if item.is_dir() else item.unlink()
    write_export(resolve_checkpoint(run_dir, checkpoint), repo, remote_code=remote_code)
    (repo / ".gitattributes").write_text("".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS),
                                         encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def complete(repo: str | Path, names: list[str]) -> bool:
    """Whether `repo` is a whole export: exactly the branches `names` (main first), `main` checked out, nothing
    changed in its working tree."""
    repo = Path(repo)
    try:
        return ((repo / ".git").is_dir() and branches(repo) == names
                and git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
                and not git(repo, "status", "--porcelain").strip())
    except GitError:
        return False


def branches(repo: str | Path) -> list[str]:
    """The repository's branches: main first, then the checkpoints in milestone order."""
    names = git(Path(repo), "for-each-ref", "--format=%(refname:short)", "refs/heads").split()
    return sorted(names, key=lambda name: (name != "main", milestone_count(name) or 0, name))


def checkout(repo: str | Path, revision: str, dest: str | Path | None = None) -> Path:
    """A folder holding `revision` of the repository (a `git worktree`), loadable with `from_pretrained`."""
    dest = Path(dest) if dest else Path(tempfile.mkdtemp(prefix=f"{revision}-")) / revision
    if revision not in branches(repo):
        raise ValueError(f"{repo}: no branch {revision!r}; branches: {', '.join(branches(repo))}")
    git(Path(repo), "worktree", "add", "-q", "--detach", str(dest), revision)
    return dest
