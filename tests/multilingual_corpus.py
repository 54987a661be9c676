"""A tiny three-language corpus in the multilingual layout (`<corpus>/{eng,nld,zho}/*.train|.dev`)
and MultiBLiMP-style minimal pairs, generated from small templates: English from the demo grammar,
Dutch and Mandarin from a handful of nouns, verbs and agreement rules (Mandarin without spaces)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from babblelm.data.synthetic import Grammar

NLD_NOUNS = [("hond", "honden", "de"), ("kat", "katten", "de"), ("bal", "ballen", "de"), ("kind", "kinderen", "het"),
             ("huis", "huizen", "het"), ("boek", "boeken", "het"), ("vogel", "vogels", "de"), ("fiets", "fietsen", "de")]
NLD_VERBS = [("ziet", "zien"), ("pakt", "pakken"), ("zoekt", "zoeken"), ("heeft", "hebben"), ("wil", "willen")]
NLD_ADJ = ["kleine", "grote", "rode", "mooie", "oude"]
ZHO_NOUNS = ["小狗", "小猫", "妈妈", "爸爸", "老师", "朋友", "苹果", "书", "球", "鸟"]
ZHO_VERBS = ["看见", "喜欢", "找到", "拿着", "想要"]
ZHO_FRAMES = ["{s}{v}{o}。", "{s}今天{v}{o}。", "{s}不{v}{o}。", "{s}{v}{o}吗？", "我们的{s}{v}了{o}。"]


def dutch_sentence(rng: random.Random) -> tuple[str, str]:
    """(a sentence, the same with the verb's number wrong)."""
    noun = rng.choice(NLD_NOUNS)
    plural = rng.random() < 0.5
    subject = f"de {noun[1]}" if plural else f"{noun[2]} {noun[0]}"
    verb = rng.choice(NLD_VERBS)
    obj = rng.choice(NLD_NOUNS)
    rest = f"de {rng.choice(NLD_ADJ)} {obj[0]} ."
    good, bad = (verb[1], verb[0]) if plural else verb
    return f"{subject} {good} {rest}", f"{subject} {bad} {rest}"


def mandarin_sentence(rng: random.Random) -> str:
    subject, obj = rng.sample(ZHO_NOUNS, 2)
    return rng.choice(ZHO_FRAMES).format(s=subject, v=rng.choice(ZHO_VERBS), o=obj)


def write_corpus(root: Path, lines: int = 1500, seed: int = 0) -> Path:
    """`root/{eng,nld,zho}/<name>.train` and `.dev` (one dev line per 20)."""
    rng = random.Random(seed)
    grammar = Grammar(random.Random(seed))
    makers = {"eng": lambda: " ".join(grammar.utterance()), "nld": lambda: dutch_sentence(rng)[0],
              "zho": lambda: mandarin_sentence(rng)}
    for lang, make in makers.items():
        text = [make() for _ in range(lines)]
        folder = root / lang
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{lang}.train").write_text("".join(t + "\n" for i, t in enumerate(text) if i % 20), encoding="utf-8")
        (folder / f"{lang}.dev").write_text("".join(t + "\n" for i, t in enumerate(text) if not i % 20), encoding="utf-8")
    return root


def write_dutch_pairs(root: Path, n: int = 24, seed: int = 1) -> Path:
    """MultiBLiMP-style jsonl in `root/nld/`: `sen` (grammatical), `wrong_sen`, `phenomenon`."""
    rng = random.Random(seed)
    folder = root / "nld"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for _ in range(n):
        good, bad = dutch_sentence(rng)
        rows.append({"sen": good, "wrong_sen": bad, "phenomenon": "SV-#"})
    (folder / "multiblimp_nld.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                                 encoding="utf-8")
    return root


def _rows(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _dataset(folder: Path, configs: dict[str, list[dict]]) -> Path:
    """A local Hugging Face dataset folder: one config per name, a `train` split each (README.md's YAML)."""
    card = ["---", "configs:"]
    for name, rows in configs.items():
        _rows(folder / name / "train.jsonl", rows)
        card += [f"- config_name: {name}", "  data_files:", "  - split: train", f"    path: {name}/train.jsonl"]
    (folder / "README.md").write_text("\n".join([*card, "---", ""]), encoding="utf-8")
    return folder


def write_lm_eval_tasks(root: Path, n: int = 12, seed: int = 2) -> Path:
    """`root/tasks`: lm-eval task YAMLs laid out and keyed like the official multilingual/tasks (language
    groups `zeroshot_<lang>` aggregating `acc` by size; a nested BLiMP-style group of subtasks loaded by
    `dataset_name` through an `include`d default; MultiBLiMP tasks that `include` one another), over local
    datasets in `root/data` (Hugging Face dataset folders, so `dataset_path`/`dataset_name` work as for
    Hub datasets and offline). Returns the task folder."""
    from babblelm.data import synthetic

    rng = random.Random(seed)
    synthetic.write_minimal_pairs(root / "pairs", pairs_per_phenomenon=n, seed=seed)
    blimp = {p.stem: [json.loads(line) for line in p.read_text().splitlines()] for p in sorted((root / "pairs").glob("*.jsonl"))[:2]}
    dutch = [dutch_sentence(rng) for _ in range(n)]
    mandarin = []
    for _ in range(n):
        subject, obj = rng.sample(ZHO_NOUNS, 2)
        verb = rng.choice(ZHO_VERBS)
        mandarin.append((f"{subject}{verb}{obj}。", f"{subject}{obj}{verb}。"))  # verb-final is wrong here
    english = [(r["sentence_good"], r["sentence_bad"]) for rows in blimp.values() for r in rows][:n]
    pairs = {"eng": english, "nld": dutch, "zho": mandarin}
    data = root / "data"
    _dataset(data / "blimp_tiny", blimp)
    _dataset(data / "multiblimp", {lang: [{"sen": good, "wrong_sen": bad, "phenomenon": "SV-#"} for good, bad in rows]
                                   for lang, rows in pairs.items()})
    tasks = root / "tasks"
    members = {"eng": ["blimp_tiny", "multiblimp_eng"], "nld": ["multiblimp_nld"], "zho": ["multiblimp_zho"]}
    aggregate = "aggregate_metric_list:\n- metric: acc\n  aggregation: mean\n  weight_by_size: true\nmetadata:\n  version: 1.0\n"
    for lang, tasks_of in members.items():
        _text(tasks / "zeroshot_babybabellm" / f"zeroshot_{lang}.yaml",
              f"group: zeroshot_{lang}\ntask:\n" + "".join(f"  - {t}\n" for t in tasks_of) + aggregate)
    _text(tasks / "blimp_tiny" / "_blimp_tiny.yaml",
          "group: blimp_tiny\ntask:\n" + "".join(f"- blimp_tiny_{uid}\n" for uid in blimp) + aggregate)
    _text(tasks / "blimp_tiny" / "_default.yaml",
          f"dataset_path: {data / 'blimp_tiny'}\ntest_split: train\ntraining_split: null\nvalidation_split: null\n"
          "output_type: multiple_choice\ndoc_to_text: ''\ndoc_to_target: 0\n"
          "doc_to_choice: '{{[sentence_good, sentence_bad]}}'\nnum_fewshot: 0\n"
          "metric_list:\n- metric: acc\n  aggregation: mean\n  higher_is_better: true\nmetadata:\n  version: 1.0\n")
    for uid in blimp:
        _text(tasks / "blimp_tiny" / f"blimp_tiny_{uid}.yaml", f"include: _default.yaml\ntask: blimp_tiny_{uid}\ndataset_name: {uid}\n")
    _text(tasks / "multiblimp" / "multiblimp_nld.yaml",
          f"task: multiblimp_nld\ndataset_path: {data / 'multiblimp'}\ndataset_name: nld\noutput_type: multiple_choice\n"
          "validation_split: train\ndoc_to_text: ''\ndoc_to_target: 0\ndoc_to_choice: '{{[sen, wrong_sen]}}'\n"
          "num_fewshot: 0\nmetric_list:\n- metric: acc\n  aggregation: mean\n  higher_is_better: true\nmetadata:\n  version: 1.0\n")
    for lang in ("eng", "zho"):
        _text(tasks / "multiblimp" / f"multiblimp_{lang}.yaml", f"include: multiblimp_nld.yaml\ntask: multiblimp_{lang}\ndataset_name: {lang}\n")
    return tasks


def _text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
