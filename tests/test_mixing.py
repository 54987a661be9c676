"""TAAM: the mixer, both rewards and the prior against the reference implementation's own numbers
(tests/data/taam_reference, made by running factoredai/diffusion-babylm-eval's code); byte premiums;
the other priors; tiny three-language runs with each policy; resume keeps the mixing state exactly."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from babblelm.config import load_config
from babblelm.configbase import ConfigError
from babblelm.data.languages import PREMIUMS, premium_table
from babblelm.train.exp3 import Mixer, apply_floor, cross_lingual_deficit, normalized_excess_loss

REFERENCE = Path(__file__).parent / "data" / "taam_reference"
EXP3 = json.loads((REFERENCE / "exp3.json").read_text())
PRIOR = json.loads((REFERENCE / "prior.json").read_text())


def test_apply_floor_is_a_linear_shrinkage_applied_always():
    assert apply_floor([0.9, 0.08, 0.02], 0.05) == pytest.approx([0.05 + 0.85 * 0.9, 0.05 + 0.85 * 0.08, 0.05 + 0.85 * 0.02])
    assert apply_floor([2, 1, 1], 0.1) == pytest.approx([0.45, 0.275, 0.275])  # above the floor: shrunk all the same
    assert apply_floor([1, 0], 0.0) == pytest.approx([1, 0])
    with pytest.raises(ValueError, match="floor x languages"):
        apply_floor([1, 1, 1], 0.4)


def test_reward_v1_normalized_excess_loss():
    assert normalized_excess_loss(5.0, [], []) == (0.0, 0.0)  # cold start: ref = the loss itself
    assert normalized_excess_loss(4.0, [5.0], [0.0]) == (1.0, 1.0)  # one earlier raw value: sigma falls back to 1
    reward, raw = normalized_excess_loss(3.8, [5.0, 4.0], [0.0, 1.0])  # ref 4.5; sigma = std(0, 1; ddof 1) = .7071
    assert raw == pytest.approx(0.7) and reward == pytest.approx(0.7 / np.sqrt(0.5))
    assert normalized_excess_loss(3.8, [5.0, 4.0], [0.3, 0.3]) == (pytest.approx(0.7), pytest.approx(0.7))  # std 0 -> 1
    reward, raw = normalized_excess_loss(2.0, [9, 9, 5, 4, 3, 2, 1], [0.5, -0.5])  # ref = mean of the last 5
    assert raw == pytest.approx(1.0) and reward == pytest.approx(1.0 / np.std([0.5, -0.5], ddof=1))
    assert normalized_excess_loss(6.0, [3.0, 4.0], [0.1, 0.2])[0] == -2.0  # worse than the reference: clipped


def test_reward_v2_cross_lingual_deficit():
    r, pooled = cross_lingual_deficit([3.0, 4.0, 5.0], [])  # d = 0, 1, 2 pooled first; sigma = 1 (ddof 1)
    assert pooled == [0, 1, 2] and r == pytest.approx([0.0, 1.0, 2.0])
    r, pooled = cross_lingual_deficit([3.0, 3.5, 4.0], pooled)  # six pooled values
    assert r == pytest.approx([0.0, 0.5, 1.0] / np.std([0, 1, 2, 0, 0.5, 1], ddof=1))
    r, _ = cross_lingual_deficit([2.0, 2.0], [])  # no deficit anywhere: sigma falls back to 1, rewards 0
    assert r.tolist() == [0.0, 0.0]
    _, pooled = cross_lingual_deficit([1.0, 2.0], [0.5] * 40)
    assert len(pooled) == 40 and pooled[-2:] == [0.0, 1.0]  # the window holds 20 evaluations x K


@pytest.mark.parametrize("case", EXP3["cases"], ids=lambda c: f"{c['reward']}-{c['shape']}-K{len(c['pi0'])}")
def test_exp3_follows_the_reference_trajectory(case):
    """pi before the first round and after every one of 60 rounds equals the reference's, to 1e-6."""
    langs = [f"l{i}" for i in range(len(case["pi0"]))]
    mixer = Mixer(langs, "taam", case["pi0"], eta=case["eta"], gamma=case["gamma"], min_pi=case["min_pi"],
                  reward=case["reward"])
    assert mixer.pi == pytest.approx(case["pi"][0], abs=1e-6)
    for losses, rewards, pi in zip(case["losses"], case["rewards"], case["pi"][1:]):
        assert list(mixer.update(dict(zip(langs, losses))).values()) == pytest.approx(rewards, abs=1e-9)
        assert mixer.pi == pytest.approx(pi, abs=1e-6)


