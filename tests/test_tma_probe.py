"""The TMA probe kernels (tests/gpu/tma_probe.py) on the CPU: the counterpart of
tests/gpu/test_tma_gpu.py. Each variant compiles through the NVIDIA backend to PTX with the
by-value 128-byte descriptor parameter, cp.async.bulk.tensor and the mbarrier protocol;
ptxas and nvJitLink assemble it; its artifact round-trips through a bundle with the tma param
and the cluster; make_bundle.py writes DIR/tma; and the launcher, against the fake driver,
encodes the descriptor the GPU test relies on (dims and strides innermost first, in bytes)."""
from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

from deepgen.compiler import backend_nvidia as bn
from deepgen.compiler.target import get_target
from deepgen.runtime.artifact import KernelArtifact

GPU_TESTS = Path(__file__).parent / "gpu"
sys.path.insert(0, str(GPU_TESTS))
import tma_probe  # noqa: E402

from test_runtime_signature import _build_fake, run_child  # noqa: E402

NAMES = list(tma_probe.VARIANTS)
SWIZZLE_CODE = {0: 0, 32: 1, 64: 2, 128: 3}  # CUtensorMapSwizzle


@pytest.fixture(scope="module")
def artifacts():
    return {name: tma_probe.compile_probe(v) for name, v in tma_probe.VARIANTS.items()}


@pytest.mark.parametrize("name", NAMES)
def test_ptx_has_the_descriptor_parameter_tma_and_mbarrier(artifacts, name):
    v, ptx = tma_probe.VARIANTS[name], artifacts[name].assembly
    entry = tma_probe.ENTRY
    # the descriptor: a by-value 128-byte __grid_constant__, its address taken in param space
    # (no copy to local memory), then a 64-bit pointer for `out`
    assert re.search(rf"\.param \.align 64 \.b8 {entry}_param_0\[128\]", ptx), ptx[:2000]
    assert re.search(rf"\.param \.u64 \.ptr \.align \d+ {entry}_param_1\b", ptx)
    assert re.search(rf"cvta\.param\.u64\s+%rd\d+, %rd\d+;", ptx)
    assert ".local" not in ptx and "__local_depot" not in ptx
    # shared memory: the box (1024-byte aligned for the 128-byte swizzle) and the mbarrier
    assert re.search(rf"\.shared \.align 1024 \.b8 tile\[{v.box_bytes}\]", ptx)
    assert re.search(r"\.shared \.align 8 \.(u|b)64 bar;", ptx)
    assert "mbarrier.init.shared.b64" in ptx
    assert "fence.mbarrier_init.release.cluster" in ptx
    assert re.search(rf"mbarrier\.arrive\.expect_tx\.shared\.b64 %rd\d+, \[bar\], %r\d+;", ptx)
    assert re.search(rf"mov\.b32\s+%r\d+, {v.box_bytes};", ptx)  # the expected tx bytes
    # one 2-D tile load, coordinates innermost (column) first, completing on the mbarrier
    loads = re.findall(r"cp\.async\.bulk\.tensor\.2d\.shared::cluster\.global\.tile"
                       r"\.mbarrier::complete_tx::bytes \[%rd\d+\], \[(%rd\d+), \{%r\d+, %r\d+\}\],"
                       r" \[bar\];", ptx)
    assert len(loads) == 1
    # the wait: try_wait.parity on phase 0 in a retry loop
    assert re.search(r"LAB_WAIT:\s*\n\s*mbarrier\.try_wait\.parity\.shared\.b64 P1, \[%r\d+\], 0,",
                     ptx)
    assert re.search(r"@P1 bra\.uni DONE;\s*\n\s*bra\.uni\s+LAB_WAIT;", ptx)
    # the copy out: 16-byte shared loads and global stores, one per thread and step
    steps = v.box_bytes // tma_probe.CHUNK // tma_probe.THREADS
    assert len(re.findall(r"ld\.shared\.v4\.b32", ptx)) == steps
    assert len(re.findall(r"st\.global\.v4\.b32", ptx)) == steps


@pytest.mark.parametrize("name", NAMES)
def test_ptxas_assembles_it_without_spills(artifacts, name):
    art, v = artifacts[name], tma_probe.VARIANTS[name]
    assert art.binary[:4] == b"\x7fELF"
    res = art.resources[tma_probe.ENTRY]
    assert res["spill_stores"] == 0 and res["stack_bytes"] == 0, res
    assert res["static_shared"] == v.box_bytes + 8, res  # the box + the mbarrier


@pytest.mark.skipif(bn.nvjitlink_module() is None,
                    reason="nvJitLink (nvidia-nvjitlink + cuda-bindings) missing")
def test_nvjitlink_assembles_it(artifacts):
    for name in NAMES:
        cubin, res = bn.nvjitlink(artifacts[name].assembly, get_target("sm_90a"))
        assert cubin[:4] == b"\x7fELF" and tma_probe.ENTRY in res


@pytest.mark.parametrize("name", NAMES)
def test_artifact_round_trips_with_the_tma_param_and_cluster(artifacts, name, tmp_path):
    art, v = artifacts[name], tma_probe.VARIANTS[name]
    art.save(tmp_path / name)
    back = KernelArtifact.load(tmp_path / name)
    assert back.binary == art.binary and back.assembly == art.assembly
    assert back.launches == art.launches
    (launch,) = back.launches
    assert launch.entry == tma_probe.ENTRY and launch.cluster == v.cluster
    assert launch.block == (tma_probe.THREADS, 1, 1) and launch.shared_bytes == 0
    a, out = launch.params
    assert (a.name, a.kind, a.operand, a.dtype, a.shape) == ("A", "tma", "A", v.dtype, ("M", "N"))
    assert (a.box, a.swizzle, a.element_strides, a.oob_fill) == (v.box, v.swizzle, (1, 1), "none")
    assert (out.name, out.kind, out.dtype) == ("out", "ptr", v.dtype)
    meta = json.loads((tmp_path / name / "kernel.json").read_text())
    assert meta["launches"][0]["params"][0]["kind"] == "tma"
    assert meta["launches"][0].get("cluster") == (list(v.cluster) if v.cluster else None)


