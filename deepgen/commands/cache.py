"""deepgen cache: list, prune or clear the kernel cache ($DEEPGEN_CACHE_DIR/kernels).

    deepgen cache list [--json]     every entry: key, spec, config, target, size, status
    deepgen cache prune             remove the entries that can never be hit again
    deepgen cache clear             remove every kernel (the tuned database stays)

An entry's key holds the spec, the config, the target, DeepGen's version, the tool versions
and a hash of the compiler's sources (deepgen.build.key_parts). It is "current" when those
last three match this installation, "stale (...)" when one differs (the parts named): after a
compiler source was edited, a tool upgraded or DeepGen updated, deepgen.gemm compiles anew and
the old entry only takes space. "broken (...)" entries (missing key.json, a binary of the
wrong size or checksum) are rebuilt on use anyway. prune removes stale and broken entries and
the temporary directories of writers that died; without the compiler's sources here (a
runtime-only install) it cannot tell which compiler built an entry ("unknown") and keeps
those.
Nothing asks for confirmation; each removed entry is printed. Exit status: 0, or 1 when an
entry could not be removed.
"""
from __future__ import annotations

import argparse
import sys

ACTIONS = ("list", "prune", "clear")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("cache", help="list, prune or clear the kernel cache",
                              description=__doc__.split("\n", 1)[1],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=ACTIONS, help="what to do")
    p.add_argument("--json", action="store_true", help="list: one JSON object per entry")
    return p


def run(args) -> int:
    import json

    from deepgen import build
    from deepgen.runtime import cache

    root = cache.cache_dir() / "kernels"
    entries = cache.entries(check=args.action != "clear")
    current = build.build_parts() if args.action != "clear" else {}
    can_tell = current.get("compiler") is not None
    rows = [_row(e, current, can_tell) for e in entries]
    if args.action == "list":
        if args.json:
            for r in rows:
                print(json.dumps(r, sort_keys=True))
            return 0
        print(f"kernel cache: {root}")
        for r in rows:
            print(_line(r))
        stale = sum(r["status"] != "current" for r in rows)
        print(f"{len(rows)} entries, {_human(sum(r['size'] for r in rows))}; "
              f"{len(rows) - stale} current, {stale} stale or broken"
              + ("" if can_tell else " (no compiler sources here: staleness unknown)"))
        return 0
    if args.action == "prune":
        doomed = [r for r in rows if r["status"].startswith(("stale", "broken"))]
    else:
        doomed = rows
    failed = removed_bytes = 0
    for r in doomed:
        if cache.remove(root / r["key"]):
            removed_bytes += r["size"]
            print(f"removed {_line(r)}")
        elif (root / r["key"]).exists():
            failed += 1
            print(f"deepgen cache: could not remove {root / r['key']}", file=sys.stderr)
    for d in cache.leftovers(min_age_s=3600.0 if args.action == "prune" else 0.0):
        if cache.remove(d):
            print(f"removed leftover {d.name}")
    kept = len(rows) - len(doomed)
    print(f"{args.action}: removed {len(doomed) - failed} of {len(rows)} entries "
          f"({_human(removed_bytes)}), kept {kept + failed}"
          + ("" if can_tell or args.action == "clear"
             else "; no compiler sources here: entries built by another compiler were kept"))
    return 1 if failed else 0


def _row(entry, current: dict, can_tell: bool) -> dict:
    from deepgen import build

    parts = entry.parts if entry.parts is not None else {"config": "?"}
    if entry.problem is not None:
        status = f"broken ({entry.problem})"
    elif not current:
        status = "?"
    else:
        reasons = build.stale_parts(parts, current)
        if not can_tell:
            reasons = [r for r in reasons if r != "compiler"]
            status = f"stale ({', '.join(reasons)})" if reasons else "unknown"
        else:
            status = f"stale ({', '.join(reasons)})" if reasons else "current"
    return {"key": entry.key, "spec": _spec(parts.get("spec")),
            "config": _config(parts.get("config")), "target": parts.get("target", "?"),
            "size": entry.size, "status": status, "compiler": parts.get("compiler")}


def _line(r: dict) -> str:
    return (f"{r['key'][:12]}  {r['spec']:28s} {r['config']:12s} {r['target']:8s} "
            f"{_human(r['size']):>9s}  {r['status']}")


def _spec(spec) -> str:
    """'4096x4096x4096 bf16 NN', with batch, output type, tf32 and epilogue when set."""
    if not isinstance(spec, dict):
        return "?"
    try:
        text = f"{spec['M']}x{spec['N']}x{spec['K']}"
    except KeyError:
        return "?"
    if spec.get("batch", 1) != 1:
        text = f"{spec['batch']}x{text}"
    dtype, out = spec.get("dtype", "?"), spec.get("out_dtype")
    text += f" {dtype}" + (f"->{out}" if out not in (None, dtype) else "")
    text += f" {spec.get('layout', '?')}"
    if spec.get("allow_tf32"):
        text += " tf32"
    epilogue = spec.get("epilogue")
    if isinstance(epilogue, dict) and epilogue.get("steps") is not None:
        text += " " + "+".join(epilogue["steps"]) if epilogue["steps"] else " raw"
    return text


def _config(config) -> str:
    if config is None:
        return "default"
    if config == "?":
        return "?"
    if isinstance(config, dict) and all(k in config for k in ("BM", "BN", "BK")):
        return f"{config['BM']}x{config['BN']}x{config['BK']}"
    return "custom"


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
