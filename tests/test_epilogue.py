"""The epilogue chain (deepgen.epilogue.EpilogueSpec, lowered by compiler/epilogue.py) on the
CPU: the affine description run by MLIR's JIT against numpy (bias per row and per column, each
activation), the PTX of math activations with libdevice linked (no unresolved __nv_ call) and
assembled by ptxas, an AMD hsaco with ocml linked, deepgen.gemm's argument errors (before
anything compiles), the torch ops' fake implementations, and the float64 reference."""
from __future__ import annotations

import ctypes
import math
import re

import numpy as np
import pytest
import torch

import deepgen
from deepgen import api, build
from deepgen.compiler import compile_artifact
from deepgen.epilogue import EpilogueError, EpilogueSpec
from deepgen.runtime import measure
from deepgen.spec import GemmSpec
from deepgen.toolchain import find_ld_lld, find_libdevice

SQRT_2_PI = math.sqrt(2.0 / math.pi)


def chain_numpy(acc, c, alpha, beta, steps, bias):
    x = acc.astype(np.float64)
    for s in steps:
        if s == "alpha_beta":
            x = alpha * x + (beta * c if beta else 0)
        elif s == "bias_row":
            x = x + bias[:, None]
        elif s == "bias_col":
            x = x + bias[None, :]
        elif s == "relu":
            x = np.maximum(x, 0)
        elif s == "gelu_tanh":
            x = 0.5 * x * (1 + np.tanh(SQRT_2_PI * (x + 0.044715 * x ** 3)))
        elif s == "silu":
            x = x / (1 + np.exp(-x))
    return x


def run_affine_on_cpu(spec: GemmSpec, alpha: float, beta: float, nan_c: bool = False):
    """deepgen.gemm -> the affine description -> LLVM, run by MLIR's execution engine
    (math.tanh/exp through libm); returns (C after the run, numpy float64 reference)."""
    from mlir import ir
    from mlir.execution_engine import ExecutionEngine
    from mlir.passmanager import PassManager
    from mlir.runtime import get_ranked_memref_descriptor

    from deepgen.compiler.config import TileConfig
    from deepgen.compiler.driver import gemm_module, make_context, run_pipeline

    rng = np.random.default_rng(1)
    a, b, c = [rng.standard_normal((spec.batch, *spec.stored_shape(op))).astype(np.float32)
               for op in ("A", "B", "C")]
    arrays = [a, b, c]
    bias = None
    if spec.epilogue.bias:
        bias = rng.standard_normal(spec.operand_shape("bias")).astype(np.float32)
    am = a.transpose(0, 2, 1) if spec.a_transposed else a
    bm = b.transpose(0, 2, 1) if spec.b_transposed else b
    ref = chain_numpy(np.matmul(am.astype(np.float64), bm), c.astype(np.float64), alpha, beta,
                      spec.epilogue.steps, bias)
    if nan_c:
        c[:] = np.nan
    if bias is not None:
        arrays.append(bias)
    with make_context(), ir.Location.unknown():
        module = gemm_module(spec, TileConfig(), "sm_90a")
        run_pipeline(module, ["deepgen-gemm-to-affine"])
        module.body.operations[0].attributes["llvm.emit_c_interface"] = ir.UnitAttr.get()
        PassManager.parse("builtin.module(lower-affine,convert-scf-to-cf,convert-math-to-libm,"
                          "convert-math-to-llvm,finalize-memref-to-llvm,convert-arith-to-llvm,"
                          "convert-func-to-llvm,convert-cf-to-llvm,reconcile-unrealized-casts)"
                          ).run(module.operation)
        engine = ExecutionEngine(module, opt_level=0)
        ptrs = [ctypes.pointer(ctypes.pointer(get_ranked_memref_descriptor(x))) for x in arrays]
        scalars = [ctypes.pointer(ctypes.c_float(alpha)), ctypes.pointer(ctypes.c_float(beta))]
        engine.invoke("gemm", *ptrs[:3], *scalars, *ptrs[3:])
    return c, ref


