"""Every `babble` verb run the way a user types it: the installed console script, as a subprocess,
on tiny inputs, checking what it prints and what it writes. A verb without a `test_babble_<verb>`
here fails `test_every_verb_is_covered`."""

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from babblelm.cli import build_parser
from conftest import tiny_raw
from eval_fixtures import write_eval_data, write_full_eval, write_jsonl

BABBLE = Path(sys.executable).parent / "babble"
REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"  # the console script runs this checkout's sources


def babble(*args, cwd: Path, expect: int = 0, timeout: int = 1800, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the installed `babble` script on this checkout's sources (with `env` added to the environment);
    assert its exit status; return it (stdout, stderr)."""
    env = {**os.environ, **(env or {}), "PYTHONPATH": str(SRC)}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([str(BABBLE), *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    assert proc.returncode == expect, f"babble {' '.join(map(str, args))} -> {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def verbs(parser=None, prefix="") -> set[str]:
    """Every verb of the parser, nested ones as `data_prepare`."""
    parser = parser or build_parser()
    found = set()
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        for name, sub in action.choices.items():
            found |= verbs(sub, f"{prefix}{name}_") if sub._subparsers else {f"{prefix}{name}"}
    return found


def test_help_gives_defaults_and_descriptions():
    """Options a newcomer asked about say what they do and their default in `--help`."""
    def option(verb: str, flag: str):
        sub = next(a for a in build_parser()._subparsers._group_actions).choices[verb]
        return next(a for a in sub._actions if flag in a.option_strings)

    for verb, flag, default in (("serve", "--port", "8000"), ("generate", "--max-new-tokens", "40"),
                                ("eval", "--batch-size", "64"), ("demo", "--seed", "0"), ("finetune", "--tasks", "boolq")):
        assert f"(default: {default}" in option(verb, flag).help, (verb, flag)
    for verb in ("demo", "run", "train", "sweep", "eval", "finetune", "generate", "serve"):
        assert "CPU threads" in option(verb, "--threads").help, verb


def test_every_verb_is_covered():
    tested = {name[len("test_babble_"):] for name in globals() if name.startswith("test_babble_")}
    assert verbs() <= tested, f"verbs without a console-script test: {sorted(verbs() - tested)}"


@pytest.fixture(scope="module")
def work(small_corpus, tmp_path_factory) -> Path:
    """A folder holding config.yaml (a tiny run on the small corpus), eval data and GLUE data."""
    folder = tmp_path_factory.mktemp("console")
    raw = tiny_raw(small_corpus, folder / "run", train={"epochs": 0.3})
    (folder / "config.yaml").write_text(yaml.safe_dump(raw))
    write_eval_data(folder / "eval")
    records = [{"sentence1": a, "sentence2": b, "label": y}
               for a, b, y in [("The cat sat.", "A cat sat.", 0), ("The dog ran.", "Who ran?", 1)] * 3]
    write_jsonl(folder / "glue" / "rte.train.jsonl", records)
    write_jsonl(folder / "glue" / "rte.valid.jsonl", records[:4])
    return folder


@pytest.fixture(scope="module")
def run(work) -> Path:
    """The tiny run trained by `babble train`."""
    babble("train", "config.yaml", "--no-progress", cwd=work)
    return work / "run"


def test_babble_demo(tmp_path):
    out = babble("demo", "--quick", "--out", tmp_path / "demo", cwd=tmp_path).stdout
    line = next(line for line in out.splitlines() if line.startswith("demo minimal-pair accuracy (demo_pairs; "))
    assert "% before -> " in line and "sample from the exported model: 'the little dog" in out
    assert (tmp_path / "demo" / "run" / "hf" / "model.safetensors").is_file()
    assert (tmp_path / "demo" / "run" / "results" / "final" / "demo_pairs.json").is_file()
    assert not (tmp_path / "demo" / "run" / "results" / "final" / "blimp.json").exists()
    assert "| stage | status | time | detail |" in out and (tmp_path / "demo" / "run" / "results" / "report.md").is_file()


def test_babble_info(tmp_path):
    out = babble("info", REPO / "configs" / "llama-26m.yaml", cwd=tmp_path).stdout
    assert "transformer: 26,4" in out and "parameters (vocab 16,000)" in out and "hidden_size: 384" in out
    out = babble("info", REPO / "configs" / "gpt2-35m.yaml", cwd=tmp_path).stdout  # the TAAM card's 35.6M
    assert "gpt2: 35,561,472 parameters (vocab 32,000)" in out and "kind: sentencepiece" in out


def test_babble_data_prepare(work, tmp_path):
    out = babble("data", "prepare", "config.yaml", "--out", tmp_path / "prepared", cwd=work).stdout
    manifest = json.loads((tmp_path / "prepared" / "manifest.json").read_text())
    assert f"prepared {manifest['splits']['train']['words']:,} training words into {tmp_path / 'prepared'}" in out
    for name, alloc in manifest["allocations"].items():  # what each source gave, one line each
        assert re.search(rf"^  {name} +{alloc['words']:,} words +{alloc['lines']:,} lines", out, re.M), out
    assert "next: `babble data stats" in out


def test_babble_data_audit(run):
    out = babble("data", "audit", run / "data", cwd=run).stdout
    assert "sha256" in out and "FAIL" not in out


def test_babble_data_stats(run, tmp_path):
    out = babble("data", "stats", run / "data", "--png", tmp_path / "lengths.png", cwd=run).stdout
    assert "childes" in out and f"length distributions: {tmp_path / 'lengths.png'}" in out
    assert (tmp_path / "lengths.png").stat().st_size > 0


def test_babble_run(work, tmp_path):
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    cfg["run"]["out_dir"] = str(tmp_path / "run")
    cfg["eval"] = {"tasks": ["blimp", "ewok"], "data": str(work / "eval")}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    out = babble("run", "run.yaml", "--no-progress", cwd=tmp_path).stdout
    assert "sources (" in out and "next: `babble generate" in out
    table = out[out.index("| stage | status |"):]
    for stage in ("data", "train", "fast", "full", "report", "export"):
        assert f"| {stage} | done |" in table, table
    assert "| submit | skipped |" in table and "eval.data is not a full evaluation folder (it lacks aoa/, glue_filtered/)" in table
    run = tmp_path / "run"
    assert (run / "results" / "fast" / "learning_curves.md").is_file() and (run / "results" / "final" / "ewok.json").is_file()
    assert "| task | score | rules | ties counted right | ties counted wrong | items tied |" in (run / "results" / "report.md").read_text()
    assert "main" in babble("export", run, tmp_path / "check", "--branches", cwd=tmp_path).stdout
    again = babble("run", "run.yaml", "--no-progress", "--force", "report", cwd=tmp_path).stdout
    again = again[again.index("| stage | status |"):]
    assert all(f"| {stage} | reused |" in again for stage in ("data", "train", "export"))
    assert "| report | done |" in again and "| fast | done |" in again  # fast and full reuse every result file
    err = babble("run", "run.yaml", "--force", "nope", cwd=tmp_path, expect=2).stderr
    assert "--force: unknown stage(s) nope; stages: data, train, fast, full, report, export, submit" in err


def test_babble_train(run):
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in r for r in records) and any("dev_loss" in r for r in records)
    assert (run / "checkpoints" / "final" / "model.safetensors").is_file()
    assert list((run / "checkpoints").glob("chck_*")) and (run / "loss.png").is_file()


def test_babble_train_resume(work, tmp_path):
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    cfg["run"]["out_dir"] = str(tmp_path / "cut")
    (tmp_path / "cut.yaml").write_text(yaml.safe_dump(cfg))
    out = babble("train", "cut.yaml", "--no-progress", "--stop-after", "3", cwd=tmp_path).stdout
    assert "interrupted after 3 steps" in out
    out = babble("train", "cut.yaml", "--no-progress", "--resume", cwd=tmp_path).stdout
    assert "resuming from" in out and "(step 3," in out and "finished after" in out


def test_babble_plot(run):
    (run / "loss.png").unlink()
    assert f"wrote {run / 'loss.png'}" in babble("plot", run, cwd=run).stdout
    assert (run / "loss.png").stat().st_size > 0


def test_babble_schedule(work, run, tmp_path):
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    cfg["run"]["out_dir"] = str(tmp_path / "unprepared")
    (tmp_path / "unprepared.yaml").write_text(yaml.safe_dump(cfg))
    err = babble("schedule", "unprepared.yaml", cwd=tmp_path, expect=2).stderr
    assert "no prepared data to count the run's steps from; give --steps N" in err
    assert not (tmp_path / "unprepared").exists()  # nothing was prepared behind the user's back
    out = babble("schedule", "config.yaml", "--out", tmp_path / "lr.png", cwd=work).stdout
    assert f"learning-rate curve written to {tmp_path / 'lr.png'}" in out


def test_babble_sweep(work, tmp_path):
    out = babble("sweep", "config.yaml", "--grid", "optim.lr=1e-3,3e-3", "--set", "train.epochs=0.1",
                 "--out", tmp_path / "sweep", "--no-progress", cwd=work).stdout
    assert "optim.lr" in out and out.count("| 0.001 |") + out.count("| 0.003 |") == 2
    assert (tmp_path / "sweep" / "sweep.md").is_file() and (tmp_path / "sweep" / "sweep.csv").is_file()


def test_babble_prior(tmp_path):
    out = babble("prior", "eng", "nld", "zho", cwd=tmp_path).stdout.splitlines()
    assert out[0] == ("URIEL features: syntax_knn + phonology_knn + inventory_knn, 289 known in every language, "
                      "zho looked up as cmn")
    assert out[1] == "pi0 = floor(softmax(isolation / 0.5), 0.1)"
    assert [line.split() for line in out[5:8]] == [["eng", "0.0000", "0.1923", "0.3316"], ["nld", "0.1923", "0.0000", "0.3380"],
                                                   ["zho", "0.3316", "0.3380", "0.0000"]]
    assert out[-3:] == ["eng: isolation 0.2619  pi0 0.3213", "nld: isolation 0.2651  pi0 0.3227",
                        "zho: isolation 0.3348  pi0 0.3560"]  # the reference's prior
    out = babble("prior", "eng", "nld", "zho", "--reverse", "--temperature", "0.5", "--floor", "0.1", cwd=tmp_path).stdout
    assert out.splitlines()[-3:] == ["eng: isolation 0.2619  pi0 0.3449", "nld: isolation 0.2651  pi0 0.3434",
                                     "zho: isolation 0.3348  pi0 0.3117"]  # P2
    err = babble("prior", "eng", "nld", "--features", "syntax", cwd=tmp_path, expect=2).stderr
    assert err.startswith("error: unknown URIEL feature set 'syntax'; known: syntax_knn,") and len(err.splitlines()) == 1


TINY_TAAM = ["data.corpus=corpus", "data.seq_len=32", "tokenizer.vocab_size=400", "tokenizer.sample_bytes=20000",
             "model={arch: gpt2, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, "
             "intermediate_size: 64, max_position_embeddings: 32}", "run.device=cpu", "train.batch_size=8", "train.log_every=5",
             "train.save_every=0", "checkpoints.milestones=none", "mixing.budget=60000", "mixing.tokens=2560",
             "mixing.eval_every=5", "mixing.reward_dev_tokens=160", "mixing.final_dev_tokens=256"]


def test_babble_matrix(tmp_path):
    """Three TAAM conditions (the presets: GPT-2 and SentencePiece, CPU-sized by --set) x two seeds: one table,
    median (min-max) over seeds."""
    import csv

    from multilingual_corpus import write_corpus, write_dutch_pairs

    write_corpus(tmp_path / "corpus")
    write_dutch_pairs(tmp_path / "eval")
    presets = [REPO / "configs" / "taam" / f"{name}.yaml" for name in ("TAAM", "TAAM_v2_deficit", "M_ZH")]
    out = babble("matrix", *presets, "--seeds", "1", "2", "--out", "m", "--eval-data", "eval", "--no-progress",
                 "--set", *TINY_TAAM, cwd=tmp_path).stdout
    rows = list(csv.DictReader((tmp_path / "m" / "matrix.csv").open()))
    runs = list(csv.DictReader((tmp_path / "m" / "runs.csv").open()))
    assert [r["condition"] for r in rows] == ["TAAM", "TAAM_v2", "M_ZH"] and len(runs) == 6
    assert set(rows[0]) == {"condition", "seeds"} | {f"{key}_{stat}" for stat in ("median", "min", "max") for key in (
        "dev_loss_eng", "dev_loss_nld", "dev_loss_zho", "multiblimp_nld", "pi_eng", "pi_nld", "pi_zho")}
    for row in rows:
        mine = [r for r in runs if r["condition"] == row["condition"]]
        assert row["seeds"] == "1 2" and [r["seed"] for r in mine] == ["1", "2"]
        for key in ("dev_loss_zho", "multiblimp_nld", "pi_eng"):
            values = sorted(float(r[key]) for r in mine)
            assert [float(row[f"{key}_{stat}"]) for stat in ("min", "median", "max")] == pytest.approx(
                [values[0], sum(values) / 2, values[1]])
        for r in mine:  # the table's numbers are the runs' own: final dev slice and final pi
            last = [json.loads(line) for line in (Path(r["run"]) if Path(r["run"]).is_absolute() else tmp_path / r["run"]
                                                  ).joinpath("metrics.jsonl").open() if '"pi"' in line][-1]
            assert float(r["dev_loss_nld"]) == pytest.approx(last["final_dev_loss"]["nld"])
            assert float(r["pi_zho"]) == pytest.approx(last["pi"]["zho"])
    assert float(rows[2]["pi_zho_min"]) == 1.0  # M_ZH: Mandarin only
    assert float(rows[1]["pi_zho_median"]) != pytest.approx(1 / 3, abs=1e-3)  # TAAM v2 moved pi
    manifests = {(tmp_path / "m" / f"{c}-s{s}" / "data" / "multilingual.json").read_text()
                 for c in ("TAAM", "TAAM_v2", "M_ZH") for s in (1, 2)}
    assert len(manifests) == 1  # one data preparation, copied to every run
    table = (tmp_path / "m" / "matrix.md").read_text()
    assert table in out + "\n" and table.startswith("| condition | seeds | final dev loss eng |")
    assert "| M_ZH | 1 2 |" in table and "1.000 (1.000-1.000)" in table
    again = babble("matrix", *presets, "--seeds", "1", "2", "--out", "m", "--no-progress", "--set", *TINY_TAAM,
                   cwd=tmp_path).stdout  # finished runs are reused, not trained again
    assert "matrix: training" not in again and "| TAAM | 1 2 |" in again


def test_babble_eval(work, run, tmp_path):
    out = babble("eval", run, "--tasks", "blimp,ewok", "--data", work / "eval", "--out", tmp_path, "--device", "cpu",
                 cwd=work).stdout
    blimp = json.loads((tmp_path / "blimp.json").read_text())
    assert "average (2 scores): " in out and blimp["by_uid"].keys() == {"agreement"}
    assert (tmp_path / "ewok.json").is_file()


def test_babble_finetune(work, run, tmp_path):
    out = babble("finetune", run, "--tasks", "rte", "--data", work / "glue", "--epochs", "1", "--batch-size", "4",
                 "--device", "cpu", "--out", tmp_path, cwd=work).stdout
    result = json.loads((tmp_path / "rte.json").read_text())
    assert f"| rte | {result['metric']} | {result['scores']['rte']:.2f} |" in out


def test_babble_submit(run, tmp_path):
    data = write_full_eval(tmp_path / "evaluation_data" / "full_eval").parent
    proc = babble("submit", run, "--data", data, "--out", tmp_path / "sub", "--device", "cpu", "--no-progress", cwd=run,
                  expect=1)
    collated = tmp_path / "sub" / "run" / "all_full_preds_and_fast_scores_causal.json"
    assert f"submission in {tmp_path / 'sub' / 'run'}: upload {collated} (has " in proc.stdout
    problems = [line[len("NOT READY "):] for line in proc.stderr.splitlines() if line.startswith("NOT READY ")]
    # this small data is far from the leaderboard's sizes, and the tiny run stops before chck_100M
    assert problems[0].startswith("blimp: short: agreement is not a key of the leaderboard's; superlative_quantifiers_2 has none of 986")
    assert "reading: short: reading has 48 predictions of 1726" in problems
    absent = [name for name in json.loads((REPO / "src" / "babblelm" / "eval" / "leaderboard_sizes.json").read_text())
              ["revisions"]["strict-small"] if not (run / "checkpoints" / name).is_dir()]
    assert absent and all(f"{name}: missing: no checkpoint {name} (or no fast results for it)" in problems for name in absent)
    assert json.loads(collated.read_text())["blimp"] is None
    assert (tmp_path / "sub" / "run" / "main" / "zero_shot" / "causal" / "blimp" / "blimp_filtered" / "predictions.json").is_file()


def test_babble_report(work, run, tmp_path):
    babble("eval", run, "--tasks", "blimp", "--data", work / "eval", "--device", "cpu", cwd=work)
    out = babble("report", run, "--out", tmp_path, cwd=work).stdout
    assert "comparison.md" in out and "| run |" in (tmp_path / "comparison.md").read_text()


def test_babble_export(run, tmp_path):
    out = babble("export", run, tmp_path / "hf", cwd=run).stdout
    assert "a native LlamaForCausalLM" in out and (tmp_path / "hf" / "model.safetensors").is_file()
    out = babble("export", run, tmp_path / "repo", "--branches", cwd=run).stdout
    milestones = sorted(p.name for p in (run / "checkpoints").glob("chck_*"))
    assert f"git repository {tmp_path / 'repo'}: branches" in out and all(name in out for name in milestones)


def test_babble_import(work, tmp_path):
    reference = REPO / "tests" / "data" / "induction_reference"
    out = babble("import", reference, tmp_path / "model", cwd=tmp_path).stdout
    assert "a babblelm induction model with 43,720 parameters, with its tokenizer" in out
    assert babble("generate", tmp_path / "model", "the dog", "--max-new-tokens", "4", "--device", "cpu",
                  cwd=tmp_path).stdout.startswith("the dog")
    babble("eval", tmp_path / "model", "--tasks", "blimp", "--data", work / "eval", "--out", tmp_path / "results",
           "--device", "cpu", cwd=tmp_path)
    assert json.loads((tmp_path / "results" / "blimp.json").read_text())["scores"]["blimp"] >= 0
    assert "with its modeling code" in babble("export", tmp_path / "model", tmp_path / "hf", cwd=tmp_path).stdout
    err = babble("import", reference, tmp_path / "model", cwd=tmp_path, expect=2).stderr
    assert f"error: {tmp_path / 'model'} already exists and is not empty" in err


def test_babble_generate(run, tmp_path):
    out = babble("generate", run, "the dog", "--max-new-tokens", "5", "--device", "cpu", cwd=run).stdout
    assert out.startswith("the dog") and len(out.split()) >= 2
    (tmp_path / "prompts.txt").write_text("the dog\na cat\n", encoding="utf-8")
    lines = babble("generate", run, "--prompts", tmp_path / "prompts.txt", "--max-new-tokens", "5", "--device", "cpu",
                   cwd=run).stdout.splitlines()
    assert [json.loads(line)["prompt"] for line in lines] == ["the dog", "a cat"]
    assert out == "the dog" + json.loads(lines[0])["text"] + "\n"  # the same engine, the same greedy text


def test_babble_serve(run):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=str(SRC))
    proc = subprocess.Popen([str(BABBLE), "serve", str(run), "--port", str(port), "--device", "cpu"], cwd=run, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(1500):  # up to 5 minutes or more to start: a busy machine is slow, not wrong
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.2)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", method="POST",
                                         data=json.dumps({"prompt": "the dog", "max_tokens": 4}).encode(),
                                         headers={"Content-Type": "application/json"})
        reply = json.loads(urllib.request.urlopen(request, timeout=60).read())
        assert reply["object"] == "text_completion" and reply["usage"]["completion_tokens"] <= 4
        assert isinstance(reply["choices"][0]["text"], str)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
