import pytest

from quantlib.io import paths
from quantlib.running.spec import RunSpec, SpecError, load_grid
from quantlib.scoring import suite

M = "smollm2-135m-instruct"


def test_name_is_derived_from_spec_and_stable():
    a = RunSpec(model=M, method="gptq", bits=4)
    assert a.name == RunSpec(model=M, method="gptq", bits=4).name
    assert a.name.startswith("smollm2-135m-instruct__gptq-4b__")
    assert a.name != RunSpec(model=M, method="gptq", bits=3).name
    assert a.name != RunSpec(model=M, method="gptq", bits=4, perplexity={"limit": 2}).name
    assert RunSpec(model="Qwen/Qwen1.5-7B-Chat", method="fp", dtype="bfloat16").name.startswith(
        "qwen-qwen1.5-7b-chat__bf16__")


def test_spec_is_one_value_from_grid_to_record():
    """A spec round-trips through its dict (what Ray, the notebook and spec.json carry) unchanged."""
    s = RunSpec(model=M, method="spqr", bits=2, params={"outlier_threshold": float("inf")},
                perplexity={"datasets": ["c4"], "limit": 3}, benchmarks={"mmlu": {"limit": 1}})
    again = RunSpec.from_dict(s.to_dict())
    assert again == s and again.name == s.name and again.to_dict() == s.to_dict()
    assert s.to_dict()["params"] == {"percdamp": 0.01, "actorder": True, "outlier_threshold": float("inf"),
                                     "qq_bits": 3, "beta2": 16}  # the full protocol, spelled out


def test_methods_fill_their_bits_group_and_dtype():
    assert RunSpec(model=M, method="bnb-int8").bits == 8
    assert RunSpec(model=M, method="bnb-nf4").bits == 4
    assert RunSpec(model=M, method="fp", dtype="float32").bits == 32
    assert RunSpec(model=M, method="fp", dtype="bfloat16").bits == 16
    assert RunSpec(model=M, method="fp").dtype in ("bfloat16", "float32")  # 'auto', resolved
    assert RunSpec(model=M, method="bnb-nf4").group_size is None
    assert RunSpec(model=M, method="bnb-nf4").calibration is None  # uncalibrated: not part of its name


@pytest.mark.parametrize("kw, msg", [
    (dict(method="awq", bits=4), "unknown method 'awq'"),
    (dict(model="smollm3", method="fp"), "unknown model 'smollm3'"),
    (dict(method="bnb-nf4", bits=3), "cannot run at 3 bits"),
    (dict(method="bnb-int8", bits=4), "cannot run at 4 bits"),
    (dict(method="gptq", bits=5), "cannot run at 5 bits"),
    (dict(method="gptq"), "needs bits"),
    (dict(method="fp", perplexity={"seqlen": 0}), "perplexity.seqlen"),
    (dict(method="fp", perplexity={"windows": 2}), "unknown perplexity field"),
    (dict(method="gptq", bits=4, params={"outlier_threshold": 0.2}), "no parameter.*outlier_threshold"),
    (dict(method="spqr", bits=3, params={"outlier_threshold": -1.0}), "must be > 0"),
    (dict(method="fp", dtype="int3"), "unknown dtype"),
    (dict(method="bnb-nf4", group_size=64), "takes no group_size"),
    (dict(method="fp", perplexity={"datasets": ["wiki"]}), "unknown perplexity dataset"),
    (dict(method="fp", benchmarks={"mmlu_pro": {}}), "unknown benchmark 'mmlu_pro'"),
    (dict(method="fp", benchmarks={"mmlu": {"limit": -1}}), "benchmarks.mmlu.limit"),
])
def test_invalid_specs_fail_with_a_message_naming_the_problem(kw, msg):
    with pytest.raises(SpecError, match=msg):
        RunSpec(**{"model": M, **kw})


def test_method_defaults_for_group_size_and_outliers():
    s = RunSpec(model=M, method="spqr", bits=2)
    assert (s.group_size, s.params["outlier_threshold"]) == (16, 0.2)
    g = RunSpec(model=M, method="gptq", bits=2)
    assert g.group_size == 128 and "outlier_threshold" not in g.params
    assert RunSpec(model=M, method="spqr", bits=2, params={"outlier_threshold": float("inf")}).name != s.name


def test_variant_key_covers_calibration_only_for_calibrated_methods():
    g = RunSpec(model=M, method="gptq", bits=4).variant.key()
    assert g["group_size"] == 128 and g["calibration"]["n_samples"] == 128 and g["params"]["percdamp"] == 0.01
    assert g["method_version"] and g["code_sha256"]
    assert RunSpec(model=M, method="bnb-nf4").variant.key()["calibration"] is None


