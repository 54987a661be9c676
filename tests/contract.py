"""Every check an architecture must pass, as functions of its registry name.

tests/test_contract.py runs each of them over every registered architecture and over a minimal
extra one added the documented way (tests/minimal_arch.py), so a new architecture is covered by
adding it to the registry. Models are the registry's tiny shape with small random perturbations of
every weight (so gates, sinks and memory slots that start at 0 matter too), over a small vocabulary
so that tokens repeat.
"""

from __future__ import annotations

import logging
import warnings

import pytest
import torch

from babblelm.models.layers import CACHE_ARG
from babblelm.models.registry import count_parameters, get

VOCAB = 23


def tiny_model(arch: str, seed: int = 0, vocab: int = VOCAB, **overrides):
    torch.manual_seed(seed)
    model = get(arch).model_class(get(arch).tiny_config(vocab_size=vocab, **overrides))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    return model.eval()


def random_ids(*shape, seed: int = 1, vocab: int = VOCAB) -> torch.Tensor:
    """Token ids in [2, vocab): 0 and 1 stay free for padding and BOS."""
    return torch.randint(2, vocab, shape, generator=torch.Generator().manual_seed(seed))


def padded_batch(seqs: list[torch.Tensor], side: str, pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, n) sequences -> (ids, 0/1 mask), padded on `side` to the longest."""
    width = max(s.shape[-1] for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, s in enumerate(seqs):
        cols = slice(width - s.shape[-1], width) if side == "left" else slice(0, s.shape[-1])
        ids[row, cols], mask[row, cols] = s.flatten(), 1
    return ids, mask


def cache_of(output):
    return output.get(CACHE_ARG)


@torch.no_grad()
def check_causal(arch: str) -> None:
    """Changing a token never changes the logits before it, and does change some after it."""
    model, ids = tiny_model(arch), random_ids(2, 30, vocab=6)
    base = model(ids, use_cache=False).logits
    for t in (0, 7, 15, 29):
        changed = ids.clone()
        changed[:, t] = (changed[:, t] + 1) % 4 + 2
        logits = model(changed, use_cache=False).logits
        torch.testing.assert_close(logits[:, :t], base[:, :t], atol=1e-6, rtol=0)
        assert not torch.allclose(logits[:, t:], base[:, t:])


@torch.no_grad()
def check_padding(arch: str, side: str) -> None:
    """The logits of a padded batch at the real positions equal each sequence's logits alone."""
    model = tiny_model(arch)
    seqs = [random_ids(1, n, seed=n) for n in (5, 19, 11, 3)]
    ids, mask = padded_batch(seqs, side)
    logits = model(ids, attention_mask=mask, use_cache=False).logits
    assert torch.isfinite(logits).all()
    for row, s in enumerate(seqs):
        torch.testing.assert_close(logits[row][mask[row].bool()], model(s, use_cache=False).logits[0], atol=1e-5, rtol=0)


@torch.no_grad()
def check_cached_chunks(arch: str) -> None:
    """Feeding a text in pieces (single tokens and chunks) through the cache gives the full logits."""
    model, ids = tiny_model(arch), random_ids(2, 24, vocab=7)
    full = model(ids, use_cache=False).logits
    out = model(ids[:, :6], use_cache=True)
    pieces, cache = [out.logits], cache_of(out)
    for start, stop in [(6, 7), (7, 12), (12, 13), (13, 14), (14, 24)]:
        out = model(ids[:, start:stop], use_cache=True, **{CACHE_ARG: cache})
        assert cache_of(out) is cache  # updated in place
        pieces.append(out.logits)
    assert cache.get_seq_length() == cache.seen_tokens == 24
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=0)


