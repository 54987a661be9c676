"""`babble submit` for the strict tracks: the official layout and collation, checked with the official
size rules (collate_preds.py at 6f825c2), and every missing task or revision named on one line.

The sizes the leaderboard expects are those of the official data; here the same rules run against the
sizes of the small data the tests make, counted from its files. The real collate_preds.py was run on a
submission made the same way from official-sized data (docs/evaluation.md, "Submission")."""

import json
import shutil
from pathlib import Path

import pytest

from babblelm.eval.submission import COLLATED, official_sizes, size_problems
from babblelm.rundir import milestone_name
from babblelm.submit import full_evaluation_gaps, submit
from eval_fixtures import make_model, make_tokenizer, write_full_eval

REVISIONS = [milestone_name(m) for m in [*range(1, 10), *range(10, 101, 10)]]  # strict-small: 19


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def data_sizes(full: Path) -> dict:
    """The official size table's shape, with the counts of the test data's files (read directly)."""
    blimp = {}
    for path in sorted((full / "blimp_filtered").glob("*.jsonl")):
        for row in lines(path):
            blimp[row["UID"].lower()] = blimp.get(row["UID"].lower(), 0) + 1
    ewok = {}
    for row in lines(full / "ewok_filtered" / "spatial.jsonl"):
        ewok[row["Domain"]] = ewok.get(row["Domain"], 0) + 1
    entity = {}
    for split in ("regular", "ambiref"):
        for row in lines(full / "entity_tracking" / f"{split}.jsonl"):
            if not any("nothing" in option for option in row["options"]):
                key = f"{split}_{row['numops']}_ops"
                entity[key] = entity.get(key, 0) + 1
    piqa = {name: len(lines(full / name / "eng_latn.jsonl")) for name in ("global_piqa_parallel", "global_piqa_nonparallel")}
    reading = len((full / "reading" / "reading_data.csv").read_text().splitlines()) - 1
    glue = {task: len(lines(full / "glue_filtered" / f"{task}.valid.jsonl"))
            for task in ("boolq", "mnli", "mrpc", "multirc", "qqp", "rte", "wsc")}
    contexts = sum(len(v) for v in json.loads((full / "aoa" / "cdi_childes.json").read_text()).values())
    common = {"blimp": blimp, "blimp_supplement": {"hypernym": 1}, "entity_tracking_filtered": entity, **piqa,
              "reading": reading}
    return {"revisions": {"strict-small": REVISIONS},
            "full": {**common, "ewok": ewok, "comps": {"base": len(lines(full / "comps" / "comps_base.jsonl"))}, **glue},
            "fast": {**common, "ewok": ewok, "entity_tracking_filtered": {k: v for k, v in entity.items() if k.startswith("regular")}},
            "aoa_per_revision": contexts}


@pytest.fixture(scope="module")
def strict_small(tmp_path_factory):
    """A strict-small-shaped run folder (every official milestone chck_1M..chck_100M and final, tiny Llamas
    of different seeds sharing one tokenizer) and a whole full_eval folder."""
    root = tmp_path_factory.mktemp("submit")
    run = root / "tiny"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("run: {name: tiny}\n")
    tokenizer = make_tokenizer()
    for seed, name in enumerate([*REVISIONS, "final"]):
        make_model(len(tokenizer), seed=seed).save_pretrained(run / "checkpoints" / name)
        tokenizer.save_pretrained(run / "checkpoints" / name)
    return run, write_full_eval(root / "evaluation_data" / "full_eval")


def test_the_official_size_rules():
    sizes = official_sizes()
    assert len(sizes["revisions"]["strict-small"]) == 19 and len(sizes["revisions"]["strict"]) == 28
    blimp = {uid: {"predictions": [{}] * n} for uid, n in sizes["full"]["blimp"].items()}
    assert size_problems("blimp", blimp, sizes["full"]["blimp"]) == []
    blimp["Adjunct_Island"] = blimp.pop("adjunct_island")  # keys compare in lower case, as the official check
    assert size_problems("blimp", blimp, sizes["full"]["blimp"]) == []
    blimp["Adjunct_Island"]["predictions"].pop()
    assert size_problems("blimp", blimp, sizes["full"]["blimp"]) == ["adjunct_island has 927 predictions of 928"]
    del blimp["wh_island"]
    assert size_problems("blimp", blimp, sizes["full"]["blimp"])[-1] == "wh_island has none of 960"
    assert size_problems("reading", {"reading": {"predictions": [{}] * 1726}}, 1726) == []
    piqa = {f"id{k}": {"predictions": [{}]} for k in range(103)}
    assert size_problems("global_piqa_parallel", piqa, 103) == []
    assert size_problems("global_piqa_nonparallel", piqa, 100) == ["103 examples of 100"]
    assert sizes["fast"]["ewok"] == 100 and sizes["full"]["ewok"]["agent-properties"] == 2210  # one per row at 6f825c2


def test_a_full_evaluation_folder_is_recognised(tmp_path):
    full = write_full_eval(tmp_path / "evaluation_data" / "full_eval")
    assert full_evaluation_gaps(tmp_path / "evaluation_data") == [] == full_evaluation_gaps(full)
    shutil.rmtree(full / "glue_filtered")
    assert full_evaluation_gaps(full) == ["glue_filtered/"]


