"""BLaLM: a Qwen-style decoder whose attention is replaced by the mLSTM mixer of xLSTM, with the
lightweight add-ons of "Sample-Efficient Language Modeling with Linear Attention and Lightweight
Enhancements" (BabyLM 2025), each a config switch:

- `short_conv`: causal depthwise convolution (kernel `conv_kernel_size`) + SiLU on the q/k input;
- `swa_window` > 0: sliding-window attention (RoPE) on the same q, k, v, added to the mLSTM output;
- `swa_memory_tokens`: learned key/value slots every window attends to;
- `swa_modulation`: `dynamic` scales the SWA branch by a learned per-layer scalar, `bounded`
  squashes that scalar through a sigmoid into (0, 1); the values are reported by `extra_metrics()`;
- `feature_map: hedgehog`: q, k -> softmax([Wx, -Wx]) per head before the mLSTM.

Generation keeps, per layer of a `BabbleCache`, the mLSTM state, the conv tail and the last window
of SWA keys/values (padded to the window from the first token): its size does not grow with the
sequence. Export copies this file with
`layers.py` and `mlstm.py`, so it imports only torch, transformers and those two.
Equations: docs/architectures.md.
"""

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin

from .layers import (BabbleDecoder, BabblePreTrainedModel, CausalLMHead, MultiHeadConfig, RMSNorm, RotaryEmbedding,
                     SwiGLU, apply_rotary, check_positive, init, scale_residual_init, token_positions)
from .mlstm import (PAD_FORGET_GATE, PAD_INPUT_GATE, mlstm_chunkwise, mlstm_kernels_available, mlstm_step,
                    mlstm_triton)


BLOCKED_SWA_FROM = 4  # sequences of at least this many windows use the blocked SWA (faster from there on CPU)
BACKENDS = ("auto", "torch", "mlstm_kernels")
MODULATIONS = ("none", "dynamic", "bounded")
FEATURE_MAPS = ("none", "hedgehog")


