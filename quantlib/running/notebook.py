"""The papermill template's parameters: the run spec as one value, validated at the door."""
from __future__ import annotations

from quantlib.running.spec import RunSpec, SpecError

# name -> default: the template's `parameters` cell must define exactly these (tests check it). The
# spec default is a smoke run; every field left out takes RunSpec's default.
PARAMETERS = {
    "spec": {"model": "smollm2-135m-instruct", "method": "fp",
             "perplexity": {"datasets": ["wikitext2"], "limit": 1},
             "efficiency": {"new_tokens": 16, "repeats": 1}},
    "run_dir": "",
    "measure_speed": True,
}


def check(namespace: dict, before: set) -> tuple[RunSpec, dict]:
    """Validate what papermill injected: unknown names fail (papermill only warns), then the spec."""
    unknown = sorted(n for n in set(namespace) - before if not n.startswith("_") and n not in PARAMETERS)
    if unknown:
        raise SpecError(f"unknown notebook parameter(s) {unknown}; known: {sorted(PARAMETERS)} "
                        "(run settings go inside `spec`)")
    spec = namespace["spec"]
    if isinstance(spec, str):  # a path to a YAML/JSON spec file
        import yaml

        with open(spec) as f:
            spec = yaml.safe_load(f)
    return RunSpec.from_dict(spec), {k: namespace[k] for k in PARAMETERS if k != "spec"}
