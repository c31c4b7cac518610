"""The nanobind launcher against a fake libcuda.so.1 (tests/fake_cuda), so it runs without a GPU.

Each test runs a child Python whose LD_LIBRARY_PATH puts the fake first: the launcher opens the
driver once per process, and glibc reads LD_LIBRARY_PATH only at process start."""
from __future__ import annotations

import ctypes
import textwrap
from pathlib import Path

import pytest

from runtime_fakes import FAKE_DRIVER_PRELUDE, build_fake_cuda, run_with_fake_driver


PRELUDE = FAKE_DRIVER_PRELUDE + """
def current():
    p = ctypes.c_void_p()
    fake.cuCtxGetCurrent(ctypes.byref(p))
    return p.value
"""


@pytest.fixture(scope="module")
def fake_driver_dir(tmp_path_factory) -> Path:
    d = build_fake_cuda(tmp_path_factory.mktemp("fake_cuda"))
    if d is None:
        pytest.skip("no C compiler to build the fake driver")
    return d


@pytest.fixture
def run_fake(fake_driver_dir):
    """Run `body` after PRELUDE in a child process; return what it printed as JSON."""
    def run(body: str):
        return run_with_fake_driver(fake_driver_dir, PRELUDE + textwrap.dedent(body))
    return run


def test_launches_run_in_order_with_packed_arguments(run_fake):
    out = run_fake("""
        plan = _launcher.LaunchPlan("cuda", b"IMAGE", 0, [
            GEMM, ("k2_PFP", (5, 1, 1), (256, 1, 1), 0, ["W", "beta", "C"])])
        plan.launch(7, 0x100, 0x200, 0x300, 0x400, 2.5, -1.0)
        plan(8, 0x10, 0x20, 0x30, 0, 1, 0)  # __call__, ints where floats go
        print(json.dumps(log()))
    """)
    assert out == [
        "load 1 ctx=0x1000",
        "launch k_PPPFF grid=3,2,1 block=16,16,1 shared=0 stream=0x7 ctx=0x1000 "
        "args=0x100,0x200,0x300,2.5,-1",
        "launch k2_PFP grid=5,1,1 block=256,1,1 shared=0 stream=0x7 ctx=0x1000 "
        "args=0x400,-1,0x300",
        "launch k_PPPFF grid=3,2,1 block=16,16,1 shared=0 stream=0x8 ctx=0x1000 "
        "args=0x10,0x20,0x30,1,0",
        "launch k2_PFP grid=5,1,1 block=256,1,1 shared=0 stream=0x8 ctx=0x1000 args=0,0,0x30",
    ]


def test_one_module_per_binary_and_device(run_fake):
    out = run_fake("""
        counts = []
        for image, device in [(b"X", 0), (b"X", 0), (b"X", 1), (b"Y", 0), (b"X", 1)]:
            _launcher.LaunchPlan("cuda", image, device, [GEMM])
            counts.append(_launcher.loaded_modules())
        print(json.dumps({"counts": counts, "loads": [l for l in log() if "load" in l]}))
    """)
    assert out["counts"] == [1, 1, 2, 3, 3]
    assert out["loads"] == ["load 1 ctx=0x1000", "load 2 ctx=0x1001", "load 3 ctx=0x1000"]


def test_launch_on_another_device_restores_the_callers_context(run_fake):
    out = run_fake("""
        fake.cuCtxSetCurrent(ctypes.c_void_p(0x1000))   # torch is on device 0
        plan = _launcher.LaunchPlan("cuda", b"X", 1, [GEMM])
        after_load = current()
        plan.launch(0, 1, 2, 3, 0, 1.0, 0.0)
        after_launch = current()
        fake.cuCtxSetCurrent(None)                      # a thread that never touched CUDA
        plan.launch(0, 1, 2, 3, 0, 1.0, 0.0)
        print(json.dumps({"after_load": after_load, "after_launch": after_launch,
                          "after_second": current(), "log": log()}))
    """)
    assert out["after_load"] == out["after_launch"] == 0x1000
    assert out["after_second"] is None
    launches = [l for l in out["log"] if l.startswith("launch")]
    assert len(launches) == 2 and all("ctx=0x1001" in l for l in launches)
    assert out["log"][0] == "load 1 ctx=0x1001"


