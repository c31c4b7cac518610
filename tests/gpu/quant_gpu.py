"""What the quantized GPU tests (test_fp8_gpu.py, test_int8_gpu.py, test_fp8_block_gpu.py) share:
the tolerance, the Hopper fixture that also writes the measured errors, rowwise/per-tensor scales
(their float64 dequantization: runtime/measure.dequantized), and the case check (C poisoned
inside test_gemm_gpu's guard margins, every element written, within tolerance, nothing written
outside C, no local memory).
"""
from __future__ import annotations

import json
import os
import zlib

import pytest
from test_gemm_gpu import GUARD, SENTINEL, _guarded_c

from deepgen.dtypes import DTYPES
from deepgen.spec import GemmSpec

RUNS = 2  # fresh inputs each run: a race shows as a moving error


def tolerance(spec: GemmSpec) -> float:
    """The registry's limit for the input type (f32 accumulation or scaling on the tensor
    cores) or the output type's rounding, whichever is larger."""
    return max(DTYPES[spec.dtype].tolerance, DTYPES[spec.out_dtype].tolerance)


def hopper_fixture(errors: dict, env: str, what: str):
    """A module fixture `hopper`: skips off sm_90, and at the end writes `errors` (JSON) to the
    file named by $env when set."""

    @pytest.fixture(scope="module", name="hopper")
    def hopper():
        import torch

        if torch.cuda.get_device_capability() != (9, 0):
            pytest.skip(f"{what} wgmma kernels are sm_90a: {torch.cuda.get_device_name()} is "
                        f"not Hopper")
        yield
        path = os.environ.get(env)
        if path:
            with open(path, "w") as f:
                json.dump(errors, f, indent=1, sort_keys=True)

    return hopper


def scales(spec: GemmSpec, g, unit: float = 1.0):
    """measure.scale_operands' f32 scales (0.25 .. 2.25, drawn on the CPU from `g`) / unit,
    on the GPU (None, None without scales): 1-element tensors (per tensor) or M and N values
    (rowwise)."""
    from deepgen.runtime import measure

    if spec.scale == "none":
        return None, None
    s = measure.scale_operands(spec, "cpu", g)
    return (s["scale_a"] / unit).cuda(), (s["scale_b"] / unit).cuda()


def check_case(kernels, kind: str, case, errors: dict, operands):
    """A case of tests/gpu/<kind>_cases.py: its kernel is wgmma's (or the given strategy's)
    with the given fields; RUNS
    runs of operands(run) -> (a, b, a64, b64, scale arguments) (the kernel's A and B, their
    float64 dequantized values, the scales as the kernel takes them) with the epilogue's
    operands, C poisoned inside guard margins, against measure.reference. operands is
    make(spec, seed) of the caller's make, seed the CRC of the case name."""
    import torch
    from deepgen.runtime import measure

    name, spec_fields, given, alpha, beta = case
    spec = GemmSpec(**spec_fields)
    k = kernels.strategy_case(kind, name, spec_fields, given)
    assert k.spec == spec and k.config["strategy"] == given.get("strategy", "wgmma")
    for key, value in given.items():
        assert k.config[key] == value, key
    next_run = operands(spec, zlib.crc32(name.encode()))
    errs = []
    for run in range(RUNS):
        a, b, a64, b64, scale_args = next_run(run)
        extra = {n: measure.operand(spec, n) for n in spec.epilogue.operands()}
        buf, c = _guarded_c(spec, beta)
        ref = measure.reference(a64, b64, c, alpha, beta, spec.epilogue, extra.get("bias"))
        k(a, b, c, alpha=alpha, beta=beta, **scale_args, **extra)
        torch.cuda.synchronize()
        nan = int(torch.isnan(c).sum())
        assert nan == 0, f"{nan} elements of C not written"
        errs.append(measure.rel_error(c, ref))
        margins = torch.cat([buf[:GUARD], buf[-GUARD:]])
        assert bool((margins == SENTINEL).all()), "the kernel wrote outside C"
    errors[name] = {"errors": errs, "tolerance": tolerance(spec), "config": k.config}
    assert max(errs) <= tolerance(spec), f"relative errors {errs}"
    for attrs in k.driver_attributes():
        assert attrs["local_bytes"] == 0, attrs
