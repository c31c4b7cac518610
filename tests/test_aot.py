"""AOT on the CPU (issue 17): deepgen precompile's bundle directory (preloaded on a host
without a compiler), and deepgen export's C library compiled with the system C compiler and
run against the fake CUDA driver (tests/fake_cuda): which cubin it loads, the TMA
descriptors it encodes at the actual M, the grid it computes from the rules, the arguments
it passes, and the errors it returns."""
from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys

import pytest
from deepgen.runtime import cache
from deepgen.runtime.artifact import KernelArtifact, Launch, Param, param_for, tma_param
from runtime_fakes import build_fake_cuda, run_with_fake_driver

from deepgen import aot, range_table
from deepgen.aot.export import rule_to_c
from deepgen.dims import Dim
from deepgen.errors import SpecError
from deepgen.spec import GemmSpec

CC = shutil.which("cc") or shutil.which("gcc")
needs_cc = pytest.mark.skipif(CC is None, reason="needs a C compiler (cc or gcc)")


def fake_range_kernel(spec: GemmSpec, entry: str, grid, workspace=0, cluster=None):
    """A range artifact with the wgmma kernel's signature shape (TMA A and B, C, alpha, beta,
    M) whose entry name tells the fake driver its parameter types."""
    params = (tma_param("A", "A", spec, (1, 128, 64)), tma_param("B", "B", spec, (1, 128, 64)),
              param_for("C", spec), param_for("alpha", spec), param_for("beta", spec))
    if workspace:
        params += (param_for("W", spec),)
    params += (param_for("M", spec),)
    launch = Launch(entry=entry, grid=grid, block=(384, 1, 1), shared_bytes=100000,
                    params=params, cluster=cluster)
    return KernelArtifact(backend="cuda", target="sm_90a", binary=b"FAKE " + entry.encode(),
                          launches=[launch], spec=spec.to_dict(), config={"fake": True},
                          workspace_bytes=workspace)


def test_rules_become_c():
    assert rule_to_c("min(cdiv(M, 128) * 32, 132)") == \
        "dg_min((dg_cdiv(M, INT64_C(128)) * INT64_C(32)), INT64_C(132))"
    assert rule_to_c("max(M, N, K) // 2") == "dg_div(dg_max(M, dg_max(N, K)), INT64_C(2))"
    assert rule_to_c(7) == "INT64_C(7)"


def test_range_specs_validate_before_compiling(monkeypatch):
    specs = aot.range_specs(4096, 1024, max_m=1000)
    assert [(s.M.min, s.M.max) for s in specs] == [(1, 16), (17, 64), (65, 256), (257, 1000)]
    assert aot.gemm_name(specs[0]) == "deepgen_gemm_bf16_nt_4096x1024"
    with pytest.raises(SpecError, match="dtype: must be one of"):
        aot.precompile([(64, 64)], dtype="f64")


def test_precompile_writes_bundles_a_host_without_compiler_preloads(tmp_path, monkeypatch):
    built = []

    def fake_compile(spec, target="sm_90a", config=None):
        built.append(spec)
        return fake_range_kernel(spec, "k_TTPFFI", ("cdiv(M, 128) * 2", 1, 1))

    monkeypatch.setattr(sys.modules["deepgen.aot.precompile"], "compile_range", fake_compile)
    entries = aot.precompile([(256, 128), (512, 128)], max_m=300, out=tmp_path / "b")
    assert len(entries) == len(built) == 8
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["max_m"] == 300 and len(manifest["entries"]) == 8
    cache.clear_memory()
    monkeypatch.setitem(sys.modules, "deepgen.compiler", None)
    try:
        arts = aot.preload_bundles(tmp_path / "b")
        assert len(arts) == 8 and range_table.max_m() == 300
        spec = GemmSpec(M=Dim(max=300, min=257), N=512, K=128, dtype="bf16", layout="NT")
        assert cache.preloaded(spec.to_dict(), "sm_90a") is not None
        assert range_table.range_spec(GemmSpec(M=280, N=512, K=128, dtype="bf16",
                                               layout="NT")) == spec
    finally:
        range_table.set_max_m(None)
        cache.clear_memory()


