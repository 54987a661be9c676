"""Per-language sampling probabilities pi for multilingual training: uniform, static and TAAM (EXP3).

    mixer = Mixer(["eng", "nld", "zho"], "taam", pi0, eta=0.1, gamma=0.1, min_pi=0.05,
                  reward="normalized_excess_loss")
    rows = mixer.sample(step, 64)                        # rows of the next batch per language
    mixer.update({"eng": 3.1, "nld": 3.4, "zho": 4.0})  # every evaluation: dev losses -> rewards -> pi

TAAM is EXP3 with importance weighting for every arm (every language's dev loss is observed):
log-weights w start at log pi0; at each evaluation w_l += eta * r_l / pi_l (pi floored at 1e-12),
w is re-centred (w -= max w), and pi = project(w), where
    project(w) = floor((1 - gamma) softmax(w) + gamma / K, min_pi)
    floor(p, m) = m + (1 - K m) p / sum(p)          (linear shrinkage, applied always)
so the starting pi is project(log pi0), not pi0 itself.

Rewards (see docs/multilingual.md; sigma is the sample std, ddof 1, falling back to 1.0 while
there are fewer than 2 values or it is below 1e-8):
  v1 normalized_excess_loss, per language: ref = mean of its previous up-to-5 dev losses (the
     loss itself at the first evaluation), raw = ref - loss, sigma over its previous up-to-20 raw
     values (the current one is added after), r = clip(raw / sigma, -2, 2)   (progress: a delta)
  v2 cross_lingual_deficit: d_l = max(L_l - min_k L_k, 0), appended to one pooled window of the
     last 20 x K deficits, sigma over that window, r = clip(d_l / sigma, 0, 2)   (a level)

Batches: `granularity` "batch" gives each batch to one language drawn from pi with a generator
seeded once by the run's seed (its state is part of the mixer's state); "rows" splits each batch's
rows among languages by a multinomial draw seeded by (seed, step). The whole state is plain JSON
(`state_dict`), carried in checkpoints so a resumed run continues it exactly.
"""

from __future__ import annotations

import numpy as np

POLICIES = ("uniform", "static", "taam")
REWARDS = ("normalized_excess_loss", "cross_lingual_deficit")
GRANULARITIES = ("batch", "rows")
REF_WINDOW = 5  # v1: dev losses averaged into the reference
STD_WINDOW = 20  # evaluations in the normalising std (v1: raw values; v2: rows of K deficits)
CLIP = 2.0
STD_FALLBACK = 1.0  # sigma while it is undefined (fewer than 2 values) or below MIN_STD
MIN_STD = 1e-8
MIN_PI_DIVISOR = 1e-12  # importance weights divide by max(pi, this)


def apply_floor(p, floor: float) -> np.ndarray:
    """Normalise `p` and shrink it linearly towards uniform so that every entry is >= `floor`:
    floor + (1 - K floor) p / sum(p)."""
    p = np.asarray(p, dtype=np.float64)
    if floor < 0 or floor * len(p) > 1 + 1e-9:
        raise ValueError(f"a floor of {floor} for {len(p)} languages: floor x languages must be in [0, 1]")
    if np.any(p < 0) or p.sum() <= 0:
        raise ValueError(f"probabilities must be non-negative with a positive sum, got {p.tolist()}")
    return floor + (1.0 - floor * len(p)) * (p / p.sum())


