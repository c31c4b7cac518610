"""deepgen.explain(a, b, ...): which kernel deepgen.gemm would run for these arguments, and why.

Walks the lookup deepgen.gemm makes, in its order, without compiling or running anything:

    DEEPGEN_DISABLE=1                -> torch ("disabled")
    loaded in this process           -> that kernel ("process")
    a preloaded bundle               -> the bundle's kernel ("bundle")
    config= given                    -> that config ("explicit")
    the tuned database, own entry    -> its config ("tuned"): the user's database, else the
                                        database shipped for this GPU (runtime/shipped_db.py)
    the tuned database, a neighbour  -> the nearest tuned shape's config ("tuned-neighbour")
    else                             -> the compiler's default heuristic ("heuristic")
    no compiler here                 -> torch's GEMM ("fallback")

and whether that kernel is in the disk cache already (else the call compiles it). When the
tuned database holds an entry for the spec with torch's time from the same run, the
explanation says which was faster (what deepgen.optimize routes by). Returns an Explanation;
print it (or look at it in a REPL) for the text.
"""
from __future__ import annotations

import dataclasses
import json

SOURCES = ("disabled", "process", "bundle", "explicit", "tuned", "tuned-neighbour",
           "heuristic", "fallback")


@dataclasses.dataclass
class Explanation:
    route: str                  # "deepgen" or "torch"
    source: str                 # one of SOURCES
    reason: str                 # one sentence
    spec: dict | None = None    # GemmSpec.to_dict() (leading dimensions folded into M)
    target: str | None = None
    strategy: str | None = None
    config: dict | None = None  # the full config (the strategy's resolution) when known
    cached: bool | None = None  # on disk in the kernel cache already (None: not known)
    tuned: dict | None = None   # the tuned database's entry: ms, baseline_ms, device, ...
    database: str | None = None  # "user <path>" or "shipped <path>": where the config came from

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        lines = [f"route:    {self.route} ({self.source})", f"reason:   {self.reason}"]
        if self.spec:
            s = self.spec
            epi = s.get("epilogue")
            lines.append(f"gemm:     M={s['M']} N={s['N']} K={s['K']} batch={s['batch']} "
                         f"{s['dtype']}->{s['out_dtype']} layout {s['layout']}"
                         + (f" epilogue {json.dumps(epi)}" if epi else "")
                         + (f" on {self.target}" if self.target else ""))
        if self.strategy:
            lines.append(f"strategy: {self.strategy}")
        if self.config:
            shown = {k: v for k, v in self.config.items() if k != "strategy"}
            lines.append(f"config:   {json.dumps(shown, sort_keys=True)}")
        if self.cached is not None:
            lines.append("cache:    " + ("compiled before (disk cache entry)" if self.cached
                                         else "not compiled yet: the first call compiles it"))
        if self.tuned:
            t = self.tuned
            if t.get("ms") and t.get("baseline_ms"):
                lines.append(f"measured: DeepGen {t['ms']:.4g} ms vs torch {t['baseline_ms']:.4g}"
                             f" ms ({t['baseline_ms'] / t['ms']:.2f}x) on {t.get('device')}"
                             + (f" ({t['origin']} database)" if t.get("origin") else ""))
        if self.database:
            lines.append(f"database: {self.database}")
        return "\n".join(lines)

    __repr__ = __str__


