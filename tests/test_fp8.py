"""fp8 (e4m3, e5m2) GEMMs on the CPU (their GPU counterpart: tests/gpu/test_fp8_gpu.py):
the spec's dtypes and scales (and their place in the cache key), validation that names the
field and the reason before any MLIR runs (layout NT only, sm_90a, the other strategies
reject fp8), the default heuristic (wgmma, the 16-bit rules at the same bytes per stage), the
kernels' PTX (wgmma m64nNk32 e4m3/e5m2 over 128-byte TMA boxes of 128 fp8, the scales as
pointer operands loaded once) and SASS (QGMMA.64xNx32.F32.E4M3.E4M3, no local memory), and
deepgen.gemm's scaled form (torch._scaled_mm's conventions) and the torch ops' fakes."""
from __future__ import annotations

import re

import pytest
import torch

import deepgen
from deepgen import build, scaled
from deepgen.compiler import compile_artifact, strategies
from deepgen.compiler.strategies.wgmma import WgmmaConfig
from deepgen.compiler.target import get_target
from deepgen.dtypes import DTYPES, INPUT_DTYPES, OUTPUT_DTYPES
from deepgen.epilogue import EpilogueSpec
from deepgen.spec import GemmSpec, SpecError

H100 = get_target("sm_90a")
FP8 = GemmSpec(M=512, N=512, K=512, dtype="e4m3", out_dtype="bf16", layout="NT",
               scale="tensor")


def _resolve(spec=FP8, target=H100, **fields):
    return strategies.resolve({"strategy": "wgmma", **fields} if fields else None, spec, target)


def test_registry_fp8_inputs_not_outputs():
    assert {"e4m3", "e5m2"} <= set(INPUT_DTYPES)
    assert set(OUTPUT_DTYPES) == {"f32", "f16", "bf16"}
    assert DTYPES["e4m3"].compiled and not DTYPES["e4m3"].output
    assert DTYPES["int8"].compiled and not DTYPES["int8"].output  # tests/test_int8.py


@pytest.mark.parametrize("fields,message", [
    (dict(out_dtype="e4m3"), r"^out_dtype: must be one of \('f32', 'f16', 'bf16'\)"),
    (dict(dtype="bf16", out_dtype="bf16"), r"^scale: scales apply to quantized inputs"),
    (dict(scale="blocks"), r"^scale: must be one of \('none', 'tensor', 'rowwise', 'block'\)"),
    (dict(epilogue={"steps": ["alpha_beta", "bias_col"], "bias_dtype": "e4m3"}),
     r"^epilogue.bias_dtype: must be one of \('f32', 'f16', 'bf16'\)"),
])
def test_spec_rejects(fields, message):
    base = dict(M=64, N=64, K=64, dtype="e4m3", out_dtype="bf16", layout="NT", scale="tensor")
    with pytest.raises(SpecError, match=message):
        GemmSpec(**{**base, **fields})


def test_scale_is_in_the_spec_dict_and_the_cache_key_only_when_set():
    plain = GemmSpec(M=64, N=64, K=64, dtype="bf16", layout="NT")
    assert "scale" not in plain.to_dict()  # keys of specs before scales are unchanged
    unscaled = GemmSpec(M=64, N=64, K=64, dtype="e4m3", out_dtype="bf16", layout="NT")
    scaled_spec = GemmSpec(M=64, N=64, K=64, dtype="e4m3", out_dtype="bf16", layout="NT",
                           scale="tensor")
    assert scaled_spec.to_dict()["scale"] == "tensor"
    assert GemmSpec.from_dict(scaled_spec.to_dict()) == scaled_spec
    keys = [build.key_parts(s, {"strategy": "wgmma"}, "sm_90a")["spec"]
            for s in (unscaled, scaled_spec)]
    assert keys[0] != keys[1]
    assert scaled_spec.operands() == ("scale_a", "scale_b")
    assert scaled_spec.operand_shape("scale_a") == (1,)
    assert scaled_spec.operand_dtype("scale_b") == "f32"
    # the bias of fp8 inputs defaults to the output type (as torch._scaled_mm's)
    biased = GemmSpec(M=64, N=64, K=64, dtype="e4m3", out_dtype="f16", layout="NT",
                      epilogue=EpilogueSpec.of(bias="col"))
    assert biased.operand_dtype("bias") == "f16"