@pytest.mark.parametrize("bias", [None, "row", "col"])
@pytest.mark.parametrize("activation", [None, "relu", "gelu_tanh", "silu"])
def test_affine_description_applies_the_chain_on_cpu(bias, activation):
    spec = GemmSpec(M=5, N=7, K=3, batch=2, layout="NT",
                    epilogue=EpilogueSpec.of(bias=bias, activation=activation))
    out, ref = run_affine_on_cpu(spec, alpha=1.5, beta=-0.5)
    assert np.abs(out - ref).max() < 1e-5


def test_affine_description_chain_without_alpha_beta_never_reads_c():
    spec = GemmSpec(M=4, N=6, K=8, epilogue=EpilogueSpec(("bias_col", "silu")))
    out, ref = run_affine_on_cpu(spec, alpha=3.0, beta=2.0, nan_c=True)
    assert np.isfinite(out).all() and np.abs(out - ref).max() < 1e-5


def test_affine_description_bias_of_another_dtype():
    spec = GemmSpec(M=4, N=8, K=8, epilogue=EpilogueSpec.of(bias="row", bias_dtype="f32"),
                    dtype="f32")
    out, ref = run_affine_on_cpu(spec, alpha=1.0, beta=0.0, nan_c=True)
    assert np.abs(out - ref).max() < 1e-5


# -- NVIDIA: libdevice ----------------------------------------------------------------------------

SMALL_SIMT = {"BM": 32, "BN": 32, "BK": 8, "TM": 4, "TN": 4, "warps_m": 1, "warps_n": 2,
              "lanes_m": 8, "lanes_n": 4, "split_k": 1}


@pytest.mark.parametrize("activation", ["silu", "gelu_tanh"])
def test_math_activation_ptx_holds_libdevice_code_and_assembles(activation):
    spec = GemmSpec(M=64, N=64, K=32, epilogue=EpilogueSpec.of(bias="col", activation=activation))
    art = compile_artifact(spec, None)
    ptx = art.assembly
    assert "__nv_" not in ptx and ".extern" not in ptx  # no unresolved libdevice call
    assert "ex2.approx" in ptx  # libdevice's expf/tanhf, inlined
    assert art.binary[:4] == b"\x7fELF"  # ptxas assembled it
    assert [p.name for p in art.launches[0].params][-1] == "bias"
    if find_libdevice():  # the target names the PyPI nvidia-nvvm libdevice
        lowered = art.ir_stages[next(k for k in art.ir_stages if "tile-gemm" in k)]
        assert f'link = ["{find_libdevice()}"]' in lowered


def test_chains_without_math_link_nothing():
    for epi in (EpilogueSpec(), EpilogueSpec.parse("relu"), EpilogueSpec.of(bias="row")):
        art = compile_artifact(GemmSpec(M=64, N=64, K=32, epilogue=epi), None)
        assert not any("link = [" in text for text in art.ir_stages.values())


def test_relu_legacy_string_and_spec_make_the_same_kernel():
    spec = GemmSpec(M=64, N=64, K=32)
    a = compile_artifact(spec, SMALL_SIMT, epilogue="relu", keep_ir=False)
    b = compile_artifact(GemmSpec(M=64, N=64, K=32, epilogue=EpilogueSpec.parse("relu")),
                         SMALL_SIMT, keep_ir=False)
    assert a.assembly == b.assembly and a.spec == b.spec
    assert a.spec["epilogue"] == {"steps": ["alpha_beta", "relu"]}
    silu = GemmSpec(M=64, N=64, K=32, epilogue=EpilogueSpec.of(activation="silu"))
    with pytest.raises(EpilogueError, match="already holds"):
        compile_artifact(silu, SMALL_SIMT, epilogue="relu")


