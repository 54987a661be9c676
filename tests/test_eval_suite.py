"""`babble eval --tasks/--all-checkpoints`, `babble report`, `babble finetune` and AoA fits, end to end on fixtures."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from eval_fixtures import write_eval_data, write_jsonl
from eval_fixtures import make_model, make_tokenizer

from babblelm.cli import main
from babblelm.eval.aoa import child_aoa, model_aoa
from babblelm.rundir import milestone_count
from babblelm.eval.finetune import metric

pytest.importorskip("babblelm.models.transformer")  # the auto-class registry


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder with two checkpoints of a tiny Llama (different seeds) sharing one tokenizer."""
    run = tmp_path_factory.mktemp("run")
    (run / "config.yaml").write_text("run: {name: tiny}\n")
    tokenizer = make_tokenizer()
    for seed, name in ((0, "chck_1M"), (1, "chck_2M")):
        make_model(len(tokenizer), seed=seed).save_pretrained(run / "checkpoints" / name)
        tokenizer.save_pretrained(run / "checkpoints" / name)
    return run


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = write_eval_data(tmp_path_factory.mktemp("data"))
    words = {w: [{"context": "x"}] for w in ["cat", "dog", "mat", "house", "ball"]}
    (root / "aoa").mkdir()
    (root / "aoa" / "cdi_childes.json").write_text(json.dumps(words))
    ages = ",".join(str(a) for a in range(16, 31))
    rows = [f"{w}," + ",".join(f"{1 / (1 + math.exp(-(a - c))):.4f}" for a in range(16, 31))
            for w, c in zip(words, [18, 20, 22, 24, 26])]
    (root / "aoa" / "cdi.csv").write_text(f"word,{ages}\n" + "\n".join(rows) + "\n")
    return root


ALL = "blimp,supplement,ewok,entity_tracking,comps,wug_adj,wug_past,reading"


def test_all_checkpoints_curves_best_and_rerun(run_dir, data, capsys):
    assert main(["eval", str(run_dir), "--tasks", ALL, "--data", str(data), "--all-checkpoints", "--device", "cpu"]) == 0
    results = run_dir / "results"
    first = {p.relative_to(results): p.read_text() for p in results.glob("chck_*/*.json")}
    assert len(first) == 2 * 9  # 8 tasks + AoA surprisals, per checkpoint
    summary = json.loads((results / "best_checkpoint.json").read_text())
    averages = {name: row["average"] for name, row in summary["checkpoints"].items()}
    assert summary["best_checkpoint"]["name"] == max(averages, key=averages.get)
    row = summary["checkpoints"]["chck_1M"]
    scores = [v for k, v in row.items() if k != "average"]
    assert len(scores) == 9 and row["average"] == pytest.approx(sum(scores) / 9)  # reading gives two scores
    assert "| chck_2M |" in (results / "learning_curves.md").read_text()
    assert (results / "curves" / "blimp.png").stat().st_size > 1000 and (results / "curves" / "average.png").exists()
    assert "aoa" in json.loads((results / "aoa.json").read_text())["scores"]
    capsys.readouterr()
    # re-run: nothing re-scored, identical files and table
    assert main(["eval", str(run_dir), "--tasks", ALL, "--data", str(data), "--all-checkpoints", "--device", "cpu"]) == 0
    assert "== chck_" not in capsys.readouterr().out
    assert {p.relative_to(results): p.read_text() for p in results.glob("chck_*/*.json")} == first

    # a forced re-score of one checkpoint gives the same numbers
    out = run_dir / "again"
    assert main(["eval", str(run_dir), "--checkpoint", "chck_1M", "--tasks", "ewok,wug_adj,reading", "--data",
                 str(data), "--device", "cpu", "--out", str(out), "--no-shared-prefix"]) == 0
    for task in ("ewok", "wug_adj", "reading"):  # scoring whole texts gives the shared-prefix numbers
        again = json.loads((out / f"{task}.json").read_text())["scores"]
        assert again == pytest.approx(json.loads(first[results.relative_to(results) / "chck_1M" / f"{task}.json"])["scores"], abs=1e-3)

    assert main(["report", str(run_dir), "--out", str(run_dir / "report")]) == 0
    table = (run_dir / "report" / "comparison.md").read_text()
    assert table.count(f"{run_dir.name} ({summary['best_checkpoint']['name']})") == 1 and "average" in table
    assert (run_dir / "report" / "comparison.png").exists()
    assert "## Evaluation" in (run_dir / "report" / "model_card_results.md").read_text()