def test_the_start_is_projected_and_the_state_resumes_exactly():
    mixer = Mixer(["eng", "nld", "zho"], "taam", [0.30, 0.30, 0.40])  # gamma mix and floor applied to pi0
    assert mixer.pi == pytest.approx([0.3078, 0.3078, 0.3843], abs=1e-4)
    case = EXP3["cases"][1]
    langs = [f"l{i}" for i in range(3)]
    args = dict(eta=case["eta"], gamma=case["gamma"], min_pi=case["min_pi"], reward=case["reward"], granularity="batch",
                seed=5)
    whole, first = Mixer(langs, "taam", case["pi0"], **args), Mixer(langs, "taam", case["pi0"], **args)
    for step, losses in enumerate(case["losses"][:30]):
        for m in (whole, first):
            m.sample(step, 8)
            m.update(dict(zip(langs, losses)))
    second = Mixer(langs, "taam", case["pi0"], **args)
    second.load_state_dict(json.loads(json.dumps(first.state_dict())))  # what a checkpoint holds
    for step, losses in enumerate(case["losses"][30:], start=30):
        assert (whole.sample(step, 8) == second.sample(step, 8)).all()
        whole.update(dict(zip(langs, losses)))
        second.update(dict(zip(langs, losses)))
        assert second.pi.tolist() == whole.pi.tolist()
    assert second.state_dict() == whole.state_dict()


