"""`babble eval --rules R` against the official BabyLM pipeline of year R, task by task: the same model,
data and CPU; the seconds each side takes and whether the scores agree.

    python benchmarks/eval_vs_official.py --official /tmp/official [--rules 2026|2025] \
        [--official-python .venvs/official/bin/python] [--work /tmp/eval-vs-official] [--model HF_DIR | --arch A] \
        [--tasks blimp,supplement,ewok,entity_tracking,comps,global_piqa] [--scale 1.0] [--repeat 1]

`--official`: a checkout of the official pipeline of that year: for 2026 the `strict/` folder of
babylm-org/babylm-eval (readable up to 3bf5142 in factoredai/diffusion-babylm-eval), for 2025
babylm/evaluation-pipeline-2025; run with `--official-python`, an environment with its pinned
requirements (transformers 4.51.3; its zero-shot code also imports scipy, datasets and aiohttp).
Under 2026 the official side reads entity tracking without the items that have a "nothing" option
(as upstream 6f825c2's collation says its predictions are made) and Global PIQA through its
entity-tracking reader (no readable official code reads Global PIQA: prompt, " " + each solution,
the labelled one first), one run per sub-set. Without `--model`,
a model of the demo's shape and `--arch` (default a ~1.2M-parameter Transformer: width 128, 4 layers,
tied embeddings, a byte-level BPE of up to 1,024 tokens) is trained for one epoch on 60,000 words of
the demo grammar and exported (`export_model`: the Transformer as a native LlamaForCausalLM). The task data is written in the official formats from
the demo grammar (`--scale` multiplies the item counts).

Per task, both commands run back to back on the CPU (the official one with CUDA hidden; it has no
device flag): `python -m evaluation_pipeline.sentence_zero_shot.run ... --backend causal` and
`babble eval ... --device cpu`, each through benchmarks/timed_main.py. Two times per side, each the
best of `--repeat` runs: the whole command (interpreter start, imports, model loading, scoring,
reports), and its `main()` alone (the same minus start-up and the modules' imports). "agree"
compares every score the official report prints (per UID, per entity-tracking file, the average)
with babblelm's, both to two decimals, and the option each side picks for every item (from the
official predictions.json and babblelm's per-item scores).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASK_ARGS = {  # rules -> babblelm task -> [(official --task, the data sub-folder it reads)]
    "2025": {
        "blimp": [("blimp", "blimp_filtered")],
        "supplement": [("blimp", "supplement_filtered")],
        "ewok": [("ewok", "ewok_filtered")],
        "entity_tracking": [("entity_tracking", "entity_tracking")],
        "comps": [("comps", "comps")],
        "wug_adj": [("wug_adj", "wug_adj_nominalization")],
        "wug_past": [("wug_past", "wug_past_tense")],
    },
    "2026": {
        "blimp": [("blimp", "blimp_filtered")],
        "supplement": [("blimp", "supplement_filtered")],
        "ewok": [("ewok", "ewok_filtered")],
        "entity_tracking": [("entity_tracking", "official_entity_tracking_nothing_dropped")],
        "comps": [("comps", "comps")],
        "global_piqa": [("entity_tracking", f"official_{subset}_as_entity_tracking")
                        for subset in ("global_piqa_parallel", "global_piqa_nonparallel")],
    },
}


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


# --- the model -------------------------------------------------------------------------------------

def build_model(work: Path, arch: str = "transformer", words: int = 60_000) -> Path:
    """Train the demo-shaped `arch` for one epoch on `words` words of the demo grammar; export it."""
    import yaml

    from babblelm.config import load_config
    from babblelm.data import synthetic
    from babblelm.demo import CONFIG, demo_model
    from babblelm.export import export_model
    from babblelm.train.launch import train

    home = work / f"model-{arch}"
    hf = home / "hf"
    if (hf / "config.json").is_file():
        return hf
    synthetic.write_demo_corpus(home / "corpus", words=words, seed=0)
    raw = {**yaml.safe_load(CONFIG.read_text(encoding="utf-8")), "model": demo_model(arch, quick=False)}
    cfg = load_config(CONFIG, raw=raw, overrides=[
        f"run.out_dir={home / 'run'}", f"data.corpus={home / 'corpus'}", "run.name=eval-bench",
        "train.epochs=1", "checkpoints.milestones=none"])
    train(cfg, progress=False, overwrite=True)
    return export_model(home / "run", hf, log=print)


# --- the task data, in the official formats ----------------------------------------------------------

def sentences(rng: random.Random, n: int) -> str:
    from babblelm.data.synthetic import Grammar

    grammar = Grammar(rng)
    return " ".join(" ".join(grammar.utterance()) for _ in range(n))


def write_jsonl(path: Path, rows: list[dict]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return len(rows)


def write_blimp(root: Path, scale: float) -> int:
    from babblelm.data.synthetic import write_minimal_pairs

    pairs = min(int(400 * scale), 1000)  # the demo grammar runs out of distinct pairs for some phenomena
    return sum(write_minimal_pairs(root / "blimp_filtered", pairs_per_phenomenon=pairs, seed=1).values())


def write_supplement(root: Path, scale: float, rng: random.Random) -> int:
    """Minimal pairs without field or UID (UID = file name), as the supplement's files."""
    from babblelm.data.synthetic import write_minimal_pairs

    total = 0
    with tempfile.TemporaryDirectory() as pairs:
        write_minimal_pairs(pairs, pairs_per_phenomenon=int(100 * scale), seed=2)
        for path in sorted(Path(pairs).glob("*.jsonl"))[:5]:
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
            pairs_only = [{"sentence_good": r["sentence_good"], "sentence_bad": r["sentence_bad"]} for r in rows]
            total += write_jsonl(root / "supplement_filtered" / path.name, pairs_only)
    return total


