"""TAAM: floor-shrink, both rewards and the EXP3 update on hand-made losses; byte premiums; the URIEL prior;
tiny three-language runs with each policy; resume keeps the mixing state."""

import json

import numpy as np
import pytest
import torch

from babblelm.config import load_config
from babblelm.configbase import ConfigError
from babblelm.data.multilingual import PREMIUMS, premium_table
from babblelm.train.mixing import Mixer, cross_lingual_deficit, floor_shrink, normalized_excess_loss


def test_floor_shrink_mixes_with_uniform_just_enough():
    # low 0.02 -> lambda = 0.03 / (1/3 - 0.02) = 0.095745; pi' = 0.904255 pi + 0.031915
    assert floor_shrink([0.9, 0.08, 0.02], 0.05) == pytest.approx([0.845745, 0.104255, 0.05], abs=1e-6)
    assert floor_shrink([2, 1, 1], 0.05) == pytest.approx([0.5, 0.25, 0.25])  # already above: only normalised


def test_reward_v1_normalized_excess_loss():
    assert normalized_excess_loss([5.0], []) == (0.0, None)  # no reference yet
    assert normalized_excess_loss([5.0, 4.0], []) == (0.0, 1.0)  # raw 1, std of one value is 0
    reward, raw = normalized_excess_loss([5.0, 4.0, 3.8], [1.0])  # ref 4.5, raw 0.7, std(1, .7) = .15 -> 4.67
    assert raw == pytest.approx(0.7) and reward == 2.0  # clipped
    reward, raw = normalized_excess_loss([5.0, 4.0, 3.8, 3.9], [1.0, 0.7])  # ref 4.2667, raw 0.36667
    assert raw == pytest.approx(0.366667, abs=1e-6) and reward == pytest.approx(1.41750, abs=1e-4)  # / 0.258677
    reward, raw = normalized_excess_loss([9, 9, 5, 4, 3, 2, 1, 2.0], [0.5, -0.5])  # ref = mean of the 5 before
    assert raw == pytest.approx(1.0) and reward == pytest.approx(1.0 / np.std([0.5, -0.5, 1.0]))
    assert normalized_excess_loss([3.0, 4.0, 6.0], [-1.0])[0] == -2.0  # worse than the reference: clipped at -2


def test_reward_v2_cross_lingual_deficit():
    r, d = cross_lingual_deficit(np.array([3.0, 4.0, 5.0]), [])  # d = 0, 1, 2; std 0.816497
    assert d.tolist() == [0, 1, 2] and r == pytest.approx([0.0, 1.224745, 2.0], abs=1e-6)
    r, _ = cross_lingual_deficit(np.array([3.0, 3.5, 4.0]), [[0, 1, 2]])  # pooled std of 6 values 0.692219
    assert r == pytest.approx([0.0, 0.722315, 1.444630], abs=1e-6)


def test_exp3_update_moves_pi_by_the_rewards():
    mixer = Mixer(["a", "b", "c"], "taam", [1, 1, 1], eta=0.1, gamma=0.1, min_pi=0.05, reward="cross_lingual_deficit")
    assert mixer.pi == pytest.approx([1 / 3] * 3)
    rewards = mixer.update({"a": 3.0, "b": 4.0, "c": 5.0})  # w = log 1/3 + 0.1 (0, 1.2247, 2)
    assert list(rewards.values()) == pytest.approx([0.0, 1.224745, 2.0], abs=1e-6)
    # softmax = (0.298357, 0.337230, 0.364413); x 0.9 + 0.1/3
    assert mixer.pi == pytest.approx([0.301855, 0.336840, 0.361305], abs=1e-6)
    assert Mixer(["a", "b"], "static", [0.99, 0.01], min_pi=0.05).pi == pytest.approx([0.95, 0.05])
    static = Mixer(["a", "b"], "static", [0.7, 0.3])
    static.update({"a": 1.0, "b": 2.0})
    assert static.pi == pytest.approx([0.7, 0.3])  # static never moves
    rows = static.sample(3, 0, 1000)
    assert rows.sum() == 1000 and (rows == static.sample(3, 0, 1000)).all() and 600 < rows[0] < 800


def test_byte_premiums_and_zho_variant():
    assert PREMIUMS == {"eng": 1.0, "nld": 1.0516, "zho_hans": 0.9360, "zho_hant": 0.9894}
    raw = {"data": {"corpus": "c"}, "mixing": {"languages": {"eng": {}, "nld": {}, "zho": {}}}}
    assert premium_table(load_config(raw=raw).mixing) == {"eng": 1.0, "nld": 1.0516, "zho": 0.9360}
    raw["mixing"].update(zho_variant="zho_hant", languages={"eng": {"premium": 1.1}, "zho": {}})
    assert premium_table(load_config(raw=raw).mixing) == {"eng": 1.1, "zho": 0.9894}
    with pytest.raises(ConfigError, match="mixing.pi"):
        load_config(raw={"data": {"corpus": "c"}, "mixing": {"languages": {"eng": {}}, "pi": {"nld": 1.0}}})


