"""Apply a layer-wise quantizer (GPTQ, SpQR, RTN) to a whole decoder, layer by layer, on calibration
inputs (the AutoGPTQ/GPTQModel recipe).

Each decoder layer sees the outputs of the already-quantized layers before it. Inside a layer the
linear modules are quantized in true-sequential order (q/k/v, then o, then gate/up, then down), each
stage's Hessians collected with the earlier stages already quantized.
"""
from __future__ import annotations

import time

import torch

STAGES = (("q_proj", "k_proj", "v_proj"), ("o_proj",), ("gate_proj", "up_proj"), ("down_proj",))


class _Stop(Exception):
    pass


class _Stacked(torch.nn.Module):
    """Linear layers with one input, seen by GPTQ as one weight of stacked rows."""

    def __init__(self, linears):
        super().__init__()
        self.linears = linears
        self.weight = torch.nn.Parameter(torch.cat([m.weight.data for m in linears]), requires_grad=False)

    def write_back(self):
        for m, w in zip(self.linears, self.weight.data.split([m.weight.shape[0] for m in self.linears])):
            m.weight.data = w.clone()


def decoder_layers(model) -> torch.nn.ModuleList:
    n = model.config.num_hidden_layers
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise ValueError(f"cannot find the {n} decoder layers of {type(model).__name__}")


def _stages(layer) -> list[list[tuple[str, torch.nn.Linear]]]:
    linears = [(n, m) for n, m in layer.named_modules() if isinstance(m, torch.nn.Linear)]
    stages, used = [], set()
    for suffixes in STAGES:
        stage = [(n, m) for n, m in linears if n.rsplit(".", 1)[-1] in suffixes]
        if stage:
            stages.append(stage)
            used.update(n for n, _ in stage)
    rest = [(n, m) for n, m in linears if n not in used]  # unknown architectures: one module per stage
    return stages + [[x] for x in rest]  # unknown layouts: one module per stage


def _layer_inputs(model, layers, samples):
    """Hidden states and keyword arguments that reach the first decoder layer, per sample."""
    captured = []

    def hook(_module, args, kwargs):
        captured.append((args[0] if args else kwargs.pop("hidden_states"),
                         {k: v for k, v in kwargs.items() if k != "hidden_states"}))
        raise _Stop

    handle = layers[0].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for ids in samples:
            try:
                model(ids.to(model.device), use_cache=False)
            except _Stop:
                pass
    finally:
        handle.remove()
    return captured


def _run(layer, inputs):
    outs = []
    for hs, kw in inputs:
        out = layer(hs, **kw)
        outs.append(out[0] if isinstance(out, tuple) else out)
    return outs


def _feed(layer, inputs, module, add_batch) -> None:
    """Give `add_batch` the input `module` sees on every calibration sample, running the layer only up
    to that module: the rest of the layer does not shape the Hessian (q/k/v need the input norm alone)."""
    def hook(_m, inp, _out):
        add_batch(inp[0].data)
        raise _Stop

    handle = module.register_forward_hook(hook)
    try:
        for hs, kw in inputs:
            try:
                layer(hs, **kw)
            except _Stop:
                pass
    finally:
        handle.remove()


@torch.no_grad()
def quantize(model, samples: list[torch.Tensor], algorithm, layer_bytes, **kw) -> dict:
    """Quantize every decoder linear layer in place with `algorithm` (GPTQ, SpQR: a class built on a
    layer, fed its inputs by `add_batch`, then `fasterquant(**kw)` -> {loss, outliers, weights}).
    `layer_bytes(rows, columns, stats)` is the method's stored size of one layer. Returns per-stage
    statistics and the stored size of the quantized layers; where the algorithm keeps its grid (GPTQ),
    `model.quant_grids` gets each layer's scales, zeros and column order, by module name."""
    layers = decoder_layers(model)
    inputs = _layer_inputs(model, layers, samples)
    names = {id(m): n for n, m in model.named_modules()}
    stages, packed, dense, grids = {}, 0, 0, {}
    t0 = time.perf_counter()
    for li, layer in enumerate(layers):
        for stage in _stages(layer):
            # modules of a stage read the same input, hence share H: quantize their stacked rows at once
            # (rows are independent given H, so this equals quantizing them one by one)
            stacked = _Stacked([m for _, m in stage])
            q = algorithm(stacked)
            _feed(layer, inputs, stage[0][1], q.add_batch)
            st = q.fasterquant(**kw)
            stages[f"{li}." + "+".join(n for n, _ in stage)] = st
            stacked.write_back()
            if getattr(q, "grid", None) is not None:  # stacked rows: split the grid back per module
                rows = [m.weight.shape[0] for _, m in stage]
                for (_, m), s, z in zip(stage, q.grid["scale"].split(rows), q.grid["zero"].split(rows)):
                    grids[names[id(m)]] = {"scale": s, "zero": z, "perm": q.grid["perm"]}
            for _, m in stage:
                packed += layer_bytes(*m.weight.shape, st)
                dense += m.weight.numel() * m.weight.element_size()
        outs = _run(layer, inputs)
        inputs = [(o, kw_) for o, (_, kw_) in zip(outs, inputs)]
    if grids:
        model.quant_grids = grids
    return summarize(stages, packed, dense, time.perf_counter() - t0)


@torch.no_grad()
def quantize_weights(model, quantize_layer, layer_bytes, **kw) -> dict:
    """Calibration-free methods (RTN): `quantize_layer(linear, **kw)` on every decoder linear layer."""
    stages, packed, dense = {}, 0, 0
    t0 = time.perf_counter()
    for li, layer in enumerate(decoder_layers(model)):
        for n, m in layer.named_modules():
            if isinstance(m, torch.nn.Linear):
                st = stages[f"{li}.{n}"] = quantize_layer(m, **kw)
                packed += layer_bytes(*m.weight.shape, st)
                dense += m.weight.numel() * m.weight.element_size()
    return summarize(stages, packed, dense, time.perf_counter() - t0)


def summarize(stages: dict, packed: int, dense: int, seconds: float) -> dict:
    """One statistics shape for every method: per-stage loss and outlier share, totals, sizes."""
    outliers, weights = (sum(st[k] for st in stages.values()) for k in ("outliers", "weights"))
    return {"layer_losses": {k: st["loss"] for k, st in stages.items()},
            "layer_outlier_fractions": {k: st["outliers"] / st["weights"] for k, st in stages.items()},
            "outliers": outliers, "outlier_fraction": outliers / weights if weights else 0.0,
            "seconds": seconds, "quantized_linear_dense_bytes": dense, "quantized_linear_packed_bytes": packed}