def test_single_task_flag_and_bad_task(run_dir, data, tmp_path, capsys):
    assert main(["eval", str(run_dir / "checkpoints" / "chck_2M"), "--task", "blimp", "--data",
                 str(data / "blimp_filtered"), "--device", "cpu", "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "blimp.json").read_text())["by_uid"].keys() == {"agreement"}
    assert main(["eval", str(run_dir), "--tasks", "blimp,nope", "--data", str(data)]) == 2
    assert "unknown task(s) nope" in capsys.readouterr().err
    write_jsonl(tmp_path / "bad" / "x.jsonl", ['{"sentence_good": "a"}'])
    assert main(["eval", str(run_dir / "checkpoints" / "chck_2M"), "--data", str(tmp_path / "bad"),
                 "--device", "cpu", "--out", str(tmp_path / "o")]) == 1  # the task failed on its data
    assert "FAILED blimp: EvalDataError: " in (err := capsys.readouterr().err) and "x.jsonl:1: missing field 'sentence_bad'" in err


def test_aoa_fits_recover_known_crossings():
    steps = [milestone_count(f"chck_{m}M") for m in (1, 2, 3, 5, 10, 20, 50, 100)]
    x = np.log10(np.array(steps) + 1)
    surprisal = 20 - 10 / (1 + np.exp(-4 * (x - 7.0)))  # from 20 down to 10 nats, midpoint at 10M words
    aoa = model_aoa(list(surprisal), steps)
    chance = math.log2(300_000)
    target = chance - 0.5 * (chance - surprisal.min())  # the official halfway point
    assert aoa == pytest.approx(7.0 - math.log(10 / (20 - target) - 1) / 4, abs=1e-3)
    assert model_aoa(list(surprisal[:3]), steps[:3]) is None  # fewer points than the sigmoid's parameters
    assert model_aoa([*surprisal, math.nan], [*steps, 2e8]) == aoa  # a NaN point is left out
    proportions = [1 / (1 + math.exp(-0.8 * (a - 22))) for a in range(16, 31)]
    assert child_aoa(proportions) == pytest.approx(22.0, abs=1e-3)


def test_finetune_runs_and_is_reproducible(run_dir, tmp_path):
    texts = [("The cat sat.", "A cat sat.", 0), ("The dog ran.", "Who ran?", 1)] * 3
    records = [{"sentence1": a, "sentence2": b, "label": y} for a, b, y in texts]
    write_jsonl(tmp_path / "glue" / "rte.train.jsonl", records)
    write_jsonl(tmp_path / "glue" / "rte.valid.jsonl", records[:4])
    args = ["finetune", str(run_dir / "checkpoints" / "chck_1M"), "--tasks", "rte", "--data", str(tmp_path / "glue"),
            "--epochs", "2", "--batch-size", "4", "--device", "cpu"]
    scores = []
    for k in range(2):
        assert main([*args, "--out", str(tmp_path / f"out{k}")]) == 0
        scores.append(json.loads((tmp_path / f"out{k}" / "rte.json").read_text()))
    assert scores[0]["predictions"] == scores[1]["predictions"] and scores[0]["scores"] == scores[1]["scores"]
    assert scores[0]["scores"]["rte"] == metric("rte", scores[0]["predictions"], [0, 1, 0, 1])
    assert metric("mrpc", [1, 1, 0, 0], [1, 0, 1, 0]) == pytest.approx(50.0)  # F1: tp 1, fp 1, fn 1


def test_a_task_the_model_cannot_take_fails_alone(data, tmp_path, capsys):
    """A learned position table cannot score texts longer than it: that task is reported as failed,
    naming the limit, the other tasks are scored and written, and the exit code says so."""
    import torch

    from babblelm.models.registry import get

    tokenizer = make_tokenizer()
    longest = max(len(tokenizer(r["input_prefix"] + r["options"][0])["input_ids"])
                  for r in map(json.loads, (data / "entity_tracking" / "regular.jsonl").read_text().splitlines()))
    arch = get("induction")
    torch.manual_seed(0)
    config = arch.tiny_config(vocab_size=len(tokenizer), max_position_embeddings=longest - 2,
                              bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id)
    arch.model_class(config).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    code = main(["eval", str(tmp_path / "model"), "--tasks", "blimp,entity_tracking,comps", "--data", str(data),
                 "--out", str(tmp_path / "results"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1
    assert "FAILED entity_tracking: ValueError: sequence of" in err
    assert f"exceeds max_position_embeddings={longest - 2}" in err and "1 task(s) failed" in err
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["blimp.json", "comps.json"]


def test_a_missing_task_folder_fails_instead_of_scoring_another_tasks_files(run_dir, data, tmp_path, capsys):
    """A folder of BLiMP files given for two tasks is neither task's folder: both fail, nothing is
    scored twice; a full_eval folder without supplement_filtered/ fails supplement alone."""
    import shutil

    model = str(run_dir / "checkpoints" / "chck_1M")
    code = main(["eval", model, "--tasks", "blimp,supplement", "--data", str(data / "blimp_filtered"),
                 "--device", "cpu", "--out", str(tmp_path / "loose")])
    err = capsys.readouterr().err
    assert code == 1 and not list((tmp_path / "loose").iterdir())
    assert "FAILED blimp: EvalDataError: " in err and "FAILED supplement: EvalDataError: " in err
    assert "no supplement_filtered/ folder for task 'supplement'" in err and "only one asked for" in err
    shutil.copytree(data / "blimp_filtered", tmp_path / "data" / "blimp_filtered")
    code = main(["eval", model, "--tasks", "blimp,supplement", "--data", str(tmp_path / "data"),
                 "--device", "cpu", "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 1 and "average (1 scores)" in captured.out
    assert "FAILED supplement: EvalDataError: " in captured.err and "FAILED blimp" not in captured.err
    assert "no supplement_filtered/ folder for task 'supplement' (it holds blimp_filtered/" in captured.err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["blimp.json"]


def test_results_are_reused_only_for_the_same_data_model_and_options(data, tmp_path, monkeypatch):
    """A result is reused only when its recorded inputs (data folder and file hash, model folder and
    weights hash, shared_prefix) match; otherwise the task is re-scored and the log says why. The
    model's weights are hashed once per run, not once per task."""
    import shutil

    from babblelm.eval import records
    from babblelm.eval.suite import evaluate_tasks

    tokenizer = make_tokenizer()
    folder = tmp_path / "model"
    make_model(len(tokenizer), seed=0).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    model = make_model(len(tokenizer), seed=0)
    hashed, digest = [], records._digest
    monkeypatch.setattr(records, "_digest", lambda path: hashed.append(Path(path).name) or digest(path))
    out, logs = tmp_path / "out", []

    def run(data_dir=data, **options):
        logs.clear()
        return evaluate_tasks(model, tokenizer, ["blimp", "ewok", "comps"], data_dir, out, model_dir=folder,
                              log=logs.append, **options)

    first = run()
    inputs = first["ewok"]["inputs"]
    assert inputs["data"] == str((data / "ewok_filtered").resolve()) and inputs["model"] == str(folder.resolve())
    assert inputs["shared_prefix"] is True and len(inputs["data_sha256"]) == len(inputs["model_sha256"]) == 64
    assert hashed.count("model.safetensors") == 1
    assert run() == first and hashed.count("model.safetensors") == 2
    assert f"reusing {out / 'blimp.json'} (same data, model and options)" in logs

    other = tmp_path / "other"
    shutil.copytree(data, other)
    run(other)
    assert f"re-scoring blimp: data {(data / 'blimp_filtered').resolve()} -> {(other / 'blimp_filtered').resolve()}" in logs
    write_jsonl(other / "comps" / "comps_base.jsonl",
                [{"prefix_acceptable": "A dog", "prefix_unacceptable": "A ball", "property_phrase": "can run."}])
    run(other)
    assert f"reusing {out / 'blimp.json'} (same data, model and options)" in logs
    assert f"re-scoring comps: the data files in {(other / 'comps').resolve()} changed" in logs

    run(other, shared_prefix=False)  # only the tasks whose options share a context change
    assert [line.split(":")[0] for line in logs if line.startswith("re-scoring")] == ["re-scoring ewok"]
    assert "shared_prefix True -> False" in "".join(logs)

    model = make_model(len(tokenizer), seed=1)
    model.save_pretrained(folder)
    run(other, shared_prefix=False)
    assert sum(line.startswith("re-scoring") and "model weights changed" in line for line in logs) == 3

    stored = json.loads((out / "blimp.json").read_text())
    del stored["inputs"]
    (out / "blimp.json").write_text(json.dumps(stored))
    run(other, shared_prefix=False)
    assert any(line.startswith("re-scoring blimp: its result records no inputs") for line in logs)


def test_a_bad_aoa_file_fails_aoa_alone(run_dir, data, tmp_path, capsys, monkeypatch):
    """A bad AoA file fails AoA like a task, not the whole `--all-checkpoints` evaluation: the tasks,
    learning curves and best checkpoint are still written, summary["failed"]["all_checkpoints"]["aoa"]
    names the file and line, the exit status is 1, and an earlier run's aoa.json is set aside."""
    import shutil

    from babblelm.eval import suite

    shutil.copytree(data, tmp_path / "data")
    out = tmp_path / "out"
    args = ["eval", str(run_dir), "--tasks", "blimp,comps", "--data", str(tmp_path / "data"), "--all-checkpoints",
            "--device", "cpu", "--out", str(out)]
    assert main(args) == 0
    earlier = (out / "aoa.json").read_text()
    cdi = tmp_path / "data" / "aoa" / "cdi.csv"
    lines = cdi.read_text().splitlines()
    cdi.write_text("\n".join([*lines, lines[2]]) + "\n")  # 'dog' (line 3) again on line 7
    capsys.readouterr()
    assert main(args) == 1
    captured = capsys.readouterr()
    error = f"EvalDataError: {cdi}:7: word 'dog' appears again (first on line 3); each CDI word must appear once"
    assert f"FAILED all_checkpoints/aoa: {error}" in captured.err and "1 task(s) failed" in captured.err
    summary = json.loads((out / "best_checkpoint.json").read_text())
    assert summary["failed"] == {"all_checkpoints": {"aoa": error}} and "aoa" not in summary
    assert all({"blimp", "comps", "average"} <= set(summary["checkpoints"][name]) for name in ("chck_1M", "chck_2M"))
    assert "| chck_2M |" in (out / "learning_curves.md").read_text() and (out / "curves" / "comps.png").exists()
    assert not (out / "aoa.json").exists() and (out / "aoa.json.stale").read_text() == earlier
    assert f"aoa: set aside {out / 'aoa.json'} as aoa.json.stale" in captured.out
    assert "== chck_" not in captured.out  # the bad CSV is found before any model is loaded

    cdi.write_text("\n".join(lines) + "\n")
    (tmp_path / "data" / "aoa" / "cdi_childes.json").write_bytes(b'{"c\xffat": []}')
    assert main(args) == 1
    assert "FAILED all_checkpoints/aoa: EvalDataError: " in (err := capsys.readouterr().err)
    assert "cdi_childes.json: not UTF-8 text" in err

    (tmp_path / "data" / "aoa" / "cdi_childes.json").unlink()  # an aoa/ folder without its word file
    assert main(args) == 1
    assert "cdi_childes.json: cannot read" in capsys.readouterr().err

    shutil.copy(data / "aoa" / "cdi_childes.json", tmp_path / "data" / "aoa")
    calls = []

    def broken(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("out of memory")

    monkeypatch.setattr(suite, "context_surprisals", broken)
    summary = suite.evaluate_all_checkpoints(run_dir, ["blimp"], tmp_path / "data", tmp_path / "out2", device="cpu",
                                             log=lambda _: None)
    assert summary["failed"] == {"all_checkpoints": {"aoa": "chck_1M: RuntimeError: out of memory"}}
    assert len(calls) == 1 and "aoa" not in summary and set(summary["checkpoints"]) == {"chck_1M", "chck_2M"}
    assert not (tmp_path / "out2" / "aoa.json").exists()


def test_a_failed_rescore_sets_the_stale_result_aside(data, tmp_path, monkeypatch):
    """A task re-scored because its inputs changed, whose new scoring fails (or whose inputs cannot be
    read), leaves no result on disk: `<task>.json` becomes `<task>.json.stale`, which `babble report`
    does not read, and the log says so. A new result removes it; the same inputs again restore it.
    A forced re-score of the same inputs that fails keeps the result."""
    import shutil

    from babblelm.eval import report, suite

    tokenizer = make_tokenizer()
    folder = tmp_path / "model"
    make_model(len(tokenizer), seed=0).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    model = make_model(len(tokenizer), seed=0)
    shutil.copytree(data, tmp_path / "data")
    comps = tmp_path / "data" / "comps"
    original = (comps / "comps_base.jsonl").read_text()
    out, logs = tmp_path / "out", []

    def run(**options):
        logs.clear()
        return suite.evaluate_tasks(model, tokenizer, ["blimp", "comps"], tmp_path / "data", out, model_dir=folder,
                                    log=logs.append, **options)

    run()
    stored = (out / "comps.json").read_text()
    write_jsonl(comps / "comps_base.jsonl", ['{"prefix_acceptable": "A cat", "prefix_unacceptable": "A mat"}'])
    results = run()
    assert "comps_base.jsonl:1: missing field 'property_phrase'" in results["comps"]["failed"]
    assert not (out / "comps.json").exists() and (out / "comps.json.stale").read_text() == stored
    assert f"comps: set aside {out / 'comps.json'} as comps.json.stale: it was computed from other inputs " \
           "and this run's scoring failed; nothing reads it" in logs
    assert set(report.read_results(out)) == {"blimp"}
    assert results["blimp"] == json.loads((out / "blimp.json").read_text())

    write_jsonl(comps / "comps_base.jsonl", [{"prefix_acceptable": "A dog", "prefix_unacceptable": "A ball",
                                             "property_phrase": "can run."}])
    assert "failed" not in run()["comps"] and not (out / "comps.json.stale").exists()  # superseded
    (comps / "comps_base.jsonl").write_text(original)
    assert "failed" not in run()["comps"] and any(line.startswith("re-scoring comps") for line in logs)
    assert json.loads((out / "comps.json").read_text())["scores"] == json.loads(stored)["scores"]
    stored = (out / "comps.json").read_text()

    shutil.rmtree(comps)  # its inputs cannot even be read: nothing shows the stored result matches them
    assert "no comps/ folder" in run()["comps"]["failed"]
    assert not (out / "comps.json").exists() and (out / "comps.json.stale").read_text() == stored
    assert any(line.startswith("comps: set aside") and "could not be read" in line for line in logs)
    assert set(report.read_results(out)) == {"blimp"}

    write_jsonl(comps / "comps_base.jsonl", original.splitlines())  # the same inputs again: restored, not re-scored
    run()
    assert (out / "comps.json").read_text() == stored and not (out / "comps.json.stale").exists()
    assert f"restored {out / 'comps.json'} from comps.json.stale (its inputs match again)" in logs
    assert not any(line.startswith("re-scoring") for line in logs)
    evaluate_task = suite.evaluate_task

    def failing(model, tokenizer, task, *args, **kwargs):
        if task == "comps":
            raise RuntimeError("out of memory")
        return evaluate_task(model, tokenizer, task, *args, **kwargs)

    monkeypatch.setattr(suite, "evaluate_task", failing)
    assert run(force=True)["comps"]["failed"] == "RuntimeError: out of memory"
    assert (out / "comps.json").read_text() == stored and not (out / "comps.json.stale").exists()
    assert f"comps: kept {out / 'comps.json'}: it was computed from this run's inputs (re-scored for --force)" in logs


def test_official_tasks_per_rules_and_one_line_per_missing_folder(run_dir, tmp_path, capsys):
    """`--tasks official` is the rules' task list (2026: COMPS and Global PIQA, no WUG; 2025: WUG, no Global
    PIQA); each task whose data is missing fails on one line naming the folder; results record the rules,
    and a result scored under other rules is scored again."""
    import shutil

    model = str(run_dir / "checkpoints" / "chck_1M")
    full = write_eval_data(tmp_path / "evaluation_data" / "full_eval")
    shutil.rmtree(full / "comps")
    shutil.rmtree(full / "global_piqa_nonparallel")
    out = tmp_path / "out"
    args = ["eval", model, "--tasks", "official", "--data", str(tmp_path / "evaluation_data"), "--device", "cpu",
            "--out", str(out)]
    assert main(args) == 1
    err = capsys.readouterr().err.splitlines()
    failed = [line for line in err if line.startswith("FAILED")]
    assert len(failed) == 2 and "FAILED comps: EvalDataError: " in failed[0] and "no comps/ folder" in failed[0]
    assert "no global_piqa_nonparallel/ folder for task 'global_piqa'" in failed[1]
    written = sorted(p.name for p in out.glob("*.json"))
    assert written == ["blimp.json", "entity_tracking.json", "ewok.json", "reading.json", "supplement.json"]
    ewok = json.loads((out / "ewok.json").read_text())
    assert ewok["rules"] == ewok["inputs"]["rules"] == "2026" and ewok["n_items"] == 4
    assert {"ties", "scores_ties_right", "scores_ties_wrong"} <= ewok.keys()
    write_jsonl(full / "comps" / "comps_base.jsonl", [
        {"prefix_acceptable": "A cat", "prefix_unacceptable": "A mat", "property_phrase": "can run."}])
    assert main([*args, "--rules", "2025"]) == 0
    captured = capsys.readouterr().out
    assert "re-scoring ewok: rules 2026 -> 2025" in captured
    assert json.loads((out / "ewok.json").read_text())["n_items"] == 2
    assert (out / "wug_adj.json").is_file() and json.loads((out / "wug_adj.json").read_text())["rules"] == "2025"


def _run_copy(run_dir, tmp_path, config: str):
    """A copy of the fixture run with its own config.yaml."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir / "checkpoints", run / "checkpoints")
    (run / "config.yaml").write_text(config)
    return run


def test_results_of_other_data_live_beside_the_runs_own(run_dir, data, tmp_path, capsys):
    """The run's eval.data owns results/<checkpoint>/; other data goes to a folder named by the data
    beside it, the run's result untouched; the model card reads the run's own and names the others."""
    import shutil

    from babblelm.card import model_card
    from babblelm.eval.suite import data_label

    run = _run_copy(run_dir, tmp_path, f"run: {{name: tiny}}\neval: {{data: {data}}}\n")
    other = tmp_path / "other"
    shutil.copytree(data / "blimp_filtered", other / "blimp_filtered")
    (other / "blimp_filtered" / "agreement.jsonl").write_text(
        '{"sentence_good": "The dog ran.", "sentence_bad": "The dog run.", "UID": "agreement", "field": "morphology"}\n')
    args = ["eval", str(run), "--checkpoint", "chck_1M", "--tasks", "blimp", "--device", "cpu", "--data"]
    assert main([*args, str(other)]) == 0  # first the other data: it still goes beside, not into, the run's folder
    beside = run / "results" / "chck_1M" / data_label(other)
    assert beside.name.startswith("data-other-") and f"results in {beside}" in capsys.readouterr().out
    assert main([*args, str(data)]) == 0
    own = run / "results" / "chck_1M" / "blimp.json"
    assert json.loads(own.read_text())["inputs"]["data"] == str((data / "blimp_filtered").resolve())
    assert json.loads((beside / "blimp.json").read_text())["n_items"] == 1
    kept = own.read_text()
    assert main([*args, str(other)]) == 0 and own.read_text() == kept  # reused beside, never replacing
    assert "reusing" in capsys.readouterr().out

    model = make_model(len(make_tokenizer()))
    card = model_card(run / "checkpoints" / "chck_1M", model, "transformer", native=True)
    assert "### Zero-shot\n\nScored as the official BabyLM pipeline scores causal models, 2026 rules, on `blimp_filtered`." in card
    assert f"### Zero-shot on other data (`{beside.name}`)" in card

    # a run without eval.data: the first data scored owns the folder, the next goes beside it
    bare = _run_copy(run_dir, tmp_path / "bare", "run: {name: tiny}\n")
    assert main(["eval", str(bare), "--checkpoint", "chck_1M", "--tasks", "blimp", "--device", "cpu", "--data",
                 str(data)]) == 0
    assert main(["eval", str(bare), "--checkpoint", "chck_1M", "--tasks", "blimp", "--device", "cpu", "--data",
                 str(other)]) == 0
    assert json.loads((bare / "results" / "chck_1M" / "blimp.json").read_text())["n_items"] == 2
    assert json.loads((bare / "results" / "chck_1M" / data_label(other) / "blimp.json").read_text())["n_items"] == 1


def test_learning_curves_plot_the_words_each_checkpoint_saw(run_dir, data, tmp_path, monkeypatch):
    """A scaled run writes chck_1M after far fewer words than 10^6: the curve's x is its trainer_state."""
    from babblelm.eval import report

    run = _run_copy(run_dir, tmp_path, "run: {name: tiny}\n")
    for name, seen in (("chck_1M", 51_518), ("chck_2M", 103_004)):
        (run / "checkpoints" / name / "trainer_state.json").write_text(json.dumps(
            {"step": 3, "words_seen": seen, "tokens_seen": 4 * seen}))
    drawn = {}
    monkeypatch.setattr(report, "plot_curves", lambda rows, seen, out: drawn.update(seen))
    assert main(["eval", str(run), "--all-checkpoints", "--tasks", "blimp", "--data", str(data), "--device", "cpu"]) == 0
    assert drawn == {"chck_1M": (51_518, "words"), "chck_2M": (103_004, "words")}


def test_failures_are_reported_once(run_dir, tmp_path, capsys):
    write_jsonl(tmp_path / "bad" / "x.jsonl", ['{"sentence_good": "a"}'])
    assert main(["eval", str(run_dir / "checkpoints" / "chck_2M"), "--data", str(tmp_path / "bad"), "--device", "cpu",
                 "--out", str(tmp_path / "o")]) == 1
    captured = capsys.readouterr()
    assert (captured.out + captured.err).count("missing field 'sentence_bad'") == 1
    assert "1 task(s) failed; no results were written" in captured.err and "the others' results" not in captured.err
