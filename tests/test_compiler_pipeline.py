"""The SIMT pipeline on the CPU: semantics of the affine description (run by MLIR's JIT),
and what the GPU binary must hold (PTX, SASS, resources, launch rules) for every spec field."""
import ctypes
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from deepgen import compile_gemm
from deepgen.compiler import CompileError, TileConfig, compile_artifact
from deepgen.compiler.debug import dump_compile, sass_of
from deepgen.spec import GemmSpec, SpecError
from deepgen.toolchain import find_cuobjdump


def run_affine_on_cpu(spec: GemmSpec, alpha: float, beta: float, epilogue="none"):
    """Lower deepgen.gemm -> affine -> LLVM and run it with MLIR's execution engine."""
    from mlir import ir
    from mlir.execution_engine import ExecutionEngine
    from mlir.passmanager import PassManager
    from mlir.runtime import get_ranked_memref_descriptor

    from deepgen.compiler.driver import gemm_module, make_context, run_pipeline

    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((spec.batch, *spec.stored_shape(op))).astype(np.float32)
              for op in ("A", "B", "C")]
    a, b, c = arrays
    am = a.transpose(0, 2, 1) if spec.a_transposed else a
    bm = b.transpose(0, 2, 1) if spec.b_transposed else b
    ref = alpha * np.matmul(am.astype(np.float64), bm) + beta * c
    if epilogue == "relu":
        ref = np.maximum(ref, 0)
    with make_context(), ir.Location.unknown():
        module = gemm_module(spec, TileConfig(), "sm_90a", epilogue)
        run_pipeline(module, ["deepgen-gemm-to-affine"])
        module.body.operations[0].attributes["llvm.emit_c_interface"] = ir.UnitAttr.get()
        PassManager.parse("builtin.module(lower-affine,convert-scf-to-cf,finalize-memref-to-llvm,"
                          "convert-arith-to-llvm,convert-func-to-llvm,convert-cf-to-llvm,"
                          "reconcile-unrealized-casts)").run(module.operation)
        engine = ExecutionEngine(module, opt_level=0)
        args = [ctypes.pointer(ctypes.pointer(get_ranked_memref_descriptor(x))) for x in arrays]
        engine.invoke("gemm", *args, ctypes.pointer(ctypes.c_float(alpha)),
                      ctypes.pointer(ctypes.c_float(beta)))
    return c, ref


@pytest.mark.parametrize("layout", ["NN", "NT", "TN", "TT"])
def test_affine_description_computes_the_gemm_on_cpu(layout):
    spec = GemmSpec(M=5, N=7, K=3, batch=2, layout=layout)
    out, ref = run_affine_on_cpu(spec, alpha=1.5, beta=-0.5)
    assert np.abs(out - ref).max() < 1e-5


def test_affine_description_relu_and_beta_zero_ignores_nan_in_c():
    spec = GemmSpec(M=4, N=4, K=8)
    out, ref = run_affine_on_cpu(spec, alpha=1.0, beta=0.0, epilogue="relu")
    assert (out >= 0).all() and np.abs(out - ref).max() < 1e-5


def _ptx_ops(ptx: str) -> set:
    return set(re.findall(r"\b(?:ld|st)\.(?:global|shared|local)[.a-z0-9]*", ptx))


@pytest.fixture(scope="module")
def big():
    return compile_gemm(512, 512, 512, TileConfig())


def test_full_tiles_use_16_byte_global_and_shared_accesses_and_no_local_memory(big):
    ops = _ptx_ops(big.ptx)
    assert "ld.global.v4.b32" in ops and "ld.shared.v4.b32" in ops
    assert "st.shared.v4.b32" in ops and "st.global.v4.b32" in ops
    assert not any(".local" in o for o in ops)
    res = big.artifact.resources["deepgen_gemm"]
    assert 0 < res["registers"] <= 255 and res["spill_stores"] == 0 == res["spill_loads"]
    launch = big.artifact.launches[0]
    assert launch.grid == (4, 4, 1) and launch.block == (256, 1, 1)
    assert launch.shared_bytes == 2 * 2 * 8 * 128 * 4  # 2 stages x (A + B) x BK x 128 x f32


def test_sass_has_ffma_and_lds128_and_no_local_memory(big, tmp_path):
    assert find_cuobjdump() is not None, "cuobjdump is a dependency (nvidia-cuda-cuobjdump)"
    path = tmp_path / "k.cubin"
    path.write_bytes(big.artifact.binary)
    sass = sass_of(path)
    assert sass is not None
    assert "FFMA" in sass and "LDS.128" in sass and "LDG.E.128" in sass and "BAR.SYNC" in sass
    assert not re.search(r"\b(LDL|STL)\b", sass)