@pytest.mark.parametrize("name", NAMES)
def test_grid_and_out_cover_the_tensor_in_whole_boxes_and_clusters(name):
    v = tma_probe.VARIANTS[name]
    art = KernelArtifact(backend="cuda", target="sm_90a", binary=b"X",
                         launches=[tma_probe.launch(v)], spec={}, config={})
    rows, cols = v.box
    cx = v.cluster[0] if v.cluster else 1
    for M, N in ((4 * rows, 6 * cols), (2 * rows + 5, 2 * cols + 24), (5, 8)):
        descs, tma, names = tma_probe.plan_inputs(art, {"M": M, "N": N})
        (entry, grid, block, shared, refs, cluster), = descs
        assert names == ["A", "out"] and refs == [("tma", 0), ("ptr", 1)]
        assert grid[0] % cx == 0 and grid[0] * cols >= N > (grid[0] - cx) * cols
        assert grid[1] == -(-M // rows) and grid[2] == 1
        assert tma_probe.out_shape(v, {"M": M, "N": N}) == (grid[1] * rows, grid[0] * cols)
        assert tma == [{"name": "A", "pointer": 0, "dtype": v.dtype, "dims": [M, N],
                        "strides": [N, 1], "box": list(v.box), "element_strides": [1, 1],
                        "swizzle": v.swizzle, "interleave": 0, "l2_promotion": 128,
                        "oob_fill": "none"}]


def _load_make_bundle():
    spec = importlib.util.spec_from_file_location("deepgen_tests_make_bundle_tma",
                                                  GPU_TESTS / "make_bundle.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_make_bundle_only_tma_writes_the_probes(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPGEN_CACHE_DIR", str(tmp_path / "cache"))
    mb = _load_make_bundle()
    assert mb.main([str(tmp_path / "b"), "--only", "tma"]) == 0
    made = sorted(p.name for p in (tmp_path / "b" / "tma").iterdir())
    assert made == sorted(NAMES)
    assert not [p for p in (tmp_path / "b" / "sweep").iterdir() if p.is_dir()]
    for name in NAMES:
        art = KernelArtifact.load(tmp_path / "b" / "tma" / name)
        assert art.launches[0].params[0].kind == "tma"
    one = mb.make_bundle(tmp_path / "c", "^bf16_sw0$", log=lambda line: None)
    assert one["tma"] == ["bf16_sw0"] and one["sweep"] == []


# -- the launcher packs the probe's signature (fake driver) ------------------------------------

@pytest.fixture(scope="module")
def fake_driver(tmp_path_factory) -> Path:
    return _build_fake(tmp_path_factory, "fake_cuda_tma")


def test_launcher_encodes_the_probe_descriptor(fake_driver, artifacts, tmp_path):
    for name in ("bf16_sw128", "f32_sw0", "bf16_sw128_cluster2"):
        artifacts[name].save(tmp_path / name)
    out = run_child(fake_driver, f"""
        sys.path.insert(0, {str(GPU_TESTS)!r})
        import tma_probe
        from deepgen.runtime.artifact import KernelArtifact
        result = {{}}
        for name in ("bf16_sw128", "f32_sw0", "bf16_sw128_cluster2"):
            fake.fake_clear()
            art = KernelArtifact.load({str(tmp_path)!r} + "/" + name)
            descs, tma, names = tma_probe.plan_inputs(art, {{"M": 133, "N": 152}})
            plan = _launcher.LaunchPlan("cuda", art.binary, 0, descs, tma)
            plan.launch_args(5, [0x10000, 0x20000], [])
            plan.launch_args(5, [0x10000, 0x20000], [])
            result[name] = {{"log": log(), "encodes": plan.tma_encodes}}
        print(json.dumps(result))
    """)
    for name, got in out.items():
        v = tma_probe.VARIANTS[name]
        rows, cols = v.box
        esize = tma_probe.ELEMENT_BYTES[v.dtype]
        dtype = {"bf16": 9, "f32": 7}[v.dtype]
        # dims and strides innermost first, strides in bytes (of dimension 1); box (cols, rows)
        encode = (f"encode #n type={dtype} rank=2 addr=0x10000 dims=152,133 "
                  f"strides={152 * esize} box={cols},{rows} elementstrides=1,1 interleave=0 "
                  f"swizzle={SWIZZLE_CODE[v.swizzle]} l2=2 oob=0")
        cx = v.cluster[0] if v.cluster else 1
        gx, gy = -(-152 // (cols * cx)) * cx, -(-133 // rows)
        if v.cluster:
            launch = (f"launchex {tma_probe.ENTRY} grid={gx},{gy},1 block=128,1,1 shared=0 "
                      f"stream=0x5 ctx=0x1000 attrs=1 cluster=2,1,1 args=tma#n@0x10000,0x20000")
        else:
            launch = (f"launch {tma_probe.ENTRY} grid={gx},{gy},1 block=128,1,1 shared=0 "
                      f"stream=0x5 ctx=0x1000 args=tma#n@0x10000,0x20000")
        assert got["encodes"] == 1
        lines = [re.sub(r"#\d+", "#n", l) for l in got["log"] if not l.startswith("load")]
        assert lines == [encode, launch, launch]  # encoded once for two launches