@torch.no_grad()
def check_generate(arch: str) -> None:
    """Greedy `generate` with the cache picks what recomputing the whole text picks, token by token,
    and what `generate` without a cache picks."""
    model, prompt, new = tiny_model(arch), random_ids(2, 6, vocab=7), 12
    generated = model.generate(prompt, max_new_tokens=new, do_sample=False, use_cache=True)
    seq = prompt
    for _ in range(new):
        seq = torch.cat([seq, model(seq, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(generated, seq)
    assert torch.equal(model.generate(prompt, max_new_tokens=new, do_sample=False, use_cache=False), seq)


@torch.no_grad()
def check_left_padded_generate(arch: str) -> None:
    """A left-padded batch generates for each row what that prompt generates alone."""
    model, new = tiny_model(arch), 8
    prompts = [random_ids(1, 4, seed=2, vocab=7), random_ids(1, 9, seed=3, vocab=7)]
    ids, mask = padded_batch(prompts, "left")
    together = model.generate(ids, attention_mask=mask, max_new_tokens=new, do_sample=False)
    for row, prompt in enumerate(prompts):
        alone = model.generate(prompt, max_new_tokens=new, do_sample=False)
        assert torch.equal(together[row, -new:], alone[0, -new:])


@torch.no_grad()
def check_beam_search(arch: str) -> None:
    """Beam search reorders the cache: with it, the beams are those found without it."""
    model, prompt = tiny_model(arch), random_ids(2, 5, vocab=7)
    with_cache = model.generate(prompt, max_new_tokens=6, num_beams=3, do_sample=False, use_cache=True)
    assert torch.equal(with_cache, model.generate(prompt, max_new_tokens=6, num_beams=3, do_sample=False,
                                                  use_cache=False))


def check_shared_prefix_scoring(arch: str, tokenizer) -> None:
    """Scoring options after a shared context through one cached prefix equals scoring whole texts."""
    from babblelm.eval.scoring import score_continuations

    model = tiny_model(arch, vocab=len(tokenizer))
    items, groups = [], []
    for g, context in enumerate(["the dog sees", "where is the little", "a cat is on the mat and the"]):
        for option in [" ball .", " cat", " red ball on the mat ."]:
            items.append((context, option))
            groups.append(g)
    whole = score_continuations(model, tokenizer, items, batch_size=4)
    shared = score_continuations(model, tokenizer, items, batch_size=4, groups=groups)
    assert shared == pytest.approx(whole, abs=1e-4)


@torch.no_grad()
def check_slot_decoding(arch: str) -> None:
    """Sequences of different lengths in the slots of a SlotCache: prefilled alone, together and in
    chunks, then decoded one token per row in one forward pass, with a finished sequence's slot
    refilled by a move and a sequence forked into a free slot between passes. Every row's logits
    equal its own text recomputed alone; the slots are allocated by the first pass, never again."""
    model = tiny_model(arch)
    cache, texts = model.slot_cache(slots=6, max_length=40), {}

    def feed(start: int, new: torch.Tensor) -> None:
        """One forward pass over slots [start, start + rows) with `new` (rows, seq) tokens."""
        out = model(new, use_cache=True, logits_to_keep=1, **{CACHE_ARG: cache.select(start, start + len(new))})
        for row, slot in enumerate(range(start, start + len(new))):
            texts[slot] = torch.cat([texts.get(slot, new[:0, 0]), new[row]])
            alone = model(texts[slot][None], use_cache=False).logits[0, -1]
            torch.testing.assert_close(out.logits[row, -1], alone, atol=1e-5, rtol=0, msg=f"slot {slot}")

    def decode(rows: int, seed: int) -> None:
        feed(0, random_ids(rows, 1, seed=seed, vocab=7))

    feed(0, random_ids(1, 3, seed=2, vocab=7))  # alone
    allocated = cache.nbytes()
    assert allocated > 0
    feed(1, random_ids(2, 5, seed=3, vocab=7))  # two prompts of one length together
    text = random_ids(1, 14, seed=4, vocab=7)
    for start, stop in [(0, 6), (6, 7), (7, 14)]:  # a long prompt in chunks
        feed(3, text[:, start:stop])
    for step in range(4):  # rows at lengths 3, 5, 5 and 14 onwards
        decode(4, seed=10 + step)
    cache.copy_slot(3, 1)  # slot 1's sequence finished: the last one moves in
    texts[1] = texts.pop(3)
    cache.free(3)
    cache.copy_slot(0, 3)  # slot 0 forks into slot 3
    texts[3] = texts[0].clone()
    feed(4, random_ids(1, 4, seed=5, vocab=7))  # a new sequence from a fresh slot
    for step in range(5):
        decode(5, seed=20 + step)
    assert cache.nbytes() == allocated
    with pytest.raises(ValueError, match="mix fresh and continuing"):
        cache.select(4, 6)


SAMPLES = [8, 2, 6, 4, 8, 1, 6, 3, 8, 2, 6, 4, 8, 1, 6, 3]  # n of 16 requests: odd ones greedy (n choices, one
# sequence), even ones sampled (n sequences): 64 sequences at once


def serve_requests(model, tokenizer, requests: list[tuple], max_batch: int,
                   leaving: str | None = None) -> list[list[tuple[str, str]]]:
    """(text, finish reason) of every choice of each (prompt, Sampling, n, stop strings) request, all
    submitted at once to the engine of `babble serve` (prompts prefilled in chunks of 8 tokens).

    With `leaving`, a greedy request for that prompt comes first and is cancelled after the first step
    (a client gone mid-stream): it gets nothing more, and its slot goes at the next step to the sequence
    that was waiting for one."""
    from babblelm.serve.choices import Completion
    from babblelm.serve.engine import Engine, Token
    from babblelm.serve.sampling import Sampling

    engine = Engine(model, {tokenizer.eos_token_id}, max_batch=max_batch, prefill_chunk=8)
    if leaving is not None:
        left = []
        ticket = engine.submit([tokenizer(leaving).input_ids], Sampling(max_new_tokens=50), deliver=left.extend)
    completions = []
    for prompt, sampling, n, stops in requests:
        completion = Completion(tokenizer, [prompt], n, stops, logprobs=False)
        completion.ticket = engine.submit([tokenizer(prompt).input_ids], sampling, n, deliver=completion.feed)
        completions.append(completion)
    if leaving is not None:
        assert engine.load() == (max_batch, 1)  # every slot taken, one sequence waiting
        engine.step()
        got = len(left)
        assert got and all(isinstance(e, Token) for e in left) and ticket.sequences[0] in engine.running
        ticket.cancel()
        engine.step()
        assert ticket.sequences[0] not in engine.running and engine.load() == (max_batch, 0)  # its slot taken over
        assert len(left) == got  # no token after the cancellation
    engine.run()
    assert all(c.done for c in completions)
    return [[(choice.text, choice.finish_reason) for choice in c.choices] for c in completions]


def check_served_alone_and_together(arch: str, tokenizer) -> None:
    """16 requests of different prompt lengths (some prefilled in several chunks), n (64 sequences, each
    among 63 others) and stop strings, half greedy and half sampled with a seed (top-k, top-p): served
    together, every choice's text and finish reason equal the request's served alone, also while a
    65th sequence waits for a slot that a client leaving mid-stream frees."""
    from babblelm.serve.sampling import Sampling

    model = tiny_model(arch, vocab=len(tokenizer))
    words = "the little dog sees where the red ball is and a cat says she likes it on the mat".split()
    requests = []
    for i, n in enumerate(SAMPLES):
        sampling = Sampling(max_new_tokens=6 + i % 9, temperature=0.0 if i % 2 else 0.9,
                            top_k=20 if i % 4 == 2 else None, top_p=0.8 if i % 4 == 0 else None, seed=i)
        requests.append((" ".join(words[: 1 + (i * 7) % 17]), sampling, n, []))
    plain = serve_requests(model, tokenizer, requests, max_batch=8)
    for i, choices in enumerate(plain):  # a stop string from the text itself, so that it ends the choice
        text = choices[0][0]
        if i % 3 == 0 and len(text) > 4:
            requests[i] = (*requests[i][:3], [text[len(text) // 2: len(text) // 2 + 2], "\n\n"])
    alone = [serve_requests(model, tokenizer, [request], max_batch=8)[0] for request in requests]
    assert serve_requests(model, tokenizer, requests, max_batch=64) == alone
    assert serve_requests(model, tokenizer, requests, max_batch=64, leaving="the cat") == alone
    cut = [(choices[0], full[0][0]) for (*_, stops), choices, full in zip(requests, alone, plain) if stops]
    assert cut and all(reason == "stop" and len(text) < len(whole) for (text, reason), whole in cut)
    sampled = [choices for (_, sampling, n, _), choices in zip(requests, alone) if sampling.temperature and n > 2]
    assert any(len(set(choices)) > 1 for choices in sampled)  # each sample draws from its own stream


@torch.no_grad()
def check_state_size(arch: str) -> None:
    """A "constant" decoding state keeps its size token after token; a "growing" one grows."""
    model = tiny_model(arch)
    out = model(random_ids(1, 5), use_cache=True)
    cache, sizes = cache_of(out), []
    for token in random_ids(1, 30, seed=4).T:
        model(token[:, None], use_cache=True, **{CACHE_ARG: cache})
        sizes.append(cache.nbytes())
    if get(arch).spec.state == "constant":
        assert len(set(sizes)) == 1, sizes
    else:
        assert sizes[-1] > sizes[0]


@torch.no_grad()
def check_long_inputs(arch: str, caplog) -> None:
    """Past max_position_embeddings: rotary positions extend (one warning per model); a learned
    position table fails with a message naming the limit; models without positions just run."""
    positions = get(arch).spec.positions
    model = tiny_model(arch)
    limit = getattr(model.config, "max_position_embeddings", 64)
    ids = random_ids(1, limit + 20)
    if positions == "learned":
        with pytest.raises(ValueError, match=f"exceeds max_position_embeddings={limit}"):
            model(ids)
        return
    with caplog.at_level(logging.WARNING):
        logits = model(ids, use_cache=False).logits
        model(ids, use_cache=False)
    assert torch.isfinite(logits).all() and logits.shape[1] == limit + 20
    warned = [r for r in caplog.records if "max_position_embeddings" in r.getMessage()]
    assert len(warned) == (1 if positions == "rotary" else 0)
    head = model(ids[:, :limit], use_cache=False).logits  # extension leaves the trained positions alone
    torch.testing.assert_close(logits[:, :limit], head, atol=1e-5, rtol=0)


def check_gradient_checkpointing(arch: str) -> None:
    """Gradient checkpointing recomputes the layers in the backward pass and gives the same gradients."""
    model, ids = tiny_model(arch), random_ids(2, 16, vocab=7)
    model.train()
    calls = []
    model.model.layers[0].register_forward_pre_hook(lambda *_: calls.append(1))  # the recompute may stop early

    def grads():
        model.zero_grad()
        model(ids, labels=ids).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = grads()
    assert len(calls) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # v5 alias of activation_checkpointing_enable
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    checkpointed = grads()
    assert len(calls) == 3  # forward, then recomputed during backward
    assert checkpointed.keys() == plain.keys()
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, atol=1e-6, rtol=1e-5, msg=name)


@torch.no_grad()
def check_outputs(arch: str) -> None:
    """Hidden states, logits_to_keep, tuple outputs, ignored extra arguments and the loss."""
    model, ids = tiny_model(arch), random_ids(3, 10)
    out = model(ids, output_hidden_states=True, use_cache=False)
    assert len(out.hidden_states) == model.config.num_hidden_layers + 1
    torch.testing.assert_close(model.lm_head(out.hidden_states[-1]), out.logits)
    torch.testing.assert_close(model(ids, logits_to_keep=1).logits, out.logits[:, -1:])
    assert torch.equal(model(ids, use_cache=False, return_dict=False)[0], out.logits)
    extra = model(ids, attention_mask=torch.ones_like(ids), token_type_ids=torch.zeros_like(ids), use_cache=False,
                  cache_position=torch.arange(10), some_future_flag="x").logits
    torch.testing.assert_close(extra, out.logits, atol=1e-6, rtol=0)
    labels = ids.clone()
    labels[0, :4] = -100
    labels[2, 7:] = -100
    loss = model(ids, labels=labels).loss
    log_probs = out.logits[:, :-1].log_softmax(-1)
    targets, keep = labels[:, 1:], labels[:, 1:] != -100
    token_nll = -log_probs.gather(-1, targets.clamp_min(0)[..., None])[..., 0]
    assert torch.allclose(loss, token_nll[keep].sum() / keep.sum(), atol=1e-6)


def check_bad_inputs(arch: str) -> None:
    """A mask of the wrong shape and a shape that cannot build a model are one-line errors."""
    model, ids = tiny_model(arch), random_ids(2, 5)
    with pytest.raises(ValueError, match=r"attention_mask must be .* \(2, 5\), got shape \(2, 7\)"):
        model(ids, attention_mask=torch.ones(2, 7, dtype=torch.long))
    with pytest.raises(ValueError, match="num_hidden_layers must be >= 1, got 0"):
        get(arch).tiny_config(num_hidden_layers=0)


def check_tied_embeddings(arch: str) -> None:
    """Tied embeddings share one tensor with the output head; untied ones add vocab x hidden weights."""
    tied, untied = tiny_model(arch, tie_word_embeddings=True), tiny_model(arch, tie_word_embeddings=False)
    assert tied.lm_head.weight is tied.model.embed_tokens.weight
    assert untied.lm_head.weight.data_ptr() != untied.model.embed_tokens.weight.data_ptr()
    assert count_parameters(untied) - count_parameters(tied) == VOCAB * tied.config.hidden_size


def check_training_and_resume(arch: str, corpus, tmp_path) -> None:
    """A tiny run's loss falls and every checkpoint and export records the run's hyperparameters;
    interrupted and resumed, the run ends with bitwise the same weights."""
    import json

    from safetensors.torch import load_file

    from babblelm.config import load_config
    from babblelm.export import export_model
    from babblelm.train.launch import train
    from conftest import tiny_raw

    def raw(out):
        settings = tiny_raw(corpus, out, train={"epochs": 0.5})
        settings["model"] = {"arch": arch, **get(arch).spec.tiny}
        return settings

    full = train(load_config(raw=raw(tmp_path / "full")), progress=False)
    losses = [r["loss"] for r in map(json.loads, (tmp_path / "full" / "metrics.jsonl").read_text().splitlines())
              if "loss" in r]
    assert losses[-1] < losses[0] - 1.0, losses
    hparams = json.loads((full.final_dir / "hyperparameters.json").read_text())
    assert set(hparams) == {"model", "optim", "schedule", "train"}
    assert hparams["model"]["arch"] == arch and hparams["optim"]["lr"] == 3e-3
    milestone = sorted((tmp_path / "full").glob("checkpoints/chck_*"))[0]
    assert json.loads((milestone / "hyperparameters.json").read_text()) == hparams
    exported = export_model(tmp_path / "full", tmp_path / "hf")
    assert json.loads((exported / "hyperparameters.json").read_text()) == hparams
    cfg = load_config(raw=raw(tmp_path / "cut"))
    assert train(cfg, progress=False, stop_after_steps=5).interrupted
    resumed = train(cfg, resume=True, progress=False)
    assert (resumed.steps, resumed.words_seen) == (full.steps, full.words_seen)
    a, b = load_file(full.final_dir / "model.safetensors"), load_file(resumed.final_dir / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