def explain(a, b, *, out=None, bias=None, activation=None, bias_dim: str = "col",
            config=None, target: str | None = None,
            device_name: str | None = None) -> Explanation:
    """What deepgen.gemm(a, b, out=..., bias=..., activation=..., bias_dim=...,
    config=...) would run. `target` (e.g. "sm_90a") stands in for the device's (so meta or CPU
    tensors can be explained), `device_name` (e.g. "NVIDIA H200") for the GPU's name, which
    picks the shipped tuned database (default: this process's device, or
    DEEPGEN_DEVICE_NAME). Argument errors are raised as deepgen.gemm raises them."""
    import torch

    from deepgen import api, build, fallback
    from deepgen.runtime import cache, tuned

    if fallback.disabled():
        return Explanation("torch", "disabled", "DEEPGEN_DISABLE is set: every deepgen.gemm "
                           "call runs torch's GEMM")
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dim() > 2 \
            and b.dim() == 2:
        a = a.reshape(-1, a.shape[-1])
        out = None if out is None else out.reshape(-1, out.shape[-1])
    if target is None:
        spec, _, _ = api.spec_for(a, b, out, bias=bias, activation=activation,
                                  bias_dim=bias_dim)
        target = api.target_of(a.get_device())
    else:
        with _any_device(api):
            spec, _, _ = api.spec_for(a, b, out, bias=bias, activation=activation,
                                      bias_dim=bias_dim)
    ex = Explanation("deepgen", "heuristic", "", spec.to_dict(), target)
    ex.tuned = _tuned_entry(spec, target, device_name)
    key = (spec, cache.canonical_json(config), target)
    loaded = api._by_spec.get(key)
    if loaded is api._NO_KERNEL:
        return _fallback(ex, "this process found no kernel and no compiler before")
    if loaded is not None:
        ex.source, ex.reason = "process", "a kernel for this spec is loaded in this process"
        return _with_config(ex, loaded.config, spec, target, None)
    art = cache.preloaded(spec.to_dict(), target, api._as_dict(config))
    if art is not None:
        ex.source, ex.reason = "bundle", "a preloaded bundle holds a kernel for this spec"
        return _with_config(ex, art.config, spec, target, None)
    if config is not None:
        ex.source, ex.reason = "explicit", "config= was given"
        cfg = api._as_dict(config)
    else:
        own = tuned.find(spec, target, device_name=device_name)
        cfg = None if own is None else own[0]
        if own is not None and own[1] == "user":
            ex.source, ex.database = "tuned", f"user {own[2]}"
            ex.reason = f"the user's tuned database ({own[2]}) has an entry for this spec"
        elif own is not None and own[1] == "shipped":
            ex.source, ex.database = "tuned", f"shipped {own[2]}"
            ex.reason = (f"the tuned database shipped for this GPU ({own[2]}) has an entry "
                         f"for this spec (the user's database has none)")
        else:
            cfg = build.tuned_config(spec, target)  # a neighbour's, validated (needs compiler)
            if cfg is not None:
                ex.source, ex.database = "tuned-neighbour", f"user {tuned.tuned_path()}"
                ex.reason = ("no tuned entry for this spec: the nearest tuned shape's config, "
                             "which validates for it")
            else:
                ex.reason = "no tuned config for this spec: the compiler's default heuristic"
    compiler = _compiler()
    if compiler is None:
        return _fallback(ex, "no compiler (deepgen.compiler and MLIR) here and no preloaded "
                             "bundle for this spec")
    ex = _with_config(ex, cfg, spec, target, compiler)
    try:
        parts = build.key_parts(spec, cfg, target, compiler)
        ex.cached = cache.entry_dir(cache.cache_key(parts)).exists()
    except Exception:  # noqa: BLE001  (a broken toolchain: not knowable, not fatal here)
        ex.cached = None
    return ex


def _fallback(ex: Explanation, why: str) -> Explanation:
    ex.route, ex.source, ex.strategy, ex.config, ex.cached = "torch", "fallback", None, None, None
    ex.reason = f"{why}: torch's GEMM runs (with a warning, once per process)"
    return ex


def _with_config(ex, cfg, spec, target, compiler) -> Explanation:
    """ex with the strategy and the full config of `cfg` (None: the default heuristic)."""
    compiler = compiler or _compiler()
    if compiler is None:
        ex.config = None if cfg is None else dict(cfg)
        ex.strategy = None if cfg is None else cfg.get("strategy")
        return ex
    from deepgen.compiler import strategies

    try:
        resolved = strategies.resolve(cfg, spec, target)
        ex.strategy, ex.config = strategies.strategy_of(resolved).name, resolved.to_dict()
    except (ValueError, TypeError) as e:
        ex.config = None if cfg is None else dict(cfg)
        ex.reason += f" (but it does not validate: {e})"
    return ex


def _compiler():
    try:
        from deepgen import compiler

        compiler.compile_artifact  # noqa: B018  (a stand-in without it counts as none)
        return compiler
    except (ImportError, AttributeError):
        return None


def _tuned_entry(spec, target, device_name=None) -> dict | None:
    """The tuned database's own entry for spec (ms, baseline_ms, device, origin), if any."""
    from deepgen.routing import database_entry

    return database_entry(spec, target, device_name)


class _any_device:
    """spec_for without its CUDA device check (explain with target= given)."""

    def __init__(self, api):
        self.api = api

    def __enter__(self):
        self.saved = self.api._check_devices
        self.api._check_devices = lambda tensors: None

    def __exit__(self, *exc):
        self.api._check_devices = self.saved
