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

from .records import EvalDataError, csv_rows, number
from .scoring import Encoded, pad_id_of, score_encoded

EYE_TRACKING = ("RTfirstfix", "RTfirstpass", "RTgopast", "RTrightbound")
SELF_PACED = "self_paced_reading_time"
BASELINE = ("Subtlex_log10", "length", "context_length")
SPILLOVER = (*BASELINE, "prev_length", "prev_pred")
READING_FOLDER, READING_FILE = "reading", "reading_data.csv"
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


def reading_file(path) -> Path:
    """The reading CSV: `path` itself, else `path/reading/reading_data.csv`, else `path/reading_data.csv`."""
    path = Path(path)
    if path.is_dir():
        folder = path / READING_FOLDER if (path / READING_FOLDER).is_dir() else path
        path = folder / READING_FILE
    if not path.is_file():
        raise EvalDataError(f"{path}: file not found (expected the reading CSV with columns {', '.join(COLUMNS)})")
    return path


def read_rows(path: Path) -> list[tuple[str, dict]]:
    """The CSV's rows, each with a non-blank `word` (and `prev_word` when `prev_item` is given)."""
    rows = csv_rows(path, COLUMNS)
    for where, row in rows:
        for column in ("word", "prev_word") if row["prev_item"] else ("word",):
            if not row[column].strip():
                raise EvalDataError(f"{where}: column '{column}' must not be empty")
    return rows


def checked_gain(path: Path, table: dict[str, np.ndarray], measure: str, predictors: tuple[str, ...]) -> float:
    """`gain`, or an error naming the file and measure when its regression is undefined (too few
    complete rows for the terms, a constant measure, a perfect baseline fit)."""
    terms = len(predictors) * (len(predictors) + 1) // 2 + 2  # main effects, products, surprisal, intercept
    columns = np.column_stack([table[measure], table["pred"], *(table[n] for n in predictors)])
    complete = columns[~np.isnan(columns).any(axis=1)]
    if len(complete) <= terms:
        raise EvalDataError(f"{path}: column '{measure}': {len(complete)} complete row(s); the regression of "
                            f"{terms} terms needs more")
    if np.ptp(complete[:, 0]) == 0:
        raise EvalDataError(f"{path}: column '{measure}' has one value in every complete row; nothing to predict")
    with np.errstate(all="ignore"):
        value = gain(table, measure, predictors)
    if not np.isfinite(value):
        raise EvalDataError(f"{path}: column '{measure}': the baseline regression fits perfectly; no gain to measure")
    return value


def evaluate_reading(model, tokenizer, data_dir, batch_size: int = 64, progress: bool = False) -> dict:
    """Score the reading CSV (`reading_file(data_dir)`); "items" holds each row's [surprisal, previous word's
    surprisal (NaN without one)] in nats, the official predictions."""
    start = time.perf_counter()
    path = reading_file(data_dir)
    rows = read_rows(path)
    items = [(row["item"] or "None", row["word"]) for _, row in rows]  # pandas reads an empty item as "None"
    has_prev = [bool(row["prev_item"]) for _, row in rows]
    prev = [(row["prev_item"], row["prev_word"]) for (_, row), ok in zip(rows, has_prev) if ok]
    table = {name: np.array([number(row, name, where) for where, row in rows])
             for name in (*BASELINE, "prev_length", *EYE_TRACKING, SELF_PACED)}
    scored = iter(surprisals(model, tokenizer, items + prev, batch_size=batch_size, progress=progress))
    table["pred"] = np.array([next(scored) for _ in items])
    table["prev_pred"] = np.array([next(scored) if ok else np.nan for ok in has_prev])
    eye = {m: checked_gain(path, table, m, BASELINE) for m in EYE_TRACKING}
    spr = checked_gain(path, table, SELF_PACED, SPILLOVER)
    return {
        "task": "reading",
        "scores": {"reading_et": float(np.mean(list(eye.values()))), "reading_spr": spr},
        "by_uid": {**eye, SELF_PACED: spr},
        "n_items": len(rows), "data": str(path), "seconds": time.perf_counter() - start,
        "items": [[pred, prev] for pred, prev in zip(table["pred"].tolist(), table["prev_pred"].tolist())],
    }