def write_ewok(root: Path, scale: float, rng: random.Random) -> int:
    """EWoK: one or two context sentences, two one-sentence targets; one file per domain."""
    total = 0
    for domain in ("agent-properties", "material-dynamics", "physical-interactions", "social-relations", "spatial"):
        rows = []
        for _ in range(int(500 * scale)):
            context_words = rng.choice((1, 1, 2))
            target1, target2 = sentences(rng, 1), sentences(rng, 1)
            while target2 == target1:
                target2 = sentences(rng, 1)
            rows.append({"Domain": domain, "ContextType": rng.choice(("plain", "negated")),
                         "ContextDiff": rng.choice(("antonym", "swap")), "TargetDiff": rng.choice(("word", "order")),
                         "Context1": sentences(rng, context_words), "Context2": sentences(rng, context_words),
                         "Target1": target1, "Target2": target2})
        total += write_jsonl(root / "ewok_filtered" / f"{domain}.jsonl", rows)
    return total


def write_entity_tracking(root: Path, scale: float, rng: random.Random) -> int:
    """Entity tracking: four boxes and their contents, up to two moves, "box k contains"; five options."""
    from babblelm.data.synthetic import NOUNS

    things = sorted({noun.sg for noun in NOUNS})
    total = 0
    for split in ("regular", "ambiref", "move_contents"):
        rows = []
        for sample in range(int(200 * scale)):
            numops = rng.randint(0, 2)
            boxes = [rng.sample(things, rng.randint(0, 2)) for _ in range(4)]
            text = " , ".join(f"box {k} contains " + (" and ".join(f"the {t}" for t in box) or "nothing")
                              for k, box in enumerate(boxes)) + " ."
            for _ in range(numops):
                source = rng.choice([k for k, box in enumerate(boxes) if box] or [0])
                if boxes[source]:
                    thing, target = boxes[source].pop(), rng.randrange(4)
                    boxes[target].append(thing)
                    text += f" move the {thing} from box {source} to box {target} ."
            asked = rng.randrange(4)
            gold = " " + (" and ".join(f"the {t}" for t in boxes[asked]) or "nothing") + " ."
            wrong = {f" the {t} ." for t in rng.sample(things, 6)} | ({" nothing ."} if sample % 2 else set())
            options = [gold, *sorted(wrong - {gold})[:4]]
            rows.append({"input_prefix": f"{text} box {asked} contains", "options": options, "numops": numops,
                         "sample_id": sample})
        total += write_jsonl(root / "entity_tracking" / f"{split}.jsonl", rows)
    return total


