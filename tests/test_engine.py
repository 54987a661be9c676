"""The serving engine (serve/engine.py) and its sampling (serve/sampling.py) below HTTP: prefill in chunks that
never stall running sequences, slots allocated once, the queue bound, cancellation, faults confined to their
pass, and sampling that follows each row's own distribution. Equality of answers alone and in company is a
contract check (tests/contract.py), run for every architecture."""

import collections

import pytest
import torch

from babblelm.serve.engine import Engine, Finished, QueueFull, Token
from babblelm.serve.sampling import Sampler, Sampling, pick
from contract import random_ids, tiny_model


class Recorder:
    """A request's delivered events, and the steps at which its tokens came."""

    def __init__(self, engine: Engine):
        self.engine, self.tokens, self.steps, self.finished, self.errors = engine, [], [], [], []

    def __call__(self, events):
        for event in events:
            if isinstance(event, Token):
                self.tokens.append(event.id)
                self.steps.append(self.engine.steps)
            elif isinstance(event, Finished):
                self.finished.append(event)
            else:
                self.errors.append(event)


def submit(engine: Engine, prompt_len: int, new: int, seed: int = 1, **sampling) -> Recorder:
    recorder = Recorder(engine)
    engine.submit([random_ids(1, prompt_len, seed=seed)[0].tolist()], Sampling(max_new_tokens=new, **sampling),
                  deliver=recorder)
    return recorder


def test_long_prompt_is_prefilled_in_chunks_without_stalling_running_sequences():
    model = tiny_model("transformer")
    engine = Engine(model, set(), max_batch=4, prefill_chunk=4)
    passes = []
    model.register_forward_pre_hook(lambda _, args, kwargs: passes.append(tuple(kwargs["input_ids"].shape)),
                                    with_kwargs=True)
    short = submit(engine, 3, new=30)
    engine.step()
    assert short.steps == [1, 1]  # prefilled, first token picked from the prompt, second decoded: one step
    long = submit(engine, 40, new=3, seed=2)
    while not long.tokens:
        engine.step()
    assert engine.steps == 11 and short.steps[2:] == list(range(2, 12))  # one token every step meanwhile
    prefill = [shape for shape in passes if shape[0] == 1 and shape[1] > 1]
    assert prefill == [(1, 3)] + [(1, 4)] * 10  # the 40-token prompt in chunks of 4, one a step
    engine.run()
    assert len(short.tokens) == 30 and len(long.tokens) == 3
    assert [f.eos for f in short.finished + long.finished] == [False, False]


def test_slots_are_allocated_once_and_bounded():
    model = tiny_model("transformer")
    engine = Engine(model, set(), max_batch=3)
    allocated = engine.cache.nbytes()
    config = model.config
    assert allocated >= 3 * 2 * config.num_hidden_layers * config.max_position_embeddings * config.kv_heads * 8 * 4
    recorders = [submit(engine, 2 + k, new=5 + k, seed=k) for k in range(7)]
    assert engine.load() == (3, 4)  # 3 sequences hold the slots, 4 wait
    peak = 0
    while engine.step():
        peak = max(peak, len(engine.running))
        assert engine.cache.nbytes() == allocated
    assert peak == 3 and engine.load() == (0, 0)
    assert [len(r.tokens) for r in recorders] == [5 + k for k in range(7)]


def test_queue_bound_and_cancellation():
    engine = Engine(tiny_model("streammixer"), set(), max_batch=2, max_queue=1)
    first = engine.submit([[2, 3]], Sampling(max_new_tokens=50, temperature=1.0), n=2)  # takes both slots
    engine.submit([[4]], Sampling(max_new_tokens=5))
    assert engine.load() == (2, 1)
    with pytest.raises(QueueFull, match="1 requests already queued"):
        engine.submit([[5]], Sampling(max_new_tokens=5))
    waiting = engine.waiting[0].ticket
    waiting.cancel()
    assert engine.load() == (2, 0)  # left the queue at once
    engine.step()
    first.stop(1)
    engine.step()
    assert len(engine.running) == 1  # a stopped sequence leaves at the next step
    first.cancel()
    engine.step()
    assert engine.load() == (0, 0) and not engine.step()


def test_a_failing_pass_fails_only_its_requests():
    model = tiny_model("blalm")
    engine = Engine(model, set(), max_batch=4)
    fail = {"on": False}

    def hook(_, args, kwargs):
        if fail["on"]:
            raise RuntimeError("device lost")

    model.register_forward_pre_hook(hook, with_kwargs=True)
    first = submit(engine, 3, new=20)
    engine.step()
    fail["on"] = True
    engine.step()
    fail["on"] = False
    assert [str(e) for e in first.errors] == ["device lost"] and engine.load() == (0, 0)
    second = submit(engine, 4, new=3, seed=3)
    engine.run()
    assert len(second.tokens) == 3 and not second.errors


def test_served_in_a_thread_with_eos():
    model = tiny_model("induction")
    prompt = random_ids(1, 5, seed=4)[0].tolist()
    first = model.generate(torch.tensor([prompt]), max_new_tokens=1, do_sample=False)[0, -1].item()
    engine = Engine(model, {first}, max_batch=2).start()
    try:
        done = collections.deque()
        engine.submit([prompt], Sampling(max_new_tokens=8), deliver=done.extend)
        while not done:
            pass
        assert list(done) == [Finished(0, eos=True)]  # EOS ends the choice and is not delivered
    finally:
        engine.close()


