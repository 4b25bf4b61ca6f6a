import torch

from quantlib.gptq import GPTQ, Quantizer, packed_bytes


def _layer_and_inputs(cols=256, rows=64, n=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    layer = torch.nn.Linear(cols, rows, bias=False)
    layer.weight.data = torch.randn(rows, cols, generator=g)
    # correlated inputs with a few large-activation channels, as in LLMs
    X = torch.randn(n, cols, generator=g) @ (torch.eye(cols) + 0.3 * torch.randn(cols, cols, generator=g))
    X[:, :8] *= 10
    return layer, X


def _rtn(W, bits, group):
    q = Quantizer(bits)
    out = torch.empty_like(W)
    for c in range(0, W.shape[1], group):
        q.find_params(W[:, c:c + group])
        out[:, c:c + group] = q.quantize(W[:, c:c + group])
    return out


def test_gptq_output_error_beats_round_to_nearest():
    for bits in (4, 3):
        layer, X = _layer_and_inputs()
        W = layer.weight.data.clone()
        g = GPTQ(layer)
        g.add_batch(X)
        loss = g.fasterquant(bits, group_size=128, actorder=True)
        err_gptq = (X @ (layer.weight.data - W).t()).pow(2).sum()
        err_rtn = (X @ (_rtn(W, bits, 128) - W).t()).pow(2).sum()
        assert loss > 0 and err_gptq < 0.8 * err_rtn, (bits, err_gptq, err_rtn)


def test_gptq_weights_lie_on_a_grid_of_2_to_the_bits_levels():
    layer, X = _layer_and_inputs(cols=128, rows=16)
    g = GPTQ(layer)
    g.add_batch(X)
    g.fasterquant(3, group_size=128, actorder=True)
    for row in layer.weight.data:
        assert len(torch.unique(row)) <= 2 ** 3


def test_hessian_is_mean_of_2xxT():
    layer, X = _layer_and_inputs(n=64)
    g = GPTQ(layer)
    g.add_batch(X[:20])
    g.add_batch(X[20:])
    assert torch.allclose(g.H, 2 * X.t() @ X / len(X), rtol=1e-4, atol=1e-3)


def test_packed_bytes_counts_codes_scales_zeros_gidx():
    # 4 bits: 64x256 codes = 8192 B, 2 groups x 64 rows x 2 B scales = 256 B, zeros 64 B, g_idx 1024 B
    assert packed_bytes(64, 256, 4, 128, actorder=True) == 8192 + 256 + 64 + 1024
