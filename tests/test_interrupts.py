"""Signals, concurrent processes and failed writes: SIGINT and SIGTERM stop training between two steps with an
exact resume point and exit 130 / 143; one process at a time writes a run folder or an export target; a full
disk, a file in the way or a failing git is one line naming the path, and leaves nothing half-written."""

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import babblelm.train.checkpoints as ckpt
from babblelm.cli import main
from babblelm.config import load_config
from babblelm.run import run_all
from babblelm.rundir import RunDir
from babblelm.train.launch import source_for, train
from babblelm.train.optim import Optimizers
from conftest import tiny_raw

REPO = Path(__file__).resolve().parents[1]


def weights(folder: Path) -> dict:
    return load_file(folder / "model.safetensors")


def same_weights(a: Path, b: Path) -> bool:
    mine, theirs = weights(a), weights(b)
    return mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


def milestones(run: Path) -> list[str]:
    return [p.name for p in RunDir(run).milestones()]


@pytest.fixture(scope="module")
def whole(small_corpus, tmp_path_factory):
    """An uninterrupted tiny run (several milestones) and its raw config."""
    run = tmp_path_factory.mktemp("whole") / "run"
    raw = tiny_raw(small_corpus, run, train={"epochs": 0.3, "log_every": 1})
    train(load_config(raw=raw), progress=False)
    assert len(milestones(run)) >= 3
    return run, raw


def elsewhere(raw: dict, folder: Path) -> dict:
    return {**raw, "run": {**raw["run"], "out_dir": str(folder)}}


def assert_exact(run: Path, whole_run: Path) -> None:
    """The final model and every milestone of the uninterrupted run, bitwise."""
    assert milestones(run) == milestones(whole_run)
    for name in ["final", *milestones(whole_run)]:
        assert same_weights(run / "checkpoints" / name, whole_run / "checkpoints" / name), name


def test_sigint_inside_an_optimizer_step_stops_after_it_exactly(whole, tmp_path, monkeypatch):
    """Ctrl-C lands inside the optimizer step: the step finishes, the resume point records it, and the resumed
    run ends with the uninterrupted weights."""
    whole_run, raw = whole
    calls, step = [], Optimizers.step

    def interrupted_step(self):
        calls.append(1)
        if len(calls) == 7:
            os.kill(os.getpid(), signal.SIGINT)
        step(self)

    monkeypatch.setattr(Optimizers, "step", interrupted_step)
    cfg = load_config(raw=elsewhere(raw, tmp_path / "run"))
    result = train(cfg, progress=False)
    monkeypatch.setattr(Optimizers, "step", step)
    assert result.interrupted and result.steps == 7
    assert ckpt.read_trainer_state(tmp_path / "run" / "checkpoints" / "last")["step"] == 6
    assert not train(cfg, resume=True, progress=False).interrupted
    assert_exact(tmp_path / "run", whole_run)
    assert result.signal == signal.SIGINT


def test_sigint_inside_a_milestone_write_completes_it(whole, tmp_path, monkeypatch, capsys):
    whole_run, raw = whole
    first = milestones(whole_run)[1]
    armed, save, rng_state = [], ckpt.save_checkpoint, ckpt._rng_state

    def saving(path, *args, **kwargs):
        armed[:] = [Path(path).name == first]
        return save(path, *args, **kwargs)

    def mid_write():
        if armed and armed.pop():  # the weights are written, the resume state and trainer_state.json not yet
            os.kill(os.getpid(), signal.SIGINT)
        return rng_state()

    monkeypatch.setattr(ckpt, "save_checkpoint", saving)
    monkeypatch.setattr(ckpt, "_rng_state", mid_write)
    cfg = load_config(raw=elsewhere(raw, tmp_path / "run"))
    result = train(cfg, progress=False)
    monkeypatch.undo()
    assert result.interrupted
    assert first in milestones(tmp_path / "run")  # written whole, not rolled back
    out = capsys.readouterr().out
    assert "stopped by SIGINT after step" in out and "continue with `babble train CONFIG --resume`" in out
    assert not train(cfg, resume=True, progress=False).interrupted
    assert_exact(tmp_path / "run", whole_run)
    assert result.signal == signal.SIGINT