class BlalmConfig(MultiHeadConfig):
    """Shape, mLSTM settings and add-on switches. `max_position_embeddings` is the trained length of
    the SWA branch's rotary positions (longer texts extend them); the mLSTM has no position limit."""

    model_type = "blalm"
    keys_to_ignore_at_inference = ["past_key_values", "cache"]
    rotary_heads = True

    def __init__(self, vocab_size: int = 16000, hidden_size: int = 384, num_hidden_layers: int = 6,
                 num_attention_heads: int = 6, intermediate_size: int = 1536, max_position_embeddings: int = 512,
                 chunk_size: int = 64, mlstm_backend: Literal[BACKENDS] = "auto",
                 forget_bias_low: float = 3.0, forget_bias_high: float = 6.0, short_conv: bool = False,
                 conv_kernel_size: int = 4, swa_window: int = 0, swa_memory_tokens: int = 0,
                 swa_modulation: Literal[MODULATIONS] = "none",
                 feature_map: Literal[FEATURE_MAPS] = "none", rope_theta: float = 10000.0,
                 rms_norm_eps: float = 1e-5, initializer_range: float = 0.02, tie_word_embeddings: bool = False,
                 **kwargs):
        super().__init__(locals(), **kwargs)

    def check_settings(self):
        super().check_settings()
        check_positive(self, "max_position_embeddings", "chunk_size", "conv_kernel_size")
        for name, allowed in (("mlstm_backend", BACKENDS), ("swa_modulation", MODULATIONS), ("feature_map", FEATURE_MAPS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.swa_window < 0 or self.swa_memory_tokens < 0:
            raise ValueError("swa_window and swa_memory_tokens must be >= 0")
        if self.swa_window == 0 and (self.swa_memory_tokens or self.swa_modulation != "none"):
            raise ValueError("swa_memory_tokens and swa_modulation need sliding-window attention: set swa_window > 0")
        if self.forget_bias_low > self.forget_bias_high:
            raise ValueError(f"forget_bias_low ({self.forget_bias_low}) must be <= forget_bias_high ({self.forget_bias_high})")


class HeadRMSNorm(RMSNorm):
    """RMS norm over each head's channels separately, with one gain per channel."""

    def __init__(self, heads: int, head_dim: int, eps: float):
        super().__init__(heads * head_dim, eps)
        self.head_dim = head_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (batch, seq, heads, head_dim) -> (batch, seq, hidden)."""
        normed = F.rms_norm(x.float(), (self.head_dim,), eps=self.eps).flatten(2)
        return self.weight * normed.to(self.weight.dtype)


class HedgehogFeatureMap(nn.Module):
    """phi(x) = softmax([Wx, -Wx]) per head (W starts as the identity): head_dim -> 2 * head_dim."""

    def __init__(self, heads: int, head_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.eye(head_dim).repeat(heads, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (batch, heads, seq, head_dim)."""
        proj = torch.einsum("bhtd,hde->bhte", x, self.weight.to(x.dtype))
        return torch.cat([proj, -proj], dim=-1).softmax(-1)


class ShortConv(nn.Module):
    """Causal depthwise convolution over time; with a cache it continues from the stored tail."""

    def __init__(self, dim: int, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, kernel_size, groups=dim, bias=True)
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor, layer_cache: dict | None) -> torch.Tensor:
        """x (batch, seq, dim) -> same shape."""
        tail_len = self.kernel_size - 1
        if layer_cache is not None and "conv" in layer_cache:
            tail = layer_cache["conv"][0]
        else:
            tail = x.new_zeros(x.shape[0], tail_len, x.shape[2])
        full = torch.cat([tail, x], dim=1)
        if layer_cache is not None:
            layer_cache["conv"] = (full[:, full.shape[1] - tail_len:],)
        return self.conv(full.transpose(1, 2)).transpose(1, 2)


class MLSTMMixer(nn.Module):
    """The token mixer: mLSTM (+ optional conv, Hedgehog, sliding-window attention branch)."""

    def __init__(self, config: BlalmConfig, layer_idx: int):
        super().__init__()
        d, self.heads, self.head_dim = config.hidden_size, config.num_attention_heads, config.head_dim
        self.config, self.layer_idx = config, layer_idx
        if config.mlstm_backend == "mlstm_kernels" and not mlstm_kernels_available():
            raise ImportError("mlstm_backend='mlstm_kernels' needs NX-AI's mlstm_kernels: pip install 'babblelm[gpu]'")
        self.conv = ShortConv(d, config.conv_kernel_size) if config.short_conv else None
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d, bias=False)
        self.gate_proj = nn.Linear(d, 2 * self.heads, bias=True)  # input and forget gate pre-activations
        self.o_gate = nn.Linear(d, d, bias=False)
        self.out_proj = nn.Linear(d, d, bias=False)
        self.head_norm = HeadRMSNorm(self.heads, self.head_dim, config.rms_norm_eps)
        self.feature_map = HedgehogFeatureMap(self.heads, self.head_dim) if config.feature_map == "hedgehog" else None
        self.memory_kv = None
        if config.swa_memory_tokens:
            self.memory_kv = nn.Parameter(torch.zeros(2, self.heads, config.swa_memory_tokens, self.head_dim))
        self.swa_gate = nn.Parameter(torch.zeros(())) if config.swa_modulation != "none" else None

    def swa_scale(self) -> torch.Tensor | float:
        """The factor on the SWA branch: 1, a learned scalar, or its sigmoid (bounded)."""
        if self.swa_gate is None:
            return 1.0
        return torch.sigmoid(self.swa_gate) if self.config.swa_modulation == "bounded" else self.swa_gate

    def forward(self, x, rope, valid, layer_cache: dict | None) -> torch.Tensor:
        """x (batch, seq, hidden); valid (batch, seq) bool or None (no padding)."""
        batch, seq, _ = x.shape
        if valid is not None:
            x = x * valid[..., None].to(x.dtype)  # padding must not reach the conv tail or the state
        qk_in = F.silu(self.conv(x, layer_cache)) if self.conv is not None else x
        split = lambda t: t.view(batch, seq, self.heads, self.head_dim).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q_proj(qk_in)), split(self.k_proj(qk_in)), split(self.v_proj(x))
        i, f = self.gate_proj(x).float().transpose(1, 2).chunk(2, dim=1)  # (batch, heads, seq) each
        if valid is not None:
            i = i.masked_fill(~valid[:, None], PAD_INPUT_GATE)
            f = f.masked_fill(~valid[:, None], PAD_FORGET_GATE)
        qm, km = (self.feature_map(q), self.feature_map(k)) if self.feature_map is not None else (q, k)
        h = self._mlstm(qm, km, v, i, f, layer_cache).to(x.dtype).transpose(1, 2)
        h = self.head_norm(h)
        if self.config.swa_window:
            h = h + self.swa_scale() * self._swa(q, k, v, rope, valid, layer_cache)
        return self.out_proj(h * torch.sigmoid(self.o_gate(x)))

    def _mlstm(self, q, k, v, i, f, layer_cache):
        backend = self.config.mlstm_backend
        use_kernels = backend == "mlstm_kernels" or (backend == "auto" and q.is_cuda and mlstm_kernels_available())
        if layer_cache is None and use_kernels:
            if not q.is_cuda:
                raise RuntimeError("mlstm_backend='mlstm_kernels' runs on CUDA only; use 'auto' or 'torch' on CPU")
            return mlstm_triton(q, k, v, i, f, self.config.chunk_size)
        state = layer_cache.get("mlstm") if layer_cache is not None else None
        if state is not None and q.shape[2] == 1:
            h, state = mlstm_step(q[:, :, 0], k[:, :, 0], v[:, :, 0], i[:, :, 0], f[:, :, 0], state)
            h = h.unsqueeze(2)
        else:
            h, state = mlstm_chunkwise(q, k, v, i, f, self.config.chunk_size, state)
        if layer_cache is not None:
            layer_cache["mlstm"] = state
        return h

    def _swa(self, q, k, v, rope, valid, layer_cache) -> torch.Tensor:
        """Sliding-window attention on rotated q, k -> (batch, seq, hidden)."""
        batch, _, seq, _ = q.shape
        window = self.config.swa_window
        cos, sin = rope
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        key_valid = valid if valid is not None else torch.ones(batch, seq, dtype=torch.bool, device=q.device)
        if layer_cache is not None and "swa" in layer_cache:
            past_k, past_v, past_valid = layer_cache["swa"]
            k, v, key_valid = torch.cat([past_k, k], 2), torch.cat([past_v, v], 2), torch.cat([past_valid, key_valid], 1)
        if layer_cache is not None:  # the last window - 1 keys, padded at the front to that size from the start
            layer_cache["swa"] = _last(k, 2, window - 1), _last(v, 2, window - 1), _last(key_valid, 1, window - 1)
        memory = tuple(m.to(k.dtype) for m in self.memory_kv) if self.memory_kv is not None else None
        if seq >= BLOCKED_SWA_FROM * window:  # the linear-time form; queries of cached keys are dropped
            past = k.shape[2] - seq
            out = swa_blocked(F.pad(q, (0, 0, past, 0)), k, v, key_valid, window, memory)[:, :, past:]
        else:
            out = swa_dense(q, k, v, key_valid, window, memory)
        return out.transpose(1, 2).flatten(2)


