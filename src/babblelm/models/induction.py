"""Conv-Routed Induction LM: attention split into a local dynamic convolution and an exact-match
induction mixer, so no layer ever builds a T x T matrix.

Each layer has three pre-norm residual sub-blocks:

1. Dynamic Conv: three stacked causal depthwise convolutions (kernel 3, dilations 1, 2, 4 by
   default, so about 15 tokens of reach) whose softmax-normalised kernels are predicted per
   position and per channel group from the token's own state; the result is gated.
2. Induction Mixer: for every position, the last M earlier positions holding the same token id
   (found once per forward by a stable sort, `previous_occurrences`); multi-head scores between
   the present (query) and each occurrence (key) pick, through a softmax over M candidates plus a
   learnable per-head sink, a mix of the states of the tokens that FOLLOWED those occurrences.
3. SwiGLU feed-forward.

Positions are learned absolute embeddings counted from the attention mask, and padding positions
are zeroed after every sub-block, so left- and right-padded batches agree on the real tokens.
Decoding keeps an `InductionCache`: per sequence the table of last occurrences of every token id,
per layer the convolution tails and the mixer's keys/values, so the prefix is never recomputed.

Hugging Face single-file style: export copies this file and `layers.py` into the model folder,
so it imports only torch, transformers and `.layers`.
"""

import math

import torch
import torch.nn.functional as F
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import GenerationMixin, PreTrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast

from .layers import CausalLMHead, RMSNorm, SwiGLU, position_ids_from_mask

DEFAULT_DILATIONS = (1, 2, 4)


@strict
class BabbleInductionConfig(PreTrainedConfig):
    """Shape of the Conv-Routed Induction LM. `conv_dilations` None means (1, 2, 4)."""

    model_type = "babble_induction"

    vocab_size: int = 8000
    hidden_size: int = 384
    num_hidden_layers: int = 3
    num_attention_heads: int = 4
    intermediate_size: int = 1536
    induction_memory: int = 5
    conv_kernel_size: int = 3
    conv_dilations: list[int] | None = None
    conv_groups: int = 16
    max_position_embeddings: int = 512
    rms_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    tie_word_embeddings: bool = True
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None

    @property
    def dilations(self) -> tuple[int, ...]:
        return tuple(self.conv_dilations or DEFAULT_DILATIONS)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def validate_architecture(self):
        """Called by `@strict` after every construction; raises ValueError naming the field."""
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "induction_memory", "conv_kernel_size", "conv_groups", "max_position_embeddings"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("num_attention_heads", "conv_groups"):
            if self.hidden_size % getattr(self, name):
                raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by {name} ({getattr(self, name)})")
        if not self.dilations or any(d < 1 for d in self.dilations):
            raise ValueError(f"conv_dilations must be a non-empty list of integers >= 1, got {self.conv_dilations}")
        if self.rms_norm_eps <= 0 or self.initializer_range <= 0:
            raise ValueError("rms_norm_eps and initializer_range must be > 0")


