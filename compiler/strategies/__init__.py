"""Strategies: one way each of turning a GEMM into a kernel, with its own config class and
its own pipeline (see base.py for what a strategy provides).

    STRATEGIES = {"simt": ..., "mma_sync": ...}
    choose(spec, target)            the default heuristic's strategy
    default_config(spec, target)    its default config (a strategy config)
    resolve(config, spec, target)   any accepted config input -> a validated strategy config

Accepted config inputs: a strategy config; a dict with "strategy" (fields left out follow from
the given ones); a flat TileConfig or a dict of its fields without "strategy" (the format of
tuned databases and bundles before strategies: "mma" other than "none", or a tensor-core
field set, means mma_sync, else simt; a partial dict is completed the same way); None or {}
(the default heuristic).

Adding a strategy adds a folder here and an entry below; what strategies share lives in
common.py (limits, fitting) and in compiler/passes/ (the GEMM affine description, split-K,
block swizzle, promotion to shared memory, vectorization and the epilogue, IR builders).
"""
from __future__ import annotations

from deepgen.spec import GemmSpec, SpecError

from ..config import TileConfig
from ..target import Target, get_target
from .base import Strategy, StrategyConfig
from .gemv import STRATEGY as _GEMV
from .gemv import GemvConfig
from .mma_sync import STRATEGY as _MMA_SYNC
from .mma_sync import MmaSyncConfig
from .simt import STRATEGY as _SIMT
from .simt import SimtConfig
from .wgmma import STRATEGY as _WGMMA
from .wgmma import WgmmaConfig

STRATEGIES: dict[str, Strategy] = {"simt": _SIMT, "mma_sync": _MMA_SYNC, "gemv": _GEMV}
# wgmma is never the default (choose): only an explicit {"strategy": "wgmma"} selects it.
STRATEGIES["wgmma"] = _WGMMA
# Flat (legacy) fields that only the tensor-core path has: setting one means mma_sync.
TENSOR_CORE_FIELDS = ("async_copy", "smem_swizzle", "epilogue_smem")


def get(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise SpecError(f"strategy: unknown strategy {name!r}; known: {sorted(STRATEGIES)}")
    return STRATEGIES[name]


def _target(target) -> Target:
    return get_target(target) if isinstance(target, str) else target


def strategy_of(cfg: StrategyConfig) -> Strategy:
    return get(cfg.strategy)


def choose(spec: GemmSpec, target: Target | str = "sm_90a") -> Strategy:
    """The default heuristic: wgmma for f16/bf16 GEMMs on sm_90a with enough output tiles
    (M >= 128, layouts NT/NN, TMA-alignable) or decode sizes against large weights (swap_ab,
    2 <= M <= 128: wgmma/config.py `preferred`), gemv for other decode-sized f16/bf16 NT/NN
    GEMMs (M <= 4, where the H200 measured it faster: gemv/config.py `preferred`), tensor
    cores (mma_sync) for f16/bf16/tf32 on NVIDIA sm_80+, SIMT otherwise (f32, AMD, older
    GPUs); fp8: wgmma; int8: wgmma on sm_90a, mma_sync (m16n8k32) on other sm_80+ GPUs."""
    target = _target(target)
    if spec.is_quantized:  # fp8, int8: wgmma (sm_90a, NT); int8 elsewhere: mma_sync (sm_80+, NT)
        if spec.is_int8 and not _WGMMA.serves(spec, target) and _MMA_SYNC.serves(spec, target):
            return _MMA_SYNC
        return _WGMMA  # its validate names what else it needs
    if _WGMMA.preferred(spec, target):  # first: its swap_ab takes M = 2..4 from gemv
        return _WGMMA
    if _GEMV.preferred(spec, target):
        return _GEMV
    return _MMA_SYNC if _MMA_SYNC.serves(spec, target) else _SIMT


def default_config(spec: GemmSpec, target: Target | str = "sm_90a") -> StrategyConfig:
    """The default heuristic's strategy and config for the shape (validated)."""
    target = _target(target)
    return choose(spec, target).default_config(spec, target)


def legacy_strategy(d: dict) -> str:
    """The strategy of a flat (pre-strategy) config dict."""
    if "mma" in d:
        return "simt" if d["mma"] == "none" else "mma_sync"
    return "mma_sync" if any(d.get(f) for f in TENSOR_CORE_FIELDS) else "simt"


def from_flat(tile: TileConfig) -> StrategyConfig:
    """The strategy config of flat lowering parameters (a whole TileConfig)."""
    return get("simt" if tile.mma == "none" else "mma_sync").from_flat(tile)


def from_dict(d: dict, spec: GemmSpec | None = None, target: Target | str = "sm_90a"
              ) -> StrategyConfig:
    """A strategy config from a dict: with "strategy", or flat (legacy). The fields given are
    kept; with `spec`, the others follow from them (the strategy's fitting), without it they
    take the config class's defaults."""
    d = dict(d)
    if "strategy" in d:
        strategy = get(d.pop("strategy"))
        given = strategy.config_class.from_dict(d)  # types checked, unknown fields named
        given = {k: getattr(given, k) for k in d}
    else:
        flat = TileConfig.from_dict(d)  # types checked against the flat fields
        strategy = get(legacy_strategy(d))
        if strategy.name == "simt":
            strategy.from_flat(flat)  # a tensor-core field with mma "none": named
        given = {k: getattr(flat, k) for k in d if k in strategy.config_class.field_names()}
    if spec is None:
        return strategy.config_class(**given)
    return strategy.complete(given, spec, _target(target))


def resolve(config, spec: GemmSpec, target: Target | str = "sm_90a") -> StrategyConfig:
    """Any accepted config input -> a strategy config, validated for spec and target."""
    target = _target(target)
    if config is None or (isinstance(config, dict) and not config):
        cfg = default_config(spec, target)
    elif isinstance(config, StrategyConfig):
        cfg = config
    elif isinstance(config, TileConfig):
        cfg = from_flat(config)
    elif isinstance(config, dict):
        cfg = from_dict(config, spec, target)
    else:
        raise SpecError(f"config: expected a strategy config, a dict or None, got "
                        f"{type(config).__name__}")
    strategy_of(cfg).validate(cfg, spec, target)
    return cfg


def validate(cfg, spec: GemmSpec, target: Target | str = "sm_90a") -> None:
    """SpecError naming the field and the limit; `cfg` a strategy config or a flat TileConfig."""
    if isinstance(cfg, TileConfig):
        cfg = from_flat(cfg)
    strategy_of(cfg).validate(cfg, spec, _target(target))


def load_passes() -> None:
    """Register the strategies' own passes (imports their pass modules, which need MLIR)."""
    for strategy in STRATEGIES.values():
        strategy.load_passes()


def estimates(cfg, spec: GemmSpec) -> dict:
    if isinstance(cfg, TileConfig):
        cfg = from_flat(cfg)
    return strategy_of(cfg).estimates(cfg, spec)


__all__ = ["STRATEGIES", "Strategy", "StrategyConfig", "SimtConfig", "MmaSyncConfig", "GemvConfig", "WgmmaConfig", "get",
           "choose", "default_config", "resolve", "validate", "estimates", "from_dict",
           "from_flat", "legacy_strategy", "strategy_of", "load_passes"]
