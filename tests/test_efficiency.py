"""Speed is timed on a quiet machine: other processes' CPU use is waited out, else recorded."""
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
    order = []

    def timers(model, *_):
        return (lambda: order.append((model, "prefill"))), (lambda: order.append((model, "generate")))

    clock = iter(range(1000))
    monkeypatch.setattr(efficiency, "_timers", timers)
    monkeypatch.setattr(efficiency.time, "perf_counter", lambda: next(clock))
    out = efficiency.interleaved({"run": "q", "baseline": "b"}, None, prompt_tokens=8, new_tokens=4, repeats=2)
    timed = [m for m, _ in order[4:]]  # after one warm-up of each
    assert timed == ["q", "q", "b", "b", "q", "q", "b", "b"]
    assert set(out) == {"run", "baseline"} and out["run"]["decode_tokens_per_s"] > 0