def test_engine_refuses_what_it_cannot_serve():
    with pytest.raises(ValueError, match="max_batch must be >= 1"):
        Engine(tiny_model("transformer"), set(), max_batch=0)
    with pytest.raises(ValueError, match="not a causal language model"):
        Engine(torch.nn.Linear(2, 2), set())
    engine = Engine(tiny_model("transformer"), set(), max_context=10)
    assert engine.context == 10 and engine.cache.max_length == 10


def test_pick_follows_each_rows_distribution():
    """Each row draws from its own tempered, truncated distribution with its own stream: frequencies over many
    draws match the expected probabilities, top-k and top-p keep only their tokens, and greedy rows take the
    argmax whatever the others do."""
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0]])
    settings = [dict(temperature=1.0), dict(temperature=0.5), dict(temperature=1.0, top_k=2),
                dict(temperature=1.0, top_p=0.7), dict(temperature=0.0)]
    draws = 4000
    for k, setting in enumerate(settings):
        samplers = [Sampler(Sampling(seed=k), index=i) for i in range(draws)]
        for sampler in samplers:
            sampler.temperature, sampler.top_k, sampler.top_p = (setting.get("temperature"), setting.get("top_k"),
                                                                 setting.get("top_p"))
        counts = collections.Counter(p.id for p in pick(logits.expand(draws, -1), samplers))
        expected = torch.softmax(logits[0] / max(setting["temperature"], 1e-9), -1)
        if "top_k" in setting:
            expected[2:] = 0
        if "top_p" in setting:
            expected[2:] = 0  # 0.61 above token 1 already reaches 0.7 with it: tokens 0 and 1 are kept
        expected /= expected.sum()
        for token in range(5):
            assert counts[token] / draws == pytest.approx(float(expected[token]), abs=0.03), (setting, counts)


def test_pick_reports_logprobs_and_repeats_with_a_seed():
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    settings = Sampling(temperature=0.8, top_k=10, seed=7)
    first = pick(logits, [Sampler(settings, index=i, logprobs=3) for i in range(3)])
    again = pick(logits, [Sampler(settings, index=i, logprobs=3) for i in range(3)])
    assert first == again
    logp = torch.log_softmax(logits, -1)
    for row, chosen in enumerate(first):
        assert chosen.logprob == pytest.approx(float(logp[row, chosen.id]), abs=1e-5)
        assert [i for i, _ in chosen.top] == logp[row].topk(3).indices.tolist()
    assert pick(logits, [Sampler(Sampling(), logprobs=0)])[0].top == []
    huge = Sampler(Sampling(temperature=1.0, top_k=10**30, top_p=1e-300, seed=1))
    assert pick(logits[:1], [huge])[0].id == int(logits[0].argmax())  # top_p that small keeps only the best


def test_greedy_choices_share_one_sequence():
    """n greedy choices have one answer: one slot decodes it, and each choice gets every event."""
    engine = Engine(tiny_model("induction"), set(), max_batch=1)
    events = []
    ticket = engine.submit([[2, 3, 4]], Sampling(max_new_tokens=3), n=4, logprobs=1, deliver=events.extend)
    assert engine.load() == (1, 0)
    engine.run()
    rows = collections.defaultdict(list)
    for event in events:
        rows[event.row].append((event.id, event.logprob) if isinstance(event, Token) else event.eos)
    assert list(rows) == [0, 1, 2, 3] and all(rows[r] == rows[0] for r in rows) and len(rows[0]) == 4
    ticket.stop(0)
    assert not ticket.sequences[0].stopped  # the other choices still want it


def test_a_model_of_another_architecture_is_decoded_one_slot_at_a_time():
    """transformers' own model of a shape babblelm lacks (a Llama with biases) goes through the same engine, each
    slot in a pass of its own: greedy choices equal transformers' generate, and seeded samples (forked from one
    prompt) are the same alone or among other requests."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, attention_bias=True, pad_token_id=0)).eval()
    engine = Engine(model, set(), max_batch=6, prefill_chunk=3)
    assert not engine.batched
    prompts = [random_ids(1, 2 + 3 * k, seed=k)[0].tolist() for k in range(3)]
    expected = [model.generate(torch.tensor([p]), max_new_tokens=6, do_sample=False)[0, len(p):].tolist()
                for p in prompts]
    greedy = [Recorder(engine) for _ in prompts]
    for prompt, recorder in zip(prompts, greedy):
        engine.submit([prompt], Sampling(max_new_tokens=6), deliver=recorder)

    def samples(engine):
        rows = collections.defaultdict(list)
        deliver = lambda events: [rows[e.row].append(e.id) for e in events if isinstance(e, Token)]  # noqa: E731
        engine.submit([prompts[1]], Sampling(max_new_tokens=5, temperature=1.0, seed=3), n=3, deliver=deliver)
        return rows

    together = samples(engine)
    engine.run()
    assert [r.tokens for r in greedy] == expected
    alone = Engine(model, set(), max_batch=3)
    single = samples(alone)
    alone.run()
    assert together == single and sorted(single) == [0, 1, 2] and len(set(map(tuple, single.values()))) > 1
