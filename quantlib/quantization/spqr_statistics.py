"""How much of SpQR's grid error comes from its bilevel statistics, at each bit width. SpQR stores each
group's per-row scale and zero in `qq_bits` (3) bits, in groups of beta2 (16) rows; a zero point off by
a fraction of its 3-bit range is a handful of grid steps at 8 bits and a fraction of one at 3 bits.
For chosen linear layers, SpQR's grid alone (no GPTQ error feedback, no outliers), once with
full-precision statistics and once with SpQR's: the relative error ||W - Q||_F / ||W||_F, the share
of weights whose code falls off the grid and is clamped, and the change in sum |w| (negative: shrunk).

    python -m quantlib.quantization.spqr_statistics qwen2.5-coder-0.5b-instruct \
        --layers 1.mlp.down_proj,8.self_attn.q_proj,20.mlp.up_proj

writes data/diagnostics/spqr-statistics__<model>.json (atomically); the study chapter reads it.
Group size, statistics bits, beta2 and the bit widths are the SpQR method's, from the registry.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from quantlib.io import files, paths
from quantlib.models.layers import decoder_linears
from quantlib.quantization import methods, spqr

OUT = paths.DATA / "diagnostics"


def out_file(model: str):
    return OUT / f"spqr-statistics__{model.replace('/', '--')}.json"


def grid(W: torch.Tensor, bits: int, group_size: int, qq_bits: int | None, beta2: int) -> dict:
    """SpQR's min-max grid over groups of `group_size` columns; statistics quantized to `qq_bits` bits
    in groups of beta2 rows, or kept in full precision when qq_bits is None."""
    Q, clamped = torch.empty_like(W), 0
    for i in range(0, W.shape[1], group_size):
        Wg = W[:, i:i + group_size]
        scale, zero = spqr._minmax(Wg, bits)
        if qq_bits is not None:
            scale, zero = spqr._bilevel(scale, qq_bits, beta2), spqr._bilevel(zero, qq_bits, beta2)
        code = torch.round(Wg / scale + zero)
        clamped += int(((code < 0) | (code > 2 ** bits - 1)).sum())
        Q[:, i:i + group_size] = spqr._fake(Wg, scale, zero, bits)
    return {"relative_error": float((Q - W).norm() / W.norm()), "clamped": clamped / W.numel(),
            "magnitude_change": float(Q.abs().sum() / W.abs().sum() - 1)}


def measure(model, layer_names: list[str], bits: tuple[int, ...] | None = None) -> dict:
    """Grid error with full-precision and with SpQR's statistics, per layer and bit width."""
    method = methods.get("spqr")
    qq_bits, beta2 = method.params["qq_bits"], method.params["beta2"]
    modules = decoder_linears(model, layer_names)
    rows = []
    for name in layer_names:
        W = modules[name].weight.data.float()
        for b in bits or method.bits:
            rows.append({"layer": name, "bits": b,
                         "full_precision_statistics": grid(W, b, method.group_size, None, beta2),
                         "spqr_statistics": grid(W, b, method.group_size, qq_bits, beta2)})
    return {"method": "spqr", "group_size": method.group_size, "qq_bits": qq_bits, "beta2": beta2, "layers": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="registered model name, Hugging Face id or local path")
    p.add_argument("--layers", required=True, help="comma-separated decoder linear layers, e.g. 1.mlp.down_proj")
    a = p.parse_args(argv)
    from quantlib.models import load
    from quantlib.running import records

    start, git = time.time(), records.git_sha()  # the commit that runs, not HEAD when it ends
    model = load.load_fp(a.model, "auto")
    try:
        result = measure(model, a.layers.split(","))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result = {"model": a.model, **result, "dtype": str(model.dtype).removeprefix("torch."),
              "machine": records.machine(), "git": git, "seconds": time.time() - start}
    path = out_file(a.model)
    files.write_json(path, result)
    for r in result["layers"]:
        fp, sq = r["full_precision_statistics"], r["spqr_statistics"]
        print(f"{r['layer']:20s} {r['bits']}b  error {fp['relative_error']:.4f} -> {sq['relative_error']:.4f}"
              f"  clamped {sq['clamped']:.2%}  sum|w| {sq['magnitude_change']:+.3%}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