def previous_occurrences(keys: torch.Tensor, memory: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each position, the `memory` nearest earlier positions with the same key, nearest first.

    keys: (batch, seq) int64, -1 at padding (padding never matches anything real).
    Returns (candidates (batch, seq, memory) with -1 where there is none, the sort order, the
    sorted keys). A stable sort groups equal keys in position order, so the previous j-th
    occurrence of the token at sorted slot i sits at slot i - j whenever the key there is equal:
    O(T log T) time and O(T * memory) memory.
    """
    sorted_keys, order = torch.sort(keys, dim=-1, stable=True)
    window = memory + 1  # the candidates and the position itself
    pos_win = F.pad(order, (memory, 0), value=-1).unfold(-1, window, 1)  # (batch, seq, memory + 1)
    key_win = F.pad(sorted_keys, (memory, 0), value=-2).unfold(-1, window, 1)
    same = (key_win[..., :memory] == sorted_keys[..., None]) & (sorted_keys[..., None] >= 0)
    cand_sorted = torch.where(same, pos_win[..., :memory], -1).flip(-1)
    candidates = torch.empty_like(cand_sorted).scatter_(1, order[..., None].expand_as(cand_sorted), cand_sorted)
    return candidates, order, sorted_keys


class InductionCache:
    """Decoding state: per sequence the last `memory` positions of every token id (`table`,
    (batch, vocab, memory), -1 for none); per layer the convolution tails and mixer keys/values."""

    def __init__(self, num_layers: int):
        self.length = 0
        self.table: torch.Tensor | None = None
        self.conv_tails: list[list[torch.Tensor] | None] = [None] * num_layers
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.length

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Keep (or repeat) the rows `beam_idx`, in place (beam search, shared-prefix scoring)."""
        pick = lambda t: t.index_select(0, beam_idx.to(t.device))  # noqa: E731
        self.table = pick(self.table) if self.table is not None else None
        self.conv_tails = [[pick(t) for t in tails] if tails is not None else None for tails in self.conv_tails]
        self.keys = [pick(t) if t is not None else None for t in self.keys]
        self.values = [pick(t) if t is not None else None for t in self.values]

    def candidates(self, keys: torch.Tensor, memory: int, vocab_size: int) -> torch.Tensor:
        """Absolute candidate positions for new tokens `keys` (batch, seq); updates the table."""
        batch, seq = keys.shape
        if self.table is None:
            self.table = keys.new_full((batch, vocab_size, memory), -1)
        local, order, sorted_keys = previous_occurrences(keys, memory)
        fresh = torch.where(local >= 0, local + self.length, -1)  # occurrences inside the new chunk
        older = self.table.gather(1, keys.clamp_min(0)[..., None].expand(-1, -1, memory))
        older = torch.where(keys[..., None] >= 0, older, -1)
        n_fresh = (local >= 0).sum(-1, keepdim=True)  # fresh ones are nearer: they come first
        j = torch.arange(memory, device=keys.device)
        merged = torch.cat([fresh, older], -1).gather(-1, torch.where(j < n_fresh, j, memory + j - n_fresh))
        # the last occurrence of each id in the chunk becomes that id's table row
        last = (sorted_keys != F.pad(sorted_keys[:, 1:], (0, 1), value=-2)) & (sorted_keys >= 0)
        rows, slots = last.nonzero(as_tuple=True)
        positions = order[rows, slots]
        new_rows = torch.cat([(positions + self.length)[:, None], merged[rows, positions, : memory - 1]], -1)
        self.table[rows, sorted_keys[rows, slots]] = new_rows
        return merged


class DynamicConv(nn.Module):
    """Gated stack of causal depthwise dilated convolutions with per-position softmax kernels."""

    def __init__(self, config: BabbleInductionConfig):
        super().__init__()
        dim, self.groups, self.kernel = config.hidden_size, config.conv_groups, config.conv_kernel_size
        self.dilations = config.dilations
        self.in_proj = nn.Linear(dim, dim, bias=False)
        self.gate_proj = nn.Linear(dim, dim, bias=False)
        self.kernel_proj = nn.Linear(dim, len(self.dilations) * self.groups * self.kernel, bias=False)
        self.out_proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x, keep, tails):
        """x (batch, seq, dim); keep (batch, seq, 1) 0/1 or None; tails: per stage the last
        (kernel - 1) * dilation inputs before x (None: zeros). Returns (output, new tails)."""
        batch, seq, dim = x.shape
        kernels = self.kernel_proj(x).view(batch, seq, len(self.dilations), self.groups, self.kernel).softmax(-1)
        u = self.in_proj(x)
        new_tails = []
        for stage, dilation in enumerate(self.dilations):
            if keep is not None:
                u = u * keep
            span = (self.kernel - 1) * dilation
            past = u.new_zeros(batch, span, dim) if tails is None else tails[stage]
            padded = torch.cat([past, u], 1)
            new_tails.append(padded[:, padded.shape[1] - span :])
            grouped = padded.view(batch, span + seq, self.groups, dim // self.groups)
            w = kernels[:, :, stage, :, :, None]  # (batch, seq, groups, kernel, 1)
            u = sum(w[:, :, :, k] * grouped[:, span - k * dilation : span - k * dilation + seq] for k in range(self.kernel))
            u = u.reshape(batch, seq, dim)
        return self.out_proj(u * F.silu(self.gate_proj(x))), new_tails


class InductionMixer(nn.Module):
    """Soft choice among the previous occurrences of the current token (or a per-head sink);
    copies the states that followed the chosen occurrences."""

    def __init__(self, config: BabbleInductionConfig):
        super().__init__()
        dim, self.heads, self.head_dim = config.hidden_size, config.num_attention_heads, config.head_dim
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.o_proj = nn.Linear(dim, dim, bias=False)
        self.sink = nn.Parameter(torch.zeros(self.heads))

    def forward(self, x, candidates, past_kv):
        """x (batch, seq, dim); candidates (batch, seq, M) absolute positions or -1; past_kv: keys
        and values of earlier positions (batch, past, dim) or None. Returns (output, (keys, values))."""
        batch, seq, dim = x.shape
        memory = candidates.shape[-1]
        q = self.q_proj(x).view(batch, seq, self.heads, self.head_dim)
        k, v = self.k_proj(x), self.v_proj(x)
        if past_kv is not None:
            k, v = torch.cat([past_kv[0], k], 1), torch.cat([past_kv[1], v], 1)
        valid = candidates >= 0
        where = candidates.clamp_min(0)

        def pick(states, index):  # (batch, total, dim) at (batch, seq, M) -> (batch, seq, M, heads, head_dim)
            flat = index.reshape(batch, seq * memory, 1).expand(-1, -1, dim)
            return states.gather(1, flat).view(batch, seq, memory, self.heads, self.head_dim)

        keys = pick(k, where)
        values = pick(v, (where + 1).clamp_max(v.shape[1] - 1))  # the token that followed each occurrence
        scores = torch.einsum("bthd,btmhd->bthm", q, keys) / math.sqrt(self.head_dim)
        scores = scores.masked_fill(~valid[:, :, None, :], float("-inf"))
        sink = self.sink.to(scores.dtype).view(1, 1, self.heads, 1).expand(batch, seq, -1, -1)
        weights = torch.cat([scores, sink], -1).float().softmax(-1)[..., :memory].to(values.dtype)
        out = torch.einsum("bthm,btmhd->bthd", weights, values).reshape(batch, seq, dim)
        return self.o_proj(out), (k, v)


class InductionLayer(GradientCheckpointingLayer):
    """x + conv(norm(x)), + induction(norm(x)), + ffn(norm(x)); padding zeroed after each."""

    def __init__(self, config: BabbleInductionConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.conv_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.conv = DynamicConv(config)
        self.induction_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.induction = InductionMixer(config)
        self.mlp_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = SwiGLU(config.hidden_size, config.intermediate_size)
        residual_std = config.initializer_range / math.sqrt(3 * config.num_hidden_layers)
        for proj in (self.conv.out_proj, self.induction.o_proj, self.mlp.down_proj):
            proj.init_std = residual_std  # read by _init_weights: outputs added to the residual stream

    def forward(self, hidden_states, candidates=None, keep=None, past_key_values: InductionCache | None = None):
        """`past_key_values` (the decoding cache) is read and updated in place when given."""
        cache = past_key_values

        def masked(h):
            return h if keep is None else h * keep

        i = self.layer_idx
        tails = cache.conv_tails[i] if cache is not None else None
        conv_out, new_tails = self.conv(self.conv_norm(hidden_states), keep, tails)
        h = masked(hidden_states + conv_out)
        past_kv = (cache.keys[i], cache.values[i]) if cache is not None and cache.keys[i] is not None else None
        mixed, (k, v) = self.induction(self.induction_norm(h), candidates, past_kv)
        h = masked(h + mixed)
        if cache is not None:
            cache.conv_tails[i], cache.keys[i], cache.values[i] = new_tails, k, v
        return masked(h + self.mlp(self.mlp_norm(h)))


class BabbleInductionPreTrainedModel(PreTrainedModel):
    config: BabbleInductionConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["InductionLayer"]
    _skip_keys_device_placement = ["past_key_values"]

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # the model makes its own InductionCache on the first cached call

    @torch.no_grad()
    def _init_weights(self, module):
        """Normal(0, initializer_range), or a module's own `init_std` (residual output
        projections); norms start at 1, sinks at 0."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            init.normal_(module.weight, mean=0.0, std=getattr(module, "init_std", self.config.initializer_range))
        elif isinstance(module, RMSNorm):
            init.ones_(module.weight)
        elif isinstance(module, InductionMixer):
            init.zeros_(module.sink)


class BabbleInductionModel(BabbleInductionPreTrainedModel):
    """Token + learned position embeddings, the layers and the final norm; returns hidden states."""

    def __init__(self, config: BabbleInductionConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.embed_positions = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.layers = nn.ModuleList(InductionLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.gradient_checkpointing = False
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        past_key_values: InductionCache | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        """`attention_mask` is a 0/1 (batch, past + new) padding mask; other kwargs are ignored."""
        if input_ids is None:
            raise ValueError("the induction model needs input_ids: its occurrence index matches token ids")
        batch, seq = input_ids.shape
        if use_cache is None:
            use_cache = not self.training
        cache = past_key_values if past_key_values is not None else (InductionCache(len(self.layers)) if use_cache else None)
        past_len = cache.length if cache is not None else 0
        total = past_len + seq
        if total > self.config.max_position_embeddings:
            raise ValueError(f"sequence of {total} tokens (cache included) exceeds "
                             f"max_position_embeddings={self.config.max_position_embeddings}")
        if attention_mask is None:
            positions, keep, keys = torch.arange(past_len, total, device=input_ids.device)[None], None, input_ids
        else:
            if tuple(attention_mask.shape) != (batch, total):
                raise ValueError(f"attention_mask must be a 0/1 tensor of shape (batch, past + new tokens) = "
                                 f"{(batch, total)}, got shape {tuple(attention_mask.shape)}")
            positions = position_ids_from_mask(attention_mask, seq)
            real = attention_mask[:, past_len:].bool()
            keep = None if bool(real.all()) else real[..., None].to(self.embed_tokens.weight.dtype)
            keys = torch.where(real, input_ids, -1)
        memory = self.config.induction_memory
        if cache is not None:
            candidates = cache.candidates(keys, memory, self.config.vocab_size)
        else:
            candidates = previous_occurrences(keys, memory)[0]

        hidden = self.embed_tokens(input_ids) + self.embed_positions(positions)
        if keep is not None:
            hidden = hidden * keep
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        all_hidden = []
        for layer in self.layers:
            if output_hidden_states:
                all_hidden.append(hidden)
            hidden = layer(hidden, candidates=candidates, keep=keep, past_key_values=cache)
        hidden = self.norm(hidden)
        if cache is not None:
            cache.length = total
        return BaseModelOutputWithPast(
            last_hidden_state=hidden,
            past_key_values=cache if use_cache else None,
            hidden_states=(*all_hidden, hidden) if output_hidden_states else None,
        )


class BabbleInductionForCausalLM(CausalLMHead, BabbleInductionPreTrainedModel, GenerationMixin):
    """The model plus a vocabulary head (tied to the input embeddings if configured)."""

    decoder_class = BabbleInductionModel
