"""The mLSTM cell of xLSTM (Beck et al., 2024) in three forms that compute the same function.

Per head, with q, k of width d (k scaled by 1/sqrt(d)), v, an exponential input gate
i_t = exp(ĩ_t) and a sigmoid forget gate f_t = sigmoid(f̃_t):

    C_t = f_t C_{t-1} + i_t k_t v_tᵀ        n_t = f_t n_{t-1} + i_t k_t
    h_t = C_tᵀ q_t / max(|n_tᵀ q_t|, 1)

Everything is kept in log space with a running maximum m_t and the stabilised states
C̃ = C e^{-m}, ñ = n e^{-m}, so h_t = C̃ᵀq / (max(|ñᵀq|, e^{-m}) + eps): that value does not depend
on m (up to eps), which is what lets the three forms agree.

- `mlstm_parallel`: the quadratic reference, a decay-weighted attention matrix.
- `mlstm_chunkwise`: linear time. Within a chunk of L tokens the parallel form; between chunks the
  (C, n, m) state is carried forward (one small update per chunk, not per token). Any length works:
  the tail chunk is padded with gates that neither write nor decay the state.
- `mlstm_step`: one token of the recurrence, for generation with an O(1) state.

Inputs are (batch, heads, seq, dim) for q, k, v and (batch, heads, seq) gate pre-activations; the
state is (C (b, h, dk, dv), n (b, h, dk), m (b, h)). Arithmetic runs in float32.
Export copies this file next to the architecture module, so it imports only torch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-6
# Gate pre-activations for positions that must leave the state untouched (padding): the input gate
# writes e^{-10000} = 0 and the forget gate keeps log f = log sigmoid(10000) = 0.
PAD_INPUT_GATE = -1.0e4
PAD_FORGET_GATE = 1.0e4

State = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def empty_state(batch: int, heads: int, dk: int, dv: int, device) -> State:
    """Zero memory with m = -inf, so the first token sets the stabiliser exactly as the parallel form does."""
    return (torch.zeros(batch, heads, dk, dv, device=device), torch.zeros(batch, heads, dk, device=device),
            torch.full((batch, heads), float("-inf"), device=device))


def _prepare(q, k, v, i, f):
    scale = q.shape[-1] ** -0.5
    return q.float(), k.float() * scale, v.float(), i.float(), F.logsigmoid(f.float())


def _normalise(num, den, m):
    """num (..., dv) / (max(|den|, e^{-m}) + eps)."""
    return num / (torch.maximum(den.abs(), torch.exp(-m)) + EPS).unsqueeze(-1)


def mlstm_parallel(q, k, v, i, f) -> torch.Tensor:
    """Quadratic reference form -> h (batch, heads, seq, dv) in float32."""
    q, k, v, i, log_f = _prepare(q, k, v, i, f)
    seq = q.shape[-2]
    causal = torch.ones(seq, seq, dtype=torch.bool, device=q.device).tril()
    # log f_{j+1} + ... + log f_t summed per (t, j) pair, not as a difference of long cumulative
    # sums, which would lose float32 precision when the gates are extreme
    steps = log_f[..., :, None].expand(*log_f.shape, seq).masked_fill(~causal.tril(-1), 0.0)
    decay = steps.cumsum(-2) + i[..., None, :]  # log weight of key j at query t
    decay = decay.masked_fill(~causal, float("-inf"))
    m = decay.amax(-1)
    scores = (q @ k.transpose(-1, -2)) * torch.exp(decay - m[..., None])
    return _normalise(scores @ v, scores.sum(-1), m)


def mlstm_step(q, k, v, i, f, state: State) -> tuple[torch.Tensor, State]:
    """One token: q, k (b, h, dk), v (b, h, dv), gates (b, h) -> h (b, h, dv) and the new state."""
    q, k, v, i, log_f = _prepare(q, k, v, i, f)
    c, n, m = state
    m_new = torch.maximum(log_f + m, i)
    keep, write = torch.exp(log_f + m - m_new), torch.exp(i - m_new)
    written = write[..., None] * k  # scaled before the outer product: two passes over C, not four
    c = torch.addcmul(keep[..., None, None] * c, written[..., :, None], v[..., None, :])
    n = keep[..., None] * n + written
    num = (q.unsqueeze(-2) @ c).squeeze(-2)
    return _normalise(num, (q * n).sum(-1), m_new), (c, n, m_new)


def mlstm_chunkwise(q, k, v, i, f, chunk_size: int = 64, state: State | None = None) -> tuple[torch.Tensor, State]:
    """Linear-time form -> (h (batch, heads, seq, dv) float32, final state). `state` continues a sequence."""
    batch, heads, seq, dk = q.shape
    dv = v.shape[-1]
    pad = -seq % chunk_size
    if pad:
        q, k, v = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v))
        i, f = F.pad(i, (0, pad), value=PAD_INPUT_GATE), F.pad(f, (0, pad), value=PAD_FORGET_GATE)
    q, k, v, i, log_f = _prepare(q, k, v, i, f)
    n_chunks, L = (seq + pad) // chunk_size, chunk_size
    q, k, v = (x.reshape(batch, heads, n_chunks, L, x.shape[-1]) for x in (q, k, v))
    i, log_f = i.reshape(batch, heads, n_chunks, L), log_f.reshape(batch, heads, n_chunks, L)

    b = log_f.cumsum(-1)  # decay from the chunk start up to each token
    g = b[..., -1]  # decay across the whole chunk
    a = g[..., None] - b + i  # log weight of each token in the chunk's end state
    m_local = a.amax(-1)
    w = torch.exp(a - m_local[..., None])
    c_local = torch.einsum("bhnl,bhnlk,bhnlv->bhnkv", w, k, v)
    n_local = torch.einsum("bhnl,bhnlk->bhnk", w, k)

    # Carry (C, n, m) across chunks: one small update per chunk.
    c, n, m = state if state is not None else empty_state(batch, heads, dk, dv, q.device)
    starts = []
    for j in range(n_chunks):
        starts.append((c, n, m))
        m_new = torch.maximum(g[..., j] + m, m_local[..., j])
        keep, write = torch.exp(g[..., j] + m - m_new), torch.exp(m_local[..., j] - m_new)
        c = keep[..., None, None] * c + write[..., None, None] * c_local[:, :, j]
        n = keep[..., None] * n + write[..., None] * n_local[:, :, j]
        m = m_new
    c_start, n_start, m_start = (torch.stack(s, dim=2) for s in zip(*starts))

    inter = b + m_start[..., None]  # log weight of the carried state at each token
    intra = b[..., :, None] - b[..., None, :] + i[..., None, :]
    causal = torch.ones(L, L, dtype=torch.bool, device=q.device).tril()
    intra = intra.masked_fill(~causal, float("-inf"))
    m_t = torch.maximum(inter, intra.amax(-1))
    scores = (q @ k.transpose(-1, -2)) * torch.exp(intra - m_t[..., None])
    carried = torch.exp(inter - m_t)
    num = scores @ v + carried[..., None] * torch.einsum("bhnlk,bhnkv->bhnlv", q, c_start)
    den = scores.sum(-1) + carried * torch.einsum("bhnlk,bhnk->bhnl", q, n_start)
    h = _normalise(num, den, m_t).reshape(batch, heads, n_chunks * L, dv)[:, :, :seq]
    return h, (c, n, m)


def mlstm_kernels_available() -> bool:
    """True when NX-AI's `mlstm_kernels` (Triton) can be imported."""
    try:
        import mlstm_kernels.torch  # noqa: F401
    except ImportError:
        return False
    return True


