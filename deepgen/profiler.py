"""deepgen.profile(fn, *args) and `deepgen profile`: where a model's time goes, GEMM by GEMM.

Runs `fn(*args)` (after `warmup` untimed calls) `repeat` times under torch.profiler with
record_shapes, then reports:

- an op profiling table: per aten op, count, min, max, avg and total time per call and the
  share of all GPU time (kernel time attributed to ops); on a machine without a GPU, CPU time
  and the share of all CPU time in ops, and the table says so. Ops nest (aten::linear holds its
  aten::addmm): a nested op's time is also in its parent's, so shares overlap;
- every GEMM, its shape recovered from the aten op's recorded inputs (aten::linear, addmm, mm,
  bmm, matmul, _scaled_mm): M, N, K, batch, dtype, layout (from the strides: "N" row-major,
  "T" stored transposed; nn.Linear's weight makes "NT") and epilogue ("bias", "scaled"),
  grouped by shape, with its share of the GEMM time and of all time. A GEMM op inside another
  (aten::linear -> aten::addmm, aten::matmul -> aten::mm) counts once, as the outer op.

`parse(records, ...)` does the analysis on plain records (one dict per op event: name, shapes,
dtypes, strides, times in us, whether a GEMM op encloses it), which is what `records(prof)`
makes of a torch.profiler run, so recorded traces can be parsed again (tests do). `write(report,
out_dir)` writes profile.json, gemms.csv, ops.csv and gemms.png (top shapes by time;
matplotlib), each atomically (a temporary file renamed into place).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from pathlib import Path

FORMAT = "deepgen-profile/1"
GEMM_OPS = ("aten::linear", "aten::addmm", "aten::mm", "aten::bmm", "aten::matmul",
            "aten::_scaled_mm")
DTYPES = {"float": "f32", "c10::BFloat16": "bf16", "c10::Half": "f16", "double": "f64",
          "c10::Float8_e4m3fn": "f8e4m3", "c10::Float8_e5m2": "f8e5m2"}
GEMM_FIELDS = ("M", "N", "K", "batch", "dtype", "layout", "epilogue")


# -- running ------------------------------------------------------------------------------------

def profile(fn, *args, warmup: int = 1, repeat: int = 1, out: str | os.PathLike | None = None,
            name: str | None = None, top: int = 25, quiet: bool = False, **kwargs) -> dict:
    """Profile `fn(*args, **kwargs)`: print the tables (unless quiet), write the files when
    `out` is a directory, return the report (a dict, as profile.json holds it)."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    gpu = torch.cuda.is_available()
    for _ in range(warmup):
        fn(*args, **kwargs)
    if gpu:
        torch.cuda.synchronize()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpu else [])
    t0 = time.perf_counter()
    with torch_profile(activities=activities, record_shapes=True) as prof:
        for _ in range(repeat):
            fn(*args, **kwargs)
        if gpu:
            torch.cuda.synchronize()
    wall_us = (time.perf_counter() - t0) * 1e6
    report = parse(records(prof), device="gpu" if gpu else "cpu", calls=repeat,
                   name=name or getattr(fn, "__name__", "fn"))
    report["wall_us"] = wall_us
    report["environment"] = _environment(torch, gpu)
    if not quiet:
        print(format_report(report, top))
    if out is not None:
        paths = write(report, out)
        if not quiet:
            print("wrote " + ", ".join(str(p) for p in paths))
            if not any(p.suffix == ".png" for p in paths):
                print("no chart: matplotlib is not installed (pip install 'deepgen-mlir[plot]')")
    return report


