"""Checks that every architecture must pass, shared by the model test files: generation with the
cache equals recomputation, and padding (left or right) changes nothing for the real tokens."""

import torch


def random_ids(*shape, seed: int = 1, vocab: int = 97) -> torch.Tensor:
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


@torch.no_grad()
def assert_greedy_generate_equals_recomputation(model, prompt: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """`generate` with the cache picks, token for token, what a full forward pass over the whole
    sequence so far picks; returns the generated sequence."""
    generated = model.generate(prompt, max_new_tokens=new_tokens, do_sample=False, use_cache=True)
    seq = prompt
    for _ in range(new_tokens):
        seq = torch.cat([seq, model(seq, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(generated, seq)
    return seq


@torch.no_grad()
def assert_left_padded_generate_matches_single_prompts(model, prompts: list[torch.Tensor], new_tokens: int = 6):
    """A left-padded batch generates for each row what that prompt generates alone."""
    ids, mask = padded_batch(prompts, "left")
    together = model.generate(ids, attention_mask=mask, max_new_tokens=new_tokens, do_sample=False)
    for row, prompt in enumerate(prompts):
        alone = model.generate(prompt, max_new_tokens=new_tokens, do_sample=False)
        assert torch.equal(together[row, -new_tokens:], alone[0, -new_tokens:])


@torch.no_grad()
def assert_padded_batch_matches_unpadded(model, seqs: list[torch.Tensor], side: str):
    """The logits of a padded batch at the real positions equal each sequence's logits alone."""
    ids, mask = padded_batch(seqs, side)
    logits = model(ids, attention_mask=mask, use_cache=False).logits
    assert torch.isfinite(logits).all()
    for row, s in enumerate(seqs):
        torch.testing.assert_close(logits[row][mask[row].bool()], model(s, use_cache=False).logits[0], atol=1e-5, rtol=0)