def test_signals_and_kills_at_random_moments_resume_exactly(small_corpus, tmp_path):
    """`babble train` stopped by SIGINT, SIGTERM and SIGKILL at seeded random steps, every other stop inside a
    checkpoint write, resumed each time: exit 130 / 143 with the way to resume, and the final weights and every
    milestone bitwise those of a run never stopped (benchmarks/kill_resume.py, 6 stops)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from kill_resume import kill_and_resume

    raw = tiny_raw(small_corpus, tmp_path / "killed", train={"epochs": 0.5, "save_every": 2, "log_every": 1})
    result = kill_and_resume(raw, kills=6, seed=3, signals=(signal.SIGINT, signal.SIGTERM, signal.SIGKILL))
    assert len(result["rows"]) == 6 and result["inside_writes"] >= 2, result
    assert {sig for sig, _, _ in result["rows"]} == {"SIGINT", "SIGTERM", "SIGKILL"}
    assert result["equal"] and result["milestones"], result


# --- one process per folder -----------------------------------------------------------------------------------

def babble(*args, cwd: Path, limit_bytes: int | None = None, path: str | None = None, code: str | None = None):
    """`babble ARGS` as a subprocess with this checkout's sources (optionally under a file-size limit, with
    another PATH, or as the Python `code` that gets ARGS)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if path is not None:
        env["PATH"] = path
    limit = (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))) if limit_bytes else None
    command = ["-c", code] if code else ["-m", "babblelm.cli"]
    return subprocess.Popen([sys.executable, *command, *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=limit)


def wait_for(condition, proc, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "timed out"
        time.sleep(0.01)


def test_a_second_process_on_a_run_folder_is_refused(small_corpus, tmp_path, capsys):
    """While `babble train` runs, a second train --resume, a `babble run` and their recovery of interrupted writes
    are refused at once, naming its pid; the first is unharmed and stops on SIGTERM with 143."""
    run = tmp_path / "run"
    raw = tiny_raw(small_corpus, run, train={"epochs": 10, "save_every": 5, "log_every": 1})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    first = babble("train", "c.yaml", "--no-progress", cwd=tmp_path)
    wait_for(lambda: (run / "checkpoints" / "last").is_dir(), first)
    in_flight = run / "checkpoints" / f".tmp-chck_999M-{first.pid}"  # as if it were writing a checkpoint now
    in_flight.mkdir()
    cfg = load_config(raw=raw)
    with pytest.raises(Exception, match=f"in use by process {first.pid} "):  # folders.FolderBusy
        train(cfg, resume=True, progress=False)
    with pytest.raises(Exception, match=f"in use by process {first.pid} "):
        run_all(cfg, progress=False)
    assert main(["train", str(tmp_path / "c.yaml"), "--resume"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"in use by process {first.pid} (babble train c.yaml --no-progress" in err
    assert in_flight.is_dir()  # nobody recovered the living process's write
    in_flight.rmdir()
    first.send_signal(signal.SIGTERM)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 143, err
    assert "stopped by SIGTERM after step" in out and "continue with" in out and "Traceback" not in err
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if '"loss"' in line]
    assert steps == sorted(set(steps))  # one writer: no interleaved or repeated records
    assert not (run / ".babble-lock").exists()


def test_a_stale_lock_of_a_dead_process_is_taken_over(whole, tmp_path, capsys):
    whole_run, raw = whole
    gone = subprocess.Popen(["true"])
    gone.wait()
    run = tmp_path / "run"
    run.mkdir()
    (run / ".babble-lock").write_text(json.dumps({"pid": gone.pid, "command": "babble train c.yaml"}))
    assert not train(load_config(raw=elsewhere(raw, run)), progress=False).interrupted
    assert f"took over the lock of process {gone.pid} (babble train c.yaml), which is no longer running" in \
        capsys.readouterr().out
    assert not (run / ".babble-lock").exists()


def test_two_exports_into_one_target(whole, tmp_path):
    whole_run, _ = whole
    out = tmp_path / "repo"
    go = tmp_path.parent / f"{tmp_path.name}-go"
    ready = ("import sys, time, pathlib, babblelm.hubrepo; from babblelm.cli import main\n"  # imports done: it tries
             "while not pathlib.Path(sys.argv[1]).exists(): time.sleep(0.005)\nsys.exit(main(sys.argv[2:]))")
    second = babble(go, "export", whole_run, out, "--branches", cwd=tmp_path, code=ready)
    first = babble("export", whole_run, out, "--branches", cwd=tmp_path)
    wait_for(lambda: (tmp_path / ".repo.babble-lock").exists() or out.exists(), first)
    go.touch()
    _, err = second.communicate(timeout=120)
    assert second.returncode == 1 and err.count("\n") == 1, err
    assert f"the export target is in use by process {first.pid}" in err
    assert first.wait(timeout=300) == 0, first.communicate()
    from babblelm.hubrepo import branches

    assert branches(out) == ["main", *milestones(whole_run)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]  # no lock, no temporary folder left


# --- failed writes: one line naming the path, nothing half-written ------------------------------------------

def prepared(raw: dict) -> None:
    cfg = load_config(raw=raw)
    RunDir(cfg.out_dir).path.mkdir(parents=True)
    source_for(cfg).prepare(cfg, RunDir(cfg.out_dir), False)


def test_a_full_disk_while_training_is_one_line(whole, tmp_path):
    """A file-size limit below the size of the weights (the error a full disk gives: a failed write) stops
    `babble train` at its first checkpoint with one line naming it; no temporary folder is left."""
    _, raw = whole
    run = tmp_path / "run"
    raw = elsewhere(raw, run)
    prepared(raw)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    proc = babble("train", "c.yaml", "--no-progress", cwd=tmp_path, limit_bytes=100_000)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"error: {run / 'checkpoints'}/") and "cannot write: File too large" in err
    assert not list((run / "checkpoints").glob(".*"))


def test_failed_exports_are_one_line_and_leave_nothing(whole, tmp_path, monkeypatch, capsys):
    whole_run, _ = whole
    (tmp_path / "file").write_text("x")
    proc = babble("export", whole_run, tmp_path / "full", cwd=tmp_path, limit_bytes=100_000)  # a full disk
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1 and err == f"error: {tmp_path / 'full'}: cannot write: File too large\n", err
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "git").write_text("#!/bin/sh\necho 'fatal: simulated failure' >&2\nexit 128\n")
    (fake / "git").chmod(0o755)
    cases = {  # what is in the way -> (args, what the error starts with, the cause)
        "target is a file": (["export", whole_run, tmp_path / "file"], tmp_path / "file", "exists and is a file"),
        "under a file": (["export", whole_run, tmp_path / "file" / "sub"], tmp_path / "file", "is a file"),
        "git fails": (["export", whole_run, tmp_path / "git", "--branches"], None, "git init -q -b main failed"),
    }
    for case, (args, named, cause) in cases.items():
        with monkeypatch.context() as patch:
            if case == "git fails":
                patch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
            assert main([str(a) for a in args]) == 1, case
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and cause in err and (named is None or err.startswith(f"error: {named}:")), (case, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "file"]  # nothing half-written


def test_an_output_folder_under_a_file_is_one_line(whole, tmp_path, capsys):
    whole_run, _ = whole
    (tmp_path / "file").write_text("x")
    assert main(["eval", str(whole_run), "--tasks", "blimp", "--data", str(tmp_path), "--out",
                 str(tmp_path / "file" / "results")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path / 'file'}" in err and "is a file" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_is_one_line(whole, tmp_path, capsys):
    whole_run, _ = whole
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    try:
        assert main(["export", str(whole_run), str(tmp_path / "ro" / "hf")]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(tmp_path / "ro") in err and "Permission denied" in err
    finally:
        (tmp_path / "ro").chmod(0o755)
    assert not any((tmp_path / "ro").iterdir())


def test_checkpoint_and_language_are_names_not_paths(whole, tmp_path, capsys):
    whole_run, _ = whole
    for option, value in (("--checkpoint", "../../elsewhere"), ("--checkpoint", "/etc"), ("--language", ".."),
                          ("--language", "/tmp")):
        assert main(["eval", str(whole_run), "--tasks", "blimp", "--data", str(tmp_path), option, value]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{option} {value!r}: expected" in err and "not a path" in err
    assert main(["generate", str(whole_run), "the", "--checkpoint", "../final"]) == 2
    assert "not a path" in capsys.readouterr().err
