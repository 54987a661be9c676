"""Run configuration: every problem reported at once with its key path; overrides; saved config."""

import pytest
import yaml

from babblelm.config import load_config, save_config
from babblelm.configbase import ConfigError, apply_overrides

PRESET = "configs/llama-26m.yaml"


def test_preset_loads_with_typed_values():
    cfg = load_config(PRESET)
    assert cfg.optim.lr == pytest.approx(3e-4)
    assert cfg.train.global_batch == 64
    assert cfg.model["hidden_size"] == 384 and cfg.model_args.num_attention_heads == 6


def test_all_problems_reported_at_once_with_key_paths():
    raw = {
        "data": {"corpus": "x", "seq_len": "long", "colour": "red"},
        "optim": {"lr": -1.0},
        "train": {"epochs": 11, "batch_size": 0},
        "model": {"arch": "transformer", "hidden_size": "big", "depth": 3},
        "bogus": 1,
    }
    with pytest.raises(ConfigError) as err:
        load_config(raw=raw)
    paths = {p for p, _ in err.value.problems}
    assert {"data.seq_len", "data.colour", "optim.lr", "train.epochs", "train.batch_size",
            "model.hidden_size", "model.depth", "bogus"} <= paths
    text = str(err.value)
    assert "must be <= 10" in text and "unknown key; allowed keys" in text and "expected an integer" in text


def test_unknown_architecture_lists_known_ones():
    with pytest.raises(ConfigError, match="unknown architecture 'nope'; known: .*transformer"):
        load_config(raw={"data": {"corpus": "x"}, "model": {"arch": "nope"}})


def test_architecture_own_checks_reported():
    with pytest.raises(ConfigError, match="model"):
        load_config(raw={"data": {"corpus": "x"}, "model": {"hidden_size": 100, "num_attention_heads": 6}})


def test_seq_len_must_fit_positions():
    with pytest.raises(ConfigError, match="data.seq_len: must be <= model.max_position_embeddings"):
        load_config(PRESET, overrides=["data.seq_len=1024"])


def test_overrides_parse_yaml_values_and_create_keys():
    cfg = load_config(PRESET, overrides=["optim.lr=5e-4", "train.epochs=2", "data.filters=[]", "run.name=x"])
    assert cfg.optim.lr == pytest.approx(5e-4) and cfg.train.epochs == 2.0 and cfg.data.filters == []
    assert str(cfg.out_dir) == "runs/x"
    with pytest.raises(ConfigError, match="key.path=value"):
        apply_overrides({}, ["optim.lr"])
    with pytest.raises(ConfigError, match="train.epochs: must be <= 10"):
        load_config(PRESET, overrides=["train.epochs=12"])


def test_bad_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(PRESET, overrides=["optim.lr=4e-4"])
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg
    assert yaml.safe_load((tmp_path / "c.yaml").read_text())["optim"]["lr"] == pytest.approx(4e-4)


def test_set_takes_several_overrides_and_repeats():
    from babblelm.cli import build_parser

    args = build_parser().parse_args(["train", "run.yaml", "--set", "optim.lr=1e-3", "train.epochs=2", "--set", "run.seed=3"])
    assert args.config == "run.yaml" and args.set == ["optim.lr=1e-3", "train.epochs=2", "run.seed=3"]


def test_eval_rules_default_to_2026_and_read_the_year_as_a_number():
    assert load_config(PRESET).eval.rules == "2026"
    assert load_config(PRESET, overrides=["eval.rules=2025"]).eval.rules == "2025"  # YAML reads 2025 as a number
    with pytest.raises(ConfigError, match=r"eval\.rules: expected one of '2026', '2025', got 2024"):
        load_config(PRESET, overrides=["eval.rules=2024"])


def test_include_reads_the_other_file_first(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({"data": {"corpus": "c", "seq_len": 64}, "optim": {"lr": 1e-3},
                                                        "mixing": {"languages": {"eng": {}, "nld": {}}, "eta": 0.3}}))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "run.yaml").write_text("include: ../base.yaml\noptim: {lr: 2.0e-3}\nmixing: {eta: 0.5}\n")
    cfg = load_config(tmp_path / "sub" / "run.yaml", ["data.seq_len=32"])
    assert (cfg.optim.lr, cfg.data.seq_len, cfg.data.corpus) == (2e-3, 32, "c")  # this file's values, then --set, win
    assert cfg.mixing.eta == 0.5 and list(cfg.mixing.languages) == ["eng", "nld"]  # mappings merged key by key
    (tmp_path / "loop.yaml").write_text("include: loop.yaml\n")
    with pytest.raises(ConfigError, match="loop.yaml: include: .*loop.yaml includes itself"):
        load_config(tmp_path / "loop.yaml")
    (tmp_path / "missing.yaml").write_text("include: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="missing.yaml: include: config file not found: .*nowhere.yaml"):
        load_config(tmp_path / "missing.yaml")


def test_threads_as_asked_else_the_free_cores(monkeypatch, tmp_path):
    """`run.threads` / `--threads N` as given; else OMP_NUM_THREADS; else the cores other processes leave
    free (at least 1); `babble train --threads` records it in the run's config and applies it."""
    import torch

    from babblelm import device
    from babblelm.cli import _load_cfg, build_parser

    assert device.cpu_threads(3) == (3, "as asked")
    with pytest.raises(ValueError, match="at least 1"):
        device.cpu_threads(0)
    with pytest.raises(ConfigError, match="run.threads: must be >= 1"):
        load_config(PRESET, overrides=["run.threads=0"])
    assert 0.0 <= device.busy_cores() <= len(device.os.sched_getaffinity(0))  # measured from /proc/stat
    monkeypatch.setattr(device.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    for busy, threads in ((0.1, 2), (1.0, 1), (1.9, 1)):
        monkeypatch.setattr(device, "busy_cores", lambda busy=busy: busy)
        assert device.cpu_threads(None) == (threads, f"auto: 2 cores, {busy:.1f} busy with other work"), busy
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert device.cpu_threads(None) == (1, "OMP_NUM_THREADS")

    before = torch.get_num_threads()
    try:
        args = build_parser().parse_args(["train", str(PRESET), "--threads", "1"])
        assert _load_cfg(args).run.threads == 1 and torch.get_num_threads() == 1
        args = build_parser().parse_args(["train", str(PRESET), "--set", "run.threads=2"])
        assert _load_cfg(args).run.threads == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