@pytest.mark.parametrize("N, vec", [(36, 4), (33, 1)])
def test_split_k_reduction_with_a_bias_keeps_vectors_in_one_row(N, vec):
    spec = GemmSpec(M=20, N=N, K=256, epilogue=EpilogueSpec.of(bias="col", activation="relu"))
    art = compile_artifact(spec, dict(SMALL_SIMT, split_k=2), keep_ir=False)
    red = art.launches[1]
    assert red.entry == "deepgen_splitk_reduce"
    assert [p.name for p in red.params] == ["W", "C", "alpha", "beta", "bias"]
    assert red.grid[0] == -(-(20 * N) // (256 * vec))
    # the partial sums take no epilogue: the main kernel's bias is only passed through
    assert [p.name for p in art.launches[0].params] == ["A", "B", "C", "alpha", "beta", "bias",
                                                       "W"]


def test_epilogue_is_part_of_the_cache_key():
    plain = GemmSpec(M=64, N=64, K=32)
    silu = GemmSpec(M=64, N=64, K=32, epilogue=EpilogueSpec.of(activation="silu"))
    assert "epilogue" not in plain.to_dict()
    kp = lambda s: build.key_parts(s, None, "sm_90a", compiler=_NoCompiler())
    assert kp(plain)["spec"] != kp(silu)["spec"]


class _NoCompiler:
    @staticmethod
    def toolchain_versions():
        return {}


# -- AMD: ocml ------------------------------------------------------------------------------------

@pytest.mark.skipif(find_ld_lld() is None, reason="ld.lld not found")
@pytest.mark.parametrize("activation", ["silu", "gelu_tanh"])
def test_amd_math_activation_links_ocml_into_a_hsaco(activation):
    from deepgen.toolchain import find_amd_device_libs

    if find_amd_device_libs() is None:
        pytest.skip("no ocml.bc/ockl.bc (ROCm or the triton wheel)")
    spec = GemmSpec(M=64, N=64, K=40, epilogue=EpilogueSpec.of(bias="row", activation=activation))
    art = compile_artifact(spec, None, "gfx942")
    assert art.binary[:4] == b"\x7fELF"
    assert not re.search(r"__oc[mk]l_", art.assembly)  # inlined, nothing left to resolve
    assert art.resources["deepgen_gemm"]["spill_stores"] == 0


# -- deepgen.gemm's arguments ---------------------------------------------------------------------

@pytest.fixture
def no_compile(monkeypatch):
    """CPU tensors stand in for CUDA ones; any attempt to compile or launch fails the test."""
    monkeypatch.setattr(api, "_check_devices", lambda tensors: None)
    monkeypatch.setattr(api, "target_of", lambda device: "sm_90a")

    def fail(*a, **k):
        raise AssertionError("compiled although the arguments were wrong")
    monkeypatch.setattr(api, "kernel_for", fail)
    for t in (api._by_call, api._by_spec):
        t.clear()


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(activation="gelu"), ValueError, "activation: must be None or one of relu, gelu_tanh"),
    (dict(activation="relu", bias_dim="both"), ValueError, "bias_dim: must be 'col'"),
    (dict(bias=torch.zeros(7)), ValueError, r"bias: expected shape \(5,\): N \(one value per "
                                            r"column, bias_dim='col'\) = 5, got \(7,\)"),
    (dict(bias=torch.zeros(5), bias_dim="row"), ValueError, r"bias: expected shape \(4,\): M"),
    (dict(bias=torch.zeros(4, 5)), ValueError, r"bias: expected shape \(5,\)"),
    (dict(bias=torch.zeros(5, dtype=torch.int32)), TypeError, "bias: dtype torch.int32 is not "
                                                              "supported"),
    (dict(bias=[0.0] * 5), TypeError, "bias: expected a torch.Tensor"),
])
def test_gemm_names_a_bad_epilogue_argument_before_compiling(no_compile, kwargs, exc, match):
    a, b = torch.randn(4, 3), torch.randn(3, 5)
    with pytest.raises(exc, match=match):
        deepgen.gemm(a, b, **kwargs)


