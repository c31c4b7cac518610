"""int8 (w8a8) GEMMs on the CPU (their GPU counterpart: tests/gpu/test_int8_gpu.py): the
registry and the spec (int8 inputs, not an output; scales; the cache key), validation that
names the field and the limit before any MLIR runs (layout NT only, sm_90a for wgmma, sm_80+
for mma_sync, integer wgmma's N, BK one 128-byte span, simt and gemv reject int8), the
defaults (wgmma with fp8's rules, BN rounded to an integer wgmma N; mma_sync m16n8k32 off
sm_90a and where TMA cannot read the operands), the kernels' PTX (wgmma m64nNk32.s32.s8.s8
into an s32 accumulator, converted to f32 by cvt.rn.f32.s32 in the epilogue, no f32 wgmma;
mma.sync m16n8k32.s32.s8.s8.s32 from ldmatrix fragments) and SASS (IGMMA.64xNx32.S8.S8,
IMMA.16832.S8.S8, I2FP.F32.S32, no local memory), the affine description's i32 sums and
scales, and deepgen.gemm's int8 form (the fp8 form's conventions: a row-major, b = w.t(),
out_dtype required) and the torch ops' fakes."""
from __future__ import annotations

import re

import pytest
import torch

import deepgen
from deepgen import build, scaled
from deepgen.compiler import compile_artifact, strategies
from deepgen.compiler.strategies.wgmma import WgmmaConfig
from deepgen.compiler.strategies.wgmma.config import INT8_WGMMA_N, int8_bn
from deepgen.compiler.target import get_target
from deepgen.dtypes import DTYPES, INPUT_DTYPES, OUTPUT_DTYPES
from deepgen.epilogue import EpilogueSpec
from deepgen.spec import GemmSpec, SpecError

H100 = get_target("sm_90a")
INT8 = GemmSpec(M=512, N=512, K=512, dtype="int8", out_dtype="bf16", layout="NT",
                scale="tensor")


def _resolve(spec=INT8, **fields):
    return strategies.resolve({"strategy": "wgmma", **fields} if fields else None, spec, H100)


def test_registry_int8_is_an_input_not_an_output():
    assert "int8" in INPUT_DTYPES and "int8" not in OUTPUT_DTYPES
    assert DTYPES["int8"].compiled and not DTYPES["int8"].output
    assert DTYPES["int8"].ptx == "s8"


@pytest.mark.parametrize("fields,message", [
    (dict(out_dtype="int8"), r"^out_dtype: must be one of \('f32', 'f16', 'bf16'\)"),
    (dict(dtype="f16", out_dtype="f16"),
     r"^scale: scales apply to quantized inputs \(e4m3, e5m2, int8\)"),
    (dict(epilogue={"steps": ["alpha_beta", "bias_col"], "bias_dtype": "int8"}),
     r"^epilogue.bias_dtype: must be one of \('f32', 'f16', 'bf16'\)"),
])
def test_spec_rejects(fields, message):
    base = dict(M=64, N=64, K=64, dtype="int8", out_dtype="bf16", layout="NT", scale="tensor")
    with pytest.raises(SpecError, match=message):
        GemmSpec(**{**base, **fields})


def test_spec_dict_and_cache_key():
    assert GemmSpec.from_dict(INT8.to_dict()) == INT8
    fp8 = GemmSpec(**{**INT8.to_dict(), "dtype": "e4m3"})
    rowwise = GemmSpec(**{**INT8.to_dict(), "scale": "rowwise"})
    keys = [build.key_parts(s, {"strategy": "wgmma"}, "sm_90a")["spec"]
            for s in (INT8, fp8, rowwise)]
    assert keys[0] != keys[1] and keys[0] != keys[2] and keys[1] != keys[2]
    assert INT8.is_quantized and not INT8.is_fp8
    assert rowwise.operand_shape("scale_a") == (512,) and rowwise.operand_dtype("scale_b") == "f32"
    biased = GemmSpec(M=64, N=64, K=64, dtype="int8", out_dtype="f16", layout="NT",
                      epilogue=EpilogueSpec.of(bias="col"))
    assert biased.operand_dtype("bias") == "f16"  # the output type's, as fp8's


