"""The mLSTM cell: parallel, chunkwise and recurrent forms agree (values, final state, gradients),
stay finite on long sequences, and the optional Triton backend matches on CUDA."""

import pytest
import torch

from babblelm.models.mlstm import (empty_state, mlstm_chunkwise, mlstm_kernels_available, mlstm_parallel,
                                   mlstm_step, mlstm_triton, triton_shape)

B, H, DK, DV = 2, 3, 8, 6


def inputs(seq: int, gate_scale: float = 1.0, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(B, H, seq, DK, generator=g, dtype=dtype) for _ in range(2))
    v = torch.randn(B, H, seq, DV, generator=g, dtype=dtype)
    i, f = (torch.randn(B, H, seq, generator=g, dtype=dtype) * gate_scale for _ in range(2))
    return q, k, v, i, f


def recurrent(q, k, v, i, f):
    state, outs = empty_state(B, H, DK, DV, q.device), []
    for t in range(q.shape[2]):
        h, state = mlstm_step(q[:, :, t], k[:, :, t], v[:, :, t], i[:, :, t], f[:, :, t], state)
        outs.append(h)
    return torch.stack(outs, 2), state


# gate pre-activations up to +-40: exp(40) overflows nothing only because of the log-space stabiliser
@pytest.mark.parametrize("gate_scale", [1.0, 8.0, 40.0])
@pytest.mark.parametrize("seq, chunk", [(37, 8), (64, 16), (5, 16), (1, 4)])
def test_three_forms_agree(seq, chunk, gate_scale):
    x = inputs(seq, gate_scale, seed=seq)
    reference = mlstm_parallel(*x)
    chunked, chunk_state = mlstm_chunkwise(*x, chunk_size=chunk)
    stepped, step_state = recurrent(*x)
    assert torch.isfinite(reference).all()
    torch.testing.assert_close(chunked, reference, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(stepped, reference, atol=1e-4, rtol=1e-4)
    for a, b in zip(chunk_state, step_state):  # same final (C, n, m) state
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_matches_the_unstabilised_recurrence_in_float64():
    # moderate gates: the stabilised forms add eps * e^m to the denominator, negligible only for small m
    x = inputs(41, gate_scale=2.0, seed=3, dtype=torch.float64)
    exact = mlstm_parallel(*x)  # computed in float32 internally: compare against a float64 recurrence
    q, k, v, i, f = x
    scale = DK ** -0.5
    c, n = torch.zeros(B, H, DK, DV, dtype=torch.float64), torch.zeros(B, H, DK, dtype=torch.float64)
    outs = []
    for t in range(q.shape[2]):  # unstabilised float64 recurrence: h = C^T q / max(|n^T q|, 1)
        ft, it = torch.sigmoid(f[:, :, t]), torch.exp(i[:, :, t])
        kt = k[:, :, t] * scale
        c = ft[..., None, None] * c + it[..., None, None] * kt[..., :, None] * v[:, :, t, None, :]
        n = ft[..., None] * n + it[..., None] * kt
        den = torch.maximum((q[:, :, t] * n).sum(-1).abs(), torch.ones(()))
        outs.append((q[:, :, t, None, :] @ c).squeeze(-2) / den[..., None])
    torch.testing.assert_close(exact.double(), torch.stack(outs, 2), atol=1e-4, rtol=1e-4)


def test_chunkwise_continues_from_a_state():
    x = inputs(30, gate_scale=4.0, seed=5)
    whole, whole_state = mlstm_chunkwise(*x, chunk_size=8)
    first, state = mlstm_chunkwise(*(t[:, :, :13] for t in x), chunk_size=8)
    second, final = mlstm_chunkwise(*(t[:, :, 13:] for t in x), chunk_size=8, state=state)
    torch.testing.assert_close(torch.cat([first, second], 2), whole, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(final[0], whole_state[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("gate_scale", [1.0, 10.0])
def test_gradients_agree_between_parallel_and_chunkwise(gate_scale):
    x = inputs(29, gate_scale, seed=11)
    weights = torch.randn(B, H, 29, DV, generator=torch.Generator().manual_seed(2))

    def grads(fn):
        leaves = [t.clone().requires_grad_(True) for t in x]
        (fn(*leaves) * weights).sum().backward()
        return [t.grad for t in leaves]

    reference = grads(mlstm_parallel)
    chunked = grads(lambda *a: mlstm_chunkwise(*a, chunk_size=8)[0])
    for name, a, b in zip("qkvif", chunked, reference):
        assert torch.isfinite(a).all(), name
        # extreme gates give gradients in the hundreds: compare relative to the largest entry
        size = b.abs().max()
        torch.testing.assert_close(a / size, b / size, atol=1e-5, rtol=0, msg=name)


def test_long_sequences_stay_finite():
    x = list(inputs(4096, gate_scale=20.0, seed=7))
    x[4][..., 1000:3000] = 60.0  # forget gate saturated at 1 for 2000 steps: the memory only grows
    x[3][..., 1000:3000] = 30.0
    h, (c, n, m) = mlstm_chunkwise(*x, chunk_size=64)
    leaves = [t.clone().requires_grad_(True) for t in x]
    mlstm_chunkwise(*leaves, chunk_size=64)[0].sum().backward()
    for t in (h, c, n, m, *(leaf.grad for leaf in leaves)):
        assert torch.isfinite(t).all()


@pytest.mark.parametrize("chunk_size", [16, 32, 64, 96, 128, 256])
def test_triton_padding_meets_the_kernel_rules(chunk_size):
    """The xl_chunk kernel (mlstm_kernels 2.0) wants a length divisible by 16; below 128 a power of two,
    from 128 on a multiple of a chunk size that is a multiple of 64."""
    for seq in range(1, 700):
        length, chunk = triton_shape(seq, chunk_size)
        assert seq <= length < max(2 * seq, 16) + chunk and length % 16 == 0
        if length < 128:
            assert length & (length - 1) == 0
        else:
            assert chunk % 64 == 0 and length % chunk == 0


@pytest.mark.skipif(not (torch.cuda.is_available() and mlstm_kernels_available()),
                    reason="needs a CUDA GPU and mlstm_kernels (pip install 'babblelm[gpu]')")
@pytest.mark.parametrize("seq,chunk_size", [(200, 64), (37, 64), (100, 32), (300, 128)])
def test_triton_kernel_matches_torch_chunkwise(seq, chunk_size):
    q, k, v, i, f = (t.cuda() for t in inputs(seq, gate_scale=4.0, seed=9))
    q, k, v = (torch.randn(B, H, seq, 64, device="cuda") for _ in range(3))
    reference, _ = mlstm_chunkwise(q, k, v, i, f, chunk_size=chunk_size)
    torch.testing.assert_close(mlstm_triton(q, k, v, i, f, chunk_size=chunk_size).float(), reference,
                               atol=2e-2, rtol=2e-2)
