"""The Stream Mixer: chunked scan == recurrence, parallel == step() decoding, the initial time
scales, the 26M preset's size, and `step()` in an exported folder loaded by the official pipeline's
transformers without babblelm. The checks every architecture passes are in tests/contract.py."""

import json
from pathlib import Path

import pytest
import torch

import envs
from babblelm.config import load_config
from babblelm.data.tokenizer import train_tokenizer
from babblelm.export import export_model
from babblelm.models.registry import count_parameters, parameter_breakdown
from babblelm.models.streammixer import StreamMixerConfig, StreamMixerForCausalLM, gated_scan
from contract import random_ids

VOCAB = 97
REPO = Path(__file__).resolve().parents[1]
CARD_PARAMETERS = 26_247_616


SHAPE = dict(hidden_size=32, num_hidden_layers=2, num_streams=6, stream_dim=8, num_read_heads=2, intermediate_size=48,
             scan_chunk_size=4, pad_token_id=0, bos_token_id=1)


def tiny_model(seed: int = 0, **overrides) -> StreamMixerForCausalLM:
    torch.manual_seed(seed)
    return StreamMixerForCausalLM(StreamMixerConfig(**{**SHAPE, "vocab_size": VOCAB, **overrides})).eval()


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
    assert [{k: tuple(v.shape) for k, v in layer.items()} for layer in state.layers] == [{"streams": (3, 6, 8)}] * 2
    assert state.shared == {}  # O(1): the streams are all it keeps


@pytest.mark.parametrize("bad, message", [
    (dict(num_streams=0), "num_streams must be >= 1"),
    (dict(scan_chunk_size=1), "scan_chunk_size must be >= 2"),
    (dict(min_timescale=50.0, max_timescale=10.0), "min_timescale <= max_timescale"),
])
def test_config_rejects_bad_shapes(bad, message):
    with pytest.raises(ValueError, match=message):
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
    arch, args = cfg.model_section
    assert (args.num_hidden_layers, args.hidden_size, args.num_streams, args.stream_dim, args.num_read_heads) == (14, 384, 32, 64, 4)
    with torch.device("meta"):
        model = arch.model_class(arch.make_config(args, cfg.tokenizer.vocab_size, 0, 1, 2))
    n = count_parameters(model)
    for name, count in parameter_breakdown(model).items():
        print(f"{count:>12,}  {name}")
    print(f"total {n:,}; card {CARD_PARAMETERS:,}; difference {n - CARD_PARAMETERS:+,}")
    assert cfg.tokenizer.vocab_size == 16_384 and cfg.data.seq_len == 1024
    assert abs(n - CARD_PARAMETERS) <= 3 * 384 * 14 // 2


STEP_WITHOUT_BABBLELM = r"""
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
enc = AutoTokenizer.from_pretrained(sys.argv[1])(sys.argv[2], return_tensors="pt")
with torch.inference_mode():
    logits = model(**enc).logits
    state = None
    for t in enc["input_ids"][0]:
        step_logits, state = model.step(t[None], state)
print("RESULT " + json.dumps({"module": type(model).__module__, "step_gap": float((step_logits - logits[:, -1]).abs().max()),
                              "seen": state.get_seq_length(), "n": enc["input_ids"].shape[1]}))
"""


def test_step_decoding_works_in_an_export_without_babblelm(tmp_path):
    tokenizer = train_tokenizer(["the dog is here .", "where is the cat ?"] * 50, vocab_size=280, min_frequency=1,
                                out_dir=tmp_path / "tok")
    torch.manual_seed(0)
    model = StreamMixerForCausalLM(StreamMixerConfig(**{**SHAPE, "vocab_size": len(tokenizer)}))
    StreamMixerConfig.register_for_auto_class()
    StreamMixerForCausalLM.register_for_auto_class("AutoModelForCausalLM")
    model.save_pretrained(tmp_path / "checkpoint")
    tokenizer.save_pretrained(tmp_path / "checkpoint")
    out = export_model(tmp_path / "checkpoint", tmp_path / "hf")
    (tmp_path / "step.py").write_text(STEP_WITHOUT_BABBLELM)
    proc = envs.run("official", ["python", tmp_path / "step.py", out, "the dog is here ."], cwd=tmp_path)
    got = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert got["module"].startswith("transformers_modules") and got["step_gap"] < 1e-4 and got["seen"] == got["n"]