@pytest.mark.parametrize("spec_fields,target,config,message", [
    (dict(layout="NN"), "sm_90a", None,
     r"^layout: int8 wgmma reads only K-major operands: layout NT .* got layout NN"),
    (dict(layout="TN"), "sm_90a", {"strategy": "wgmma"}, r"^layout: int8 wgmma"),
    (dict(layout="NN"), "sm_80", None,
     r"^strategy: wgmma needs sm_90a .* \(int8 inputs off sm_90a: the mma_sync strategy, "
     r"mma.sync m16n8k32, layout NT\)"),
    (dict(K=1000), "sm_90a", {"strategy": "wgmma"},
     r"^layout: TMA needs 16-byte-aligned row strides"),
    (dict(), "sm_90a", {"strategy": "simt"},
     r"^dtype: the simt strategy does not multiply int8 \(int8\) inputs: only the wgmma "
     r"strategy \(sm_90a\) and the mma_sync strategy \(sm_80\+, mma m16n8k32\) do"),
    (dict(layout="NN"), "sm_80", {"strategy": "mma_sync"},
     r"^layout: int8 mma.sync reads only K-major operands .* got NN"),
    (dict(), "sm_80", {"strategy": "mma_sync", "mma": "m16n8k16"},
     r"^mma: m16n8k16 multiplies f16 or bf16, got dtype int8 \(int8: m16n8k32\)"),
    (dict(), "sm_80", {"strategy": "mma_sync", "BK": 48},
     r"^BK: must be a power of two"),
    (dict(), "sm_80", {"strategy": "mma_sync", "BK": 16, "mma": "m16n8k32"},
     r"^BK: must be a multiple of the MMA depth 32, got 16"),
    (dict(dtype="e4m3"), "sm_89", {"strategy": "mma_sync"},
     r"^dtype: the mma_sync strategy does not multiply fp8 \(e4m3\) inputs: only the wgmma "
     r"strategy \(sm_90a\) does"),
    (dict(M=4), "sm_90a", {"strategy": "gemv"}, r"^dtype: the gemv strategy does not multiply int8"),
    (dict(), "sm_90a", {"strategy": "wgmma", "BK": 64},
     r"^BK: one 128-byte swizzle span: 128 int8 elements"),
    (dict(), "sm_90a", {"strategy": "wgmma", "BN": 40},
     r"^BN: int8 wgmma's N: 8, 16, 24 or a multiple of 16 up to 256, got 40"),
    (dict(), "sm_90a", {"strategy": "wgmma", "split_k": 2},
     r"^split_k: split_k 2 with scales: the workspace reduce applies none"),
    (dict(epilogue=EpilogueSpec.of(alpha_beta=False, activation="relu")), "sm_90a", None,
     r"^epilogue: scales apply to the accumulator before the chain"),
])
def test_validation_names_the_field_and_the_limit(spec_fields, target, config, message):
    spec = GemmSpec(**{**INT8.to_dict(), **spec_fields})
    with pytest.raises(SpecError, match=message):
        strategies.resolve(config, spec, target)


def test_the_default_is_wgmma_with_fp8s_rules_and_an_integer_n():
    for m in (1, 16, 512, 4096):
        spec = GemmSpec(M=m, N=4096, K=4096, dtype="int8", out_dtype="bf16", layout="NT",
                        scale="rowwise")
        assert strategies.choose(spec, H100).name == "wgmma", m
    big = GemmSpec(M=4096, N=4096, K=4096, dtype="int8", out_dtype="bf16", layout="NT",
                   scale="rowwise")
    fp8 = GemmSpec(**{**big.to_dict(), "dtype": "e4m3"})
    assert _resolve(big) == _resolve(fp8) == WgmmaConfig(
        BM=128, BN=128, BK=128, stages=7, consumers=2, mode="pingpong", persistent=True)
    narrow = GemmSpec(M=512, N=40, K=256, dtype="int8", out_dtype="f32", layout="NT")
    assert _resolve(narrow).BN == 48  # fp8's rule gives 40, not an integer wgmma N
    assert [int8_bn(n) for n in (1, 8, 9, 24, 25, 33, 129, 256)] == [8, 8, 16, 24, 32, 48, 144,
                                                                    256]
    assert set(INT8_WGMMA_N) >= {8, 16, 24, 32, 48, 128, 256} and 40 not in INT8_WGMMA_N
    decode = GemmSpec(M=20, N=4096, K=4096, dtype="int8", out_dtype="bf16", layout="NT",
                      scale="tensor")
    cfg = _resolve(decode)
    assert (cfg.swap_ab, cfg.BN, cfg.split_k) == (True, 24, 1)


