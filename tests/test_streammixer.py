"""The Stream Mixer: chunked scan == recurrence, parallel == step() decoding, generate with state ==
recomputation, causality, padding, the 26M preset's size, training on real text and export as
remote code without babblelm."""

import json
from pathlib import Path

import pytest
import torch
from huggingface_hub.errors import StrictDataclassError

from babblelm.config import load_config
from babblelm.export import export_model
from babblelm.models.registry import count_parameters, parameter_breakdown, parse_model_section
from babblelm.models.streammixer import StreamMixerConfig, StreamMixerForCausalLM, gated_scan
from babblelm.train.loop import train
from conftest import tiny_raw
from model_checks import (assert_greedy_generate_equals_recomputation, assert_left_padded_generate_matches_single_prompts,
                          assert_padded_batch_matches_unpadded, random_ids)
from remote_code import run_without_babblelm

VOCAB = 97
REPO = Path(__file__).resolve().parents[1]
CARD_PARAMETERS = 26_247_616


def tiny_model(seed: int = 0, **overrides) -> StreamMixerForCausalLM:
    shape = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_streams=6, stream_dim=8,
                 num_read_heads=2, intermediate_size=48, scan_chunk_size=4, pad_token_id=0, bos_token_id=1)
    torch.manual_seed(seed)
    return StreamMixerForCausalLM(StreamMixerConfig(**{**shape, **overrides})).eval()


@pytest.mark.parametrize("length", [1, 3, 4, 17, 70])  # one chunk, padded chunks, three levels of chunks
def test_chunked_scan_equals_the_recurrence(length):
    g = torch.Generator().manual_seed(length)
    log_a = torch.nn.functional.logsigmoid(3 * torch.randn(2, length, 5, generator=g, dtype=torch.float64))
    x, h0 = torch.randn(2, length, 5, 3, generator=g, dtype=torch.float64), torch.randn(2, 5, 3, generator=g, dtype=torch.float64)
    h, expected = h0, []
    for t in range(length):
        h = log_a[:, t].exp()[..., None] * h + x[:, t]
        expected.append(h)
    torch.testing.assert_close(gated_scan(log_a, x, h0, chunk=4), torch.stack(expected, 1), atol=1e-10, rtol=1e-10)


def test_scan_is_stable_on_long_sequences_with_strong_decay():
    log_a = torch.full((1, 5000, 2), -30.0)  # exp(-L) would overflow a naive cumulative form at once
    log_a[:, :, 1] = -1e-4  # a stream that keeps almost everything
    x = torch.ones(1, 5000, 2, 1)
    h = gated_scan(log_a, x, None, chunk=64)
    assert torch.isfinite(h).all()
    torch.testing.assert_close(h[0, -1, 0, 0], torch.tensor(1.0))
    expected = (1 - torch.exp(torch.tensor(-1e-4 * 5000, dtype=torch.float64))) / (1 - torch.exp(torch.tensor(-1e-4, dtype=torch.float64)))
    assert h[0, -1, 1, 0].item() == pytest.approx(expected.item(), rel=1e-4)


@torch.no_grad()
def test_parallel_logits_equal_sequential_step_logits():
    model, ids = tiny_model(), random_ids(3, 41)
    full = model(ids).logits
    state, steps = None, []
    for t in range(ids.shape[1]):
        logits, state = model.step(ids[:, t], state)
        steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-4, rtol=0)
    assert state.get_seq_length() == 41
    assert [tuple(s.shape) for s in state.streams] == [(3, 6, 8)] * 2  # O(1): streams only


@torch.no_grad()
def test_chunked_prefill_with_state_equals_full_sequence():
    model, ids = tiny_model(), random_ids(2, 30)
    full = model(ids, use_cache=False).logits
    out = model(ids[:, :9], use_cache=True)
    pieces, state = [out.logits], out.past_key_values
    for start, stop in [(9, 10), (10, 23), (23, 30)]:
        out = model(ids[:, start:stop], past_key_values=state, use_cache=True)
        pieces.append(out.logits)
        state = out.past_key_values
    torch.testing.assert_close(torch.cat(pieces, 1), full, atol=1e-5, rtol=0)


@torch.no_grad()
def test_greedy_generate_with_state_equals_recomputation():
    model, prompt = tiny_model(), random_ids(2, 6)
    seq = assert_greedy_generate_equals_recomputation(model, prompt, new_tokens=12)
    assert torch.equal(model.generate(prompt, max_new_tokens=12, do_sample=False, use_cache=False), seq)


@torch.no_grad()
def test_beam_search_reorders_the_state():
    model, prompt = tiny_model(), random_ids(2, 5)
    with_state = model.generate(prompt, max_new_tokens=6, num_beams=3, do_sample=False, use_cache=True)
    assert torch.equal(with_state, model.generate(prompt, max_new_tokens=6, num_beams=3, do_sample=False, use_cache=False))


