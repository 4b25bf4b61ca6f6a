"""Speed is timed on a quiet machine: other processes' CPU use is waited out, else recorded."""
import pytest

from quantlib.io import files
from quantlib.scoring import efficiency


def test_other_processes_are_the_machines_busy_time_less_this_process(monkeypatch):
    readings = iter([(100.0, 10.0), (103.0, 11.0)])  # machine +3 CPU s, this process +1 over 2 s
    clock = iter([0.0, 2.0])
    monkeypatch.setattr(efficiency, "_busy_seconds", lambda: next(readings))
    monkeypatch.setattr(efficiency.time, "perf_counter", lambda: next(clock))
    with efficiency.OtherProcesses() as other:
        pass
    assert other.cpus == 1.0


def test_waits_until_the_machine_is_quiet_or_the_limit(monkeypatch):
    busy = iter([1.5, 0.9, 0.1, 2.0])
    now = [0.0]

    class Fake:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.cpus = next(busy)

    def sleep(s):
        now[0] += s

    monkeypatch.setattr(efficiency, "OtherProcesses", Fake)
    monkeypatch.setattr(efficiency.time, "sleep", sleep)
    monkeypatch.setattr(efficiency.time, "perf_counter", lambda: now[0])
    assert efficiency.wait_for_quiet(max_wait=600, poll=15) == 2 * (2 + 15) + 2  # quiet at the third look
    assert efficiency.wait_for_quiet(max_wait=10, poll=15) == 17  # busy, then out of time


def test_interleaved_timing_alternates_the_models_repeat_by_repeat(monkeypatch):
    order, now = [], [0.0]

    def step(model, what, seconds):
        order.append((model, what))
        now[0] += seconds

    def timers(model, *_):
        return (lambda: step(model, "prefill", 1.0)), (lambda: step(model, "generate", 3.0))

    monkeypatch.setattr(efficiency, "_timers", timers)
    monkeypatch.setattr(efficiency.time, "perf_counter", lambda: now[0])
    out = efficiency.interleaved({"run": "q", "baseline": "b"}, None, prompt_tokens=8, new_tokens=4, repeats=2)
    timed = [m for m, _ in order[4:]]  # after one warm-up of each
    assert timed == ["q", "q", "b", "b", "q", "q", "b", "b"]
    assert set(out) == {"run", "baseline"} and out["run"]["decode_tokens_per_s"] == 4 / (3.0 - 1.0)


def test_a_busy_prefill_longer_than_generation_gives_no_decode_speed():
    assert efficiency._speeds(8, 4, [1.0], [3.0])["decode_tokens_per_s"] == 2.0
    assert efficiency._speeds(8, 4, [3.0, 3.0], [2.5, 2.9])["decode_tokens_per_s"] is None


@pytest.mark.parametrize("record, keep", [
    (None, False),                                                           # never timed
    ({"decode_tokens_per_s": 5.0}, True),                                    # older record: not recorded
    ({"decode_tokens_per_s": 5.0, "other_processes_cpus": 0.01,
      "baseline": {"other_processes_cpus": 0.02}}, True),                    # quiet, with its baseline
    ({"decode_tokens_per_s": 5.0, "other_processes_cpus": 0.8}, False),      # busy run timing
    ({"decode_tokens_per_s": 5.0, "other_processes_cpus": 0.0,
      "baseline": {"other_processes_cpus": 0.5}}, False),                    # busy baseline timing
    ({"decode_tokens_per_s": None, "other_processes_cpus": 0.0}, False),     # no decode speed
])
def test_a_timing_is_kept_only_when_taken_on_a_quiet_machine(tmp_path, record, keep):
    if record is not None:
        files.write_json(tmp_path / "efficiency.json", record)
    assert efficiency.settled(tmp_path) is keep
