"""`babble run` deletes nothing it did not write, overwrites nothing without --overwrite, counts a stage done only
when its outputs are complete and made from the current config, and ends every failure with its summary table."""

import json
import os
import shutil
import signal
import time

import pytest
import yaml

from babblelm.cli import main
from babblelm.config import load_config
from babblelm.hubrepo import branches, git
from babblelm.run import run_all
from babblelm.rundir import RunDir
from babblelm.train.launch import train
from conftest import tiny_raw
from eval_fixtures import write_eval_data


def snapshot(folder) -> dict:
    """{relative path: bytes} of every file under `folder`."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def write_config(raw: dict, path) -> str:
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def moved(raw: dict, folder) -> dict:
    return {**raw, "run": {**raw["run"], "out_dir": str(folder)}}


def whole_repository(repo, run) -> bool:
    """`repo` holds main and a branch per milestone, has main checked out and nothing changed in its files."""
    names = ["main", *(m.name for m in RunDir(run).milestones())]
    return (branches(repo) == names and git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
            and not git(repo, "status", "--porcelain").strip())


def table(out: str) -> dict[str, str]:
    """{stage: status} of the summary table `babble run` printed."""
    rows = out[out.index("| stage | status |"):].splitlines()[2:]
    return {row.split("|")[1].strip(): row.split("|")[2].strip() for row in rows if row.count("|") >= 4}


PREPARED: list[str] = []  # the data folders `prepare_data` was called on while the `finished` run ran


@pytest.fixture(scope="module")
def finished(small_corpus, tmp_path_factory):
    """A whole `babble run` (two milestones, BLiMP scored, exported), kept pristine; its raw config."""
    import babblelm.train.plan as plan

    root = tmp_path_factory.mktemp("finished")
    raw = tiny_raw(small_corpus, root / "run", train={"epochs": 0.3})
    raw["eval"] = {"tasks": ["blimp"], "data": str(write_eval_data(root / "eval"))}
    prepare = plan.prepare_data

    def counted(data_cfg, tok_cfg, out_dir, **options):
        PREPARED.append(str(out_dir))
        return prepare(data_cfg, tok_cfg, out_dir, **options)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plan, "prepare_data", counted)
        summary = run_all(load_config(raw=raw), progress=False, log=lambda _: None)
    assert not summary.failed and RunDir(root / "run").milestones() and RunDir(root / "run").hf.is_dir()
    return root / "run", raw


def test_a_run_prepares_its_data_once(finished):
    """The data stage prepares (hashing every input and output file); training receives its manifest."""
    folder, _ = finished
    assert PREPARED == [str(RunDir(folder).data)]


def test_the_card_of_main_and_of_every_branch_shows_its_scores(finished, tmp_path):
    """The exported card shows the final model's scores and the learning curve of the fast stage; each
    `chck_*` branch's card shows that checkpoint's own fast scores."""
    from babblelm.hubrepo import checkout
    from babblelm.rundir import FINAL

    folder, _ = finished
    run = RunDir(folder)
    card = (run.hf / "README.md").read_text()
    final = json.loads((run.results_of(FINAL) / "blimp.json").read_text())["scores"]["blimp"]
    assert "### Zero-shot\n" in card and f"| blimp | blimp | {final:.2f} |" in card
    curve = (run.fast_results / "learning_curves.md").read_text().strip()
    assert "### Across checkpoints (fast evaluation)" in card and curve in card
    for milestone in run.milestones():
        branch = (checkout(run.hf, milestone.name, tmp_path / milestone.name) / "README.md").read_text()
        score = json.loads((run.fast_results_of(milestone.name) / "blimp.json").read_text())["scores"]["blimp"]
        assert f"({milestone.name})" in branch and "### Zero-shot, fast evaluation" in branch
        assert f"| blimp | blimp | {score:.2f} |" in branch and curve in branch


def copy_of(finished, tmp_path):
    folder, raw = finished
    shutil.copytree(folder, tmp_path / "run")
    return tmp_path / "run", moved(raw, tmp_path / "run")


def test_run_keeps_every_file_it_did_not_write(small_corpus, tmp_path, capsys):
    """A folder holding notes, sources and a foreign checkpoint: `babble run` trains beside them."""
    run = tmp_path / "run"
    (run / "sources").mkdir(parents=True)
    (run / "notes.txt").write_text("my notes")
    (run / "sources" / "prep.py").write_text("print(1)")
    (run / "checkpoints" / "theirs").mkdir(parents=True)
    (run / "checkpoints" / "theirs" / "weights.bin").write_bytes(b"\x00" * 64)
    foreign = snapshot(run)
    raw = tiny_raw(small_corpus, run, train={"epochs": 0.2})
    assert main(["run", write_config(raw, tmp_path / "c.yaml"), "--no-progress"]) == 0
    assert table(capsys.readouterr().out)["train"] == "done"
    assert {k: v for k, v in snapshot(run).items() if k in foreign} == foreign
    assert (run / "checkpoints" / "final" / "model.safetensors").is_file()


def test_run_refuses_a_run_it_cannot_continue(finished, tmp_path, capsys):
    """A finished run whose final model and resume states were deleted to save space is not retrained over."""
    run, raw = copy_of(finished, tmp_path)
    shutil.rmtree(run / "checkpoints" / "final")
    for state in (run / "checkpoints").glob("*/resume_state.pt"):
        state.unlink()
    (run / "notes.txt").write_text("mine")
    before = snapshot(run)
    config = write_config(raw, tmp_path / "c.yaml")
    assert main(["run", config, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds a run that cannot be continued" in err and "--overwrite" in err
    assert snapshot(run) == before  # nothing deleted, nothing rewritten
    assert main(["run", config, "--no-progress", "--overwrite"]) == 0  # deletes what the run wrote, keeps the rest
    out = capsys.readouterr().out
    assert table(out)["train"] == "done" and "kept 1 file(s)" in out and "notes.txt" in out
    assert (run / "notes.txt").read_text() == "mine" and (run / "checkpoints" / "final").is_dir()


@pytest.mark.parametrize("change", ["model", "tokenizer", "data"])
def test_run_refuses_a_changed_config_and_writes_nothing(finished, tmp_path, capsys, change):
    run, raw = copy_of(finished, tmp_path)
    if change == "data":  # an unfinished run: the data must not be rewritten before the refusal
        shutil.rmtree(run / "checkpoints" / "final")
    section, key, value = {"model": ("model", "hidden_size", 64), "tokenizer": ("tokenizer", "vocab_size", 500),
                           "data": ("data", "seq_len", 16)}[change]
    old = raw[section][key]
    changed = {**raw, section: {**raw[section], key: value}}
    before = snapshot(run)
    assert main(["run", write_config(changed, tmp_path / "c.yaml"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{section}.{key}: {old!r} -> {value!r}" in err and "--overwrite" in err
    assert snapshot(run) == before
    # evaluation settings may change: only the evaluation is redone
    again = {**raw, "eval": {**raw["eval"], "tasks": ["blimp", "supplement"]}}
    if change != "data":
        assert main(["run", write_config(again, tmp_path / "e.yaml"), "--no-progress"]) == 0
        assert table(capsys.readouterr().out)["train"] == "reused"
        assert (run / "results" / "final" / "supplement.json").is_file()


def test_the_fast_stage_names_the_tasks_it_has_no_fast_subset_for(finished, tmp_path, capsys):
    """Tasks of eval.tasks without a fast subset under eval.rules are named in the fast stage's line, not dropped
    silently; the full stage scores them."""
    run, raw = copy_of(finished, tmp_path)
    again = {**raw, "eval": {**raw["eval"], "tasks": ["blimp", "comps"], "rules": "2026"}}
    assert main(["run", write_config(again, tmp_path / "e.yaml"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    fast = out[out.index("== fast"):out.index("== full")]
    assert "x blimp;" in fast and "no fast subset under the 2026 rules: comps" in fast
    assert table(out)["full"] == "done" and (run / "results" / "final" / "comps.json").is_file()


def test_a_killed_export_is_redone_not_reused(finished, tmp_path, monkeypatch):
    """Interrupted mid-export (after main and one branch) and killed in another write: the next run ends with a
    whole repository on main, and no temporary folder is left."""
    import babblelm.hubrepo as hubrepo

    run, raw = copy_of(finished, tmp_path)
    calls, commit = [], hubrepo._commit_model

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return commit(*args, **kwargs)

    monkeypatch.setattr(hubrepo, "_commit_model", interrupted)
    try:
        run_all(load_config(raw=raw), force=["export"], progress=False, log=lambda _: None)
    except KeyboardInterrupt:
        pass
    monkeypatch.setattr(hubrepo, "_commit_model", commit)
    (run / f".tmp-hf-{os.getpid() + 1}").mkdir()  # a kill -9 in the middle of another export
    summary = run_all(load_config(raw=raw), progress=False, log=lambda _: None)
    assert {s.stage: s.status for s in summary.stages}["export"] in ("reused", "done")
    assert whole_repository(run / "hf", run)
    assert not list(run.glob(".tmp-*")) and not list(run.glob(".old-*"))
    assert (run / "hf" / "model.safetensors").is_file()


def test_failed_evaluation_is_failed_and_its_old_report_is_not_current(finished, tmp_path, capsys):
    run, raw = copy_of(finished, tmp_path)
    assert (run / "results" / "report.md").is_file()
    data = tmp_path / "eval"
    shutil.copytree(raw["eval"]["data"], data)
    for path in data.rglob("agreement.jsonl"):
        path.write_text('{"sentence_good": "only one field"}\n')
    broken = {**raw, "eval": {**raw["eval"], "data": str(data)}}
    assert main(["run", write_config(broken, tmp_path / "c.yaml"), "--no-progress"]) == 1
    captured = capsys.readouterr()
    stages = table(captured.out)
    assert stages["fast"] == "failed" and stages["full"] == "failed" and stages["report"] == "skipped", stages
    assert not (run / "results" / "report.md").exists() and (run / "results" / "report.md.stale").is_file()
    assert "FAILED blimp" in captured.err


def test_a_damaged_checkpoint_ends_with_the_summary_naming_it(finished, tmp_path, capsys):
    run, raw = copy_of(finished, tmp_path)
    damaged = RunDir(run).milestones()[0]
    weights = damaged / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    assert main(["run", write_config(raw, tmp_path / "c.yaml"), "--no-progress"]) == 1
    captured = capsys.readouterr()
    stages = table(captured.out)
    assert stages["fast"] == "failed" and stages["full"] == "done" and stages["export"] == "failed", stages
    assert f"FAILED fast/{damaged.name}/blimp:" in captured.err and str(weights) in captured.err
    assert "Traceback" not in captured.err
    assert json.loads((run / "stages.json").read_text())["export"]  # the earlier export and its record stay
    assert whole_repository(run / "hf", run)


def test_an_interrupted_run_resumes_with_the_summary(finished, tmp_path, small_corpus, capsys):
    """`babble train --stop-after` leaves a resume point; `babble run` continues it and reports the table."""
    _, raw = finished
    run = tmp_path / "run"
    cut = moved(raw, run)
    assert train(load_config(raw=cut), progress=False, stop_after_steps=3).interrupted
    assert main(["run", write_config(cut, tmp_path / "c.yaml"), "--no-progress"]) == 0
    assert table(capsys.readouterr().out) == {"data": "reused", "train": "done", "fast": "done", "full": "done",
                                              "report": "done", "export": "done", "submit": "skipped"}


def test_a_signal_whose_interrupt_is_lost_still_stops_the_run(finished, tmp_path, monkeypatch, capsys):
    """A SIGTERM whose KeyboardInterrupt a library swallows (or Python drops in a finalizer) still stops the run
    after the stage it landed in, with the table and exit 143."""
    import babblelm.run as stages

    run, raw = copy_of(finished, tmp_path)
    fast = stages.STEPS["fast"]

    def swallowing(*args):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)
        except BaseException:  # noqa: BLE001 (as some library code does)
            pass
        return fast(*args)

    monkeypatch.setitem(stages.STEPS, "fast", swallowing)
    previous = signal.signal(signal.SIGTERM, lambda *_: None)  # babble replaces it; without that, pytest would die
    try:
        code = main(["run", write_config(raw, tmp_path / "c.yaml"), "--no-progress"])
    finally:
        signal.signal(signal.SIGTERM, previous)
    out = capsys.readouterr().out
    assert code == 143 and table(out) == {"data": "reused", "train": "reused", "fast": "interrupted"}, out