def test_default_grid_expands_to_every_method_and_benchmark():
    specs = load_grid(paths.GRIDS / "default.yaml")
    labels = [s.label for s in specs]
    fp = RunSpec(model="smollm2-135m-instruct", method="fp").label  # bf16 where native, else fp32
    assert sorted(labels) == sorted([fp, "bnb-int8", "bnb-nf4", "bnb-fp4", "gptq-8b", "gptq-4b", "gptq-3b",
                                     "gptq-2b", "rtn-8b", "rtn-4b", "rtn-3b", "rtn-2b", "spqr-8b", "spqr-4b",
                                     "spqr-3b", "spqr-2b"])
    assert len({s.name for s in specs}) == len(specs)
    assert all(set(s.benchmarks) == set(suite.names()) for s in specs)  # every cell scores everything
    assert specs[0].benchmarks["mmlu"] == {"limit": 1} and specs[0].benchmarks["snli"] == {"limit": 8}


def test_grids_include_another_and_set_a_default_limit(tmp_path):
    (tmp_path / "base.yaml").write_text("models: [org/m]\nmethods: [fp]\nlimit: 5\n"
                                        "perplexity: {limit: 2, seqlen: 512}\nbenchmarks: {mmlu: {limit: 1}}\n")
    (tmp_path / "more.yaml").write_text("include: base.yaml\nmethods: [{method: rtn, bits: [4]}]\n"
                                        "perplexity: {limit: 4}\nbenchmarks: {gsm8k: skip}\n")
    base, = load_grid(tmp_path / "base.yaml")
    more, = load_grid(tmp_path / "more.yaml")
    assert base.benchmarks["mmlu"] == {"limit": 1} and base.benchmarks["snli"] == {"limit": 5}
    assert more.method == "rtn" and more.perplexity.limit == 4 and more.perplexity.seqlen == 512  # merged
    assert "gsm8k" not in more.benchmarks and more.benchmarks["mmlu"] == {"limit": 5}  # benchmarks replaced
    (tmp_path / "loop.yaml").write_text("include: loop.yaml\nmodels: [org/m]\nmethods: [fp]\n")
    with pytest.raises(SpecError, match="includes itself"):
        load_grid(tmp_path / "loop.yaml")


def test_a_grid_entry_can_set_its_own_calibration_draw(tmp_path):
    (tmp_path / "g.yaml").write_text("models: [org/m]\ncalibration: {n_samples: 8}\nmethods:\n"
                                     "  - {method: gptq, bits: 3, calibration: {seed: 0}}\n"
                                     "  - {method: gptq, bits: 3, calibration: {seed: 1}}\n")
    a, b = load_grid(tmp_path / "g.yaml")
    assert (a.calibration.seed, b.calibration.seed) == (0, 1)
    assert a.calibration.n_samples == b.calibration.n_samples == 8
    assert a.label == b.label and a.name != b.name  # one variant, two runs


@pytest.mark.parametrize("text, msg", [
    ("models: [org/m]\nmethods: [{method: bnb-nf4, bits: [3]}]\n", "cannot run at 3 bits"),
    ("models: [org/m]\nmethods: [fp]\nbenchmark: {}\n", "unknown key"),
    ("models: []\nmethods: [fp]\n", "'models' must be a non-empty list"),
    ("models: [org/m]\nmethods: [fp\n", "not valid YAML"),
    ("", "must be a mapping"),                                   # an empty file
    ("models: [org/m]\nmethods: [{method: fp, bitz: 3}]\n", "bad methods entry"),
    ("include: nowhere.yaml\nmodels: [org/m]\nmethods: [fp]\n", "not found"),
])
def test_bad_grid_files_fail_at_load(tmp_path, text, msg):
    f = tmp_path / "grid.yaml"
    f.write_text(text)
    with pytest.raises(SpecError, match=msg):
        load_grid(f)
    with pytest.raises(SpecError, match="not found"):
        load_grid(tmp_path / "missing.yaml")


def test_the_study_sizes_differ_between_models_only_where_the_grids_say():
    """study-1.5b.yaml restates study.yaml's benchmark sizes (a grid's `benchmarks` replaces the
    included one): they must agree except MMLU and C-Eval, scored further on the larger model."""

    small, large = (load_grid(paths.GRIDS / g)[0].benchmarks for g in ("study.yaml", "study-1.5b.yaml"))
    differ = {b for b in set(small) | set(large) if small.get(b) != large.get(b)}
    assert differ == {"mmlu", "ceval"}
