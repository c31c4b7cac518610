"""GPU correctness of int8 (w8a8) GEMMs (wgmma .s32.s8.s8, layout NT; the CPU side:
tests/test_int8.py): every case of int8_cases.py against float64 of the dequantized inputs
(a * scale_a) @ (b * scale_b), inputs uniform in -127..127, C poisoned, every element
written, nothing written outside C, no local memory; deepgen.gemm's int8 form against
torch._int_mm followed by the scaling in torch (the issue's reference).

    DEEPGEN_TEST_BUNDLE=DIR python -m pytest tests/gpu/test_int8_gpu.py -m gpu

The integer products are exact (s32 on the tensor cores; the conversion to f32 is exact while
|acc| < 2^24, which full-range inputs keep up to K ~ 1000 at worst and random ones far beyond),
so f32 output is held to 1e-6 (deepgen/dtypes.py: only the f32 scaling's rounding remains);
bf16/f16 output to the output type's rounding. DEEPGEN_INT8_ERRORS=FILE writes each case's
measured relative error there (JSON).
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

CASES = make_bundle.strategy_cases("int8").cases()
ERRORS: dict = {}


def tolerance(spec: GemmSpec) -> float:
    """int8 inputs: the registry's limit (f32 scaling of an exact product) or the output
    type's rounding, whichever is larger."""
    return max(DTYPES[spec.dtype].tolerance, DTYPES[spec.out_dtype].tolerance)


@pytest.fixture(scope="module")
def hopper():
    import torch

    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip(f"int8 wgmma kernels are sm_90a: {torch.cuda.get_device_name()} is not "
                    f"Hopper")
    yield
    path = os.environ.get("DEEPGEN_INT8_ERRORS")
    if path:
        with open(path, "w") as f:
            json.dump(ERRORS, f, indent=1, sort_keys=True)


def _operand(spec: GemmSpec, name: str, g):
    """A or B as the kernel takes it (NT: a (M, K) row-major, b the (K, N) view of an (N, K)
    row-major w), uniform in -127..127."""
    import torch

    rows, cols = (spec.M, spec.K) if name == "A" else (spec.N, spec.K)
    t = torch.randint(-127, 128, (rows, cols), generator=g, dtype=torch.int8).cuda()
    return t if name == "A" else t.t()


def _scales(spec: GemmSpec, g):
    import torch

    if spec.scale == "none":
        return None, None
    n_a, n_b = (1, 1) if spec.scale == "tensor" else (spec.M, spec.N)
    # about 1/127 as a quantizer's: results of order sqrt(K)
    sa, sb = ((0.25 + 2 * torch.rand(n, generator=g)) / 127 for n in (n_a, n_b))
    return sa.cuda(), sb.cuda()


def _reference(spec, a, b, c, alpha, beta, bias, sa, sb):
    from deepgen.runtime import measure

    a64, b64 = a.double(), b.double()
    if sa is not None:
        a64, b64 = a64 * sa.double()[:, None], b64 * sb.double()[None, :]
    return measure.reference(a64, b64, c, alpha, beta, spec.epilogue, bias)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_int8_case_matches_float64(case, kernels, hopper):
    import torch

    from deepgen.runtime import measure

    name, spec_fields, given, alpha, beta = case
    spec = GemmSpec(**spec_fields)
    k = kernels.strategy_case("int8", name, spec_fields, given)
    assert k.spec == spec and k.config["strategy"] == "wgmma"
    for key, value in given.items():
        assert k.config[key] == value, key
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    errs = []
    for _run in range(2):  # fresh inputs each run: a race shows as a moving error
        a, b = _operand(spec, "A", g), _operand(spec, "B", g)
        extra = {n: measure.operand(spec, n) for n in spec.epilogue.operands()}
        sa, sb = _scales(spec, g)
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


@pytest.mark.parametrize("name,out_dtype", [("int8-rowwise-4096", "bfloat16"),
                                            ("int8-rowwise-f32-4096", "float32")])
def test_gemm_int8_matches_int_mm_then_scaled(kernels, hopper, name, out_dtype):
    """deepgen.gemm(a, w.t(), scale_a=(M, 1), scale_b=(1, N), out_dtype=) against
    torch._int_mm(a, w.t()) * scale_a * scale_b in torch and float64; f32 out equals the
    exact product scaled in f32 to 1e-6."""
    import torch

    import deepgen
    from deepgen.runtime import measure, preload

    spec_fields = next(c[1] for c in CASES if c[0] == name)
    spec = GemmSpec(**spec_fields)
    if kernels.bundle is None:
        pytest.skip("needs the bundle (preload)")
    preload(kernels.bundle / "int8" / name)
    g = torch.Generator().manual_seed(9)
    a = torch.randint(-127, 128, (spec.M, spec.K), generator=g, dtype=torch.int8).cuda()
    w = torch.randint(-127, 128, (spec.N, spec.K), generator=g, dtype=torch.int8).cuda()
    sa = (0.25 + torch.rand(spec.M, 1, generator=g)).cuda() / 127
    sb = (0.25 + torch.rand(1, spec.N, generator=g)).cuda() / 127
    dt = getattr(torch, out_dtype)
    out = deepgen.gemm(a, w.t(), scale_a=sa, scale_b=sb, out_dtype=dt)
    exact = torch._int_mm(a, w.t())  # int32, exact
    ref = exact.double() * sa.double() * sb.double()
    theirs = (exact.float() * sa * sb).to(dt)
    err, err_torch = measure.rel_error(out, ref), measure.rel_error(theirs, ref)
    ERRORS[f"api-{name}-vs-int_mm"] = {"deepgen": err, "torch": err_torch}
    assert out.dtype == dt and out.shape == (spec.M, spec.N)
    assert err <= tolerance(spec), err
    assert measure.rel_error(out, theirs.double()) <= 2 * tolerance(spec)
    # the accumulator is exact: with scales of 1 and f32 out every element is the int32
    # sum (|acc| < 2^24 here), bit for bit
    if dt is torch.float32:
        ones = deepgen.gemm(a, w.t(), scale_a=torch.ones(spec.M, 1, device="cuda"),
                            scale_b=torch.ones(1, spec.N, device="cuda"), out_dtype=dt)
        assert exact.abs().max().item() < 2**24
        assert torch.equal(ones, exact.float())
