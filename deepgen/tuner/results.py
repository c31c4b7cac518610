"""Results of a tune run: built from the bundle index and the journal, written atomically.

results.json ("format": "deepgen-tune-results/1"), per shape: counts (candidates, compiled,
compile failures, correct, wrong, bench failures, with the most common errors), the cuBLAS
baseline timed by the same workers, the top K candidates (config, ms, TFLOP/s, ratio to
the baseline, relative error, compile time, registers and spills) and the default heuristic's
config for comparison; a range problem's (M a range, tuner/ranges.py) entries keep their
per-M "points" and its times are geometric means over them. Timed on several GPUs, the
candidates are ranked by times scaled to a common baseline ("gpu_scales", "ms_ranked": see
gpu_scales). A function of its inputs only, so rebuilding it is always safe;
`deepgen bench` adds, when it ends, "bench_phase": its own benchmark phase (candidates timed,
seconds, workers: GPUs or the Ray address), what a comparison over GPU counts reads.
"""
from __future__ import annotations

import json
import os
import statistics
import time
from collections import Counter
from pathlib import Path

from deepgen.spec import GemmSpec

from .journal import latest, write_json
from .manifest import Candidate

RESULTS_FORMAT = "deepgen-tune-results/1"
RESULTS = "results.json"
PLOT = "results.png"


def build(index: dict, candidates: list[Candidate], records: list[dict], top: int = 5) -> dict:
    bench = latest(records, "bench")
    shapes = []
    for sh in index.get("shapes", []):
        mine = [c for c in candidates if c.shape == sh["key"]]
        compiled = [c for c in mine if c.compile.get("ok")]
        ran = [(c, bench[c.id]) for c in compiled if c.id in bench]
        scale = gpu_scales([r for _, r in ran])
        ok = sorted(((c, r) for c, r in ran if r.get("ok")), key=lambda cr: ranked_ms(cr[1], scale))
        wrong = [r for _, r in ran if r.get("wrong")]
        baselines = [r["baseline_ms"] for _, r in ran if r.get("baseline_ms")]
        errors = Counter(first_line(c.compile.get("error", "")) for c in mine
                         if c.compile and not c.compile.get("ok"))
        errors.update(first_line(r.get("error", "")) for _, r in ran if not r.get("ok"))
        spec = sh["spec"]
        base_ms = statistics.median(baselines) if baselines else None
        base_tflops = None
        if base_ms is not None:
            rspec = GemmSpec.from_dict(spec)
            if rspec.dynamic_m:  # a range: the geometric mean over its timed M (tuner/ranges.py)
                tf = [r["baseline_tflops"] for _, r in ran if r.get("baseline_tflops")]
                base_tflops = statistics.median(tf) if tf else None
            else:
                base_tflops = rspec.flops / (base_ms * 1e-3) / 1e12
        default = next((_entry(c, r) for c, r in ran if c.default and r.get("ok")), None)
        shapes.append({
            "key": sh["key"], "spec": spec,
            "counts": {"candidates": len(mine), "compiled": len(compiled),
                       "compile_failed": sum(1 for c in mine
                                             if c.compile and not c.compile.get("ok")),
                       "benchmarked": len(ran), "correct": len(ok), "wrong": len(wrong),
                       "bench_failed": len(ran) - len(ok) - len(wrong)},
            "errors": dict(errors.most_common(5)),
            "baseline": None if base_ms is None else {
                "name": "torch.matmul (cuBLAS)", "ms": base_ms, "tflops": base_tflops},
            "top": [_entry(c, r, ranked_ms(r, scale) if scale else None) for c, r in ok[:top]],
            **({"gpu_scales": scale} if scale else {}),
            "default": default,
        })
    device = next((r.get("device") for r in bench.values() if r.get("device")), None)
    return {"format": RESULTS_FORMAT, "name": index.get("name"),
            "updated": time.strftime("%Y-%m-%d %H:%M:%S"), "device": device,
            "target": index.get("target"), "shapes": shapes}


def first_line(text: str) -> str:
    return (text or "unknown error").strip().splitlines()[0][:200]


def gpu_of(record: dict):
    """The GPU a bench record was timed on, as text: its UUID, else its worker's slot."""
    gpu = record.get("gpu_uuid") or record.get("gpu", record.get("slot"))
    return None if gpu is None else str(gpu)


def gpu_scales(records: list[dict]) -> dict:
    """{gpu: factor} for one shape timed on several GPUs, else {}. GPUs of one host differ by a
    few percent (clocks under power and heat); each worker times the cuBLAS baseline of the
    shape on its own GPU, so a time is ranked as ms * (the median baseline over the GPUs /
    its GPU's median baseline): a candidate is not ranked lower for the GPU it drew."""
    bases: dict = {}
    for r in records:
        if r.get("ok") and r.get("baseline_ms"):
            bases.setdefault(gpu_of(r), []).append(r["baseline_ms"])
    if len(bases) < 2:
        return {}
    per_gpu = {g: statistics.median(v) for g, v in bases.items()}
    ref = statistics.median(per_gpu.values())
    return {g: ref / b for g, b in per_gpu.items()}


