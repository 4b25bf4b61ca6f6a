"""Methods that rewrite the weights layer by layer (GPTQ, SpQR, RTN), scored on the dequantized
weights by dense kernels, and their checkpoint cache; plus the full-precision baseline."""
from __future__ import annotations

import os
import shutil
import warnings

from quantlib.io import files, paths
from quantlib.models import load as loading
from quantlib.quantization import calibration, layerwise, rtn


def _footprint(model) -> int:
    return int(model.get_memory_footprint())


def load_fp(variant, method):
    model = loading.load_fp(variant.model, variant.dtype)
    return model, {"dtype": variant.dtype, "weight_bytes": _footprint(model), "weight_bytes_kind": "stored tensors",
                   "n_params": sum(p.numel() for p in model.parameters())}


def cache_dir(variant) -> str:
    """One folder per variant key (model, method, version, code, bits, group, protocol, calibration, dtype)."""
    slug = variant.model.rstrip("/").rsplit("/", 1)[-1].lower()
    return str(paths.cache_dir() / "quantized" / f"{slug}-{variant.method}-{variant.bits}b-{variant.digest()[:16]}")


def _cached(variant, quantize):
    """The fp model with its decoder layers replaced by the cached quantized ones; quantize(model)
    fills the cache first when it has no whole entry."""
    from safetensors.torch import load_file, save_file

    model = loading.load_fp(variant.model, variant.dtype)
    cache = cache_dir(variant)
    qinfo = _verified_cache(cache)
    if qinfo is not None:
        saved = load_file(os.path.join(cache, "model.safetensors"), device=str(model.device))
        unexpected = model.load_state_dict(saved, strict=False).unexpected_keys  # decoder layers only
        if unexpected or not saved:
            raise RuntimeError(f"quantized cache {cache} does not match the model (unexpected keys {unexpected[:3]})")
        if os.path.exists(os.path.join(cache, "grid.safetensors")):
            flat = load_file(os.path.join(cache, "grid.safetensors"))
            model.quant_grids = {}
            for k, v in flat.items():
                name, part = k.rsplit(".", 1)
                model.quant_grids.setdefault(name, {})[part] = v
        qinfo["from_cache"] = True
    else:
        qinfo = quantize(model) | {"key": variant.key()}
        tmp = cache + f".tmp{os.getpid()}"
        os.makedirs(tmp, exist_ok=True)
        layers = layerwise.decoder_layers(model)
        state = {k: v.contiguous() for k, v in model.state_dict().items()
                 if any(v.data_ptr() == p.data_ptr() for p in layers.parameters())}
        save_file(state, os.path.join(tmp, "model.safetensors"))
        if getattr(model, "quant_grids", None):
            save_file({f"{n}.{k}": v.clone() for n, g in model.quant_grids.items() for k, v in g.items()},
                      os.path.join(tmp, "grid.safetensors"))
            qinfo["grid_sha256"] = files.sha256_file(os.path.join(tmp, "grid.safetensors"))
        qinfo["weights_sha256"] = files.sha256_file(os.path.join(tmp, "model.safetensors"))
        files.write_json(os.path.join(tmp, "quant_info.json"), qinfo)
        files.publish_dir(tmp, cache)
        qinfo["from_cache"] = False
    return model, _info(model, variant, qinfo)


def _info(model, variant, qinfo: dict) -> dict:
    """What the record says of a rewritten model: the stored size counts the quantized layers in
    their stored format (the method's layer_bytes) and the rest at the compute dtype."""
    dense = _footprint(model)
    return {**qinfo, "dtype": variant.dtype, "dense_weight_bytes": dense,
            "weight_bytes": dense - qinfo["quantized_linear_dense_bytes"] + qinfo["quantized_linear_packed_bytes"],
            "weight_bytes_kind": "stored format, computed (scored on dequantized dense weights)",
            "quantized_linear_params": qinfo["quantized_linear_dense_bytes"] // loading.DTYPES[variant.dtype].itemsize,
            "n_params": sum(p.numel() for p in model.parameters())}


def load_layerwise(algorithm):
    """Loader of a calibrated method whose `algorithm` class runs layer by layer (GPTQ, SpQR)."""
    def load(variant, method):
        def quantize(model):
            samples = calibration.samples(loading.load_tokenizer(variant.model), variant.calibration)
            layer_bytes = lambda r, c, st: method.layer_bytes(r, c, variant.bits, variant.group_size,
                                                              variant.params, st)
            info = layerwise.quantize(model, samples, algorithm, layer_bytes, bits=variant.bits,
                                      group_size=variant.group_size, **variant.params)
            return info | {"calibration_tokens": int(sum(s.shape[1] for s in samples))}
        return _cached(variant, quantize)
    return load


def load_rtn(variant, method):
    model = loading.load_fp(variant.model, variant.dtype)
    layer_bytes = lambda r, c, st: method.layer_bytes(r, c, variant.bits, variant.group_size, variant.params, st)
    info = layerwise.quantize_weights(model, rtn.quantize_layer, layer_bytes, bits=variant.bits,
                                      group_size=variant.group_size, **variant.params)
    return model, _info(model, variant, info)


def _verified_cache(cache: str) -> dict | None:
    """The cached quantization's info if the entry is whole (its weights match their recorded
    checksum); a damaged entry is removed, so that the caller quantizes again."""
    info_path, weights = os.path.join(cache, "quant_info.json"), os.path.join(cache, "model.safetensors")
    if not os.path.exists(cache):
        return None
    try:
        qinfo = files.read_json(info_path)
        if files.sha256_file(weights) != qinfo["weights_sha256"]:
            raise ValueError("checksum mismatch")
        grid = os.path.join(cache, "grid.safetensors")
        if "grid_sha256" in qinfo and files.sha256_file(grid) != qinfo["grid_sha256"]:
            raise ValueError("grid checksum mismatch")
        return qinfo
    except (OSError, ValueError, KeyError) as e:
        warnings.warn(f"quantized-checkpoint cache {cache} is damaged ({e}); quantizing again")
        shutil.rmtree(cache, ignore_errors=True)
        return None