def _environment(torch, gpu: bool) -> dict:
    import platform

    import deepgen

    return {"torch": torch.__version__, "deepgen": deepgen.__version__,
            "python": platform.python_version(),
            "device": torch.cuda.get_device_name(0) if gpu else platform.processor() or "cpu",
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def records(prof) -> list[dict]:
    """Plain records of a torch.profiler run's CPU-side op events."""
    out = []
    kineto = _kineto_events(prof)
    for e in prof.events():
        if str(getattr(e, "device_type", "CPU")).rsplit(".", 1)[-1] != "CPU":
            continue
        dtypes = getattr(e, "input_dtypes", None)
        if dtypes is None and e.id in kineto:  # torch < 2.12: only the Kineto event has them
            dtypes = kineto[e.id].dtypes()
        parent, inside = e.cpu_parent, False
        while parent is not None:
            if parent.name in GEMM_OPS:
                inside = True
                break
            parent = parent.cpu_parent
        out.append({"name": e.name, "shapes": e.input_shapes or [],
                    "dtypes": list(dtypes or []),
                    "strides": list(getattr(e, "structured_input_strides", None) or []),
                    "cpu_us": e.cpu_time_total, "self_cpu_us": e.self_cpu_time_total,
                    "device_us": e.device_time_total,
                    "self_device_us": e.self_device_time_total, "in_gemm": inside})
    return out


def _kineto_events(prof) -> dict:
    """{correlation id: Kineto event} (FunctionEvent.id is the Kineto correlation id)."""
    try:
        return {k.correlation_id(): k for k in prof.profiler.kineto_results.events()}
    except (AttributeError, RuntimeError):
        return {}


# -- parsing --------------------------------------------------------------------------------------

def gemm_of(rec: dict) -> dict | None:
    """The GEMM (M, N, K, batch, dtype, layout, epilogue) of an op record; None when the op is
    not a GEMM or its inputs are not a matrix product (vector operands, missing shapes)."""
    name, shapes = rec["name"], rec.get("shapes") or []
    dtypes, strides = rec.get("dtypes") or [], rec.get("strides") or []
    dt = lambda i: DTYPES.get(dtypes[i], dtypes[i]) if i < len(dtypes) else "?"
    st = lambda i: strides[i] if i < len(strides) else None
    try:
        if name == "aten::linear":  # x (..., K), weight (N, K), bias (N) or none
            x, w = shapes[0], shapes[1]
            if len(x) < 1 or len(w) != 2:
                return None
            bias = len(shapes) > 2 and bool(shapes[2])
            return _gemm(math.prod(x[:-1]), w[0], w[1], 1, dt(0),
                         _layout(x, st(0)) + "T", "bias" if bias else "none")
        if name == "aten::addmm":  # bias, a (M, K), b (K, N)
            a, b = shapes[1], shapes[2]
            return _gemm(a[0], b[1], a[1], 1, dt(1), _layout(a, st(1)) + _layout(b, st(2)),
                         "bias")
        if name in ("aten::mm", "aten::_scaled_mm"):
            a, b = shapes[0], shapes[1]
            if len(a) != 2 or len(b) != 2:
                return None
            epi = "none"
            if name == "aten::_scaled_mm":
                epi = "scaled+bias" if len(shapes) > 4 and shapes[4] else "scaled"
            return _gemm(a[0], b[1], a[1], 1, dt(0), _layout(a, st(0)) + _layout(b, st(1)),
                         epi)
        if name == "aten::bmm":
            a, b = shapes[0], shapes[1]
            return _gemm(a[1], b[2], a[2], a[0], dt(0), _layout(a, st(0)) + _layout(b, st(1)),
                         "none")
        if name == "aten::matmul":
            a, b = shapes[0], shapes[1]
            if len(a) < 2 or len(b) < 2:
                return None  # a vector operand: not a matrix product
            if len(b) == 2:
                return _gemm(math.prod(a[:-1]), b[1], a[-1], 1, dt(0),
                             _layout(a, st(0)) + _layout(b, st(1)), "none")
            return _gemm(a[-2], b[-1], a[-1], math.prod(b[:-2]), dt(0),
                         _layout(a, st(0)) + _layout(b, st(1)), "none")
    except (IndexError, TypeError):
        return None
    return None


def _gemm(M, N, K, batch, dtype, layout, epilogue) -> dict:
    return {"M": int(M), "N": int(N), "K": int(K), "batch": int(batch), "dtype": dtype,
            "layout": layout, "epilogue": epilogue}


def _layout(shape, strides) -> str:
    """"T" when the last two dimensions are stored transposed, else "N" (also when unknown)."""
    if not strides or len(strides) != len(shape) or len(shape) < 2:
        return "N"
    rows, cols = shape[-2], shape[-1]
    if strides[-1] == 1 or cols == 1:
        return "N"
    if strides[-2] == 1 or rows == 1:
        return "T"
    return "N"


def shape_key(g: dict) -> str:
    """4096x14336x4096 bf16 NT (M x N x K), with batch and epilogue when there are any."""
    batch = f" x{g['batch']}" if g["batch"] != 1 else ""
    epi = f" +{g['epilogue']}" if g["epilogue"] != "none" else ""
    return f"{g['M']}x{g['N']}x{g['K']}{batch} {g['dtype']} {g['layout']}{epi}"


def _stats(times: list[float]) -> dict:
    total = sum(times)
    return {"count": len(times), "min_us": min(times), "max_us": max(times),
            "avg_us": total / len(times), "total_us": total}


def parse(recs: list[dict], *, device: str = "gpu", calls: int = 1, name: str = "fn") -> dict:
    """The report of op records: ops table, GEMMs grouped by shape, totals (times in us)."""
    timed = "device_us" if device == "gpu" else "cpu_us"
    self_key = "self_device_us" if device == "gpu" else "self_cpu_us"
    all_us = sum(r.get(self_key) or 0.0 for r in recs)
    by_op: dict[str, list[float]] = {}
    for r in recs:
        by_op.setdefault(r["name"], []).append(r.get(timed) or 0.0)
    ops = [{"op": op, **_stats(ts)} for op, ts in by_op.items()]
    ops.sort(key=lambda o: -o["total_us"])
    for o in ops:
        o["percent"] = 100.0 * o["total_us"] / all_us if all_us else 0.0
    groups: dict[str, dict] = {}
    unparsed = 0
    for r in recs:
        if r["name"] not in GEMM_OPS or r.get("in_gemm"):
            continue
        g = gemm_of(r)
        if g is None:
            unparsed += 1
            continue
        key = shape_key(g)
        entry = groups.setdefault(key, {"key": key, **g, "ops": {}, "times": []})
        entry["times"].append(r.get(timed) or 0.0)
        entry["ops"][r["name"]] = entry["ops"].get(r["name"], 0) + 1
    gemm_us = sum(sum(g["times"]) for g in groups.values())
    gemms = []
    for g in groups.values():
        times = g.pop("times")
        s = _stats(times)
        flops = 2.0 * g["M"] * g["N"] * g["K"] * g["batch"]
        gemms.append({**g, **s, "calls_per_run": s["count"] / max(calls, 1),
                      "percent_of_gemm": 100.0 * s["total_us"] / gemm_us if gemm_us else 0.0,
                      "percent_of_all": 100.0 * s["total_us"] / all_us if all_us else 0.0,
                      "tflops": flops / (s["avg_us"] * 1e-6) / 1e12 if s["avg_us"] else None})
    gemms.sort(key=lambda g: -g["total_us"])
    return {"format": FORMAT, "name": name, "device": device,
            "time_base": "GPU time (kernels attributed to ops)" if device == "gpu"
            else "CPU time (no GPU: host time of the ops)",
            "calls": calls, "total_us": all_us, "gemm_us": gemm_us,
            "gemm_percent": 100.0 * gemm_us / all_us if all_us else 0.0,
            "unparsed_gemm_ops": unparsed, "ops": ops, "gemms": gemms}


# -- tables and files ----------------------------------------------------------------------------

def _table(head, rows) -> str:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    line = lambda r: "  ".join(str(v).rjust(w) if i else str(v).ljust(w)
                               for i, (v, w) in enumerate(zip(r, widths))).rstrip()
    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, rows)])


