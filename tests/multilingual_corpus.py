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
