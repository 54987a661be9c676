"""Eye-tracking and self-paced reading: does the model's surprisal predict human reading times?

As the official pipeline: the surprisal of `word` after `item` is -log p, where the word is
tokenized on its own WITHOUT a leading space and appended to the tokenized `item` (BOS first);
a word of several tokens multiplies the probabilities of its tokens, each predicted after
`item` + the text of the tokens before it (re-tokenized, as the official loop does). The
previous word's surprisal comes from `prev_item`/`prev_word` (NaN when `prev_item` is empty).

Scores: ordinary least squares (numpy) of each reading measure on a baseline (frequency, length,
context length and their pairwise products, plus an intercept) with and without surprisal;
score = (R2_model - R2_base) / (1 - R2_base) x 100 over the rows without missing values. Eye
tracking = the mean over RTfirstfix, RTfirstpass, RTgopast and RTrightbound; self-paced reading
adds the previous word's length and surprisal to both models (one-word spillover).
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np

from .records import csv_rows, number
from .scoring import Encoded, pad_id_of, score_encoded

EYE_TRACKING = ("RTfirstfix", "RTfirstpass", "RTgopast", "RTrightbound")
SELF_PACED = "self_paced_reading_time"
BASELINE = ("Subtlex_log10", "length", "context_length")
SPILLOVER = (*BASELINE, "prev_length", "prev_pred")
COLUMNS = ["item", "word", "prev_item", "prev_word", *BASELINE, "prev_length", *EYE_TRACKING, SELF_PACED]


def word_steps(tokenizer, context: str, word: str) -> list[list[int]]:
    """One token sequence per sub-token of `word`: the context ids then the sub-token to predict."""
    target = tokenizer(word, add_special_tokens=False)["input_ids"]
    if not target:
        raise ValueError(f"word {word!r} tokenizes to nothing")
    steps = [tokenizer(context)["input_ids"] + target[:1]]
    context += tokenizer.decode(target[:1])
    for token in target[1:]:
        text = tokenizer.decode([token])
        steps.append(tokenizer(context)["input_ids"] + tokenizer(text, add_special_tokens=False)["input_ids"][:1])
        context += text
    return steps


def surprisals(model, tokenizer, pairs: list[tuple[str, str]], batch_size=64, progress=False) -> list[float]:
    """-log p(word | context) for every (context, word) pair, in nats."""
    unique = list(dict.fromkeys(pairs))
    steps = [word_steps(tokenizer, context, word) for context, word in unique]
    flat = [ids for word in steps for ids in word]
    # score only the last token of each sequence: its end (1) is the only one past the start (0)
    encoded = [Encoded(ids, [0] * (len(ids) - 1) + [1], 0) for ids in flat]
    logprobs = iter(score_encoded(model, encoded, pad_id_of(tokenizer), batch_size=batch_size, progress=progress))
    surprisal = {pair: -sum(next(logprobs) for _ in word) for pair, word in zip(unique, steps)}
    return [surprisal[pair] for pair in pairs]


def r_squared(y: np.ndarray, columns: list[np.ndarray]) -> float:
    """R2 of an OLS fit of y on the columns plus an intercept (numpy least squares)."""
    design = np.column_stack([np.ones(len(y)), *columns])
    coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ coefficients
    return float(1.0 - residual @ residual / ((y - y.mean()) @ (y - y.mean())))


def gain(table: dict[str, np.ndarray], measure: str, predictors: tuple[str, ...]) -> float:
    """(R2_model - R2_base) / (1 - R2_base) x 100; main effects + pairwise products, surprisal added."""

    def terms(names):
        return [table[n] for n in names] + [table[a] * table[b] for a, b in itertools.combinations(names, 2)]

    base_rows = ~np.isnan(np.column_stack([table[measure], *(table[n] for n in predictors)])).any(axis=1)
    model_rows = base_rows & ~np.isnan(table["pred"])
    r2_base = r_squared(table[measure][base_rows], [t[base_rows] for t in terms(predictors)])
    r2_model = r_squared(table[measure][model_rows], [t[model_rows] for t in terms(predictors)] + [table["pred"][model_rows]])
    return (r2_model - r2_base) / (1.0 - r2_base) * 100.0


def evaluate_reading(model, tokenizer, data_dir, batch_size: int = 64, progress: bool = False) -> dict:
    """Score `reading/reading_data.csv` (or `data_dir` itself when it is the CSV file)."""
    start = time.perf_counter()
    path = Path(data_dir)
    if path.is_dir():
        path = path / "reading" / "reading_data.csv" if (path / "reading").is_dir() else path / "reading_data.csv"
    rows = csv_rows(path, COLUMNS)
    items = [(row["item"] or "None", row["word"]) for _, row in rows]  # pandas reads an empty item as "None"
    has_prev = [bool(row["prev_item"]) for _, row in rows]
    prev = [(row["prev_item"], row["prev_word"]) for (_, row), ok in zip(rows, has_prev) if ok]
    scored = iter(surprisals(model, tokenizer, items + prev, batch_size=batch_size, progress=progress))
    table = {name: np.array([number(row, name, where) for where, row in rows])
             for name in (*BASELINE, "prev_length", *EYE_TRACKING, SELF_PACED)}
    table["pred"] = np.array([next(scored) for _ in items])
    table["prev_pred"] = np.array([next(scored) if ok else np.nan for ok in has_prev])
    eye = {m: gain(table, m, BASELINE) for m in EYE_TRACKING}
    spr = gain(table, SELF_PACED, SPILLOVER)
    return {
        "task": "reading",
        "scores": {"reading_et": float(np.mean(list(eye.values()))), "reading_spr": spr},
        "by_uid": {**eye, SELF_PACED: spr},
        "n_items": len(rows), "data": str(path), "seconds": time.perf_counter() - start,
    }
