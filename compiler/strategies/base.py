"""What a strategy is, and the config base class every strategy's config derives from.

A strategy (one folder under compiler/strategies/, one entry of STRATEGIES) provides:

    name                   "simt", "mma_sync", ...: the `strategy` field of its configs
    config_class           its config dataclass (a StrategyConfig): its own fields only
    serves(spec, target)   whether it can compile `spec` for `target` at all
    default_config(spec, target)   its own default heuristic (validated)
    complete(given, spec, target)  a config from a partial dict: the given fields are kept,
                           the others follow from them (the strategy's fitting logic)
    validate(cfg, spec, target)    SpecError naming the field and the limit
    estimates(cfg, spec)   {"shared_bytes": ..., "registers": ...} (what validate checks)
                           (both: those of its config module, `config_module`)
    pipeline(cfg)          the DeepGen pass names that lower it (`passes`; none: a builder)
    legacy_keys            legacy tuning-config keys -> its fields, where it has any

A kernel builder (builds_kernel = True, e.g. wgmma) emits its kernel directly instead of
lowering the deepgen.gemm op through passes; it provides instead of the flat lowering:
    build_module(spec, cfg, target)   the module holding its gpu.module
    launches(spec, cfg)               its launches with their typed signature (tma params)
    workspace_bytes(spec, cfg)        the scratch buffer W its launches share (0: none)
    extra_lowering(cfg)               stages after the backend's NVVM lowering
    finish_lowered(module, cfg)       an edit of the lowered module (grid-constant params)
    finish_binary(binary, cfg)        an edit of the cubin (yield hints on promotion FFMAs)

As IREE puts one lowering-pipeline enum on a dispatch's translation info, the strategy is a
field of the config (`strategy: "mma_sync"`), chosen by the default heuristic when none is
given, and it alone decides the passes that run. The shared passes (compiler/passes/) read the
flat lowering parameters (compiler.config.TileConfig) that `cfg.lowering()` produces.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from deepgen.spec import GemmSpec, SpecError

from ..config import TileConfig, check_fields
from ..target import Target


@dataclass(frozen=True)
class StrategyConfig:
    """Base of the strategies' configs: typed from_dict, to_dict with "strategy", replace."""
    strategy: ClassVar[str] = ""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, d: dict):
        if d.get("strategy", cls.strategy) != cls.strategy:
            raise SpecError(f"strategy: {d['strategy']!r} is not {cls.strategy!r}")
        d = {k: v for k, v in d.items() if k != "strategy"}
        return cls(**check_fields(cls, d, f"{cls.strategy} config"))

    def to_dict(self) -> dict:
        return {"strategy": self.strategy, **dataclasses.asdict(self)}

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def lowering(self) -> TileConfig:
        """The flat lowering parameters the shared passes read (the module's tile attribute)."""
        raise NotImplementedError


class Strategy:
    name: str = ""
    config_class: type = StrategyConfig
    summary: str = ""
    legacy_keys: dict = {}
    builds_kernel: bool = False
    # the strategy's config module: its validate(cfg, spec, target) and estimates(cfg, spec)
    # serve validate/estimates below; `passes` is what pipeline returns (none: a builder)
    config_module = None
    passes: tuple[str, ...] = ()

    def serves(self, spec: GemmSpec, target: Target) -> bool:
        raise NotImplementedError

    def default_config(self, spec: GemmSpec, target: Target) -> StrategyConfig:
        raise NotImplementedError

    def complete(self, given: dict, spec: GemmSpec, target: Target) -> StrategyConfig:
        raise NotImplementedError

    def validate(self, cfg: StrategyConfig, spec: GemmSpec, target: Target) -> None:
        self.config_module.validate(cfg, spec, target)

    def estimates(self, cfg: StrategyConfig, spec: GemmSpec) -> dict:
        return self.config_module.estimates(cfg, spec)

    def pipeline(self, cfg: StrategyConfig) -> list[str]:
        return list(self.passes)

    def load_passes(self) -> None:
        """Import the modules that register this strategy's own passes (none by default)."""

    def ptxas_opt_level(self, cfg: StrategyConfig) -> int:
        """The optimization level PTX -> cubin runs at (ptxas -O<n>; NVIDIA only)."""
        return 3

    def finish_binary(self, binary: bytes, cfg: StrategyConfig) -> bytes:
        """An edit of the assembled binary (wgmma: yield hints in the SASS); none by default."""
        return binary

    def workspace_bytes(self, spec: GemmSpec, cfg: StrategyConfig) -> int:
        """Bytes of the workspace a kernel builder's launches take (split-K partials)."""
        return 0

    def from_flat(self, tile: TileConfig) -> StrategyConfig:
        """This strategy's config from flat (legacy) lowering parameters."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<strategy {self.name}>"
