import math

import torch

from quantlib.quantization.spqr import SpQR, effective_bits


def _layer_and_inputs(cols=128, rows=64, n=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    layer = torch.nn.Linear(cols, rows, bias=False)
    W = torch.randn(rows, cols, generator=g)
    W[torch.rand(rows, cols, generator=g) < 0.01] *= 8  # a few large weights, as in LLMs
    layer.weight.data = W
    X = torch.randn(n, cols, generator=g)
    X[:, :4] *= 10
    return layer, X


def _run(bits, threshold=0.2, group_size=16):
    layer, X = _layer_and_inputs()
    W = layer.weight.data.clone()
    q = SpQR(layer)
    q.add_batch(X)
    stats = q.fasterquant(bits, group_size=group_size, outlier_threshold=threshold)
    err = (X @ (layer.weight.data - W).t()).pow(2).mean().item()
    return err, stats["outliers"] / stats["weights"]


def test_error_falls_as_bits_rise():
    errs = [_run(b)[0] for b in (2, 3, 4, 8)]
    # 3-bit group statistics bound the error from below, so 8 bits is not near-lossless here
    assert errs == sorted(errs, reverse=True) and errs[-1] < 0.1 * errs[0]


def test_outliers_reduce_error_and_follow_the_threshold():
    err_none, frac_none = _run(2, threshold=float("inf"))
    err_02, frac_02 = _run(2, threshold=0.2)
    err_01, frac_01 = _run(2, threshold=0.1)
    assert frac_none == 0 and 0 < frac_02 < frac_01 < 0.5
    assert err_01 < err_02 < err_none


def test_effective_bits_hand_checked():
    # w3 g16 with 3-bit statistics: 3 + 6/16 + 64/256 = 3.625, plus 1% outliers at 32 bits each = 0.32
    assert math.isclose(effective_bits(3, 16, 0.01), 3.945)
    assert math.isclose(effective_bits(2, 128, 0.0), 2 + 6 / 128 + 64 / 2048)
