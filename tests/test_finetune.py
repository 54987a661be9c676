"""GLUE fine-tuning's pooling under each rule set, for every architecture, and the reuse of its results.

The official classifier reads `AutoModel(...).last_hidden_state` at one position: the last one of a
left-padded batch under the 2026 rules (`--padding_side left --take_final`), the first one of a
right-padded batch under the 2025 defaults. tests/test_contract.py checks the same states against an
export read the official way in the pipeline's pinned environment."""

import json
import random

import pytest
import torch
from transformers import AutoTokenizer

import contract
from babblelm.data.synthetic import Grammar
from babblelm.data.tokenizer import train_tokenizer
from babblelm.eval.finetune import POOLING, SequenceClassifier, classifier, finetune_tasks
from babblelm.models.registry import names
from eval_fixtures import write_jsonl

BOS = 1


@pytest.mark.parametrize("arch", names())
def test_2026_pooling_reads_each_sequence_s_last_real_token(arch):
    decoder = contract.tiny_model(arch).model
    seqs = [torch.cat([torch.tensor([[BOS]]), contract.random_ids(1, n, seed=n)], dim=1) for n in (4, 9, 6)]
    alone = torch.cat([decoder(input_ids=s, use_cache=False).last_hidden_state[:, -1] for s in seqs])
    ids, mask = contract.padded_batch(seqs, "left")
    with torch.no_grad():
        pooled = SequenceClassifier(decoder, 2, POOLING["2026"][1]).pooled(ids, mask)
    torch.testing.assert_close(pooled, alone.detach(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", names())
def test_2025_pooling_reads_the_first_position_the_same_state_for_every_text(arch):
    """The 2025 default (`take_final` off, right padding) hands the head the state after BOS alone."""
    decoder = contract.tiny_model(arch).model
    seqs = [torch.cat([torch.tensor([[BOS]]), contract.random_ids(1, n, seed=n)], dim=1) for n in (4, 9)]
    ids, mask = contract.padded_batch(seqs, "right")
    with torch.no_grad():
        pooled = SequenceClassifier(decoder, 2, POOLING["2025"][1]).pooled(ids, mask)
        bos = decoder(input_ids=torch.tensor([[BOS]]), use_cache=False).last_hidden_state[:, 0]
    torch.testing.assert_close(pooled, bos.expand_as(pooled), atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny Transformer checkpoint with a babblelm tokenizer (its pair template joins the two texts)."""
    folder = tmp_path_factory.mktemp("model")
    grammar = Grammar(random.Random(0))
    train_tokenizer([" ".join(grammar.utterance()) for _ in range(500)], vocab_size=300, min_frequency=2, out_dir=folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = contract.tiny_model("transformer", vocab=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def glue(tmp_path_factory):
    folder = tmp_path_factory.mktemp("glue")
    rows = [{"sentence1": a, "sentence2": b, "label": y}
            for a, b, y in [("the dog runs .", "a dog runs .", 0), ("the cat sees the ball .", "who sees it ?", 1)] * 3]
    write_jsonl(folder / "rte.train.jsonl", rows)
    write_jsonl(folder / "rte.valid.jsonl", rows[:4])
    return folder


def test_classifier_pads_on_the_side_its_rules_read(model_dir):
    for rules, (side, position) in POOLING.items():
        model, tokenizer = classifier(model_dir, 2, rules)
        assert tokenizer.padding_side == side and model.position == position
        enc = tokenizer(["the dog runs ."], ["who sees the ball on the mat ?"], return_tensors="pt")
        assert enc["input_ids"][0, 0] == tokenizer.bos_token_id  # the pair template: BOS a EOS BOS b
        assert (enc["input_ids"][0] == tokenizer.bos_token_id).sum() == 2
    with pytest.raises(ValueError, match="unknown rules '2024'; known: 2026, 2025"):
        classifier(model_dir, 2, "2024")


def test_results_record_their_rules_and_are_reused_when_nothing_changed(model_dir, glue, tmp_path):
    logs = []
    options = dict(epochs=1, batch_size=4, device="cpu", progress=False, log=logs.append)
    first = finetune_tasks(model_dir, ["rte"], glue, tmp_path, **options)["rte"]
    assert first["rules"] == "2026" and first["padding_side"] == "left" and first["pooled_position"] == -1
    assert first["inputs"]["rules"] == "2026" and first["inputs"]["epochs"] == 1
    again = finetune_tasks(model_dir, ["rte"], glue, tmp_path, **options)["rte"]
    assert again == json.loads((tmp_path / "rte.json").read_text()) and logs[-1].startswith("reusing ")
    old = finetune_tasks(model_dir, ["rte"], glue, tmp_path, rules="2025", **options)["rte"]
    assert logs[-1] == "fine-tuning rte again: rules 2026 -> 2025"
    assert old["padding_side"] == "right" and old["pooled_position"] == 0 and len(old["predictions"]) == 4