@pytest.fixture(scope="module")
def artifacts():
    def c(spec, config=None):
        return compile_artifact(spec, config, "sm_90a", keep_ir=False)

    return {
        "tensor": c(INT8),
        "rowwise_pingpong": c(GemmSpec(M=4096, N=4096, K=4096, dtype="int8", out_dtype="bf16",
                                       layout="NT", scale="rowwise")),
        "rowwise_bias_relu_c2": c(GemmSpec(M=1000, N=1232, K=4000, dtype="int8",
                                           out_dtype="f16", layout="NT", scale="rowwise",
                                           epilogue=EpilogueSpec.of(bias="col",
                                                                    activation="relu")),
                                  {"strategy": "wgmma", "BM": 128, "BN": 256, "consumers": 2}),
        "swap_tensor": c(GemmSpec(M=16, N=4096, K=4096, dtype="int8", out_dtype="bf16",
                                  layout="NT", scale="tensor")),
        "plain_f32": c(GemmSpec(M=256, N=192, K=384, dtype="int8", out_dtype="f32",
                                layout="NT")),
    }


@pytest.mark.parametrize("name,n,slabs,scale", [
    ("tensor", 128, 2, "tensor"), ("rowwise_pingpong", 128, 2, "rowwise"),
    ("rowwise_bias_relu_c2", 256, 1, "rowwise"), ("swap_tensor", 16, 2, "tensor"),
    ("plain_f32", 128, 2, None)])
def test_ptx_has_s32_s8_wgmma_and_converts_the_accumulator(artifacts, name, n, slabs, scale):
    """m64nNk32.s32.s8.s8 (no scale/transpose immediates: integer wgmma has none), BK/32 = 4
    per K tile and slab in the peeled first tile and the loop; no f32 wgmma; every s32
    register converted once per store (cvt.rn.f32.s32); TMA boxes of 128 int8; the scales as
    the last two pointer params; no spills."""
    art = artifacts[name]
    main = art.launches[0]
    ptx = art.assembly
    mma = re.findall(rf"wgmma\.mma_async\.sync\.aligned\.m64n{n}k32\.s32\.s8\.s8 "
                     r"\{[^}]*\}, %rd\d+, %rd\d+, (?:p|\d);", ptx)
    assert len(mma) == 2 * 4 * slabs, len(mma)
    assert not re.search(r"wgmma\.mma_async\S*\.f32\.", ptx)
    assert len(re.findall(r"cvt\.rn\.f32\.s32", ptx)) >= slabs * n // 2
    a, b = main.params[:2]
    assert (a.dtype, a.box[1:], a.swizzle) == ("int8", (art.config["BM"], 128), 128)
    assert (b.dtype, b.box[1:]) == ("int8", (n, 128))
    names = [p.name for p in main.params]
    if scale:
        assert names[-2:] == ["scale_a", "scale_b"]
        for p, rule in zip(main.params[-2:], ("M", "N")):
            assert (p.kind, p.dtype, p.shape) == ("ptr", "f32",
                                                  (rule,) if scale == "rowwise" else (1,))
    else:
        assert "scale_a" not in names
    res = art.resources[main.entry]
    assert res["spill_stores"] == res["spill_loads"] == res["stack_bytes"] == 0, res


def test_sass_has_igmma_and_no_local_memory(artifacts):
    """ptxas writes integer wgmma as IGMMA and the conversion as I2FP.F32.S32."""
    from test_wgmma import _check_sass

    _check_sass(artifacts, r"IGMMA\.64x(16|128|256)x32\.S8\.S8\b")
    _check_sass({"tensor": artifacts["tensor"]}, r"I2FP\.F32\.S32\b")


# -- deepgen.gemm's int8 form -----------------------------------------------------------------

@pytest.fixture
def cpu(monkeypatch):
    """CPU tensors accepted as CUDA tensors (argument checks only: nothing is launched)."""
    monkeypatch.setattr(scaled, "_check_devices", lambda tensors: None)


