"""Age of acquisition (AoA) from word-surprisal learning curves over the `chck_*` checkpoints.

As the official pipeline (Chang & Bergen 2022 method): each CDI word is scored at every checkpoint
after the BOS token alone (`bos_token + word`, the contexts are not used), surprisal = -sum of the
word's token log-probs (nats). Per word, a sigmoid a / (1 + exp(-b (x - c))) + d is fitted to
-surprisal against x = log10(words seen + 1); the model AoA is the x where the curve crosses the
surprisal halfway between chance (log2 300,000, the official constant) and the word's minimum.
Child AoA: the same sigmoid (bounded) fitted to the CDI proportion of children producing the
word at 16-30 months, crossing 0.5. Score ("curve fitness") = Pearson r of model vs child AoA
over words where both fits succeed (0.0 when fewer than 3 words).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np

from .metrics import pearson
from .records import EvalDataError, csv_rows, data_files, number
from ..rundir import milestone_count
from .scoring import score_continuations

APPROXIMATE_VOCAB = 300_000
AGES = range(16, 31)


def load_words(path) -> list[str]:
    """The target words of `cdi_childes.json` ({word: [{"context": ...}, ...]}), one-letter words dropped."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise EvalDataError(f"{path}: cannot read AoA words ({err})") from None
    if not isinstance(data, dict) or not data:
        raise EvalDataError(f"{path}: expected a JSON object mapping each word to its contexts")
    return [word for word in data if len(word) > 1]


def word_surprisals(model, tokenizer, words: list[str], batch_size: int = 64) -> dict[str, float]:
    """Surprisal of each word after the BOS token (as text), the official `use_bos_only` mode."""
    if tokenizer.bos_token is None:
        raise ValueError("AoA scoring needs a tokenizer with a BOS token")
    items = [(tokenizer.bos_token, word.strip()) for word in words]
    return {word: -score for word, score in zip(words, score_continuations(model, tokenizer, items, batch_size))}


def _sigmoid(x, a, b, c, d):
    return a / (1 + np.exp(-b * (x - c))) + d


def _crossing(a, b, c, d, y) -> float | None:
    if b <= 0 or a <= 0 or y <= d or y >= a + d:
        return None
    return c - math.log(a / (y - d) - 1) / b


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
    """log10 words seen at the word's halfway surprisal, or None when the fit fails or falls outside."""
    steps, values = np.asarray(words_seen, dtype=float), np.asarray(surprisal, dtype=float)
    keep = ~np.isnan(values)
    steps, values = steps[keep], values[keep]
    if len(values) < 3:
        return None
    chance = math.log2(APPROXIMATE_VOCAB)
    threshold = chance - 0.5 * (chance - values.min())
    x, y = np.log10(steps + 1), -values
    params = _fit(x, y, [y.max() - y.min(), 1.0, x.mean(), y.min()])
    if params is None:
        return None
    crossing = _crossing(*params, -threshold)
    if crossing is None or not steps[0] <= 10**crossing - 1 <= steps[-1]:
        return None
    return crossing


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
    return crossing if crossing is not None and ages[0] <= crossing <= ages[-1] else None


def load_cdi(folder) -> dict[str, list[float]]:
    """{word: proportion producing it at 16..30 months} from the CDI CSV in the AoA folder."""
    path = data_files(folder, "*.csv", "CDI (word + age columns 16..30)")[0]
    rows = csv_rows(path, ["word", *map(str, AGES)])
    return {row["word"]: [number(row, str(age), where) for age in AGES] for where, row in rows}


def curve_fitness(curves: dict[str, dict[str, float]], cdi: dict[str, list[float]]) -> dict:
    """`curves`: {checkpoint: {word: surprisal}} -> Pearson r of model vs child AoA, and the per-word AoAs."""
    names = sorted(curves, key=milestone_count)
    steps = [milestone_count(name) for name in names]
    model_aoas, child_aoas, words = [], [], []
    for word in sorted(set.intersection(*(set(c) for c in curves.values())) & set(cdi)):
        child = child_aoa(cdi[word])
        model = model_aoa([curves[name][word] for name in names], steps) if child is not None else None
        if model is not None:
            words.append(word), model_aoas.append(model), child_aoas.append(child)
    fitness = pearson(model_aoas, child_aoas) if len(words) >= 3 else 0.0
    return {"task": "aoa", "scores": {"aoa": fitness}, "n_words": len(words),
            "model_aoa": dict(zip(words, model_aoas)), "child_aoa": dict(zip(words, child_aoas))}
