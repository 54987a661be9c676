"""GLUE fine-tuning: a classification head on the bare decoder's hidden state, as the official pipeline.

The classifier is the official one [finetune/classifier_model.py]: `AutoModel` (the decoder without
its LM head), its `last_hidden_state` at one position, then LayerNorm, Linear, GELU, LayerNorm,
dropout 0.1 and a Linear to the labels. Which position is a scoring rule (`POOLING`): under the 2026
rules the final position of a LEFT-padded batch, i.e. every sequence's last real token (the official
`--padding_side left --take_final`); under the 2025 rules the first position of a right-padded batch
(the official defaults, which for a causal model is the state after BOS alone). Both work for every
architecture. The two texts of a pair go to the tokenizer as a pair (its template joins them), as
the official dataset does. Data: `<task>.train.jsonl` and `<task>.valid.jsonl` (the official
`glue_filtered` names), label in `label`. Defaults as the official scripts: lr 3e-5, batch 32, 10
epochs (30 for WSC), 512 tokens, seed 42; AdamW with a linear decay to 0 (our choice). Metric on the
validation file after the last epoch: F1 of class 1 for MRPC and QQP, accuracy otherwise (percent).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoModel
from transformers.utils import logging as hf_logging

from ..device import resolve_device
from ..modelfolder import load_model
from ..models.registry import register_auto_classes
from .catalog import GLUE_TASKS
from .load import load_tokenizer
from .records import EvalDataError, field, files_sha256, jsonl_records

F1_TASKS = ("mrpc", "qqp")
POOLING = {"2026": ("left", -1), "2025": ("right", 0)}  # rules: (padding side, position the head reads)


def load_split(data_dir, task: str, split: str) -> tuple[list[tuple[str, str]], list[int]]:
    """Text pairs and labels of `<task>.<split>.jsonl`."""
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
        texts.append(to_pair(record))
        labels.append(label)
    return texts, labels


class SequenceClassifier(nn.Module):
    """The bare decoder + the official classification head on one position's last hidden state."""

    def __init__(self, decoder, n_labels: int, position: int, dropout: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.decoder, self.position = decoder, position
        hidden = decoder.config.hidden_size
        self.head = nn.Sequential(nn.LayerNorm(hidden, eps, elementwise_affine=False), nn.Linear(hidden, hidden),
                                  nn.GELU(), nn.LayerNorm(hidden, eps, elementwise_affine=False), nn.Dropout(dropout),
                                  nn.Linear(hidden, n_labels))

    def pooled(self, input_ids, attention_mask):
        """The hidden state the head reads: `last_hidden_state[:, position]`."""
        out = self.decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        return out.last_hidden_state[:, self.position]

    def forward(self, input_ids, attention_mask):
        return self.head(self.pooled(input_ids, attention_mask).float())


def _batches(tokenizer, texts, labels, batch_size, max_length, order, device):
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        enc = tokenizer([texts[i][0] for i in index], [texts[i][1] for i in index], padding=True, truncation=True,
                        max_length=max_length, return_tensors="pt")
        yield enc["input_ids"].to(device), enc["attention_mask"].to(device), torch.tensor([labels[i] for i in index])


def metric(task: str, predictions: list[int], labels: list[int]) -> float:
    if task in F1_TASKS:
        tp = sum(p == 1 and y == 1 for p, y in zip(predictions, labels))
        fp = sum(p == 1 and y == 0 for p, y in zip(predictions, labels))
        fn = sum(p == 0 and y == 1 for p, y in zip(predictions, labels))
        return 100.0 * 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return 100.0 * sum(p == y for p, y in zip(predictions, labels)) / len(labels)


def classifier(model_dir, n_labels: int, rules: str = "2026", trust_remote_code: bool = False):
    """(classifier, tokenizer padded on the side the rules pool from) for a model folder, checked as it is
    loaded (modelfolder.py; its own code runs only with `trust_remote_code`)."""
    if rules not in POOLING:
        raise ValueError(f"unknown rules {rules!r}; known: {', '.join(POOLING)}")
    side, position = POOLING[rules]
    register_auto_classes()  # before the tokenizer: it reads config.json's model_type
    tokenizer = load_tokenizer(model_dir, trust_remote_code)
    tokenizer.padding_side = side
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the checkpoint's LM head is not the decoder's: expected, not news
    try:
        decoder = load_model(model_dir, AutoModel, trust_remote_code=trust_remote_code)
    finally:
        hf_logging.set_verbosity(verbosity)
    return SequenceClassifier(decoder, n_labels, position), tokenizer


def finetune(model_dir, task: str, data_dir, lr=3e-5, batch_size=32, epochs=None, max_length=512, seed=42,
             device="cpu", progress=True, rules: str = "2026", trust_remote_code: bool = False) -> dict:
    """Fine-tune a fresh copy of the model on one task -> {"task", "scores", "metric", "predictions", ...}."""
    start = time.perf_counter()
    epochs = epochs or (30 if task == "wsc" else 10)
    train_texts, train_labels = load_split(data_dir, task, "train")
    valid_texts, valid_labels = load_split(data_dir, task, "valid")
    torch.manual_seed(seed)
    model, tokenizer = classifier(model_dir, GLUE_TASKS[task][2], rules, trust_remote_code)
    model = model.to(device)
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
            "lr": lr, "batch_size": batch_size, "seed": seed, "rules": rules, "padding_side": tokenizer.padding_side,
            "pooled_position": model.position, "seconds": time.perf_counter() - start}


