"""Optimizer families (Muon on hidden matrices, AdamW on the rest), schedules, precision and micro-batches."""

import re
from pathlib import Path

import pytest
import torch

from babblelm.cli import main
from babblelm.config import ScheduleSection, load_config
from babblelm.configbase import ConfigError
from babblelm.train import distributed
from babblelm.train.stepper import build_stepper
from babblelm.train.optim import build_optimizer, describe, lr_multiplier, split_parameters

REPO = Path(__file__).resolve().parents[1]


def _cfg(**sections):
    raw = {"data": {"corpus": "unused", "seq_len": 16}, "tokenizer": {"vocab_size": 300},
           "model": {"arch": "transformer", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "intermediate_size": 64, "max_position_embeddings": 16},
           "train": {"batch_size": 4, "grad_accum": 2}}
    for key, values in sections.items():
        raw.setdefault(key, {}).update(values)
    return load_config(raw=raw)


def _model(cfg):
    arch, args = cfg.model_section
    torch.manual_seed(0)
    return arch.model_class(arch.make_config(args, 300, 0, 1, 2))


@pytest.mark.parametrize("tied", [False, True])
def test_muon_gets_hidden_matrices_adamw_the_rest(tied, capsys):
    cfg = _cfg(optim={"name": "muon_adamw", "lr": 5e-4, "muon_lr": 5e-3, "weight_decay": 0.1},
               model={"tie_word_embeddings": tied})
    model = _model(cfg)
    fam = {f: [n for n, _ in ps] for f, ps in split_parameters(model, muon=True).items()}
    hidden = [n for n, p in model.named_parameters() if p.ndim == 2 and ".layers." in n]
    assert sorted(fam["muon"]) == sorted(hidden) and len(hidden) == 2 * 7
    assert "model.embed_tokens.weight" in fam["adamw_plain"]
    assert all(n.endswith("norm.weight") for n in fam["adamw_plain"] if n != "model.embed_tokens.weight")
    assert fam["adamw_decay"] == ([] if tied else ["lm_head.weight"])
    names = [n for f in fam.values() for n in f]
    assert len(names) == len(set(names)) == len({id(p) for p in model.parameters()})

    opt = build_optimizer(model, cfg.optim)
    assert set(opt.optimizers) == {"adamw", "muon"}
    assert isinstance(opt.optimizers["muon"], torch.optim.Muon)
    text = describe(opt)
    assert "muon [muon] peak lr 0.005 wd 0.1" in text and "adamw [adamw_plain] peak lr 0.0005 wd 0" in text
    for name in names:  # every tensor in its group's line, by pattern (layer numbers as *)
        pattern = re.sub(r"\.\d+\.", ".*.", name)
        assert pattern in text, name
    assert "model.layers.*.mlp.up_proj.weight x2" in text and "model.layers.0." not in text
    # one real step moves every parameter family
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    x = torch.randint(0, 300, (2, 16))
    model(input_ids=x, labels=x).loss.backward()
    opt.step()
    assert all(not torch.equal(before[n], p) for n, p in model.named_parameters())


def test_adamw_only_has_no_muon_group():
    cfg = _cfg()
    opt = build_optimizer(_model(cfg), cfg.optim)
    assert list(opt.optimizers) == ["adamw"]
    assert [g["family"] for g in opt.param_groups] == ["adamw_decay", "adamw_plain"]


def test_wsd_schedule_shapes():
    total = 100
    curve = lambda **kw: [lr_multiplier(s, total, ScheduleSection(name="wsd", warmup_steps=10, min_lr_ratio=0.1, **kw))  # noqa: E731
                          for s in range(total)]
    lin = curve(stable_fraction=0.8, decay_shape="linear")
    assert lin[:10] == [pytest.approx((s + 1) / 10) for s in range(10)]
    assert lin[10:80] == [1.0] * 70
    assert lin[-1] == pytest.approx(0.1) and all(a > b for a, b in zip(lin[79:], lin[80:]))
    sqrt, cos = curve(stable_fraction=0.8, decay_shape="1-sqrt"), curve(stable_fraction=0.8, decay_shape="cosine")
    assert sqrt[84] < lin[84] < cos[84]  # a quarter into the decay: 1-sqrt has dropped most, cosine least
    assert sqrt[-1] == pytest.approx(0.1) and cos[-1] == pytest.approx(0.1)
    const = [lr_multiplier(s, total, ScheduleSection(name="constant", warmup_steps=4)) for s in range(total)]
    assert const[3:] == [1.0] * 97
    cosine = [lr_multiplier(s, total, ScheduleSection(name="cosine", warmup_fraction=0.1, min_lr_ratio=0.0)) for s in range(total)]
    assert cosine[9] == 1.0 and cosine[55] == pytest.approx(0.5, abs=0.01)


def test_bad_optimizer_and_schedule_keys_are_named():
    with pytest.raises(ConfigError) as err:
        _cfg(optim={"name": "sgd", "adjust_lr_fn": "x"}, schedule={"decay_shape": "exp", "stable_fraction": 2},
             train={"precision": "fp8", "micro_batch": 0})
    text = str(err.value)
    for key in ("optim.name", "optim.adjust_lr_fn", "schedule.decay_shape", "schedule.stable_fraction",
                "train.precision", "train.micro_batch"):
        assert key in text


def test_presets_load():
    for path in sorted((REPO / "configs").glob("*.yaml")):
        load_config(path)
    cfg = load_config(REPO / "configs" / "llama-26m-muon-wsd.yaml")
    assert (cfg.optim.name, cfg.schedule.name) == ("muon_adamw", "wsd")


def _run_steps(cfg, steps=3):
    model = _model(cfg)
    stepper = build_stepper(cfg, model, torch.device("cpu"), distributed.Dist(), 10, 16)
    torch.manual_seed(1)
    x = torch.randint(0, 300, (8, 16))
    batch = stepper.split(x.numpy())
    return stepper, [stepper(batch).item() for _ in range(steps)]


def test_stepper_precisions_checkpointing_and_micro_batches():
    _, fp32 = _run_steps(_cfg(optim={"name": "muon_adamw"}))
    assert fp32[-1] < fp32[0]
    stepper, ckpt = _run_steps(_cfg(optim={"name": "muon_adamw"}, train={"gradient_checkpointing": True}))
    assert stepper.model.is_activation_checkpointing and ckpt == pytest.approx(fp32, rel=1e-5)
    stepper, micro = _run_steps(_cfg(optim={"name": "muon_adamw"}, train={"micro_batch": 3}))  # 3 -> 2 (divides 8)
    assert (stepper.batch.micro, stepper.batch.accumulation) == (2, 4) and micro == pytest.approx(fp32, rel=1e-4)
    for precision in ("bf16", "fp16"):
        stepper, losses = _run_steps(_cfg(train={"precision": precision}))
        assert (stepper.scaler is not None) == (precision == "fp16")
        assert losses == pytest.approx(fp32, rel=0.05) and losses[-1] < losses[0]


def test_schedule_command_writes_png(tmp_path):
    cfg = REPO / "configs" / "llama-26m-muon-wsd.yaml"
    out = tmp_path / "lr.png"
    assert main(["schedule", str(cfg), "--steps", "500", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000


def test_decay_all_decays_embeddings_and_norms_too():
    for decay_all, plain in ((False, 0.0), (True, 0.1)):
        cfg = _cfg(optim={"weight_decay": 0.1, "decay_all": decay_all})
        groups = {g["family"]: g["weight_decay"] for g in build_optimizer(_model(cfg), cfg.optim).param_groups}
        assert groups == {"adamw_decay": 0.1, "adamw_plain": plain}
