"""Age of acquisition (AoA) from word-surprisal learning curves over the `chck_*` checkpoints.

As the official pipeline (Chang & Bergen 2022 method; the same code in its 2025 and 2026 versions): each
CDI word (one-letter words dropped) is scored at every checkpoint after each of its contexts
(`context.strip() + " " + word`), surprisal = -sum of the word's token log-probs (nats). Per word, a
sigmoid a / (1 + exp(-b (x - c))) + d is fitted to -surprisal against x = log10(words seen + 1) over all
its (checkpoint, context) points, words seen read from the checkpoint's name; the model AoA is the x where
the curve crosses the surprisal halfway between chance (log2 300,000, the official constant) and the
word's minimum. Child AoA: the same sigmoid (bounded) fitted to the CDI proportion of children producing
the word at 16-30 months, crossing 0.5. Score ("curve fitness") = Pearson r of model vs child AoA over
words where both fits succeed (0.0 when fewer than 3 words); a word without contexts has no points.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from .metrics import pearson
from .records import EvalDataError, csv_rows, data_files, number, utf8_text, valid_unicode
from ..rundir import milestone_count
from .scoring import score_continuations

APPROXIMATE_VOCAB = 300_000
AGES = range(16, 31)


def load_words(path) -> list[str]:
    """The target words of `cdi_childes.json` ({word: [{"context": ...}, ...]}), one-letter words dropped.

    Every defect is a one-line EvalDataError naming the file (and the line, or the word): a missing or
    unreadable file, one that is not UTF-8, malformed JSON, not an object, a word that is blank or holds
    an unpaired surrogate, contexts that are not a list, no word of two or more letters."""
    path = Path(path)
    text = utf8_text(path)
    if not text.strip():
        raise EvalDataError(f"{path}: empty file; expected a JSON object mapping each word to its contexts")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise EvalDataError(f"{path}:{err.lineno}: malformed JSON ({err.msg} at column {err.colno})") from None
    except RecursionError:
        raise EvalDataError(f"{path}: malformed JSON (nested too deeply)") from None
    except ValueError as err:  # e.g. an integer of more digits than Python converts
        raise EvalDataError(f"{path}: cannot read JSON ({err})") from None
    if not isinstance(data, dict) or not data:
        raise EvalDataError(f"{path}: expected a JSON object mapping each word to its contexts")
    for word, contexts in data.items():
        if not valid_unicode(word):
            raise EvalDataError(f"{path}: word {ascii(word)} holds an unpaired surrogate (\\ud800-\\udfff), not text")
        if len(word) > 1 and not word.strip():
            raise EvalDataError(f"{path}: word {word!r} is blank")
        if not isinstance(contexts, list):
            raise EvalDataError(f"{path}: word {word!r}: expected a list of contexts, got {type(contexts).__name__}")
    words = [word for word in data if len(word) > 1]  # as the official loader
    if not words:
        raise EvalDataError(f"{path}: no word of two or more characters (one-character words are dropped)")
    return words


def load_contexts(path) -> dict[str, list[str]]:
    """{word: its contexts} from `cdi_childes.json` for the words `load_words` keeps; each context is an
    object whose "context" field is a text (the official reader's `context_data["context"]`)."""
    path = Path(path)
    words, data = load_words(path), json.loads(utf8_text(path))
    contexts = {}
    for word in words:
        texts = []
        for k, item in enumerate(data[word]):
            if not isinstance(item, dict) or not isinstance(item.get("context"), str):
                raise EvalDataError(f"{path}: word {word!r} context {k}: expected an object with a 'context' text")
            texts.append(item["context"])
        contexts[word] = texts
    return contexts


def context_surprisals(model, tokenizer, contexts: dict[str, list[str]], batch_size: int = 64) -> dict[str, list[float]]:
    """Surprisal of each word after each of its contexts, as the official AoA run computes them by default
    (`context.strip() + " " + word`, the word's tokens' log-probs summed, negated; nats)."""
    items = [(context.strip() + " ", word.strip()) for word, texts in contexts.items() for context in texts]
    scores = iter(score_continuations(model, tokenizer, items, batch_size))
    return {word: [-next(scores) for _ in texts] for word, texts in contexts.items()}


def _sigmoid(x, a, b, c, d):
    return a / (1 + np.exp(-b * (x - c))) + d


def _crossing(a, b, c, d, y) -> float | None:
    if b <= 0 or a <= 0 or y <= d or y >= a + d:
        return None
    return c - np.log(a / (y - d) - 1) / b


def _fit(x, y, p0, bounds=None):
    from scipy.optimize import curve_fit  # optional dependency: pip install "babblelm[eval]"

    kwargs = {} if bounds is None else {"bounds": bounds}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return curve_fit(_sigmoid, x, y, p0=p0, maxfev=1000, **kwargs)[0]
        except (RuntimeError, ValueError):
            return None


def model_aoa(surprisal: list[float], words_seen: list[float]) -> float | None:
    """log10 words seen at the word's halfway surprisal, or None when the fit fails or falls outside the
    first and last point. One point per (checkpoint, context), in checkpoint order; NaN points are left out."""
    steps, values = np.asarray(words_seen, dtype=float), np.asarray(surprisal, dtype=float)
    keep = ~np.isnan(values)
    steps, values = steps[keep], values[keep]
    if len(values) < 4:  # fewer points than the sigmoid's four parameters: the official fit fails there too
        return None
    chance = np.log2(APPROXIMATE_VOCAB)
    threshold = chance - 0.5 * (chance - values.min())
    x, y = np.log10(steps + 1), -values
    params = _fit(x, y, [y.max() - y.min(), 1.0, x.mean(), y.min()])
    if params is None:
        return None
    crossing = _crossing(*params, -threshold)
    if crossing is None or not steps[0] <= 10**crossing - 1 <= steps[-1]:
        return None
    return float(crossing)


def child_aoa(proportions: list[float]) -> float | None:
    ages, values = np.array(list(AGES), dtype=float), np.asarray(proportions, dtype=float)
    keep = ~np.isnan(values)
    ages, values = ages[keep], values[keep]
    if len(values) < 3:
        return None
    params = _fit(ages, values, [1.0, 0.1, ages.mean(), 0.0], ([0, 0, ages[0], -0.5], [2.0, 1.0, ages[-1], 0.5]))
    if params is None:
        return None
    crossing = _crossing(*params, 0.5)
    return float(crossing) if crossing is not None and ages[0] <= crossing <= ages[-1] else None


def load_cdi(folder) -> dict[str, list[float]]:
    """{word: proportion producing it at 16..30 months} from the one CDI CSV (`*.csv`) in the AoA folder.

    The official pipeline reads one file (`aoa/cdi_human.csv`), so a second CSV is an error naming
    both, never silently ignored; so is a word given twice (file, line and the first line), a blank
    word, and a proportion outside 0..1 (besides the errors of every CSV, `csv_rows` and `number`).
    A missing cell (empty, NA, ...) is a missing value: that age is left out of the word's fit."""
    files = data_files(folder, "*.csv", "CDI (word + age columns 16..30)")
    if len(files) > 1:
        raise EvalDataError(f"{Path(folder)}: {len(files)} CDI CSV files ({', '.join(f.name for f in files)}); "
                            f"the AoA folder holds one (the official aoa/cdi_human.csv): keep one")
    cdi, first_line = {}, {}
    for where, row in csv_rows(files[0], ["word", *map(str, AGES)]):
        word = row["word"]
        if not word.strip():
            raise EvalDataError(f"{where}: column 'word' must not be empty")
        if word in first_line:
            raise EvalDataError(f"{where}: word {word!r} appears again (first on line {first_line[word]}); "
                                f"each CDI word must appear once")
        first_line[word] = where.rsplit(":", 1)[1]
        proportions = [number(row, str(age), where) for age in AGES]
        for age, value in zip(AGES, proportions):
            if value < 0 or value > 1:  # NaN (a missing cell) compares False both ways and passes
                raise EvalDataError(f"{where}: column '{age}' must be a proportion of children between 0 and 1, "
                                    f"got {row[str(age)].strip()!r}")
        cdi[word] = proportions
    return cdi


def curve_fitness(curves: dict[str, dict[str, list[float]]], cdi: dict[str, list[float]]) -> dict:
    """`curves`: {checkpoint: {word: [surprisal after each of its contexts]}} (`context_surprisals`) -> Pearson r
    of model vs child AoA, and the per-word AoAs. A word's fit takes every (checkpoint, context) point, the
    checkpoints in milestone order, words seen from their names (chck_10M -> 1e7), as the official evaluator."""
    names = sorted(curves, key=milestone_count)
    model_aoas, child_aoas, words = [], [], []
    for word in curves[names[0]]:
        if word not in cdi or any(word not in curves[name] for name in names):
            continue
        child = child_aoa(cdi[word])
        points = [(milestone_count(name), value) for name in names for value in curves[name][word]]
        model = model_aoa([value for _, value in points], [seen for seen, _ in points]) if child is not None else None
        if model is not None:
            words.append(word), model_aoas.append(model), child_aoas.append(child)
    fitness = pearson(model_aoas, child_aoas) if len(words) >= 3 else 0.0
    return {"task": "aoa", "scores": {"aoa": fitness}, "n_words": len(words),
            "model_aoa": dict(zip(words, model_aoas)), "child_aoa": dict(zip(words, child_aoas))}