def test_ir_after_each_stage_is_kept(big):
    assert "deepgen.gemm" in big.ir("00-input")
    assert "affine.for" in big.ir("01-deepgen-gemm-to-affine")
    assert "gpu.dynamic_shared_memory" in big.ir("04-deepgen-promote-shared")
    with pytest.raises(KeyError):
        big.ir("no-such-stage")


@pytest.mark.parametrize("dtype, out_dtype, layout, wide", [
    ("f16", "f16", "TN", r"cp\.async\.cg\.shared\.global \[%rd\d+\], \[%rd\d+\], 16, "),
    ("bf16", "f32", "NT", r"cp\.async\.cg\.shared\.global \[%rd\d+\], \[%rd\d+\], 16, "),
    ("f32", "f32", "TT", r"ld\.global\.v4\.b32")])
def test_every_dtype_and_layout_compiles_with_16_byte_loads(dtype, out_dtype, layout, wide):
    k = compile_gemm(256, 256, 128, dtype=dtype, out_dtype=out_dtype, layout=layout)
    assert re.search(wide, k.ptx)
    assert k.spec.layout == layout and k.spec.out_dtype == out_dtype


def test_partial_tiles_guard_every_access_and_batch_uses_grid_z():
    k = compile_gemm(33, 127, 1000, batch=3, layout="TN")
    assert k.artifact.launches[0].grid[2] == 3 * k.config["split_k"]
    assert "setp" in k.ptx and "selp" in k.ptx  # clamped loads selected to zero
    ops = _ptx_ops(k.ptx)
    assert not any(".local" in o for o in ops)


def test_split_k_adds_a_deterministic_reduction_launch_and_workspace():
    spec = GemmSpec(M=128, N=128, K=4096)
    art = compile_artifact(spec, TileConfig(split_k=4), keep_ir=False)
    main, reduce_ = art.launches
    assert main.grid == (1, 1, 4) and main.args == ("A", "B", "C", "alpha", "beta", "W")
    assert reduce_.entry == "deepgen_splitk_reduce" and reduce_.args == ("W", "C", "alpha", "beta")
    assert art.workspace_bytes == 4 * 128 * 128 * 4
    assert "atom" not in art.assembly  # no atomics: fixed summation order


@pytest.mark.parametrize("option, marker", [
    ({"block_swizzle": 4}, "arith.minui"), ({"register_prefetch": True}, None),
    ({"shared_stages": 1}, None), ({"kk_unroll": 2}, None), ({"fetch_contiguous": False}, None),
    ({"smem_pad": 4}, None)])
def test_config_options_compile(option, marker):
    spec = GemmSpec(M=1024, N=1024, K=256)
    art = compile_artifact(spec, TileConfig(**option))
    assert art.resources["deepgen_gemm"]["spill_stores"] == 0
    if marker:  # the swizzle's arithmetic right after its pass (LLVM folds it differently)
        assert marker in art.ir_stages["06-deepgen-block-swizzle"]
        assert marker not in art.ir_stages["05-deepgen-pipeline"]
    if option.get("shared_stages") == 1:
        assert art.launches[0].shared_bytes == 8 * 128 * 4 * 2


def test_invalid_config_fails_before_any_mlir():
    with pytest.raises(SpecError, match="^BM:"):
        compile_artifact(GemmSpec(M=64, N=64, K=64), {"BM": 96})


def test_failed_stage_is_named_and_its_input_kept(tmp_path, monkeypatch):
    spec = GemmSpec(M=64, N=64, K=64)
    from deepgen.compiler.strategies import simt  # the strategy of this f32 spec
    monkeypatch.setattr(simt.STRATEGY, "passes", ("deepgen-gemm-to-affine", "deepgen-pipeline"))
    with pytest.raises(CompileError) as e:
        dump_compile(spec, None, "sm_90a", tmp_path)
    assert e.value.stage == "deepgen-pipeline"
    assert "stage: deepgen-pipeline" in (tmp_path / "FAILED.txt").read_text()
    kept = list(tmp_path.glob("*deepgen-pipeline.input.mlir"))
    assert kept and "affine.for" in kept[0].read_text()


def test_dump_dir_holds_every_stage_and_the_binary(tmp_path):
    dump_compile(GemmSpec(M=100, N=60, K=20, layout="TN"), None, "sm_90a", tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "01-deepgen-gemm-to-affine.mlir" in names and "07-deepgen-vectorize.mlir" in names
    for f in ("kernel.ll", "kernel.ptx", "kernel.cubin", "kernel.sass", "resources.json"):
        assert f in names
    assert "define ptx_kernel void @deepgen_gemm" in (tmp_path / "kernel.ll").read_text()
    res = json.loads((tmp_path / "resources.json").read_text())
    assert res["resources"]["deepgen_gemm"]["registers"] > 0


def _opt(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "deepgen.compiler.opt", *args], input=stdin,
                          capture_output=True, text=True)


