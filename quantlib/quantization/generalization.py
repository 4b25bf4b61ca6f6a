"""Does GPTQ's fit to its calibration inputs carry over to other text? For chosen linear layers: the
layer objective ||(W - Q) X||^2 per token, for GPTQ's Q and for RTN's on the same grid, on the
calibration inputs X and on held-out text in English and in Chinese (FLORES-200 devtest: the same
sentences in both languages, so language is the only difference). Each layer is fitted alone on
full-precision inputs (no sequential pass), which isolates generalization from the pipeline.

    python -m quantlib.quantization.generalization qwen2.5-coder-1.5b-instruct --bits 4 \
        --layers 1.mlp.down_proj,8.mlp.down_proj,8.self_attn.q_proj

writes data/diagnostics/generalization__<model>__<bits>b[-asym]__<samples>cal.json (atomically, see
`out_file`); the study chapter reads it.
GPTQ's objective on its own calibration inputs is below RTN's by construction; a ratio above 1 on
held-out text means GPTQ fitted its calibration set, not the layer.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict

import torch

from quantlib.io import files, paths
from quantlib.models.layers import decoder_linears
from quantlib.quantization import calibration, gptq, methods, rtn
from quantlib.quantization.variant import Calibration

OUT = paths.DATA / "diagnostics"
HELDOUT = {"English": "eng_Latn", "Chinese": "zho_Hans"}  # FLORES-200 languages


def out_file(model: str, bits: int, sym: bool = True, samples: int = Calibration.n_samples):
    return OUT / f"generalization__{model.replace('/', '--')}__{bits}b{'' if sym else '-asym'}__{samples}cal.json"


def heldout_text(lang: str) -> str:
    """FLORES-200 devtest sentences of one language, joined (local copy or the hub)."""
    from quantlib.tasks.common import flores_pairs

    d = flores_pairs(lang, lang)["devtest"]
    return "\n".join(text for _, text in sorted(zip(d["id"], d["source"])))  # the articles' own order


def input_hessians(model, layers: dict, inputs: dict[str, list[torch.Tensor]]) -> dict:
    """sum X^T X and the token count of each layer's inputs, per input set; the decoder stops after the
    last layer named (nothing later shapes their inputs) and no output projection runs."""
    stats, current = {}, [None]

    def hook(name):
        def record(_, inp, __):
            X = inp[0].reshape(-1, inp[0].shape[-1]).float()
            H, n = stats.get((current[0], name), (0, 0))  # summed in float64: Qwen's massive activations
            stats[(current[0], name)] = (H + (X.t() @ X).double(), n + X.shape[0])  # outgrow fp32 precision
        return record

    decoder = model.model
    last = max(int(n.split(".")[0]) for n in layers)
    kept, decoder.layers = decoder.layers, decoder.layers[:last + 1]
    handles = [m.register_forward_hook(hook(n)) for n, m in layers.items()]
    try:
        with torch.no_grad():
            for key, xs in inputs.items():
                current[0] = key
                for x in xs:
                    decoder(x.to(model.device))  # CUDA when the model is there
    finally:
        for h in handles:
            h.remove()
        decoder.layers = kept
    return stats


def objective(W: torch.Tensor, Q: torch.Tensor, H: torch.Tensor, n: int) -> float:
    """||(W - Q) X||^2 / tokens = tr((W - Q) X^T X (W - Q)^T) / tokens."""
    E = (W - Q).to(H.dtype)
    return float(((E @ H) * E).sum() / n)


def measure(model, tokenizer, layer_names: list[str], bits: int, params: dict | None = None,
            cal: Calibration | None = None, heldout_tokens: int | None = None) -> dict:
    """GPTQ over RTN objective ratios per layer and input set, with GPTQ's registry defaults (group
    size, act-order, damping, symmetry) unless `params` overrides them and the default calibration
    unless `cal` does; held-out sets are cut to as many tokens as the calibration set has, or
    `heldout_tokens`."""
    method = methods.get("gptq")
    group_size, p, cal = method.group_size, {**method.params, **(params or {})}, cal or Calibration()
    layers = decoder_linears(model, layer_names)  # before any input is prepared: a bad name fails at once
    cal_ids = calibration.samples(tokenizer, cal)
    n_cal = sum(x.shape[1] for x in cal_ids)
    inputs = {"calibration": cal_ids}
    for label, lang in HELDOUT.items():
        ids = tokenizer(heldout_text(lang), return_tensors="pt", add_special_tokens=False).input_ids
        inputs[label] = list(ids[:, :heldout_tokens or n_cal].split(512, dim=1))
    stats = input_hessians(model, layers, inputs)
    rows = []
    for name, layer in layers.items():
        W = layer.weight.data.float().clone()
        Q_rtn = rtn.rtn(W, bits, group_size, p["sym"])
        H, n = stats[("calibration", name)]
        g = gptq.GPTQ(layer)
        g.H, g.nsamples = (2 * H / n).float(), n  # GPTQ's H = 2 X X^T / tokens, as add_batch accumulates it
        g.fasterquant(bits, group_size, p["percdamp"], p["actorder"], p["sym"])
        Q_gptq = layer.weight.data.float()
        layer.weight.data = W.to(layer.weight.dtype)  # the model is left as it came
        row = {"layer": name, "columns": W.shape[1]}
        for key in inputs:
            H, n = stats[(key, name)]
            g_obj, r_obj = objective(W, Q_gptq, H, n), objective(W, Q_rtn, H, n)
            row[key] = {"tokens": n, "gptq": g_obj, "rtn": r_obj, "ratio": g_obj / r_obj}
        rows.append(row)
    return {"bits": bits, "group_size": group_size, "params": p, "calibration": asdict(cal),
            "calibration_tokens": n_cal, "heldout": {k: f"FLORES-200 devtest {v}" for k, v in HELDOUT.items()},
            "layers": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="registered model name, Hugging Face id or local path")
    p.add_argument("--bits", type=int, default=4)
    p.add_argument("--layers", required=True, help="comma-separated decoder linear layers, e.g. 1.mlp.down_proj")
    p.add_argument("--asym", action="store_true", help="asymmetric grid (default: the paper's symmetric one)")
    p.add_argument("--samples", type=int, default=Calibration.n_samples,
                   help="calibration samples (default: the study's); more tokens pin the Hessian down better")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    a = p.parse_args(argv)
    from quantlib.models import load
    from quantlib.running import records

    if a.threads:
        torch.set_num_threads(a.threads)
    start, git = time.time(), records.git_sha()  # the commit that runs, not HEAD when it ends
    model, tokenizer = load.load_fp(a.model, "auto"), load.load_tokenizer(a.model)
    try:
        result = measure(model, tokenizer, a.layers.split(","), a.bits, {"sym": not a.asym},
                         Calibration(n_samples=a.samples))
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result = {"model": a.model, **result, "dtype": str(model.dtype).removeprefix("torch."),
              "machine": records.machine(), "git": git, "seconds": time.time() - start}
    path = out_file(a.model, a.bits, not a.asym, a.samples)
    files.write_json(path, result)
    for row in result["layers"]:
        print(row["layer"], {k: round(v["ratio"], 3) for k, v in row.items() if isinstance(v, dict)})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
