"""gemv: decode-sized GEMMs (the smallest M) on CUDA cores, streaming B once with 16-byte
loads (config.py says how the kernel covers B; kernel.py builds it).

Pipeline: one DeepGen pass, deepgen-gemv, a kernel builder that replaces the deepgen.gemm
function with the kernel (and, with split_k > 1, deepgen-split-k's reduce kernel)."""
from __future__ import annotations

from deepgen.spec import GemmSpec

from ...target import Target
from ..base import Strategy
from . import config as _c
from .config import GemvConfig

PASSES = ["deepgen-gemv"]


class Gemv(Strategy):
    name = "gemv"
    config_class = GemvConfig
    config_module = _c
    passes = tuple(PASSES)
    summary = "small M: warps stream B with 16-byte loads, f32 sums, lane shuffles (NVIDIA)"

    def serves(self, spec: GemmSpec, target: Target) -> bool:
        return (target.is_nvidia and spec.M <= _c.MAX_M and not spec.allow_tf32
                and spec.dtype in ("f16", "bf16", "f32"))

    def preferred(self, spec: GemmSpec, target: Target) -> bool:
        """Whether the default heuristic takes gemv for `spec` (config.preferred)."""
        return self.serves(spec, target) and _c.preferred(spec, target)

    def default_config(self, spec: GemmSpec, target: Target) -> GemvConfig:
        cfg = _c.default(spec, target)
        _c.validate(cfg, spec, target)
        return cfg

    def complete(self, given: dict, spec: GemmSpec, target: Target) -> GemvConfig:
        cfg = _c.default(spec, target).replace(**given)
        if "split_k" not in given:
            cfg = _c.fit_split(cfg, spec, target)
        return cfg

    def load_passes(self) -> None:
        from . import kernel  # noqa: F401  (registers deepgen-gemv)


STRATEGY = Gemv()

__all__ = ["STRATEGY", "GemvConfig", "PASSES"]
