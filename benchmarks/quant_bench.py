"""What the quantized-GEMM benchmarks (fp8_bench.py, int8_bench.py, fp8_block_bench.py) share:
their command line (--build DIR / --run DIR / --out / --rounds / --shapes), the --build loop
(the default config and a few wgmma variants per shape into DIR/<shape>/<variant>, DIR/index.json),
and on the --run side the input-set count, the one correctness check (C poisoned), the
interleaved-rounds timing, the JSON's common head and the closing table.

Nothing here imports torch or the runtime at module level: the pieces take the timer, the
error measure and the synchronisation as arguments, so tests/test_quant_bench_cpu.py runs them
with fakes.
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gemm_suite import git_commit, write_json

TARGET = "sm_90a"
# the wgmma variants int8_bench and fp8_bench time against the default (fields over it;
# None: the default itself)
COOP = {"BM": 128, "BN": 256, "consumers": 2, "mode": "cooperative", "stages": 4,
        "persistent": False}
VARIANTS = {"default": None,
            "pingpong-128x128-s7": {"mode": "pingpong", "BM": 128, "BN": 128, "consumers": 2,
                                    "persistent": True, "stages": 7},
            "coop-128x256-s4": COOP,
            "coop-128x256-s4-persistent": {**COOP, "persistent": True}}


def main(doc: str, shapes: dict, build, run, default_out: str, argv=None,
         extra: dict | None = None) -> int:
    """The benchmarks' command line: build(DIR, shapes) and/or run(DIR, out, rounds, shapes);
    --shapes may also name the `extra` shapes (not run unless named)."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--build", type=Path, metavar="DIR")
    p.add_argument("--run", type=Path, metavar="DIR")
    p.add_argument("--out", type=Path, default=Path(default_out))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--shapes", nargs="*", default=list(shapes),
                   choices=list(shapes) + list(extra or {}))
    a = p.parse_args(argv)
    if a.build:
        build(a.build, a.shapes)
    if a.run:
        run(a.run, a.out, a.rounds, a.shapes)
    if not (a.build or a.run):
        p.error("give --build DIR and/or --run DIR")
    return 0


def _line(name: str, vname: str, seconds: float, res: dict) -> str:
    return (f"{name:18s} {vname:28s} {seconds:5.2f} s  regs {res['registers']} spills "
            f"{res['spill_stores']}")


def build_variants(directory: Path, shapes, table: dict, spec_of, variants: dict, names_for,
                   line=_line, log=print) -> list[dict]:
    """For each shape (a name of `table`, whose value spec_of takes), compile the variants
    names_for(spec) picks (names of `variants`: wgmma fields over the default config, None for
    the default itself) into DIR/<shape>/<variant>, once per distinct config; a variant that
    does not fit is reported and skipped. Writes and returns DIR/index.json's entries."""
    from deepgen.compiler import compile_artifact, strategies

    index = []
    for name in shapes:
        spec = spec_of(*table[name])
        seen = set()
        for vname in names_for(spec):
            fields = variants[vname]
            try:
                cfg = strategies.resolve(
                    None if fields is None else {"strategy": "wgmma", **fields}, spec, TARGET)
            except Exception as e:  # noqa: BLE001 - a variant that does not fit is reported
                log(f"{name} {vname}: skipped ({e})")
                continue
            if cfg in seen:  # the same kernel as an earlier variant (e.g. the default)
                continue
            seen.add(cfg)
            t = time.perf_counter()
            art = compile_artifact(spec, cfg, TARGET, keep_ir=False)
            art.save(directory / name / vname)
            log(line(name, vname, time.perf_counter() - t, art.resources[art.launches[0].entry]))
            index.append({"shape": name, "variant": vname, "config": cfg.to_dict()})
    write_json(directory / "index.json", index)
    return index


def run_shapes(directory: Path, shapes, one) -> list[dict]:
    """[one(index, name) for each shape] (DIR/index.json's entries), the CUDA cache emptied
    after each."""
    import torch

    index = json.loads((directory / "index.json").read_text())
    results = []
    for name in shapes:
        results.append(one(index, name))
        torch.cuda.empty_cache()
    return results


def load_shape(directory: Path, index: list[dict], name: str):
    """(the shape's index entries, {variant: Kernel}), DIR/<shape>/default preloaded."""
    from deepgen.runtime import load, preload

    entries = [e for e in index if e["shape"] == name]
    kernels = {e["variant"]: load(directory / name / e["variant"]) for e in entries}
    preload(directory / name / "default")
    return entries, kernels


def set_count(M: int, N: int, K: int, l2_bytes: int) -> int:
    """Input sets to rotate through so that their A and B (1-byte elements) exceed twice the
    L2: 1 to 8."""
    return max(1, min(8, -(-2 * l2_bytes // (M * K + N * K))))


def check_once(impls: dict, call, c, ref, rel_error, sync, result=None) -> dict:
    """{impl: relative error against ref}: each impl run once through call(fn) with C poisoned
    (NaN) first; an impl that returns nothing wrote C. result(r) maps a result first."""
    checks = {}
    for iname, fn in impls.items():
        c.fill_(float("nan"))
        r = call(fn)
        sync()
        r = r if r is not None else c
        checks[iname] = rel_error(result(r) if result else r, ref)
    return checks


def interleaved(impls: dict, sets, rounds: int, flops: float, time_ms):
    """Each round times every impl once (time_ms(fn, sets), milliseconds), round r starting
    at impl r mod n (a compute-bound kernel's clock falls as the card heats within a round,
    so a fixed order would favour the impls timed first): ({impl: per-round T(FL)OP/s}, {impl:
    their median})."""
    times = {iname: [] for iname in impls}
    names = list(impls)
    for r in range(rounds):
        shift = r % len(names)
        for iname in names[shift:] + names[:shift]:
            times[iname].append(time_ms(impls[iname], sets))
    rates = {i: [flops / (ms * 1e-3) / 1e12 for ms in t] for i, t in times.items()}
    return rates, {i: statistics.median(v) for i, v in rates.items()}


def best_deepgen(med: dict) -> str:
    """The fastest "deepgen:<variant>" implementation."""
    return max((i for i in med if i.startswith("deepgen:")), key=med.get)


def doc_head(benchmark: str, rounds: int) -> dict:
    """The JSON's first fields: benchmark, device, git_commit, versions, date, rounds."""
    import torch

    import deepgen

    return {"benchmark": benchmark, "device": torch.cuda.get_device_name(),
            "git_commit": git_commit(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "deepgen": deepgen.__version__,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "rounds": rounds}


def format_table(results: list[dict], value_key: str, value_label: str, impl_width: int,
                 ratios) -> str:
    """One line per (shape, impl): the median figure, each ratio of `ratios` ((row key, column
    label, width)) and the relative error."""
    head = " ".join([f"{'shape':18s} {'impl':{impl_width}s} {value_label:>8s}",
                     *(f"{label:>{width}s}" for _, label, width in ratios), f"{'rel err':>9s}"])
    lines = [head]
    for row in results:
        for i, v in row[value_key].items():
            lines.append(" ".join([f"{row['shape']:18s} {i:{impl_width}s} {v:8.1f}",
                                   *(f"{row[key][i]:{width}.3f}" for key, _, width in ratios),
                                   f"{row['rel_error'][i]:9.2e}"]))
    return "\n".join(lines)


def finish(out: Path, doc: dict, table: str, log=print) -> dict:
    """Write the JSON (atomically) and print the table."""
    write_json(out, doc)
    log(table)
    return doc
