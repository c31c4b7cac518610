"""deepgen.optimize(model) and deepgen.optimizing(): DeepGen only where it was measured faster.

    model = deepgen.optimize(model)       # its nn.Linear layers route through the rule below
    with deepgen.optimizing():            # F.linear, torch.matmul / mm / bmm, @ in a block
        y = f(x)

The rule (`route`): a GEMM goes to deepgen.gemm only when the tuned database
($DEEPGEN_CACHE_DIR/tuned.json, `deepgen tune install`) holds an entry for the same N, K,
batch, dtype, out dtype and layout on this GPU (its target, and its device name when the
entry has one), with M in the same M range (RANGES: 1-16, 17-64, 65-256, 257-2048, 2049 and
up), and every such entry of that range has DeepGen faster than torch's time from the same
tune run (entry "baseline_ms", or derived from "baseline_tflops" for older entries; an entry
with neither never routes). Host cost counts: each side's time is at least its measured host
cost per call in eager mode (HOST_US: 15.5 us for deepgen.gemm, which OptimizedLinear calls,
and 14.7 us for torch.matmul, benchmarks/launch_overhead.py on the H200, 2026-12-02), so a
GEMM that is host-bound never routes unless DeepGen's host cost is the lower. The epilogue is not part of the match: a linear layer's bias is fused
into DeepGen's kernel (bias_dim "col") when the layer routes, and so is the activation module
that follows it in an nn.Sequential (ReLU, SiLU, GELU(approximate="tanh"), neither with hooks:
it is replaced by a FusedActivation and the layer applies it, in the epilogue or after torch's
F.linear). Everything else (CPU tensors, other dtypes or strides, shapes not in the
database, slower ones) stays with torch.

optimize(model) turns each nn.Linear that can win at some M into an OptimizedLinear (the same
module: same parameters, state_dict, hooks; only its forward differs; `restore(model)` turns
it back); a layer on the GPU whose N, K and dtype win in no M range of the database stays a
plain nn.Linear, so it costs nothing per call. OptimizedLinear decides once per form of call
(input shape, strides, dtype, device) and then pays one dict lookup per call.
OptimizedLinear works under torch.compile (DeepGen's op has a fake implementation; the rule
specializes on the shapes) and with autograd (deepgen.autograd). optimizing() is a
torch.overrides.TorchFunctionMode for eager code.
"""
from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

RANGES = ((1, 16), (17, 64), (65, 256), (257, 2048), (2049, math.inf))
# eager host cost per call, us (results/launch_overhead-h200-2026-12-02-issue18.json)
HOST_US = {"deepgen": 15.5, "torch": 14.7}
_DTYPES = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}

_db: dict = {"stamp": None, "groups": {}, "exact": {}}
_decisions: dict[tuple, bool] = {}


def m_range(M: int) -> tuple[int, float]:
    return next(r for r in RANGES if r[0] <= M <= r[1])


# -- the database ----------------------------------------------------------------------------

def _db_path(path=None) -> Path:
    from deepgen.runtime import tuned

    return Path(path) if path else tuned.tuned_path()


def _baseline_ms(entry: dict, flops: float) -> float | None:
    if entry.get("baseline_ms"):
        return float(entry["baseline_ms"])
    if entry.get("baseline_tflops"):
        return flops / (float(entry["baseline_tflops"]) * 1e12) * 1e3
    return None


