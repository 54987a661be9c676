"""GLUE fine-tuning: a classification head on the causal LM's last non-pad hidden state.

Works for every architecture: the head reads `hidden_states[-1]` (requested with
`output_hidden_states=True`) at each sequence's last real token. Data: `<task>.train.jsonl` and
`<task>.valid.jsonl` (the official `glue_filtered` names), label in `label`. Defaults as the
official pipeline: lr 3e-5, batch 32, 10 epochs (30 for WSC), 512 tokens, seed 42; AdamW with a
linear decay to 0. Metric on the validation file after the last epoch: F1 of class 1 for MRPC
and QQP, accuracy otherwise (percent).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from ..device import resolve_device
from ..modelfolder import load_model
from .load import load_tokenizer
from .records import EvalDataError, field, jsonl_records

GLUE_TASKS = {  # name: (fields, how a record becomes a text pair, labels)
    "boolq": (("question", "passage"), lambda r: (r["question"], r["passage"]), 2),
    "multirc": (("question", "answer", "paragraph"),
                lambda r: (f"Question: {r['question']} Answer: {r['answer']}", r["paragraph"]), 2),
    "rte": (("sentence1", "sentence2"), lambda r: (r["sentence1"], r["sentence2"]), 2),
    "mrpc": (("sentence1", "sentence2"), lambda r: (r["sentence1"], r["sentence2"]), 2),
    "qqp": (("question1", "question2"), lambda r: (r["question1"], r["question2"]), 2),
    "mnli": (("premise", "hypothesis"), lambda r: (r["premise"], r["hypothesis"]), 3),
    "wsc": (("span1_text", "span2_text", "text"),
            lambda r: (f'Does "{r["span2_text"]}" refer to "{r["span1_text"]}" in this passage?', r["text"]), 2),
}
F1_TASKS = ("mrpc", "qqp")


def load_split(data_dir, task: str, split: str) -> tuple[list[str], list[int]]:
    """Texts (the pair joined by a space) and labels of `<task>.<split>.jsonl`."""
    fields, to_pair, n_labels = GLUE_TASKS[task]
    path = Path(data_dir) / f"{task}.{split}.jsonl"
    if not path.is_file():
        raise EvalDataError(f"{path}: file not found (expected {task}.train.jsonl and {task}.valid.jsonl)")
    texts, labels = [], []
    for where, record in jsonl_records(path, f"{', '.join(map(repr, fields))} and 'label'"):
        for key in fields:
            field(record, key, where)
        label = field(record, "label", where, int)
        if not 0 <= label < n_labels:
            raise EvalDataError(f"{where}: field 'label' must be in 0..{n_labels - 1}, got {label}")
        texts.append(" ".join(to_pair(record)))
        labels.append(label)
    return texts, labels


class SequenceClassifier(nn.Module):
    """Causal LM + linear head on the last non-pad position's final hidden state."""

    def __init__(self, lm, n_labels: int):
        super().__init__()
        self.lm = lm
        self.head = nn.Linear(lm.config.hidden_size, n_labels)

    def forward(self, input_ids, attention_mask):
        hidden = self.lm(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True).hidden_states[-1]
        last = attention_mask.sum(dim=1) - 1
        return self.head(hidden[torch.arange(len(hidden), device=hidden.device), last].float())


def _batches(tokenizer, texts, labels, batch_size, max_length, order, device):
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        enc = tokenizer([texts[i] for i in index], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt")
        yield enc["input_ids"].to(device), enc["attention_mask"].to(device), torch.tensor([labels[i] for i in index])


def metric(task: str, predictions: list[int], labels: list[int]) -> float:
    if task in F1_TASKS:
        tp = sum(p == 1 and y == 1 for p, y in zip(predictions, labels))
        fp = sum(p == 1 and y == 0 for p, y in zip(predictions, labels))
        fn = sum(p == 0 and y == 1 for p, y in zip(predictions, labels))
        return 100.0 * 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return 100.0 * sum(p == y for p, y in zip(predictions, labels)) / len(labels)


def finetune(model_dir, task: str, data_dir, lr=3e-5, batch_size=32, epochs=None, max_length=512, seed=42,
             device="cpu", progress=True, trust_remote_code: bool = False) -> dict:
    """Fine-tune a fresh copy of the model on one task -> {"task", "scores", "metric", "predictions", ...}."""
    start = time.perf_counter()
    epochs = epochs or (30 if task == "wsc" else 10)
    tokenizer = load_tokenizer(model_dir, trust_remote_code)
    train_texts, train_labels = load_split(data_dir, task, "train")
    valid_texts, valid_labels = load_split(data_dir, task, "valid")
    torch.manual_seed(seed)
    lm = load_model(model_dir, trust_remote_code=trust_remote_code)
    model = SequenceClassifier(lm, GLUE_TASKS[task][2]).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    steps = epochs * -(-len(train_texts) // batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / steps)
    generator = torch.Generator().manual_seed(seed)
    bar = tqdm(total=steps, desc=f"finetune {task}", disable=not progress)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(train_texts), generator=generator).tolist()
        for ids, mask, labels in _batches(tokenizer, train_texts, train_labels, batch_size, max_length, order, device):
            loss = nn.functional.cross_entropy(model(ids, mask), labels.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
            bar.update()
    bar.close()
    model.eval()
    predictions = []
    with torch.inference_mode():
        for ids, mask, _ in _batches(tokenizer, valid_texts, valid_labels, batch_size, max_length,
                                     list(range(len(valid_texts))), device):
            predictions += model(ids, mask).argmax(dim=-1).tolist()
    name = "f1" if task in F1_TASKS else "accuracy"
    return {"task": task, "scores": {task: metric(task, predictions, valid_labels)}, "metric": name,
            "predictions": predictions, "n_train": len(train_texts), "n_valid": len(valid_texts), "epochs": epochs,
            "lr": lr, "batch_size": batch_size, "seed": seed, "seconds": time.perf_counter() - start}


def finetune_tasks(model_dir, tasks, data_dir, out_dir: Path, device="auto", **kwargs) -> dict[str, dict]:
    """Fine-tune each task, writing `out_dir/<task>.json`."""
    device = resolve_device(device)
    results = {}
    for task in tasks:
        results[task] = finetune(model_dir, task, data_dir, device=device, **kwargs)
        out_dir.mkdir(parents=True, exist_ok=True)  # only once there is a result: a failed start leaves nothing
        (out_dir / f"{task}.json").write_text(json.dumps(results[task], indent=2), encoding="utf-8")
    return results


def format_results(results: dict[str, dict]) -> str:
    lines = ["| task | metric | score |", "|---|---|---|"]
    lines += [f"| {t} | {r['metric']} | {r['scores'][t]:.2f} |" for t, r in results.items()]
    return "\n".join(lines)
