"""Block-scaled fp8 GEMMs on the CPU (DeepSeek-V3 / DeepGEMM's 1 x 128 scales of A and
128 x 128 of B; GemmSpec.scale "block"; the GPU side: tests/gpu/test_fp8_block_gpu.py): the
spec's scale operands, validation naming the field and the limit, the default, the kernel's
PTX (per K tile: the wgmma into a temporary accumulator, wait_group 0, one FMA per register
into the main f32 accumulator, the scales loaded before the wait) and SASS (QGMMA, no local
memory), deepgen.gemm's block form and the torch op's fake."""
from __future__ import annotations

import re

import pytest
import torch

import deepgen
from deepgen import build, scaled
from deepgen.compiler import compile_artifact, strategies
from deepgen.compiler.strategies.wgmma import WgmmaConfig
from deepgen.compiler.target import get_target
from deepgen.epilogue import EpilogueSpec
from deepgen.spec import GemmSpec, SpecError

H100 = get_target("sm_90a")
BLOCK = GemmSpec(M=4096, N=2112, K=7168, dtype="e4m3", out_dtype="bf16", layout="NT",
                 scale="block")


def test_block_spec_operands_and_key():
    assert BLOCK.operands() == ("scale_a", "scale_b")
    assert BLOCK.operand_shape("scale_a") == (56, 4096)  # (ceil(K/128), M): M-major
    assert BLOCK.operand_shape("scale_b") == (17, 56)  # (ceil(N/128), ceil(K/128))
    assert BLOCK.operand_dtype("scale_a") == "f32"
    odd = GemmSpec(**{**BLOCK.to_dict(), "K": 4000, "N": 1000})
    assert odd.operand_shape("scale_a") == (32, 4096) and odd.operand_shape("scale_b") == (8, 32)
    rowwise = GemmSpec(**{**BLOCK.to_dict(), "scale": "rowwise"})
    keys = [build.key_parts(s, {"strategy": "wgmma"}, "sm_90a")["spec"] for s in (BLOCK,
                                                                                 rowwise)]
    assert keys[0] != keys[1]


@pytest.mark.parametrize("spec_fields,config,message", [
    (dict(dtype="int8"), None, r"^scale: block scales are built for fp8 \(e4m3, e5m2\) inputs"),
    (dict(layout="NN"), None, r"^layout: fp8 \(e4m3\) wgmma reads only K-major operands"),
    (dict(), {"mode": "pingpong", "BM": 128, "BN": 128, "consumers": 2, "persistent": True},
     r"^mode: block scales: mode 'cooperative'"),
    (dict(), {"BN": 256}, r"^BN: block scales: BN must divide 128 .* got 256"),
    (dict(), {"BN": 96}, r"^BN: block scales: BN must divide 128 .* got 96"),
    (dict(), {"BM": 128, "consumers": 1},
     r"^BM: block scales keep a main and a temporary accumulator: slabs x BN <= 128 .* got "
     r"2 x 128"),
    (dict(), {"split_k": 2, "persistent": False}, r"^split_k: block scales with split_k"),
    (dict(M=16), {"swap_ab": True, "BN": 16, "BM": 128, "consumers": 1, "split_k": 1},
     r"^swap_ab: block scales with swap_ab: not built"),
    (dict(), {"cluster_m": 2, "persistent": False}, r"^cluster_m: block scales with clusters"),
])
def test_block_validation_names_the_field_and_the_limit(spec_fields, config, message):
    spec = GemmSpec(**{**BLOCK.to_dict(), **spec_fields})
    with pytest.raises(SpecError, match=message):
        strategies.resolve(None if config is None else {"strategy": "wgmma", **config}, spec,
                           H100)


def test_block_default():
    assert strategies.resolve(None, BLOCK, H100) == WgmmaConfig(
        BM=128, BN=128, BK=128, consumers=2, stages=6, persistent=True)
    small = GemmSpec(**{**BLOCK.to_dict(), "M": 64})
    assert strategies.resolve(None, small, H100) == WgmmaConfig(
        BM=64, BN=128, BK=128, consumers=1, stages=8, persistent=True)
    # a given BN completes the block default, not the ping-pong one
    cfg = strategies.resolve({"strategy": "wgmma", "BN": 64}, BLOCK, H100)
    assert (cfg.mode, cfg.BN, cfg.consumers) == ("cooperative", 64, 2)


@pytest.fixture(scope="module")
def artifacts():
    def c(spec, config=None):
        return compile_artifact(spec, config, "sm_90a", keep_ir=False)

    return {
        "default": c(BLOCK),
        "m64": c(GemmSpec(**{**BLOCK.to_dict(), "M": 64})),
        "bn64_bias_relu_f32": c(GemmSpec(M=1000, N=1000, K=4000, dtype="e4m3",
                                         out_dtype="f32", layout="NT", scale="block",
                                         epilogue=EpilogueSpec.of(bias="col",
                                                                  activation="relu")),
                                {"strategy": "wgmma", "BN": 64, "persistent": False}),
        "e5m2": c(GemmSpec(M=256, N=256, K=512, dtype="e5m2", out_dtype="f16", layout="NT",
                           scale="block")),
    }


@pytest.mark.parametrize("name,n,dtype", [("default", 128, "e4m3"), ("m64", 128, "e4m3"),
                                          ("bn64_bias_relu_f32", 64, "e4m3"),
                                          ("e5m2", 128, "e5m2")])
