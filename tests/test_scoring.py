"""Batched scoring against a hand-computed single-sequence reference, on a tiny random Llama."""

import random

import pytest
import torch

from babblelm.eval import scoring
from babblelm.eval.scoring import score_continuations, sentence_logprobs
from eval_fixtures import CORPUS, make_model, make_tokenizer

def reference_score(model, tokenizer, context: str, completion: str) -> float:
    """The definition, one sequence at a time: float64 log-softmax, a Python loop over target tokens."""
    encoding = tokenizer(context + completion, return_offsets_mapping=True)
    ids, offsets = encoding["input_ids"], encoding["offset_mapping"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    logprobs = torch.log_softmax(logits, dim=-1)
    total = 0.0
    for position in range(1, len(ids)):
        if offsets[position][1] > len(context):
            total += logprobs[position - 1, ids[position]].item()
    return total


ITEMS = [
    ("", "The cat sat on the mat."),
    ("", "Who did the cat see?"),
    ("", "A dog ran to the old house and the children were playing in the garden."),
    ("The cat sat on", " the mat."),
    ("Who did the cat", " see near the house?"),
]


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_batched_scores_match_single_sequence_reference(model, tokenizer, batch_size):
    expected = [reference_score(model, tokenizer, *item) for item in ITEMS]
    got = score_continuations(model, tokenizer, ITEMS, batch_size=batch_size)
    assert got == pytest.approx(expected, abs=1e-4)
    assert len({round(score, 3) for score in got}) == len(ITEMS)  # distinct items, distinct scores: order kept


def test_sentence_logprobs_is_whole_sentence_scoring(model, tokenizer):
    sentences = [completion for context, completion in ITEMS if context == ""]
    assert sentence_logprobs(model, tokenizer, sentences, batch_size=2) == pytest.approx(
        [reference_score(model, tokenizer, "", s) for s in sentences], abs=1e-4
    )


def test_first_token_is_never_scored(model, tokenizer):
    assert tokenizer("")["input_ids"] == [1]  # BOS only
    assert score_continuations(model, tokenizer, [("", ""), ("", "The cat sat.")], batch_size=2)[0] == 0.0
    no_bos = make_tokenizer(with_bos=False)
    assert len(no_bos("The")["input_ids"]) == 1
    one_word, two_words = sentence_logprobs(model, no_bos, ["The", "The cat"])
    assert one_word == 0.0
    assert two_words == pytest.approx(reference_score(model, no_bos, "", "The cat"), abs=1e-4)
    assert two_words < 0.0


def test_straddling_token_counts_as_completion(model, tokenizer):
    encoding = tokenizer("The cat sat.", return_offsets_mapping=True)
    assert (3, 7) in encoding["offset_mapping"]  # " cat" is one token, spanning the boundary after "The ca"
    straddling, aligned, shorter = score_continuations(
        model, tokenizer, [("The ca", "t sat."), ("The", " cat sat."), ("The cat", " sat.")]
    )
    assert straddling == aligned  # " cat" is scored although only its "t" is completion
    assert straddling == pytest.approx(reference_score(model, tokenizer, "The ca", "t sat."), abs=1e-4)
    assert straddling < shorter


def test_identical_items_get_identical_scores_and_training_mode_is_restored(tokenizer):
    model = make_model(len(tokenizer), seed=1).train()
    scores = score_continuations(model, tokenizer, [("", "The cat sat.")] * 3 + [("", "A dog.")], batch_size=2)
    assert scores[0] == scores[1] == scores[2] != scores[3]
    assert model.training


def test_empty_and_bad_items(model, tokenizer):
    assert score_continuations(model, tokenizer, []) == []
    with pytest.raises(TypeError, match=r"items\[1\]"):
        score_continuations(model, tokenizer, [("", "ok"), ("only one",)])
    with pytest.raises(ValueError, match="batch_size"):
        score_continuations(model, tokenizer, [("", "ok")], batch_size=0)


def test_load_model_and_tokenizer_round_trip(model, tokenizer, tmp_path):
    pytest.importorskip("babblelm.models.transformer")  # register_auto_classes needs the registry's modules
    from babblelm.eval.load import load_model_and_tokenizer

    model.save_pretrained(tmp_path / "hf")
    no_pad = make_tokenizer()
    no_pad.pad_token = None
    no_pad.save_pretrained(tmp_path / "hf")
    loaded, loaded_tokenizer = load_model_and_tokenizer(tmp_path / "hf", device="cpu")
    assert not loaded.training and loaded_tokenizer.padding_side == "right"
    assert loaded_tokenizer.pad_token_id == loaded_tokenizer.eos_token_id == 2
    assert score_continuations(loaded, loaded_tokenizer, ITEMS) == score_continuations(model, tokenizer, ITEMS)

    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_model_and_tokenizer(tmp_path / "empty")
    (tmp_path / "hf" / "tokenizer.json").unlink()
    (tmp_path / "hf" / "tokenizer_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        load_model_and_tokenizer(tmp_path / "hf")


OPTIONS = (" the mat.", " a dog ran to the old house.", " cat.", " the children were playing in the garden.")


def grouped_items(n_groups: int, options=OPTIONS, seed: int = 0) -> tuple[list[tuple[str, str]], list[int]]:
    """Distinct contexts of 12 to 20 corpus words; group g's items: the context before each of its
    2 + g % 3 first `options` (all of them when there are two)."""
    rng = random.Random(seed)
    words = " ".join(CORPUS).replace(".", "").replace("?", "").split()
    items, groups = [], []
    for group in range(n_groups):
        context = " ".join(rng.choice(words) for _ in range(rng.randint(12, 20)))
        for option in options[: 2 + group % 3]:
            items.append((context, option))
            groups.append(group)
    return items, groups


@pytest.mark.parametrize("batch_size", [1, 2, 3, 64])
def test_shared_prefix_scores_match_reference(model, tokenizer, batch_size, monkeypatch):
    items, groups = grouped_items(7)
    shared_runs = []
    score_shared = scoring._score_shared
    monkeypatch.setattr(scoring, "_score_shared", lambda *args: shared_runs.append(1) or score_shared(*args))
    got = score_continuations(model, tokenizer, items, batch_size=batch_size, groups=groups)
    assert shared_runs  # the cached path ran
    assert got == pytest.approx([reference_score(model, tokenizer, *item) for item in items], abs=1e-4)
    assert got == pytest.approx(score_continuations(model, tokenizer, items, batch_size=batch_size), abs=1e-4)


def test_shared_prefix_batches_groups_and_keeps_to_batch_size(model, tokenizer):
    """40 groups of 2 options at batch size 16: 3 prefix passes (16, 16, 8 groups) and 5 continuation
    passes of at most 16 rows, not two passes per group."""
    items, groups = grouped_items(40, options=(" the mat.", " cat."))
    rows = []
    hook = model.register_forward_pre_hook(lambda _, args, kwargs: rows.append(len(kwargs["input_ids"])),
                                           with_kwargs=True)
    try:
        shared = score_continuations(model, tokenizer, items, batch_size=16, groups=groups)
    finally:
        hook.remove()
    assert sorted(rows) == [8, 16, 16, 16, 16, 16, 16, 16]
    assert shared == pytest.approx(score_continuations(model, tokenizer, items, batch_size=16), abs=1e-4)


def test_short_shared_prefixes_are_scored_whole(tokenizer):
    """A chunk whose cached run would compute more token positions than its whole texts goes plain."""
    short = [("The", " cat."), ("The", " cat sat on the mat and the dog ran to the old house.")]
    long = [("A dog ran to the cat and the cats ran away. Who did the cat", " see?"),
            ("A dog ran to the cat and the cats ran away. Who did the cat", " see near the house?")]
    for items, shared in ((short, False), (long, True)):
        chunks, plain = scoring._shared_chunks(scoring.encode_items(tokenizer, items), [0, 0], batch_size=2)
        assert ([chunk.members for chunk in chunks], sorted(plain)) == (([[1, 0]], []) if shared else ([], [0, 1]))


def test_model_without_cache_falls_back_to_whole_texts(model, tokenizer):
    class LogitsOnly(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, input_ids, attention_mask, **_):
            return (self.inner(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits,)

    items, groups = grouped_items(5)
    got = score_continuations(LogitsOnly(), tokenizer, items, batch_size=4, groups=groups)
    assert got == pytest.approx(score_continuations(model, tokenizer, items, batch_size=4), abs=1e-5)
