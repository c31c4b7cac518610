"""The NVIDIA backend: DeepGen's kernels after its passes -> NVVM (upstream MLIR) -> PTX
(`gpu-module-to-binary{format=isa}`, LLVM's NVPTX back end) -> cubin, with the resources of
every entry (registers, spills, stack, static shared memory) read from the assembler's log.

The twin of backend_amdgpu.py; `build_cubin` is the one entry point compile_artifact calls.

PTX -> cubin has two assemblers:
- `ptxas` (the default): the subprocess, whole-program compilation, `-O3 -v`.
- `nvjitlink`: in process through nvJitLink (PyPI `nvidia-nvjitlink`, through
  `cuda.bindings.nvjitlink`). nvJitLink assembles PTX as *relocatable* device code (as
  `ptxas -c` does), which is not the same code: at bf16 4096^3 (256x128x64) it spills 12 bytes
  and reserves 16 bytes more shared memory where `ptxas` spills nothing, and measured here it
  is not faster than the subprocess (2026-12-01: 0.56-0.67 s against 0.48-0.62 s). So it is
  only used when asked: DEEPGEN_ASSEMBLER=nvjitlink (or "auto": nvJitLink when it is
  installed, else ptxas). When nvJitLink is asked for but does not load, ptxas is the fallback.
`assembler()` says which one compiles here (deepgen.toolchain.cubin_assembler decides, without
loading anything); `deepgen doctor` prints it and the toolchain versions (part of the kernel
cache key) name it.
"""
from __future__ import annotations

import functools
import re
import subprocess
import tempfile
from pathlib import Path

from mlir import ir

from .driver import CompileError, StageLog, run_pipeline, run_stage
from .target import Target

# Canonicalization walks bottom-up (top-down=false): on the unrolled tensor-core kernels the
# default top-down walk took 0.10 s of the first canonicalize's 0.11 s, for the same PTX
# (benchmarks/ptx_hashes.py: every kernel byte-identical).
NVVM_LOWERING = [
    "canonicalize{top-down=false}",
    "cse",
    "expand-strided-metadata",
    "lower-affine",
    "convert-scf-to-cf",
    "convert-nvgpu-to-nvvm",
    "gpu.module(convert-gpu-to-nvvm{use-bare-ptr-memref-call-conv=1})",
    "gpu.module(convert-vector-to-llvm,convert-ub-to-llvm)",
    "reconcile-unrealized-casts",
    "gpu.module(canonicalize{top-down=false},cse)",
]

PTXAS_FLAGS = ("-O3", "-v")  # -O<n> is replaced by the strategy's opt_level (see assemble)


# ---------------------------------------------------------------------------------------------
# PTX


def serialize(module: ir.Module, fmt: str) -> bytes:
    """Run gpu-module-to-binary{format=fmt} on `module` (in place) and return the object."""
    from mlir.dialects import gpu

    run_stage(module, f"gpu-module-to-binary{{format={fmt}}}")
    for op in module.body.operations:
        if op.operation.name == "gpu.binary":
            return gpu.ObjectAttr(ir.ArrayAttr(op.attributes["objects"])[0]).object
    raise CompileError("gpu-module-to-binary", "no gpu.binary in the module")


def llvm_ir(module: ir.Module) -> str:
    """The kernels as LLVM IR text (bitcode from a copy of the module, read by llvmlite)."""
    import llvmlite.binding as llvm

    return str(llvm.parse_bitcode(serialize(ir.Module.parse(str(module)), "llvm")))


def to_ptx(module: ir.Module) -> str:
    return serialize(module, "isa").decode()


# ---------------------------------------------------------------------------------------------
# PTX -> cubin