def _export(tmp_path):
    base = {"N": 256, "K": 128, "dtype": "bf16", "layout": "NT"}
    small = GemmSpec(M=Dim(max=64), **base)
    large = GemmSpec(M=Dim(max=1000, min=65), **base)
    gemm = [fake_range_kernel(small, "small_TTPFFI", ("cdiv(M, 64) * 2", 1, 1)),
            fake_range_kernel(large, "large_TTPFFI", ("min(cdiv(M, 128) * 2, 132)", 1, 1),
                              cluster=(2, 1, 1))]
    ws_spec = GemmSpec(M=Dim(max=512), N=64, K=64, dtype="f16", layout="NT")
    ws = [fake_range_kernel(ws_spec, "ws_TTPFFPI", ("cdiv(M, 128)", 1, 1),
                            workspace="M * N * 4")]
    out = aot.write_export(tmp_path / "exp", {"deepgen_gemm_bf16_nt_256x128": gemm,
                                              "deepgen_gemm_f16_nt_64x64": ws})
    return out


@needs_cc
def test_header_and_source_compile_warning_free(tmp_path):
    out = _export(tmp_path)
    header = (out / "deepgen_gemm.h").read_text()
    assert ("int deepgen_gemm_bf16_nt_256x128(const void *a, const void *b, void *c, "
            "int64_t M, float alpha, float beta, CUstream stream);") in header
    assert ("int deepgen_gemm_f16_nt_64x64(const void *a, const void *b, void *c, int64_t M, "
            "float alpha, float beta, void *workspace, CUstream stream);") in header
    assert "size_t deepgen_gemm_f16_nt_64x64_workspace_size(int64_t M);" in header
    subprocess.run([CC, "-std=c11", "-Wall", "-Wextra", "-Werror", "-c",
                    str(out / "deepgen_gemm.c"), "-o", str(tmp_path / "x.o")], check=True)
    cxx = shutil.which("c++") or shutil.which("g++")
    if cxx:  # the header from C++ too
        (tmp_path / "use.cc").write_text('#include "deepgen_gemm.h"\nint main() { '
                                         'return deepgen_load(".") == 0 ? 0 : 1; }\n')
        subprocess.run([cxx, "-Wall", "-Werror", "-I", str(out), "-c", str(tmp_path / "use.cc"),
                        "-o", str(tmp_path / "use.o")], check=True)
    assert "add_library(deepgen_gemm STATIC deepgen_gemm.c)" in (out / "CMakeLists.txt").read_text()