def test_later_tokens_do_not_influence_earlier_logits():
    model, ids = tiny_model(), random_ids(1, 20)
    embeds = model.model.embed_tokens(ids).detach().requires_grad_()
    model(inputs_embeds=embeds).logits[0, 11].sum().backward()
    grad_per_position = embeds.grad[0].abs().sum(-1)
    assert (grad_per_position[12:] == 0).all() and (grad_per_position[:12] > 0).all()


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batch_matches_unpadded_sequences(side):
    assert_padded_batch_matches_unpadded(tiny_model(), [random_ids(1, n, seed=n) for n in (5, 11, 3)], side)


def test_left_padded_generate_matches_single_prompts():
    assert_left_padded_generate_matches_single_prompts(tiny_model(), [random_ids(1, 4, seed=2), random_ids(1, 7, seed=3)])


def test_bad_attention_mask_shape_is_a_clear_error():
    model, ids = tiny_model(), random_ids(2, 5)
    with pytest.raises(ValueError, match=r"attention_mask must be .* \(2, 5\)"):
        model(ids, attention_mask=torch.ones(2, 7))


@pytest.mark.parametrize("bad, message", [
    (dict(num_streams=0), "num_streams must be >= 1"),
    (dict(scan_chunk_size=1), "scan_chunk_size must be >= 2"),
    (dict(min_timescale=50.0, max_timescale=10.0), "min_timescale <= max_timescale"),
])
def test_config_rejects_bad_shapes(bad, message):
    with pytest.raises(StrictDataclassError, match=message):
        StreamMixerConfig(**bad)


def test_initial_gates_spread_the_streams_over_time_scales():
    gate = tiny_model(min_timescale=2.0, max_timescale=512.0).model.layers[0].mixer.write_gate
    keep = torch.sigmoid(gate.bias.detach())
    torch.testing.assert_close(-1 / torch.log(keep[[0, -1]]), torch.tensor([2.0, 512.0]), rtol=1e-3, atol=0)


def test_preset_parameter_count_is_the_cards():
    """The card's count is not reachable exactly from its stated shapes with this layer; the
    tunable width is the FFN (each unit costs 3 x 384 x 14 = 16,128 parameters), so the best
    possible width lands within half a unit: |difference| <= 8,064."""
    cfg = load_config(REPO / "configs" / "streammixer-26m.yaml")
    arch, args = parse_model_section(cfg.model)
    assert (args.num_hidden_layers, args.hidden_size, args.num_streams, args.stream_dim, args.num_read_heads) == (14, 384, 32, 64, 4)
    with torch.device("meta"):
        model = arch.model_class(arch.make_config(args, cfg.tokenizer.vocab_size, 0, 1, 2))
    n = count_parameters(model)
    for name, count in parameter_breakdown(model).items():
        print(f"{count:>12,}  {name}")
    print(f"total {n:,}; card {CARD_PARAMETERS:,}; difference {n - CARD_PARAMETERS:+,}")
    assert cfg.tokenizer.vocab_size == 16_384 and cfg.data.seq_len == 1024
    assert abs(n - CARD_PARAMETERS) <= 3 * 384 * 14 // 2


LOAD_WITHOUT_BABBLELM = r"""
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
tok = AutoTokenizer.from_pretrained(sys.argv[1], trust_remote_code=True)
enc = tok(sys.argv[2], return_tensors="pt")
with torch.inference_mode():
    logits = model(**enc).logits
    out = model.generate(**enc, max_new_tokens=8, do_sample=False)
    state, stepped = None, []
    for t in enc["input_ids"][0]:
        step_logits, state = model.step(t[None], state)
print("RESULT " + json.dumps({"module": type(model).__module__, "logits_sum": float(logits.double().sum()),
                              "generated": out[0].tolist(), "step_gap": float((step_logits - logits[:, -1]).abs().max())}))
"""


def test_trains_with_falling_loss_and_exports_as_remote_code(small_corpus, tmp_path):
    model_section = {"arch": "streammixer", "hidden_size": 32, "num_hidden_layers": 2, "num_streams": 8,
                     "stream_dim": 8, "num_read_heads": 2, "intermediate_size": 64, "scan_chunk_size": 8}
    raw = tiny_raw(small_corpus, tmp_path / "run", train={"epochs": 0.5})
    raw["model"] = model_section
    result = train(load_config(raw=raw), progress=False)
    losses = [r["loss"] for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert losses[-1] < losses[0] - 1.0

    out = export_model(result.run_dir, tmp_path / "hf")
    assert {"streammixer.py", "layers.py"} <= {p.name for p in out.iterdir()}
    text = "the dog is here ."
    got = run_without_babblelm(LOAD_WITHOUT_BABBLELM, [out, text], tmp_path)
    assert got["module"].startswith("transformers_modules") and got["step_gap"] < 1e-4

    model = StreamMixerForCausalLM.from_pretrained(result.final_dir).eval()
    from transformers import AutoTokenizer

    enc = AutoTokenizer.from_pretrained(out)(text, return_tensors="pt")
    with torch.inference_mode():
        assert got["logits_sum"] == pytest.approx(model(**enc).logits.double().sum().item(), rel=1e-5, abs=1e-3)
        assert got["generated"] == model.generate(**enc, max_new_tokens=8, do_sample=False)[0].tolist()