def test_dynamic_shared_memory_above_48k_is_opted_in(run_fake):
    out = run_fake("""
        small = _launcher.LaunchPlan("cuda", b"X", 0, [("a_P", (1,1,1), (32,1,1), 48 * 1024, ["A"])])
        big = _launcher.LaunchPlan("cuda", b"X", 0, [("b_P", (1,1,1), (32,1,1), 100 * 1024, ["A"])])
        big.launch(0, 1, 0, 0, 0, 1.0, 0.0)
        too_big = error(_launcher.LaunchPlan, "cuda", b"X", 0,
                        [("c_P", (1,1,1), (32,1,1), 300 * 1024, ["A"])])
        print(json.dumps({"log": log(), "too_big": too_big, "attrs": big.attributes()}))
    """)
    # a_P: 48 KiB dynamic + the fake's 256 static bytes cross the default limit too
    assert [l for l in out["log"] if l.startswith("setattr")] == [
        "setattr a_P max_dynamic_shared=49152", "setattr b_P max_dynamic_shared=102400"]
    assert any(l.startswith("launch b_P") and "shared=102400" in l for l in out["log"])
    assert out["too_big"]["type"] == "DriverError"
    assert out["too_big"]["call"] == "cuFuncSetAttribute"
    assert out["too_big"]["name"] == "CUDA_ERROR_INVALID_VALUE"
    assert "c_P" in out["too_big"]["message"]
    assert out["attrs"] == [{"entry": "b_P", "registers": 42, "local_bytes": 8,
                             "static_shared_bytes": 256, "max_threads_per_block": 1024,
                             "shared_bytes": 102400}]


@pytest.mark.parametrize("call, name, expr", [
    ("cuModuleLoadData", "CUDA_ERROR_INVALID_IMAGE",
     '_launcher.LaunchPlan, "cuda", b"BAD image", 0, [GEMM]'),
    ("cuModuleGetFunction", "CUDA_ERROR_NOT_FOUND",
     '_launcher.LaunchPlan, "cuda", b"X", 0, [("missing_P", (1,1,1), (1,1,1), 0, ["A"])]'),
    ("cuDeviceGet", "CUDA_ERROR_INVALID_DEVICE",
     '_launcher.LaunchPlan, "cuda", b"X", 5, [GEMM]'),
    ("cuLaunchKernel", "CUDA_ERROR_LAUNCH_FAILED",
     '_launcher.LaunchPlan("cuda", b"X", 0, [("fail_PPPFF", (999,1,1), (1,1,1), 0, '
     '["A", "B", "C", "alpha", "beta"])]).launch, 0, 1, 2, 3, 0, 1.0, 0.0'),
])
def test_driver_errors_name_the_call_and_the_error(run_fake, call, name, expr):
    out = run_fake(f"print(json.dumps(error({expr})))")
    assert out["type"] == "DriverError" and out["call"] == call and out["name"] == name
    assert call in out["message"] and name in out["message"]


@pytest.mark.parametrize("launch, message", [
    (("small_P", (1, 1, 1), (256, 1, 1), 0, ["A"]), "block of 256 threads"),
    (("k_P", (0, 1, 1), (32, 1, 1), 0, ["A"]), "grid has a zero"),
    (("k_P", (1, 1, 1), (32, 1, 1), 0, ["X"]), "unknown argument 'X'"),
])
def test_bad_launches_raise_value_error(run_fake, launch, message):
    out = run_fake(f"print(json.dumps(error(_launcher.LaunchPlan, 'cuda', b'X', 0, [{launch!r}])))")
    assert out["type"] == "ValueError" and message in out["message"]


def test_threads_share_one_module(run_fake):
    out = run_fake("""
        import threading
        def work():
            plan = _launcher.LaunchPlan("cuda", b"SHARED", 0, [GEMM])
            for i in range(200):
                plan.launch(i, 1, 2, 3, 0, 1.0, 0.0)
        threads = [threading.Thread(target=work) for _ in range(8)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        launches = [l for l in log() if l.startswith("launch")]
        print(json.dumps({"modules": _launcher.loaded_modules(), "launches": len(launches)}))
    """)
    assert out == {"modules": 1, "launches": 1600}


def test_driver_version(run_fake):
    assert run_fake("print(_launcher.driver_version())") == 12080


def _real_driver_present() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


@pytest.mark.skipif(_real_driver_present(), reason="an NVIDIA driver is installed here")
def test_no_driver_is_a_clear_error():
    from deepgen.runtime import DriverError, _launcher

    with pytest.raises(DriverError, match="no NVIDIA driver found: cannot open libcuda.so.1") \
            as info:
        _launcher.LaunchPlan("cuda", b"X", 0, [("k_P", (1, 1, 1), (1, 1, 1), 0, ["A"])])
    assert info.value.call == "dlopen" and info.value.name == "NO_DRIVER"
