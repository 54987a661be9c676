"""Per-language sampling probabilities pi for multilingual training: uniform, static and TAAM (EXP3).

    mixer = Mixer(["eng", "nld", "zho"], "taam", pi0, eta=0.1, gamma=0.1, min_pi=0.05,
                  reward="normalized_excess_loss")
    rows = mixer.sample(step, seed, 32)       # rows of the next batch per language, drawn by pi
    mixer.update({"eng": 3.1, "nld": 3.4, "zho": 4.0})   # every evaluation interval: dev losses -> pi

TAAM keeps log-weights w (starting at log pi0). At each evaluation every language gets a reward
r_l from its dev loss and w_l += eta * r_l (every language is observed, so no importance
weighting); then pi = floor_shrink((1 - gamma) softmax(w) + gamma / K, min_pi).

Rewards (see docs/multilingual.md):
  v1 normalized_excess_loss: ref = mean of the language's previous 5 dev losses, raw = ref - loss,
     r = raw / std(last 20 raw values), clipped to [-2, 2]  (progress: a delta)
  v2 cross_lingual_deficit: d_l = L_l - min_k L_k, r = d_l / std(last 20 x K deficits),
     clipped to [0, 2]  (how far behind: a level)
A reward is 0 while its normaliser is undefined (no earlier loss, or a zero std).
The whole state is plain JSON (`state_dict`), carried in checkpoints so a resumed run continues it.
"""

from __future__ import annotations

import numpy as np

POLICIES = ("uniform", "static", "taam")
REWARDS = ("normalized_excess_loss", "cross_lingual_deficit")
REF_WINDOW = 5  # v1: dev losses averaged into the reference
NORM_WINDOW = 20  # evaluations in the normalising std (v1: raw values; v2: rows of K deficits)
CLIP = 2.0


def floor_shrink(pi, min_pi: float) -> np.ndarray:
    """Normalise `pi`, then mix it with uniform just enough that every entry is >= min_pi."""
    pi = np.asarray(pi, dtype=np.float64)
    pi = pi / pi.sum()
    k = len(pi)
    if min_pi * k > 1 + 1e-12:
        raise ValueError(f"min_pi={min_pi} x {k} languages exceeds 1")
    low = pi.min()
    if low >= min_pi:
        return pi
    lam = (min_pi - low) / (1.0 / k - low)
    return (1 - lam) * pi + lam / k


def softmax(x) -> np.ndarray:
    e = np.exp(np.asarray(x, dtype=np.float64) - np.max(x))
    return e / e.sum()


def normalized_excess_loss(losses: list[float], raws: list[float]) -> tuple[float, float | None]:
    """v1 for one language: (reward, raw) from its dev losses so far (newest last) and earlier raw values."""
    if len(losses) < 2:
        return 0.0, None
    raw = float(np.mean(losses[-1 - REF_WINDOW : -1]) - losses[-1])
    std = float(np.std((raws + [raw])[-NORM_WINDOW:]))
    return (float(np.clip(raw / std, -CLIP, CLIP)) if std > 0 else 0.0), raw


def cross_lingual_deficit(losses: np.ndarray, deficits: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    """v2 for all languages: (rewards, deficits) from the current dev losses and earlier deficit rows."""
    d = np.asarray(losses, dtype=np.float64) - np.min(losses)
    std = float(np.std(np.concatenate([np.ravel(deficits[-(NORM_WINDOW - 1):]) if deficits else [], d])))
    return (np.clip(d / std, 0.0, CLIP) if std > 0 else np.zeros_like(d)), d


class Mixer:
    """A mixing policy over `languages` with its state (weights, pi, loss and reward history, exposures)."""

    def __init__(self, languages: list[str], policy: str, pi0, eta: float = 0.1, gamma: float = 0.1,
                 min_pi: float = 0.05, reward: str = "normalized_excess_loss"):
        if policy not in POLICIES:
            raise ValueError(f"unknown mixing policy {policy!r}; known: {', '.join(POLICIES)}")
        if reward not in REWARDS:
            raise ValueError(f"unknown reward {reward!r}; known: {', '.join(REWARDS)}")
        self.languages, self.policy, self.reward = list(languages), policy, reward
        self.eta, self.gamma, self.min_pi = eta, gamma, min_pi
        k = len(self.languages)
        pi0 = np.full(k, 1.0 / k) if policy == "uniform" else floor_shrink(pi0, min_pi)
        self.log_weights = np.log(pi0)
        self.pi = self._from_weights() if policy == "taam" else pi0
        self.losses: dict[str, list[float]] = {lang: [] for lang in self.languages}
        self.raws: dict[str, list[float]] = {lang: [] for lang in self.languages}
        self.deficits: list[list[float]] = []
        self.exposures = {lang: 0 for lang in self.languages}  # tokens read per language
        self.rows = {lang: 0 for lang in self.languages}  # sequences read per language

    def _from_weights(self) -> np.ndarray:
        k = len(self.languages)
        return floor_shrink((1 - self.gamma) * softmax(self.log_weights) + self.gamma / k, self.min_pi)

    def rewards(self, dev_losses: dict[str, float]) -> dict[str, float]:
        """Record the dev losses and return each language's reward (history updated)."""
        for lang in self.languages:
            self.losses[lang].append(float(dev_losses[lang]))
        if self.reward == "normalized_excess_loss":
            out = {}
            for lang in self.languages:
                out[lang], raw = normalized_excess_loss(self.losses[lang], self.raws[lang])
                if raw is not None:
                    self.raws[lang].append(raw)
            return out
        r, d = cross_lingual_deficit(np.array([dev_losses[lang] for lang in self.languages]), self.deficits)
        self.deficits.append(d.tolist())
        return dict(zip(self.languages, r.tolist()))

    def update(self, dev_losses: dict[str, float]) -> dict[str, float]:
        """One evaluation: rewards from dev losses; TAAM moves its weights and pi. Returns the rewards."""
        rewards = self.rewards(dev_losses)
        if self.policy == "taam":
            self.log_weights = self.log_weights + self.eta * np.array([rewards[lang] for lang in self.languages])
            self.pi = self._from_weights()
        return rewards

    def sample(self, step: int, seed: int, n: int) -> np.ndarray:
        """Rows per language for one batch of `n` sequences, drawn by pi (seeded by step: resumable)."""
        return np.random.default_rng([seed, step]).multinomial(n, self.pi / self.pi.sum())

    def count(self, rows: np.ndarray, seq_len: int) -> None:
        for lang, r in zip(self.languages, rows.tolist()):
            self.rows[lang] += r
            self.exposures[lang] += r * seq_len

    def pi_dict(self) -> dict[str, float]:
        return dict(zip(self.languages, self.pi.tolist()))

    def state_dict(self) -> dict:
        return {"languages": self.languages, "policy": self.policy, "reward": self.reward,
                "log_weights": self.log_weights.tolist(), "pi": self.pi.tolist(), "losses": self.losses,
                "raws": self.raws, "deficits": self.deficits, "exposures": self.exposures, "rows": self.rows}

    def load_state_dict(self, state: dict) -> None:
        if state["languages"] != self.languages or state["policy"] != self.policy or state["reward"] != self.reward:
            raise ValueError(f"mixing state is for {state['languages']} / {state['policy']} / {state['reward']}, "
                             f"this run mixes {self.languages} / {self.policy} / {self.reward}")
        self.log_weights, self.pi = np.array(state["log_weights"]), np.array(state["pi"])
        self.losses, self.raws, self.deficits = state["losses"], state["raws"], state["deficits"]
        self.exposures, self.rows = state["exposures"], state["rows"]