def softmax(x) -> np.ndarray:
    z = np.asarray(x, dtype=np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


def sample_std(values) -> float:
    """The normaliser sigma: sample std (ddof 1) of `values`, or STD_FALLBACK when undefined or tiny."""
    if len(values) < 2:
        return STD_FALLBACK
    sigma = float(np.std(values, ddof=1))
    return sigma if sigma >= MIN_STD else STD_FALLBACK


def normalized_excess_loss(loss: float, losses: list[float], raws: list[float]) -> tuple[float, float]:
    """v1 for one language: (reward, raw) from its new dev loss, its earlier losses and raw values
    (oldest first; only the last REF_WINDOW and STD_WINDOW are read)."""
    ref = float(np.mean(losses[-REF_WINDOW:])) if losses else float(loss)
    raw = ref - float(loss)
    sigma = sample_std(raws[-STD_WINDOW:])
    return float(np.clip(raw / sigma, -CLIP, CLIP)), raw


def cross_lingual_deficit(losses, pooled: list[float]) -> tuple[np.ndarray, list[float]]:
    """v2 for all languages: (rewards, the pooled deficit window with this evaluation's K deficits added)."""
    losses = np.asarray(losses, dtype=np.float64)
    deficits = np.maximum(losses - losses.min(), 0.0)
    pooled = (list(pooled) + deficits.tolist())[-STD_WINDOW * len(losses):]
    return np.clip(deficits / sample_std(pooled), 0.0, CLIP), pooled


class Mixer:
    """A mixing policy over `languages` with its state (weights, pi, reward windows, batch generator, exposures)."""

    def __init__(self, languages: list[str], policy: str, pi0, eta: float = 0.1, gamma: float = 0.1,
                 min_pi: float = 0.05, reward: str = "normalized_excess_loss", granularity: str = "batch",
                 seed: int = 0):
        for name, value, known in (("policy", policy, POLICIES), ("reward", reward, REWARDS),
                                   ("granularity", granularity, GRANULARITIES)):
            if value not in known:
                raise ValueError(f"unknown mixing {name} {value!r}; known: {', '.join(known)}")
        self.languages, self.policy, self.reward, self.granularity = list(languages), policy, reward, granularity
        self.eta, self.gamma, self.min_pi, self.seed = eta, gamma, min_pi, seed
        k = len(self.languages)
        pi0 = np.full(k, 1.0 / k) if policy == "uniform" else np.asarray(pi0, dtype=np.float64)
        if len(pi0) != k or np.any(pi0 < 0) or pi0.sum() <= 0:
            raise ValueError(f"pi0 {pi0.tolist()} must hold {k} non-negative values with a positive sum")
        pi0 = pi0 / pi0.sum()
        if policy == "taam":
            if np.any(pi0 <= 0):
                raise ValueError(f"TAAM starts from log pi0: every language needs pi0 > 0, got "
                                 f"{dict(zip(self.languages, pi0.tolist()))}")
            self.log_weights = np.log(pi0)
            self.pi = self._project()
        else:
            self.log_weights, self.pi = np.log(np.maximum(pi0, 1e-300)), pi0
        self.losses: dict[str, list[float]] = {lang: [] for lang in self.languages}  # v1: the last REF_WINDOW
        self.raws: dict[str, list[float]] = {lang: [] for lang in self.languages}  # v1: the last STD_WINDOW
        self.deficits: list[float] = []  # v2: the pooled window of STD_WINDOW x K
        self.rng = np.random.default_rng(seed)  # batch granularity: one language per batch
        self.exposures = {lang: 0 for lang in self.languages}  # tokens read per language
        self.rows = {lang: 0 for lang in self.languages}  # sequences read per language

    def _project(self) -> np.ndarray:
        k = len(self.languages)
        return apply_floor((1.0 - self.gamma) * softmax(self.log_weights) + self.gamma / k, self.min_pi)

    def rewards(self, dev_losses: dict[str, float]) -> dict[str, float]:
        """Each language's reward for this evaluation's dev losses (the reward windows move on)."""
        if self.reward == "cross_lingual_deficit":
            r, self.deficits = cross_lingual_deficit([dev_losses[lang] for lang in self.languages], self.deficits)
            return dict(zip(self.languages, r.tolist()))
        out = {}
        for lang in self.languages:
            loss = float(dev_losses[lang])
            out[lang], raw = normalized_excess_loss(loss, self.losses[lang], self.raws[lang])
            self.losses[lang] = (self.losses[lang] + [loss])[-REF_WINDOW:]
            self.raws[lang] = (self.raws[lang] + [raw])[-STD_WINDOW:]
        return out

    def update(self, dev_losses: dict[str, float]) -> dict[str, float]:
        """One evaluation: rewards from dev losses; TAAM moves its weights and pi. Returns the rewards."""
        missing = [lang for lang in self.languages if lang not in dev_losses]
        if missing:
            raise KeyError(f"no dev loss for {', '.join(missing)}")
        rewards = self.rewards(dev_losses)
        if self.policy == "taam":
            r = np.array([rewards[lang] for lang in self.languages])
            self.log_weights = self.log_weights + self.eta * r / np.maximum(self.pi, MIN_PI_DIVISOR)
            self.log_weights = self.log_weights - self.log_weights.max()
            self.pi = self._project()
        return rewards

    def sample(self, step: int, n: int) -> np.ndarray:
        """Rows per language for the batch of `step` (`n` sequences), drawn by pi."""
        if self.granularity == "batch":
            rows = np.zeros(len(self.languages), dtype=np.int64)
            rows[int(self.rng.choice(len(self.languages), p=self.pi))] = n
            return rows
        return np.random.default_rng([self.seed, step]).multinomial(n, self.pi / self.pi.sum())

    def count(self, rows: np.ndarray, seq_len: int) -> None:
        for lang, r in zip(self.languages, rows.tolist()):
            self.rows[lang] += r
            self.exposures[lang] += r * seq_len

    def pi_dict(self) -> dict[str, float]:
        return dict(zip(self.languages, self.pi.tolist()))

    def state_dict(self) -> dict:
        return {"languages": self.languages, "policy": self.policy, "reward": self.reward,
                "granularity": self.granularity, "log_weights": self.log_weights.tolist(), "pi": self.pi.tolist(),
                "losses": self.losses, "raws": self.raws, "deficits": self.deficits,
                "rng": self.rng.bit_generator.state, "exposures": self.exposures, "rows": self.rows}

    def load_state_dict(self, state: dict) -> None:
        mine = (self.languages, self.policy, self.reward, self.granularity)
        theirs = tuple(state.get(key) for key in ("languages", "policy", "reward", "granularity"))
        if theirs != mine:
            raise ValueError(f"mixing state is for {' / '.join(map(str, theirs))}, this run mixes {' / '.join(map(str, mine))}")
        self.log_weights, self.pi = np.array(state["log_weights"]), np.array(state["pi"])
        self.losses, self.raws, self.deficits = state["losses"], state["raws"], state["deficits"]
        self.rng.bit_generator.state = state["rng"]
        self.exposures, self.rows = state["exposures"], state["rows"]