def test_typological_prior_eng_nld_zho():
    pytest.importorskip("lang2vec")
    from babblelm.train.prior import isolation, typological_prior, uriel_features

    features = uriel_features(["eng", "nld", "zho"])  # zho is looked up as cmn
    assert features.shape == (3, 289)
    assert isolation(features) == pytest.approx([0.261912, 0.265110, 0.334752], abs=1e-5)
    pi0 = typological_prior(["eng", "nld", "zho"], temperature=0.1, min_pi=0.05)
    print("pi0 eng/nld/zho:", pi0)
    assert pi0 == pytest.approx([0.243649, 0.251568, 0.504784], abs=1e-5)


def _raw(corpus, out, policy, reward="normalized_excess_loss", **mixing):
    return {
        "run": {"name": "m", "out_dir": str(out), "seed": 3, "device": "cpu"},
        "data": {"corpus": str(corpus), "seq_len": 16, "track": "none", "filters": []},
        "tokenizer": {"vocab_size": 320},
        "model": {"arch": "transformer", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                  "intermediate_size": 32, "max_position_embeddings": 16},
        "schedule": {"warmup_steps": 2},
        "train": {"batch_size": 8, "log_every": 4, "dev_batches": 1, "save_every": 0},
        "checkpoints": {"scale": 0.001},
        "mixing": {"languages": {"easy": {"premium": 1.0}, "medium": {"premium": 1.2}, "hard": {"premium": 1.0}}, "tokens": 2048, "budget": 60000,
                   "policy": policy, "prior": "uniform", "reward": reward, "eval_every": 4, "eta": 1.0, **mixing},
    }


@pytest.fixture(scope="module")
def languages(tmp_path_factory):
    from babblelm.data.synthlang import write_synthetic_languages

    out = tmp_path_factory.mktemp("synth")
    write_synthetic_languages(out, words=6000)
    return out


@pytest.mark.parametrize("policy,reward", [("uniform", "normalized_excess_loss"), ("static", "normalized_excess_loss"),
                                           ("taam", "normalized_excess_loss"), ("taam", "cross_lingual_deficit")])
def test_three_language_run_end_to_end(languages, tmp_path, policy, reward):
    from babblelm.train.loop import train

    extra = {"pi": {"easy": 0.6, "medium": 0.3, "hard": 0.1}} if policy == "static" else {}
    result = train(load_config(raw=_raw(languages, tmp_path, policy, reward, **extra)), progress=False)
    manifest = json.loads((tmp_path / "data" / "multilingual.json").read_text())
    assert manifest["adjusted_bytes"] <= 60000
    medium = manifest["per_language"]["medium"]
    assert medium["adjusted_bytes"] == pytest.approx(medium["bytes"] / 1.2) and medium["bytes"] <= 20000 * 1.2
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").open() if '"pi"' in line]
    assert len(records) == 4 and result.tokens_seen == 2048
    assert sum(records[-1]["exposures"].values()) == 2048
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["chck_1M", "chck_2M", "final"]
    pis = np.array([list(r["pi"].values()) for r in records])
    if policy == "uniform":
        assert pis == pytest.approx(np.full_like(pis, 1 / 3))
    if policy == "static":
        assert pis == pytest.approx(np.tile([0.6, 0.3, 0.1], (4, 1)))
    if policy == "taam":  # v1 can stay put while every language improves alike; v2 moves as soon as losses differ
        assert pis.min() >= 0.05 - 1e-9 and all(set(r["reward"]) == {"easy", "medium", "hard"} for r in records)
    if reward == "cross_lingual_deficit":
        assert np.abs(pis[-1] - 1 / 3).max() > 0.01
    assert "## Multilingual mixing" in (tmp_path / "mixing.md").read_text() and (tmp_path / "mixing.png").stat().st_size


def test_resume_keeps_the_mixing_state(languages, tmp_path):
    from babblelm.train import checkpoints as ckpt
    from babblelm.train.loop import train

    full = train(load_config(raw=_raw(languages, tmp_path / "full", "taam")), progress=False)
    cfg = load_config(raw=_raw(languages, tmp_path / "cut", "taam"))
    assert train(cfg, progress=False, stop_after_steps=5).interrupted
    resumed = train(cfg, resume=True, progress=False)
    a, b = ckpt.read_trainer_state(full.final_dir), ckpt.read_trainer_state(resumed.final_dir)
    assert a["mixing"] == b["mixing"] and a["stream_positions"] == b["stream_positions"]
    assert a["words_seen"] == b["words_seen"]
    from safetensors.torch import load_file

    wa, wb = load_file(full.final_dir / "model.safetensors"), load_file(resumed.final_dir / "model.safetensors")
    assert all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wa)


