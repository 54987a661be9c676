"""The multilingual track end to end from the command line, as docs/multilingual.md shows it: a tiny
English/Dutch/Mandarin corpus -> `babble prior` -> `babble train` with the TAAM recipe (URIEL prior,
EXP3, byte-premium budget) -> token-exposure checkpoints -> `babble eval --tasks multiblimp
--language nld` -> `babble export --branches` -> the export scored by lm-eval with a local task.
What the run printed must be what its records hold, and a budget a language cannot fill is refused."""

import json
import re

import pytest
import yaml

import envs
from multilingual_corpus import write_corpus, write_dutch_pairs, write_lm_eval_tasks
from test_console import babble

GAMMA = 0.1
CONFIG = {
    "run": {"name": "taam-tiny", "seed": 1, "out_dir": "run", "device": "cpu"},
    "data": {"corpus": "corpus", "seq_len": 32, "track": "none", "filters": []},
    "tokenizer": {"kind": "sentencepiece", "vocab_size": 400, "sample_bytes": 20000},
    "model": {"arch": "gpt2", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
              "intermediate_size": 64, "max_position_embeddings": 32},
    "optim": {"name": "adamw", "lr": 3.0e-3},
    "schedule": {"name": "cosine", "warmup_steps": 5},
    "train": {"batch_size": 8, "grad_accum": 1, "log_every": 5, "dev_batches": 2, "save_every": 0},
    "checkpoints": {"scale": 0.002},
    "mixing": {"languages": {"eng": {}, "nld": {}, "zho": {}}, "budget": 60000, "tokens": 20000, "policy": "taam",
               "prior": "uriel", "gamma": GAMMA, "reward": "normalized_excess_loss", "eval_every": 10,
               "reward_dev_tokens": 160, "final_dev_tokens": 256},
}
LM_EVAL_TASK = """task: nld_pairs
dataset_path: json
dataset_kwargs:
  data_files: {data}
test_split: train
output_type: multiple_choice
doc_to_text: ""
doc_to_choice: "{{{{[sen, wrong_sen]}}}}"
doc_to_target: 0
target_delimiter: ""
metric_list:
  - metric: acc
"""


def floats(text: str) -> dict[str, float]:
    return {lang: float(value) for lang, value in re.findall(r"(eng|nld|zho) (-?[\d.]+)", text)}


@pytest.fixture(scope="module")
def taam(tmp_path_factory):
    work = tmp_path_factory.mktemp("taam")
    write_corpus(work / "corpus")
    write_dutch_pairs(work / "eval")
    (work / "taam.yaml").write_text(yaml.safe_dump(CONFIG))
    prior = babble("prior", "eng", "nld", "zho", cwd=work).stdout
    out = babble("train", "taam.yaml", "--no-progress", cwd=work).stdout
    return work, prior, out


def test_the_run_prints_what_its_records_hold(taam):
    work, prior, out = taam
    pi0 = {lang: float(p) for lang, p in re.findall(r"(\w+): isolation [\d.]+  pi0 ([\d.]+)", prior)}
    start = floats(re.search(r"pi at start ([^;]+);", out).group(1))
    min_pi = 0.05  # EXP3's start is projected: gamma mix, then the floor by linear shrinkage
    assert start == pytest.approx({lang: min_pi + (1 - 3 * min_pi) * ((1 - GAMMA) * p + GAMMA / 3)
                                   for lang, p in pi0.items()}, abs=2e-3)
    manifest = json.loads((work / "run" / "data" / "multilingual.json").read_text())
    assert f"{manifest['adjusted_bytes']:,.0f} premium-adjusted bytes of data (budget 60,000)" in out
    assert manifest["adjusted_bytes"] <= 60000
    for lang, info in manifest["per_language"].items():  # every language filled its share, to a line
        assert 60000 / 3 - 200 < info["adjusted_bytes"] <= 60000 / 3

    records = [r for r in map(json.loads, (work / "run" / "metrics.jsonl").read_text().splitlines()) if "pi" in r]
    printed = re.findall(r"step (\d+): dev loss ([^;]+); pi (.+)", out)
    assert len(printed) == len(records) > 1
    for (step, losses, pi), record in zip(printed, records):
        assert int(step) == record["step"]
        assert floats(losses) == pytest.approx(record["dev_loss"], abs=5e-5)
        assert floats(pi) == pytest.approx(record["pi"], abs=5e-4)
    assert records[-1]["pi"] != records[0]["pi"]  # TAAM moved pi


