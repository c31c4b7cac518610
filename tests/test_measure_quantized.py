"""runtime/measure.py with quantized inputs (issue 16's tuner): the scales drawn in the shapes
the kernel takes, the float64 dequantization per scale mode against an element-by-element
computation, and check() passing the scales to the kernel and measuring against the
dequantized result (on the CPU, with fake kernels: a right one and one that ignores the
scales), the bf16 baseline inputs."""
from __future__ import annotations

import pytest
import torch

from deepgen.runtime import measure
from deepgen.spec import GemmSpec

MODES = [("e4m3", "tensor"), ("e4m3", "rowwise"), ("e5m2", "block"), ("int8", "rowwise"),
         ("int8", "tensor")]


def _spec(dtype, scale, M=5, N=136, K=260):  # partial last blocks of N and K
    return GemmSpec(M=M, N=N, K=K, dtype=dtype, out_dtype="bf16", layout="NT", scale=scale)


@pytest.mark.parametrize("dtype,scale", MODES)
def test_scales_have_the_kernel_shapes_and_range(dtype, scale):
    spec = _spec(dtype, scale)
    s = measure.scale_operands(spec, "cpu")
    assert set(s) == {"scale_a", "scale_b"}
    for name, t in s.items():
        assert t.shape == spec.operand_shape(name) and t.dtype == torch.float32
        assert bool(((t >= 0.25) & (t <= 2.25)).all())
    assert measure.scale_operands(GemmSpec(M=4, N=4, K=4), "cpu") == {}


@pytest.mark.parametrize("dtype,scale", MODES)
def test_dequantized_matches_element_by_element(dtype, scale):
    spec = _spec(dtype, scale)
    a, b = measure.operand(spec, "A", "cpu"), measure.operand(spec, "B", "cpu")
    assert a.dtype == measure.TORCH_DTYPES[dtype] and b.shape == (spec.K, spec.N)
    assert not b.is_contiguous()  # NT: B stored (N, K), its (K, N) view
    s = measure.scale_operands(spec, "cpu")
    a64, b64 = measure.dequantized(spec, a, b, s)
    sa, sb = s["scale_a"].double(), s["scale_b"].double()
    pick = {"tensor": lambda t, i, j: t[0], "rowwise": lambda t, i, j: t[i],
            "block": lambda t, i, j: t[j // 128, i]}[scale]  # (scales, row/col, k or n)
    for m, k in ((0, 0), (4, 259), (2, 131)):
        assert a64[m, k] == a[m, k].double() * pick(sa, m, k)
    for k, n in ((0, 0), (259, 135), (128, 127), (3, 130)):
        want = sb[n // 128, k // 128] if scale == "block" else pick(sb, n, k)
        assert b64[k, n] == b[k, n].double() * want


def test_int8_operands_are_small_integers_not_mostly_zero():
    spec = _spec("int8", "rowwise", M=64, K=512)
    a = measure.operand(spec, "A", "cpu")
    assert a.dtype == torch.int8 and int(a.abs().max()) <= 16
    assert float((a == 0).double().mean()) < 0.1


@pytest.mark.parametrize("dtype,scale", MODES)
def test_check_passes_the_scales_and_compares_with_the_dequantized_product(
        dtype, scale, monkeypatch):
    spec = _spec(dtype, scale)
    seen = {}

    def right(a, b, c, *, alpha, beta, scale_a, scale_b):
        seen.update(scale_a=scale_a, scale_b=scale_b)
        a64, b64 = measure.dequantized(spec, a, b, {"scale_a": scale_a, "scale_b": scale_b})
        c.copy_(alpha * (a64 @ b64))

    def unscaled(a, b, c, *, alpha, beta, scale_a, scale_b):
        c.copy_(alpha * (a.double() @ b.double()))

    assert measure.check(right, spec, device="cpu") < 4e-3
    assert seen["scale_a"].shape == spec.operand_shape("scale_a")
    assert measure.check(unscaled, spec, device="cpu") > 0.05


def test_baseline_sets_are_bf16_copies_for_quantized_inputs():
    spec = _spec("e4m3", "tensor")
    sets = [(measure.operand(spec, "A", "cpu"), measure.operand(spec, "B", "cpu"))]
    (a, b), = measure.baseline_sets(spec, sets)
    assert a.dtype == b.dtype == torch.bfloat16 and torch.equal(a.float(), sets[0][0].float())
    plain = GemmSpec(M=4, N=4, K=4, dtype="bf16")
    assert measure.baseline_sets(plain, sets) is sets