def _last(x: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """The last `size` entries of x along `dim`, preceded by zeros (False) where x is shorter."""
    short = size - x.shape[dim]
    if short > 0:
        shape = list(x.shape)
        shape[dim] = short
        return torch.cat([x.new_zeros(shape), x], dim)
    return x.narrow(dim, x.shape[dim] - size, size)


def swa_dense(q, k, v, key_valid, window: int, memory=None) -> torch.Tensor:
    """Sliding-window attention of `seq` queries over keys whose last `seq` are the queries' own
    positions: O(seq x keys). q (batch, heads, seq, d); k, v (batch, heads, keys, d); key_valid
    (batch, keys); memory: (keys, values), each (heads, slots, d), seen by every query."""
    batch, _, seq, _ = q.shape
    past = k.shape[2] - seq
    distance = torch.arange(past, past + seq, device=q.device)[:, None] - torch.arange(past + seq, device=q.device)
    allowed = ((distance >= 0) & (distance < window))[None, None] & key_valid[:, None, None, :]
    allowed = allowed | (distance == 0)  # a padding query still sees itself: no empty rows
    if memory is not None:
        mem_k, mem_v = (m.expand(batch, -1, -1, -1) for m in memory)
        k, v = torch.cat([mem_k, k], 2), torch.cat([mem_v, v], 2)
        allowed = torch.cat([allowed.new_ones(batch, 1, seq, mem_k.shape[2]), allowed], dim=-1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)


def swa_blocked(q, k, v, key_valid, window: int, memory=None) -> torch.Tensor:
    """The same attention as `swa_dense` with no past keys, in O(seq x window): the queries are cut
    into blocks of `window`, and each block attends to its own keys and the previous block's."""
    batch, heads, seq, dim = q.shape
    blocks = -(-seq // window)
    pad = blocks * window - seq

    def pairs(x):  # (batch, heads, seq, d) -> keys of block j and j - 1: (batch, heads, blocks, 2 window, d)
        x = F.pad(x, (0, 0, window, pad)).unflatten(2, (blocks + 1, window))
        return torch.cat([x[:, :, :-1], x[:, :, 1:]], dim=3)

    qb = F.pad(q, (0, 0, 0, pad)).unflatten(2, (blocks, window))
    kb, vb = pairs(k), pairs(v)
    valid = F.pad(key_valid, (window, pad), value=False).unflatten(1, (blocks + 1, window))
    valid = torch.cat([valid[:, :-1], valid[:, 1:]], dim=2)  # (batch, blocks, 2 window)
    # query r of block j sits at j*window + r, key c of its pair at (j-1)*window + c
    distance = torch.arange(window, device=q.device)[:, None] + window - torch.arange(2 * window, device=q.device)
    allowed = ((distance >= 0) & (distance < window)) & valid[:, None, :, None, :]
    allowed = allowed | (distance == 0)
    if memory is not None:
        mem_k, mem_v = (m[:, None].expand(batch, -1, blocks, -1, -1) for m in memory)
        kb, vb = torch.cat([mem_k, kb], 3), torch.cat([mem_v, vb], 3)
        allowed = torch.cat([allowed.new_ones(batch, 1, blocks, window, mem_k.shape[3]), allowed], dim=-1)
    out = F.scaled_dot_product_attention(qb.flatten(1, 2), kb.flatten(1, 2), vb.flatten(1, 2),
                                         attn_mask=allowed.expand(-1, heads, -1, -1, -1).flatten(1, 2))
    return out.unflatten(1, (heads, blocks)).flatten(2, 3)[:, :, :seq]


class BlalmDecoderLayer(nn.Module):
    """x + mixer(norm(x)), then + mlp(norm(x))."""

    def __init__(self, config: BlalmConfig, layer_idx: int):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mixer = MLSTMMixer(config, layer_idx)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = SwiGLU(config.hidden_size, config.intermediate_size)
        scale_residual_init(config, self.mixer.out_proj, self.mlp.down_proj)

    def forward(self, hidden_states, context, layer_cache=None) -> torch.Tensor:
        rope, valid = context
        h = hidden_states + self.mixer(self.input_layernorm(hidden_states), rope, valid, layer_cache)
        return h + self.mlp(self.post_attention_layernorm(h))


class BlalmPreTrainedModel(BabblePreTrainedModel):
    config_class = BlalmConfig
    _no_split_modules = ["BlalmDecoderLayer"]

    def _init_module(self, module):
        """Forget-gate biases spread from forget_bias_low to _high across heads, Hedgehog maps at the
        identity, convolutions at Normal(0, 1/sqrt(kernel)), memory tokens at Normal(0, 1)."""
        if isinstance(module, HedgehogFeatureMap):
            init.copy_(module.weight, torch.eye(module.weight.shape[-1]).repeat(module.weight.shape[0], 1, 1))
        elif isinstance(module, nn.Conv1d):
            init.normal_(module.weight, mean=0.0, std=module.kernel_size[0] ** -0.5)
            init.zeros_(module.bias)
        elif isinstance(module, MLSTMMixer):
            low, high = self.config.forget_bias_low, self.config.forget_bias_high
            bias = torch.cat([torch.zeros(module.heads), torch.linspace(low, high, module.heads)])
            init.copy_(module.gate_proj.bias, bias)
            if module.memory_kv is not None:
                init.normal_(module.memory_kv, mean=0.0, std=1.0)
            if module.swa_gate is not None:  # dynamic starts at 1 (plain SWA), bounded at sigmoid(0) = 0.5
                init.constant_(module.swa_gate, 1.0 if self.config.swa_modulation == "dynamic" else 0.0)


class BlalmModel(BabbleDecoder, BlalmPreTrainedModel):
    """Embeddings, the decoder layers and the final norm; returns hidden states."""

    def __init__(self, config: BlalmConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(BlalmDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary = (RotaryEmbedding(config.head_dim, config.max_position_embeddings, config.rope_theta)
                       if config.swa_window else None)
        self.post_init()

    def embed(self, input_ids, inputs_embeds, attention_mask, position_ids, cache, past):
        """Token embeddings; context: the SWA branch's rotary tables (None without SWA) and which new
        positions are real (None: no padding)."""
        hidden = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        seq = hidden.shape[1]
        valid = None
        if attention_mask is not None and not bool(attention_mask.all()):
            valid = attention_mask[:, past:].bool()
        rope = None
        if self.rotary is not None:
            rope = self.rotary(*token_positions(attention_mask, position_ids, past, seq, hidden.device))
        return hidden, (rope, valid)


class BlalmForCausalLM(CausalLMHead, BlalmPreTrainedModel, GenerationMixin):
    """The decoder plus a vocabulary head (tied to the input embeddings if configured)."""

    decoder_class = BlalmModel

    @torch.no_grad()
    def extra_metrics(self) -> dict[str, float]:
        """Values the training loop logs: the SWA modulation factor of each layer that has one."""
        return {f"swa_scale/{layer.mixer.layer_idx}": float(layer.mixer.swa_scale())
                for layer in self.model.layers if layer.mixer.swa_gate is not None}
