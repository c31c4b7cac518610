"""Range kernels (issue 17): the strategy and config of a spec whose M is a range
(deepgen.dims.Dim), checked before any MLIR is built.

A range kernel takes M as an i32 argument; its grid is a size rule over M evaluated at launch
and its stores are guarded by the actual M (TMA descriptors are encoded at launch from the
actual tensors, so the rows beyond M arrive as zeros). It is planned for M = max
(GemmSpec.planning: the config heuristics and validation see that spec).

Built: the wgmma strategy (sm_90a), batch 1, without swap_ab and split-K (swap_ab's tile runs
over M as wgmma's N; split-K's workspace is sized by M). mma_sync, simt and gemv get a
SpecError saying a range M is not built for them yet. The default for a range is wgmma's
default at M = max, or, where that is swap_ab or split-K (decode sizes), a cooperative
64-row tile (M <= 64) or 128-row tile.
"""
from __future__ import annotations

from deepgen.spec import GemmSpec, SpecError

from . import strategies
from .target import Target

RANGE_STRATEGIES = ("wgmma",)


def _check_range_config(cfg) -> None:
    if cfg.strategy not in RANGE_STRATEGIES:
        raise SpecError(f"M: a range M is not built for the {cfg.strategy} strategy yet "
                        f"(built: {', '.join(RANGE_STRATEGIES)}); give an int M, or a "
                        f"wgmma config on sm_90a")
    if cfg.swap_ab:
        raise SpecError("swap_ab: with a range M (M is wgmma's N there): not built; use "
                        "swap_ab False")
    if cfg.split_k > 1:
        raise SpecError(f"split_k: {cfg.split_k} with a range M (its workspace is sized by M): "
                        f"not built; use split_k 1")


def range_default(plan: GemmSpec, target: Target):
    """The wgmma config of a range planned at `plan` (M = max): the strategy's default, or
    a cooperative tile where that default is swap_ab, split-K or the narrow decode tile
    (narrow_config: measured at exact M only)."""
    from .strategies.wgmma import config as wc

    # the direct epilogue: the TMA epilogue is not yet checked on a GPU with a range M
    cfg = wc.default_config(plan, target, tma_epilogue=False)
    if cfg.swap_ab or cfg.split_k > 1 or cfg == wc.narrow_config(plan, target):
        step = 8 if plan.b_transposed else wc.SWIZZLE // wc.DTYPE_BYTES[plan.dtype]
        bn = 128 if plan.N >= 128 else max(step, -(-plan.N // step) * step)
        cfg = wc.WgmmaConfig(BM=64 if plan.M <= 64 else 128, BN=bn, BK=wc.span_k(plan),
                             consumers=1, stages=4)
    return cfg


def resolve(config, spec: GemmSpec, target: Target):
    """The validated strategy config of a range spec (SpecError naming the field and why
    when the strategy or config does not build ranges)."""
    plan = spec.planning()
    if config is None or (isinstance(config, dict) and not config):
        wgmma = strategies.get("wgmma")
        if not wgmma.serves(plan, target):
            raise SpecError(
                f"M: a range M is built for the wgmma strategy only (sm_90a; f16, bf16, fp8, "
                f"or f32 with allow_tf32; rows TMA can load: 16-byte pitches), which does not "
                f"serve {plan.dtype} {plan.layout} N={plan.N} K={plan.K} on {target.name}; "
                f"give an int M")
        cfg = range_default(plan, target)
        _check_range_config(cfg)
        wgmma.validate(cfg, plan, target)
        return cfg
    if isinstance(config, dict) and config.get("strategy", "wgmma") not in RANGE_STRATEGIES:
        raise SpecError(f"M: a range M is not built for the {config['strategy']} strategy yet "
                        f"(built: {', '.join(RANGE_STRATEGIES)}); give an int M")
    cfg = strategies.resolve(config, plan, target)
    _check_range_config(cfg)
    return cfg
