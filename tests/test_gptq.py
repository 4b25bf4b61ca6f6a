import pytest
import torch

from quantlib.quantization import layerwise
from quantlib.quantization.gptq import GPTQ, packed_bytes
from quantlib.quantization.rtn import rtn


def _layer_and_inputs(cols=256, rows=64, n=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    layer = torch.nn.Linear(cols, rows, bias=False)
    layer.weight.data = torch.randn(rows, cols, generator=g)
    # correlated inputs with a few large-activation channels, as in LLMs
    X = torch.randn(n, cols, generator=g) @ (torch.eye(cols) + 0.3 * torch.randn(cols, cols, generator=g))
    X[:, :8] *= 10
    return layer, X


def test_gptq_output_error_beats_round_to_nearest():
    for bits in (4, 3):
        layer, X = _layer_and_inputs()
        W = layer.weight.data.clone()
        g = GPTQ(layer)
        g.add_batch(X)
        st = g.fasterquant(bits, group_size=128, actorder=True)
        err_gptq = (X @ (layer.weight.data - W).t()).pow(2).sum()
        err_rtn = (X @ (rtn(W, bits, 128) - W).t()).pow(2).sum()
        assert st["loss"] > 0 and err_gptq < 0.8 * err_rtn, (bits, err_gptq, err_rtn)
        assert (st["outliers"], st["weights"]) == (0, W.numel())  # the statistics shape of every method


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


def test_rtn_rounds_each_group_to_its_own_grid():
    W = torch.randn(8, 256)
    Q = rtn(W, 2, 128, sym=False)
    for g in (Q[:, :128], Q[:, 128:]):
        assert all(len(torch.unique(row)) <= 4 for row in g)
    assert (Q - W).abs().max() < (W.max() - W.min()) / 3  # nearest point, not a far one


class _Objective(GPTQ):
    """GPTQ that also records, for its stage, ||WX - QX||^2 = tr((W - Q) H (W - Q)^T) (up to the
    constant of H's running mean) for its own Q and for RTN's Q on the same grid and inputs."""
    seen = []

    def fasterquant(self, bits, group_size, **kw):
        W, H = self.layer.weight.data.clone().float(), self.H.clone()
        objective = lambda Q: float(torch.einsum("ij,jk,ik->", W - Q, H, W - Q))
        rtn_obj = objective(rtn(W, bits, group_size, kw.get("sym", True)))
        st = super().fasterquant(bits, group_size, **kw)
        _Objective.seen.append((objective(self.layer.weight.data.float()), rtn_obj))
        return st


def _layer_objectives(model, samples, bits=3):
    _Objective.seen = []
    layerwise.quantize(model, samples, _Objective, lambda r, c, st: 0, bits=bits, group_size=128,
                       percdamp=0.01, actorder=True, sym=True)
    return _Objective.seen


def _check_gptq_beats_rtn(seen):
    gptq, rtn_ = map(sum, zip(*seen))
    wins = sum(g < r for g, r in seen)
    assert gptq < rtn_ and wins > len(seen) / 2, (gptq, rtn_, wins, len(seen))


def test_gptq_layer_objective_is_below_rtn_on_a_small_model(tiny_model):
    """What GPTQ exists to do: on the calibration inputs each layer sees, its rounding leaves less
    output error than round-to-nearest on the same grid, summed over layers and on most layers."""
    from quantlib.models import load as loading
    from quantlib.quantization import calibration
    from quantlib.quantization.variant import Calibration

    model = loading.load_fp(tiny_model, "float32")
    samples = calibration.samples(loading.load_tokenizer(tiny_model), Calibration(n_samples=8))
    _check_gptq_beats_rtn(_layer_objectives(model, samples))


def test_hessians_from_partial_layer_runs_give_the_same_weights(tiny_model, monkeypatch):
    """Each stage's Hessian needs the layer only up to the stage's modules: stopping there must leave
    the quantized weights bit for bit what running the whole layer gives."""
    from quantlib.models import load as loading
    from quantlib.quantization import calibration
    from quantlib.quantization.variant import Calibration

    samples = calibration.samples(loading.load_tokenizer(tiny_model), Calibration(n_samples=4))

    def weights():
        model = loading.load_fp(tiny_model, "float32")
        layerwise.quantize(model, samples, GPTQ, lambda r, c, st: 0, bits=3, group_size=128,
                           percdamp=0.01, actorder=True, sym=True)
        return {n: m.weight.detach().clone() for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}

    partial = weights()

    def whole_layer(layer, inputs, module, add_batch):
        handle = module.register_forward_hook(lambda _m, inp, _o: add_batch(inp[0].data))
        layerwise._run(layer, inputs)
        handle.remove()

    monkeypatch.setattr(layerwise, "_feed", whole_layer)
    whole = weights()
    assert partial.keys() == whole.keys() and all(torch.equal(partial[k], whole[k]) for k in whole)


@pytest.mark.slow
def test_gptq_layer_objective_is_below_rtn_on_the_real_model():
    from quantlib.models import load as loading
    from quantlib.quantization import calibration
    from quantlib.quantization.variant import Calibration

    model = loading.load_fp("smollm2-135m-instruct", "float32")
    samples = calibration.samples(loading.load_tokenizer("smollm2-135m-instruct"), Calibration(n_samples=4))
    _check_gptq_beats_rtn(_layer_objectives(model, samples))


@pytest.mark.parametrize("bits,actorder,sym", [(4, True, True), (4, False, True), (8, True, True),
                                               (8, False, False)])
def test_packed_layer_equals_the_dequantized_layer(bits, actorder, sym):
    """GPTQ-4 and GPTQ-8 on torch's CPU int4 / int8 kernels compute what the dequantized layer
    computes (act-order: groups in permuted order, activations permuted; asymmetric: the zero-point
    correction of the int8 path), within bf16 rounding."""
    from quantlib.quantization.kernels import KERNELS

    layer, X = _layer_and_inputs(cols=256, rows=64)
    layer.bias = torch.nn.Parameter(torch.randn(64))
    g = GPTQ(layer)
    g.add_batch(X)
    g.fasterquant(bits, group_size=128, actorder=actorder, sym=sym)
    packed = KERNELS[bits][0](layer, g.grid, 128)
    assert (packed.perm is not None) == actorder
    W = layer.weight.data
    assert torch.allclose(packed.dequantized(), W, atol=2e-2 * W.abs().max().item())
    x = torch.randn(5, 256)
    want = layer(x)
    got = packed(x)
    assert got.dtype == x.dtype and (got - want).norm() / want.norm() < 0.01
    dense_bytes = W.numel() * 2
    stored = sum(b.numel() * b.element_size() for n, b in packed.named_buffers() if n in ("packed", "codes"))
    assert stored == dense_bytes * bits // 16


def _unpack(words: torch.Tensor, bits: int, dim: int) -> torch.Tensor:
    """The GPTQ checkpoint's unpacking, as its kernels read it: 32 / bits fields per int32, low first."""
    shifts = torch.arange(0, 32, bits, dtype=torch.int32)
    w = words.movedim(dim, -1).unsqueeze(-1)
    fields = torch.bitwise_and(torch.bitwise_right_shift(w, shifts), 2**bits - 1)
    return fields.flatten(-2).movedim(-1, dim)


@pytest.mark.parametrize("bits,actorder,sym", [(4, True, True), (4, False, False), (8, True, True),
                                               (2, True, False)])
def test_gptq_checkpoint_tensors_decode_to_the_dequantized_weights(bits, actorder, sym):
    """The tensors written for GPTQModel (qweight, qzeros with v1's offset of one, fp16 scales, g_idx
    under act-order) decode to the layer's dequantized weights."""
    from quantlib.quantization import gptq_export

    layer, X = _layer_and_inputs(cols=256, rows=64)
    g = GPTQ(layer)
    g.add_batch(X)
    g.fasterquant(bits, group_size=128, actorder=actorder, sym=sym)
    t = gptq_export.pack_layer(layer, g.grid, bits, 128)
    assert t["qweight"].shape == (256 * bits // 32, 64) and t["qzeros"].shape == (2, 64 * bits // 32)
    q = _unpack(t["qweight"], bits, 0)                           # [K, N]
    zeros = _unpack(t["qzeros"], bits, 1) + 1                    # [G, N]
    assert torch.equal(torch.bincount(t["g_idx"].long()), torch.tensor([128, 128]))
    assert (t["g_idx"].long() == torch.arange(256) // 128).all() != actorder
    W = t["scales"].float()[t["g_idx"].long()] * (q - zeros[t["g_idx"].long()])   # [K, N]
    assert torch.allclose(W.t(), layer.weight.data, atol=2e-3 * layer.weight.data.abs().max().item())


def _gptqmodel_device(device):
    from quantlib.quantization import gptq_export

    if not gptq_export.available():
        pytest.skip("GPTQModel and optimum are not installed (requirements-gpu.txt)")
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs CUDA")


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_gptq_model_runs_on_gptqmodel_kernels(tiny_model, device):
    """On CUDA, GPTQ's speed model is the checkpoint loaded onto GPTQModel's kernels; its logits match
    the dequantized model's (the torch kernel on CPU, where GPTQModel is installed)."""
    _gptqmodel_device(device)
    from quantlib.quantization import gptq_export, methods
    from quantlib.running.spec import RunSpec

    model, _ = methods.load(RunSpec(model=tiny_model, method="gptq", bits=4, calibration={"n_samples": 4}).variant)
    model = model.to(device=device, dtype=torch.float16)
    packed, info = gptq_export.load(gptq_export.export(model, 4, 128, tiny_model + "-gptq"), device)
    assert "QuantLinear" in info
    ids = torch.randint(0, 1000, (1, 16), device=device)
    want, got = model(ids).logits.float(), packed(ids).logits.float()
    assert (got - want).norm() / want.norm() < 0.02
