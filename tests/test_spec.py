import pytest

from quantlib.spec import RunSpec, SpecError, load_grid

M = "smollm2-135m-instruct"


def test_name_is_derived_from_spec_and_stable():
    a = RunSpec(model=M, method="gptq", bits=4)
    assert a.name == RunSpec(model=M, method="gptq", bits=4).name
    assert a.name.startswith("smollm2-135m-instruct__gptq-4b__")
    assert a.name != RunSpec(model=M, method="gptq", bits=3).name
    assert a.name != RunSpec(model=M, method="gptq", bits=4, ppl_limit=2).name
    assert RunSpec(model="Qwen/Qwen1.5-7B-Chat", method="fp").name.startswith("qwen-qwen1.5-7b-chat__fp__")


def test_fixed_width_methods_fill_their_bits():
    assert RunSpec(model=M, method="bnb-int8").bits == 8
    assert RunSpec(model=M, method="bnb-nf4").bits == 4
    assert RunSpec(model=M, method="fp").bits is None


@pytest.mark.parametrize("kw, msg", [
    (dict(method="awq", bits=4), "unknown method 'awq'"),
    (dict(model="smollm3", method="fp"), "unknown model 'smollm3'"),
    (dict(method="bnb-nf4", bits=3), "cannot run at 3 bits"),
    (dict(method="bnb-int8", bits=4), "cannot run at 4 bits"),
    (dict(method="gptq", bits=5), "cannot run at 5 bits"),
    (dict(method="gptq"), "needs bits"),
    (dict(method="fp", ppl_seqlen=0), "ppl_seqlen"),
    (dict(method="gptq", bits=4, outlier_threshold=0.2), "outlier_threshold applies to spqr only"),
    (dict(method="spqr", bits=3, outlier_threshold=-1.0), "must be > 0"),
    (dict(method="fp", ppl_datasets=("wiki",)), "unknown perplexity dataset"),
    (dict(method="fp", benchmarks={"mmlu_pro": {}}), "unknown benchmark 'mmlu_pro'"),
    (dict(method="fp", benchmarks={"mmlu": {"limit": -1}}), "benchmarks.mmlu.limit"),
])
def test_invalid_specs_fail_with_a_message_naming_the_problem(kw, msg):
    with pytest.raises(SpecError, match=msg):
        RunSpec(**{"model": M, **kw})


def test_method_defaults_for_group_size_and_outliers():
    s = RunSpec(model=M, method="spqr", bits=2)
    assert (s.group_size, s.outlier_threshold) == (16, 0.2)
    g = RunSpec(model=M, method="gptq", bits=2)
    assert g.group_size == 128 and "outlier_threshold" not in g.to_dict()
    assert RunSpec(model=M, method="spqr", bits=2, outlier_threshold=float("inf")).name != s.name


def test_quant_key_covers_calibration_only_for_calibrated_methods():
    g = RunSpec(model=M, method="gptq", bits=4).quant_key()
    assert g["group_size"] == 128 and g["calibration"]["n_samples"] == 128
    assert "calibration" not in RunSpec(model=M, method="bnb-nf4").quant_key()


def test_default_grid_expands_to_every_method(tmp_path):
    from quantlib import benchmarks, paths

    specs = load_grid(paths.GRIDS / "default.yaml")
    labels = [s.bits_label for s in specs]
    assert sorted(labels) == sorted(["fp", "bnb-int8", "bnb-nf4", "bnb-fp4", "gptq-8b", "gptq-4b", "gptq-3b", "gptq-2b",
                                    "spqr-8b", "spqr-4b", "spqr-3b", "spqr-2b"])
    assert len({s.name for s in specs}) == len(specs)
    assert all(set(s.benchmarks) == set(benchmarks.names()) for s in specs)  # every cell scores everything


@pytest.mark.parametrize("text, msg", [
    ("models: [org/m]\nmethods: [{method: bnb-nf4, bits: [3]}]\n", "cannot run at 3 bits"),
    ("models: [org/m]\nmethods: [fp]\nbenchmark: {}\n", "unknown key"),
    ("models: []\nmethods: [fp]\n", "'models' must be a non-empty list"),
    ("models: [org/m]\nmethods: [fp\n", "not valid YAML"),
    ("", "must be a mapping"),                                   # an empty file
    ("models: [org/m]\nmethods: [{method: fp, bitz: 3}]\n", "bad methods entry"),
])
def test_bad_grid_files_fail_at_load(tmp_path, text, msg):
    f = tmp_path / "grid.yaml"
    f.write_text(text)
    with pytest.raises(SpecError, match=msg):
        load_grid(f)
    with pytest.raises(SpecError, match="not found"):
        load_grid(tmp_path / "missing.yaml")
