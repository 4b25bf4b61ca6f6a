"""bf16 computed in fp32 on CPUs that would emulate it (quantlib.models.bf16_cpu)."""
import torch

from quantlib.models import bf16_cpu


def _layer(rows_in=96, rows_out=80, bias=True):
    torch.manual_seed(0)
    return torch.nn.Linear(rows_in, rows_out, bias=bias).to(torch.bfloat16)


def test_wide_inputs_are_the_fp32_products_rounded_to_bf16():
    layer = _layer()
    x = torch.randn(4, 16, 96).to(torch.bfloat16)  # 64 rows: the fp32 path
    native = layer(x)
    assert bf16_cpu.install(layer, force=True) == 1
    out = layer(x)
    exact = torch.nn.functional.linear(x.double(), layer.weight.double(), layer.bias.double())
    want = torch.nn.functional.linear(x.float(), layer.weight.float(), layer.bias.float()).to(torch.bfloat16)
    assert out.dtype == torch.bfloat16 and torch.equal(out, want)
    # as close to the fp64 product as torch's own bf16 path (both round once to bf16)
    err_out, err_native = (out.double() - exact).abs().mean(), (native.double() - exact).abs().mean()
    assert err_out <= err_native * 1.05


def test_narrow_inputs_stay_on_the_bf16_path():
    layer = _layer(bias=False)
    x = torch.randn(1, 3, 96).to(torch.bfloat16)  # 3 rows: decoding
    native = layer(x)
    bf16_cpu.install(layer, force=True)
    assert torch.equal(layer(x), native)


def test_install_counts_plain_bf16_linears_once_and_skips_the_rest():
    model = torch.nn.Sequential(_layer(), torch.nn.ReLU(), torch.nn.Linear(80, 8))  # the last stays fp32
    assert bf16_cpu.install(model, force=True) == 1
    forward = model[0].forward
    assert bf16_cpu.install(model, force=True) == 1 and model[0].forward is forward  # no double wrap
    assert not hasattr(model[2], "bf16_upcast")


def test_needed_only_for_bf16_on_a_cpu_without_native_bf16(monkeypatch):
    bf16 = torch.nn.Sequential(_layer())
    monkeypatch.setattr(bf16_cpu, "cpu_has_bf16", lambda: False)
    assert bf16_cpu.needed(bf16) and not bf16_cpu.needed(torch.nn.Sequential(torch.nn.Linear(4, 4)))
    monkeypatch.setattr(bf16_cpu, "cpu_has_bf16", lambda: True)
    assert not bf16_cpu.needed(bf16) and bf16_cpu.install(bf16) == 0