def test_a_strict_small_run_makes_a_submission_that_passes_the_size_rules(strict_small):
    run, full = strict_small
    data = full.parent
    report = submit(run, data, "strict-small", device="cpu", log=lambda _: None, sizes=data_sizes(full))
    assert report.problems == [] and report.ok and report.folder == run / "submission" / "tiny"
    collated = json.loads(report.collated.read_text())
    assert list(collated) == ["blimp", "blimp_supplement", "ewok", "entity_tracking_filtered", "comps",
                              "global_piqa_parallel", "global_piqa_nonparallel", "reading", "aoa_surprisals", "aoa",
                              "glue", "fast_eval_results"]
    main = report.folder / "main" / "zero_shot" / "causal"
    blimp = json.loads((main / "blimp" / "blimp_filtered" / "predictions.json").read_text())
    assert blimp == collated["blimp"]
    good = [row["sentence_good"] for row in lines(full / "blimp_filtered" / "agreement.jsonl")]
    bad = [row["sentence_bad"] for row in lines(full / "blimp_filtered" / "agreement.jsonl")]
    assert [p["id"] for p in blimp["agreement"]["predictions"]] == ["agreement_0", "agreement_1"]
    assert all(p["pred"] in (g, b) for p, g, b in zip(blimp["agreement"]["predictions"], good, bad))
    ewok = collated["ewok"]["spatial"]["predictions"][0]["pred"]  # the first comparison's sentence
    row = lines(full / "ewok_filtered" / "spatial.jsonl")[0]
    assert ewok in (f"{row['Context1']} {row['Target1']}", f"{row['Context2']} {row['Target1']}")
    assert set(collated["global_piqa_parallel"]) == {f"global_piqa_parallel_{k}" for k in range(3)}
    assert collated["glue"]["wsc"]["predictions"][0] == {"id": "wsc_0", "pred": collated["glue"]["wsc"]["predictions"][0]["pred"]}
    aoa = collated["aoa_surprisals"]["results"]
    assert [r["step"] for r in aoa[:: data_sizes(full)["aoa_per_revision"]]] == REVISIONS
    assert aoa[0] == {**aoa[0], "step": "chck_1M", "word_count": 1_000_000, "target_word": "cat", "context_id": 0,
                      "context": "the dog saw the"}
    fast_dir = run / "results" / "fast"
    stored = json.loads((fast_dir / "chck_1M" / "aoa_surprisal.json").read_text())["surprisal"]  # the AoA score's file
    assert [r["surprisal"] for r in aoa if r["step"] == "chck_1M"] == [s for values in stored.values() for s in values]
    assert "aoa" in json.loads((fast_dir / "best_checkpoint.json").read_text()) and not list(fast_dir.glob("*/aoa_contexts.json"))
    fast = collated["fast_eval_results"]
    assert all(len(values) == 19 for values in fast.values()) and set(fast["reading"][0]) == {"spr", "rt"}
    for revision, scores in zip(REVISIONS, fast["blimp"]):
        result = json.loads((run / "results" / "fast" / revision / "blimp.json").read_text())
        assert scores == {"agreement": result["items"].count(0) / 2}  # gold picked: the prediction is sentence_good
    assert (report.folder / "chck_5M" / "zero_shot" / "causal" / "ewok" / "ewok_fast" / "predictions.json").is_file()


def test_a_missing_revision_and_a_missing_task_are_named_one_line_each(strict_small, tmp_path):
    run, full = strict_small
    copy, data = tmp_path / "tiny", tmp_path / "evaluation_data"
    shutil.copytree(run, copy)
    shutil.copytree(full.parent, data)
    shutil.rmtree(copy / "checkpoints" / "chck_7M")
    shutil.rmtree(copy / "results" / "fast" / "chck_7M")
    for split in ("train", "valid"):
        (data / "full_eval" / "glue_filtered" / f"wsc.{split}.jsonl").unlink()
    report = submit(copy, data, "strict-small", device="cpu", log=lambda _: None, sizes=data_sizes(full))
    assert len(report.problems) == 3, report.problems
    assert report.problems[0] == "AoA_word: missing: no surprisals for chck_7M"
    assert report.problems[1].startswith("wsc: missing: ") and "wsc.train.jsonl" in report.problems[1]
    assert report.problems[2] == "chck_7M: missing: no checkpoint chck_7M (or no fast results for it)"
    collated = json.loads((copy / "submission" / "tiny" / COLLATED).read_text())
    assert collated["aoa_surprisals"] is None and "wsc" not in collated["glue"] and collated["fast_eval_results"]["blimp"][6] is None


def test_babble_run_ends_with_the_submission(small_corpus, tmp_path):
    """`babble run` with a full evaluation folder ends with the submit stage; against the official sizes
    this small data is short everywhere, so the stage fails and each problem is one FAILED line."""
    import yaml

    from conftest import tiny_raw
    from test_console import babble

    data = write_full_eval(tmp_path / "evaluation_data" / "full_eval").parent
    raw = tiny_raw(small_corpus, tmp_path / "run", train={"epochs": 0.3})
    raw["eval"] = {"tasks": ["official"], "data": str(data)}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(raw))
    proc = babble("run", "run.yaml", "--no-progress", cwd=tmp_path, expect=1)
    table = proc.stdout[proc.stdout.index("| stage | status |"):]
    assert "| submit | failed |" in table and f"files in {tmp_path / 'run' / 'submission' / 'run'} |" in table
    failed = [line for line in proc.stderr.splitlines() if line.startswith("FAILED submit/")]
    assert "FAILED submit/reading: short: reading has 48 predictions of 1726" in failed
    assert any(line.startswith("FAILED submit/chck_100M: missing: no checkpoint chck_100M") for line in failed)
    assert (tmp_path / "run" / "submission" / "run" / COLLATED).is_file()
