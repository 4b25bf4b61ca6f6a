"""The decoder's linear layers by the names diagnostics take on the command line ('1.mlp.down_proj')."""
from __future__ import annotations

import torch


def decoder_linears(model, names: list[str]) -> dict[str, torch.nn.Linear]:
    """The named linear layers of the model's decoder; a ValueError naming every name that is not one."""
    modules = dict(model.model.layers.named_modules())
    unknown = [n for n in names if n not in modules or not isinstance(modules[n], torch.nn.Linear)]
    if unknown:
        raise ValueError(f"not linear layers of the decoder: {unknown} (names look like '1.mlp.down_proj')")
    return {n: modules[n] for n in names}