def _i8(*shape):
    return torch.randint(-127, 128, shape, dtype=torch.int8)


def _sc():
    return torch.tensor(0.5)


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(a=_i8(64, 32), b=_i8(32, 48), scale_a=_sc(), scale_b=_sc(),
          out_dtype=torch.bfloat16), ValueError, r"^b: int8 b must be column-major \(K, N\)"),
    (dict(a=_i8(32, 64).t(), b=_i8(48, 32).t(), scale_a=_sc(), scale_b=_sc(),
          out_dtype=torch.bfloat16), ValueError, r"^a: int8 a must be row-major"),
    (dict(a=_i8(64, 32), b=_i8(48, 32).t(), scale_a=_sc(), scale_b=_sc()), TypeError,
     r"^out_dtype: torch.int8 inputs need an output dtype \(int8 output is not built\)"),
    (dict(a=_i8(64, 32), b=_i8(48, 32).t()), TypeError,
     r"^out_dtype: torch.int8 inputs need an output dtype"),
    (dict(a=_i8(64, 32), b=_i8(48, 32).t(), scale_a=_sc(), scale_b=_sc(),
          out_dtype=torch.int32), TypeError, r"^out_dtype: must be one of"),
    (dict(a=_i8(64, 32), b=_i8(48, 32).t(), scale_a=_sc(), out_dtype=torch.bfloat16),
     TypeError, r"^scale_b: missing; give both"),
    (dict(a=_i8(64, 32), b=_i8(48, 32).t(), scale_a=torch.ones(64, 1),
          scale_b=torch.ones(48, 1), out_dtype=torch.bfloat16), ValueError,
     r"^scale_a, scale_b: one element each"),
    (dict(a=_i8(64, 32), b=_i8(48, 32).t().to(torch.float8_e4m3fn), scale_a=_sc(),
          scale_b=_sc(), out_dtype=torch.bfloat16), TypeError, r"^b: dtype .* differs"),
])
def test_int8_arguments_are_checked_before_compiling(cpu, kwargs, error, message):
    a, b = kwargs.pop("a"), kwargs.pop("b")
    with pytest.raises(error, match=message):
        deepgen.gemm(a, b, **kwargs)


def test_int8_spec_follows_the_fp8_convention(cpu):
    a, w = _i8(64, 32), _i8(48, 32)
    spec = scaled.spec_for(a, w.t(), scale_a=_sc(), scale_b=torch.tensor([2.0]),
                           out_dtype=torch.bfloat16, bias=torch.randn(48).bfloat16())
    assert (spec.M, spec.N, spec.K, spec.dtype, spec.out_dtype, spec.layout, spec.scale) == (
        64, 48, 32, "int8", "bf16", "NT", "tensor")
    assert spec.epilogue == EpilogueSpec.of(bias="col")
    rowwise = scaled.spec_for(a, w.t(), scale_a=torch.ones(64, 1), scale_b=torch.ones(1, 48),
                              out_dtype=torch.float32)
    assert (rowwise.scale, rowwise.out_dtype) == ("rowwise", "f32")
    assert scaled.spec_for(a, w.t(), out_dtype=torch.float16).scale == "none"


def test_torch_op_fakes_take_int8():
    a = torch.empty(64, 32, dtype=torch.int8, device="meta")
    b = torch.empty(48, 32, dtype=torch.int8, device="meta").t()
    s = torch.empty((), device="meta")
    out = torch.ops.deepgen.gemm(a, b, 1.0, None, "none", "col", s, s, torch.bfloat16)
    assert (tuple(out.shape), out.dtype) == ((64, 48), torch.bfloat16)
    with pytest.raises(TypeError, match="need an output dtype"):
        torch.ops.deepgen.gemm(a, b, 1.0, None, "none", "col", s, s)


# -- int8 through mma.sync m16n8k32 (the mma_sync strategy: sm_80-89, and sm_90a by choice) ----

SM80 = get_target("sm_80")