def _load(path=None) -> dict:
    """{group key: [(M, ms, baseline_ms, target, device)]} and {exact key: entry}, once per
    version of the file."""
    from deepgen.spec import GemmSpec

    p = _db_path(path)
    try:
        st = p.stat()
        stamp = (str(p), st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = (str(p), None, None)
    if _db["stamp"] == stamp:
        return _db
    groups, exact = {}, {}
    if stamp[1] is not None:
        try:
            data = json.loads(p.read_text())
            entries = data.get("entries", []) if isinstance(data, dict) else []
        except (OSError, ValueError):
            entries = []  # deepgen.runtime.tuned warns about a broken file
        for e in entries:
            try:
                spec = GemmSpec.from_dict(e["spec"])
                ms = float(e["ms"]) if e.get("ms") else None
            except (KeyError, TypeError, ValueError):
                continue
            base = _baseline_ms(e, spec.flops)
            row = (spec.M, ms, base, e.get("target"), e.get("device"))
            groups.setdefault(_group(spec), []).append(row)
            exact[(_group(spec), spec.M, e.get("target"))] = {
                "ms": ms, "baseline_ms": base, "device": e.get("device"),
                "target": e.get("target"), "config": e.get("config")}
    _db.update(stamp=stamp, groups=groups, exact=exact)
    _decisions.clear()
    _linear_routes.clear()
    return _db


def _group(spec) -> tuple:
    return (spec.N, spec.K, spec.batch, spec.dtype, spec.out_dtype, spec.layout, spec.allow_tf32)


def database_entry(spec, target: str | None) -> dict | None:
    """The database's own entry for spec (epilogue aside): ms, baseline_ms, device, config."""
    db = _load()
    return db["exact"].get((_group(spec), spec.M, target)) or db["exact"].get(
        (_group(spec), spec.M, None))


def wins(spec, target: str, device_name: str | None = None, *, min_speedup: float = 1.0,
         host_us: dict | None = None) -> bool:
    """The rule: whether the database says DeepGen beats torch for spec's N, K, ... and M range
    on this GPU (see the module's docstring)."""
    host = HOST_US if host_us is None else host_us
    lo, hi = m_range(spec.M)
    rows = [r for r in _load()["groups"].get(_group(spec), ())
            if lo <= r[0] <= hi and r[3] in (target, None)
            and (device_name is None or r[4] is None or r[4] == device_name)]
    if not rows:
        return False
    for _, ms, base, _, _ in rows:
        if ms is None or base is None:
            return False
        dg = max(ms, host.get("deepgen", 0.0) * 1e-3)
        th = max(base, host.get("torch", 0.0) * 1e-3)
        if not dg * min_speedup < th:
            return False
    return True


# -- deciding per call -------------------------------------------------------------------------

def _layout(t: torch.Tensor) -> str | None:
    rows, cols = t.shape[-2], t.shape[-1]
    st = t.stride()
    if st[-1] == 1 and (st[-2] == cols or rows == 1):
        return "N"
    if st[-2] == 1 and (st[-1] == rows or cols == 1):
        return "T"
    return None


def _on_gpu(t: torch.Tensor) -> bool:
    return t.device.type == "cuda"


def decide(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether deepgen.gemm(a, b) should run (a (..., M, K) with b (K, N), or batched 3-D)."""
    if not _on_gpu(a) or b.device != a.device or a.dtype != b.dtype \
            or a.dtype not in _DTYPES or b.dim() not in (2, 3) or a.dim() < 2:
        return False
    if b.dim() == 3 and a.dim() != 3:
        return False
    if b.dim() == 2 and a.dim() > 2:
        if not a.is_contiguous():
            return False
        la, M, batch = "N", a.numel() // a.shape[-1], 1
    else:
        la, M, batch = _layout(a), a.shape[-2], (a.shape[0] if a.dim() == 3 else 1)
    lb = _layout(b)
    if la is None or lb is None or M < 1:
        return False
    dtype = _DTYPES[a.dtype]
    tf32 = dtype == "f32" and bool(torch.backends.cuda.matmul.allow_tf32)
    key = (M, b.shape[-1], a.shape[-1], batch, dtype, la + lb, tf32, a.device.index)
    found = _decisions.get(key)
    if found is None:
        found = _decide(key)
    return found


def _decide(key) -> bool:
    from deepgen.spec import GemmSpec, SpecError

    M, N, K, batch, dtype, layout, tf32, index = key
    try:
        spec = GemmSpec(M=M, N=N, K=K, batch=batch, dtype=dtype, layout=layout,
                        allow_tf32=tf32)
        target, name = _device(index or 0)
    except (SpecError, RuntimeError, AssertionError):
        found = False
    else:
        found = wins(spec, target, name)
    _decisions[key] = found
    return found


def _device(index: int) -> tuple[str, str | None]:
    from deepgen import api

    return api.target_of(index), torch.cuda.get_device_name(index)


# -- nn.Linear -----------------------------------------------------------------------------------

class OptimizedLinear(torch.nn.Linear):
    """nn.Linear whose forward runs deepgen.gemm (bias fused) where the rule says DeepGen wins;
    with `_deepgen_act` set (optimize fused the activation module after it), the activation
    too: in DeepGen's epilogue when routed, else torch's after F.linear."""

    _deepgen_act: str | None = None

    def forward(self, x):
        w = self.weight
        if torch.compiler.is_compiling():  # traced: decide on the (static) shapes
            route = x.dim() >= 2 and x.dtype == w.dtype and decide(x, w.t())
        else:  # eager: one dict lookup per call once a call of this form was decided
            key = (x.shape, x.stride(), x.dtype, x.device, w.shape, w.dtype)
            route = _linear_routes.get(key)
            if route is None:
                route = _linear_routes[key] = (x.dim() >= 2 and x.dtype == w.dtype
                                               and decide(x, w.t()))
        act = self._deepgen_act
        if route:
            from deepgen import api

            return api.gemm(x, w.t(), bias=self.bias, activation=act)
        y = F.linear(x, w, self.bias)
        return y if act is None else _TORCH_ACT[act](y)


_TORCH_ACT = {"relu": torch.relu, "silu": F.silu,
              "gelu_tanh": lambda y: F.gelu(y, approximate="tanh")}


class FusedActivation(torch.nn.Identity):
    """Stands where optimize() took an activation module that the OptimizedLinear before it
    now applies; `original` is the module (restore() puts it back)."""

    def __init__(self, original: torch.nn.Module):
        super().__init__()
        self.original = original


def _activation_of(m: torch.nn.Module) -> str | None:
    """The epilogue activation a module computes, when fusing it is safe (no hooks)."""
    if m._forward_hooks or m._forward_pre_hooks:
        return None
    if type(m) is torch.nn.ReLU:
        return "relu"
    if type(m) is torch.nn.SiLU:
        return "silu"
    if type(m) is torch.nn.GELU and m.approximate == "tanh":
        return "gelu_tanh"
    return None


def _fuse_activations(model: torch.nn.Module) -> int:
    """In every nn.Sequential, an OptimizedLinear (without hooks) followed by ReLU, SiLU or
    GELU(tanh) takes the activation into its epilogue (the Sequential's structure makes that
    safe: the layer's output feeds the activation alone). Returns the count fused."""
    fused = 0
    for seq in model.modules():
        if type(seq) is not torch.nn.Sequential:
            continue
        names = list(seq._modules)
        for first, second in itertools.pairwise(names):
            lin, nxt = seq._modules[first], seq._modules[second]
            if type(lin) is not OptimizedLinear or lin._deepgen_act is not None or \
                    lin._forward_hooks or lin._forward_pre_hooks:
                continue
            act = _activation_of(nxt)
            if act is not None:
                lin._deepgen_act = act
                seq._modules[second] = FusedActivation(nxt)
                fused += 1
    return fused


_linear_routes: dict[tuple, bool] = {}  # OptimizedLinear: the call's form -> decide's answer


def optimize(model: torch.nn.Module) -> torch.nn.Module:
    """Route model's nn.Linear layers (the model itself when it is one) through the rule; the
    same model, modified in place, is returned. DEEPGEN_DISABLE=1 leaves it unchanged."""
    from deepgen import fallback

    if fallback.disabled():
        return model
    reset()  # read the database again: it may have changed since the last decisions
    for m in model.modules():
        if type(m) is torch.nn.Linear and _may_win(m):
            m.__class__ = OptimizedLinear
    _fuse_activations(model)
    return model


def _may_win(linear: torch.nn.Linear) -> bool:
    """Whether the rule can route this layer at some M: False for a layer on a GPU whose N, K
    and dtype win in no M range of the database (it stays a plain nn.Linear: no routing cost
    per call); True for a layer not on a GPU yet (moved there later, it is decided per call)."""
    from deepgen.spec import GemmSpec, SpecError

    w = linear.weight
    if not _on_gpu(w):
        return True
    dtype = _DTYPES.get(w.dtype)
    if dtype is None:
        return False
    try:
        target, name = _device(w.device.index or 0)
    except (RuntimeError, AssertionError):
        return False
    N, K = linear.out_features, linear.in_features
    for tf32 in ((False, True) if dtype == "f32" else (False,)):
        group = (N, K, 1, dtype, dtype, "NT", tf32)
        for M in sorted({row[0] for row in _load()["groups"].get(group, ())}):
            try:
                spec = GemmSpec(M=M, N=N, K=K, dtype=dtype, layout="NT", allow_tf32=tf32)
            except SpecError:
                continue
            if wins(spec, target, name):
                return True
    return False


def restore(model: torch.nn.Module) -> torch.nn.Module:
    """Undo optimize(model)."""
    for seq in model.modules():
        for name, m in list(seq._modules.items()):
            if type(m) is FusedActivation:
                seq._modules[name] = m.original
    for m in model.modules():
        if type(m) is OptimizedLinear:
            m.__dict__.pop("_deepgen_act", None)
            m.__class__ = torch.nn.Linear
    return model


# -- functions: a TorchFunctionMode -------------------------------------------------------------

class optimizing(torch.overrides.TorchFunctionMode):
    """Within the block, F.linear, torch.matmul, torch.mm, torch.bmm and Tensor.__matmul__ go
    to deepgen.gemm where the rule says DeepGen wins (eager mode; for torch.compile, optimize
    the model instead)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        from deepgen import fallback

        if func in _ROUTED and not fallback.disabled():
            routed = _route_call(func, args, kwargs)
            if routed is not None:
                return routed
        return func(*args, **kwargs)


def _route_call(func, args, kwargs):
    from deepgen import api

    if kwargs.get("out") is not None:
        return None
    if func is F.linear:
        x, w = args[0], args[1]
        bias = args[2] if len(args) > 2 else kwargs.get("bias")
        if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.dtype != w.dtype or \
                w.dim() != 2 or (bias is not None and bias.dim() != 1):
            return None
        return api.gemm(x, w.t(), bias=bias) if decide(x, w.t()) else None
    if len(args) != 2 or kwargs:
        return None
    a, b = args
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
        return None
    if func is torch.mm and (a.dim() != 2 or b.dim() != 2):
        return None
    if func is torch.bmm and (a.dim() != 3 or b.dim() != 3):
        return None
    if a.dim() < 2 or b.dim() < 2 or (b.dim() == 3 and a.dim() != 3) or b.dim() > 3:
        return None
    return api.gemm(a, b) if decide(a, b) else None


_ROUTED = {F.linear, torch.matmul, torch.mm, torch.bmm, torch.Tensor.__matmul__,
           torch.Tensor.matmul, torch.Tensor.mm, torch.Tensor.bmm}


def reset() -> None:
    """Forget the decisions and the database read (tests; a new tuned.json is seen anyway)."""
    _decisions.clear()
    _linear_routes.clear()
    _db.update(stamp=None, groups={}, exact={})


__all__ = ["HOST_US", "RANGES", "FusedActivation", "OptimizedLinear", "database_entry",
           "decide", "m_range", "optimize", "optimizing", "reset", "restore", "wins"]