@pytest.mark.parametrize("draws", EXP3["batch_draws"], ids=lambda d: f"seed{d['seed']}")
def test_batch_level_draws_follow_the_reference(draws):
    """granularity batch: every batch is one language, drawn as the reference's batch-level mixer draws it."""
    mixer = Mixer(["eng", "nld", "zho"], "static", [1, 1, 1], granularity="batch", seed=draws["seed"])
    drawn = []
    for step in range(len(draws["languages"])):
        mixer.pi = np.array(draws["pi_every_50"][(step // 50) % 4])
        rows = mixer.sample(step, 64)
        assert rows.sum() == rows.max() == 64
        drawn.append(int(rows.argmax()))
    assert drawn == draws["languages"]


def test_static_and_uniform_policies():
    static = Mixer(["a", "b"], "static", [0.7, 0.3], min_pi=0.4, granularity="rows")
    static.update({"a": 1.0, "b": 2.0})
    assert static.pi == pytest.approx([0.7, 0.3])  # a fixed pi is used as given (no floor) and never moves
    mono = Mixer(["eng", "nld", "zho"], "static", [1, 0, 0], granularity="rows")
    assert mono.sample(3, 16).tolist() == [16, 0, 0]
    rows = static.sample(3, 1000)
    assert rows.sum() == 1000 and (rows == static.sample(3, 1000)).all() and 600 < rows[0] < 800  # rows: seeded by step
    assert Mixer(["a", "b", "c"], "uniform", None).pi == pytest.approx([1 / 3] * 3)
    with pytest.raises(ValueError, match="every language needs pi0 > 0"):
        Mixer(["a", "b"], "taam", [1.0, 0.0])


def test_byte_premiums_and_zho_variant():
    assert PREMIUMS == {"eng": 1.0, "nld": 1.0516, "zho_hans": 0.9360, "zho_hant": 0.9894}
    raw = {"data": {"corpus": "c"}, "mixing": {"languages": {"eng": {}, "nld": {}, "zho": {}}}}
    assert premium_table(load_config(raw=raw).mixing) == {"eng": 1.0, "nld": 1.0516, "zho": 0.9360}
    raw["mixing"].update(zho_variant="zho_hant", languages={"eng": {"premium": 1.1}, "zho": {}})
    assert premium_table(load_config(raw=raw).mixing) == {"eng": 1.1, "zho": 0.9894}
    with pytest.raises(ConfigError, match="mixing.pi"):
        load_config(raw={"data": {"corpus": "c"}, "mixing": {"languages": {"eng": {}}, "pi": {"nld": 1.0}}})
    with pytest.raises(ConfigError, match=r"mixing.features\[0\]: unknown URIEL feature set 'syntax'"):
        load_config(raw={"data": {"corpus": "c"}, "mixing": {"languages": {"eng": {}}, "features": ["syntax"]}})


@pytest.mark.parametrize("ref", PRIOR["priors"], ids=lambda r: f"{'+'.join(r['features'])}-{len(r['languages'])}")
def test_typological_prior_follows_the_reference(ref):
    pytest.importorskip("lang2vec")
    from babblelm.train.prior import typological_prior

    prior = typological_prior(ref["languages"], ref["temperature"], ref["floor"], ref["features"])  # zho as cmn
    assert prior.n_features == ref["n_features"]
    assert prior.pi0 == pytest.approx(ref["pi0"], abs=1e-6)
    assert prior.isolation == pytest.approx(ref["isolation"], abs=1e-6)
    off_diagonal = 1 - np.eye(len(ref["languages"]))  # the reference works in float32: its diagonal holds ~1e-6
    assert prior.distance == pytest.approx(np.array(ref["distance"]) * off_diagonal, abs=1e-6)


def test_the_other_priors():
    pytest.importorskip("lang2vec")
    from babblelm.train.mixedsource import initial_pi
    from babblelm.train.prior import typological_prior

    reverse = PRIOR["reverse"]
    assert typological_prior(reverse["languages"], reverse=True).pi0 == pytest.approx(reverse["pi0"], abs=1e-6)  # P2
    raw = {"data": {"corpus": "c"}, "mixing": {"languages": {"eng": {}, "nld": {}, "zho": {}}, "prior": "proportional"}}
    manifest = {"per_language": {"eng": {"tokens": 300}, "nld": {"tokens": 500}, "zho": {"tokens": 200}}}
    assert initial_pi(load_config(raw=raw), manifest) == pytest.approx([0.3, 0.5, 0.2])
    raw["mixing"]["prior"] = "uriel"
    assert initial_pi(load_config(raw=raw), manifest) == pytest.approx([0.321292, 0.322712, 0.355996], abs=1e-6)


def test_pi_from_runs_is_their_time_average(tmp_path):
    from babblelm.train.mixedsource import initial_pi

    for name, pis in (("s1", [[0.2, 0.3, 0.5], [0.1, 0.3, 0.6]]), ("s2", [[0.2, 0.2, 0.6], [0.2, 0.2, 0.6]])):
        (tmp_path / name).mkdir()
        records = [{"step": 1}] + [{"step": i, "pi": dict(zip(["eng", "nld", "zho"], pi))} for i, pi in enumerate(pis)]
        records.insert(2, {"step": 1, "pi": {"eng": 0.9, "nld": 0.05, "zho": 0.05}})  # logged again after a resume
        (tmp_path / name / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    raw = {"data": {"corpus": "c"}, "mixing": {"languages": {"eng": {}, "nld": {}, "zho": {}}, "policy": "static",
                                               "pi": {"from_runs": [str(tmp_path / "s*")]}}}
    assert initial_pi(load_config(raw=raw), {}) == pytest.approx([0.175, 0.25, 0.575])  # (0.15, .3, .55), (.2, .2, .6)
    raw["mixing"]["pi"] = {"from_runs": [str(tmp_path / "none")]}
    with pytest.raises(FileNotFoundError, match="mixing.pi.from_runs: .*none holds no evaluation records"):
        initial_pi(load_config(raw=raw), {})


CONDITIONS = json.loads((REFERENCE / "conditions.json").read_text())["conditions"]
PRESETS = Path(__file__).resolve().parents[1] / "configs" / "taam"


@pytest.mark.parametrize("cid", sorted(CONDITIONS))
def test_the_presets_are_the_reference_conditions(cid):
    """Each configs/taam preset against the reference's condition as its train.py reads it: the start
    or fixed pi, the EXP3 settings and the run (the model and tokenizer: test_taam_preset_is_the_card_model)."""
    pytest.importorskip("lang2vec")
    from babblelm.train.mixedsource import initial_pi

    ref = CONDITIONS[cid]
    cfg = load_config(PRESETS / Path(ref["file"]).name, ["model={arch: transformer}", "tokenizer={vocab_size: 400}"])
    mix, langs = cfg.mixing, ["eng", "nld", "zho"]
    assert list(mix.languages) == langs and cfg.run.name == cid
    pi = initial_pi(cfg, {"per_language": {lang: {"tokens": 1000} for lang in langs}})  # B2: equal data here
    assert pi == pytest.approx([ref["pi"][lang] for lang in langs], abs=1e-6)
    assert [lang for lang, p in zip(langs, pi) if p > 0] == ref["languages"]  # M_*: one language, same data
    assert mix.policy == {"static": "static", "online": "taam"}[ref["type"]]
    if ref["type"] == "online":
        assert (mix.eta, mix.gamma, mix.min_pi, mix.reward) == (ref["eta"], ref["gamma"], ref["min_pi"], ref["reward"])
    batch = cfg.train.batch_size * cfg.train.grad_accum
    assert (batch, cfg.data.seq_len, mix.tokens) == (ref["batch_size"], ref["block_size"],
                                                     ref["total_steps"] * ref["batch_size"] * ref["block_size"])
    assert (cfg.optim.lr, cfg.optim.betas, cfg.optim.weight_decay, cfg.optim.grad_clip) == (
        ref["learning_rate"], ref["betas"], ref["weight_decay"], ref["gradient_clip"])
    assert cfg.optim.decay_all and cfg.schedule.name == "constant" and cfg.schedule.warmup_steps == 0  # train.py's AdamW
    assert (mix.eval_every, mix.reward_dev_tokens, mix.final_dev_tokens, mix.granularity) == (
        ref["eval_every_steps"], ref["reward_dev_tokens_per_lang"], ref["final_dev_tokens_per_lang"], "batch")


def test_taam_preset_is_the_card_model():
    """configs/taam: the reference's GPT-2 and 32k SentencePiece, 35,561,472 parameters (the card's 35.6M)."""
    from babblelm.models.registry import count_parameters

    ref, cfg = CONDITIONS["TAAM"], load_config(PRESETS / "TAAM.yaml")
    arch, args = cfg.model_section
    assert (arch.name, args.num_hidden_layers, args.num_attention_heads, args.hidden_size, args.max_position_embeddings) == (
        "gpt2", ref["n_layer"], ref["n_head"], ref["n_embd"], ref["block_size"])
    assert (cfg.tokenizer.kind, cfg.tokenizer.vocab_size, cfg.tokenizer.character_coverage) == (
        "sentencepiece", ref["vocab_size"], 0.9995)
    model = arch.model_class(arch.make_config(args, cfg.tokenizer.vocab_size, 1, 2, 3))
    assert count_parameters(model) == 35_561_472


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
                   "policy": policy, "prior": "uniform", "reward": reward, "eval_every": 4, "eta": 1.0,
                   "reward_dev_tokens": 64, "final_dev_tokens": 128, **mixing},
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
    from babblelm.train.launch import train

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
    final = records[-1]["final_dev_loss"]  # the separate final slice, measured once at the end
    assert set(final) == {"easy", "medium", "hard"} and "final_dev_loss" not in records[-2]
    assert result.final_dev_loss == pytest.approx(np.mean(list(final.values())))
    exposures = np.array([list(r["exposures"].values()) for r in records])
    assert (exposures % (8 * 16) == 0).all()  # batch granularity: every batch went to one language


def test_a_language_without_enough_dev_text_is_refused_before_training(languages, tmp_path):
    from babblelm.data.corpus import DataError
    from babblelm.train.launch import train

    with pytest.raises(DataError, match=r"mixing.reward_dev_tokens \+ mixing.final_dev_tokens: easy has \d+ dev blocks "
                                        r"of 16 tokens, the dev slices need 4 \+ 3125; add easy dev text or lower them"):
        train(load_config(raw=_raw(languages, tmp_path, "taam", final_dev_tokens=50_000)), progress=False)
    assert not (tmp_path / "metrics.jsonl").exists() and not (tmp_path / "checkpoints").exists()


def test_resume_keeps_the_mixing_state(languages, tmp_path):
    from babblelm.train import checkpoints as ckpt
    from babblelm.train.launch import train

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
    from babblelm.train.launch import train

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
    from babblelm.train.launch import train

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