def test_spec_for_puts_the_epilogue_into_the_spec(no_compile):
    a, b = torch.randn(4, 3), torch.randn(3, 5)
    spec, _, _ = api.spec_for(a, b, bias=torch.zeros(5), activation="gelu_tanh")
    assert spec.epilogue == EpilogueSpec(("alpha_beta", "bias_col", "gelu_tanh"))
    spec, _, _ = api.spec_for(a.bfloat16(), b.bfloat16(), bias=torch.zeros(4), bias_dim="row")
    assert spec.epilogue == EpilogueSpec(("alpha_beta", "bias_row"), bias_dtype="f32")
    assert spec.operand_dtype("bias") == "f32" and spec.operand_shape("bias") == (4,)
    spec, _, _ = api.spec_for(a, b, activation="none")
    assert spec.epilogue.is_default


def test_call_signature_holds_the_epilogue():
    a, b, bias = torch.randn(4, 3), torch.randn(3, 5), torch.randn(5)
    sigs = {api._signature(a, b, None), api._signature(a, b, None, None, "relu"),
            api._signature(a, b, None, bias, None, "col"),
            api._signature(a, b, None, bias.half(), None, "col"),
            api._signature(a, b, None, bias, "silu", "col")}
    assert len(sigs) == 5


# -- torch ops ------------------------------------------------------------------------------------

def meta(*shape, dtype=torch.float32):
    return torch.empty(*shape, device="meta", dtype=dtype)


def test_ops_fake_shapes_with_a_bias_and_an_activation():
    torch._dynamo.reset()

    def f(a, b, bias):
        return torch.ops.deepgen.gemm(a, b, 1.0, bias, "gelu_tanh", "col") + 1

    out = torch.compile(f, fullgraph=True, backend="aot_eager")(
        meta(3, 8, 4, dtype=torch.bfloat16), meta(3, 4, 6, dtype=torch.bfloat16), meta(6))
    assert out.shape == (3, 8, 6) and out.dtype == torch.bfloat16
    torch._dynamo.reset()


@pytest.mark.parametrize("args, exc, match", [
    ((None, "gelu", "col"), ValueError, "activation: must be 'none' or one of relu"),
    ((None, "relu", "rows"), ValueError, "bias_dim: must be 'col'"),
    ((meta(7), "none", "col"), ValueError, r"bias: expected shape \(6,\): N = 6"),
    ((meta(6), "none", "row"), ValueError, r"bias: expected shape \(8,\): M = 8"),
    ((meta(2, 3), "none", "col"), ValueError, "bias: expected a 1-D tensor of N = 6"),
    ((torch.empty(6, dtype=torch.int64, device="meta"), "none", "col"), TypeError,
     "bias: dtype torch.int64 is not supported"),
])
def test_ops_fake_implementations_check_the_epilogue(args, exc, match):
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode(allow_non_fake_inputs=True):
        with pytest.raises(exc, match=match):
            torch.ops.deepgen.gemm(meta(8, 4), meta(4, 6), 1.0, *args)
        with pytest.raises(exc, match=match):
            torch.ops.deepgen.gemm_out(meta(8, 4), meta(4, 6), meta(8, 6), 1.0, 0.0, *args)


# -- the float64 reference ------------------------------------------------------------------------

