"""`babble eval --all-checkpoints`' AoA score against numbers the unmodified official code gave
(tests/data/official2026, README there: the AoA run of 3bf5142, the same files in the 2025 pipeline) on six
checkpoints of a tiny run: each word scored after each of its contexts, every (checkpoint, context)
point in the word's sigmoid fit."""

import json
from pathlib import Path

import pytest

from babblelm.cli import main
from babblelm.eval.aoa import curve_fitness, load_cdi

HERE = Path(__file__).parent / "data" / "official2026"
REFERENCE = json.loads((HERE / "aoa_reference.json").read_text(encoding="utf-8"))
DATA = HERE / "data"
RUN = HERE / "aoa_run"


def test_the_official_surprisals_give_the_official_curve_fitness():
    """The fit itself: fed the official surprisals, the same words get the same AoAs and the same score."""
    result = curve_fitness(REFERENCE["surprisal"], load_cdi(DATA / "aoa"))
    assert list(result["model_aoa"]) == REFERENCE["valid_words"]  # "a" (one letter), "zebra" (no contexts), "nocdi" left out
    assert list(result["model_aoa"].values()) == pytest.approx(REFERENCE["model_aoas"], rel=1e-12, abs=1e-12)
    assert list(result["child_aoa"].values()) == pytest.approx(REFERENCE["child_aoas"], rel=1e-12, abs=1e-12)
    assert result["scores"]["aoa"] == pytest.approx(REFERENCE["curve_fitness"], abs=1e-12)
    assert result["n_words"] == REFERENCE["n_words"] == 20


def test_babble_eval_scores_aoa_like_the_official_code(tmp_path, capsys):
    args = ["eval", str(RUN), "--all-checkpoints", "--tasks", "blimp", "--data", str(DATA), "--device", "cpu",
            "--out", str(tmp_path)]
    assert main(args) == 0
    assert f"AoA curve fitness (Pearson r, model vs child AoA): {REFERENCE['curve_fitness']:.2f}" in capsys.readouterr().out
    for step, official in REFERENCE["surprisal"].items():
        ours = json.loads((tmp_path / step / "aoa_surprisal.json").read_text())["surprisal"]
        assert ours.keys() == official.keys() | {"zebra"} and ours["zebra"] == []
        for word, values in official.items():
            assert ours[word] == pytest.approx(values, abs=2e-5), (step, word)
    aoa = json.loads((tmp_path / "aoa.json").read_text())
    assert list(aoa["model_aoa"]) == REFERENCE["valid_words"]
    assert list(aoa["model_aoa"].values()) == pytest.approx(REFERENCE["model_aoas"], abs=1e-5)
    assert aoa["scores"]["aoa"] == pytest.approx(REFERENCE["curve_fitness"], abs=1e-6)

    # the 2025 pipeline's AoA is the same code: its rules reuse the surprisals and give the same score
    stored = {step: (tmp_path / step / "aoa_surprisal.json").read_text() for step in REFERENCE["surprisal"]}
    assert main([*args, "--rules", "2025"]) == 0
    assert {step: (tmp_path / step / "aoa_surprisal.json").read_text() for step in stored} == stored
    assert json.loads((tmp_path / "aoa.json").read_text())["scores"] == aoa["scores"]