def format_report(report: dict, top: int = 25) -> str:
    what = "GPU" if report["device"] == "gpu" else "CPU"
    f = lambda us: f"{us:.1f}"
    out = [(f"{report['name']}: {report['calls']} call(s), {what} time in ops "
           f"{report['total_us'] / 1e3:.3f} ms ({report['time_base']}); GEMMs "
           f"{report['gemm_us'] / 1e3:.3f} ms = {report['gemm_percent']:.1f}%"), ""]
    rows = [(o["op"][:48], o["count"], f(o["min_us"]), f(o["max_us"]), f(o["avg_us"]),
             f(o["total_us"]), f"{o['percent']:.1f}") for o in report["ops"][:top]]
    out.append(_table(("op", "count", "min us", "max us", "avg us", "total us",
                       f"% {what}"), rows))
    if len(report["ops"]) > top:
        out.append(f"... {len(report['ops']) - top} more ops in the JSON and CSV")
    out.append("")
    rows = [(g["M"], g["N"], g["K"], g["batch"], g["dtype"], g["layout"], g["epilogue"],
             g["count"], f(g["avg_us"]), f(g["total_us"]), f"{g['percent_of_gemm']:.1f}",
             f"{g['percent_of_all']:.1f}", "-" if g["tflops"] is None else f"{g['tflops']:.3g}")
            for g in report["gemms"][:top]]
    out.append(_table(("M", "N", "K", "batch", "dtype", "layout", "epilogue", "count",
                       "avg us", "total us", "% GEMM", f"% {what}", "TFLOP/s"), rows))
    return "\n".join(out)