def test_reference_applies_the_chain_in_order():
    a, b, c, bias = torch.randn(5, 3), torch.randn(3, 4), torch.randn(5, 4), torch.randn(4)
    spec = GemmSpec(M=5, N=4, K=3, epilogue=EpilogueSpec.of(bias="col", activation="gelu_tanh"))
    got = measure.reference(a, b, c, 2.0, 0.5, spec.epilogue, bias)
    x = 2.0 * (a.double() @ b.double()) + 0.5 * c.double() + bias.double()
    want = torch.nn.functional.gelu(x, approximate="tanh")
    torch.testing.assert_close(got, want)
    silu = measure.reference(a, b, epilogue=EpilogueSpec.of(bias="row", activation="silu"),
                             bias=torch.ones(5))
    torch.testing.assert_close(silu, torch.nn.functional.silu(a.double() @ b.double() + 1))


def test_check_passes_the_bias_to_the_kernel(monkeypatch):
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    spec = GemmSpec(M=6, N=4, K=5, epilogue=EpilogueSpec.of(bias="row", activation="relu"))
    seen = {}

    def kernel(a, b, c, *, alpha, beta, bias):
        seen["bias"] = bias
        c.copy_(measure.reference(a, b, None, alpha, 0.0, spec.epilogue, bias))
    err = measure.check(kernel, spec, alpha=1.0, beta=0.0, device="cpu")
    assert err < 1e-6 and seen["bias"].shape == (6,)


# -- deepgen.gemm end to end on the fake GPU ------------------------------------------------------

@pytest.fixture
def fake_compiler_with_bias(tmp_path, monkeypatch):
    """deepgen.compiler replaced by the reference kernel with a `bias` parameter appended (the
    fake launch plan computes the spec's chain on the CPU through the pointers it gets)."""
    import dataclasses
    import sys
    import types

    from deepgen.runtime import cache
    from deepgen.runtime.artifact import param_for
    from deepgen.runtime.reference import reference_artifact
    from runtime_fakes import pretend_kernels_run_on_cpu

    specs = []

    class Fake(types.ModuleType):
        def compile_artifact(self, spec, config=None, target="sm_90a"):
            specs.append(spec)
            art = reference_artifact(spec, target=target)
            extra = tuple(param_for(n, spec) for n in spec.epilogue.operands())
            art.launches = [dataclasses.replace(l, params=tuple(l.params) + extra)
                            for l in art.launches]
            return art

        def toolchain_versions(self):
            return {"mlir": "test"}

    fake = Fake("deepgen.compiler")
    monkeypatch.setenv("DEEPGEN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(sys.modules, "deepgen.compiler", fake)
    monkeypatch.setattr(deepgen, "compiler", fake, raising=False)
    monkeypatch.setattr(api, "_check_devices", lambda tensors: None)
    monkeypatch.setattr(api, "target_of", lambda device: "sm_90a")
    pretend_kernels_run_on_cpu(monkeypatch)
    for t in (api._by_call, api._by_spec):
        t.clear()
    cache.clear_memory()
    yield specs
    for t in (api._by_call, api._by_spec):
        t.clear()
    cache.clear_memory()


@pytest.mark.parametrize("bias_dim, activation", [("col", "gelu_tanh"), ("row", "silu"),
                                                  ("col", None)])
def test_gemm_with_bias_and_activation(fake_compiler_with_bias, bias_dim, activation):
    a, b = torch.randn(6, 5), torch.randn(5, 8)
    bias = torch.randn(8 if bias_dim == "col" else 6)
    out = torch.randn(6, 8)
    before = out.clone()
    for _ in range(2):  # the second call takes the fast path
        got = deepgen.gemm(a, b, out=out, alpha=1.5, beta=0.5, bias=bias,
                           activation=activation, bias_dim=bias_dim)
        spec = fake_compiler_with_bias[-1]
        want = measure.reference(a, b, before, 1.5, 0.5, spec.epilogue, bias)
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
        out.copy_(before)
    assert len(fake_compiler_with_bias) == 1  # compiled once
    assert spec.epilogue.bias == bias_dim and spec.epilogue.activation == activation
    # another activation is another kernel
    deepgen.gemm(a, b, bias=bias, bias_dim=bias_dim, activation="relu")
    assert len(fake_compiler_with_bias) == 2
