"""The SpQR statistics diagnostic (quantlib.quantization.spqr_statistics)."""
import torch

from quantlib.quantization import spqr_statistics


def _weights(rows=64, columns=64):
    """Rows whose ranges and offsets differ, as a trained layer's do: zero points spread over the grid."""
    torch.manual_seed(0)
    return torch.randn(rows, columns) * torch.rand(rows, 1) + 0.5 * torch.randn(rows, 1)


def test_3bit_statistics_dominate_the_error_at_8_bits_not_at_2():
    W = _weights()
    out = {b: (spqr_statistics.grid(W, b, 16, None, 16), spqr_statistics.grid(W, b, 16, 3, 16)) for b in (8, 2)}
    for fp, _ in out.values():
        assert fp["clamped"] == 0  # a group's own min-max grid holds every weight of the group
    (fp8, q8), (fp2, q2) = out[8], out[2]
    assert fp8["relative_error"] < fp2["relative_error"] / 50  # steps of range/255 against range/3
    assert q8["relative_error"] > 3 * fp8["relative_error"] and q8["clamped"] > 0
    assert q2["relative_error"] < 1.5 * fp2["relative_error"]
    assert q8["relative_error"] / fp8["relative_error"] > q2["relative_error"] / fp2["relative_error"]


def test_measure_uses_the_registry_and_leaves_the_model_as_it_was(tiny_model):
    from quantlib.models import load
    from quantlib.quantization import methods

    model = load.load_fp(tiny_model, "float32")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = spqr_statistics.measure(model, ["0.mlp.down_proj"])
    spqr = methods.get("spqr")
    assert (out["group_size"], out["qq_bits"], out["beta2"]) == (spqr.group_size, spqr.params["qq_bits"],
                                                                 spqr.params["beta2"])
    assert [r["bits"] for r in out["layers"]] == list(spqr.bits)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_unknown_layer_fails_naming_it_and_writes_nothing(tiny_model, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(spqr_statistics, "OUT", tmp_path)
    assert spqr_statistics.main([tiny_model, "--layers", "0.mlp.nope"]) == 2
    assert "0.mlp.nope" in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_the_study_reads_one_row_per_model_and_bit_width_beside_the_runs(tmp_path, monkeypatch):
    import pandas as pd

    from quantlib.io import files
    from quantlib.reporting import study

    monkeypatch.setattr(spqr_statistics, "OUT", tmp_path)
    def layer(name, b, e):
        return {"layer": name, "bits": b,
                "full_precision_statistics": {"relative_error": e, "clamped": 0.0, "magnitude_change": 0.0},
                "spqr_statistics": {"relative_error": 4 * e, "clamped": 0.05, "magnitude_change": -0.01}}

    model = "qwen2.5-coder-0.5b-instruct"
    files.write_json(spqr_statistics.out_file(model), {"model": model, "qq_bits": 3, "layers": [
        layer("a", 8, 0.01), layer("b", 8, 0.03), layer("a", 3, 0.1)]})
    runs = pd.DataFrame([{"model": model, "label": "spqr-8b", "ppl_wikitext2_ratio": 1.05, "kl_wikitext2": 0.008}])
    t = study.spqr_statistics(runs)
    assert list(t["bits"]) == [8, 3] and list(t["layers"]) == [2, 1]
    assert t.loc[0, "grid error, fp statistics"] == 0.02 and t.loc[0, "error ratio"] == 4
    assert t.loc[0, "weights clamped (%)"] == 5 and t.loc[0, "run: WikiText-2 / baseline"] == 1.05
    assert pd.isna(t.loc[1, "run: KL to baseline"])  # no spqr-3b run recorded
