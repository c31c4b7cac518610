"""GPU correctness of fp8 GEMMs (wgmma, layout NT; the CPU side: tests/test_fp8.py): every case
of fp8_cases.py against float64 of the dequantized inputs (a * scale_a) @ (b * scale_b) with C
poisoned, every element written, nothing written outside C, no local memory; deepgen.gemm's
scaled form against torch._scaled_mm; the scales read from device memory (a CUDA graph
replays with new values).

    DEEPGEN_TEST_BUNDLE=DIR python -m pytest tests/gpu/test_fp8_gpu.py -m gpu

DEEPGEN_FP8_ERRORS=FILE writes each case's measured relative error there (JSON), the figures
the fp8 tolerances of deepgen/dtypes.py are set from.
"""
from __future__ import annotations

import json
import os
import zlib

import pytest

import make_bundle
from deepgen.dtypes import DTYPES
from deepgen.spec import GemmSpec
from test_gemm_gpu import GUARD, SENTINEL, _guarded_c

pytestmark = pytest.mark.gpu

CASES = make_bundle.strategy_cases("fp8").cases()
ERRORS: dict = {}


def tolerance(spec: GemmSpec) -> float:
    """fp8 inputs: the registry's limit for the input type (the kernel's f32 accumulation on
    the tensor cores) or the output type's rounding, whichever is larger."""
    return max(DTYPES[spec.dtype].tolerance, DTYPES[spec.out_dtype].tolerance)


@pytest.fixture(scope="module")
def hopper():
    import torch

    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip(f"fp8 wgmma kernels are sm_90a: {torch.cuda.get_device_name()} is not "
                    f"Hopper")
    yield
    path = os.environ.get("DEEPGEN_FP8_ERRORS")
    if path:
        with open(path, "w") as f:
            json.dump(ERRORS, f, indent=1, sort_keys=True)


def _scales(spec: GemmSpec, seed: int):
    """f32 scales in 0.25 .. 2.25 (or None without scales): 1-element CUDA tensors (per
    tensor), or M and N values (rowwise)."""
    import torch

    if spec.scale == "none":
        return None, None
    g = torch.Generator().manual_seed(seed)
    n_a, n_b = (1, 1) if spec.scale == "tensor" else (spec.M, spec.N)
    sa, sb = (0.25 + 2 * torch.rand(n, generator=g) for n in (n_a, n_b))
    return sa.cuda(), sb.cuda()


def _reference(spec, a, b, c, alpha, beta, bias, sa, sb):
    """float64 of the dequantized inputs: a * scale_a (per row) @ b * scale_b (per column)."""
    from deepgen.runtime import measure

    a64, b64 = a.double(), b.double()
    if sa is not None:
        a64, b64 = a64 * sa.double()[:, None], b64 * sb.double()[None, :]
    return measure.reference(a64, b64, c, alpha, beta, spec.epilogue, bias)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_fp8_case_matches_float64(case, kernels, hopper):
    import torch

    from deepgen.runtime import measure

    name, spec_fields, given, alpha, beta = case
    spec = GemmSpec(**spec_fields)
    k = kernels.strategy_case("fp8", name, spec_fields, given)
    assert k.spec == spec and k.config["strategy"] == "wgmma"
    for key, value in given.items():
        assert k.config[key] == value, key
    seed = zlib.crc32(name.encode())
    torch.manual_seed(seed)
    errs = []
    for run in range(2):  # fresh inputs each run: a race shows as a moving error
        a, b = measure.operand(spec, "A"), measure.operand(spec, "B")
        extra = {n: measure.operand(spec, n) for n in spec.epilogue.operands()}
        sa, sb = _scales(spec, seed + run)
        if sa is not None:
            extra.update(scale_a=sa, scale_b=sb)
        buf, c = _guarded_c(spec, beta)
        ref = _reference(spec, a, b, c, alpha, beta, extra.get("bias"), sa, sb)
        k(a, b, c, alpha=alpha, beta=beta, **extra)
        torch.cuda.synchronize()
        nan = int(torch.isnan(c).sum())
        assert nan == 0, f"{nan} elements of C not written"
        errs.append(measure.rel_error(c, ref))
        margins = torch.cat([buf[:GUARD], buf[-GUARD:]])
        assert bool((margins == SENTINEL).all()), "the kernel wrote outside C"
    ERRORS[name] = {"errors": errs, "tolerance": tolerance(spec), "config": k.config}
    assert max(errs) <= tolerance(spec), f"relative errors {errs}"
    for attrs in k.driver_attributes():
        assert attrs["local_bytes"] == 0, attrs