def finetune_inputs(model_dir, task: str, data_dir, **options) -> dict:
    """What a fine-tuning result depends on: the task's two files (path and SHA-256), the model folder and
    its SHA-256 (`suite.model_identity`), the options that change it and the babblelm version."""
    from .. import __version__
    from .suite import model_identity

    files = [Path(data_dir) / f"{task}.{split}.jsonl" for split in ("train", "valid")]
    for path in files:
        if not path.is_file():
            raise EvalDataError(f"{path}: file not found (expected {task}.train.jsonl and {task}.valid.jsonl)")
    return {"data": str(Path(data_dir).resolve()), "data_sha256": files_sha256(files), **model_identity(model_dir),
            **options, "babblelm": __version__}


def finetune_tasks(model_dir, tasks, data_dir, out_dir: Path, device="auto", force: bool = False, log=print,
                   progress: bool = True, trust_remote_code: bool = False, **options) -> dict[str, dict]:
    """Fine-tune each task, writing `out_dir/<task>.json` with the `inputs` it was computed from; a result
    there from the same inputs (`finetune_inputs`; the device aside) is reused unless `force`."""
    from .suite import what_changed

    device = resolve_device(device)
    options = {"rules": "2026", "lr": 3e-5, "batch_size": 32, "max_length": 512, "seed": 42, **options}
    results = {}
    for task in tasks:
        path = out_dir / f"{task}.json"
        task_options = {**options, "epochs": options.get("epochs") or (30 if task == "wsc" else 10)}
        inputs = finetune_inputs(model_dir, task, data_dir, **task_options)
        stored = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        change = "--force" if force else what_changed(stored, inputs)
        if stored is not None and change is None:
            log(f"reusing {path} (same data, model and options)")
            results[task] = stored
            continue
        if stored is not None:
            log(f"fine-tuning {task} again: {change}")
        results[task] = {**finetune(model_dir, task, data_dir, device=device, progress=progress,
                                    trust_remote_code=trust_remote_code, **task_options), "inputs": inputs}
        out_dir.mkdir(parents=True, exist_ok=True)  # only once there is a result: a failed start leaves nothing
        path.write_text(json.dumps(results[task], indent=2), encoding="utf-8")
    return results


def format_results(results: dict[str, dict]) -> str:
    lines = ["| task | metric | score |", "|---|---|---|"]
    lines += [f"| {t} | {r['metric']} | {r['scores'][t]:.2f} |" for t, r in results.items()]
    return "\n".join(lines)
