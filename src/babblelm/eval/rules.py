"""The scoring rules of one year's official BabyLM pipeline: how a tie counts, which task variants and
subsets run. `babble eval --rules 2026|2025` (2026 by default; `eval.rules` in a run config) picks one.

Only data: the tasks module applies these rules (docs/evaluation.md: every rule and its source commit).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

DEFAULT_RULES = "2026"
PICK_SEED = 0  # the draw among tied options that `picks` makes (the official draw has no seed of its own)


@dataclass(frozen=True)
class FastSubset:
    """Which items of the full data the official fast evaluation scores (when there is no fast_eval folder):
    the first `per_uid` of every UID, the first `total` of the task, only the items of `groups`, or all."""

    per_uid: int | None = None
    total: int | None = None
    groups: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Rules:
    year: str
    ties: str  # "gold": a tie counts as right; "draw": the official random draw among the tied maxima, in expectation
    ewok: str  # "targets": Target1 vs Target2 after Context1; "contexts": two context comparisons per item
    drop_nothing: bool  # entity tracking: drop items with an option containing "nothing"
    official_tasks: tuple[str, ...]  # what `--tasks official` (and `babble run`'s default) scores
    fast: dict[str, FastSubset] = field(default_factory=dict)  # the tasks of the fast evaluation


RULES = {
    "2026": Rules(
        "2026", ties="draw", ewok="contexts", drop_nothing=True,
        official_tasks=("blimp", "supplement", "ewok", "entity_tracking", "comps", "global_piqa", "reading"),
        fast={"blimp": FastSubset(per_uid=200), "supplement": FastSubset(per_uid=50),
              "ewok": FastSubset(per_uid=200),  # 100 rows x 2 comparisons
              "entity_tracking": FastSubset(groups=("regular",)), "global_piqa": FastSubset(), "reading": FastSubset()}),
    "2025": Rules(
        "2025", ties="gold", ewok="targets", drop_nothing=False,
        official_tasks=("blimp", "supplement", "ewok", "entity_tracking", "comps", "wug_adj", "wug_past", "reading"),
        fast={"blimp": FastSubset(per_uid=200), "supplement": FastSubset(per_uid=50), "ewok": FastSubset(per_uid=100),
              "wug_adj": FastSubset(total=200), "wug_past": FastSubset(total=50)}),
}


def rules_of(year) -> Rules:
    """The Rules of `year` ("2026", "2025"; None: the default); an error naming the known years."""
    year = DEFAULT_RULES if year is None else str(year)
    if year not in RULES:
        raise ValueError(f"unknown rules {year!r}; known: {', '.join(RULES)}")
    return RULES[year]


def credit(scores: list[float], ties: str) -> float:
    """How much an item whose gold option is `scores[0]` counts: 1 when gold alone scores highest, 0 when
    another option scores higher. A tie for the highest score, shared by k options, counts by `ties`:
    "draw" 1/k, the chance that the 2026 pipeline's uniform draw among them picks gold; "right" 1 and
    "wrong" 0 (the two bounds); "gold" 1, as the 2025 argmax took the first option (on the raw scores;
    the others read NaN as -inf, as the 2026 pipeline does)."""
    if ties == "gold":
        return float(scores[0] >= max(scores[1:]))
    clean = [-math.inf if math.isnan(s) else s for s in scores]
    best = max(clean)
    if clean[0] < best:
        return 0.0
    tied = sum(s == best for s in clean)
    return {"draw": 1.0 / tied, "right": 1.0, "wrong": float(tied == 1)}[ties]


def gold_tied(scores: list[float]) -> bool:
    """Does gold share the highest score with another option (NaN as -inf)? The items on which the two
    bounds, ties counted right and ties counted wrong, differ."""
    clean = [-math.inf if math.isnan(s) else s for s in scores]
    return clean[0] == max(clean[1:])


def picks(scores: list[list[float]], ties: str, seed: int = PICK_SEED) -> list[int]:
    """The option each item's prediction names, as the official pipeline picks it: the highest score (NaN
    read as -inf); a tie for it goes to the first option under "gold" (the 2025 argmax) and to a uniform
    draw among the tied options under "draw" (2026), from a generator seeded with `seed`, so the same
    scores give the same predictions on every run."""
    rng, chosen = random.Random(seed), []
    for item in scores:
        clean = [-math.inf if math.isnan(s) else s for s in item]
        tied = [k for k, s in enumerate(clean) if s == max(clean)]
        chosen.append(tied[0] if ties == "gold" or len(tied) == 1 else tied[rng.randrange(len(tied))])
    return chosen