def test_gemm_scaled_form_matches_torch_scaled_mm_and_replays_new_scales(kernels, hopper):
    """deepgen.gemm(a, w.t(), scale_a=, scale_b=, out_dtype=) with 0-dim scales (the
    preloaded 4096^3 case kernel) against torch._scaled_mm and float64; in a CUDA graph, new scale
    values written into the same tensors change the replayed result."""
    import torch

    import deepgen
    from deepgen.runtime import measure, preload

    name = "fp8-e4m3-4096"  # torch._scaled_mm wants N a multiple of 16
    spec_fields = next(c[1] for c in CASES if c[0] == name)
    spec = GemmSpec(**spec_fields)
    k = kernels.strategy_case("fp8", name, spec_fields, {})
    preload_dir = kernels.bundle / "fp8" / name if kernels.bundle else None
    if preload_dir is None:
        pytest.skip("needs the bundle (preload)")
    preload(preload_dir)
    torch.manual_seed(7)
    a = torch.randn(spec.M, spec.K, device="cuda").to(torch.float8_e4m3fn)
    w = torch.randn(spec.N, spec.K, device="cuda").to(torch.float8_e4m3fn)
    sa, sb = torch.tensor(0.8, device="cuda"), torch.tensor(1.7, device="cuda")
    out = deepgen.gemm(a, w.t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16)
    ref = (a.double() @ w.double().t()) * 0.8 * 1.7
    theirs = torch._scaled_mm(a, w.t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16)
    err, err_torch = measure.rel_error(out, ref), measure.rel_error(theirs, ref)
    ERRORS["api-vs-torch._scaled_mm"] = {"deepgen": err, "torch": err_torch}
    assert out.dtype == torch.bfloat16 and out.shape == (spec.M, spec.N)
    assert err <= tolerance(spec), err
    assert measure.rel_error(out, theirs.double()) <= 2 * tolerance(spec)
    assert k.spec == spec
    # CUDA graph: the kernel reads the scales from device memory at each replay
    c = torch.empty(spec.M, spec.N, device="cuda", dtype=torch.bfloat16)
    deepgen.gemm(a, w.t(), out=c, scale_a=sa, scale_b=sb)  # warm: the fast path recorded
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        deepgen.gemm(a, w.t(), out=c, scale_a=sa, scale_b=sb)
    sa.fill_(-0.5)
    graph.replay()
    torch.cuda.synchronize()
    assert measure.rel_error(c, (a.double() @ w.double().t()) * -0.5 * 1.7) <= tolerance(spec)


def test_gemm_rowwise_matches_torch_scaled_mm(kernels, hopper):
    """Rowwise scales as torch._scaled_mm takes them: scale_a (M, 1), scale_b (1, N)."""
    import torch

    import deepgen
    from deepgen.runtime import measure, preload

    name = "fp8-e4m3-rowwise-4096"
    spec_fields = next(c[1] for c in CASES if c[0] == name)
    spec = GemmSpec(**spec_fields)
    if kernels.bundle is None:
        pytest.skip("needs the bundle (preload)")
    preload(kernels.bundle / "fp8" / name)
    torch.manual_seed(8)
    a = torch.randn(spec.M, spec.K, device="cuda").to(torch.float8_e4m3fn)
    w = torch.randn(spec.N, spec.K, device="cuda").to(torch.float8_e4m3fn)
    sa = 0.25 + torch.rand(spec.M, 1, device="cuda")
    sb = 0.25 + torch.rand(1, spec.N, device="cuda")
    out = deepgen.gemm(a, w.t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16)
    ref = (a.double() * sa.double()) @ (w.double().t() * sb.double())
    theirs = torch._scaled_mm(a, w.t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16)
    err, err_torch = measure.rel_error(out, ref), measure.rel_error(theirs, ref)
    ERRORS["api-rowwise-vs-torch._scaled_mm"] = {"deepgen": err, "torch": err_torch}
    assert err <= tolerance(spec), err
