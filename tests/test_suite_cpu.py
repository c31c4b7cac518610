"""CPU side of the benchmark suite and of the GPU tests (tests/gpu): the bundles build, hold what
the GPU side reads, carry the expected launches and PTX features, and the GPU host's side of
the suite needs no compiler. Needs MLIR (the compiler), no GPU."""
from __future__ import annotations

import importlib.util
import json
import math
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from deepgen.spec import DTYPE_BYTES, GemmSpec

REPO = Path(__file__).resolve().parents[1]


def _load_make_bundle():
    """tests/gpu/make_bundle.py by path; its load_module then loads the benchmark scripts."""
    name = "deepgen_tests_make_bundle"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "tests/gpu/make_bundle.py")
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


make_bundle = _load_make_bundle()
gs = make_bundle.gemm_suite()
compile_time = make_bundle.load_module("benchmarks/compile_time.py", "deepgen_bench_compile_time")

BUNDLE_LIMIT = 40 * 2**20  # bytes the whole suite's bundle may take (it travels to the GPU host)


@pytest.fixture
def no_tuned_db(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPGEN_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


# -- suites ------------------------------------------------------------------------------------


def _shapes(suite):
    return {(s.batch, s.M, s.N, s.K) for s in gs.SUITES[suite]}


def test_suites_hold_the_required_shapes():
    assert {(1, n, n, n) for n in (1024, 2048, 4096, 8192)} <= _shapes("square")
    assert {(1, m, n, k) for m in (1, 16, 128, 2048, 4096)
            for n, k in ((4096, 4096), (14336, 4096), (4096, 14336))} <= _shapes("llm")
    assert {(64, 512, 512, 512), (8, 2048, 2048, 2048)} <= _shapes("batched")
    assert {(1, 1000, 1234, 777), (1, 4097, 33, 1000), (1, 127, 4097, 33)} <= _shapes("odd")


def test_entries_all_is_the_union_each_shape_once():
    points = gs.entries(["all"], ["bf16"])
    union = set().union(*(_shapes(s) for s in gs.ALL))
    got = [(e.spec.batch, e.spec.M, e.spec.N, e.spec.K) for e in points]
    assert sorted(got) == sorted(union)  # 4096^3 is in square and llm: once
    both = next(e for e in points if e.shape == gs.Shape(4096, 4096, 4096))
    assert both.suites == ("square", "llm")
    assert all("smoke" not in e.suites for e in points)


def test_entries_dtypes_map_onto_specs():
    points = gs.entries(["square"], list(gs.DTYPES))
    assert len({e.name for e in points}) == len(points) == 4 * len(gs.SUITES["square"])
    by = {e.dtype: e.spec for e in points if e.shape.M == 1024}
    assert (by["fp32"].dtype, by["fp32"].allow_tf32) == ("f32", False)
    assert (by["tf32"].dtype, by["tf32"].allow_tf32) == ("f32", True)
    assert by["f16"].out_dtype == "f16" and by["bf16"].out_dtype == "bf16"


def test_parse_list_rejects_unknown_names():
    assert gs.parse_list("fp32, bf16", gs.DTYPES, "dtypes") == ["fp32", "bf16"]
    with pytest.raises(SystemExit, match="fp64"):
        gs.parse_list("fp32,fp64", gs.DTYPES, "dtypes")


# -- the suite's bundle ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smoke_bundle(tmp_path_factory):
    d = tmp_path_factory.mktemp("smoke")
    mp = pytest.MonkeyPatch()
    mp.setenv("DEEPGEN_CACHE_DIR", str(d / "cache"))  # no tuned database
    try:
        index = gs.compile_bundle(d / "bundle", gs.entries(["smoke"]), log=lambda line: None)
    finally:
        mp.undo()
    return d / "bundle", index


def test_compile_bundle_writes_every_point(smoke_bundle):
    from deepgen.compiler import default_config
    from deepgen.runtime import load

    bundle, index = smoke_bundle
    saved = gs.read_index(bundle)
    assert saved == json.loads(json.dumps(index))
    assert [r["name"] for r in saved["entries"]] == [e.name for e in gs.entries(["smoke"])]
    assert saved["target"] == "sm_90a" and saved["toolchain"]["mlir"]
    for r in saved["entries"]:
        spec = GemmSpec.from_dict(r["spec"])
        assert r["error"] is None
        assert r["config_source"] == "default"
        assert r["config"] == default_config(spec).to_dict()
        if spec.allow_tf32:  # DeepGen runs TF32 only once its kernel really uses it
            assert (r["na"] is not None) == (r["kernel"] is None)
            if r["kernel"] is None:
                assert not (bundle / r["name"]).exists()
            continue
        k = load(bundle / r["kernel"])
        assert k.spec == spec and k.config == r["config"]
        assert r["engine"] == gs.engine(k.ptx)
        assert r["launches"] == len(k.artifact.launches)


def test_tf32_is_na_until_a_kernel_uses_tf32_mma(smoke_bundle):
    bundle, index = smoke_bundle
    for r in index["entries"]:
        if r["dtype"] == "tf32" and r["na"]:
            assert "tf32" in r["na"]
    assert gs.uses_tf32("wgmma.mma_async.sync.aligned.m64n128k8.f32.tf32.tf32 {...}")
    assert gs.uses_tf32("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%f1}")
    assert not gs.uses_tf32("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%f1}")
    assert not gs.uses_tf32("fma.rn.f32 %f1, %f2, %f3, %f4; // tf32 mentioned")
    assert gs.engine("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32") == "tensor cores"
    assert gs.engine("fma.rn.f32 %f1, %f2, %f3, %f4;") == "SIMT"


def test_whole_suite_bundle_fits_the_carry_limit(smoke_bundle):
    """Every kernel of the smoke suite, times the number of points of the whole suite, stays
    under the limit (the whole bundle is ~4 MiB; this catches e.g. IR kept in bundles)."""
    bundle, index = smoke_bundle
    n_all = len(gs.entries(["all"]))
    sizes = [sum(f.stat().st_size for f in (bundle / r["kernel"]).iterdir())
             for r in index["entries"] if r["kernel"]]
    assert sizes and max(sizes) * n_all < BUNDLE_LIMIT, (max(sizes), n_all)
    assert {f.name for f in (bundle / index["entries"][0]["kernel"]).iterdir()} == {
        "kernel.cubin", "kernel.json", "kernel.ptx"}


def test_tuned_config_wins_over_the_default(tmp_path, no_tuned_db):
    from deepgen.compiler import default_config
    from deepgen.runtime import load

    point = next(e for e in gs.entries(["smoke"], ["fp32"]) if e.shape.M == 256)
    tuned = default_config(point.spec).replace(split_k=1, block_swizzle=2).to_dict()
    assert tuned != default_config(point.spec).to_dict()
    no_tuned_db.mkdir(parents=True)
    (no_tuned_db / "tuned.json").write_text(json.dumps({"format": "deepgen-tuned/1", "entries": [
        {"spec": point.spec.to_dict(), "target": "sm_90a", "config": tuned}]}))
    index = gs.compile_bundle(tmp_path / "b", [point], log=lambda line: None)
    (row,) = index["entries"]
    assert row["config_source"] == "tuned" and row["config"] == tuned
    assert load(tmp_path / "b" / row["kernel"]).config == tuned


def test_a_point_that_does_not_compile_is_reported(tmp_path, no_tuned_db):
    point = gs.entries(["smoke"], ["fp32"])[0]
    bad = {"BM": 96}  # not a power of two: rejected before any MLIR is built
    no_tuned_db.mkdir(parents=True)
    (no_tuned_db / "tuned.json").write_text(json.dumps({"format": "deepgen-tuned/1", "entries": [
        {"spec": point.spec.to_dict(), "config": bad}]}))
    index = gs.compile_bundle(tmp_path / "b", [point], log=lambda line: None)
    (row,) = index["entries"]
    assert row["kernel"] is None and row["error"].startswith("compile failed: SpecError")
    assert "BM" in row["error"]
    assert gs.main(["--compile-only", str(tmp_path / "c"), "--suites", "smoke", "--dtypes",
                    "fp32", "--only", re.escape(point.name)]) == 1


def test_run_side_loads_kernels_without_the_compiler(smoke_bundle):
    """What --run does before touching the GPU (index, selection, loading every Kernel) works
    with MLIR and deepgen.compiler made unimportable, as on the GPU host."""
    bundle, index = smoke_bundle
    script = textwrap.dedent(f"""
        import importlib.abc, importlib.util, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "mlir" or name.startswith(("deepgen.compiler",
                                                                     "deepgen.dialects")):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        spec = importlib.util.spec_from_file_location("gs", {str(REPO / 'benchmarks/gemm_suite.py')!r})
        gs = importlib.util.module_from_spec(spec); sys.modules["gs"] = gs
        spec.loader.exec_module(gs)
        index = gs.read_index({str(bundle)!r})
        rows = gs.select(index["entries"], ["smoke"], ["bf16", "tf32"])
        kernels = gs.load_kernels({str(bundle)!r}, rows)
        assert not [m for m in sys.modules if m.split(".")[0] == "mlir"]
        print(len(rows), sorted(kernels))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    n_rows, names = out.stdout.split(" ", 1)
    assert int(n_rows) == 2 * len(gs.SUITES["smoke"])
    assert eval(names) == sorted(r["name"] for r in index["entries"]
                                 if r["dtype"] in ("bf16", "tf32") and r["kernel"])


def test_select_filters_by_suite_dtype_and_pattern(smoke_bundle):
    _, index = smoke_bundle
    rows = index["entries"]
    assert gs.select(rows) == rows
    assert {r["dtype"] for r in gs.select(rows, dtypes=["f16"])} == {"f16"}
    assert gs.select(rows, suites=["square"]) == []
    assert [r["name"] for r in gs.select(rows, pattern="^bf16-1x")] == ["bf16-1x512x1024"]


# -- results: table, JSON, plot, time budget ----------------------------------------------------


def _result(name, dtype, dg, tt, tr, check="ok", **extra):
    r = {"name": name, "suites": ["square"], "shape": name.split("-", 1)[1], "dtype": dtype,
         "spec": {}, "deepgen_tflops": dg, "torch_tflops": tt, "triton_tflops": tr,
         "deepgen_check": check, "torch_check": "ok", "triton_check": "ok",
         "config_source": "default", "config": {"BM": 128, "BN": 128, "BK": 8, "split_k": 1}}
    if dg and tt:
        r["ratio_vs_cublas"] = dg / tt
    r.update(extra)
    return r


def test_format_table_shows_figures_ratio_and_status():
    results = [_result("fp32-1024x1024x1024", "fp32", 20.0, 40.0, 30.0),
               _result("tf32-1024x1024x1024", "tf32", None, 200.0, 150.0, check="n/a"),
               _result("bf16-1024x1024x1024", "bf16", 10.0, 100.0, 80.0,
                       check="FAIL rel_err 1e-1 > 4e-03", triton_check="FAIL rel_err 1"),
               {"name": "bf16-2048x2048x2048", "shape": "2048x2048x2048", "dtype": "bf16",
                "skipped": "time budget of 10 s spent"}]
    table = gs.format_table(results, "title")
    lines = table.splitlines()
    assert lines[0] == "title" and lines[1].split()[:6] == [
        "shape", "dtype", "DeepGen", "torch", "Triton", "DG/cuBLAS"]
    fp32 = next(l for l in lines if l.startswith("1024x1024x1024 ") and " fp32 " in l)
    assert fp32.split()[2:6] == ["20.0", "40.0", "30.0", "0.500"] and " ok " in fp32
    tf32 = next(l for l in lines if " tf32 " in l)
    assert tf32.split()[2] == "n/a" and tf32.split()[3] == "200.0"
    bf16 = next(l for l in lines if " bf16 " in l and "1024" in l)
    assert "FAIL" in bf16 and "[triton FAIL]" in bf16
    assert any("skipped" in l and "2048" in l for l in lines)
    assert f"geometric mean over the 1 points that check ok: {0.5:.3f}" in table
    assert "1 ok, 1 failed: bf16-1024x1024x1024, 1 n/a, 1 skipped" in table


def test_run_points_stops_at_the_budget_and_saves_as_it_goes():
    rows = [{"name": f"p{i}", "suites": ["x"], "shape": f"s{i}", "dtype": "bf16", "spec": {}}
            for i in range(5)]
    now = [0.0]

    def measure_one(row):
        now[0] += 4.0
        return _result(f"bf16-{row['name']}", "bf16", 1.0, 2.0, 3.0)

    saved = []
    results = gs.run_points(rows, measure_one, budget_s=10, clock=lambda: now[0],
                            progress=lambda line: None, on_result=lambda r: saved.append(len(r)))
    assert [("skipped" in r) for r in results] == [False, False, False, True, True]
    assert saved == [1, 2, 3]
    assert all(r["wall_s"] == 4.0 for r in results[:3])


def test_json_and_plot_are_written(tmp_path):
    pytest.importorskip("matplotlib")
    results = [_result("fp32-1024x1024x1024", "fp32", 20.0, 40.0, 30.0),
               _result("bf16-1024x1024x1024", "bf16", 10.0, 100.0, None)]
    out = tmp_path / "sub" / "r.json"
    gs.write_json(out, {"results": results})
    assert json.loads(out.read_text())["results"] == results
    png = gs.plot(results, out.with_suffix(".png"), "t")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert gs.default_out("NVIDIA H100 80GB HBM3", __import__("datetime").datetime(2026, 11, 24, 9, 5)) \
        == gs.RESULTS / "gemm_suite-NVIDIA-H100-80GB-HBM3-2026-11-24-0905.json"


# -- the GPU tests' bundle: every case builds with the expected launches and PTX features ------

SWEEP_SUBSET = (r"^(f32-NN-256x256x256|f16-TN-1000x1000x127|bf16-TT-33x127x1000|f32-NT-4097x33x7|"
                r"bf16-NN-1x4097x1000|batch4-NT|splitk4|splitk3-beta-batch2|reg-prefetch|"
                r"alpha-beta-f16out|bf16-out-f32|fp32-b3-96x64x40-TT|bf16-1x512x1024)$")


@pytest.fixture(scope="module")
def test_bundle(tmp_path_factory):
    d = tmp_path_factory.mktemp("tests-bundle")
    mp = pytest.MonkeyPatch()
    mp.setenv("DEEPGEN_CACHE_DIR", str(d / "cache"))
    try:
        made = make_bundle.make_bundle(d / "b", SWEEP_SUBSET, log=lambda line: None)
    finally:
        mp.undo()
    return d / "b", made


def test_make_bundle_holds_the_selected_cases(test_bundle):
    bundle, made = test_bundle
    want = [c[0] for c in make_bundle.correctness_sweep().cases() if re.search(SWEEP_SUBSET, c[0])]
    assert len(want) == 11 and made["sweep"] == want
    index = json.loads((bundle / "sweep" / "index.json").read_text())
    assert [e["name"] for e in index] == want  # what correctness_sweep.py --run reads
    assert all((bundle / "sweep" / n / "kernel.json").exists() for n in want)
    suite = gs.read_index(bundle / "suite")
    assert [r["name"] for r in suite["entries"]] == ["fp32-b3-96x64x40-TT", "bf16-1x512x1024"]


def _widest_access(ptx: str, op: str, space: str) -> int:
    """Bytes of the widest `op.space` (ld/st, global/shared) access in the PTX."""
    widest = 0
    for m in re.finditer(rf"\b{op}\.{space}((?:\.[a-z0-9]+)*)", ptx):
        parts = m.group(1).split(".")
        lanes = next((int(p[1:]) for p in parts if re.fullmatch(r"v\d", p)), 1)
        bits = next((int(p[1:]) for p in reversed(parts) if re.fullmatch(r"[bfsu]\d+", p)), 0)
        widest = max(widest, lanes * bits // 8)
    return widest


def _widest_fetch(ptx: str) -> int:
    """Bytes of the widest read of global memory: ld.global or cp.async (global -> shared)."""
    copies = [int(n) for n in re.findall(
        r"\bcp\.async\.c[ag]\.shared\.global(?:\.\w+)*\s+\[[^]]*\],\s*\[[^]]*\],\s*(\d+)", ptx)]
    return max([_widest_access(ptx, "ld", "global"), *copies])


def test_widest_access_parser():
    ptx = "ld.global.nc.v4.b32 {%r1,%r2,%r3,%r4}, [%rd1];\nld.shared.v2.b16 {%h1,%h2}, [%r5];\n" \
          "st.global.b16 [%rd2], %h3;\nld.global.b32 %r9, [%rd3];"
    assert _widest_access(ptx, "ld", "global") == 16
    assert _widest_access(ptx, "ld", "shared") == 4
    assert _widest_access(ptx, "st", "global") == 2
    assert _widest_access(ptx, "st", "shared") == 0
    assert _widest_fetch(ptx) == 16
    assert _widest_fetch("cp.async.cg.shared.global [%rd89], [%rd91], 16, %r6;\n"
                         "ld.global.b32 %r1, [%rd1];") == 16
    assert _widest_fetch("cp.async.ca.shared.global [%rd89], [%rd91], 8;") == 8


KERNEL_BUILDERS = {"gemv": "deepgen_gemv", "wgmma": "deepgen_wgmma_gemm"}


def test_sweep_kernels_have_the_expected_launches_and_ptx(test_bundle):
    from deepgen.runtime import KernelArtifact

    bundle, made = test_bundle
    cases = {c[0]: c for c in make_bundle.correctness_sweep().cases()}
    seen_split = seen_batch = seen_simt = False
    for name in made["sweep"]:
        _, fields, overrides, _, _ = cases[name]
        art = KernelArtifact.load(bundle / "sweep" / name)
        spec, cfg = GemmSpec(**fields), art.config
        for key, value in (overrides or {}).items():
            assert cfg[key] == value, (name, key)
        ptx = art.assembly
        assert ptx and ".local" not in ptx, name  # no stack / spills in PTX
        assert all(r["spill_stores"] == 0 for r in art.resources.values()), name
        split = cfg["split_k"]
        assert len(art.launches) == (2 if split > 1 else 1), name
        main = art.launches[0]
        if cfg["strategy"] in KERNEL_BUILDERS:  # their own PTX checks: test_gemv, test_wgmma
            assert main.entry == KERNEL_BUILDERS[cfg["strategy"]], name
            assert set(main.args) >= {"A", "B"}, name
            continue
        lanes = 32 if cfg["strategy"] == "mma_sync" else cfg["lanes_m"] * cfg["lanes_n"]
        threads = cfg["warps_m"] * cfg["warps_n"] * lanes
        assert math.prod(main.block) == threads, name
        tiles = -(-spec.M // cfg["BM"]) * -(-spec.N // cfg["BN"]) * spec.batch * split
        assert math.prod(main.grid) >= tiles, name
        assert set(main.args) >= {"A", "B"} and main.shared_bytes > 0
        if split > 1:
            seen_split = True
            assert art.workspace_bytes >= split * spec.batch * spec.M * spec.N * 4, name
            assert "W" in main.args and "C" in art.launches[1].args
        seen_batch |= spec.batch > 1
        elt, out = DTYPE_BYTES[spec.dtype], DTYPE_BYTES[spec.out_dtype]
        width = max(cfg["load_width_a"], cfg["load_width_b"]) * elt
        assert _widest_fetch(ptx) >= width, (name, width)
        if cfg.get("async_copy"):  # global -> shared without registers (LDGSTS)
            assert "cp.async" in ptx, name
        if cfg.get("mma", "none") != "none":  # tensor cores: ldmatrix + mma.sync of the dtype
            shape, t = cfg["mma"], spec.dtype
            assert re.search(rf"\bmma\.sync\.aligned\.{shape}\.row\.col\.f32\.{t}\.{t}\.f32",
                             ptx), name
            assert "ldmatrix.sync.aligned" in ptx, name
        else:  # SIMT: FMAs on fragments read from shared memory as vectors
            seen_simt = True
            assert "mma.sync" not in ptx and re.search(r"\bfma\.rn\.f32", ptx), name
            frag = max(cfg["thread_scatter_m"], cfg["thread_scatter_n"]) * elt
            assert _widest_access(ptx, "ld", "shared") >= frag, (name, frag)
        assert _widest_access(ptx, "st", "global") >= cfg["store_width"] * out, name
        if name == "f32-NN-256x256x256":  # the common case: 16-byte vectors everywhere
            assert "ld.global.v4" in ptx or "ld.global.nc.v4" in ptx
            assert "ld.shared.v4" in ptx and "st.global.v4" in ptx
    assert seen_split and seen_batch and seen_simt


# -- Triton baseline (only where triton is importable) and compile-time benchmark -------------


def test_triton_kernel_builds_for_sm90_without_a_gpu():
    pytest.importorskip("triton")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, compile as triton_compile

    tm = gs._load_triton()
    fn = tm.matmul_kernel
    for dtype, prec, expect in (("fp32", "ieee", r"\bfma\.rn\.f32"),
                                ("fp32", "tf32", r"wgmma\.mma_async\S*\.tf32"),
                                ("bf16", "tf32", r"wgmma\.mma_async\S*\.bf16")):
        elt = 4 if dtype == "fp32" else 2
        bm, bn, bk, warps, stages = tm.candidates(4096, elt)[0]
        sig = {n: ("*" + dtype if n.endswith("_ptr") else "i32") for n in fn.arg_names[:15]}
        sig.update({n: "constexpr" for n in fn.arg_names[15:]})
        src = ASTSource(fn, sig, dict(BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=8,
                                      PRECISION=prec))
        k = triton_compile(src, target=GPUTarget("cuda", 90, 32),
                           options=dict(num_warps=warps, num_stages=stages))
        assert re.search(expect, k.asm["ptx"]), (dtype, prec)


def test_triton_candidates_fit_the_problem():
    tm = pytest.importorskip("triton") and gs._load_triton()
    for M, elt in ((1, 2), (16, 4), (40, 2), (4096, 4), (4096, 2)):
        cands = tm.candidates(M, elt)
        assert cands
        for bm, bn, bk, _, stages in cands:
            assert stages * (bm * bk + bk * bn) * elt <= tm.SHARED_LIMIT
            assert bm == 16 if M <= 16 else (bm <= 64 if M <= 64 else bm >= 64), (M, bm)


def test_compile_time_reports_stages():
    r = compile_time.time_spec(GemmSpec(M=128, N=128, K=64), runs=2)
    assert r["runs"] == 2 and r["min_s"] <= r["median_s"] <= r["max_s"]
    stages = r["stages_median_s"]
    assert {"build module", "deepgen-tile-gemm", "upstream lowering", "ptxas",
            "to PTX (gpu-module-to-binary)"} <= set(stages)
    assert 0 < sum(stages.values()) <= r["max_s"] * 1.01
    from deepgen.compiler import backend_nvidia, driver
    from deepgen.compiler.passes import REGISTRY
    assert driver.run_pipeline.__name__ == "run_pipeline"  # the wrappers are gone afterwards
    assert backend_nvidia.assemble.__name__ == "assemble"
    assert REGISTRY["deepgen-tile-gemm"].run.__name__ == "run"


def test_compile_time_vs_triton_writes_every_run(tmp_path):
    pytest.importorskip("triton")
    out = tmp_path / "vs.json"
    assert compile_time.main(["--vs-triton", "--runs", "2", "--only", "16x4096", "--out",
                              str(out), "--mma-sync-ptxas-opt", "2"]) == 0
    doc = json.loads(out.read_text())
    (tile,) = doc["tiles"]
    assert tile["tile"].startswith("bf16 16x4096x4096")
    assert len(tile["runs_s"]["deepgen"]) == len(tile["runs_s"]["triton"]) == 2
    assert tile["ratio_median"] == tile["median_s"]["deepgen"] / tile["median_s"]["triton"]
    assert tile["deepgen_engine"] == tile["triton_engine"] == "mma.sync"
    assert tile["triton_config"]["BLOCK_M"] == 16 and tile["deepgen_config"]["BM"] == 16
    assert doc["triton"]["triton"] and doc["deepgen_toolchain"]["assembler"] == "ptxas"
    assert len(doc["load_average_before"]) == 3 and len(doc["runs"]) == 4
    assert doc["mma_sync_ptxas_opt"] == 2  # reached the DeepGen worker
    assert len(tile["ratio_rounds"]) == 2 and tile["ratio_cpu_median"] > 0
    assert {"make_ttgir", "make_llir", "make_ptx", "make_cubin"} <= set(tile["triton_stages_median_s"])
    assert "ptxas" in tile["deepgen_stages_median_s"]
    assert tile["triton_resources"] is None or tile["triton_resources"]["registers"] > 0


def test_ptxas_ab_bundle_holds_both_levels_of_the_same_ptx(tmp_path):
    bundle = tmp_path / "ab"
    assert compile_time.main(["--ptxas-ab", str(bundle), "--only", "^bf16_16x4096x4096$"]) == 0
    index = json.loads((bundle / "index.json").read_text())
    assert [e["variant"] for e in index] == ["ptxas-O3", "ptxas-O2"]
    ptx = {e["variant"]: (bundle / e["dir"]).glob("*.ptx") for e in index}
    texts = {v: [f.read_text() for f in sorted(fs)] for v, fs in ptx.items()}
    assert texts["ptxas-O3"] and texts["ptxas-O3"] == texts["ptxas-O2"]
    ab = json.loads((bundle / "ab.json").read_text())["variants"]
    assert ab[0]["cubin_sha256"] != ab[1]["cubin_sha256"]  # -O2 and -O3 give other SASS here


@pytest.mark.parametrize("kind", ["gemv", "wgmma"])
def test_every_gpu_case_config_resolves_for_its_spec(kind):
    """The CPU side of tests/gpu/test_{gemv,wgmma}_gpu.py: every case's config (the given
    fields over the strategy's default for the shape) validates, and keeps what it gives, so a
    default that moves cannot turn a GPU case invalid unnoticed."""
    from deepgen.compiler import strategies

    cases = make_bundle.strategy_cases(kind).cases()
    assert cases
    for name, fields, given, _alpha, _beta in cases:
        cfg = strategies.resolve({"strategy": kind, **given}, GemmSpec(**fields), "sm_90a")
        assert cfg.strategy == kind, name
        for key, value in given.items():
            assert getattr(cfg, key) == value, (name, key)


# -- interleaved rounds, max-autotune, the decode suite's layouts and Triton column ----------

decode = make_bundle.load_module("benchmarks/decode_suite.py", "deepgen_bench_decode_suite")
spill_guard = make_bundle.load_module("benchmarks/spill_guard.py", "deepgen_bench_spill_guard")
ptx_hashes = make_bundle.load_module("benchmarks/ptx_hashes.py", "deepgen_bench_ptx_hashes")


def test_format_table_reports_max_autotune_where_it_was_timed():
    with_ma = dict(_result("bf16-4096x4096x4096", "bf16", 650.0, 700.0, 620.0),
                   max_autotune_tflops=710.25)
    table = gs.format_table([with_ma, _result("bf16-1024x1024x1024", "bf16", 1.0, 2.0, 3.0)])
    line = next(l for l in table.splitlines() if l.startswith("4096x4096x4096"))
    assert line.endswith("max-autotune 710.2") or line.endswith("max-autotune 710.3")
    assert "max-autotune" not in next(l for l in table.splitlines()
                                      if l.startswith("1024x1024x1024"))


def test_suite_cli_takes_rounds_and_a_max_autotune_pattern(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(gs, "run_bundle", lambda bundle, out, **kw: seen.update(kw) or
                        {"results": []})
    assert gs.main(["--run", str(tmp_path), "--rounds", "7", "--max-autotune", "4096"]) == 0
    assert seen["rounds"] == 7 and seen["max_autotune"] == "4096"


def test_decode_points_name_other_layouts_and_take_nk_pairs():
    pts = decode.points(ms=(1, 16), dtypes=("bf16",), nk=[(14336, 4096)], layouts=("NT", "NN"))
    names = sorted(p["name"] for p in pts)
    assert names == ["bf16-16x14336x4096", "bf16-16x14336x4096-NN", "bf16-1x14336x4096",
                     "bf16-1x14336x4096-NN"]
    nn = next(p for p in pts if p["name"] == "bf16-1x14336x4096-NN")
    spec = decode.spec_of(nn)
    assert (spec.M, spec.N, spec.K, spec.layout) == (1, 14336, 4096, "NN")
    assert decode.spec_of({"M": 2, "N": 8, "K": 8, "dtype": "f16"}).layout == "NT"
    assert len(decode.points()) == len(decode.MS) * len(decode.NK) * len(decode.DTYPES)


def test_decode_table_has_the_triton_column():
    runner = {"strategy": "gemv", "tflops": 3.0, "gbps": 3000.0, "frac_stream": 0.75,
              "vs_cublas": 1.2, "check": "ok"}
    doc = {"stream_read": {"gbps": 4000.0}, "method": {"rounds": 5}, "device": "H200",
           "results": [{"name": "bf16-1x4096x4096", "M": 1, "best": "default",
                        "runners": {"default": runner, "cublas": {"tflops": 2.5, "gbps": 2500.0},
                                    "triton": {"tflops": 2.25}}}]}
    lines = decode.format_table(doc).splitlines()
    assert lines[1].split()[-3:] == ["Triton", "ratio", "best"]
    assert lines[2].split()[7:9] == ["2.2", "1.20"] or lines[2].split()[7:9] == ["2.3", "1.20"]
    assert "M<=16: geometric mean vs cuBLAS 1.200 over 1 points" in lines[-1]


def test_decode_analysis_gives_the_figures_and_their_bandwidth_bounds(tmp_path, capsys):
    """analyze: per group the default's geomean, min and count below 1.0 vs cuBLAS, the ideal
    ratio (cuBLAS's time / the bytes at a rate) at the stream read, the best rate measured
    and the HBM peak, and the M <= 16 points under their floors; --analyze adds it to a file."""
    def row(name, m, n, k, ratio, cublas_gbps, frac, gbps):
        nbytes = (m * k + n * k + m * n) * 2
        ms = nbytes / (cublas_gbps * 1e9) * 1e3
        return {"name": name, "M": m, "N": n, "K": k, "dtype": "bf16", "bytes": nbytes,
                "runners": {"default": {"check": "ok", "vs_cublas": ratio, "gbps": gbps,
                                        "frac_stream": frac},
                            "cublas": {"ms": ms, "gbps": cublas_gbps}}}
    doc = {"device": "NVIDIA H200", "stream_read": {"gbps": 4000.0}, "results": [
        row("a", 1, 4096, 4096, 1.25, 3200.0, 0.75, 4000.0),   # B 32 MiB: floor 70%
        row("b", 16, 8192, 8192, 0.98, 4000.0, 0.80, 4500.0),  # B 128 MiB: floor 85%
        row("c", 128, 8192, 8192, 1.1, 3600.0, 0.9, 3900.0),
        {"name": "d", "skipped": "time budget spent"}]}
    a = decode.analyze(doc)
    assert a["rates_gbps"] == {"stream_read": 4000, "best_measured": 4500, "hbm_peak": 4800}
    lo, hi = a["M1_16"], a["M32_128"]
    assert (lo["points"], lo["below_1"], lo["min"], hi["points"], hi["below_1"]) == (
        2, 1, 0.98, 1, 0)
    assert lo["geomean"] == round(math.sqrt(1.25 * 0.98), 3)
    assert lo["ideal_geomean"]["stream_read"] == round(math.sqrt(4000 / 3200 * 4000 / 4000), 3)
    assert hi["ideal_geomean"]["hbm_peak"] == round(4800 / 3600, 3)
    assert lo["below_floor"] == ["b"]
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    assert decode.main(["--analyze", str(path)]) == 0
    assert json.loads(path.read_text())["analysis"] == a
    assert "M1_16 below the bandwidth floors: ['b']" in capsys.readouterr().out
    empty = decode.analyze({"device": "x", "stream_read": {"gbps": 4000.0},
                            "results": [{"name": "d", "skipped": "time budget spent"}]})
    assert empty["M1_16"]["points"] == 0 and empty["M1_16"]["geomean"] is None
    assert empty["rates_gbps"] == {"stream_read": 4000}


def test_spill_guard_covers_every_suite_shape_in_every_layout():
    pts = spill_guard.points()
    names = {n for n, _, _ in pts}
    key = spill_guard.spec_key
    specs = {key(s) for _, s, _ in pts}
    assert len(specs) == len(pts)  # each spec once
    for e in gs.entries(("all",)):
        for layout in spill_guard.LAYOUTS:
            want = dict(e.spec.to_dict(), layout=layout)
            assert key(want) in specs, (e.name, layout)
    for p in decode.points():
        for layout in spill_guard.LAYOUTS:
            want = dict(decode.spec_of(p).to_dict(), layout=layout)
            assert key(want) in specs, (p["name"], layout)
    assert "decode/bf16-128x57344x8192-TT" in names
    # and the quantized benches' shapes (fp8, int8, block fp8; layout NT), in the PTX guard too
    quant = {key(spec) for _, spec in ptx_hashes.quant_points()}
    assert len(quant) == 22 and quant <= specs
    assert {n for n, _ in ptx_hashes.quant_points()} <= {n for n, _, _ in ptx_hashes.points()}
    assert {"e4m3", "int8"} == {json.loads(q)["dtype"] for q in quant}
    assert {"tensor", "rowwise", "block"} == {json.loads(q)["scale"] for q in quant}


def test_spill_guard_reports_local_memory_of_a_spilling_config(no_tuned_db, monkeypatch):
    """The guard must be able to fail: 128 accumulators and a register-prefetched K step per
    thread (the mma_sync default of bf16 128x4096x14336 NT until 2026-12-02) spill at ptxas
    -O3 (mma_sync assembles this tile at -O2 now, which fits it: forced back to -O3 here)."""
    from deepgen.compiler.strategies import mma_sync

    monkeypatch.setattr(mma_sync, "PTXAS_OPT_LEVEL", 3)
    spec = dict(M=256, N=256, K=1024, dtype="bf16", layout="NT")
    spilling = {"strategy": "mma_sync", "BM": 128, "BN": 128, "BK": 64, "warps_m": 2,
                "warps_n": 2, "mma": "m16n8k16", "shared_stages": 3, "register_prefetch": True,
                "split_k": 4}
    name, strategy, local = spill_guard.local_memory(("x", spec, spilling))
    assert strategy == "mma_sync" and isinstance(local, dict) and local, local
    assert spill_guard.local_memory(("y", spec, None))[2] == {}
