"""Runs never lie about themselves: a folder holding a run is not silently reused, a resumed run
refuses a changed config unless told, interrupted checkpoint writes are recovered, damaged ones are
named, diverged weights are never saved, and every bad config or --set is a one-line error."""

import json
import random
import shutil

import pytest
import torch
from safetensors.torch import load_file

from babblelm.cli import main
from babblelm.config import load_config
from babblelm.configbase import ConfigError
from babblelm.train import checkpoints as ckpt
from babblelm.train.launch import train
from babblelm.train.optim import lr_multiplier
from conftest import tiny_raw


def snapshot(folder) -> dict:
    """{relative path: bytes} of every file under `folder`."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def cut_run(small_corpus, tmp_path_factory):
    """A tiny run stopped after 6 steps (a `last` resume point and some milestones), kept pristine."""
    folder = tmp_path_factory.mktemp("cut") / "run"
    raw = tiny_raw(small_corpus, folder, train={"epochs": 0.3, "save_every": 3})
    assert train(load_config(raw=raw), progress=False, stop_after_steps=6).interrupted
    return folder, raw


def copy_of(cut_run, tmp_path):
    folder, raw = cut_run
    shutil.copytree(folder, tmp_path / "run")
    return tmp_path / "run", {**raw, "run": {**raw["run"], "out_dir": str(tmp_path / "run")}}


def test_a_folder_holding_a_run_is_refused_unless_overwrite(cut_run, tmp_path):
    run, raw = copy_of(cut_run, tmp_path)
    before = snapshot(run)
    with pytest.raises(ValueError, match=r"already holds a run \(checkpoints: .*last.*\); continue it with --resume, "
                                         r"or start over with --overwrite"):
        train(load_config(raw=raw), progress=False)
    assert snapshot(run) == before  # nothing truncated, nothing rewritten
    (run / "checkpoints" / "chck_999M").mkdir()
    result = train(load_config(raw=raw), progress=False, overwrite=True)
    assert not result.interrupted and not (run / "checkpoints" / "chck_999M").exists()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["step"] <= 5  # a fresh metrics log, not the old one continued


def test_resume_refuses_a_changed_config_unless_allowed(cut_run, tmp_path):
    run, raw = copy_of(cut_run, tmp_path)
    config_before = (run / "config.yaml").read_bytes()
    new = {**raw, "optim": {**raw["optim"], "lr": 4e-3}, "schedule": {**raw["schedule"], "warmup_steps": 2}}
    with pytest.raises(ValueError, match=r"the config differs from the run's \(optim.lr: 0.003 -> 0.004, "
                                         r"schedule.warmup_steps: 5 -> 2\).*--allow-changes optim.lr schedule.warmup_steps"):
        train(load_config(raw=new), resume=True, progress=False)
    with pytest.raises(ValueError, match=r"schedule.warmup_steps: 5 -> 2"):  # every change must be named
        train(load_config(raw=new), resume=True, progress=False, allow_changes=["optim.lr"])
    shape = {**raw, "model": {**raw["model"], "intermediate_size": 96}}
    with pytest.raises(ValueError, match=r"model.intermediate_size: 64 -> 96 cannot change during a run"):
        train(load_config(raw=shape), resume=True, progress=False, allow_changes=["model"])

    cfg = load_config(raw=new)
    result = train(cfg, resume=True, progress=False, allow_changes=["optim", "schedule"])
    assert (run / "config.yaml").read_bytes() == config_before  # history is never rewritten
    changes = [json.loads(line) for line in (run / "config_changes.jsonl").read_text().splitlines()]
    assert changes == [{"step": 6, "key": "optim.lr", "from": 0.003, "to": 0.004},
                       {"step": 6, "key": "schedule.warmup_steps", "from": 5, "to": 2}]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"step": 6, "config_change": {"optim.lr": [0.003, 0.004], "schedule.warmup_steps": [5, 2]}} in records
    for r in records:  # the new peak and warmup apply from the resumed step on, the old ones before it
        if "lr" in r:
            spec = cfg.schedule if r["step"] > 6 else load_config(raw=raw).schedule
            peak = 4e-3 if r["step"] > 6 else 3e-3
            assert r["lr"] == pytest.approx(peak * lr_multiplier(r["step"], result.steps, spec), rel=1e-9)
    final = json.loads((result.final_dir / "hyperparameters.json").read_text())
    assert final["optim"]["lr"] == 4e-3 and final["changes"] == changes
    for milestone in (run / "checkpoints").glob("chck_*"):  # each says what had trained it when it was saved
        hparams = json.loads((milestone / "hyperparameters.json").read_text())
        before = ckpt.read_trainer_state(milestone)["step"] < 6
        assert hparams["optim"]["lr"] == (3e-3 if before else 4e-3) and ("changes" in hparams) != before


@pytest.mark.parametrize("finished_write", [True, False])
def test_a_kill_inside_a_checkpoint_write_is_recovered(cut_run, tmp_path, finished_write):
    """Killed between the two renames (the new `last` complete in .tmp, the old one moved to .old) or
    while writing (.tmp incomplete): the next run restores a complete `last` and leaves no debris."""
    run, raw = copy_of(cut_run, tmp_path)
    ckpts = run / "checkpoints"
    old_state = ckpt.read_trainer_state(ckpts / "last")
    shutil.copytree(ckpts / "last", ckpts / ".tmp-last-4242")
    newer = {**old_state, "step": old_state["step"] + 1}
    (ckpts / ".tmp-last-4242" / "trainer_state.json").write_text(json.dumps(newer))
    if not finished_write:
        (ckpts / ".tmp-last-4242" / "trainer_state.json").unlink()
    (ckpts / "last").rename(ckpts / ".old-last-4242")
    messages = ckpt.recover(ckpts)
    assert not list(ckpts.glob(".*")) and messages == ["restored last from an interrupted checkpoint write"]
    assert ckpt.read_trainer_state(ckpts / "last")["step"] == (newer if finished_write else old_state)["step"]


def test_an_interrupted_write_left_behind_is_recovered_on_resume(cut_run, tmp_path, capsys):
    run, raw = copy_of(cut_run, tmp_path)
    ckpts = run / "checkpoints"
    (ckpts / "last").rename(ckpts / ".old-last-77")  # the kill came after the first rename
    shutil.copytree(ckpts / ".old-last-77", ckpts / ".tmp-last-77")
    (ckpts / ".tmp-last-77" / "trainer_state.json").unlink()  # ... and before the new write finished
    result = train(load_config(raw=raw), resume=True, progress=False)
    assert not result.interrupted and not list(ckpts.glob(".*"))
    assert "restored last from an interrupted checkpoint write" in capsys.readouterr().out


@pytest.mark.parametrize("damage", ["truncate weights", "garbage weights", "truncate resume state", "garbage state"])
def test_a_damaged_checkpoint_is_named(cut_run, tmp_path, damage):
    run, raw = copy_of(cut_run, tmp_path)
    last = run / "checkpoints" / "last"
    target = {"truncate weights": "model.safetensors", "garbage weights": "model.safetensors",
              "truncate resume state": "resume_state.pt", "garbage state": "trainer_state.json"}[damage]
    data = (last / target).read_bytes()
    (last / target).write_bytes(data[: len(data) // 2] if damage.startswith("truncate") else b"\x00garbage{")
    before = snapshot(run)
    with pytest.raises(ValueError, match=f"{last}.*damaged"):
        train(load_config(raw=raw), resume=True, progress=False)
    after = snapshot(run)
    assert {k: v for k, v in after.items() if k != "metrics.jsonl"} == {k: v for k, v in before.items() if k != "metrics.jsonl"}


def test_diverged_weights_are_never_saved(small_corpus, tmp_path):
    raw = tiny_raw(small_corpus, tmp_path / "run", optim={"lr": 1e30, "grad_clip": 0.0},
                   train={"epochs": 0.3, "save_every": 1, "log_every": 1000})
    with pytest.raises(FloatingPointError, match="NaN or infinite"):
        train(load_config(raw=raw), progress=False)
    for weights in (tmp_path / "run" / "checkpoints").glob("*/model.safetensors"):
        assert all(torch.isfinite(t).all() for t in load_file(weights).values()), weights


# --- configs and --set: every bad input a one-line error naming its key ------------------------

def bad_configs(corpus: str) -> list[tuple[dict, list[str], str]]:
    """(raw config, --set overrides, the key path the error must name), generated."""
    base = {"data": {"corpus": corpus}}
    cases = [({}, [], "data.corpus"), ({"run": {"out_dir": "runs/{nope}"}, **base}, [], "run.out_dir"),
             ({"run": {"out_dir": "runs/{"}, **base}, [], "run.out_dir"), ({"run": {"device": "tpu"}, **base}, [], "run.device"),
             (base, ["optim.lr=[1"], "optim.lr"), (base, ["optim.lr"], "optim.lr"), (base, ["=3"], "=3"),
             (base, ["data.corpus.x=1"], "data.corpus"), (base, ["train.epochs=.nan"], "train.epochs"),
             (base, ["optim.lr=.inf"], "optim.lr"), (base, ["optim.lr=-.inf"], "optim.lr"), (base, ["nope.x=1"], "nope")]
    rng = random.Random(0)
    garbage = ["x", "", [1], {"a": 1}, -1, 0, 1e308, float("nan"), True, None, "1e9999", [[]], "{name}"]
    fields = {"run": ["name", "out_dir", "seed", "device"], "data": ["seq_len", "max_words", "track", "filters", "order"],
              "tokenizer": ["vocab_size", "min_frequency"], "optim": ["lr", "weight_decay", "betas", "grad_clip", "name"],
              "schedule": ["name", "warmup_steps", "min_lr_ratio"], "train": ["epochs", "batch_size", "grad_accum", "log_every"],
              "checkpoints": ["scale", "milestones"], "model": ["hidden_size", "num_hidden_layers", "arch"]}
    for section, names in fields.items():
        for name in names:
            for value in rng.sample(garbage, 5):
                raw = {**base, section: {**base.get(section, {}), name: value}} if section != "data" else \
                    {"data": {"corpus": corpus, name: value}}
                cases.append((raw, [], f"{section}.{name}"))
    return cases


def test_bad_configs_are_one_line_errors_naming_the_key(small_corpus, tmp_path, capsys):
    tried = 0
    for raw, sets, key in bad_configs(str(small_corpus)):
        try:
            load_config(raw=raw, overrides=sets)
        except ConfigError as err:
            assert key in str(err), (raw, sets, str(err))
            tried += 1
            continue
        # a value that happens to be valid for its field (e.g. seed 0): it must really be usable
        assert not sets, (raw, sets)
    assert tried >= 140  # of the generated cases, the rest being values valid for their field
    for top in ("- a\n- b\n", "just a string\n", "a: [1\n", "42\n"):
        path = tmp_path / "bad.yaml"
        path.write_text(top)
        assert main(["info", str(path), "--set", "optim.lr=1"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: invalid configuration") and err.count("\n") == 1 and "Traceback" not in err


def test_cuda_on_a_machine_without_it_is_named(small_corpus, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    raw = tiny_raw(small_corpus, tmp_path / "run", run={"device": "cuda"})
    with pytest.raises(ValueError, match="run.device: device 'cuda': this machine has no CUDA device"):
        train(load_config(raw=raw), progress=False)
    assert not (tmp_path / "run").exists()
