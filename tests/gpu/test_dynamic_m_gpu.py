"""GPU checks of range kernels (issue 17), with kernels compiled elsewhere:

    python benchmarks/dynamic_m_bench.py --compile DIR          # a machine with MLIR
    DEEPGEN_DYNAMIC_DIR=DIR python -m pytest tests/gpu/test_dynamic_m_gpu.py -m gpu

- every M = 1..4096 through deepgen.gemm(dynamic_m=True) for N = K = 1024 bf16 NT from the
  precompiled bundles (DIR/every, preloaded: nothing compiles), each result against float64
  with C poisoned; one range kernel per range serves them all;
- the exported C library (DIR/export) built with cc on this host (and CMake where installed),
  called through ctypes on torch tensors at M on and around the range boundaries, against
  float64, C poisoned.
CPU counterparts: tests/test_dynamic_m.py, tests/test_aot.py.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("needs an NVIDIA GPU (sm_90a) to run range kernels", allow_module_level=True)

DIR = os.environ.get("DEEPGEN_DYNAMIC_DIR")
if not DIR:
    pytest.skip("needs DEEPGEN_DYNAMIC_DIR=DIR from `python benchmarks/dynamic_m_bench.py "
                "--compile DIR`", allow_module_level=True)
ROOT = Path(DIR)
TOL = 1e-2  # bf16 output (DESIGN.md; runtime.measure.TOLERANCE)


def test_every_m_through_deepgen_gemm(monkeypatch):
    from deepgen.runtime.measure import TOLERANCE

    import deepgen
    from deepgen import aot, api, range_table

    monkeypatch.setitem(sys.modules, "deepgen.compiler", None)  # nothing may compile
    aot.preload_bundles(ROOT / "every")
    try:
        N = K = 1024
        g = torch.Generator(device="cuda").manual_seed(0)
        a_all = torch.randn(4096, K, device="cuda", generator=g).to(torch.bfloat16)
        w = torch.randn(N, K, device="cuda", generator=g).to(torch.bfloat16)
        ref_all = a_all.double() @ w.double().t()
        worst = (0.0, 0)
        for M in range(1, 4097):
            a = a_all[:M]
            c = torch.full((M, N), float("nan"), device="cuda", dtype=torch.bfloat16)
            deepgen.gemm(a, w.t(), out=c, dynamic_m=True)
            ref = ref_all[:M]
            err = ((c.double() - ref).norm() / ref.norm()).item()
            if not err <= TOLERANCE["bf16"]:  # NaN (an unwritten element) fails too
                pytest.fail(f"M={M}: relative error {err} > {TOLERANCE['bf16']}")
            worst = max(worst, (err, M))
        kernels = [k for k in range_table._by_range.values() if not isinstance(k, str)]
        assert len(kernels) == 5, range_table._by_range  # one per range: 1-16 .. 2049-4096
        assert sum(len(k.bound) for k in kernels) == 4096
        print(f"worst relative error {worst[0]:.2e} at M={worst[1]}")
    finally:
        range_table.set_max_m(None)
        range_table.clear()
        api._by_call.clear()
        api._by_spec.clear()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("needs a C compiler (cc or gcc) on the GPU host")
    out = tmp_path_factory.mktemp("export")
    lib = out / "libdg.so"
    subprocess.run([cc, "-std=c11", "-O2", "-shared", "-fPIC", str(ROOT / "export" /
                    "deepgen_gemm.c"), "-o", str(lib), "-ldl"], check=True)
    dg = ctypes.CDLL(str(lib))
    torch.cuda.init()
    torch.empty(1, device="cuda")  # torch's primary context is current on this thread
    assert dg.deepgen_load(str(ROOT / "export").encode()) == 0
    return dg


@pytest.mark.parametrize("M", [1, 16, 17, 64, 65, 100, 256, 257, 1000, 2048, 2049, 4095, 4096])
def test_exported_c_library_matches_float64(exported, M):
    N = K = 4096
    f = exported.deepgen_gemm_bf16_nt_4096x4096
    f.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int64, ctypes.c_float, ctypes.c_float,
                                          ctypes.c_void_p]
    f.restype = ctypes.c_int
    g = torch.Generator(device="cuda").manual_seed(M)
    a = torch.randn(M, K, device="cuda", generator=g).to(torch.bfloat16)
    w = torch.randn(N, K, device="cuda", generator=g).to(torch.bfloat16)  # B stored N x K
    c = torch.full((M, N), float("nan"), device="cuda", dtype=torch.bfloat16)
    stream = torch.cuda.current_stream().cuda_stream
    assert f(a.data_ptr(), w.data_ptr(), c.data_ptr(), M, 1.0, 0.0, stream) == 0
    torch.cuda.synchronize()
    ref = a.double() @ w.double().t()
    err = ((c.double() - ref).norm() / ref.norm()).item()
    assert err <= TOL, f"M={M}: relative error {err}"
    assert f(a.data_ptr(), w.data_ptr(), c.data_ptr(), 4097, 1.0, 0.0, stream) == -1


def test_exported_c_library_builds_with_cmake(tmp_path):
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("needs cmake on the GPU host")
    build = tmp_path / "build"
    subprocess.run([cmake, "-S", str(ROOT / "export"), "-B", str(build)], check=True,
                   capture_output=True)
    subprocess.run([cmake, "--build", str(build)], check=True, capture_output=True)
    assert list(build.glob("libdeepgen_gemm*"))
