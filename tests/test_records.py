"""Record provenance: which machine computed a record, and speeds compared only on the same kind."""
import sys
import time

import numpy as np
import pandas as pd
import pytest

from quantlib.io import files
from quantlib.reporting import report, summary
from quantlib.running import records


def test_machine_names_the_cpu_its_cores_and_bf16_support(monkeypatch):
    from quantlib.models import bf16_cpu

    monkeypatch.setattr(records, "cpu_name", lambda: "AMD EPYC")
    monkeypatch.setattr(bf16_cpu, "cpu_has_bf16", lambda: False)
    monkeypatch.setattr(records.os, "cpu_count", lambda: 2)
    assert records.machine() == "AMD EPYC (2 CPUs, bf16 emulated)"
    assert report.speed_class(pd.Series([records.machine()])).iloc[0] == "2 CPUs, bf16 emulated"
    monkeypatch.setattr(bf16_cpu, "cpu_has_bf16", lambda: True)
    monkeypatch.setattr(bf16_cpu, "cpu_has_amx", lambda: False)
    assert records.machine() == "AMD EPYC (2 CPUs, bf16 native)"
    monkeypatch.setattr(bf16_cpu, "cpu_has_amx", lambda: True)  # AMX is another kind of machine for speed
    assert report.speed_class(pd.Series([records.machine()])).iloc[0] == "2 CPUs, bf16 native, AMX"


def test_cpu_flags_are_read_from_the_flags_line(monkeypatch, tmp_path):
    from quantlib.models import bf16_cpu

    info = tmp_path / "cpuinfo"
    info.write_text("model name\t: X amx_bf16 in a name\nflags\t\t: fpu avx512_bf16 amx_tile\n")
    monkeypatch.setattr(bf16_cpu, "Path", lambda _: info)
    bf16_cpu._cpu_flags.cache_clear()
    try:
        assert bf16_cpu.cpu_has_bf16() and not bf16_cpu.cpu_has_amx()
    finally:
        bf16_cpu._cpu_flags.cache_clear()


def test_a_resumed_run_keeps_the_environment_of_sittings_elsewhere(tmp_path, monkeypatch):
    env = {"machine": "A (2 CPUs, bf16 native)", "git_sha": "1", "packages": {"torch": "2"}}
    monkeypatch.setattr(records, "environment", lambda: dict(env))
    records.write_environment(tmp_path, {"model": {}})
    records.write_environment(tmp_path, {"model": {}})  # the same machine and code: nothing to keep
    assert files.read_json(tmp_path / "environment.json")["earlier"] == []
    env["machine"] = "B (2 CPUs, bf16 emulated)"
    records.write_environment(tmp_path, {"model": {}})
    now = files.read_json(tmp_path / "environment.json")
    assert now["machine"].startswith("B") and [e["machine"][0] for e in now["earlier"]] == ["A"]


def test_records_before_machines_were_recorded_say_what_their_dtype_implies():
    cpu = {"device": "cpu", "cpu_count": 2}
    assert summary.machine(cpu, {"dtype": "bfloat16"}) == "unrecorded CPU (2 CPUs, bf16 native)"
    assert summary.machine(cpu, {"dtype": "float32"}) == "unrecorded CPU (2 CPUs, bf16 unrecorded)"
    assert summary.machine(cpu | {"machine": "X (2 CPUs, bf16 emulated)"}, {}) == "X (2 CPUs, bf16 emulated)"


def test_speeds_are_compared_only_with_a_baseline_timed_on_the_same_kind_of_machine():
    df = pd.DataFrame({"model": ["m"] * 4, "label": ["bf16", "gptq-4b", "rtn-4b", "spqr-2b"],
                       "method": ["fp", "gptq", "rtn", "spqr"], "decode_tok_s": [7.4, 12.3, 6.9, 8.0],
                       "prefill_tok_s": [400.0, 300.0, 70.0, 60.0],
                       "speed_machine": ["unrecorded CPU (2 CPUs, bf16 native)", "AMD EPYC (2 CPUs, bf16 native)",
                                         "AMD EPYC (2 CPUs, bf16 emulated)", None]})
    out = report.comparable_speeds(df)
    assert out["decode_tok_s"].tolist()[:2] == [7.4, 12.3] and np.isnan(out.at[2, "decode_tok_s"])
    assert np.isnan(out.at[2, "prefill_tok_s"]) and out.at[3, "decode_tok_s"] == 8.0  # unknown: kept
    assert out.at[2, "speed_elsewhere"] == "6.9 tokens/s on AMD EPYC (2 CPUs, bf16 emulated)"
    assert out["speed_elsewhere"].isna().sum() == 3


def test_speeds_timed_beside_busy_processes_are_left_out():
    df = pd.DataFrame({"model": ["m", "m"], "label": ["bf16", "rtn-4b"], "method": ["fp", "rtn"],
                       "decode_tok_s": [7.4, 2.0], "prefill_tok_s": [400.0, 50.0],
                       "speed_machine": ["A (2 CPUs, bf16 native)"] * 2, "speed_other_cpus": [0.05, 1.6]})
    out = report.comparable_speeds(df)
    assert out.at[0, "decode_tok_s"] == 7.4 and np.isnan(out.at[1, "decode_tok_s"])
    assert out.at[1, "speed_elsewhere"] == "2.0 tokens/s while other processes kept 1.60 CPUs busy"


