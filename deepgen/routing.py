"""deepgen.optimize(model) and deepgen.optimizing(): DeepGen only where it was measured faster.

    model = deepgen.optimize(model)       # its nn.Linear layers route through the rule below
    with deepgen.optimizing():            # F.linear, torch.matmul / mm / bmm, @ in a block
        y = f(x)

The rule (`route_of`): a GEMM goes to deepgen.gemm only when the tuned database (the user's,
$DEEPGEN_CACHE_DIR/tuned.json from `deepgen tune install`; where it has no entry in that M
range, the database shipped for this GPU, runtime/shipped_db.py, used only when the GPU's
target and device name match the shipped file's) holds an entry for the same N, K,
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
F.linear). Range kernels (issue 17): where the database holds a range entry (its
spec's M a deepgen.dims.Dim) whose range spec is the one deepgen.gemm(dynamic_m=True) runs for
the call's M (deepgen.range_table.range_spec) and every measured point of it ("points":
[{M, ms, baseline_ms}], else its "ms" / "baseline_ms" at "M_measured" or the range's
maximum) beats torch, host cost counted (HOST_US["deepgen_range"]), that M range routes to
the range kernel (`range_wins`): a new M within it compiles nothing. Everything else (CPU tensors, other dtypes or strides, shapes not in the
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
# deepgen_range: + 0.28 us for a range kernel (results/dynamic_m_bench-h200-2026-12-02.json:
# deepgen.gemm 11.23 us exact vs 11.51 us dynamic_m per call)
HOST_US = {"deepgen": 15.5, "deepgen_range": 15.8, "torch": 14.7}
_DTYPES = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}

_db: dict = {"stamp": None, "groups": {}, "ranges": {}, "exact": {}}
_decisions: dict[tuple, object] = {}


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


def _user_entries(p: Path, stamp) -> list[dict]:
    if stamp[1] is None:
        return []
    try:
        data = json.loads(p.read_text())
        return data.get("entries", []) if isinstance(data, dict) else []
    except (OSError, ValueError):
        return []  # deepgen.runtime.tuned warns about a broken file


def _load(path=None) -> dict:
    """The user's database and the shipped ones (runtime/shipped_db.py), once per version of
    the files: {group: [Row]} of exact-M entries, {group: [RangeRow]} of range entries and
    {(group, M, target, origin): info}."""
    from deepgen.runtime import shipped_db
    from deepgen.spec import GemmSpec

    p = _db_path(path)
    try:
        st = p.stat()
        stamp = (str(p), st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = (str(p), None, None)
    ships = shipped_db.databases() if shipped_db.enabled() else []
    stamp = (stamp, tuple(db["path"] for db in ships), id(ships))
    if _db["stamp"] == stamp:
        return _db
    groups, ranges, exact = {}, {}, {}
    sources = [("user", str(p), None, e) for e in _user_entries(p, stamp[0])]
    sources += [("shipped", db["path"], db, e) for db in ships for e in db["entries"]]
    for origin, where, db, e in sources:
        try:
            spec = GemmSpec.from_dict(e["spec"])
            ms = float(e["ms"]) if e.get("ms") else None
        except (KeyError, TypeError, ValueError):
            continue
        target = e.get("target") if db is None else (e.get("target") or db["target"])
        device = e.get("device") if db is None else db["device"]
        if spec.dynamic_m:
            points = _range_points(e, spec)
            ranges.setdefault(_group(spec), []).append(
                RangeRow(spec.M.min, spec.M.max, points, target, device, origin, spec))
            continue
        base = _baseline_ms(e, spec.flops)
        groups.setdefault(_group(spec), []).append(
            Row(spec.M, ms, base, target, device, origin))
        exact.setdefault((_group(spec), spec.M, target, origin), {
            "ms": ms, "baseline_ms": base, "device": device, "target": target,
            "config": e.get("config"), "origin": origin, "database": where,
            "source": e.get("source")})
    _db.update(stamp=stamp, groups=groups, ranges=ranges, exact=exact)
    _decisions.clear()
    _linear_routes.clear()
    return _db


class Row(tuple):
    """An exact-M entry: M, ms, baseline_ms, target, device, origin ("user" / "shipped")."""

    def __new__(cls, M, ms, base, target, device, origin):
        return super().__new__(cls, (M, ms, base, target, device, origin))


class RangeRow(tuple):
    """A range entry: lo, hi (its M range), points [(M, ms, baseline_ms)], target, device,
    origin, spec (the range spec)."""

    def __new__(cls, lo, hi, points, target, device, origin, spec):
        return super().__new__(cls, (lo, hi, points, target, device, origin, spec))


def _range_points(entry: dict, spec) -> list[tuple]:
    """The measured points of a range entry: "points" [{M, ms, baseline_ms or
    baseline_tflops}], else its own "ms" / "baseline_ms" at "M_measured" (default: the
    range's maximum). A point without both times makes the entry never route."""
    raw = entry.get("points")
    if not isinstance(raw, list):
        raw = [{"M": entry.get("M_measured", spec.M.max), "ms": entry.get("ms"),
                "baseline_ms": entry.get("baseline_ms"),
                "baseline_tflops": entry.get("baseline_tflops")}]
    out = []
    for pt in raw:
        try:
            M = int(pt["M"])
            ms = float(pt["ms"]) if pt.get("ms") else None
            flops = 2.0 * M * spec.N * spec.K
            out.append((M, ms, _baseline_ms(pt, flops)))
        except (KeyError, TypeError, ValueError):
            out.append((None, None, None))
    return out


def _group(spec) -> tuple:
    return (spec.N, spec.K, spec.batch, spec.dtype, spec.out_dtype, spec.layout, spec.allow_tf32)


def database_entry(spec, target: str | None, device_name: str | None = None) -> dict | None:
    """The database's own entry for spec (epilogue aside): ms, baseline_ms, device, config,
    origin ("user" or "shipped"), database (its file); the user's wins, a shipped one counts
    only on its GPU (device_name; None: this process's device, runtime/shipped_db.py)."""
    db = _load()
    for t in (target, None):
        found = db["exact"].get((_group(spec), spec.M, t, "user"))
        if found:
            return found
    from deepgen.runtime import shipped_db

    name = shipped_db.device_name() if device_name is None else device_name
    found = db["exact"].get((_group(spec), spec.M, target, "shipped"))
    if found and name is not None and found["device"] == name:
        return found
    return None


def _applicable(rows, target: str, device_name: str | None) -> list:
    """The rows for this GPU, the user's where it has any, else the shipped ones (which need
    the device name to match theirs)."""
    user = [r for r in rows if r[5] == "user" and r[3] in (target, None)
            and (device_name is None or r[4] is None or r[4] == device_name)]
    if user:
        return user
    return [r for r in rows if r[5] == "shipped" and r[3] == target
            and device_name is not None and r[4] == device_name]


def _faster(ms, base, host_dg: float, host_torch: float, min_speedup: float) -> bool:
    if ms is None or base is None:
        return False
    return max(ms, host_dg * 1e-3) * min_speedup < max(base, host_torch * 1e-3)


def wins(spec, target: str, device_name: str | None = None, *, min_speedup: float = 1.0,
         host_us: dict | None = None) -> bool:
    """The rule: whether the database says DeepGen beats torch for spec's N, K, ... and M range
    on this GPU (see the module's docstring)."""
    host = HOST_US if host_us is None else host_us
    lo, hi = m_range(spec.M)
    rows = [r for r in _load()["groups"].get(_group(spec), ()) if lo <= r[0] <= hi]
    rows = _applicable(rows, target, device_name)
    if not rows:
        return False
    return all(_faster(ms, base, host.get("deepgen", 0.0), host.get("torch", 0.0),
                       min_speedup) for _, ms, base, *_ in rows)


def range_wins(spec, target: str, device_name: str | None = None, *,
               min_speedup: float = 1.0, host_us: dict | None = None) -> bool:
    """Whether M of `spec` (an exact spec) goes to a range kernel: the database (the user's,
    else the shipped one for this GPU) holds a range entry whose spec is the range spec
    deepgen.gemm(dynamic_m=True) would run for it (deepgen.range_table.range_spec, epilogue
    aside) and every measured point of it has DeepGen faster than torch, host cost counted
    (HOST_US["deepgen_range"])."""
    from deepgen import range_table

    host = HOST_US if host_us is None else host_us
    rspec = range_table.range_spec(spec)
    if rspec is None:
        return False
    rows = [r for r in _load()["ranges"].get(_group(spec), ())
            if (r[0], r[1]) == (rspec.M.min, rspec.M.max) and r[6].M == rspec.M]
    rows = _applicable(rows, target, device_name)
    if not rows:
        return False
    dg = host.get("deepgen_range", host.get("deepgen", 0.0))
    return all(pts and all(_faster(ms, base, dg, host.get("torch", 0.0), min_speedup)
                           for _, ms, base in pts) for _, _, pts, *_ in rows)


def route_of(spec, target: str, device_name: str | None = None) -> str | None:
    """"range" (a range kernel: deepgen.gemm(dynamic_m=True)), "exact" (the exact-shape
    kernel) or None (torch) for spec on this GPU: a winning range entry first, else the
    exact-M rule (wins)."""
    if range_wins(spec, target, device_name):
        return "range"
    return "exact" if wins(spec, target, device_name) else None


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


def decide(a: torch.Tensor, b: torch.Tensor) -> str | bool:
    """Whether deepgen.gemm(a, b) should run (a (..., M, K) with b (K, N), or batched 3-D):
    False (torch), "exact" (its exact-shape kernel) or "range" (a range kernel,
    dynamic_m=True); see route_of."""
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


def _decide(key) -> str | bool:
    from deepgen.spec import GemmSpec, SpecError

    M, N, K, batch, dtype, layout, tf32, index = key
    try:
        spec = GemmSpec(M=M, N=N, K=K, batch=batch, dtype=dtype, layout=layout,
                        allow_tf32=tf32)
        target, name = _device(index or 0)
    except (SpecError, RuntimeError, AssertionError):
        found = False
    else:
        found = route_of(spec, target, name) or False
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

            return api.gemm(x, w.t(), bias=self.bias, activation=act,
                            dynamic_m=route == "range")
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


_linear_routes: dict[tuple, object] = {}  # OptimizedLinear: the call's form -> decide's answer


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
        db = _load()
        Ms = {row[0] for row in db["groups"].get(group, ())}
        Ms |= {row[0] for row in db["ranges"].get(group, ())}  # a range entry: its minimum
        for M in sorted(Ms):
            try:
                spec = GemmSpec(M=M, N=N, K=K, dtype=dtype, layout="NT", allow_tf32=tf32)
            except SpecError:
                continue
            if route_of(spec, target, name):
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
        route = decide(x, w.t())
        return api.gemm(x, w.t(), bias=bias, dynamic_m=route == "range") if route else None
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
    route = decide(a, b)
    return api.gemm(a, b, dynamic_m=route == "range") if route else None


_ROUTED = {F.linear, torch.matmul, torch.mm, torch.bmm, torch.Tensor.__matmul__,
           torch.Tensor.matmul, torch.Tensor.mm, torch.Tensor.bmm}


def reset() -> None:
    """Forget the decisions and the database read (tests; a new tuned.json is seen anyway)."""
    _decisions.clear()
    _linear_routes.clear()
    _db.update(stamp=None, groups={}, ranges={}, exact={})


__all__ = ["HOST_US", "RANGES", "FusedActivation", "OptimizedLinear", "database_entry",
           "decide", "m_range", "optimize", "optimizing", "range_wins", "reset", "restore",
           "route_of", "wins"]