def write_comps(root: Path, scale: float, rng: random.Random) -> int:
    """COMPS: an acceptable and an unacceptable subject before the same property phrase."""
    from babblelm.data.synthetic import NOUNS

    things = sorted({noun.sg for noun in NOUNS})
    total = 0
    for name, wug in (("comps_base", False), ("comps_wugs", True)):
        rows = []
        for _ in range(int(600 * scale)):
            good, bad = rng.sample(things, 2)
            prefix = "a wug is a {}. therefore , a wug" if wug else "a {}"
            rows.append({"prefix_acceptable": prefix.format(good), "prefix_unacceptable": prefix.format(bad),
                         "property_phrase": sentences(rng, 1).split(" ", 2)[-1]})
        total += write_jsonl(root / "comps" / f"{name}.jsonl", rows)
    return total


def write_global_piqa(root: Path, scale: float, rng: random.Random) -> int:
    """Global PIQA: a prompt, two solutions, the label of the right one; one file per sub-set."""
    total = 0
    for subset, n in (("global_piqa_parallel", 103), ("global_piqa_nonparallel", 100)):
        rows = [{"example_id": f"{subset}_{k}", "prompt": sentences(rng, 1) + " ,", "solution0": sentences(rng, 1),
                 "solution1": sentences(rng, 1), "label": rng.randrange(2)} for k in range(max(int(n * scale), 1))]
        total += write_jsonl(root / subset / "eng_latn.jsonl", rows)
    return total


def write_official_copies(root: Path) -> None:
    """What the 2026 official side reads instead (module docstring): entity tracking without the items
    that have a "nothing" option, and Global PIQA in the entity-tracking format."""
    if (root / "entity_tracking").is_dir():
        for path in sorted((root / "entity_tracking").glob("*.jsonl")):
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
            write_jsonl(root / "official_entity_tracking_nothing_dropped" / path.name,
                        [r for r in rows if not any("nothing" in option for option in r["options"])])
    for subset in ("global_piqa_parallel", "global_piqa_nonparallel"):
        if (root / subset).is_dir():
            rows = [json.loads(line) for line in (root / subset / "eng_latn.jsonl").read_text().splitlines()]
            write_jsonl(root / f"official_{subset}_as_entity_tracking" / "regular.jsonl", [
                {"input_prefix": r["prompt"], "numops": 0, "options": [" " + r[f"solution{k}"] for k in
                                                                      (r["label"], 1 - r["label"])]} for r in rows])


def write_wug(root: Path, folder: str, name: str, items: int, suffixes: tuple[str, str], rng: random.Random) -> int:
    """WUG: a sentence with a nonce word, then two derived forms (tab-separated) and a human ratio."""
    rows = []
    for _ in range(items):
        stem = "".join(rng.choice("bdfgklmnprstvwz") + rng.choice("aeiou") for _ in range(2))
        lead = sentences(rng, 1)
        options = [f"{lead} the {stem}{suffix} was here ." for suffix in suffixes]
        rows.append({"sentences": "\t".join(options), "ratio": round(rng.random(), 3)})
    return write_jsonl(root / folder / f"{name}.jsonl", rows)


def write_data(root: Path, scale: float, tasks: list[str]) -> dict[str, int]:
    """The data of `tasks` under `root` (the official full_eval layout) -> {task: items}; each task's
    items depend only on `scale`."""
    writers = {
        "blimp": lambda rng: write_blimp(root, scale),
        "supplement": lambda rng: write_supplement(root, scale, rng),
        "ewok": lambda rng: write_ewok(root, scale, rng),
        "entity_tracking": lambda rng: write_entity_tracking(root, scale, rng),
        "comps": lambda rng: write_comps(root, scale, rng),
        "global_piqa": lambda rng: write_global_piqa(root, scale, rng),
        "wug_adj": lambda rng: write_wug(root, "wug_adj_nominalization", "wug_adj", int(200 * scale), ("ness", "ity"),
                                         rng),
        "wug_past": lambda rng: write_wug(root, "wug_past_tense", "wug_past", int(100 * scale), ("ed", "t"), rng),
    }
    counts = {task: writers[task](random.Random(task)) for task in tasks}
    write_official_copies(root)
    return counts


# --- running both sides ----------------------------------------------------------------------------

def run_timed(python: Path, modules: str, args: list[str], cwd: Path, env: dict) -> tuple[float, float]:
    """(wall seconds of the whole command, seconds of its `main()`), run through timed_main.py."""
    command = [str(python), str(ROOT / "benchmarks" / "timed_main.py"), modules, *args]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, float(done.stdout.strip().splitlines()[-1].split(": ")[1])