def test_eval_with_language_tag_reads_multiblimp_and_blimp_pairs(languages, tmp_path):
    from babblelm.cli import main
    from babblelm.eval.tasks import load_multilingual_pairs
    from babblelm.train.loop import train

    data = tmp_path / "eval" / "nld"
    data.mkdir(parents=True)
    (data / "agr.jsonl").write_text(json.dumps({"sen": "kebu vavi", "wrong_sen": "vavi kebu", "phenomenon": "SV-#"}) + "\n"
                                    + json.dumps({"sentence_good": "a b", "sentence_bad": "b a"}) + "\n")
    choices = load_multilingual_pairs(data)
    assert [c.options for c in choices] == [(("", "kebu vavi"), ("", "vavi kebu")), (("", "a b"), ("", "b a"))]
    assert [c.uid for c in choices] == ["SV-#", "agr"]
    result = train(load_config(raw=_raw(languages, tmp_path / "run", "uniform", tokens=512)), progress=False)
    assert main(["eval", str(result.final_dir), "--tasks", "multiblimp", "--data", str(tmp_path / "eval"),
                 "--language", "nld", "--out", str(tmp_path / "res")]) == 0
    scores = json.loads((tmp_path / "res" / "nld" / "multiblimp.json").read_text())
    assert scores["n_items"] == 2 and set(scores["by_uid"]) == {"SV-#", "agr"}


@pytest.mark.parametrize("policy", ["static", "taam"])
def test_two_gloo_processes_mix_like_one_process(languages, tmp_path, policy):
    """Under torchrun each rank trains on its slice of the same mixed batch and rank 0's dev losses
    reach every rank. With a fixed pi the run, interrupted and resumed, equals the single-process one
    (rows, read positions, words, weights);
    with TAAM, pi moves as it does in one process (the ranks' float sums differ in the last bits, so
    a row may fall to another language)."""
    import shutil

    import yaml
    from safetensors.torch import load_file
    from test_ddp import _torchrun

    from babblelm.train import checkpoints as ckpt
    from babblelm.train.loop import train

    extra = {"pi": {"easy": 0.6, "medium": 0.3, "hard": 0.1}} if policy == "static" else {}
    raw = {name: _raw(languages, tmp_path / name, policy, "cross_lingual_deficit", **extra) for name in ("single", "ddp")}
    single = train(load_config(raw=raw["single"]), progress=False)
    (tmp_path / "ddp").mkdir()
    shutil.copytree(tmp_path / "single" / "data", tmp_path / "ddp" / "data")  # same prepared data (cache hit)
    (tmp_path / "ddp.yaml").write_text(yaml.safe_dump(raw["ddp"], sort_keys=False))  # language order matters
    if policy == "static":  # interrupted and resumed on the way
        _torchrun(tmp_path / "ddp.yaml", "--stop-after", "5")
        _torchrun(tmp_path / "ddp.yaml", "--resume")
    else:
        _torchrun(tmp_path / "ddp.yaml")

    final = tmp_path / "ddp" / "checkpoints" / "final"
    a, b = ckpt.read_trainer_state(single.final_dir), ckpt.read_trainer_state(final)
    records = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").open() if '"pi"' in line]
    assert len(records) == 4 and sum(b["mixing"]["exposures"].values()) == 2048
    assert a["mixing"]["pi"] == pytest.approx(b["mixing"]["pi"], abs=0.02)
    if policy == "static":
        assert a["mixing"]["exposures"] == b["mixing"]["exposures"] and a["words_seen"] == b["words_seen"]
        assert a["stream_positions"] == b["stream_positions"]
        wa, wb = load_file(single.final_dir / "model.safetensors"), load_file(final / "model.safetensors")
        for k in wa:
            torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5)
    else:
        assert np.abs(np.array(b["mixing"]["pi"]) - 1 / 3).max() > 0.01  # the dev losses reached the mixer


def test_prior_without_the_multilingual_extra_is_a_clear_error(monkeypatch, capsys):
    import importlib.metadata

    from babblelm.cli import main

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    assert main(["prior", "eng", "nld"]) == 2
    assert "error: the typological prior needs URIEL's data from lang2vec: pip install 'babblelm[multilingual]'" \
        in capsys.readouterr().err
