"""Worker processes that die or hang: the bench Supervisor and the compile pool (CPU, fakes)."""
from __future__ import annotations

import time

import pytest

import tuner_fakes as fakes
from deepgen.tuner.compiling import compile_pool
from deepgen.tuner.supervisor import Supervisor, SupervisorError


def _tasks(*actions):
    return [{"id": f"t{i}", "action": a} for i, a in enumerate(actions)]


def _run(tasks, slots=(0,), **kw):
    with Supervisor(fakes.bench_fn, slots, init=fakes.bench_init, **kw) as sup:
        out = {t["id"]: rec for t, rec in sup.run(tasks)}
        return out, sup.restarts


def test_a_dying_worker_fails_its_task_and_is_replaced():
    out, restarts = _run(_tasks("ok", "die", "ok", "ok"), timeout=30)
    assert out["t1"]["ok"] is False and out["t1"]["crashed"]
    assert "exit code 3" in out["t1"]["error"]
    assert all(out[t]["ok"] for t in ("t0", "t2", "t3"))
    assert out["t0"]["pid"] != out["t2"]["pid"] == out["t3"]["pid"]  # a fresh process
    assert out["t3"]["count"] == 2 and restarts == 1


def test_a_hanging_worker_is_killed_at_the_deadline():
    t0 = time.monotonic()
    out, _ = _run(_tasks("hang", "ok"), timeout=1.5, init_timeout=60)
    assert out["t0"]["timeout"] and "timed out after 1.5 s" in out["t0"]["error"]
    assert out["t1"]["ok"]
    assert time.monotonic() - t0 < 30


def test_restart_flag_and_exceptions_give_a_fresh_process():
    out, restarts = _run(_tasks("poison", "ok", "raise", "ok"), timeout=30)
    assert out["t0"]["error"] == "CUDA error: fake"
    assert out["t2"]["ok"] is False and "RuntimeError: fake failure on t2" in out["t2"]["error"]
    assert out["t1"]["pid"] != out["t0"]["pid"] and out["t3"]["pid"] != out["t1"]["pid"]
    assert restarts == 2


def test_two_slots_share_the_work():
    out, _ = _run(_tasks(*["ok"] * 6), slots=(0, 1), timeout=30)
    assert len(out) == 6 and all(rec["ok"] for rec in out.values())
    assert {rec["gpu"] for rec in out.values()} <= {0, 1}


def test_init_that_always_fails_stops_the_run_with_its_reason():
    with Supervisor(fakes.bench_fn, [0], init=fakes.bench_init_fails, timeout=30,
                    max_init_failures=2) as sup:
        with pytest.raises(SupervisorError, match="no GPU here"):
            list(sup.run(_tasks("ok")))


def test_compile_pool_names_the_candidate_whose_worker_died():
    tasks = _tasks("ok", "die", "ok", "ok", "ok")
    out = {rec["id"]: rec for rec in compile_pool(tasks, workers=2, fn=fakes.compile_fn,
                                                  timeout=60)}
    assert set(out) == {t["id"] for t in tasks}
    assert out["t1"]["ok"] is False and out["t1"]["crashed"]
    assert "died" in out["t1"]["error"]
    assert all(out[t]["ok"] for t in ("t0", "t2", "t3", "t4"))


def test_compile_pool_ends_a_hung_compile():
    out = {rec["id"]: rec for rec in compile_pool(_tasks("hang", "ok"), workers=1,
                                                  fn=fakes.compile_fn, timeout=1)}
    assert out["t0"]["ok"] is False and "timed out after 1 s" in out["t0"]["error"]
    assert out["t1"]["ok"]


def test_bench_task_checks_then_times_with_one_baseline_per_shape(monkeypatch):
    """The GPU worker's logic with deepgen.runtime.measure faked (no GPU here)."""
    from deepgen.runtime import measure
    from deepgen.spec import GemmSpec
    from deepgen.tuner import benching

    calls = []
    errors = {"good": 1e-7, "bad": 0.5, "nan": float("inf")}
    monkeypatch.setattr(measure, "input_sets", lambda spec: calls.append("sets") or ["set"])
    monkeypatch.setattr(measure, "torch_baseline", lambda spec: "cublas")
    monkeypatch.setattr(measure, "time_ms", lambda fn, sets: 2.0 if fn == "cublas" else 1.0)
    monkeypatch.setattr(measure, "check", lambda kernel, spec: errors[kernel])
    monkeypatch.setattr(measure, "operand", lambda spec, name: "C")
    monkeypatch.setattr("deepgen.runtime.load", lambda d: d)
    state = {"gpu": 0, "device": "Fake", "shape": None}
    spec = GemmSpec(4096, 4096, 4096).to_dict()
    good = benching.bench_task({"id": "a", "dir": "good", "spec": spec}, state)
    assert good["ok"] and good["ms"] == 1.0 and good["vs_baseline"] == 2.0
    assert good["tflops"] == pytest.approx(2 * 4096**3 / 1e-3 / 1e12)
    assert good["baseline_ms"] == 2.0 and good["rel_err"] == 1e-7
    for name in ("bad", "nan"):
        rec = benching.bench_task({"id": "b", "dir": name, "spec": spec}, state)
        assert rec["wrong"] and not rec["ok"] and "exceeds 1e-05" in rec["error"]
    assert calls == ["sets"]  # inputs and baseline once per shape
    benching.bench_task({"id": "c", "dir": "good", "spec": dict(spec, K=1024)}, state)
    assert calls == ["sets", "sets"]
