"""What determines a quantized model: the variant (model, method, bits, group, protocol, calibration,
compute dtype), and its cache key."""
from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass, field

from quantlib.io import files


@dataclass(frozen=True)
class Calibration:
    file: str = "calibration/alpaca_en_demo.json"
    n_samples: int = 128
    max_tokens: int = 2048
    seed: int = 0


@dataclass(frozen=True)
class Variant:
    model: str
    method: str
    bits: int | None
    group_size: int | None
    params: dict = field(default_factory=dict)       # the method's protocol, every parameter spelled out
    calibration: Calibration | None = None           # calibrated methods only
    dtype: str = "float32"                           # compute dtype (resolved, never 'auto')

    def key(self) -> dict:
        """Everything that shapes the quantized weights: the variant itself, the method's version and
        a hash of its algorithm's source, and the packaged model's checksum. A change to any of them
        misses the checkpoint and result caches."""
        from quantlib.models import embedded
        from quantlib.quantization import methods

        m = methods.get(self.method)
        entry = embedded.registry().get(self.model, {})
        return {**asdict(self), "method_version": m.version, "code_sha256": code_sha256(m.code),
                "model_sha256": entry.get("sha256")}

    def digest(self) -> str:
        return files.digest(self.key())


def code_sha256(modules) -> str:
    """One hash over the source of the modules an algorithm runs (its version, automatically)."""
    return files.digest([inspect.getsource(m) for m in modules])
