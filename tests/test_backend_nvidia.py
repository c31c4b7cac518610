"""The NVIDIA backend (compiler/backend_nvidia.py) and the driver's stage runner: PTX -> cubin
through ptxas or nvJitLink (same resources on a small kernel, the fallback to ptxas), the
toolchain versions naming the assembler, no IR text printed unless it is kept, and a failing
stage still named with its input when the stages ran together."""
from __future__ import annotations

import pytest

from deepgen import toolchain as tc
from deepgen.compiler import CompileError, compile_artifact
from deepgen.compiler import backend_nvidia as bn
from deepgen.compiler import driver
from deepgen.compiler.target import get_target
from deepgen.spec import GemmSpec

SM90A = get_target("sm_90a")
needs_nvjitlink = pytest.mark.skipif(bn.nvjitlink_module() is None,
                                     reason="nvJitLink (nvidia-nvjitlink + cuda-bindings) missing")

# `ptxas -v` on two entries, one with spills (the nvJitLink info log prints the same lines).
PTXAS_LOG = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'deepgen_gemm' for 'sm_90a'
ptxas info    : Function properties for deepgen_gemm
    16 bytes stack frame, 12 bytes spill stores, 8 bytes spill loads
ptxas info    : Used 255 registers, used 1 barriers, 17 bytes smem
ptxas info    : Compiling entry function 'deepgen_splitk_reduce' for 'sm_90a'
ptxas info    : Function properties for deepgen_splitk_reduce
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 28 registers, used 0 barriers
"""


@pytest.fixture
def env(monkeypatch):
    monkeypatch.delenv("DEEPGEN_ASSEMBLER", raising=False)
    return monkeypatch


def test_parse_ptxas_resources():
    res = bn.parse_ptxas_resources(PTXAS_LOG)
    assert res == {
        "deepgen_gemm": {"registers": 255, "spill_stores": 12, "spill_loads": 8,
                         "stack_bytes": 16, "static_shared": 17},
        "deepgen_splitk_reduce": {"registers": 28, "spill_stores": 0, "spill_loads": 0,
                                  "stack_bytes": 0, "static_shared": 0}}


@needs_nvjitlink
def test_nvjitlink_and_ptxas_agree_on_a_small_kernel():
    cubin_p, res_p = bn.ptxas(tc._SMOKE_PTX, SM90A)
    cubin_j, res_j = bn.nvjitlink(tc._SMOKE_PTX, SM90A)
    assert cubin_p[:4] == cubin_j[:4] == b"\x7fELF"
    assert res_j == res_p and res_p["deepgen_doctor"]["registers"] > 0


@needs_nvjitlink
def test_nvjitlink_reports_ptx_errors():
    with pytest.raises(CompileError) as e:
        bn.nvjitlink(tc._SMOKE_PTX.replace("ret;", "no_such_instruction;"), SM90A)
    assert e.value.stage == "nvjitlink" and "no_such_instruction" in str(e.value)


def test_ptxas_is_the_default_assembler_and_the_versions_name_it(env):
    assert tc.cubin_assembler()[0] == "ptxas" and bn.assembler() == "ptxas"
    assert tc.toolchain_versions()["assembler"] == "ptxas"
    env.setenv("DEEPGEN_ASSEMBLER", "bogus")
    assert tc.cubin_assembler() == ("ptxas", "DEEPGEN_ASSEMBLER=bogus is not one of "
                                             "ptxas, nvjitlink, auto")


@needs_nvjitlink
@pytest.mark.parametrize("wanted", ["nvjitlink", "auto"])
def test_asking_for_nvjitlink_uses_it(env, wanted):
    env.setenv("DEEPGEN_ASSEMBLER", wanted)
    assert bn.assembler() == "nvjitlink"
    version = tc.locate_nvjitlink().version
    assert tc.toolchain_versions()["assembler"] == f"nvjitlink {version}"
    art = compile_artifact(GemmSpec(M=64, N=64, K=64), None, keep_ir=False)
    assert art.toolchain["assembler"] == f"nvjitlink {version}"
    assert art.binary[:4] == b"\x7fELF" and art.resources["deepgen_gemm"]["registers"] > 0


def test_falls_back_to_ptxas_when_nvjitlink_does_not_load(env):
    env.setenv("DEEPGEN_ASSEMBLER", "nvjitlink")
    env.setattr(bn, "nvjitlink_module", lambda: None)  # installed, but the library fails
    assert bn.assembler() == "ptxas"
    called = []
    env.setattr(bn, "ptxas", lambda ptx, target, opt_level=3: called.append(target.name) or (b"", {}))
    bn.assemble(tc._SMOKE_PTX, SM90A)
    assert called == ["sm_90a"]
    with pytest.raises(CompileError, match="nvJitLink not available"):
        bn.nvjitlink(tc._SMOKE_PTX, SM90A)


def test_nvjitlink_missing_means_ptxas_and_says_why(env):
    env.setenv("DEEPGEN_ASSEMBLER", "auto")
    env.setattr(tc, "locate_nvjitlink",
                lambda: tc.ToolInfo("nvjitlink", notes=["no libnvJitLink: pip install x"]))
    name, why = tc.cubin_assembler()
    assert name == "ptxas" and "nvJitLink is missing" in why and "pip install x" in why
    assert bn.assembler() == "ptxas"
    assert tc.toolchain_versions()["assembler"] == "ptxas"


# --- the driver's stage runner ----------------------------------------------------------------

def _count_module_prints(monkeypatch) -> list:
    """Count str(ir.Module) in the driver and the backend (their global `str` is looked up
    before the builtin)."""
    from mlir import ir

    printed = []

    def counting_str(obj=""):
        if isinstance(obj, (ir.Module, ir.Operation, ir.OpView)):
            printed.append(type(obj).__name__)
        return str(obj)

    for mod in (driver, bn):
        monkeypatch.setattr(mod, "str", counting_str, raising=False)
    return printed


def test_no_ir_text_unless_kept(monkeypatch):
    printed = _count_module_prints(monkeypatch)
    spec = GemmSpec(M=128, N=128, K=64)
    art = compile_artifact(spec, None, keep_ir=False)
    assert printed == [] and art.ir_stages == {}
    art = compile_artifact(spec, None, keep_ir=True)
    assert printed and "01-deepgen-gemm-to-affine" in art.ir_stages


def test_failing_deepgen_pass_is_named_with_its_input_without_kept_ir(monkeypatch):
    printed = _count_module_prints(monkeypatch)
    with pytest.raises(CompileError) as e:  # deepgen-pipeline needs deepgen-tile-gemm first
        compile_artifact(GemmSpec(M=64, N=64, K=64), None, keep_ir=False,
                         passes=["deepgen-gemm-to-affine", "deepgen-pipeline"])
    assert e.value.stage == "deepgen-pipeline"
    assert "affine.for" in e.value.ir_before and "deepgen.gemm_nest" in e.value.ir_before
    assert printed  # printed only on the failure's replay


# convert-gpu-to-nvvm with bare pointers fails on a dynamic memref (see DESIGN.md).
DYNAMIC_MODULE = """
module attributes {gpu.container_module} {
  gpu.module @k {
    gpu.func @f(%m: memref<?xf32>) kernel { gpu.return }
  }
}
"""
TO_NVVM = "gpu.module(convert-gpu-to-nvvm{use-bare-ptr-memref-call-conv=1})"


@pytest.mark.parametrize("keep", [False, True])
def test_failing_upstream_stage_is_named_with_its_input(keep):
    from mlir import ir

    with driver.make_context(), ir.Location.unknown():
        module = ir.Module.parse(DYNAMIC_MODULE)
        log = driver.StageLog() if keep else None
        with pytest.raises(CompileError) as e:
            driver.run_pipeline(module, ["canonicalize", TO_NVVM, "cse"], log, start=1)
    assert e.value.stage == TO_NVVM
    assert "memref<?xf32>" in e.value.ir_before and "gpu.func @f" in e.value.ir_before
    assert "failed to legalize operation 'gpu.func'" in str(e.value)
    if keep:
        assert list(log.stages) == ["01-canonicalize"]


def test_run_stage_prints_its_input_only_when_asked():
    from mlir import ir

    with driver.make_context(), ir.Location.unknown():
        for keep in (False, True):
            module = ir.Module.parse(DYNAMIC_MODULE)
            with pytest.raises(CompileError) as e:
                driver.run_stage(module, TO_NVVM, keep_before=keep)
            assert ("gpu.func @f" in e.value.ir_before) == keep


def test_invalid_ir_from_a_pass_is_caught_and_the_pass_named(monkeypatch):
    """The stages run together without a verifier between passes; the IR is verified at the end
    and, when invalid, the stages replay one by one (each verified) to name the culprit."""
    from mlir import ir

    from deepgen.compiler.passes import REGISTRY, PassInfo

    def drop_returns(module):
        for op in list(driver.irb.walk_ops(module, "func.return")):
            op.erase()

    monkeypatch.setitem(REGISTRY, "deepgen-test-drop-returns",
                        PassInfo("deepgen-test-drop-returns", drop_returns, "test only"))
    with driver.make_context(), ir.Location.unknown():
        module = ir.Module.parse("func.func @f() { return }")
        with pytest.raises(CompileError) as e:
            driver.run_pipeline(module, ["canonicalize", "deepgen-test-drop-returns"])
    assert e.value.stage == "deepgen-test-drop-returns"
    assert "func.return" in e.value.ir_before or "return" in e.value.ir_before
    assert "expect at least a terminator" in str(e.value)


# -- compile time: the assembler's optimization level, reused contexts, parsed attributes ------


def test_ptxas_flags_carry_the_optimization_level():
    assert bn.ptxas_flags() == bn.PTXAS_FLAGS and "-O3" in bn.PTXAS_FLAGS
    assert "-O2" in bn.ptxas_flags(2) and "-O3" not in bn.ptxas_flags(2)
    with pytest.raises(CompileError, match="0 to 3"):
        bn.ptxas_flags(4)


def test_each_strategy_assembles_at_its_ptxas_level(monkeypatch):
    from deepgen.compiler.strategies import mma_sync

    levels = []
    real = bn.assemble

    def spy(ptx, target, opt_level=3):
        levels.append(opt_level)
        return real(ptx, target, opt_level=opt_level)

    monkeypatch.setattr(bn, "assemble", spy)
    monkeypatch.setattr(mma_sync, "PTXAS_OPT_LEVEL", 2)
    spec = GemmSpec(M=64, N=64, K=64, dtype="bf16")
    art = compile_artifact(spec, {"strategy": "mma_sync", "BM": 64, "BN": 64, "BK": 32},
                           keep_ir=False)
    compile_artifact(GemmSpec(M=64, N=64, K=64), {"strategy": "simt"}, keep_ir=False)
    assert levels == [2, 3] and "mma.sync" in art.assembly


def test_a_reused_context_gives_the_same_ptx_as_a_fresh_one(monkeypatch):
    monkeypatch.setattr(driver, "_compile_contexts", __import__("threading").local())
    spec = GemmSpec(M=64, N=64, K=64, dtype="bf16")
    first = compile_artifact(spec, None, keep_ir=False)
    ctx = driver.compile_context()
    compile_artifact(GemmSpec(M=96, N=40, K=72), None, keep_ir=False)  # other IR in between
    again = compile_artifact(spec, None, keep_ir=False)
    assert driver.compile_context() is ctx  # reused, not rebuilt
    assert again.assembly == first.assembly


def test_compile_contexts_are_renewed_after_context_reuse_compiles(monkeypatch):
    monkeypatch.setattr(driver, "_compile_contexts", __import__("threading").local())
    monkeypatch.setattr(driver, "CONTEXT_REUSE", 2)
    a, b = driver.compile_context(), driver.compile_context()
    c = driver.compile_context()
    assert a is b and c is not a


def test_spec_and_tile_of_each_kernel_are_its_own():
    """spec_of/tile_of share one parsed object per attribute text; ops with other attributes
    (a split-K GEMM's main kernel and its reduction) still read their own."""
    from mlir import ir

    from deepgen.compiler.config import TileConfig
    from deepgen.compiler.passes.common import SPEC, TILE, spec_attr, spec_of, tile_of
    from deepgen.dialects.ops import dict_attr

    specs = GemmSpec(M=64, N=64, K=64), GemmSpec(M=64, N=64, K=64, dtype="bf16")
    tiles = TileConfig(BM=32, BN=32), TileConfig(BM=64, BN=64)
    with driver.make_context(), ir.Location.unknown():
        ops = [ir.Module.create().operation for _ in specs]
        for op, spec, tile in zip(ops, specs, tiles):
            op.attributes[SPEC] = spec_attr(spec)
            op.attributes[TILE] = dict_attr(tile.to_dict())
        got = [(spec_of(op), tile_of(op)) for op in ops]
        assert got == list(zip(specs, tiles))
        assert tile_of(ops[0]) is got[0][1]  # parsed once
        ops[0].attributes[TILE] = ops[1].attributes[TILE]
        assert tile_of(ops[0]) == tiles[1] and spec_of(ops[0]) == specs[0]


def test_mma_sync_ptxas_level_follows_the_gpu_ab(monkeypatch):
    """-O2 for 4 warps of 64 x 64 (faster on the H200 and half the ptxas time), -O3 for the
    rest; PTXAS_OPT_LEVEL forces one level (the benchmark's A/B)."""
    from deepgen.compiler.strategies import mma_sync
    from deepgen.compiler.strategies.mma_sync import MmaSyncConfig

    s = mma_sync.STRATEGY if hasattr(mma_sync, "STRATEGY") else mma_sync.MmaSync()
    four = MmaSyncConfig(BM=128, BN=128, BK=64, warps_m=2, warps_n=2)
    eight = MmaSyncConfig(BM=256, BN=128, BK=64, warps_m=4, warps_n=2)
    small = MmaSyncConfig(BM=64, BN=64, BK=32, warps_m=2, warps_n=2)
    assert [s.ptxas_opt_level(c) for c in (four, eight, small)] == [2, 3, 3]
    monkeypatch.setattr(mma_sync, "PTXAS_OPT_LEVEL", 3)
    assert s.ptxas_opt_level(four) == 3