def ptxas(ptx: str, target: Target, opt_level: int = 3) -> tuple[bytes, dict]:
    """Assemble PTX to a cubin at `ptxas -O<opt_level>`; returns (cubin, resources per entry
    from `ptxas -v`)."""
    from deepgen.toolchain import find_ptxas

    exe = find_ptxas()
    if exe is None:
        raise CompileError("ptxas", "ptxas not found: pip install nvidia-cuda-nvcc "
                                    "(or set DEEPGEN_PTXAS); `deepgen doctor` checks the toolchain")
    with tempfile.TemporaryDirectory(prefix="deepgen-ptxas-") as tmp:
        src, out = Path(tmp) / "k.ptx", Path(tmp) / "k.cubin"
        src.write_text(ptx)
        proc = subprocess.run([str(exe), f"-arch={target.name}", *ptxas_flags(opt_level),
                               str(src), "-o", str(out)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise CompileError("ptxas", proc.stderr.strip()[-4000:])
        cubin = out.read_bytes()
    return cubin, parse_ptxas_resources(proc.stderr)


@functools.lru_cache(maxsize=1)
def nvjitlink_module():
    """`cuda.bindings.nvjitlink` when it imports and its library loads, else None (once)."""
    try:
        from cuda.bindings import nvjitlink

        nvjitlink.version()  # loads libnvJitLink.so (PyPI nvidia-nvjitlink)
        return nvjitlink
    except Exception:  # not installed, or the shared library is missing
        return None


def nvjitlink_version() -> str | None:
    nvj = nvjitlink_module()
    return ".".join(map(str, nvj.version())) if nvj is not None else None


def ptxas_flags(opt_level: int = 3) -> tuple[str, ...]:
    """PTXAS_FLAGS with the optimization level `opt_level` (0 to 3; ptxas's default is 3)."""
    if opt_level not in (0, 1, 2, 3):
        raise CompileError("ptxas", f"ptxas optimization level must be 0 to 3, got {opt_level!r}")
    return tuple(f"-O{opt_level}" if f.startswith("-O") else f for f in PTXAS_FLAGS)


def nvjitlink(ptx: str, target: Target, opt_level: int = 3) -> tuple[bytes, dict]:
    """PTX -> cubin in process through nvJitLink (relocatable code, see the module's note);
    returns (cubin, resources per entry from the ptxas info log, as `ptxas -v` prints it)."""
    nvj = nvjitlink_module()
    if nvj is None:
        raise CompileError("nvjitlink", "nvJitLink not available: pip install nvidia-nvjitlink "
                                        "cuda-bindings")
    options = [f"-arch={target.name}", ptxas_flags(opt_level)[0], "-Xptxas=-v"]
    handle = nvj.create(len(options), options)
    try:
        data = ptx.encode()
        try:
            nvj.add_data(handle, nvj.InputType.PTX, data, len(data), "kernel.ptx")
            nvj.complete(handle)
        except nvj.nvJitLinkError as e:
            raise CompileError("nvjitlink", f"{e}: {_nvjitlink_log(nvj, handle, error=True)}") \
                from None
        cubin = bytearray(nvj.get_linked_cubin_size(handle))
        nvj.get_linked_cubin(handle, cubin)
        info = _nvjitlink_log(nvj, handle, error=False)
    finally:
        nvj.destroy(handle)
    return bytes(cubin), parse_ptxas_resources(info)


def _nvjitlink_log(nvj, handle, error: bool) -> str:
    size = (nvj.get_error_log_size if error else nvj.get_info_log_size)(handle)
    buf = bytearray(size)
    if size:
        (nvj.get_error_log if error else nvj.get_info_log)(handle, buf)
    return buf.decode(errors="replace").rstrip("\0").strip()


def assembler() -> str:
    """The assembler PTX -> cubin goes through here (deepgen.toolchain.cubin_assembler: ptxas
    unless DEEPGEN_ASSEMBLER asks for nvJitLink), ptxas when nvJitLink fails to load."""
    from deepgen.toolchain import cubin_assembler

    if cubin_assembler()[0] == "nvjitlink" and nvjitlink_module() is not None:
        return "nvjitlink"
    return "ptxas"


def assemble(ptx: str, target: Target, opt_level: int = 3) -> tuple[bytes, dict]:
    """PTX -> (cubin, resources per entry) through `assembler()`, at -O<opt_level> (a
    strategy's Strategy.ptxas_opt_level: the assembler's time grows with the optimization
    level on kernels near the register limit, see compiler/strategies/mma_sync)."""
    return (nvjitlink if assembler() == "nvjitlink" else ptxas)(ptx, target, opt_level=opt_level)


def parse_ptxas_resources(log: str) -> dict:
    """Resources per entry from a `ptxas -v` log (nvJitLink's info log has the same lines)."""
    res, entry = {}, None
    for line in log.splitlines():
        m = re.search(r"Compiling entry function '(\S+)'", line) or \
            re.search(r"Function properties for (\S+)", line)
        if m:
            entry = m.group(1)
            res.setdefault(entry, {"registers": 0, "spill_stores": 0, "spill_loads": 0,
                                   "stack_bytes": 0, "static_shared": 0})
            continue
        if entry is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            res[entry].update(stack_bytes=int(m.group(1)), spill_stores=int(m.group(2)),
                              spill_loads=int(m.group(3)))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            res[entry]["registers"] = int(m.group(1))
        m = re.search(r"(\d+) bytes smem", line)
        if m:
            res[entry]["static_shared"] = int(m.group(1))
    return res


# ---------------------------------------------------------------------------------------------


def build_cubin(module: ir.Module, target: Target, log: StageLog | None,
                start: int, extra=(), finish=None, ptxas_opt: int = 3) -> tuple[bytes, dict, str]:
    """The module after DeepGen's passes -> (cubin, resources per entry, PTX).

    `extra`: stages after NVVM_LOWERING (a kernel builder's, e.g. convert-nvvm-to-llvm for
    the mbarrier and wgmma ops that expand to inline PTX); `finish(module)`: an edit of the
    lowered module before translation (e.g. by-value grid-constant TMA descriptors);
    `ptxas_opt`: the assembler's optimization level."""
    run_pipeline(module, NVVM_LOWERING + list(extra), log, start=start)
    if finish is not None:
        finish(module)
        module.operation.verify()
    if log is not None and log.want_llvm_ir:
        log.llvm_ir = llvm_ir(module)
    ptx = to_ptx(module)
    cubin, resources = assemble(ptx, target, opt_level=ptxas_opt)
    return cubin, resources, ptx