@pytest.mark.parametrize("spec_fields,target,config,message", [
    (dict(layout="NN"), "sm_90a", None,
     r"^layout: fp8 \(e4m3\) wgmma reads only K-major operands: layout NT .* got layout NN"),
    (dict(layout="TT", dtype="e5m2"), "sm_90a", None, r"^layout: fp8 \(e5m2\) wgmma"),
    (dict(), "sm_80", None,
     r"^strategy: wgmma needs sm_90a .* \(fp8 e4m3 inputs are built by wgmma alone\)"),
    (dict(K=1000), "sm_90a", None, r"^layout: TMA needs 16-byte-aligned row strides"),
    (dict(), "sm_90a", {"strategy": "simt"}, r"^dtype: the simt strategy does not multiply fp8"),
    (dict(), "sm_90a", {"strategy": "mma_sync"},
     r"^dtype: the mma_sync strategy does not multiply fp8"),
    (dict(M=4), "sm_90a", {"strategy": "gemv"}, r"^dtype: the gemv strategy does not multiply"),
    (dict(), "sm_90a", {"strategy": "wgmma", "BK": 64},
     r"^BK: one 128-byte swizzle span: 128 e4m3 elements"),
    (dict(), "sm_90a", {"strategy": "wgmma", "split_k": 2},
     r"^split_k: split_k 2 with scales: the workspace reduce applies none"),
    (dict(scale="rowwise"), "sm_90a", {"strategy": "wgmma", "split_k": 3},
     r"^split_k: split_k 3 with scales"),
    (dict(epilogue=EpilogueSpec.of(alpha_beta=False, activation="relu")), "sm_90a", None,
     r"^epilogue: scales apply to the accumulator before the chain"),
])
def test_validation_names_the_field_and_the_reason(spec_fields, target, config, message):
    """Every error comes from validation, before any MLIR is built."""
    spec = GemmSpec(**{**FP8.to_dict(), **spec_fields})
    with pytest.raises(SpecError, match=message):
        strategies.resolve(config, spec, target)


def test_the_default_is_wgmma_with_the_16bit_rules_at_the_same_bytes_per_stage():
    for m in (1, 16, 512, 4096):
        spec = GemmSpec(M=m, N=4096, K=4096, dtype="e4m3", out_dtype="bf16", layout="NT",
                        scale="tensor")
        assert strategies.choose(spec, H100).name == "wgmma", m
    big = GemmSpec(M=4096, N=4096, K=4096, dtype="e4m3", out_dtype="bf16", layout="NT")
    assert _resolve(big) == WgmmaConfig(BM=128, BN=128, BK=128, stages=7, consumers=2,
                                        mode="pingpong", persistent=True)
    assert _resolve(GemmSpec(M=8192, N=8192, K=8192, dtype="e4m3", out_dtype="bf16",
                             layout="NT")).mode == "pingpong"
    long_k = GemmSpec(M=2048, N=4096, K=14336, dtype="e4m3", out_dtype="bf16", layout="NT")
    cfg = _resolve(long_k)
    assert (cfg.BM, cfg.BN, cfg.BK, cfg.consumers, cfg.stages, cfg.persistent) == (
        128, 256, 128, 2, 4, True)
    # a 128 x 256 stage of fp8 is 48 KiB, as bf16's: 4 stages fit
    assert strategies.estimates(cfg, long_k)["shared_bytes"] == 4 * (128 + 256) * 128 + 64
    # explicit cooperative fields over a ping-pong default: the cooperative fp8 tile
    cfg = _resolve(big, BN=256, consumers=2)
    assert (cfg.mode, cfg.BK, cfg.persistent) == ("cooperative", 128, False)
    decode = GemmSpec(M=16, N=4096, K=4096, dtype="e4m3", out_dtype="bf16", layout="NT",
                      scale="tensor")
    cfg = _resolve(decode)
    assert (cfg.swap_ab, cfg.BN, cfg.BK, cfg.split_k) == (True, 16, 128, 1)
    unscaled = GemmSpec(M=16, N=4096, K=4096, dtype="e4m3", out_dtype="bf16", layout="NT")
    assert _resolve(unscaled).split_k > 1  # split-K where no scale needs the reduce