def test_cpu_time_of_earlier_sittings_is_known_or_said_unknown(tmp_path):
    assert records.earlier_cpu_seconds(tmp_path) == 0.0  # never started
    records.set_status(tmp_path, "running", earlier_seconds=0.0, earlier_cpu_seconds=0.0, cpu_alive=0.0)
    stop = records.heartbeat(tmp_path, every=0.05, cpu_from=records.children_cpu_seconds() - 30.0)
    time.sleep(0.3)
    stop.set()
    time.sleep(0.1)
    assert records.earlier_cpu_seconds(tmp_path) >= 30.0  # the killed sitting's last stamp
    records.set_status(tmp_path, "failed", earlier_seconds=50.0, earlier_cpu_seconds=90.0, cpu_seconds=10.0)
    assert records.earlier_cpu_seconds(tmp_path) == 100.0
    records.set_status(tmp_path, "running", earlier_seconds=0.0)  # a sitting before CPU time was recorded
    assert records.earlier_cpu_seconds(tmp_path) is None
    records.set_status(tmp_path, "failed", earlier_seconds=600.0, cpu_seconds=5.0)  # so was an earlier one
    assert records.earlier_cpu_seconds(tmp_path) is None


def test_children_cpu_seconds_counts_a_finished_child():
    import subprocess

    before = records.children_cpu_seconds()
    subprocess.run([sys.executable, "-c", "sum(i * i for i in range(3_000_000))"], check=True)
    assert records.children_cpu_seconds() - before > 0.05


def test_a_killed_sittings_time_comes_from_its_heartbeat_not_from_file_times(tmp_path):
    from datetime import datetime, timedelta

    records.set_status(tmp_path, "running", earlier_seconds=100.0)
    stop = records.heartbeat(tmp_path, every=0.05)
    time.sleep(0.3)
    stop.set()
    time.sleep(0.1)
    st = files.read_json(tmp_path / "status.json")
    assert st["status"] == "running" and st["earlier_seconds"] == 100.0 and "alive" in st
    start = datetime.fromisoformat(st["time"])
    # killed 15 minutes in; a fresh checkout then gives every file today's time
    files.write_json(tmp_path / "status.json", st | {"time": (start - timedelta(hours=3)).isoformat(),
                                                     "alive": (start - timedelta(hours=3, minutes=-15)).isoformat()})
    (tmp_path / "perplexity.json").write_text("{}")
    assert records.earlier_seconds(tmp_path) == 100.0 + 900.0
    records.set_status(tmp_path, "done")
    stop = records.heartbeat(tmp_path, every=0.05)
    time.sleep(0.2)
    stop.set()
    assert "alive" not in files.read_json(tmp_path / "status.json")  # only a running record is stamped


def test_a_run_timed_beside_the_baseline_keeps_its_ratio_in_any_sitting():
    df = pd.DataFrame({"model": ["m"] * 3, "label": ["bf16", "spqr-2b", "gptq-4b"], "method": ["fp", "spqr", "gptq"],
                       "decode_tok_s": [7.4, 11.5, 12.0], "prefill_tok_s": [400.0, 330.0, 300.0],
                       "speed_machine": ["A (2 CPUs, bf16 native)", "B (2 CPUs, bf16 native)",
                                         "C (2 CPUs, bf16 emulated)"],
                       "speed_baseline_decode": [np.nan, 11.0, 8.0], "speed_baseline_prefill": [np.nan, 440.0, 200.0]})
    out = report.comparable_speeds(df)
    assert out.at[1, "decode_tok_s"] == 11.5 / 11.0 * 7.4 and out.at[1, "prefill_tok_s"] == 330.0 / 440.0 * 400.0
    assert out.at[2, "decode_tok_s"] == 12.0 / 8.0 * 7.4  # another kind of machine: its ratio still holds
    assert out["decode_tok_s_measured"].tolist() == [7.4, 11.5, 12.0] and out["speed_elsewhere"].isna().all()


def test_an_interleaved_timing_gives_the_ratio_from_the_runs_own_speed_in_it():
    df = pd.DataFrame({"model": ["m"] * 2, "label": ["bf16", "rtn-4b"], "method": ["fp", "rtn"],
                       "decode_tok_s": [7.4, 11.5], "prefill_tok_s": [400.0, 330.0],
                       "speed_machine": ["A (2 CPUs, bf16 native)"] * 2,
                       "speed_baseline_decode": [np.nan, 11.0], "speed_baseline_prefill": [np.nan, 440.0],
                       "speed_interleaved_decode": [np.nan, 10.0], "speed_interleaved_prefill": [np.nan, 400.0]})
    out = report.comparable_speeds(df)
    assert out.at[1, "decode_tok_s"] == pytest.approx(10.0 / 11.0 * 7.4)
    assert out.at[1, "prefill_tok_s"] == pytest.approx(400.0 / 440.0 * 400.0)
    assert out.at[1, "decode_tok_s_measured"] == 11.5  # its own timing, alone, stays in the record
    again = report.comparable_speeds(out.copy())  # e.g. claims.table(report.done(df)): rescaled once
    assert again["decode_tok_s"].tolist() == out["decode_tok_s"].tolist()


def test_a_baseline_timed_beside_busy_processes_gives_no_ratio():
    df = pd.DataFrame({"model": ["m"] * 2, "label": ["bf16", "rtn-3b"], "method": ["fp", "rtn"],
                       "decode_tok_s": [7.4, 11.9], "prefill_tok_s": [400.0, 330.0],
                       "speed_machine": ["A (2 CPUs, bf16 native)"] * 2, "speed_other_cpus": [0.0, 0.01],
                       "speed_baseline_decode": [np.nan, 3.8], "speed_baseline_prefill": [np.nan, 297.0],
                       "speed_baseline_other_cpus": [np.nan, 0.785]})
    out = report.comparable_speeds(df)
    assert out.at[1, "decode_tok_s"] == 11.9  # compared as measured, on the same kind of machine
