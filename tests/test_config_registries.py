"""Config validation knows the registries: task names (eval/catalog.py), architectures (one parse of the
model section, one default), the keys fixed on resume (a marker on the field); and the one context
limit each architecture's positions give (registry.context_limit), which serving and generation obey."""

import pytest
from contract import tiny_model

from babblelm import config as config_module
from babblelm.cli import build_parser
from babblelm.config import RunConfig, load_config
from babblelm.configbase import ConfigError, to_dict
from babblelm.eval.catalog import ALL_TASKS, GLUE_TASKS
from babblelm.models.registry import DEFAULT_ARCH, context_limit, get, names
from babblelm.serve.engine import Engine
from babblelm.train import changes

RAW = {"data": {"corpus": "x"}}


def test_an_unknown_task_is_refused_at_load_with_the_key_and_the_list():
    with pytest.raises(ConfigError) as err:
        load_config(raw={**RAW, "eval": {"tasks": ["blimp", "blimpp"]}, "optim": {"lr": -1}})
    problems = dict(err.value.problems)
    assert "optim.lr" in problems  # beside the other problems, at once
    message = problems["eval.tasks[1]"]
    assert "'blimpp'" in message and all(name in message for name in ALL_TASKS) and "official" in message
    with pytest.raises(ConfigError, match="eval.tasks: expected at least one task"):
        load_config(raw={**RAW, "eval": {"tasks": []}})
    assert load_config(raw={**RAW, "eval": {"tasks": ["official", "reading"]}}).eval.tasks == ["official", "reading"]


def test_the_command_line_lists_the_catalog():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.choices and "eval" in a.choices).choices
    eval_help = subparsers["eval"].format_help().replace("\n", " ").replace(" ", "")
    assert all(name in eval_help for name in ALL_TASKS)
    assert subparsers["finetune"].parse_args(["m", "--data", "d"]).tasks == ",".join(GLUE_TASKS)
    assert subparsers["demo"].parse_args([]).arch == DEFAULT_ARCH


def test_unknown_architecture_and_the_default_one():
    with pytest.raises(ConfigError, match=r"model.arch: unknown architecture 'nope'; known: " + ", ".join(names())):
        load_config(raw={**RAW, "model": {"arch": "nope"}})
    cfg = load_config(raw=RAW)
    assert cfg.model == {"arch": DEFAULT_ARCH} and cfg.model_section.arch.name == DEFAULT_ARCH
    assert RunConfig().model == {"arch": DEFAULT_ARCH}
    assert load_config(raw={**RAW, "model": {"hidden_size": 96}}).model_section.arch.name == DEFAULT_ARCH


def test_the_model_section_is_parsed_once(monkeypatch):
    calls = []
    parse = config_module.parse_model_section
    monkeypatch.setattr(config_module, "parse_model_section", lambda raw: calls.append(raw) or parse(raw))
    cfg = load_config(raw={**RAW, "model": {"arch": "gpt2", "hidden_size": 64}})
    arch, args = cfg.model_section
    assert (arch.name, args.hidden_size, cfg.model_args.hidden_size) == ("gpt2", 64, 64)
    assert len(calls) == 1
    assert "model_section" not in to_dict(cfg)  # never written to config.yaml


def test_the_fixed_marker_gives_the_keys_that_may_not_change_on_resume():
    assert set(changes.fixed_keys()) == {"run.seed", "data.", "tokenizer.", "model.", "mixing.", "checkpoints.",
                                         "train.batch_size", "train.grad_accum", "train.epochs", "train.words",
                                         "train.steps"}
    with pytest.raises(ValueError, match="train.grad_accum: 1 -> 2 cannot change during a run"):
        changes.check({"train.grad_accum": (1, 2)}, ["train.grad_accum"], "config.yaml")
    with pytest.raises(ValueError, match="data.seq_len: 8 -> 16 cannot change"):
        changes.check({"data.seq_len": (8, 16)}, ["data.seq_len"], "config.yaml")
    changes.check({"train.dev_batch_size": (None, 4), "train.micro_batch": (None, 2)},
                  ["train.dev_batch_size", "train.micro_batch"], "config.yaml")  # how, not what, is trained


@pytest.mark.parametrize("arch", names())
def test_context_limit_follows_the_positions_of_each_architecture(arch):
    spec, config = get(arch).spec, get(arch).tiny_config()
    expected = config.max_position_embeddings if spec.positions == "learned" else None
    model = type("Shell", (), {"config": config})()
    assert context_limit(model) == expected


def test_serving_extends_rotary_positions_and_stops_at_a_learned_table():
    rotary, learned = tiny_model("transformer"), tiny_model("gpt2")
    trained = rotary.config.max_position_embeddings
    assert Engine(rotary, set()).context == trained  # the default: the length it was trained for
    assert Engine(rotary, set(), max_context=4 * trained).context == 4 * trained  # rotary positions extend
    table = learned.config.max_position_embeddings
    assert Engine(learned, set(), max_context=4 * table).context == table
    assert Engine(learned, set(), max_context=table // 2).context == table // 2