@pytest.fixture(scope="module")
def artifacts():
    e5 = GemmSpec(M=256, N=192, K=384, dtype="e5m2", out_dtype="f32", layout="NT")
    return {
        "e4m3_tensor": compile_artifact(FP8, None, "sm_90a", keep_ir=False),
        "e4m3_c2_bias_gelu": compile_artifact(
            GemmSpec(M=1000, N=1234, K=4000, dtype="e4m3", out_dtype="bf16", layout="NT",
                     scale="tensor", epilogue=EpilogueSpec.of(bias="col",
                                                              activation="gelu_tanh")),
            {"strategy": "wgmma", "BM": 128, "BN": 256, "consumers": 2}, "sm_90a",
            keep_ir=False),
        "e5m2_plain": compile_artifact(e5, {"strategy": "wgmma"}, "sm_90a", keep_ir=False),
        "e4m3_pingpong": compile_artifact(
            GemmSpec(M=4096, N=4096, K=4096, dtype="e4m3", out_dtype="bf16", layout="NT",
                     scale="tensor"), None, "sm_90a", keep_ir=False),
        "e4m3_rowwise": compile_artifact(
            GemmSpec(M=1000, N=1234, K=512, dtype="e4m3", out_dtype="bf16", layout="NT",
                     scale="rowwise", epilogue=EpilogueSpec.of(bias="col", activation="relu")),
            None, "sm_90a", keep_ir=False),
        "e4m3_rowwise_swap": compile_artifact(
            GemmSpec(M=16, N=4096, K=4096, dtype="e4m3", out_dtype="bf16", layout="NT",
                     scale="rowwise"), None, "sm_90a", keep_ir=False),
    }


@pytest.mark.parametrize("name,dtype,n,slabs,scaled_", [
    ("e4m3_tensor", "e4m3", 128, 2, True), ("e4m3_c2_bias_gelu", "e4m3", 256, 1, True),
    ("e5m2_plain", "e5m2", 128, 2, False), ("e4m3_pingpong", "e4m3", 128, 2, True),
    ("e4m3_rowwise", "e4m3", 128, 1, True), ("e4m3_rowwise_swap", "e4m3", 16, 2, True)])