def triton_shape(seq: int, chunk_size: int) -> tuple[int, int]:
    """(padded length, chunk size) that NX-AI's xl_chunk kernel accepts for `seq` tokens: below 128
    tokens a power of two from 16 (the kernel then makes the whole sequence one chunk), from 128 on a
    multiple of a chunk size that is itself a multiple of 64. The chunk size changes only the speed."""
    if seq <= 64:
        return max(16, 1 << (seq - 1).bit_length()), chunk_size
    chunk = max(64, -(-chunk_size // 64) * 64)
    return max(128, -(-seq // chunk) * chunk), chunk


def mlstm_triton(q, k, v, i, f, chunk_size: int = 64) -> torch.Tensor:
    """NX-AI's chunkwise Triton kernel (CUDA only; no carried state). The kernel scales q·k by
    1/sqrt(dk) itself, like the forms above; the length is padded to one the kernel accepts."""
    from mlstm_kernels.torch import get_mlstm_kernel

    seq = q.shape[-2]
    length, chunk = triton_shape(seq, chunk_size)
    pad = length - seq
    if pad:
        q, k, v = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v))
        i, f = F.pad(i, (0, pad), value=PAD_INPUT_GATE), F.pad(f, (0, pad), value=PAD_FORGET_GATE)
    kernel = get_mlstm_kernel("chunkwise--triton_xl_chunk")
    h = kernel(q=q, k=k, v=v, i=i.float(), f=f.float(), chunk_size=chunk, eps=EPS)
    return h[:, :, :seq]
