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

import make_bundle
import pytest
import quant_gpu
from quant_gpu import tolerance

from deepgen.spec import GemmSpec

pytestmark = pytest.mark.gpu

CASES = make_bundle.strategy_cases("fp8").cases()
ERRORS: dict = {}


hopper = quant_gpu.hopper_fixture(ERRORS, "DEEPGEN_FP8_ERRORS", "fp8")


def _operands(spec, seed: int):
    """Random fp8 A and B (torch's global generator, seeded), scales in 0.25 .. 2.25 seeded
    per run."""
    import torch
    from deepgen.runtime import measure

    torch.manual_seed(seed)

    def one(run: int):
        a, b = measure.operand(spec, "A"), measure.operand(spec, "B")
        g = torch.Generator().manual_seed(seed + run)
        sa, sb = quant_gpu.scales(spec, g)
        scale_args = {} if sa is None else {"scale_a": sa, "scale_b": sb}
        return (a, b, *measure.dequantized(spec, a, b, scale_args), scale_args)

    return one


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_fp8_case_matches_float64(case, kernels, hopper):
    quant_gpu.check_case(kernels, "fp8", case, ERRORS, _operands)


def test_gemm_scaled_form_matches_torch_scaled_mm_and_replays_new_scales(kernels, hopper):
    """deepgen.gemm(a, w.t(), scale_a=, scale_b=, out_dtype=) with 0-dim scales (the
    preloaded 4096^3 case kernel) against torch._scaled_mm and float64; in a CUDA graph, new scale
    values written into the same tensors change the replayed result."""
    import torch
    from deepgen.runtime import measure, preload

    import deepgen

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
    from deepgen.runtime import measure, preload

    import deepgen

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