def test_ptx_has_k32_fp8_wgmma_over_128_byte_boxes(artifacts, name, dtype, n, slabs, scaled_):
    """m64nNk32.f32.<fp8>.<fp8> without transpose immediates (K-major only), BK/32 = 4 per K
    tile and slab; TMA boxes of 128 fp8 = the 128-byte swizzle span; the scales as the last
    two (pointer) params, each value loaded once; no spills."""
    art = artifacts[name]
    main = art.launches[0]
    ptx = art.assembly
    mma = re.findall(rf"wgmma\.mma_async\.sync\.aligned\.m64n{n}k32\.f32\.{dtype}\.{dtype} "
                     r"\{[^}]*\}, %rd\d+, %rd\d+, (?:p|\d), 1,\s*1;", ptx)
    assert len(mma) == 2 * 4 * slabs  # the peeled first K tile and the loop, 4 k32 steps each
    assert not re.search(r"wgmma\.mma_async\S*(f16|bf16|tf32)\.", ptx)
    a, b = main.params[:2]
    assert (a.dtype, a.box[1:], a.swizzle) == (dtype, (art.config["BM"], 128), 128)
    assert (b.dtype, b.box[1:]) == (dtype, (n, 128))
    names = [p.name for p in main.params]
    if scaled_:
        assert names[-2:] == ["scale_a", "scale_b"]
        rowwise = "rowwise" in name
        for p, rule in zip(main.params[-2:], ("M", "N")):
            assert (p.kind, p.dtype, p.shape) == ("ptr", "f32", (rule,) if rowwise else (1,))
        loads = [m.start() for m in re.finditer(r"ld\.global(\.nc)?\.(v2\.)?[bf]32 ", ptx)]
        if rowwise:  # in the epilogue, after the last wgmma: each of a thread's rows (2 per
            # slab) and column pairs (scalar columns with swap_ab) once (StoreOperands), not once
            # per value
            assert loads and loads[0] > ptx.rindex("wgmma.mma_async")
            assert len(loads) == 2 * slabs + (n // 4 if art.config["swap_ab"] else n // 8)
        else:  # two f32 loads at the kernel's entry, before any wgmma
            assert len(loads) >= 2 and loads[1] < ptx.index("wgmma.mma_async")
    else:
        assert "scale_a" not in names
    res = art.resources[main.entry]
    assert res["spill_stores"] == res["spill_loads"] == res["stack_bytes"] == 0, res


def test_sass_has_fp8_qgmma_and_no_local_memory(artifacts):
    """ptxas writes fp8 wgmma as QGMMA (the HGMMA of 8-bit floats)."""
    from test_wgmma import _check_sass

    _check_sass({k: v for k, v in artifacts.items() if "e4m3" in k},
                r"QGMMA\.64x(16|128|256)x32\.F32\.E4M3\.E4M3\b")
    _check_sass({"e5m2_plain": artifacts["e5m2_plain"]}, r"QGMMA\.64x128x32\.F32\.E5M2\.E5M2\b")


# -- deepgen.gemm's scaled form ---------------------------------------------------------------

@pytest.fixture
def cpu(monkeypatch):
    """CPU tensors accepted as CUDA tensors (argument checks only: nothing is launched)."""
    monkeypatch.setattr(scaled, "_check_devices", lambda tensors: None)


E4 = torch.float8_e4m3fn


def _fp8(*shape):
    return torch.randn(*shape).to(E4)


def _sc():
    return torch.tensor(0.5)


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(a=_fp8(64, 32), b=_fp8(32, 48), scale_a=_sc(), scale_b=_sc(),
          out_dtype=torch.bfloat16), ValueError, r"^b: fp8 b must be column-major \(K, N\)"),
    (dict(a=_fp8(32, 64).t(), b=_fp8(48, 32).t(), scale_a=_sc(), scale_b=_sc(),
          out_dtype=torch.bfloat16), ValueError, r"^a: fp8 a must be row-major"),
    (dict(a=_fp8(64, 32), b=_fp8(48, 32).t(), scale_a=_sc(), scale_b=_sc()), TypeError,
     r"^out_dtype: torch.float8_e4m3fn inputs need an output dtype"),
    (dict(a=_fp8(64, 32), b=_fp8(48, 32).t(), scale_a=_sc(), scale_b=_sc(), out_dtype=E4),
     TypeError, r"^out_dtype: must be one of"),
    (dict(a=_fp8(64, 32), b=_fp8(48, 32).t(), scale_a=_sc(), out_dtype=torch.bfloat16),
     TypeError, r"^scale_b: missing; give both"),
    (dict(a=_fp8(64, 32), b=_fp8(48, 32).t(), scale_a=_sc().double(), scale_b=_sc(),
          out_dtype=torch.bfloat16), TypeError, r"^scale_a: must be float32"),
    (dict(a=_fp8(64, 32), b=_fp8(48, 32).t(), scale_a=torch.ones(64, 1),
          scale_b=torch.ones(48, 1), out_dtype=torch.bfloat16), ValueError,
     r"^scale_a, scale_b: one element each .* scale_b \(1, N\) = \(1, 48\)"),
    (dict(a=_fp8(64, 32), b=_fp8(48, 32).t(), scale_a=torch.ones(2), scale_b=_sc(),
          out_dtype=torch.bfloat16), ValueError, r"^scale_a, scale_b: one element each"),
    (dict(a=torch.randn(64, 32), b=torch.randn(32, 48), scale_a=_sc(), scale_b=_sc()),
     TypeError, r"^scale_a, scale_b: scales apply to fp8 inputs"),
    (dict(a=_fp8(64, 32), b=_fp8(48, 32).t(), scale_a=_sc(), scale_b=_sc(),
          out_dtype=torch.bfloat16, bias=torch.randn(48).to(E4)), TypeError,
     r"^bias: dtype torch.float8_e4m3fn is not supported"),
])
def test_scaled_arguments_are_checked_before_compiling(cpu, kwargs, error, message):
    a, b = kwargs.pop("a"), kwargs.pop("b")
    with pytest.raises(error, match=message):
        deepgen.gemm(a, b, **kwargs)


