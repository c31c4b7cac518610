"""GPU targets: the limits the passes and the config validator query instead of hard-coded numbers."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    name: str  # "sm_90a", "gfx942", ...
    backend: str  # "cuda" or "hip"
    warp_size: int
    max_threads_per_block: int
    max_shared_bytes_per_block: int  # with the opt-in dynamic limit raised
    max_registers_per_thread: int
    registers_per_sm: int
    max_vector_bytes: int  # widest single global/shared access
    multiprocessors: int  # SMs / CUs of a typical part (sizes the split-K heuristic)

    @property
    def is_nvidia(self) -> bool:
        return self.backend == "cuda"


_NVIDIA = {
    # name: (shared memory opt-in limit per block, ptx features)
    "sm_80": 163 * 1024,
    "sm_86": 99 * 1024,
    "sm_89": 99 * 1024,
    "sm_90": 227 * 1024,
    "sm_90a": 227 * 1024,
}
# name: (LDS per workgroup, CUs: one MI250X GCD / MI300X)
_AMD = {"gfx90a": (64 * 1024, 110), "gfx942": (64 * 1024, 304)}


def get_target(name: str) -> Target:
    if name in _NVIDIA:
        return Target(name, "cuda", 32, 1024, _NVIDIA[name], 255, 65536, 16, 132)
    if name in _AMD:
        # A wavefront is 64 lanes; 512 VGPRs x 64 lanes per SIMD, 4 SIMDs per CU.
        lds, cus = _AMD[name]
        return Target(name, "hip", 64, 1024, lds, 256, 131072, 16, cus)
    raise ValueError(f"target: unknown target {name!r}; known: {sorted(_NVIDIA) + sorted(_AMD)}")


def ptx_chip_features(target: Target) -> tuple[str, str]:
    """(chip, features) for #nvvm.target: PTX 8.0 is the first ISA that knows sm_90a."""
    return target.name, "+ptx80"


def amdgpu_features(target: Target) -> str:
    """Target-ID features of AMD code objects, chosen deliberately (LLVM's default is "any").

    sramecc+: MI200/MI300 parts run with SRAM ECC on, and a code object built sramecc- would
    not load there. xnack-: the ROCm default (HSA_XNACK unset), which lets LLVM schedule
    loads without XNACK replay constraints; a process run with HSA_XNACK=1 needs xnack+ or
    "any" code objects and the HIP loader would refuse this one (hipErrorNoBinaryForGpu)."""
    return "+sramecc,-xnack"
