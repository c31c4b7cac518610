"""GPU correctness of the wgmma strategy (TMA + mbarrier ring + warp-specialized wgmma, sm_90a):
every case of wgmma_cases.py against float64 with C poisoned, every element written, nothing
written outside C, no local memory.

    DEEPGEN_TEST_BUNDLE=DIR python -m pytest tests/gpu/test_wgmma_gpu.py -m gpu

An mbarrier phase bug hangs rather than fails: run this under `timeout`.
"""
from __future__ import annotations

import make_bundle
import pytest
from test_gemm_gpu import check_strategy_case

from deepgen.spec import GemmSpec

pytestmark = pytest.mark.gpu

CASES = make_bundle.strategy_cases("wgmma").cases()


@pytest.fixture(scope="module")
def hopper():
    import torch

    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip(f"wgmma kernels are sm_90a: {torch.cuda.get_device_name()} is not Hopper")


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_wgmma_case_matches_float64(case, kernels, hopper):
    check_strategy_case(kernels, "wgmma", case, runs=2)


def test_tma_store_kernel_replays_in_a_cuda_graph(kernels, hopper):
    """A TMA-epilogue kernel (C's store descriptor a by-value parameter, like A's and B's)
    captured in a CUDA graph: each replay with new A and new C values (beta reads C) gives
    the float64 result of those values, every element written."""
    import torch
    from deepgen.runtime import measure

    name = "wgmma-tmast-NT-partial-c1-n32"
    _, spec_fields, given, _, _ = next(c for c in CASES if c[0] == name)
    spec = GemmSpec(**spec_fields)
    k = kernels.strategy_case("wgmma", name, spec_fields, given)
    assert k.config["epilogue"] == "tma"
    torch.manual_seed(11)
    a, b = measure.operand(spec, "A"), measure.operand(spec, "B")
    c = torch.randn(spec.M, spec.N, device="cuda").to(measure.TORCH_DTYPES[spec.out_dtype])
    k(a, b, c, alpha=1.0, beta=0.5)  # warm-up: loads the module, encodes the descriptors
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        k(a, b, c, alpha=1.0, beta=0.5)
    for _ in range(2):
        a.copy_(measure.operand(spec, "A"))
        c.copy_(torch.randn(spec.M, spec.N, device="cuda"))
        ref = measure.reference(a, b, c.clone(), 1.0, 0.5, spec.epilogue)
        graph.replay()
        torch.cuda.synchronize()
        err = measure.rel_error(c, ref)
        assert err <= measure.tolerance(spec), f"relative error {err:.3e}"