def test_deepgen_opt_runs_a_mixed_pipeline_and_prints_ir_after_all(tmp_path):
    src = "lit_tests/inputs/gemm_256.mlir"
    r = _opt(src, "-p", "builtin.module(deepgen-gemm-to-affine,canonicalize,deepgen-tile-gemm)",
             "--print-ir-after-all")
    assert r.returncode == 0, r.stderr
    assert "gpu.func @deepgen_gemm" in r.stdout
    assert "IR Dump After" in r.stderr and "deepgen-gemm-to-affine" in r.stderr
    assert "Canonicalizer" in r.stderr


def test_deepgen_opt_split_input_file_and_errors():
    text = open("lit_tests/inputs/gemm_256.mlir").read()
    r = _opt("-", "--split-input-file", "-p", "deepgen-gemm-to-affine",
             stdin=text + "\n// -----\n" + text)
    assert r.returncode == 0 and r.stdout.count("deepgen.gemm_nest") == 2
    bad = _opt("lit_tests/inputs/bad_gemm.mlir", "-p", "deepgen-gemm-to-affine")
    assert bad.returncode == 1 and "operand B: K=5 differs" in bad.stderr
    unknown = _opt("lit_tests/inputs/gemm_256.mlir", "-p", "deepgen-nope")
    assert unknown.returncode == 1 and "unknown DeepGen pass" in unknown.stderr


@pytest.mark.parametrize("dtype, layout", [("bf16", "NN"), ("f16", "TN"), ("bf16", "NT"), ("f16", "TT")])
def test_tensor_core_path_has_ldmatrix_and_mma_in_sass(dtype, layout, tmp_path):
    k = compile_gemm(512, 512, 256, dtype=dtype, layout=layout)  # default config: mma.sync
    assert k.config["mma"] == "m16n8k16"
    assert f"mma.sync.aligned.m16n8k16.row.col.f32.{dtype}.{dtype}.f32" in k.ptx
    trans = "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16" in k.ptx
    assert trans == (layout[0] == "T" or layout[1] == "N")  # [k][mn] tiles need .trans
    path = tmp_path / "k.cubin"
    path.write_bytes(k.artifact.binary)
    sass = sass_of(path)
    assert "HMMA.16816.F32" in sass and re.search(r"LDSM\.16\.MT?88\.4", sass)
    assert "LDGSTS.E.BYPASS.128" in sass  # cp.async, 16 bytes, L1 bypassed
    assert not re.search(r"\b(LDL|STL)\b", sass)


@pytest.mark.parametrize("dtype", ["bf16", "f16"])
def test_default_tensor_core_kernel_swizzles_prefetches_and_stores_c_in_16_bytes(dtype, tmp_path):
    """Whole tiles: swizzled shared tiles (no padding), fragments carried across K tiles,
    and C staged through shared memory and written as 16-byte vectors (8 x 16-bit). The
    256 x 128 tile (4 x 2 warps of 64 x 64) the default takes where its tiles fill the GPU
    (given: 512^2 has too few of them)."""
    k = compile_artifact(GemmSpec(M=512, N=512, K=256, dtype=dtype),
                         {"strategy": "mma_sync", "BM": 256, "BN": 128, "BK": 64, "warps_m": 4,
                          "warps_n": 2, "shared_stages": 4})
    cfg = k.config
    assert cfg["smem_swizzle"] and cfg["smem_pad"] == 0 and cfg["register_prefetch"]
    assert cfg["epilogue_smem"] and cfg["store_width"] == 8
    assert "arith.xori" in k.ir_stages["07-deepgen-vectorize"]
    loop = next(line for line in k.ir_stages["05-deepgen-mma-sync-pipeline"].splitlines()
                if "scf.for" in line and "deepgen.k_loop" not in line and "vector<4xi32>" in line)
    assert loop.count("vector<4xi32>") == 8  # 4 A + 4 B fragments of a 64 x 64 warp tile
    path = tmp_path / "k.cubin"
    path.write_bytes(k.binary)
    sass = sass_of(path)
    stores = re.findall(r"\bSTG\.E[.A-Z0-9]*", sass)
    assert stores and set(stores) == {"STG.E.128"}, set(stores)
    assert "STS.64" in sass and "LDS.128" in sass  # accumulators in, rows out
    assert not re.search(r"\b(LDL|STL)\b", sass)