def run_official(args, task: str, model: Path, data: Path, out: Path) -> tuple[float, float]:
    """`python -m evaluation_pipeline.sentence_zero_shot.run` for each official run of `task` (CUDA hidden:
    it has no device flag) -> the summed (command, main()) seconds."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(args.official)}
    times = [run_timed(args.official_python, "evaluation_pipeline.sentence_zero_shot.run", [
        "--model_path_or_name", str(model), "--backend", "causal", "--task", official_task,
        "--data_path", str(data / folder), "--output_dir", str(out), "--save_predictions"], args.official, env)
        for official_task, folder in TASK_ARGS[args.rules][task]]
    return sum(t for t, _ in times), sum(m for _, m in times)


def run_babble(args, task: str, model: Path, data: Path, out: Path) -> tuple[float, float]:
    """`babble eval --rules R` for `task` on the CPU (`--force`: no results reused)."""
    return run_timed(Path(sys.executable), "babblelm.cli,babblelm.eval.suite,babblelm.eval.load", [
        "eval", str(model), "--tasks", task, "--data", str(data), "--device", "cpu", "--out", str(out), "--force",
        "--rules", args.rules], ROOT, {**os.environ, "HF_HUB_OFFLINE": "1"})


def official_results(args, out: Path, model: Path, task: str) -> list[tuple[dict, dict]]:
    """(the printed report as {section: {key: text}}, the predictions) of each official run of `task`."""
    runs = []
    for official_task, folder in TASK_ARGS[args.rules][task]:
        where = out / model.stem / "main" / "zero_shot" / "causal" / official_task / folder
        report, section = {}, None
        for line in (where / "best_temperature_report.txt").read_text(encoding="utf-8").splitlines():
            if line.startswith("### "):
                section = line[4:]
                report[section] = {}
            elif line.strip() and section is not None:
                key, _, value = line.rpartition(": ") if ": " in line else ("", "", line)
                report[section][key] = value.strip()
        runs.append((report, json.loads((where / "predictions.json").read_text(encoding="utf-8"))))
    return runs


# --- agreement ---------------------------------------------------------------------------------------

def printed_scores(task: str, runs: list[tuple[dict, dict]]) -> dict[str, str]:
    """The scores the official reports print for `task`, under babblelm's names."""
    averages = [next(values[""] for section, values in report.items() if section.startswith("AVERAGE"))
                for report, _ in runs]
    if task == "global_piqa":
        return dict(zip(("global_piqa_parallel", "global_piqa_nonparallel"), averages))
    if task.startswith("wug"):
        return {"average": averages[0]}
    uids = next(values for section, values in runs[0][0].items() if section.startswith("UID"))
    return {"average": averages[0], **uids}


def babble_scores(task: str, result: dict) -> dict[str, str]:
    """babblelm's scores as the official reports would print them."""
    if task == "global_piqa":
        return {uid: f"{value:.2f}" for uid, value in result["by_uid"].items()}
    if task.startswith("wug"):
        return {"average": f"{result['spearman']:.2f}"}
    return {"average": f"{result['scores'][task]:.2f}",
            **{uid: f"{value:.2f}" for uid, value in {**result["by_uid"], **result.get("by_group", {})}.items()
               if task == "entity_tracking" or uid in result["by_uid"]}}


def item_choices(args, task: str, model, tokenizer, data: Path) -> dict[str, list[tuple]]:
    """(pick, choice, scores) per item, per official UID in file order: babblelm's pick is the first best option."""
    from babblelm.eval.rules import rules_of
    from babblelm.eval.tasks import TASKS, load_task, score_choices, task_folders

    choices, _ = load_task(task, task_folders(task, data), rules_of(args.rules))
    scores = score_choices(model, tokenizer, choices, TASKS[task].shared_prefix)
    picks = defaultdict(list)
    for choice, option_scores in zip(choices, scores):
        uid = "wug" if task.startswith("wug") else choice.uid
        picks[uid].append((option_scores.index(max(option_scores)), choice, option_scores))
    return picks


