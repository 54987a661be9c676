"""The typological prior pi0: languages far from the others in URIEL get more of the batch at first.

    pi0 = typological_prior(["eng", "nld", "zho"], temperature=0.1, min_pi=0.05)

Features: URIEL's kNN-predicted syntax, phonology and inventory vectors (lang2vec's
`syntax_knn+phonology_knn+inventory_knn`, 289 binary features), read straight from the data
file the `lang2vec` distribution installs, found through its package metadata. Nothing is
imported: lang2vec itself imports `pkg_resources` (gone from setuptools >= 82), and its wheel
puts a script `lang2vec.py` into the environment's `bin/`, which shadows the package inside any
console script (bin/ comes first on sys.path there). `zho` is looked up as `cmn` (Mandarin).
isolation_l = mean cosine distance from l to the other languages; pi0 =
floor_shrink(softmax(isolation / T), min_pi).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np

from .mixing import floor_shrink, softmax

FEATURE_PREFIXES = ("S_", "P_", "INV_")  # syntax_knn, phonology_knn, inventory_knn
URIEL_CODES = {"zho": "cmn", "zho_hans": "cmn", "zho_hant": "cmn"}


URIEL_FILE = "lang2vec/data/feature_predictions.npz"


def uriel_file() -> Path:
    """The URIEL feature file of the installed lang2vec distribution (never imported)."""
    missing = ImportError("the typological prior needs URIEL's data from lang2vec: pip install 'babblelm[multilingual]'")
    try:
        dist = importlib.metadata.distribution("lang2vec")
    except importlib.metadata.PackageNotFoundError:
        raise missing from None
    path = Path(dist.locate_file(URIEL_FILE))
    if not path.is_file():
        raise missing
    return path


def uriel_features(languages: list[str]) -> np.ndarray:
    """[K, 289] concatenated syntax/phonology/inventory kNN features from lang2vec's data file."""
    with np.load(uriel_file()) as db:
        langs, names = list(db["langs"]), db["feats"]
        source = list(db["sources"]).index("predicted")
        columns = np.concatenate([np.flatnonzero(np.char.startswith(names, p)) for p in FEATURE_PREFIXES])
        rows = []
        for lang in languages:
            code = URIEL_CODES.get(lang, lang)
            if code not in langs:
                raise ValueError(f"language {lang!r} (URIEL code {code!r}) is not in URIEL; set mixing.pi "
                                 "or mixing.prior: uniform")
            rows.append(db["data"][langs.index(code), columns, source])
    return np.asarray(rows, dtype=np.float64)


def isolation(features: np.ndarray) -> np.ndarray:
    """Mean cosine distance of each row to the other rows."""
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    distance = 1.0 - unit @ unit.T
    k = len(features)
    return (distance.sum(axis=1) - np.diag(distance)) / (k - 1)


def typological_prior(languages: list[str], temperature: float = 0.1, min_pi: float = 0.05) -> np.ndarray:
    """pi0 = floor_shrink(softmax(isolation / T), min_pi) over URIEL features."""
    if len(languages) < 2:
        return np.ones(len(languages))
    return floor_shrink(softmax(isolation(uriel_features(languages)) / temperature), min_pi)