def test_ptx_promotes_every_k_tile(artifacts, name, n, dtype):
    """One loop over the K tiles holding the 4 k32 wgmma of the tile (no peeled first tile:
    each tile starts a fresh temporary accumulator with scale-d 0), a wait_group 0 after them
    and no wait_group 1, FMA promotion of every register (fma.rn.f32, N/2 per slab), the
    scales read in the loop before the wgmma; the scale operands' shapes; no spills."""
    art = artifacts[name]
    main = art.launches[0]
    ptx = art.assembly
    mma = [m.start() for m in re.finditer(
        rf"wgmma\.mma_async\.sync\.aligned\.m64n{n}k32\.f32\.{dtype}\.{dtype} ", ptx)]
    assert len(mma) == 4  # slabs 1
    waits = re.findall(r"wgmma\.wait_group\.sync\.aligned\s+(\d+);", ptx)
    assert waits == ["0"], waits
    wait = ptx.index("wgmma.wait_group")
    assert wait > mma[-1]
    fmas = [m.start() for m in re.finditer(r"fma\.rn\.f32\s", ptx)]
    promotions = [p for p in fmas if p > wait and p < wait + 40_000]
    assert len(promotions) >= n // 2, len(promotions)
    loads = [m.start() for m in re.finditer(r"ld\.global(\.nc)?\.[bf]32\s", ptx)]
    assert any(p < mma[0] for p in loads)  # the scales of the tile, before its wgmma
    names = [(p.name, p.shape) for p in main.params]
    spec = art.spec if isinstance(art.spec, dict) else art.spec.to_dict()
    kb = -(-spec["K"] // 128)
    assert names[-2:] == [("scale_a", (kb, "M")), ("scale_b", (-(-spec["N"] // 128), kb))]
    res = art.resources[main.entry]
    assert res["spill_stores"] == res["spill_loads"] == res["stack_bytes"] == 0, res


def test_sass_has_qgmma_and_no_local_memory(artifacts):
    from test_wgmma import _check_sass

    _check_sass({k: v for k, v in artifacts.items() if k != "e5m2"},
                r"QGMMA\.64x(64|128)x32\.F32\.E4M3\.E4M3\b")
    _check_sass({"e5m2": artifacts["e5m2"]}, r"QGMMA\.64x128x32\.F32\.E5M2\.E5M2\b")


# -- deepgen.gemm's block form ----------------------------------------------------------------

@pytest.fixture
def cpu(monkeypatch):
    monkeypatch.setattr(scaled, "_check_devices", lambda tensors: None)


E4 = torch.float8_e4m3fn


def test_block_spec_and_extras_follow_deepgemms_layout(cpu):
    M, N, K = 300, 200, 1000  # K blocks 8, N blocks 2
    a, w = torch.randn(M, K).to(E4), torch.randn(N, K).to(E4)
    sa_t = torch.rand(8, M)  # stored (K/128, M): the M-major (M, K/128) view
    sb = torch.rand(2, 8)
    spec = scaled.spec_for(a, w.t(), scale_a=sa_t.t(), scale_b=sb, out_dtype=torch.bfloat16)
    assert (spec.scale, spec.layout, spec.operand_shape("scale_a")) == ("block", "NT", (8, M))
    extra = scaled._extras(spec, None, sa_t.t(), sb)
    assert extra["scale_a"].data_ptr() == sa_t.data_ptr()  # no copy for M-major scales
    assert extra["scale_b"] is sb
    row_major = sa_t.t().contiguous()  # (M, K/128) row-major: copied into the kernel's layout
    extra = scaled._extras(spec, None, row_major, sb)
    assert extra["scale_a"].is_contiguous() and torch.equal(extra["scale_a"], sa_t)


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(a=torch.randint(-9, 9, (300, 1000), dtype=torch.int8),
          b=torch.randint(-9, 9, (200, 1000), dtype=torch.int8).t(),
          scale_a=torch.rand(300, 8), scale_b=torch.rand(2, 8), out_dtype=torch.bfloat16),
     TypeError, r"^scale_a, scale_b: block scales are built for fp8 inputs"),
    (dict(a=torch.randn(300, 1000).to(E4), b=torch.randn(200, 1000).to(E4).t(),
          scale_a=torch.rand(300, 7), scale_b=torch.rand(2, 8), out_dtype=torch.bfloat16),
     ValueError, r"scale_a \(M, ceil\(K/128\)\) = \(300, 8\) and scale_b \(ceil\(N/128\), "
                 r"ceil\(K/128\)\) = \(2, 8\)"),
])
def test_block_arguments_are_checked(cpu, kwargs, error, message):
    a, b = kwargs.pop("a"), kwargs.pop("b")
    with pytest.raises(error, match=message):
        deepgen.gemm(a, b, **kwargs)


def test_torch_op_fake_takes_block_scales():
    a = torch.empty(300, 1000, dtype=E4, device="meta")
    b = torch.empty(200, 1000, dtype=E4, device="meta").t()
    out = torch.ops.deepgen.gemm(a, b, 1.0, None, "none", "col",
                                 torch.empty(300, 8, device="meta"),
                                 torch.empty(2, 8, device="meta"), torch.bfloat16)
    assert (tuple(out.shape), out.dtype) == ((300, 200), torch.bfloat16)