def test_checkpoints_fall_at_token_exposures(taam):
    work, _, _ = taam
    names = sorted((work / "run" / "checkpoints").glob("chck_*"), key=lambda p: float(p.name[5:-1]))
    assert len(names) >= 5
    for folder in names:
        state = json.loads((folder / "trainer_state.json").read_text())
        threshold = float(folder.name[5:-1]) * 1e6 * CONFIG["checkpoints"]["scale"]
        assert state["tokens_seen"] >= threshold > state["tokens_seen"] - 8 * 32  # the first step past it
        assert set(state["mixing"]["exposures"]) == {"eng", "nld", "zho"}


def test_eval_export_and_lm_eval(taam):
    from babblelm.eval.load import load_model_and_tokenizer
    from babblelm.eval.scoring import sentence_logprobs

    work, _, _ = taam
    out = babble("eval", "run", "--tasks", "multiblimp", "--data", "eval", "--language", "nld", "--device", "cpu",
                 cwd=work).stdout
    result = json.loads((work / "run" / "results" / "final" / "nld" / "multiblimp.json").read_text())
    assert f"average (1 scores): {result['scores']['multiblimp']:.2f}" in out and result["n_items"] == 24

    out = babble("export", "run", "hf", "--branches", cwd=work).stdout
    assert "branches main, chck_" in out or "branches chck_" in out
    assert json.loads((work / "hf" / "config.json").read_text())["architectures"] == ["GPT2LMHeadModel"]  # native
    card = (work / "hf" / "README.md").read_text()
    records = [json.loads(line) for line in (work / "run" / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in records if "pi" in r][-1]
    assert f"{sum(last['exposures'].values()):,} token exposures in total" in card
    assert f"{max(r.get('elapsed_s', 0) for r in records) / 60:.1f} min of training" in card
    for lang in ("eng", "nld", "zho"):
        assert f"| {lang} | {last['pi'][lang]:.3f} | {last['exposures'][lang]:,} |" in card

    rows = [json.loads(line) for line in (work / "eval" / "nld" / "multiblimp_nld.jsonl").read_text().splitlines()]
    (work / "tasks").mkdir()
    (work / "tasks" / "nld_pairs.yaml").write_text(LM_EVAL_TASK.format(data=work / "eval" / "nld" / "multiblimp_nld.jsonl"))
    envs.run("lm-eval", ["lm_eval", "--model", "hf", "--model_args", f"pretrained={work / 'hf'},trust_remote_code=True",
                         "--tasks", "nld_pairs", "--include_path", work / "tasks", "--device", "cpu", "--batch_size", "8",
                         "--output_path", work / "lm_eval", "--log_samples"], cwd=work)
    samples = sorted((json.loads(line) for line in next((work / "lm_eval").rglob("samples*.jsonl")).read_text().splitlines()),
                     key=lambda s: s["doc_id"])
    theirs = [float(option[0]) for s in samples for option in s["filtered_resps"]]
    model, tokenizer = load_model_and_tokenizer(work / "hf", device="cpu")
    ours = sentence_logprobs(model, tokenizer, [text for r in rows for text in (r["sen"], r["wrong_sen"])])
    assert theirs == pytest.approx(ours, abs=1e-4)


def test_a_budget_a_language_cannot_fill_is_refused(taam, tmp_path):
    work, _, _ = taam
    cfg = {**CONFIG, "run": {**CONFIG["run"], "out_dir": str(tmp_path / "run")},
           "data": {**CONFIG["data"], "corpus": str(work / "corpus")},
           "mixing": {**CONFIG["mixing"], "budget": 600000}}
    (tmp_path / "big.yaml").write_text(yaml.safe_dump(cfg))
    err = babble("train", "big.yaml", "--no-progress", cwd=tmp_path, expect=2).stderr
    assert re.search(r"error: mixing.budget: (eng|nld|zho) has [\d,]+ bytes of clean training text .* short of its share", err)
    assert "Traceback" not in err


def test_the_multilingual_suite_runs_lm_eval_per_checkpoint_and_language(taam):
    """`babble eval --suite multilingual` over the run's final model and every chck_*: lm-eval (in its own
    environment, offline) on a task folder in the official layout with local datasets; the table per
    language is lm-eval's own numbers, and a second run reuses every result."""
    work, _, _ = taam
    tasks = write_lm_eval_tasks(work / "ml")
    lm_eval = envs.python("lm-eval").parent / "lm_eval"
    args = ["eval", "run", "--suite", "multilingual", "--tasks-dir", tasks, "--lm-eval", lm_eval, "--device", "cpu",
            "--batch-size", "8"]
    out = babble(*args, cwd=work, env={"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}).stdout
    summary = json.loads((work / "run" / "results" / "multilingual" / "multilingual.json").read_text())
    milestones = sorted(p.name for p in (work / "run" / "checkpoints").glob("chck_*"))
    assert sorted(summary["revisions"]) == sorted(["main", *milestones]) and not summary["failed"]
    for revision, languages in summary["revisions"].items():
        stored = json.loads((work / "run" / "results" / "multilingual" / revision / "zeroshot.json").read_text())
        rows = stored["results"]["results"]
        assert set(languages) == {"eng", "nld", "zho"}
        assert set(languages["eng"]["tasks"]) == {"blimp_tiny", "multiblimp_eng"}
        for lang, scores in languages.items():
            assert scores["tasks"] == {t: rows[t]["acc,none"] for t in scores["tasks"]}
            assert scores["average"] == pytest.approx(sum(scores["tasks"].values()) / len(scores["tasks"]))
            assert scores["group_acc"] == rows[f"zeroshot_{lang}"]["acc,none"]
    main = summary["revisions"]["main"]
    assert f"| multiblimp_nld | {100 * main['nld']['tasks']['multiblimp_nld']:.2f} |" in out
    assert "| **overall** (mean of the languages' averages) |" in out
    again = babble(*args, cwd=work).stdout
    assert again.count(": reusing ") == len(summary["revisions"]) and "lm-eval on" not in again and "exporting" not in again


def test_the_multilingual_submission_is_what_collate_results_writes(taam):
    """`babble submit --track multilingual`: {task: {task: accuracy}} of the final model and the predictions
    file with lm-eval's raw results and one {task: accuracy} per official revision; each of the 28
    official revisions the tiny run lacks is named on its own line."""
    work, _, _ = taam
    tasks = work / "ml" / "tasks" if (work / "ml" / "tasks").is_dir() else write_lm_eval_tasks(work / "ml")
    lm_eval = envs.python("lm-eval").parent / "lm_eval"
    proc = babble("submit", "run", "--track", "multilingual", "--tasks-dir", tasks, "--lm-eval", lm_eval, "--device", "cpu",
                  "--out", "sub", cwd=work, env={"HF_DATASETS_OFFLINE": "1"}, expect=1)
    summary = json.loads((work / "run" / "results" / "multilingual" / "multilingual.json").read_text())
    submission = json.loads((work / "sub" / "run_submission.json").read_text())
    main = summary["revisions"]["main"]
    assert submission == {t: {t: acc} for lang in ("eng", "nld", "zho") for t, acc in main[lang]["tasks"].items()}
    predictions = json.loads((work / "sub" / "run_predictions.json").read_text())
    stored = json.loads((work / "run" / "results" / "multilingual" / "main" / "zeroshot.json").read_text())
    assert predictions["zeroshot"] == stored["results"]["results"] and predictions["finetune"] == {}
    assert len(predictions["fast_eval_results"]) == 28
    assert predictions["fast_eval_results"][0] == {t: a for lang in summary["revisions"]["chck_1M"].values()
                                                   for t, a in lang["tasks"].items()}
    problems = [line for line in proc.stderr.splitlines() if line.startswith("NOT READY ")]
    absent = [f"chck_{m}M" for m in [*range(1, 10), *range(10, 100, 10), *range(100, 1001, 100)]
              if f"chck_{m}M" not in summary["revisions"]]
    assert problems == [f"NOT READY {name}: missing: no checkpoint {name}" for name in absent]