def ranked_ms(record: dict, scales: dict) -> float:
    """The time a candidate is ranked by: its ms on the shape's common baseline (gpu_scales)."""
    return record["ms"] * scales.get(gpu_of(record), 1.0)


def _entry(c: Candidate, r: dict, ms_ranked: float | None = None) -> dict:
    res = [v for v in (c.compile.get("resources") or {}).values() if isinstance(v, dict)]
    most = lambda key: max((v.get(key) or 0 for v in res), default=None)
    ranked = {"ms_ranked": ms_ranked, "gpu": gpu_of(r)} if ms_ranked is not None else {}
    return {"id": c.id, "config": c.config, "ms": r["ms"], "tflops": r["tflops"], **ranked,
            "vs_baseline": r.get("vs_baseline"), "rel_err": r.get("rel_err"),
            "compile_seconds": c.compile.get("seconds"), "registers": most("registers"),
            "spill_stores": most("spill_stores"), "spill_loads": most("spill_loads"),
            "default": c.default, **({"points": r["points"]} if r.get("points") else {})}


def write(directory: str | os.PathLike, results: dict) -> Path:
    path = Path(directory) / RESULTS
    write_json(path, results)
    return path


def load(directory: str | os.PathLike) -> dict:
    path = Path(directory) / RESULTS
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no results (run `deepgen bench` or `deepgen tune` "
                                f"without --compile-only first)") from None
    if data.get("format") != RESULTS_FORMAT:
        raise ValueError(f"{path}: format {data.get('format')!r}, expected {RESULTS_FORMAT!r}")
    return data


# -- report ------------------------------------------------------------------------------------

def short_config(cfg: dict) -> str:
    """128x128x8 t8x8 w2x4 l8x4 v4/4/4 s2 sk1 sw8: the fields that shape the kernel most."""
    try:
        return _short_config(cfg)
    except KeyError:  # not a TileConfig (hand-made bundles)
        return json.dumps(cfg, sort_keys=True)[:60]


def _short_config(cfg: dict) -> str:
    kind = "" if cfg.get("mma", "none") == "none" else f"{cfg['mma']} "
    # SIMT's thread tile and lanes (an mma_sync config has neither)
    thread = f"t{cfg['TM']}x{cfg['TN']} " if "TM" in cfg else ""
    lanes = f" l{cfg['lanes_m']}x{cfg['lanes_n']}" if "lanes_m" in cfg else ""
    return kind + (f"{cfg['BM']}x{cfg['BN']}x{cfg['BK']} {thread}"
            f"w{cfg['warps_m']}x{cfg['warps_n']}{lanes} "
            f"v{cfg['load_width_a']}/{cfg['load_width_b']}/{cfg['store_width']} "
            f"s{cfg['shared_stages']} sk{cfg['split_k']} sw{cfg['block_swizzle']}"
            + (" rp" if cfg.get("register_prefetch") else "")
            + (" async" if cfg.get("async_copy") else ""))


def table(results: dict) -> str:
    head = ("shape", "ok/cand", "best TF/s", "cuBLAS", "ratio", "default", "best config")
    rows = []
    for sh in results["shapes"]:
        n, best, base = sh["counts"], (sh["top"] or [None])[0], sh["baseline"]
        fmt = lambda x: "-" if x is None else f"{x:.1f}"
        rows.append((sh["key"], f"{n['correct']}/{n['candidates']}",
                     fmt(best and best["tflops"]), fmt(base and base["tflops"]),
                     "-" if not (best and base) else f"{best['tflops'] / base['tflops']:.2f}",
                     fmt(sh["default"] and sh["default"]["tflops"]),
                     short_config(best["config"]) if best else "-"))
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    line = lambda r: "  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip()
    out = [line(head), line(["-" * w for w in widths])] + [line(r) for r in rows]
    if results.get("device"):
        out.insert(0, f"{results.get('name')} on {results['device']} (TFLOP/s, median)")
    return "\n".join(out)


def plot(results: dict, path: str | os.PathLike) -> Path | None:
    """TFLOP/s per shape, best DeepGen config vs cuBLAS vs the default config; None when
    matplotlib is missing (the caller says so)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    shapes = [s for s in results["shapes"] if s["top"] or s["baseline"]]
    names = [s["key"] for s in shapes]
    get = lambda s, k: (s[k] or {}).get("tflops", 0) if k != "top" else (
        s["top"][0]["tflops"] if s["top"] else 0)
    xs = range(len(shapes))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(shapes) + 2), 4.5))
    w = 0.27
    for i, (key, label) in enumerate((("top", "DeepGen (tuned)"), ("baseline", "cuBLAS"),
                                      ("default", "DeepGen (default config)"))):
        ax.bar([x + (i - 1) * w for x in xs], [get(s, key) for s in shapes], w, label=label)
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("TFLOP/s")
    ax.set_title(f"{results.get('name')} on {results.get('device') or '?'}")
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
    return path