def test_scaled_spec_follows_torch_scaled_mm(cpu):
    a, w = _fp8(64, 32), _fp8(48, 32)
    spec = scaled.spec_for(a, w.t(), scale_a=_sc(), scale_b=torch.tensor([2.0]),
                           out_dtype=torch.bfloat16, bias=torch.randn(48).bfloat16())
    assert (spec.M, spec.N, spec.K, spec.dtype, spec.out_dtype, spec.layout, spec.scale) == (
        64, 48, 32, "e4m3", "bf16", "NT", "tensor")
    assert spec.epilogue == EpilogueSpec.of(bias="col")  # bias in the output type: default
    assert scaled.spec_for(a.view(torch.float8_e5m2), w.t().view(torch.float8_e5m2),
                           out_dtype=torch.float32).scale == "none"
    rowwise = scaled.spec_for(a, w.t(), scale_a=torch.ones(64, 1), scale_b=torch.ones(1, 48),
                              out_dtype=torch.float16)
    assert (rowwise.scale, rowwise.operand_shape("scale_a"), rowwise.operand_shape("scale_b")) \
        == ("rowwise", (64,), (48,))
    extra = scaled._extras(rowwise, None, torch.ones(64, 1), torch.ones(1, 48))
    assert [tuple(t.shape) for t in extra.values()] == [(64,), (48,)]


def test_torch_op_fakes_give_the_output_dtype():
    a = torch.empty(64, 32, dtype=E4, device="meta")
    b = torch.empty(48, 32, dtype=E4, device="meta").t()
    s = torch.empty((), device="meta")
    out = torch.ops.deepgen.gemm(a, b, 1.0, None, "none", "col", s, s, torch.bfloat16)
    assert (tuple(out.shape), out.dtype) == ((64, 48), torch.bfloat16)
    with pytest.raises(TypeError, match="need an output dtype"):
        torch.ops.deepgen.gemm(a, b, 1.0, None, "none", "col", s, s)
    rows = torch.ops.deepgen.gemm(a, b, 1.0, None, "none", "col",
                                  torch.empty(64, 1, device="meta"),
                                  torch.empty(1, 48, device="meta"), torch.float16)
    assert (tuple(rows.shape), rows.dtype) == ((64, 48), torch.float16)
    with pytest.raises(ValueError, match=r"one element \(per tensor\), 64 \(rowwise\)"):
        torch.ops.deepgen.gemm(a, b, 1.0, None, "none", "col", torch.empty(3, device="meta"),
                               s, torch.bfloat16)


@pytest.mark.parametrize("M,given", [
    (16, {"swap_ab": True, "split_k": 2, "reduce": "cluster"}),
    (256, {"split_k": 2, "reduce": "cluster"})])
def test_rowwise_scales_through_the_cluster_reduce_compile(M, given):
    """The cluster reduce stores register groups at offsets that are index values: their
    rowwise scales are loaded per value (StoreOperands keeps static offsets only)."""
    spec = GemmSpec(M=M, N=4096, K=4096, dtype="e4m3", out_dtype="bf16", layout="NT",
                    scale="rowwise")
    art = compile_artifact(spec, {"strategy": "wgmma", **given}, "sm_90a", keep_ir=False)
    assert art.config["split_k"] == 2 and art.config["reduce"] == "cluster"
    assert re.search(r"ld\.global\.b32 ", art.assembly)  # scale_a
    res = art.resources[art.launches[0].entry]
    assert res["spill_stores"] == res["stack_bytes"] == 0, res
