"""The typological prior pi0: languages far from the others in URIEL get more of the batch at first.

    prior = typological_prior(["eng", "nld", "zho"])        # T 0.5, floor 0.10, the three kNN sets
    prior.pi0, prior.isolation, prior.distance, prior.n_features

Features: URIEL vectors as lang2vec serves them (`syntax_knn`, `phonology_knn`, `inventory_knn`
by default; every lang2vec feature set stored in its .npz files can be named), read straight from
the data files the `lang2vec` distribution installs, found through its package metadata. Nothing
is imported: lang2vec itself imports `pkg_resources` (gone from setuptools >= 82), and its wheel
puts a script `lang2vec.py` into the environment's `bin/`, which shadows the package inside any
console script. Each set's columns are its features (a name prefix) from one source; a feature
unknown (-1) in any of the languages is dropped, then the sets are concatenated. `zho` is looked
up as `cmn` (Mandarin), two-letter codes through lang2vec's letter-code table.

distance = pairwise cosine distance; isolation_l = mean distance from l to the other languages;
pi0 = apply_floor(softmax(isolation / T), floor)   (reverse: softmax(-isolation / T)).
"""

from __future__ import annotations

import importlib.metadata
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .exp3 import apply_floor, softmax

DEFAULT_FEATURES = ("syntax_knn", "phonology_knn", "inventory_knn")
DEFAULT_TEMPERATURE = 0.5
DEFAULT_FLOOR = 0.10
URIEL_CODES = {"zho": "cmn", "zho_hans": "cmn", "zho_hant": "cmn"}

# lang2vec's feature sets stored in its .npz files: (file, source, feature-name prefix).
FEATURE_SETS = {
    **{f"{kind}_knn": ("feature_predictions.npz", "predicted", prefix) for kind, prefix in
       (("syntax", "S_"), ("phonology", "P_"), ("inventory", "INV_"))},
    **{f"{kind}_average": ("feature_averages.npz", "avg", prefix) for kind, prefix in
       (("syntax", "S_"), ("phonology", "P_"), ("inventory", "INV_"))},
    "syntax_wals": ("features.npz", "WALS", "S_"), "phonology_wals": ("features.npz", "WALS", "P_"),
    "syntax_sswl": ("features.npz", "SSWL", "S_"), "syntax_ethnologue": ("features.npz", "ETHNO", "S_"),
    "phonology_ethnologue": ("features.npz", "ETHNO", "P_"), "inventory_ethnologue": ("features.npz", "ETHNO", "INV_"),
    **{f"inventory_phoible_{name.lower()}": ("features.npz", f"PHOIBLE_{name}", "INV_") for name in
       ("AA", "GM", "SAPHON", "SPA", "PH", "RA", "UPSID")},
    "fam": ("family_features.npz", "FAM", ""), "geo": ("geocoord_features.npz", "GEOCOORDS", ""),
}


@dataclass
class Prior:
    languages: list[str]
    pi0: np.ndarray
    isolation: np.ndarray
    distance: np.ndarray  # [K, K] cosine distances
    n_features: int
    features: tuple[str, ...]


def lang2vec_file(name: str) -> Path:
    """A data file of the installed lang2vec distribution (never imported)."""
    missing = ImportError("the typological prior needs URIEL's data from lang2vec: pip install 'babblelm[multilingual]'")
    try:
        dist = importlib.metadata.distribution("lang2vec")
    except importlib.metadata.PackageNotFoundError:
        raise missing from None
    path = Path(dist.locate_file(f"lang2vec/data/{name}"))
    if not path.is_file():
        raise missing
    return path


def uriel_code(lang: str, known: list[str]) -> str:
    code = URIEL_CODES.get(lang, lang)
    if code not in known:
        letters = json.loads(lang2vec_file("letter_codes.json").read_text(encoding="utf-8"))
        code = letters.get(code, code)
    if code not in known:
        raise ValueError(f"language {lang!r} (URIEL code {code!r}) is not in URIEL; set mixing.pi or mixing.prior: uniform")
    return code


def uriel_features(languages: list[str], feature_sets=DEFAULT_FEATURES) -> np.ndarray:
    """[K, F]: the named sets' features known in every language, concatenated in order."""
    blocks = []
    for name in feature_sets:
        if name not in FEATURE_SETS:
            raise ValueError(f"unknown URIEL feature set {name!r}; known: {', '.join(FEATURE_SETS)}")
        filename, source, prefix = FEATURE_SETS[name]
        with np.load(lang2vec_file(filename)) as db:
            known = list(db["langs"])
            rows = [known.index(uriel_code(lang, known)) for lang in languages]
            columns = np.flatnonzero(np.char.startswith(db["feats"], prefix))
            values = db["data"][rows][:, columns, list(db["sources"]).index(source)]
        blocks.append(values[:, np.all(values != -1, axis=0)])
    features = np.concatenate(blocks, axis=1).astype(np.float64)
    if features.shape[1] == 0:
        raise ValueError(f"no URIEL feature of {' + '.join(feature_sets)} is known in all of {', '.join(languages)}")
    return features


def cosine_distances(features: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    unit = features / np.where(norms == 0.0, 1e-12, norms)
    return 1.0 - np.clip(unit @ unit.T, -1.0, 1.0)


def typological_prior(languages: list[str], temperature: float = DEFAULT_TEMPERATURE, floor: float = DEFAULT_FLOOR,
                      features=DEFAULT_FEATURES, reverse: bool = False) -> Prior:
    """pi0 = apply_floor(softmax(+-isolation / T), floor) over URIEL features."""
    if len(languages) < 2:
        raise ValueError(f"a typological prior needs at least two languages, got {languages}")
    if temperature <= 0:
        raise ValueError(f"the prior's temperature must be > 0, got {temperature}")
    x = uriel_features(languages, features)
    distance = cosine_distances(x)
    isolation = (distance.sum(axis=1) - np.diag(distance)) / (len(languages) - 1)
    pi0 = apply_floor(softmax((-isolation if reverse else isolation) / temperature), floor)
    return Prior(list(languages), pi0, isolation, distance, x.shape[1], tuple(features))


def format_prior(prior: Prior, temperature: float, floor: float, reverse: bool = False) -> str:
    """What `babble prior` prints: the features, the distances, isolation and pi0 per language."""
    langs = prior.languages
    sign = "-" if reverse else ""
    aliases = "".join(f", {lang} looked up as {URIEL_CODES[lang]}" for lang in langs if lang in URIEL_CODES)
    lines = [f"URIEL features: {' + '.join(prior.features)}, {prior.n_features} known in every language{aliases}",
             f"pi0 = floor(softmax({sign}isolation / {temperature}), {floor})", "", "cosine distance:",
             "      " + "".join(f"{lang:>8}" for lang in langs)]
    lines += [f"{a:<6}" + "".join(f"{d:8.4f}" for d in row) for a, row in zip(langs, prior.distance)]
    lines += [""] + [f"{lang}: isolation {i:.4f}  pi0 {p:.4f}" for lang, i, p in zip(langs, prior.isolation, prior.pi0)]
    return "\n".join(lines)
