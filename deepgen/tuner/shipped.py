"""Build the tuned database DeepGen ships for a GPU from the results committed under
benchmarks/results/ (reproducibly: the output is a function of the input files only).

    python -m deepgen.tuner.shipped                      # H200: runtime/data/tuned-sm_90a-h200.json
    python -m deepgen.tuner.shipped --check              # exit 1 when the committed file differs
    python -m deepgen.tuner.shipped -o OUT.json FILE...  # other inputs

Inputs, each a file measured on one GPU with torch timed in the same run:
  - tune results ("deepgen-tune-results/1", `deepgen tune`): each shape's best candidate (the
    tuner keeps only candidates whose result checked ok against float64), torch's median time;
  - the decode suite ("deepgen-decode-suite/1", benchmarks/decode_suite.py): each shape's
    fastest DeepGen runner whose check is "ok", against the cuBLAS runner's (check "ok" too);
  - the GEMM suite ("deepgen-gemm-suite/1", benchmarks/gemm_suite.py): DeepGen's config where
    deepgen_check and torch_check are "ok".
A file whose device is not the one asked for is skipped. Where several inputs measured the
same spec, the newest file (its own date, then its name) gives the entry; within one file, the
fastest runner. With the compiler here, an entry whose config no longer validates for its
spec (the strategies changed since it was measured) is left out and counted. Every entry
records the device, the source file (relative to the repository) and the shape's key there;
the header lists the inputs with their SHA-256 and what was dropped and why.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import sys
from pathlib import Path

from deepgen.runtime.cache import canonical_json
from deepgen.spec import GemmSpec

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DEVICE, DEFAULT_TARGET = "NVIDIA H200", "sm_90a"
DEFAULT_OUT = ROOT / "runtime" / "data" / "tuned-sm_90a-h200.json"
DEFAULT_INPUTS = ("benchmarks/results/tune_*-h200-*.json",
                  "benchmarks/results/decode_*-h200-*.json",
                  "benchmarks/results/gemm_suite-h200-*.json")
FORMATS = ("deepgen-tune-results/1", "deepgen-decode-suite/1", "deepgen-gemm-suite/1")
_TORCH_RUNNERS = ("cublas", "triton", "torch", "max_autotune")


def _rel(path: Path) -> str:
    try:
        return Path(path).resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return Path(path).name


def _entry(spec: dict, config: dict, ms, base_ms, device: str, target: str, source: str,
           key: str, method: str, points=None, heuristic: bool = False) -> dict | None:
    """A database entry, or None when a time is missing or not positive. A range spec's
    entry (M a deepgen.dims.Dim, tuner/ranges.py) keeps its measured `points` (routing
    needs every one to beat torch) and has no TFLOP/s of its own. `heuristic`: the config
    was the default heuristic's when measured (a suite's default runner), so the entry is
    evidence for routing (DeepGen's time against torch's) but does not pick the config:
    the heuristic has moved on since (runtime/tuned.find skips it)."""
    try:
        s = GemmSpec.from_dict(spec)
        ms, base_ms = float(ms), float(base_ms)
    except (TypeError, ValueError, KeyError):
        return None
    if not (ms > 0 and base_ms > 0) or not isinstance(config, dict):
        return None
    if s.dynamic_m and not points:
        return None  # a range entry without its points could never route: not shipped
    tf = lambda t: None if s.dynamic_m else round(s.flops / (t * 1e-3) / 1e12, 4)
    e = {"spec": s.to_dict(), "target": target, "config": config,
         "ms": ms, "tflops": tf(ms), "baseline_ms": base_ms, "baseline_tflops": tf(base_ms),
         "device": device, "source": source, "source_key": key, "method": method}
    if heuristic:
        e["heuristic"] = True
    if points:
        e["points"] = [{k: p[k] for k in ("M", "ms", "baseline_ms") if k in p}
                       for p in points]
    return e


def entries_of(path: Path, device: str, target: str) -> tuple[list[dict], list[str]]:
    """(entries, reasons left out) of one results file measured on `device`."""
    data = json.loads(Path(path).read_text())
    fmt, src = data.get("format"), _rel(path)
    if fmt not in FORMATS:
        return [], [f"{src}: format {fmt!r} is not one this script reads"]
    if data.get("device") != device:
        return [], [f"{src}: measured on {data.get('device')!r}, not {device!r}"]
    if fmt == FORMATS[0] and data.get("target") not in (None, target):
        return [], [f"{src}: target {data.get('target')!r}, not {target!r}"]
    out, dropped = [], []
    if fmt == FORMATS[0]:
        for sh in data.get("shapes", []):
            base = (sh.get("baseline") or {}).get("ms")
            if not sh.get("top") or not base:
                dropped.append(f"{src} {sh.get('key')}: no checked candidate or torch time")
                continue
            best = sh["top"][0]
            e = _entry(sh["spec"], best.get("config"), best.get("ms"), base, device, target,
                       src, sh["key"], "deepgen tune (best checked candidate, median)",
                       best.get("points"))
            (out.append(e) if e else dropped.append(f"{src} {sh['key']}: incomplete"))
    elif fmt == FORMATS[1]:
        for r in data.get("results", []):
            runners = r.get("runners", {})
            base = runners.get("cublas") or {}
            ok = sorted(((v["ms"], n) for n, v in runners.items()
                         if n not in _TORCH_RUNNERS and v.get("check") == "ok"
                         and v.get("ms") and isinstance(v.get("config"), dict)))
            if base.get("check") != "ok" or not ok:
                dropped.append(f"{src} {r.get('name')}: no checked DeepGen runner or cuBLAS time")
                continue
            ms, name = ok[0]
            spec = {"M": r["M"], "N": r["N"], "K": r["K"], "batch": 1, "dtype": r["dtype"],
                    "layout": r["layout"]}
            e = _entry(spec, runners[name]["config"], ms, base.get("ms"), device, target, src,
                       f"{r['name']}:{name}", "decode_suite (CUDA graph, rotating B copies, "
                       "median of rounds)", heuristic=name == "default")
            (out.append(e) if e else dropped.append(f"{src} {r['name']}: incomplete"))
    else:
        for r in data.get("results", []):
            if r.get("deepgen_check") != "ok" or r.get("torch_check") != "ok":
                dropped.append(f"{src} {r.get('name')}: check not ok")
                continue
            e = _entry(r["spec"], r.get("config"), r.get("deepgen_ms"), r.get("torch_ms"),
                       device, target, src, r["name"], "gemm_suite (median of rounds)",
                       heuristic=r.get("config_source", "default") == "default")
            (out.append(e) if e else dropped.append(f"{src} {r.get('name')}: incomplete"))
    return out, dropped


def _validator():
    """config_fits when the compiler is here, else None (no validation)."""
    try:
        from deepgen.build import config_fits
        from deepgen.compiler import strategies  # noqa: F401
    except ImportError:
        return None
    return config_fits


def build(paths, device: str = DEFAULT_DEVICE, target: str = DEFAULT_TARGET,
          validate=None) -> dict:
    """The shipped database of `paths` (deterministic: sorted inputs and entries, no
    timestamps). `validate(config, spec, target) -> bool` drops configs that no longer
    validate (None: keep all)."""
    files = sorted({Path(p).resolve() for p in paths}, key=_rel)
    dated = []
    for p in files:
        data = json.loads(p.read_text())
        date = str(data.get("date") or data.get("updated") or "").replace("T", " ")
        dated.append((date, _rel(p), p))
    chosen: dict[tuple, dict] = {}
    inputs, dropped = [], []
    for date, rel, p in sorted(dated):  # oldest first: a newer file's entry replaces
        entries, why = entries_of(p, device, target)
        dropped += why
        inputs.append({"file": rel, "date": date, "entries": len(entries),
                       "sha256": hashlib.sha256(p.read_bytes()).hexdigest()})
        for e in entries:
            chosen[(canonical_json(e["spec"]), e["target"])] = e
    out = []
    for k in sorted(chosen):
        e = chosen[k]
        if validate is not None and not validate(dict(e["config"]), GemmSpec.from_dict(
                e["spec"]), target):
            dropped.append(f"{e['source']} {e['source_key']}: config no longer validates")
            continue
        out.append(e)
    return {"format": "deepgen-tuned/1",
            "shipped": {"target": target, "device": device,
                        "built_by": "python -m deepgen.tuner.shipped",
                        "validated": validate is not None,
                        "inputs": inputs, "dropped": sorted(dropped)},
            "entries": out}


def dumps(db: dict) -> str:
    return json.dumps(db, indent=1, sort_keys=True) + "\n"


def default_inputs() -> list[Path]:
    return sorted({Path(p) for pat in DEFAULT_INPUTS for p in glob.glob(str(ROOT / pat))})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m deepgen.tuner.shipped", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="*", help="results files (default: the H200 files under "
                   "benchmarks/results/)")
    p.add_argument("-o", "--out", default=str(DEFAULT_OUT))
    p.add_argument("--device", default=DEFAULT_DEVICE)
    p.add_argument("--target", default=DEFAULT_TARGET)
    p.add_argument("--no-validate", action="store_true",
                   help="keep configs without checking them against the strategies")
    p.add_argument("--check", action="store_true",
                   help="do not write; exit 1 when OUT differs from what would be written")
    a = p.parse_args(argv)
    validate = None if a.no_validate else _validator()
    if validate is None and not a.no_validate:
        print("note: no compiler here: configs are not validated", file=sys.stderr)
    db = build(a.inputs or default_inputs(), a.device, a.target, validate)
    text, out = dumps(db), Path(a.out)
    if a.check:
        same = out.exists() and out.read_text() == text
        print(f"{out}: {'up to date' if same else 'differs from the inputs'}")
        return 0 if same else 1
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
    print(f"{out}: {len(db['entries'])} entries from {len(db['shipped']['inputs'])} files "
          f"({len(db['shipped']['dropped'])} left out)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