def items_agree(task: str, picks: dict, runs: list[tuple[dict, dict]]) -> tuple[int, int, float]:
    """(items where both pick the same option, items, largest |P(option 0)| difference on WUG)."""
    same = total = 0
    worst = 0.0
    if task == "global_piqa":
        official = {subset: predictions["regular_0_ops"] for subset, (_, predictions) in
                    zip(("global_piqa_parallel", "global_piqa_nonparallel"), runs)}
    else:
        predictions = runs[0][1]
        official = predictions if not task.startswith("wug") else {"wug": next(iter(predictions.values()))}
    for uid, ours in picks.items():
        for (pick, choice, scores), prediction in zip(ours, official[uid]["predictions"]):
            texts = [context + completion if task == "comps" else completion for context, completion in choice.options]
            same += texts.index(prediction["pred"]) == pick
            total += 1
            if "prob" in prediction:
                top = max(scores)
                gold = math.exp(scores[0] - top) / sum(math.exp(s - top) for s in scores)
                worst = max(worst, abs(gold - prediction["prob"]))
    return same, total, worst


# --- main ----------------------------------------------------------------------------------------------

def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official", type=Path, required=True, help="checkout of the official pipeline of --rules")
    parser.add_argument("--rules", choices=sorted(TASK_ARGS), default="2026")
    parser.add_argument("--official-python", type=Path, default=ROOT / ".venvs" / "official" / "bin" / "python")
    parser.add_argument("--work", type=Path, default=Path("/tmp/eval-vs-official"))
    parser.add_argument("--model", type=Path, help="an exported Hugging Face folder (default: build one)")
    parser.add_argument("--arch", default="transformer", help="the architecture of the model built without --model")
    parser.add_argument("--tasks", help="default: every task of --rules")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every task's item count")
    parser.add_argument("--repeat", type=int, default=1, help="runs per side; the best time is reported")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    args.official = args.official.resolve()
    tasks = [task.strip() for task in (args.tasks or ",".join(TASK_ARGS[args.rules])).split(",") if task.strip()]
    model = args.model.resolve() if args.model else build_model(args.work, args.arch)
    data = args.work / f"data-{args.scale:g}"
    write_data(data, args.scale, tasks)

    from babblelm.eval.load import load_model_and_tokenizer
    from babblelm.models.registry import count_parameters

    loaded, tokenizer = load_model_and_tokenizer(model, device="cpu")
    print(f"model {model}: {count_parameters(loaded):,} parameters; data {data}; rules {args.rules}; "
          f"load {load_average()}")
    print(f"{'':<16} {'':>6} {'whole command (s)':^23} {'main() (s)':^23}")
    print(f"{'task':<16} {'items':>6} {'official':>8} {'babble':>7} {'ratio':>6} {'official':>8} {'babble':>7} "
          f"{'ratio':>6}  {'load (1/5/15 min)':<17} agree")
    failed = False
    for task in tasks:
        runs = [(run_official(args, task, model, data, args.work / "official-results"),
                 run_babble(args, task, model, data, args.work / "babble-results")) for _ in range(args.repeat)]
        official, babble = ([min(times) for times in zip(*side)] for side in zip(*runs))
        reports = official_results(args, args.work / "official-results", model, task)
        result = json.loads((args.work / "babble-results" / f"{task}.json").read_text(encoding="utf-8"))
        theirs, ours = printed_scores(task, reports), babble_scores(task, result)
        agree = theirs == ours
        detail = f"scores {'=' if agree else '!='}, {result['ties']} tied items"
        if task == "ewok" and args.rules == "2026":  # its predictions name the shared target only
            detail += ", picks n/a (2026 EWoK predictions do not say which context)"
        else:
            same, total, worst = items_agree(task, item_choices(args, task, loaded, tokenizer, data), reports)
            agree &= same == total
            detail += f", picks {same}/{total}" + (f", max |dP| {worst:.1e}" if task.startswith("wug") else "")
        failed |= not agree
        print(f"{task:<16} {result['n_items']:>6} {official[0]:>8.1f} {babble[0]:>7.1f} {official[0] / babble[0]:>5.2f}x "
              f"{official[1]:>8.2f} {babble[1]:>7.2f} {official[1] / babble[1]:>5.2f}x  {load_average():<17} "
              f"{'yes' if agree else 'NO'}: {detail}")
        if theirs != ours:
            print(f"    official {theirs}\n    babblelm {ours}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