def test_mma_sync_takes_int8_off_sm_90a_and_where_tma_cannot_read():
    """sm_80, sm_86, sm_89: the default is mma_sync's m16n8k32 tile (the 16-bit tile at the
    same bytes of K: BK doubled); sm_90a: wgmma, but mma_sync where TMA cannot read the
    operands (rows of K = 1000 bytes are not 16-byte multiples); fp8 stays wgmma's alone."""
    big = GemmSpec(M=4096, N=4096, K=4096, dtype="int8", out_dtype="bf16", layout="NT",
                   scale="rowwise")
    for target in ("sm_80", "sm_86", "sm_89"):
        cfg = strategies.default_config(big, target)
        assert (cfg.strategy, cfg.mma, cfg.BK % 32, cfg.async_copy) == ("mma_sync", "m16n8k32",
                                                                        0, True), target
    assert strategies.default_config(big, "sm_80").BK == 128
    assert strategies.choose(big, H100).name == "wgmma"
    odd = GemmSpec(M=512, N=512, K=1000, dtype="int8", out_dtype="f16", layout="NT",
                   scale="tensor")
    assert strategies.choose(odd, H100).name == "mma_sync"
    assert strategies.default_config(odd, H100).load_width_a == 8  # 1000 = 125 x 8 bytes
    fp8 = GemmSpec(**{**big.to_dict(), "dtype": "e4m3"})
    assert strategies.choose(fp8, get_target("sm_89")).name == "wgmma"  # which names sm_90a
    narrow_rows = GemmSpec(M=300, N=40, K=1001, dtype="int8", out_dtype="f32", layout="NT")
    staged = strategies.default_config(narrow_rows, "sm_80")  # K odd: no cp.async
    assert (staged.async_copy, staged.mma, staged.BK) == (False, "m16n8k32", 32)


@pytest.fixture(scope="module")
def mma_artifacts():
    def c(spec, target="sm_80", **fields):
        return compile_artifact(spec, {"strategy": "mma_sync", **fields}, target, keep_ir=False)

    rowwise = GemmSpec(M=512, N=384, K=512, dtype="int8", out_dtype="bf16", layout="NT",
                       scale="rowwise")
    return {
        "rowwise": c(rowwise),
        "tensor_sm89": c(GemmSpec(M=520, N=392, K=1040, dtype="int8", out_dtype="f16",
                                  layout="NT", scale="tensor",
                                  epilogue=EpilogueSpec.of(bias="col", activation="relu")),
                         "sm_89"),
        "rowwise_splitk": c(GemmSpec(M=16, N=1024, K=4096, dtype="int8", out_dtype="f32",
                                     layout="NT", scale="rowwise"), split_k=4),
        "raw_sm90a": c(GemmSpec(M=256, N=192, K=384, dtype="int8", out_dtype="f32",
                                layout="NT"), "sm_90a"),
    }


@pytest.mark.parametrize("name", ["rowwise", "tensor_sm89", "rowwise_splitk", "raw_sm90a"])
def test_mma_sync_ptx_multiplies_s8_into_s32_from_ldmatrix(mma_artifacts, name):
    """mma.sync m16n8k32 .s32.s8.s8.s32 (wrapping: no .satfinite) only, fed by ldmatrix x4
    without .trans (int8 is K-major); the s32 sums converted once (cvt.rn.f32.s32); the
    scales the last params (1 value each or M and N), also with split-K's scaled partials
    (the reduce launch takes none); no spills."""
    art = mma_artifacts[name]
    ptx = art.assembly
    mmas = re.findall(r"mma\.sync\.aligned\.m16n8k\d+\S*", ptx)
    assert mmas and set(mmas) == {"mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32"}, set(mmas)
    assert "ldmatrix.sync.aligned.m8n8.x4.shared.b16" in ptx and ".trans" not in ptx
    assert "cvt.rn.f32.s32" in ptx
    spec = GemmSpec.from_dict(art.spec)
    main = art.launches[0]
    names = [p.name for p in main.params]
    if spec.scale == "none":
        assert "scale_a" not in names
    else:
        tail = names[-3:-1] if art.config["split_k"] > 1 else names[-2:]  # then W
        assert tail == ["scale_a", "scale_b"], names
        shapes = {p.name: p.shape for p in main.params}
        want = ("M", "N") if spec.scale == "rowwise" else (1, 1)
        assert (shapes["scale_a"], shapes["scale_b"]) == ((want[0],), (want[1],))
    for launch in art.launches[1:]:  # the split-K reduce
        assert not any(p.name.startswith("scale") for p in launch.params)
    for res in art.resources.values():
        assert res["spill_stores"] == res["spill_loads"] == res["stack_bytes"] == 0, res


