"""The GPTQ generalization diagnostic (quantlib.quantization.generalization) on the tiny model."""
import torch

from quantlib.quantization import generalization


def test_objective_is_the_output_error_per_token():
    torch.manual_seed(0)
    W, Q, X = torch.randn(6, 5), torch.randn(6, 5), torch.randn(40, 5)
    direct = float(((X @ (W - Q).t()) ** 2).sum() / 40)
    assert abs(generalization.objective(W, Q, X.t() @ X, 40) - direct) < 1e-4 * direct


def test_gptq_beats_rtn_on_its_calibration_inputs_and_leaves_the_model_as_it_was(tiny_model):
    from quantlib.models import load
    from quantlib.quantization.variant import Calibration

    model, tok = load.load_fp(tiny_model, "float32"), load.load_tokenizer(tiny_model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = generalization.measure(model, tok, ["0.mlp.down_proj", "1.self_attn.q_proj"], bits=3,
                                 cal=Calibration(n_samples=8), heldout_tokens=30)
    assert [r["layer"] for r in out["layers"]] == ["0.mlp.down_proj", "1.self_attn.q_proj"]
    for row in out["layers"]:
        assert row["calibration"]["ratio"] < 1  # what GPTQ minimizes, on the inputs it minimized it for
        assert row["calibration"]["tokens"] == out["calibration_tokens"]
        assert {row["English"]["tokens"], row["Chinese"]["tokens"]} <= set(range(1, 31))
        for key in ("calibration", "English", "Chinese"):
            assert row[key]["ratio"] == row[key]["gptq"] / row[key]["rtn"] > 0
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert len(model.model.layers) == 2  # the decoder is whole again


def test_unknown_layer_fails_naming_it_and_writes_nothing(tiny_model, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(generalization, "OUT", tmp_path)
    assert generalization.main([tiny_model, "--bits", "3", "--layers", "0.mlp.nope"]) == 2
    assert "0.mlp.nope" in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_the_study_reads_one_row_per_model_and_layer(tmp_path, monkeypatch):
    from quantlib.io import files
    from quantlib.reporting import study

    monkeypatch.setattr(generalization, "OUT", tmp_path)
    sets = {"calibration": 0.5, "English": 1.5, "Chinese": 2.0}
    rows = [{"layer": "1.mlp.down_proj", "columns": 100,
             **{k: {"tokens": 300, "gptq": r, "rtn": 1.0, "ratio": r} for k, r in sets.items()}}]
    files.write_json(generalization.out_file("qwen2.5-coder-1.5b-instruct", 4),
                     {"model": "qwen2.5-coder-1.5b-instruct", "bits": 4, "params": {"sym": True},
                      "calibration": {"n_samples": 128}, "layers": rows})
    t = study.generalization()
    assert t.shape[0] == 1 and t.loc[0, "model"] == "1.5B" and t.loc[0, "grid"] == "4-bit, symmetric"
    assert t.loc[0, "tokens per column"] == 3.0
    assert [t.loc[0, f"GPTQ / RTN, {k}"] for k in sets] == [0.5, 1.5, 2.0]