def _atomic(path: Path, data: bytes) -> Path:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def _csv(rows: list[dict], fields: list[str]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in r.items()})
    return buf.getvalue().encode()


def write(report: dict, out_dir: str | os.PathLike, top: int = 12) -> list[Path]:
    """profile.json, gemms.csv, ops.csv and (with matplotlib) gemms.png in out_dir."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    paths = [_atomic(d / "profile.json", (json.dumps(report, indent=1) + "\n").encode()),
             _atomic(d / "gemms.csv", _csv(report["gemms"], [
                 "key", *GEMM_FIELDS, "count", "min_us", "max_us", "avg_us", "total_us",
                 "percent_of_gemm", "percent_of_all", "tflops", "ops"])),
             _atomic(d / "ops.csv", _csv(report["ops"], [
                 "op", "count", "min_us", "max_us", "avg_us", "total_us", "percent"]))]
    png = plot(report, d / "gemms.png", top)
    if png is not None:
        paths.append(png)
    return paths


def plot(report: dict, path: Path, top: int = 12) -> Path | None:
    """A bar chart of the top GEMM shapes by total time; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    gemms = report["gemms"][:top][::-1]
    fig, ax = plt.subplots(figsize=(9, 0.45 * max(len(gemms), 1) + 1.5))
    ax.barh([g["key"] for g in gemms], [g["total_us"] / 1e3 for g in gemms], color="#4878a8")
    for i, g in enumerate(gemms):
        ax.text(g["total_us"] / 1e3, i, f" {g['percent_of_gemm']:.1f}%", va="center",
                fontsize=8)
    what = "GPU" if report["device"] == "gpu" else "CPU"
    ax.set_xlabel(f"total {what} time (ms) over {report['calls']} call(s)")
    ax.set_title(f"{report['name']}: top GEMM shapes ({report['gemm_percent']:.1f}% of {what} "
                 f"time in GEMMs)", fontsize=10)
    ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def load(path: str | os.PathLike) -> dict:
    """A profile.json (ValueError when it is not one)."""
    p = Path(path)
    data = json.loads(p.read_text())
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{p}: not a {FORMAT} file (format {data.get('format')!r})"
                         if isinstance(data, dict) else f"{p}: not a {FORMAT} file")
    return data
