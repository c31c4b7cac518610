"""wgmma: Hopper tensor cores (sm_90a) through a kernel builder rather than passes: TMA loads
into 128-byte-swizzled shared tiles in an mbarrier ring, a producer warpgroup and consumer
warpgroups (setmaxnreg), wgmma.mma_async with the accumulator in registers, the EpilogueSpec
chain on the way out (./kernel.py; the builder layer in ./builders.py).

The default heuristic takes it where the H200 measured it faster than mma_sync: enough
output tiles of a measured tile shape, M >= 128 (config.preferred_tile), and decode sizes
(8 <= M <= 128 against N, K >= 4096) with swap_ab and split-K (config.preferred_swap);
elsewhere an explicit {"strategy": "wgmma"} config selects it."""
from __future__ import annotations

from deepgen.spec import GemmSpec

from ...target import Target
from ..base import Strategy
from . import config as _c
from .config import WgmmaConfig


class Wgmma(Strategy):
    name = "wgmma"
    config_class = WgmmaConfig
    config_module = _c
    passes = ()  # no DeepGen passes: build_module emits the kernel
    summary = "Hopper: TMA + mbarrier ring, warp-specialized wgmma (sm_90a, f16/bf16, tf32, fp8, int8)"
    builds_kernel = True  # a kernel builder: build_module / launches / lowering hooks

    def serves(self, spec: GemmSpec, target: Target) -> bool:
        if (_c.is_tf32(spec) or _c.is_quantized(spec)) and spec.layout != "NT":
            return False  # tf32, fp8 and int8 wgmma: K-major operands only
        return (target.name == "sm_90a" and _c.dtype_problem(spec) is None
                and spec.layout in _c.BUILT_LAYOUTS and _c.tma_problem(spec) is None)

    def preferred(self, spec: GemmSpec, target: Target) -> bool:
        """Whether the default heuristic takes wgmma for `spec` (see config.preferred)."""
        return self.serves(spec, target) and _c.preferred(spec)

    def default_config(self, spec: GemmSpec, target: Target) -> WgmmaConfig:
        cfg = _c.default_config(spec, target)
        _c.validate(cfg, spec, target)
        return cfg

    def complete(self, given: dict, spec: GemmSpec, target: Target) -> WgmmaConfig:
        """The given fields over the default; swap_ab given: over swap_config, with split_k
        refitted to the tile unless given too."""
        if not given.get("swap_ab"):
            return _c.complete(given, spec, target)
        cfg = _c.swap_config(spec, target, ctas_per_sm=given.get("ctas_per_sm", 1)
                             ).replace(**given)
        return cfg if "split_k" in given else _c.fit_split_k(cfg, spec, target)

    # -- the kernel builder's hooks (compiler/driver.py) ---------------------------------------

    def build_module(self, spec: GemmSpec, cfg: WgmmaConfig, target: str):
        from .kernel import build_module
        return build_module(spec, cfg, target)

    def launches(self, spec: GemmSpec, cfg: WgmmaConfig) -> list:
        from .kernel import launches
        return launches(cfg, spec)

    def workspace_bytes(self, spec: GemmSpec, cfg: WgmmaConfig) -> int:
        from .kernel import workspace_bytes
        return workspace_bytes(cfg, spec)

    def extra_lowering(self, cfg: WgmmaConfig) -> list[str]:
        from .kernel import EXTRA_LOWERING
        return list(EXTRA_LOWERING)

    def finish_lowered(self, module, cfg: WgmmaConfig) -> None:
        from .kernel import finish_lowered
        finish_lowered(module, cfg)

    def finish_binary(self, binary: bytes, cfg: WgmmaConfig) -> bytes:
        if not cfg.ffma_yield:
            return binary
        from ...sass_yield import interleave
        return interleave(binary)[0]


STRATEGY = Wgmma()

__all__ = ["STRATEGY", "WgmmaConfig"]