@needs_cc
def test_exported_library_runs_against_the_fake_driver(tmp_path):
    out = _export(tmp_path)
    lib = tmp_path / "libdg.so"
    subprocess.run([CC, "-std=c11", "-shared", "-fPIC", "-O1", str(out / "deepgen_gemm.c"),
                    "-o", str(lib), "-ldl"], check=True)
    driver = build_fake_cuda(tmp_path)
    result = run_with_fake_driver(driver, f"""
        import ctypes, json
        dg = ctypes.CDLL({str(lib)!r})
        fake = ctypes.CDLL("libcuda.so.1")
        fake.fake_log.restype = ctypes.c_char_p
        f = dg.deepgen_gemm_bf16_nt_256x128
        f.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int64, ctypes.c_float, ctypes.c_float,
                                              ctypes.c_void_p]
        out = {{"before": f(0x10000, 0x20000, 0x30000, 5, 1.0, 0.0, None)}}
        out["load"] = dg.deepgen_load({str(out)!r}.encode())
        out["small"] = f(0x10000, 0x20000, 0x30000, 5, 2.0, 0.5, 0x77)
        out["large"] = f(0x10000, 0x20000, 0x30000, 700, 1.0, 0.0, None)
        out["range"] = f(0x10000, 0x20000, 0x30000, 1001, 1.0, 0.0, None)
        ws = dg.deepgen_gemm_f16_nt_64x64_workspace_size
        ws.restype = ctypes.c_size_t
        ws.argtypes = [ctypes.c_int64]
        out["ws"] = [ws(10), ws(512)]
        g = dg.deepgen_gemm_f16_nt_64x64
        g.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int64, ctypes.c_float, ctypes.c_float,
                                              ctypes.c_void_p, ctypes.c_void_p]
        out["ws_call"] = g(0x10000, 0x20000, 0x30000, 200, 1.0, 0.0, 0x40000, None)
        dg.deepgen_unload()
        out["log"] = fake.fake_log().decode().splitlines()
        print(json.dumps(out))
    """)
    assert result["before"] == -2 and result["load"] == 0 and result["range"] == -1
    assert result["small"] == 0 and result["large"] == 0 and result["ws_call"] == 0
    assert result["ws"] == [10 * 64 * 4, 512 * 64 * 4]
    log = result["log"]
    loads = [line for line in log if line.startswith("load")]
    assert len(loads) == 3  # one module per range kernel
    assert any("setattr small_TTPFFI max_dynamic_shared=100000" in line for line in log)
    encodes = [line for line in log if line.startswith("encode")]
    # A at M = 5 (dims innermost first: K, M, batch; strides in bytes), B (K, N, batch)
    assert "type=9 rank=3" in encodes[0] and "dims=128,5,1 strides=256,1280" in encodes[0]
    assert "box=64,128,1" in encodes[0] and "swizzle=3 l2=2 oob=0" in encodes[0]
    assert "dims=128,256,1 strides=256,65536" in encodes[1]
    assert "dims=128,700,1 strides=256,179200" in encodes[2]
    launches = [line for line in log if line.startswith("launch")]
    small = next(line for line in launches if "small_TTPFFI" in line)
    assert "grid=2,1,1 block=384,1,1 shared=100000 stream=0x77" in small
    assert small.endswith("args=tma#1@0x10000,tma#2@0x20000,0x30000,2,0.5,5")
    large = next(line for line in launches if "large_TTPFFI" in line)
    assert large.startswith("launchex") and "grid=12,1,1" in large and "cluster=2,1,1" in large
    assert large.endswith(",700")
    ws = next(line for line in launches if "ws_TTPFFPI" in line)
    assert "grid=2,1,1" in ws and ws.endswith("0x30000,1,0,0x40000,200")


def test_export_refuses_exact_kernels(tmp_path):
    spec = GemmSpec(M=64, N=64, K=64, dtype="bf16", layout="NT")
    art = dataclasses.replace(fake_range_kernel(GemmSpec(M=Dim(max=64), N=64, K=64,
                                                         dtype="bf16", layout="NT"),
                                                "k_TTPFFI", (1, 1, 1)), spec=spec.to_dict())
    with pytest.raises(aot.ExportError, match="M must be a range"):
        aot.write_export(tmp_path, {"g": [art]})


def test_cli_commands_parse_and_name_bad_input(tmp_path, capsys):
    from deepgen import cli

    assert cli.main(["export", "64x64", "--dtype", "f64", "--out", str(tmp_path)]) == 2
    assert "dtype: must be one of" in capsys.readouterr().err
    assert cli.main(["precompile", "64x64", "--max-m", "0"]) == 2
    assert "max_m: must be an int >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["precompile", "64by64"])
    assert "expected NxK" in capsys.readouterr().err


def test_param_kinds_are_what_the_export_knows():
    # the exporter handles every kind a range kernel's signature can hold
    from deepgen.runtime.artifact import KINDS
    assert set(KINDS) == {"ptr", "workspace", "f32", "i32", "i64", "tma"}
    assert Param("M", "i32", value="M").value == "M"