def test_mma_sync_sass_has_imma_16832_and_no_local_memory(mma_artifacts):
    from sass_text import sass_of

    for name, art in mma_artifacts.items():
        sass = sass_of(art.binary)
        assert re.search(r"\bIMMA\.16832\.S8\.S8\b", sass), name
        assert not re.search(r"\b(LDL|STL)\b", sass), f"{name}: local memory in the SASS"
        assert not re.search(r"\bHMMA\b", sass), name


def test_affine_description_of_int8_sums_in_i32_and_scales(monkeypatch):
    """The affine description (the op's reference semantics) of an int8 GEMM with rowwise
    scales and a bias, run on the CPU by MLIR's execution engine: the i32 sums of full-range
    inputs (exact: here beyond 2^24 would not be, so K stays small) times scale_a[i] *
    scale_b[j], then alpha, the bias and relu, against float64."""
    import ctypes

    import numpy as np
    from mlir import ir
    from mlir.execution_engine import ExecutionEngine
    from mlir.passmanager import PassManager
    from mlir.runtime import get_ranked_memref_descriptor

    from deepgen.compiler.config import TileConfig
    from deepgen.compiler.driver import gemm_module, make_context, run_pipeline

    M, N, K = 6, 5, 300
    spec = GemmSpec(M=M, N=N, K=K, dtype="int8", out_dtype="f32", layout="NT",
                    scale="rowwise", epilogue=EpilogueSpec.of(bias="row", activation="relu"))
    rng = np.random.default_rng(3)
    a = rng.integers(-127, 128, (1, M, K), dtype=np.int8)
    b = rng.integers(-127, 128, (1, N, K), dtype=np.int8)  # NT: B stored N x K
    c = np.full((1, M, N), np.nan, dtype=np.float32)
    bias = rng.standard_normal(M).astype(np.float32)
    sa = (0.5 + rng.random(M)).astype(np.float32)
    sb = (0.5 + rng.random(N)).astype(np.float32)
    alpha = 0.75
    exact = a[0].astype(np.int64) @ b[0].astype(np.int64).T
    ref = np.maximum(alpha * exact * sa[:, None] * sb[None, :] + bias[:, None], 0)
    with make_context(), ir.Location.unknown():
        module = gemm_module(spec, TileConfig(), "sm_90a")
        run_pipeline(module, ["deepgen-gemm-to-affine"])
        text = str(module)
        assert "arith.extsi" in text and "arith.muli" in text and "arith.sitofp" in text
        assert 'deepgen.role = "scale_a"' in text and 'deepgen.role = "scale_b"' in text
        module.body.operations[0].attributes["llvm.emit_c_interface"] = ir.UnitAttr.get()
        PassManager.parse("builtin.module(lower-affine,convert-scf-to-cf,finalize-memref-to-llvm,"
                          "convert-arith-to-llvm,convert-func-to-llvm,convert-cf-to-llvm,"
                          "reconcile-unrealized-casts)").run(module.operation)
        engine = ExecutionEngine(module, opt_level=0)

        def ref_arg(x):
            return ctypes.pointer(ctypes.pointer(get_ranked_memref_descriptor(x)))

        engine.invoke("gemm", ref_arg(a), ref_arg(b), ref_arg(c),
                      ctypes.pointer(ctypes.c_float(alpha)), ctypes.pointer(ctypes.c_float(0.0)),
                      ref_arg(bias), ref_arg(sa), ref_arg(sb))
    assert np.abs(c[0] - ref).max() <= 1e-5 * np.abs(ref).max()


