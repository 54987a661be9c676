"""The step scheduler behind `babble serve` and `babble generate`: continuous batching over a SlotCache.

One loop owns the model (`serve_forever` until closed, `start` for that in a thread, `run` until the work
is done). A request submits its prompts x n sequences and gets a `Ticket`; every step the loop

1. retires the sequences that were stopped (a stop string appeared, the client went away) and gives
   the freed slots to waiting sequences, first come first served (`max_batch` slots, and at most
   `max_queue` requests waiting: `submit` refuses more with `QueueFull`);
2. runs at most one prefill pass over the prompts being started: several prompts of one length
   together (each distinct prompt once, whichever requests sent it), a longer prompt alone in
   chunks of `prefill_chunk` tokens over successive steps, so that no prompt holds up the running
   sequences by more than one chunk. A complete prompt's last logits give each of its sequences its
   first token, and its state is copied into the slots of its other sequences (`n` samples);
3. runs one forward pass over every running sequence of every request, one token each, wherever
   each one stands in its text, and picks each row's token with its own settings
   (sampling.pick); a sequence ends at EOS or at its `max_new_tokens`, and its slot goes back;
4. hands each request its step's `Token` and `Finished` events (`deliver`, called from the loop).

Running sequences occupy slots [0, R) of the cache (a finished sequence's slot takes the last
one), and the prompts being prefilled the slots right after, so that each pass reads contiguous
slots. The cache's memory is allocated when the engine is built, for all slots at once.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass
from typing import Callable

import torch

from ..models.registry import context_limit
from .foreign import ForeignModel
from .sampling import Pick, Sampler, Sampling, pick


@dataclass
class Token:
    """One generated token of choice `row` of a request."""

    row: int
    id: int
    logprob: float | None = None
    top: list[tuple[int, float]] | None = None  # the most likely (id, logprob) at this step


@dataclass
class Finished:
    """Choice `row` ended: at EOS (not delivered as a token), else at its max_new_tokens."""

    row: int
    eos: bool


class QueueFull(Exception):
    """`max_queue` requests already wait for slots."""


def eos_ids(model, tokenizer) -> set[int]:
    """The ids that end a sequence: the model's generation config, else the tokenizer's EOS."""
    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    return set(eos if isinstance(eos, list) else [] if eos is None else [eos])


class _Sequence:
    """What a request decodes in one slot: its prompt, sampler and progress, for the choices `rows` (one,
    or the n choices of a greedy prompt: they have one answer)."""

    __slots__ = ("ticket", "rows", "open", "prompt", "sampler", "max_new", "produced", "next_id", "stopped", "ended")

    def __init__(self, ticket: Ticket, rows: list[int], prompt: list[int], sampler: Sampler, max_new: int):
        self.ticket, self.rows, self.prompt, self.sampler, self.max_new = ticket, rows, prompt, sampler, max_new
        self.open = set(rows)  # the choices nobody has stopped
        self.produced, self.next_id, self.stopped, self.ended = 0, None, False, False


class _Prompt:
    """A prompt being prefilled in `slot`, `fed` tokens so far, for the sequences that share it."""

    __slots__ = ("ids", "sequences", "slot", "fed")

    def __init__(self, ids: list[int], sequences: list[_Sequence], slot: int):
        self.ids, self.sequences, self.slot, self.fed = ids, sequences, slot, 0


class Ticket:
    """A request's sequences inside the engine: `stop(row)` ends choice `row` (its sequence's slot is freed
    at the next step), `cancel()` ends all of them (and removes any still waiting at once)."""

    def __init__(self, engine: Engine, deliver: Callable[[list], None]):
        self.engine, self.deliver, self.sequences, self.by_row = engine, deliver, [], {}

    def stop(self, row: int) -> None:
        seq = self.by_row[row]
        seq.open.discard(row)
        seq.stopped = not seq.open

    def cancel(self) -> None:
        self.engine._cancel(self)


class Engine:
    """Continuous batching of every request's sequences over `model`'s SlotCache (module docstring).

    `max_batch`: slots (sequences decoded at once); `max_context`: positions per slot (default: the
    length the model was trained for, its `max_position_embeddings`, if any; bounded by a learned position
    table, `registry.context_limit`, while rotary positions extend past it); `max_queue`: requests that may wait for slots (None: no
    bound); `prefill_chunk`: prompt tokens per prefill pass. A model of an architecture babblelm does
    not implement is decoded one slot at a time (foreign.py; `batched` False).
    """

    def __init__(self, model, stop_ids: set[int], max_batch: int = 16, max_context: int | None = None,
                 max_queue: int | None = None, prefill_chunk: int = 128):
        for name, value in (("max_batch", max_batch), ("prefill_chunk", prefill_chunk), ("max_context", max_context)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.batched = hasattr(model, "slot_cache")
        if not self.batched:
            if not hasattr(model, "generation_config"):
                raise ValueError(f"{type(model).__name__} is not a causal language model (a babblelm or transformers "
                                 "model)")
            model = ForeignModel(model)  # another architecture: decoded one slot at a time
        limits = [c for c in (context_limit(model), max_context) if c is not None]
        self.model, self.stop_ids, self.device = model, stop_ids, model.device
        self.max_batch, self.max_queue, self.prefill_chunk = max_batch, max_queue, prefill_chunk
        self.context = min(limits) if limits else getattr(model.config, "max_position_embeddings", None)
        self.cache = model.slot_cache(max_batch, self.context)
        self.lock = threading.Condition()
        self.waiting: collections.deque[_Sequence] = collections.deque()  # no slot yet
        self.admitted: collections.deque[_Sequence] = collections.deque()  # a slot reserved, prompt not started
        self.group: list[_Prompt] = []  # prompts being prefilled, in slots after the running ones
        self.running: list[_Sequence] = []  # running[i] decodes in slot i
        self.reserved = 0  # slots held by admitted, prefilling and running sequences
        self.steps = 0
        self._thread: threading.Thread | None = None
        self._closing = False
        self._forward(0, torch.zeros(1, 1, dtype=torch.long))  # allocates every slot's state now
        self.cache.free(0)

    # --- requests (any thread) ---------------------------------------------------------------------------

    def submit(self, prompts: list[list[int]], sampling: Sampling, n: int = 1, logprobs: int | None = None,
               deliver: Callable[[list], None] = lambda events: None) -> Ticket:
        """Queue `n` choices of each prompt (choice k * n + r is sample r of prompt k; a greedy prompt's n
        choices are one sequence, delivered n times); `deliver` gets each step's events for them. Raises
        QueueFull when the request would wait behind `max_queue` others."""
        ticket = Ticket(self, deliver)
        copies = n if Sampler(sampling).temperature == 0 else 1
        for k, ids in enumerate(prompts):
            for r in range(0, n, copies):
                rows = list(range(k * n + r, k * n + r + copies))
                seq = _Sequence(ticket, rows, list(ids), Sampler(sampling, rows[0], logprobs), sampling.max_new_tokens)
                ticket.sequences.append(seq)
                ticket.by_row.update(dict.fromkeys(rows, seq))
        with self.lock:
            must_wait = self.waiting or self.reserved + len(ticket.sequences) > self.max_batch
            if must_wait and self.max_queue is not None and self._queued() >= self.max_queue:
                raise QueueFull(f"server busy: {self._queued()} requests already queued; retry later")
            self.waiting.extend(ticket.sequences)
            self._admit()
            self.lock.notify()
        return ticket

    def load(self) -> tuple[int, int]:
        """(sequences holding slots, sequences waiting for one)."""
        with self.lock:
            return self.reserved, len(self.waiting)

    def _cancel(self, ticket: Ticket) -> None:
        with self.lock:
            for seq in ticket.sequences:
                seq.stopped = True
            self.waiting = collections.deque(s for s in self.waiting if s.ticket is not ticket)
            kept = collections.deque(s for s in self.admitted if s.ticket is not ticket)
            self.reserved -= len(self.admitted) - len(kept)
            self.admitted = kept
            self.lock.notify()

    def _queued(self) -> int:
        return len({id(s.ticket) for s in self.waiting})

    def _admit(self) -> None:
        while self.waiting and self.reserved < self.max_batch:
            self.admitted.append(self.waiting.popleft())
            self.reserved += 1

    # --- the loop ------------------------------------------------------------------------------------------

    def start(self) -> Engine:
        """Run `serve_forever` in a background thread; `close` stops it."""
        self._thread = threading.Thread(target=self.serve_forever, name="babble-engine", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        with self.lock:
            self._closing = True
            self.lock.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def run(self) -> None:
        """Run the loop in this thread until every submitted sequence has ended."""
        while self.step():
            pass

    def serve_forever(self) -> None:
        """Step whenever there is work, until `close`. Best in the thread that loaded the model: torch's OpenMP
        threads serve the thread that started them (on 2 cores a pass of the demo model takes 3x longer from
        another thread)."""
        while True:
            with self.lock:
                while not self._closing and not (self.running or self.group or self.admitted or self.waiting):
                    self.lock.wait()
                if self._closing:
                    return
            try:
                self.step()
            except Exception as err:  # a fault of the loop itself: every sequence fails, the engine goes on
                self._fail_all(err)

    def step(self) -> bool:
        """One step (module docstring); False when there was nothing to do."""
        events: dict[Ticket, list] = collections.defaultdict(list)
        with self.lock:
            self._retire([s for s in self.running if s.stopped])
            self._admit()
            if not self.group and self.admitted:
                self._start_prompts()
            if not (self.group or self.running):
                return bool(self.waiting)
        if self.group:
            self._guarded(self._prefill, [s for p in self.group for s in p.sequences], events)
        with self.lock:
            self._retire([s for s in self.running if s.ended])
        if self.running:
            self._guarded(self._decode, list(self.running), events)
        with self.lock:
            self._retire([s for s in self.running if s.ended])
            self.steps += 1
        for ticket, items in events.items():
            try:
                ticket.deliver(items)
            except Exception:  # nobody listens any more
                ticket.cancel()
        return True

    def _start_prompts(self) -> None:
        """Take the admitted sequences to prefill next: the first one's prompt, the other prompts of its
        length if it fits in one chunk (up to `prefill_chunk` tokens in all), and every sequence sharing
        one of those prompts; each distinct prompt gets a fresh slot after the running ones."""
        head = len(self.admitted[0].prompt)
        together = head <= self.prefill_chunk
        prompts: dict[tuple, _Prompt] = {}
        rest = collections.deque()
        for seq in self.admitted:
            key = tuple(seq.prompt)
            if key in prompts:
                prompts[key].sequences.append(seq)
            elif not prompts or (together and len(key) == head and (len(prompts) + 1) * head <= self.prefill_chunk):
                prompts[key] = _Prompt(seq.prompt, [seq], len(self.running) + len(prompts))
            else:
                rest.append(seq)
        self.admitted, self.group = rest, list(prompts.values())

    def _prefill(self, events: dict) -> None:
        """One chunk of the prompts being started; when they are complete, their sequences join the running."""
        fed, length = self.group[0].fed, len(self.group[0].ids)
        size = min(self.prefill_chunk, length - fed)
        chunk = torch.tensor([p.ids[fed: fed + size] for p in self.group])
        logits = self._forward(self.group[0].slot, chunk)
        for prompt in self.group:
            prompt.fed += size
        if fed + size < length:
            return
        sequences = [s for p in self.group for s in p.sequences]
        rows = torch.tensor([k for k, p in enumerate(self.group) for _ in p.sequences], device=logits.device)
        for seq, chosen in zip(sequences, pick(logits[rows], [s.sampler for s in sequences])):
            if not seq.stopped:
                self._emit(seq, chosen, events)
        with self.lock:
            self._join()

    def _join(self) -> None:
        """The prefilled prompts' live sequences become running: each prompt's state moves down to the next
        running slot and is copied into further slots for the prompt's other sequences."""
        end = self.group[-1].slot + 1
        forks = []
        for prompt in self.group:
            live = [s for s in prompt.sequences if not (s.stopped or s.ended)]
            self.reserved -= len(prompt.sequences) - len(live)
            if live:
                slot = len(self.running)
                self.cache.copy_slot(prompt.slot, slot)  # never above: earlier prompts' slots are lower
                self.running.append(live[0])
                forks.append((slot, live[1:]))
        for slot in range(len(self.running), end):
            self.cache.free(slot)
        for slot, sequences in forks:
            for seq in sequences:
                self.cache.copy_slot(slot, len(self.running))
                self.running.append(seq)
        self.group = []

    def _decode(self, events: dict) -> None:
        """One token for every running sequence, in one forward pass."""
        running = self.running
        logits = self._forward(0, torch.tensor([[s.next_id] for s in running]))
        for seq, chosen in zip(running, pick(logits, [s.sampler for s in running])):
            if not seq.stopped:
                self._emit(seq, chosen, events)

    def _forward(self, start: int, ids: torch.Tensor) -> torch.Tensor:
        """The next-token logits (rows, vocab) of slots [start, start + rows) fed `ids` (rows, tokens)."""
        with torch.no_grad():  # not inference_mode: the slots are rearranged outside the pass
            out = self.model(input_ids=ids.to(self.device), cache=self.cache.select(start, start + len(ids)),
                             use_cache=True, logits_to_keep=1)
        return out.logits[:, -1].float()

    def _emit(self, seq: _Sequence, chosen: Pick, events: dict) -> None:
        out = events[seq.ticket]
        if chosen.id in self.stop_ids:
            seq.ended = True
            out += [Finished(row, eos=True) for row in seq.rows]
            return
        seq.produced += 1
        seq.next_id = chosen.id
        out += [Token(row, chosen.id, chosen.logprob, chosen.top) for row in seq.rows]
        if seq.produced >= seq.max_new:
            seq.ended = True
            out += [Finished(row, eos=False) for row in seq.rows]

    def _retire(self, sequences: list[_Sequence]) -> None:
        """Free the slots of running `sequences`: the last running sequence moves into each."""
        index = {id(s): i for i, s in enumerate(self.running)}
        for slot in sorted((index[id(s)] for s in sequences), reverse=True):
            last = len(self.running) - 1
            if slot != last:
                self.cache.copy_slot(last, slot)
                self.running[slot] = self.running[last]
            self.running.pop()
            self.cache.free(last)
            self.reserved -= 1

    def _guarded(self, work: Callable[[dict], None], sequences: list[_Sequence], events: dict) -> None:
        """Run a pass; if it fails, its sequences fail (their requests get the error) and leave their slots."""
        try:
            work(events)
        except Exception as err:
            with self.lock:
                for seq in sequences:
                    seq.ended = True
                    events[seq.ticket].append(err)
                if self.group and self.group[0].sequences[0] in sequences:
                    self.reserved -= sum(len(p.sequences) for p in self.group)
                    for prompt in self.group:
                        self.cache.free(prompt.slot)
                    self.group = []

    def _fail_all(self, err: Exception) -> None:
        with self.lock:
            sequences = [*self.waiting, *self.admitted, *(s for p in self.group for s in p.sequences), *self.running]
            self.waiting.clear()
            self.admitted.clear()
            self.group, self.running, self.reserved = [], [], 0
            for slot in range(self.max_batch):
                self.cache.free(slot)
        for ticket in {id(s.ticket): s.ticket for s in sequences}.values():
            try:
                ticket.deliver([err])
            except Exception:
                pass
