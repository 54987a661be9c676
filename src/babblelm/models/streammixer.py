"""Stream Mixer: a linear-time, attention-free causal LM decoded token by token from an O(1) state.

Every layer keeps S streams of dimension D (the 26M card: S = 32, D = 64). With u_t = RMSNorm(x_t)
the layer's input at position t (batch and layer indices dropped), for stream j = 1..S:

    z_t      = W_z u_t + b_z                         (S write-gate logits)
    a_{t,j}  = sigmoid(z_{t,j})                      (how much of stream j is kept)
    v_{t,j}  = (W_v u_t)_j                           (the value offered to stream j, in R^D)
    h_{t,j}  = a_{t,j} h_{t-1,j} + (1 - a_{t,j}) v_{t,j},     h_{0,j} = 0

so each stream is an exponential moving average whose rate the token chooses. Each of the K read
heads (card: 4) forms a query q_{t,k} = (W_q u_t)_k in R^D and reads the streams through a softmax
over the S streams (never over time), with a learned key e_j per stream:

    p_{t,k,j} = softmax_j( q_{t,k} . (h_{t,j} + e_j) / sqrt(D) )
    r_{t,k}   = sum_j p_{t,k,j} h_{t,j}
    x'_t      = x_t + W_o [r_{t,1}; ...; r_{t,K}]
    x''_t     = x'_t + SwiGLU(RMSNorm(x'_t))

There is no position embedding and no attention matrix; the logits are a tied vocabulary
projection of the final RMSNorm. The gate biases start so that stream j remembers over a time
scale tau_j spread log-uniformly over [min_timescale, max_timescale] tokens.

Training runs all positions at once (`gated_scan`): within chunks of C tokens the recurrence is a
masked (C x C) matrix of decays exp(L_t - L_i), L the cumulative sum of log a_t, which only ever
exponentiates numbers <= 0 (stable at any length); the states carried between chunks obey the same
recurrence one level up (decay = the chunk's summed log a), solved by the same function. Cost is
O(T C S D), linear in T, with no Python loop over positions. Decoding (`step`, `generate`) applies
the recurrence literally to one token: the state is S x D numbers per layer, whatever the length.

Padding: positions whose attention_mask is 0 neither decay nor write (a = 1, v ignored), so left-
and right-padded rows give the logits of their unpadded sequences.

Decoding keeps each layer's streams in a `BabbleCache`. Hugging Face single-file style; export copies
this file with `layers.py`, so it imports only torch, transformers and `.layers`.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin

from .layers import (CACHE_ARG, BabbleCache, BabbleConfig, BabbleDecoder, BabblePreTrainedModel, CausalLMHead, RMSNorm,
                     SwiGLU, check_positive, init, scale_residual_init)


class StreamMixerConfig(BabbleConfig):
    """Shape of the Stream Mixer; `scan_chunk_size` only changes speed/memory, not results. It has
    no positions, so no length limit."""

    model_type = "babble_streammixer"
    keys_to_ignore_at_inference = ["past_key_values", "cache"]

    def __init__(self, vocab_size: int = 16384, hidden_size: int = 384, num_hidden_layers: int = 14,
                 num_streams: int = 32, stream_dim: int = 64, num_read_heads: int = 4, intermediate_size: int = 371,
                 min_timescale: float = 2.0, max_timescale: float = 1024.0, scan_chunk_size: int = 64,
                 rms_norm_eps: float = 1e-5, initializer_range: float = 0.02, tie_word_embeddings: bool = True,
                 **kwargs):
        super().__init__(locals(), **kwargs)

    def check_settings(self):
        super().check_settings()
        check_positive(self, "num_streams", "stream_dim", "num_read_heads")
        if self.scan_chunk_size < 2:
            raise ValueError(f"scan_chunk_size must be >= 2, got {self.scan_chunk_size}")
        if not 1.0 <= self.min_timescale <= self.max_timescale:
            raise ValueError(f"need 1 <= min_timescale <= max_timescale, got {self.min_timescale} and {self.max_timescale}")


def gated_scan(log_a: torch.Tensor, x: torch.Tensor, h0: torch.Tensor | None, chunk: int) -> torch.Tensor:
    """All states of h_t = exp(log_a_t) h_{t-1} + x_t, from h0 (zeros if None).

    log_a (batch, T, S) <= 0, x (batch, T, S, D), h0 (batch, S, D) -> (batch, T, S, D). Chunks of
    `chunk` steps are solved as masked decay matrices; chunk-to-chunk carries recurse on this function.
    """
    batch, length, streams, dim = x.shape
    if length <= chunk:
        cum = log_a.cumsum(1)  # L_t
        decay = cum[:, :, None] - cum[:, None]  # (batch, t, i, S): L_t - L_i
        causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()[None, :, :, None]
        weights = decay.masked_fill(~causal, -math.inf).exp()  # exp of numbers <= 0 only
        h = torch.einsum("btis,bisd->btsd", weights, x)
        return h if h0 is None else h + cum.exp()[..., None] * h0[:, None]
    pad = -length % chunk
    if pad:  # trailing zeros change no earlier state
        log_a, x = F.pad(log_a, (0, 0, 0, pad)), F.pad(x, (0, 0, 0, 0, 0, pad))
    n = (length + pad) // chunk
    log_a, x = log_a.reshape(batch, n, chunk, streams), x.reshape(batch, n, chunk, streams, dim)
    local = gated_scan(log_a.flatten(0, 1), x.flatten(0, 1), None, chunk).reshape(batch, n, chunk, streams, dim)
    ends = gated_scan(log_a.sum(2), local[:, :, -1], h0, chunk)  # state after each chunk
    first = torch.zeros_like(ends[:, :1]) if h0 is None else h0[:, None]
    starts = torch.cat([first, ends[:, :-1]], dim=1)  # state before each chunk
    h = local + log_a.cumsum(2).exp()[..., None] * starts[:, :, None]
    return h.reshape(batch, n * chunk, streams, dim)[:, :length]


class StreamMixer(nn.Module):
    """Write S gated streams, read them with K softmax-over-streams heads (equations: module docstring)."""

    def __init__(self, config: StreamMixerConfig):
        super().__init__()
        self.streams, self.dim, self.heads = config.num_streams, config.stream_dim, config.num_read_heads
        self.chunk = config.scan_chunk_size
        self.write_gate = nn.Linear(config.hidden_size, self.streams)
        self.write_value = nn.Linear(config.hidden_size, self.streams * self.dim, bias=False)
        self.read_query = nn.Linear(config.hidden_size, self.heads * self.dim, bias=False)
        self.stream_keys = nn.Parameter(torch.zeros(self.streams, self.dim))
        self.out_proj = nn.Linear(self.heads * self.dim, config.hidden_size, bias=False)

    def forward(self, u: torch.Tensor, mask: torch.Tensor | None, h0: torch.Tensor | None):
        """u (batch, T, hidden), mask (batch, T) 0/1 or None, h0 (batch, S, D) or None
        -> (read-out (batch, T, hidden), streams after the last position (batch, S, D))."""
        batch, length, _ = u.shape
        with torch.autocast(u.device.type, enabled=False):  # the recurrence runs in float32
            z = self.write_gate(u.float())
            log_a = F.logsigmoid(z)
            x = torch.sigmoid(-z)[..., None] * self.write_value(u.float()).view(batch, length, self.streams, self.dim)
            if mask is not None:  # padding keeps the state as it is
                keep = mask.to(log_a.dtype)[..., None]
                log_a, x = log_a * keep, x * keep[..., None]
            if length == 1 and h0 is not None:  # decoding: the recurrence itself
                h = (log_a.exp()[..., None] * h0[:, None] + x)
            else:
                h = gated_scan(log_a, x, h0, self.chunk)
            q = self.read_query(u.float()).view(batch, length, self.heads, self.dim)
            scores = torch.einsum("btkd,btsd->btks", q, h + self.stream_keys.float()) / math.sqrt(self.dim)
            read = torch.einsum("btks,btsd->btkd", scores.softmax(-1), h)
        return self.out_proj(read.flatten(2).to(u.dtype)), h[:, -1]


class StreamMixerLayer(nn.Module):
    """x + mixer(norm(x)), then + mlp(norm(x)); the layer's streams live in its cache dict."""

    def __init__(self, config: StreamMixerConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mixer = StreamMixer(config)
        self.post_mixer_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = SwiGLU(config.hidden_size, config.intermediate_size)
        scale_residual_init(config, self.mixer.out_proj, self.mlp.down_proj)

    def forward(self, hidden_states, context, layer_cache=None):
        h0 = layer_cache.get("streams") if layer_cache is not None else None
        mixed, streams = self.mixer(self.input_layernorm(hidden_states), context, h0)
        if layer_cache is not None:
            layer_cache["streams"] = streams
        h = hidden_states + mixed
        return h + self.mlp(self.post_mixer_layernorm(h))


class StreamMixerPreTrainedModel(BabblePreTrainedModel):
    config_class = StreamMixerConfig
    _no_split_modules = ["StreamMixerLayer"]

    def _init_module(self, module):
        """Gate biases set the streams' initial time scales (log-spaced); stream keys Normal(0, std)."""
        if isinstance(module, StreamMixer):
            c = self.config
            tau = torch.logspace(math.log10(c.min_timescale), math.log10(c.max_timescale), module.streams)
            keep = torch.exp(-1.0 / tau).clamp(max=1 - 1e-6)  # a = exp(-1/tau) at init
            init.copy_(module.write_gate.bias, torch.log(keep) - torch.log1p(-keep))
            init.normal_(module.stream_keys, mean=0.0, std=c.initializer_range)


class StreamMixerModel(BabbleDecoder, StreamMixerPreTrainedModel):
    """Embeddings, the Stream Mixer layers and the final norm; returns hidden states."""

    def __init__(self, config: StreamMixerConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(StreamMixerLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_init()

    def embed(self, input_ids, inputs_embeds, attention_mask, position_ids, cache, past):
        """Token embeddings (no positions); context: the new tokens' 0/1 mask (None: no padding)."""
        hidden = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        mask = attention_mask[:, past:] if attention_mask is not None and not bool(attention_mask.all()) else None
        return hidden, mask


class StreamMixerForCausalLM(CausalLMHead, StreamMixerPreTrainedModel, GenerationMixin):
    """The Stream Mixer plus a vocabulary head (tied to the input embeddings by default)."""

    decoder_class = StreamMixerModel

    def step(self, input_ids: torch.LongTensor, state: BabbleCache | None = None):
        """Decode one token per row: input_ids (batch,) or (batch, 1), state from the previous call
        (None at the start, updated in place) -> (next-token logits (batch, vocab), state). O(1) in
        the position."""
        out = self(input_ids.reshape(-1, 1), cache=state, use_cache=True)
        return out.logits[:, -1], out.get(CACHE_ARG)
