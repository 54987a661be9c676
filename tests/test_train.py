"""Training loop: milestones at exact word counts, atomic checkpoints, exact resume."""

import json

import pytest
import torch
from safetensors.torch import load_file

from babblelm.config import load_config, save_config
from babblelm.train import checkpoints as ckpt
from babblelm.train.launch import train
from babblelm.train.plan import make_plan
from conftest import tiny_raw


def _weights(folder):
    return load_file(folder / "model.safetensors")


def test_training_reduces_loss_and_writes_milestones(small_corpus, tmp_path):
    cfg = load_config(raw=tiny_raw(small_corpus, tmp_path / "run"))
    result = train(cfg, progress=False)
    assert not result.interrupted and (result.final_dir / "model.safetensors").exists()
    records = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses[-1] < losses[0] - 1.0
    assert any("dev_loss" in r for r in records)
    assert (tmp_path / "run" / "config.yaml").exists()

    # every milestone checkpoint sits at the first step whose words seen reach N x 1M x scale
    from babblelm.data.blocks import load_blocks

    blocks = load_blocks(tmp_path / "run" / "data", "train")
    plan = make_plan(blocks.words, 16, 1.0, None, 7)
    names = sorted((d.name for d in (tmp_path / "run" / "checkpoints").glob("chck_*M")), key=lambda n: int(n[5:-1]))
    assert len(names) >= 3
    for name in names:
        state = ckpt.read_trainer_state(tmp_path / "run" / "checkpoints" / name)
        threshold = int(name[5:-1]) * 1_000_000 * 0.002
        assert state["milestone"] == name
        assert state["words_seen"] == plan.cum_words[state["step"]] >= threshold
        assert state["step"] == 0 or plan.cum_words[state["step"] - 1] < threshold
    assert result.words_seen == plan.total_words


def test_resume_without_checkpoint_is_a_clear_error(small_corpus, tmp_path):
    cfg = load_config(raw=tiny_raw(small_corpus, tmp_path / "c"))
    with pytest.raises(FileNotFoundError, match="holds no run"):
        train(cfg, resume=True, progress=False)
    (tmp_path / "c").mkdir()
    save_config(cfg, tmp_path / "c" / "config.yaml")
    with pytest.raises(FileNotFoundError, match="no checkpoint with resume state"):
        train(cfg, resume=True, progress=False)


def test_checkpoint_write_is_atomic(small_corpus, tmp_path):
    run = tmp_path / "run"
    train(load_config(raw=tiny_raw(small_corpus, run, train={"epochs": 0.2})), progress=False)
    final = run / "checkpoints" / "final"
    before = _weights(final)
    from transformers import AutoTokenizer

    from babblelm.models.registry import arch_for_folder

    model = arch_for_folder(final).model_class.from_pretrained(final)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)

    class Exploding:
        def save_pretrained(self, path):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(final, model, Exploding(), {"step": 0})
    after = _weights(final)  # the old checkpoint is untouched, no temp folder is left
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    ckpt.save_checkpoint(final, model, AutoTokenizer.from_pretrained(final), {"step": 0})
    assert not torch.equal(_weights(final)[next(iter(before))], before[next(iter(before))])