def test_tensor_core_config_errors_name_the_field():
    spec = GemmSpec(M=256, N=256, K=256, dtype="f32")
    with pytest.raises(SpecError, match="^mma: m16n8k16 multiplies f16 or bf16"):
        compile_artifact(spec, TileConfig(mma="m16n8k16", BK=32, smem_pad=8))
    with pytest.raises(SpecError, match="^BK: must be a multiple of the MMA depth 16"):
        compile_artifact(GemmSpec(M=256, N=256, K=256, dtype="bf16"),
                         TileConfig(mma="m16n8k16", BK=8, smem_pad=8))
    bf16 = GemmSpec(M=256, N=256, K=256, dtype="bf16")
    with pytest.raises(SpecError, match="^smem_pad: must be 0 with smem_swizzle, got 8"):
        compile_artifact(bf16, TileConfig(mma="m16n8k16", BK=32, smem_pad=8, smem_swizzle=True,
                                          store_width=2))
    with pytest.raises(SpecError, match="^smem_swizzle: the XOR swizzle is built for 16-bit"):
        compile_artifact(GemmSpec(M=256, N=256, K=256, allow_tf32=True),
                         TileConfig(mma="m16n8k8", BK=32, smem_swizzle=True, store_width=2))
    with pytest.raises(SpecError, match="^store_width: an MMA accumulator holds 2"):
        compile_artifact(bf16, TileConfig(mma="m16n8k16", BK=32, store_width=8))
    with pytest.raises(SpecError, match="^store_width: must be a power of two dividing the warp"):
        compile_artifact(bf16, TileConfig(mma="m16n8k16", BK=32, BN=64, warps_n=4,
                                          epilogue_smem=True, store_width=32))


@pytest.mark.parametrize("warps_m", [1, 2, 4])
def test_one_warp_column_with_fragment_prefetch_compiles(warps_m):
    """warps_n 1: the first B fragment's column is the tile's origin itself (offset 0), and
    the ring's prefetch before the K loop reads it; it used to be computed inside the loop
    ("operand does not dominate this use": 78 of 442 candidates of
    tuning_configs/multi_gpu_400.json failed to compile)."""
    cfg = {"strategy": "mma_sync", "BM": 64 * warps_m, "BN": 64, "BK": 32, "warps_m": warps_m,
           "warps_n": 1, "shared_stages": 2, "register_prefetch": True}
    art = compile_artifact(GemmSpec(M=512, N=512, K=512, dtype="bf16"), cfg, keep_ir=False)
    assert art.config["register_prefetch"] and art.config["warps_n"] == 1
    assert art.assembly.count("ldmatrix") > 0


@pytest.mark.parametrize("dtype", ["bf16", "f32"])
@pytest.mark.parametrize("m, n, k, layout", [(127, 1000, 33, "NT"), (1000, 1000, 127, "TT"),
                                             (1000, 1000, 127, "NT"), (4097, 33, 1000, "NN"),
                                             (1000, 7, 4097, "NN"), (4097, 33, 7, "NT")])
def test_default_configs_of_odd_shapes_do_not_spill(m, n, k, layout, dtype):
    """Unaligned operands cannot use cp.async; the register-staged fallback must still fit
    (1000x7x4097 NN and 4097x33x7 NT: the narrow staged tile at BK 64 spilled 8 and 12 bytes,
    NARROW_STAGED_MAX_SPLIT)."""
    art = compile_artifact(GemmSpec(M=m, N=n, K=k, layout=layout, dtype=dtype), None,
                           keep_ir=False)
    for entry, res in art.resources.items():
        assert res["spill_stores"] == 0 and res["stack_bytes"] == 0, (entry, res)


@pytest.mark.parametrize("layout", ["NN", "TT"])
def test_tf32_path_rounds_to_tf32_and_uses_m16n8k8(layout, tmp_path):
    k = compile_artifact(GemmSpec(M=256, N=256, K=128, layout=layout, allow_tf32=True), None)
    assert k.config["mma"] == "m16n8k8" and k.config["async_copy"]
    assert "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32" in k.assembly
    assert "cvt.rna.tf32.f32" in k.assembly  # round to nearest, not truncate
    assert "allow_tf32" in k.ir_stages["00-input"]
    path = tmp_path / "k.cubin"
    path.write_bytes(k.binary)
    sass = sass_of(path)
    assert "HMMA.1688.F32.TF32" in sass and "LDGSTS" in sass
    assert not re.search(r"\b(LDL|STL)\b", sass)


def test_f32_without_tf32_stays_on_cuda_cores():
    art = compile_artifact(GemmSpec(M=256, N=256, K=128), None, keep_ir=False)
    assert art.config["strategy"] == "simt" and "mma.sync" not in art.assembly
    with pytest.raises(SpecError, match="^mma: m16n8k8 multiplies tf32"):
        compile_artifact(GemmSpec(M=256, N=256, K=128), TileConfig(mma="m16n8k8", smem_pad=4))
