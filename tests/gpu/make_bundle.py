"""Compile the kernels of the GPU tests into a bundle, on a machine with MLIR (no GPU needed).

    python tests/gpu/make_bundle.py DIR [--only REGEX]

DIR/sweep/  the cases of benchmarks/correctness_sweep.py (one kernel bundle per case and an
            index.json that `correctness_sweep.py --run DIR/sweep` also reads);
DIR/suite/  benchmarks/gemm_suite.py's "smoke" suite in every dtype (a gemm_suite bundle);
DIR/gemv/   the gemv strategy's cases of tests/gpu/gemv_cases.py (test_gemv_gpu.py);
DIR/wgmma/  the wgmma strategy's cases of tests/gpu/wgmma_cases.py (test_wgmma_gpu.py);
DIR/fp8/    the fp8 cases of tests/gpu/fp8_cases.py (test_fp8_gpu.py; wgmma kernels);
DIR/int8/   the int8 (w8a8) cases of tests/gpu/int8_cases.py (test_int8_gpu.py; wgmma kernels);
DIR/fp8_block/  block-scaled fp8 cases of tests/gpu/fp8_block_cases.py (test_fp8_block_gpu.py);
DIR/decode/ the decode defaults' cases of tests/gpu/decode_cases.py (test_decode_gpu.py);
DIR/tma/    the TMA probe kernels of tests/gpu/tma_probe.py, one KernelArtifact per variant
            (test_tma_gpu.py: by-value descriptors, mbarriers, clusters).

`--only REGEX` selects sweep cases, suite points and probes (as "tma/<variant>") by name:
`--only tma` builds the probes alone.

Then, on the GPU host (no MLIR there):

    DEEPGEN_TEST_BUNDLE=DIR python -m pytest tests/gpu -m gpu
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def load_module(relpath: str, name: str):
    """A module of the source tree by path (benchmarks/ is not a package)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / relpath)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def correctness_sweep():
    return load_module("benchmarks/correctness_sweep.py", "deepgen_bench_correctness_sweep")


def gemm_suite():
    return load_module("benchmarks/gemm_suite.py", "deepgen_bench_gemm_suite")


def strategy_cases(kind: str):
    """tests/gpu/<kind>_cases.py (kind "gemv", "wgmma", "fp8", "int8", "fp8_block" or "decode"):
    cases() and compile_case()."""
    return load_module(f"tests/gpu/{kind}_cases.py", f"deepgen_tests_{kind}_cases")


def tma_probe():
    return load_module("tests/gpu/tma_probe.py", "deepgen_tests_tma_probe")


def compile_case(spec_fields: dict, overrides: dict | None, target: str = "sm_90a"):
    """The KernelArtifact of one sweep case: the default config with the case's overrides."""
    from deepgen.compiler import compile_artifact, default_config
    from deepgen.spec import GemmSpec

    spec = GemmSpec(**spec_fields)
    cfg = default_config(spec, target)
    if overrides:
        cfg = cfg.replace(**overrides)
    return compile_artifact(spec, cfg, target, keep_ir=False)


def make_bundle(directory: Path, only: str | None = None, log=print) -> dict:
    """Write DIR/sweep, DIR/suite and DIR/tma; returns {"sweep": [names], "suite": index,
    "tma": [variant names]}."""
    directory = Path(directory)
    sweep_dir = directory / "sweep"
    sweep_dir.mkdir(parents=True, exist_ok=True)
    index = []
    for name, spec_fields, overrides, alpha, beta in correctness_sweep().cases():
        if only and not re.search(only, name):
            continue
        t = time.perf_counter()
        compile_case(spec_fields, overrides).save(sweep_dir / name)
        index.append({"name": name, "alpha": alpha, "beta": beta})
        log(f"sweep/{name:32s} {time.perf_counter() - t:5.2f} s")
    (sweep_dir / "index.json").write_text(json.dumps(index, indent=1))
    gs = gemm_suite()
    points = [e for e in gs.entries(["smoke"]) if not only or re.search(only, e.name)]
    suite = gs.compile_bundle(directory / "suite", points,
                              log=lambda line: log(f"suite/{line}"))
    tma = tma_probe().make_bundles(directory / "tma", only, log=log)
    return {"sweep": [e["name"] for e in index], "suite": suite, "tma": tma,
            **{kind: make_strategy_cases(kind, directory / kind, only, log)
               for kind in ("gemv", "wgmma", "fp8", "int8", "fp8_block", "decode")}}


def make_strategy_cases(kind: str, directory: Path, only: str | None = None,
                        log=print) -> list[str]:
    """DIR/<kind>/<name>: a kernel-building strategy's cases (tests/gpu/<kind>_cases.py)."""
    cases = strategy_cases(kind)
    names = []
    for name, spec_fields, given, _alpha, _beta in cases.cases():
        if only and not re.search(only, name):
            continue
        t = time.perf_counter()
        cases.compile_case(spec_fields, given).save(directory / name)
        names.append(name)
        log(f"{kind}/{name:32s} {time.perf_counter() - t:5.2f} s")
    return names


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("directory", type=Path)
    p.add_argument("--only", default=None, metavar="REGEX",
                   help="only cases/points whose name matches (a partial bundle)")
    a = p.parse_args(argv)
    t = time.perf_counter()
    made = make_bundle(a.directory, a.only)
    size = sum(f.stat().st_size for f in a.directory.rglob("*") if f.is_file())
    print(f"{len(made['sweep'])} sweep kernels + {len(made['suite']['entries'])} suite points + "
          f"{len(made['tma'])} TMA probes in {a.directory}: {size / 2**20:.1f} MiB, "
          f"{time.perf_counter() - t:.0f} s")
    print(f"on the GPU host: DEEPGEN_TEST_BUNDLE={a.directory} python -m pytest tests/gpu -m gpu")
    return 1 if any(e["error"] for e in made["suite"]["entries"]) else 0


if __name__ == "__main__":
    sys.exit(main())
