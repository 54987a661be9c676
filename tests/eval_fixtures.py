"""Small evaluation data in every official format (the `evaluation_data/full_eval` layout), and the
tiny random Llama with its BPE tokenizer that the scoring tests score with."""

import csv
import json
import math
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SENTENCES = ["The cat sat on the mat.", "Who did the cat see?", "A dog ran to the house.", "The children were playing."]
GLOBAL_PIQA = [("To dry a wet cat,", "use a towel.", "use the mat.", 0), ("To open the house,", "sit on the mat.",
                "use the key.", 1), ("To find the dog,", "look in the garden.", "ran away.", 0),
               ("To play with a ball,", "the cat sat.", "throw it.", 1)]
READING_ROWS = 48  # more complete rows than the self-paced regression's 17 terms (24 rows left 14)


def write_jsonl(path: Path, records) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


def write_eval_data(root: Path) -> Path:
    write_jsonl(root / "blimp_filtered" / "agreement.jsonl", [
        {"sentence_good": "The cat sat.", "sentence_bad": "The cat sit.", "UID": "agreement", "field": "morphology"},
        {"sentence_good": "The cats sat.", "sentence_bad": "The cats sits.", "UID": "agreement", "field": "morphology"},
    ])
    write_jsonl(root / "supplement_filtered" / "hypernym.jsonl", [
        {"sentence_good": "A dog is an animal.", "sentence_bad": "An animal is a dog."}])
    ewok = {"Domain": "spatial", "Context1": "The cat is on the mat.", "Context2": "The cat is under the mat.",
            "Target1": "The mat is below the cat.", "Target2": "The mat is above the cat.",
            "ContextType": "x", "ContextDiff": "y", "TargetDiff": "z"}
    write_jsonl(root / "ewok_filtered" / "spatial.jsonl", [ewok, {**ewok, "Domain": "social", "Target2": "Who ran?"}])
    entity = [{"input_prefix": "Box A has the cat. Box B has the dog. Box A contains",  # 2026 drops the k == 0 items
               "options": [" the cat.", " the dog.", " nothing." if k == 0 else " the mat."], "numops": n, "sample_id": k}
              for n in (0, 1) for k in range(2)]
    write_jsonl(root / "entity_tracking" / "regular.jsonl", entity)
    write_jsonl(root / "entity_tracking" / "ambiref.jsonl", entity[:2])
    write_jsonl(root / "comps" / "comps_base.jsonl", [
        {"prefix_acceptable": "A cat", "prefix_unacceptable": "A mat", "property_phrase": "can run."},
        {"prefix_acceptable": "The dog", "prefix_unacceptable": "The house", "property_phrase": "has a tail."}])
    for folder, items in (("global_piqa_parallel", GLOBAL_PIQA[:3]), ("global_piqa_nonparallel", GLOBAL_PIQA[1:])):
        write_jsonl(root / folder / "eng_latn.jsonl", [
            {"example_id": f"{folder}_{k}", "prompt": prompt, "solution0": a, "solution1": b, "label": label}
            for k, (prompt, a, b, label) in enumerate(items)])
    for folder, name in (("wug_adj_nominalization", "wug_adj"), ("wug_past_tense", "wug_past")):
        write_jsonl(root / folder / f"{name}.jsonl", [
            {"sentences": f"The cat {a}.\tThe cat {b}.", "ratio": r}
            for a, b, r in (("sat", "sit", 0.9), ("ran", "runned", 0.7), ("saw", "seed", 0.4), ("went", "goed", 0.2))])
    write_reading(root / "reading" / "reading_data.csv")
    return root


def write_reading(path: Path, rows: int = READING_ROWS) -> Path:
    """A reading CSV whose columns vary deterministically; every fourth row starts a sentence (no prev)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    words = "the cat sat on the mat and the dog ran to the house".split()
    columns = ["item", "word", "prev_item", "prev_word", "Subtlex_log10", "length", "context_length", "prev_length",
               "RTfirstfix", "RTfirstpass", "RTgopast", "RTrightbound", "self_paced_reading_time"]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for i in range(rows):
            k = i % len(words)
            item = " ".join(words[:k]) + " " if k else ""
            prev = (" ".join(words[: k - 1]) + " " if k > 1 else "", words[k - 1]) if i % 4 else ("", "")
            writer.writerow([item, words[k], *prev, 3 + (i * 7 % 5) / 2, len(words[k]), k, len(prev[1]) if prev[1] else "",
                             200 + (i * 13 % 17) * 5, 250 + (i * 11 % 7) * 9, 300 + (i * 5 % 11) * 7,
                             260 + (i * 3 % 13) * 6, 320 + (i * 17 % 19) * 4 if i != 5 else ""])
    return path


CORPUS = [
    "The cat sat on the mat.",
    "A dog ran to the cat and the cats ran away.",
    "Who did the cat see near the old house?",
    "The children were playing with a red ball in the garden.",
] * 4


def make_tokenizer(with_bos: bool = True) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on CORPUS; with a BOS post-processor unless told otherwise."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<pad>", "<bos>", "<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer)
    if with_bos:
        tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")


def make_model(vocab_size: int, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, initializer_range=0.2,
        bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
    return LlamaForCausalLM(config).eval()


GLUE_FIELDS = {"boolq": ("question", "passage"), "multirc": ("question", "answer", "paragraph"),
               "rte": ("sentence1", "sentence2"), "mrpc": ("sentence1", "sentence2"), "qqp": ("question1", "question2"),
               "mnli": ("premise", "hypothesis"), "wsc": ("span1_text", "span2_text", "text")}


def write_full_eval(root: Path) -> Path:
    """A whole `full_eval` folder in the official layout: every zero-shot task of `write_eval_data`, the AoA
    words (each with its contexts) and children's proportions, and the seven GLUE tasks' files."""
    write_eval_data(root)
    words = {"cat": ["the dog saw the", "a big"], "dog": ["the cat ran to the"], "mat": ["on the", "sit on the"],
             "house": ["go to the"], "ball": ["throw the", "a red"]}
    write_aoa(root / "aoa", words, {w: 18 + 2 * k for k, w in enumerate(words)})
    for task, fields in GLUE_FIELDS.items():
        rows = [{**{f: f"{SENTENCES[(k + j) % len(SENTENCES)]}" for j, f in enumerate(fields)}, "label": k % 2}
                for k in range(6)]
        write_jsonl(root / "glue_filtered" / f"{task}.train.jsonl", rows)
        write_jsonl(root / "glue_filtered" / f"{task}.valid.jsonl", rows[:4])
    return root


def write_aoa(folder: Path, contexts: dict[str, list[str]], midpoints: dict[str, float]) -> Path:
    """`cdi_childes.json` ({word: [{"context": ...}]}) and `cdi_human.csv` (a logistic proportion of children
    producing each word at 16..30 months, crossing 0.5 at its midpoint)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cdi_childes.json").write_text(json.dumps({w: [{"context": c} for c in cs] for w, cs in contexts.items()}))
    ages = range(16, 31)
    rows = [f"{w}," + ",".join(f"{1 / (1 + math.exp(-(a - midpoints[w]))):.4f}" for a in ages) for w in contexts]
    (folder / "cdi_human.csv").write_text("word," + ",".join(map(str, ages)) + "\n" + "\n".join(rows) + "\n")
    return folder
