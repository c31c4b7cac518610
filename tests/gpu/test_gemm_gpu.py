"""GPU correctness of compiled kernels (and of the benchmark suite's baselines).

Run on the GPU host from a bundle (see make_bundle.py):
    DEEPGEN_TEST_BUNDLE=DIR python -m pytest tests/gpu -m gpu
The CPU-side counterparts (the bundle builds, launches and PTX features) are in
tests/test_suite_cpu.py.
"""
from __future__ import annotations

import json
import zlib

import pytest

import make_bundle
from deepgen.spec import GemmSpec

pytestmark = pytest.mark.gpu

CASES = make_bundle.correctness_sweep().cases()
GUARD = 64  # elements of sentinel before and after C (64 x 2 bytes keeps C 16-byte aligned)
SENTINEL = 12345.0


def _guarded_c(spec: GemmSpec, beta: float):
    """C inside a larger buffer whose margins hold SENTINEL: (buffer, c view)."""
    import torch

    from deepgen.runtime import measure

    n = spec.batch * spec.M * spec.N
    buf = torch.full((GUARD + n + GUARD,), SENTINEL, device="cuda",
                     dtype=measure.TORCH_DTYPES[spec.out_dtype])
    shape = (spec.M, spec.N) if spec.batch == 1 else (spec.batch, spec.M, spec.N)
    c = buf[GUARD:GUARD + n].view(shape)
    if beta == 0:
        c.fill_(float("nan"))  # poisoned: an element the kernel does not write fails
    else:
        c.copy_(measure.operand(spec, "C"))
    return buf, c


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_sweep_case_matches_float64(case, kernels):
    """C = epilogue(op(A) @ op(B)) (alpha/beta with C, bias, activation) within DESIGN.md's
    tolerance, every element written,
    nothing written outside C, no local memory (spills) in any launch."""


    name, spec_fields, overrides, alpha, beta = case
    spec = GemmSpec(**spec_fields)
    k = kernels.sweep(name, spec_fields, overrides)
    assert k.spec == spec
    for key, value in (overrides or {}).items():
        assert k.config[key] == value, key
    check_guarded(k, spec, alpha, beta, seed=name)


def check_strategy_case(kernels, kind: str, case, runs: int = 1):
    """A case of a kernel-building strategy (tests/gpu/<kind>_cases.py): its kernel is that
    strategy's with the given fields, and check_guarded passes."""
    name, spec_fields, given, alpha, beta = case
    spec = GemmSpec(**spec_fields)
    k = kernels.strategy_case(kind, name, spec_fields, given)
    assert k.spec == spec and k.config["strategy"] == kind
    for key, value in given.items():
        assert k.config[key] == value, key
    check_guarded(k, spec, alpha, beta, seed=name, runs=runs)


def check_guarded(k, spec: GemmSpec, alpha: float, beta: float, seed: str, runs: int = 1):
    """Run `k` on fresh random operands (and the epilogue's, e.g. the bias) `runs` times, C
    poisoned (beta == 0) inside SENTINEL margins: every element written, within the spec's
    tolerance of the float64 chain, nothing written outside C, no local memory (spills)."""
    import torch

    from deepgen.runtime import measure

    torch.manual_seed(zlib.crc32(seed.encode()))
    for _ in range(runs):  # fresh inputs each run: a race shows as a moving error
        a, b = measure.operand(spec, "A"), measure.operand(spec, "B")
        extra = {n: measure.operand(spec, n) for n in spec.epilogue.operands()}  # bias, ...
        buf, c = _guarded_c(spec, beta)
        ref = measure.reference(a, b, c, alpha, beta, spec.epilogue, extra.get("bias"))
        k(a, b, c, alpha=alpha, beta=beta, **extra)
        torch.cuda.synchronize()
        nan = int(torch.isnan(c).sum())
        assert nan == 0, f"{nan} elements of C not written"
        err = measure.rel_error(c, ref)
        assert err <= measure.tolerance(spec), f"relative error {err:.3e}"
        margins = torch.cat([buf[:GUARD], buf[-GUARD:]])
        assert bool((margins == SENTINEL).all()), "the kernel wrote outside C"
    for attrs in k.driver_attributes():
        assert attrs["local_bytes"] == 0, attrs


def test_suite_smoke_run(kernels, tmp_path):
    """gemm_suite --run end to end on the smoke suite: every DeepGen point checks out, torch
    and Triton (when importable) too, and the JSON has the figures the table is made of."""
    import importlib.util

    gs = make_bundle.gemm_suite()
    bundle = kernels.suite_bundle()
    out = tmp_path / "r.json"
    doc = gs.run_bundle(bundle, out, warmup_ms=2, rep_ms=10, tune_rep_ms=3, want_plot=False,
                        print_table=False)
    saved = json.loads(out.read_text())
    index = gs.read_index(bundle)
    assert [r["name"] for r in saved["results"]] == [e["name"] for e in index["entries"]]
    for key in ("device", "driver_version", "torch", "triton", "deepgen", "date", "git_commit"):
        assert key in saved, key
    has_triton = importlib.util.find_spec("triton") is not None
    for r in doc["results"]:
        if r["dtype"] == "tf32" and r["deepgen_check"] == "n/a":
            assert r.get("deepgen_tflops") is None
        else:
            assert r["deepgen_check"] == "ok", r
            assert r["deepgen_tflops"] > 0 and r["ratio_vs_cublas"] > 0
            assert r["config"] and r["config_source"] in ("tuned", "default")
        assert r["torch_check"] == "ok", r
        assert r["torch_tflops"] > 0
        if has_triton:
            assert r["triton_check"] == "ok", r
            assert r["triton_tflops"] > 0 and r["triton_config"]
    table = gs.format_table(doc["results"])
    for r in doc["results"]:
        assert r["shape"] in table


TRITON_CASES = [
    # (dtype label, M, N, K, batch, layout)
    ("fp32", 130, 67, 150, 2, "TN"),
    ("tf32", 130, 67, 150, 1, "NT"),
    ("f16", 8, 300, 129, 1, "NN"),
    ("bf16", 257, 96, 70, 3, "TT"),
    ("bf16", 1, 4097, 33, 1, "NN"),
]


@pytest.mark.parametrize("label,M,N,K,batch,layout", TRITON_CASES)
def test_triton_baseline_matches_float64(label, M, N, K, batch, layout):
    """Every candidate config of the suite's Triton matmul is right (any may win tuning)."""
    pytest.importorskip("triton")
    import torch

    from deepgen.runtime import measure

    gs = make_bundle.gemm_suite()
    tm = gs._load_triton()
    spec = GemmSpec(M=M, N=N, K=K, batch=batch, layout=layout, **gs.DTYPES[label])
    torch.manual_seed(0)
    a, b = measure.operand(spec, "A"), measure.operand(spec, "B")
    ref = measure.reference(a, b)
    configs = tm.candidates(M, a.element_size())
    assert configs
    for cfg in configs:
        c = measure.operand(spec, "C").fill_(float("nan"))
        tm.matmul(a, b, c, cfg, spec.allow_tf32)
        torch.cuda.synchronize()
        err = measure.rel_error(c, ref)
        assert err <= measure.tolerance(spec), (cfg, err)
