"""deepgen.gemm on the CPU machine: spec and layout from the tensors, the kernel lookup order
(memory, preloaded bundle, disk cache, compiler with the tuned config), and the results.

CPU tensors pass for CUDA ones (tests/runtime_fakes.py) and kernels "run" by computing on the
CPU through the pointers they are given, so a wrong layout, copy or pointer fails a result."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import deepgen
from deepgen import api, build
from deepgen.runtime import cache
from deepgen.runtime.reference import reference_artifact
from deepgen.spec import GemmSpec
from runtime_fakes import FakeCompiler, install_fake_compiler


@pytest.fixture(autouse=True)
def fresh_state(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPGEN_CACHE_DIR", str(tmp_path / "cache"))
    for table in (api._by_call, api._by_spec):
        table.clear()
    cache.clear_memory()
    yield
    for table in (api._by_call, api._by_spec):
        table.clear()
    cache.clear_memory()


@pytest.fixture
def compiler(monkeypatch) -> FakeCompiler:
    return install_fake_compiler(monkeypatch)


def reference(a, b, out=None, alpha=1.0, beta=0.0):
    r = alpha * (a.double() @ b.double())
    return r + beta * out.double() if beta else r


def col_major(*shape, dtype=torch.float32):
    """A logical `shape` tensor whose last two dimensions are stored transposed."""
    return torch.randn(*shape[:-2], shape[-1], shape[-2]).to(dtype).transpose(-1, -2)


# -- without a GPU, deepgen.gemm fails cleanly ------------------------------------------------

def test_cpu_tensors_are_a_type_error():
    with pytest.raises(TypeError, match="a: must be a CUDA tensor, got device 'cpu'"):
        deepgen.gemm(torch.randn(4, 8), torch.randn(8, 2))


def test_beta_needs_out():
    with pytest.raises(ValueError, match="beta: must be 0 when out is None"):
        deepgen.gemm(torch.randn(4, 8), torch.randn(8, 2), beta=1.0)


@pytest.mark.parametrize("a, b, out, error, message", [
    (torch.randn(4, 8), torch.randn(7, 2), None, ValueError, "b: has 7 rows, but a has K = 8"),
    (torch.randn(4, 8), torch.randn(2, 8, 2), None, ValueError, "must both be 2-D or both 3-D"),
    (torch.randn(4), torch.randn(4), None, ValueError, "must both be 2-D or both 3-D"),
    (torch.randn(2, 4, 8), torch.randn(3, 8, 2), None, ValueError, "b: batch 3 differs"),
    (torch.randn(4, 8), torch.randn(8, 2).half(), None, TypeError, "b: dtype torch.float16"),
    (torch.randn(4, 8).double(), torch.randn(8, 2).double(), None, TypeError,
     "a: dtype torch.float64 is not supported"),
    (torch.randn(4, 8), torch.randn(8, 2), torch.empty(2, 4), ValueError,
     r"out: expected shape \(4, 2\), got \(2, 4\)"),
    (torch.randn(4, 8), [[1.0]], None, TypeError, "b: expected a torch.Tensor, got list"),
])
def test_bad_arguments(cpu_gpu, a, b, out, error, message):
    with pytest.raises(error, match=message):
        deepgen.gemm(a, b, out=out)
    assert cpu_gpu == []


# -- spec and layout from the tensors ---------------------------------------------------------

@pytest.mark.parametrize("make_a, make_b, layout, batch", [
    (lambda: torch.randn(5, 8), lambda: torch.randn(8, 3), "NN", 1),
    (lambda: col_major(5, 8), lambda: torch.randn(8, 3), "TN", 1),
    (lambda: torch.randn(5, 8), lambda: col_major(8, 3), "NT", 1),
    (lambda: col_major(4, 5, 8), lambda: col_major(4, 8, 3), "TT", 4),
    (lambda: torch.randn(1, 5, 8), lambda: torch.randn(1, 8, 3), "NN", 1),
])
def test_layouts_map_without_copies(cpu_gpu, compiler, make_a, make_b, layout, batch):
    a, b = make_a(), make_b()
    c = deepgen.gemm(a, b)
    spec, _, _ = compiler.calls[0]
    assert (spec.layout, spec.batch, spec.M, spec.N, spec.K) == (layout, batch, 5, 3, 8)
    (_, pa, pb, pc, _, _, _), = cpu_gpu[0].calls
    assert (pa, pb) == (a.data_ptr(), b.data_ptr())  # read in place
    assert c.shape == (*a.shape[:-1], 3) and c.dtype == a.dtype
    torch.testing.assert_close(c.double(), reference(a, b), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("make_a", [
    lambda: torch.randn(5, 16)[:, ::2],                   # strided columns
    lambda: torch.randn(5 * 8 + 1)[1:].view(5, 8),        # 4-byte offset: misaligned
    lambda: torch.randn(2, 5, 9)[:, :, :8][0:1],          # batch of one, padded rows
])
def test_other_strides_are_copied(cpu_gpu, compiler, make_a):
    a = make_a()
    b = torch.randn(8, 3) if a.dim() == 2 else torch.randn(1, 8, 3)
    c = deepgen.gemm(a, b)
    assert compiler.calls[0][0].layout == "NN"
    (_, pa, pb, _, _, _, _), = cpu_gpu[0].calls
    assert pa != a.data_ptr() and pb == b.data_ptr()
    torch.testing.assert_close(c.double(), reference(a, b), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype, out_dtype", [(torch.float16, torch.float32),
                                              (torch.bfloat16, torch.bfloat16),
                                              (torch.float32, torch.float16)])
def test_out_sets_the_output_type_and_accumulates(cpu_gpu, compiler, dtype, out_dtype):
    a, b = torch.randn(2, 6, 4).to(dtype), col_major(2, 4, 10, dtype=dtype)
    out = torch.randn(2, 6, 10).to(out_dtype)
    before = out.clone()
    assert deepgen.gemm(a, b, out=out, alpha=2.0, beta=-0.5) is out
    spec = compiler.calls[0][0]
    assert (spec.dtype, spec.out_dtype, spec.layout) == (
        api._DTYPE_NAMES[dtype], api._DTYPE_NAMES[out_dtype], "NT")
    tol = 1e-2 if torch.float32 not in (dtype, out_dtype) or out_dtype != torch.float32 else 1e-3
    torch.testing.assert_close(out.double(), reference(a, b, before, 2.0, -0.5),
                               rtol=tol, atol=tol)


def test_non_contiguous_out_goes_through_a_temporary(cpu_gpu, compiler):
    a, b = torch.randn(6, 4), torch.randn(4, 10)
    out = torch.randn(10, 6).t()  # column-major: the kernel writes row-major C
    before = out.clone()
    assert deepgen.gemm(a, b, out=out, beta=1.0) is out
    (_, _, _, pc, _, _, _), = cpu_gpu[0].calls
    assert pc != out.data_ptr()
    torch.testing.assert_close(out.double(), reference(a, b, before, 1.0, 1.0))


def test_repeated_calls_take_the_fast_path(cpu_gpu, compiler, monkeypatch):
    slow = []
    real = api._gemm_slow
    monkeypatch.setattr(api, "_gemm_slow", lambda *args: slow.append(args) or real(*args))
    a, b = torch.randn(5, 8), col_major(8, 3)
    deepgen.gemm(a, b)
    c = deepgen.gemm(a, b, alpha=3.0)
    assert len(slow) == 1 and len(cpu_gpu) == 1 and len(cpu_gpu[0].calls) == 2
    torch.testing.assert_close(c.double(), reference(a, b, alpha=3.0), rtol=1e-5, atol=1e-5)
    b2 = b.contiguous()  # another layout is another signature: not the NT kernel
    torch.testing.assert_close(deepgen.gemm(a, b2).double(), reference(a, b2), rtol=1e-5,
                               atol=1e-5)
    deepgen.gemm(a, b2)
    assert len(slow) == 2 and [c[0].layout for c in compiler.calls] == ["NT", "NN"]
    misaligned = torch.randn(5 * 8 + 1)[1:].view(5, 8)  # same signature, not aligned
    torch.testing.assert_close(deepgen.gemm(misaligned, b2).double(), reference(misaligned, b2),
                               rtol=1e-5, atol=1e-5)
    assert len(slow) == 3


# -- where kernels come from ------------------------------------------------------------------

def test_compiled_once_then_found_on_disk(cpu_gpu, compiler):
    a, b = torch.randn(5, 8), torch.randn(8, 3)
    deepgen.gemm(a, b)
    assert [(c[1], c[2]) for c in compiler.calls] == [(None, "sm_90a")]
    api._by_call.clear()
    api._by_spec.clear()
    cache.clear_memory()  # as in a new process
    deepgen.gemm(a, b)
    assert len(compiler.calls) == 1
    (entry,) = (cache.cache_dir() / "kernels").iterdir()
    key = json.loads((entry / "key.json").read_text())
    assert key == {"spec": GemmSpec(M=5, N=3, K=8).to_dict(), "config": None,
                   "target": "sm_90a", "deepgen": deepgen.__version__,
                   "toolchain": {"mlir": "test", "ptxas": "test"},
                   "compiler": build.compiler_hash()}
    assert len(key["compiler"]) == 64


def test_tuned_config_is_used(cpu_gpu, compiler):
    spec = GemmSpec(M=5, N=3, K=8)
    root = cache.cache_dir()
    root.mkdir(parents=True)
    (root / "tuned.json").write_text(json.dumps({"format": "deepgen-tuned/1", "entries": [
        {"spec": spec.to_dict(), "target": "sm_90a", "config": {"BM": 16}}]}))
    deepgen.gemm(torch.randn(5, 8), torch.randn(8, 3))
    assert compiler.calls == [(spec, {"BM": 16}, "sm_90a")]


def test_explicit_config_wins(cpu_gpu, compiler, tmp_path):
    spec = GemmSpec(M=5, N=3, K=8)
    cache.preload(reference_artifact(spec))  # config {"reference": True, ...}
    a, b = torch.randn(5, 8), torch.randn(8, 3)
    deepgen.gemm(a, b, config={"BM": 32})
    deepgen.gemm(a, b, config={"BM": 32})
    assert compiler.calls == [(spec, {"BM": 32}, "sm_90a")]


def test_preloaded_bundle_runs_without_a_compiler(cpu_gpu, no_compiler, tmp_path, monkeypatch):
    spec = GemmSpec(M=5, N=3, K=8, layout="TN")
    reference_artifact(spec).save(tmp_path / "bundle")
    deepgen.runtime.preload(tmp_path / "bundle")
    a, b = col_major(5, 8), torch.randn(8, 3)
    torch.testing.assert_close(deepgen.gemm(a, b).double(), reference(a, b), rtol=1e-5,
                               atol=1e-5)
    from deepgen import fallback

    monkeypatch.setitem(fallback._state, "warned", False)
    with pytest.warns(RuntimeWarning, match=r"compiling needs deepgen.compiler and MLIR.*"
                                            r"runs torch's GEMM instead"):
        c = deepgen.gemm(a.contiguous(), b)  # layout NN: not preloaded, so torch runs it
    torch.testing.assert_close(c.double(), reference(a, b), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("capability, target", [((9, 0), "sm_90a"), ((8, 0), "sm_80"),
                                                ((8, 9), "sm_89"), ((10, 0), "sm_100")])
def test_target_of_a_device(monkeypatch, capability, target):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: capability)
    monkeypatch.setattr(torch.version, "hip", None)
    api.target_of.cache_clear()
    try:
        assert api.target_of(0) == target
    finally:
        api.target_of.cache_clear()


# -- imports ----------------------------------------------------------------------------------

def _python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_import_deepgen_imports_neither_torch_nor_mlir():
    out = _python("import sys, deepgen, deepgen.runtime, deepgen.runtime.cache; "
                  "print(sorted(m for m in sys.modules if m.split('.')[0] in "
                  "('torch', 'mlir', 'deepgen.compiler')))")
    assert out == "[]"


def test_import_deepgen_runtime_does_not_import_mlir():
    out = _python("import sys, deepgen.runtime; k = deepgen.runtime.Kernel; "
                  "print('mlir' in sys.modules, 'deepgen.compiler' in sys.modules)")
    assert out == "False False"


@pytest.mark.parametrize("order", ["import deepgen, torch", "import torch, deepgen"])
def test_torch_ops_exist_after_import_in_either_order(order):
    out = _python(f"{order}; print(torch.ops.deepgen.gemm.default._schema); "
                  f"print(torch.ops.deepgen.gemm_out.default._schema)")
    epi = 'Tensor? bias=None, str activation="none", str bias_dim="col"'
    scales = "Tensor? scale_a=None, Tensor? scale_b=None"
    assert out.splitlines() == [
        f"deepgen::gemm(Tensor a, Tensor b, float alpha=1., {epi}, {scales}, "
        "ScalarType? out_dtype=None) -> Tensor",
        "deepgen::gemm_out(Tensor a, Tensor b, Tensor(a!) out, float alpha=1., "
        f"float beta=0., {epi}, {scales}) -> ()"]


def test_f32_follows_torchs_tf32_switch(cpu_gpu, compiler, monkeypatch):
    assert api._tf32_allowed() is bool(torch.backends.cuda.matmul.allow_tf32)
    a, b = torch.randn(6, 4), torch.randn(4, 10)
    deepgen.gemm(a, b)
    monkeypatch.setattr(api, "_tf32_allowed", lambda: True)  # as if torch allowed TF32
    deepgen.gemm(a, b)  # a new signature: not the fast path of the first call
    deepgen.gemm(a.half(), b.half())
    flags = [(spec.dtype, spec.allow_tf32) for spec, _, _ in compiler.calls]
    assert flags == [("f32", False), ("f32", True), ("f16", False)]