def test_gemm_op_checks_its_scale_operands():
    """deepgen.gemm's verification (dialects/verify.py): the `scale` attribute asks for two f32
    operands after the bias, of the mode's shapes; a missing or misshapen one is named."""
    from mlir import ir
    from mlir.dialects import func as func_d

    from deepgen.compiler.driver import make_context
    from deepgen.dialects import ops
    from deepgen.dialects.verify import gemm_spec

    def op_with(scale_shapes, scale="rowwise", elem=None):
        i8, f32 = ir.IntegerType.get_signless(8), ir.F32Type.get()
        types = [ir.MemRefType.get([8, 64], i8), ir.MemRefType.get([16, 64], i8),
                 ir.MemRefType.get([8, 16], f32), f32, f32]
        types += [ir.MemRefType.get(list(s), elem or f32) for s in scale_shapes]
        module = ir.Module.create()
        with ir.InsertionPoint(module.body):
            f = func_d.FuncOp("g", (types, []))
            with ir.InsertionPoint(f.add_entry_block()):
                args = list(f.arguments)
                gop = ops.gemm(*args[:5], layout="NT", epilogue="none", tile={},
                               scales=tuple(args[5:]) if scale_shapes else None, scale=scale)
                func_d.return_([])
        return module, gop

    with make_context(), ir.Location.unknown():
        _, good = op_with([(8,), (16,)])
        spec = gemm_spec(good)
        assert (spec.scale, spec.dtype, spec.operands()) == ("rowwise", "int8",
                                                             ("scale_a", "scale_b"))
        _, tensor = op_with([(1,), (1,)], "tensor")
        assert gemm_spec(tensor).scale == "tensor"
        _, short = op_with([(8,), (8,)])
        with pytest.raises(ValueError, match=r"^operand scale_b: expected \[16\] elements"):
            gemm_spec(short)
        _, one = op_with([(8,)])
        with pytest.raises(ValueError, match=r"^operands: scale 'rowwise' takes 2 scale"):
            gemm_spec(one)
        _, f16 = op_with([(8,), (16,)], elem=ir.F16Type.get())
        with pytest.raises(ValueError, match=r"^operand scale_a: scales are f32"):
            gemm_spec(f16)


def test_tuner_space_searches_int8_mma_sync_tiles():
    """The flat tuning space of an int8 shape on sm_80 (strategy mma_sync) yields m16n8k32
    configs that validate, pruning what the target cannot hold (sm_80's shared memory)."""
    from deepgen.tuner.space import Space

    spec = GemmSpec(M=4096, N=4096, K=4096, dtype="int8", out_dtype="bf16", layout="NT",
                    scale="rowwise")
    sp = Space(spec, {"strategy": ["mma_sync"], "BM": [64, 128, 256], "BN": [64, 128, 256],
                      "BK": [32, 64, 128], "shared_stages": [2, 3, 4]}, "sm_80")
    points = list(sp)
    assert len(points) >= 40
    assert {p.mma for p in points} == {"m16n8k32"} and {p.BK for p in points} == {32, 64, 128}
    for p in points[:5]:
        strategies.validate(p, spec, SM80)
    assert any("shared memory" in line and "sm_80" in line for line in sp.report.lines())


def test_gemm_int8_on_an_sm_86_device_compiles_mma_sync_and_passes_the_scales(
        cpu, monkeypatch, tmp_path):
    """deepgen.gemm's int8 form on an Ampere / Ada device (the target faked as sm_86, CPU
    tensors passed for CUDA ones, the launch recorded, not run): the kernel is compiled for
    sm_86 through mma_sync m16n8k32, and the launch takes A, B, C, then scale_a and scale_b's
    pointers (per token (M, 1) and per channel (1, N) as given)."""
    from runtime_fakes import pretend_cpu_is_cuda

    monkeypatch.setenv("DEEPGEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(scaled, "_target_of", lambda device: "sm_86")
    monkeypatch.setattr(scaled, "_by_call", {})
    monkeypatch.setattr(scaled, "_by_spec", {})
    plan = pretend_cpu_is_cuda(monkeypatch)
    M, N, K = 64, 96, 128
    a, w = _i8(M, K), _i8(N, K)
    sa, sb = torch.rand(M, 1) + 0.5, torch.rand(1, N) + 0.5
    out = deepgen.gemm(a, w.t(), scale_a=sa, scale_b=sb, out_dtype=torch.float16)
    assert out.shape == (M, N) and out.dtype == torch.float16
    (kernel,) = scaled._by_spec.values()
    assert kernel.artifact.target == "sm_86"
    assert (kernel.config["strategy"], kernel.config["mma"]) == ("mma_sync", "m16n8k32")
    assert "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32" in kernel.artifact.assembly
    (call,) = plan.calls
    pointers = call[2]
    assert pointers[:3] == (a.data_ptr(), w.data_ptr(), out.data_ptr())
    assert pointers[-2:] == (sa.data_ptr(), sb.data_ptr())
