"""Checking and timing GEMMs on the GPU, the way DESIGN.md says to (one place for all tools).

- operands: random data (never zeros), in the spec's layouts (a transposed view for "T");
  quantized inputs (fp8, int8) with random scales in the forms the kernel takes
  (scale_operands: per tensor, rowwise, block).
- check: float64 reference (of the dequantized inputs, with the spec's epilogue chain:
  alpha/beta, bias, activation), relative Frobenius error against the spec's tolerance, output
  poisoned with NaN before the launch so unwritten elements fail.
- time: CUDA events, warm-up, median of repeats (triton.testing.do_bench when installed),
  rotating through enough input sets that they exceed the L2 cache.
"""
from __future__ import annotations

import math

import torch

from deepgen.dtypes import DTYPES, QUANTIZED_DTYPES
from deepgen.spec import DTYPE_BYTES, SCALE_BLOCK, GemmSpec

from .kernel import TORCH_DTYPES

# Relative Frobenius error limits from DESIGN.md, by output type (f32: SIMT FMA accuracy).
TOLERANCE = {name: d.tolerance for name, d in DTYPES.items()}
L2_BYTES = 50 * 2**20


def tolerance(spec: GemmSpec) -> float:
    if spec.allow_tf32:
        return TOLERANCE["tf32"]
    # f16/bf16 inputs with f32 output still carry the inputs' rounding: use the input's limit.
    out = spec.out_dtype if spec.out_dtype != "f32" else spec.dtype
    return TOLERANCE[out]


def operand(spec: GemmSpec, name: str, device="cuda", generator=None) -> torch.Tensor:
    """A random operand in the spec's memory layout: (batch, rows, cols), or 2-D for batch 1;
    "bias": the 1-D bias of the spec's epilogue (M or N values)."""
    if name == "bias":
        return torch.randn(spec.operand_shape("bias"), device=device, generator=generator).to(
            TORCH_DTYPES[spec.operand_dtype("bias")])
    rows, cols = {"A": (spec.M, spec.K), "B": (spec.K, spec.N), "C": (spec.M, spec.N)}[name]
    transposed = {"A": spec.a_transposed, "B": spec.b_transposed, "C": False}[name]
    shape = (spec.batch, cols, rows) if transposed else (spec.batch, rows, cols)
    dtype = TORCH_DTYPES[spec.operand_dtype(name)]
    if dtype is torch.int8:  # small integers: randn would round most of them to 0 and +-1
        t = torch.randint(-16, 17, shape, device=device, generator=generator, dtype=dtype)
    else:
        t = torch.randn(shape, device=device, generator=generator).to(dtype)
    if transposed:
        t = t.transpose(1, 2)
    return t[0] if spec.batch == 1 else t


def scale_operands(spec: GemmSpec, device="cuda", generator=None) -> dict:
    """The spec's scales ({} without): scale_a and scale_b, f32 in 0.25 .. 2.25, in the
    shapes the kernel takes (GemmSpec.operand_shape: one value per tensor; M and N values
    rowwise; block: (ceil(K/128), M) and (ceil(N/128), ceil(K/128)))."""
    if spec.scale == "none":
        return {}
    return {name: 0.25 + 2 * torch.rand(spec.operand_shape(name), device=device,
                                         generator=generator)
            for name in ("scale_a", "scale_b")}


def dequantized(spec: GemmSpec, a, b, scales: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 A (M x K) and B (K x N) as the kernel multiplies them: each element times its
    scale (per tensor, per row of A and column of B, or per 1 x 128 block of A along K and
    128 x 128 block of B). Batch 1 (scales are not batched)."""
    a64, b64 = a.double(), b.double()
    if not scales:
        return a64, b64
    sa, sb = scales["scale_a"].double(), scales["scale_b"].double()
    if spec.scale == "tensor":
        return a64 * sa[0], b64 * sb[0]
    if spec.scale == "rowwise":
        return a64 * sa[:, None], b64 * sb[None, :]
    blk = SCALE_BLOCK  # block: sa[k // 128, m] for A[m, k], sb[n // 128, k // 128] for B[k, n]
    ka = sa.t().repeat_interleave(blk, dim=1)[:, :spec.K]
    kb = sb.t().repeat_interleave(blk, dim=0)[:spec.K].repeat_interleave(blk, dim=1)
    return a64 * ka, b64 * kb[:, :spec.N]


def reference(a, b, c=None, alpha=1.0, beta=0.0, epilogue=None, bias=None) -> torch.Tensor:
    """float64 result of the epilogue chain (deepgen.epilogue.EpilogueSpec; the default:
    alpha * a @ b + beta * c) applied to a @ b, step by step in the chain's order."""
    acc = torch.matmul(a.double(), b.double())
    steps = ("alpha_beta",) if epilogue is None else epilogue.steps
    for step in steps:
        if step == "alpha_beta":
            acc = alpha * acc
            if beta != 0 and c is not None:
                acc = acc + beta * c.double()
        elif step == "bias_row":
            acc = acc + bias.double()[:, None]
        elif step == "bias_col":
            acc = acc + bias.double()
        elif step == "relu":
            acc = torch.relu(acc)
        elif step == "gelu_tanh":
            acc = 0.5 * acc * (1 + torch.tanh(math.sqrt(2 / math.pi)
                                              * (acc + 0.044715 * acc ** 3)))
        elif step == "silu":
            acc = acc * torch.sigmoid(acc)
        else:
            raise ValueError(f"epilogue: unknown step {step!r}")
    return acc


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Relative Frobenius error; NaN/inf anywhere in `out` gives inf."""
    o = out.double()
    if not torch.isfinite(o).all():
        return float("inf")
    return ((o - ref).norm() / ref.norm().clamp_min(1e-300)).item()


def check(kernel, spec: GemmSpec, alpha=1.0, beta=0.0, device="cuda") -> float:
    """Run `kernel` once on fresh random data (and scales) with C poisoned; returns the
    relative error against the float64 result of the dequantized inputs."""
    a, b = operand(spec, "A", device), operand(spec, "B", device)
    c = operand(spec, "C", device)
    scales = scale_operands(spec, device)
    extra = {name: operand(spec, name, device) for name in spec.epilogue.operands()}
    a64, b64 = dequantized(spec, a, b, scales)
    ref = reference(a64, b64, c, alpha, beta, spec.epilogue, extra.get("bias"))
    if beta == 0 or not spec.epilogue.reads_c:
        c.fill_(float("nan"))
    kernel(a, b, c, alpha=alpha, beta=beta, **scales, **extra)
    if c.is_cuda:
        torch.cuda.synchronize()
    return rel_error(c, ref)


def input_sets(spec: GemmSpec, device="cuda") -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Enough (A, B) pairs that cycling through them does not hit in L2."""
    per_set = spec.batch * (spec.M * spec.K + spec.K * spec.N) * DTYPE_BYTES[spec.dtype]
    count = max(1, min(16, -(-2 * L2_BYTES // per_set)))
    return [(operand(spec, "A", device), operand(spec, "B", device)) for _ in range(count)]


def time_ms(run_one, sets, warmup_ms=25, rep_ms=100) -> float:
    """Median milliseconds of run_one(a, b), rotating through `sets` of inputs."""
    state = {"i": 0}

    def step():
        a, b = sets[state["i"] % len(sets)]
        state["i"] += 1
        run_one(a, b)

    try:
        from triton.testing import do_bench
    except ImportError:
        do_bench = None
    if do_bench is not None:
        return float(do_bench(step, warmup=warmup_ms, rep=rep_ms, return_mode="median"))
    return _events_median(step, warmup_ms, rep_ms)


def _events_median(step, warmup_ms, rep_ms) -> float:
    step()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(5):
        step()
    end.record()
    torch.cuda.synchronize()
    est = max(start.elapsed_time(end) / 5, 1e-3)
    for _ in range(max(1, int(warmup_ms / est))):
        step()
    times = []
    for _ in range(max(5, int(rep_ms / est))):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        step()
        e.record()
        times.append((s, e))
    torch.cuda.synchronize()
    ms = sorted(s.elapsed_time(e) for s, e in times)
    return ms[len(ms) // 2]


def baseline_sets(spec: GemmSpec, sets: list) -> list:
    """The input sets torch_baseline runs on: `sets` themselves, or for quantized inputs
    (fp8, int8: torch.matmul takes neither) their bf16 copies."""
    if spec.dtype not in QUANTIZED_DTYPES:
        return sets
    return [(a.to(torch.bfloat16), b.to(torch.bfloat16)) for a, b in sets]


def torch_baseline(spec: GemmSpec):
    """run_one(a, b) for torch.matmul into a preallocated C (TF32 only when the spec allows);
    quantized specs: the bf16 matmul of the same shape on baseline_sets (what runs without
    quantization)."""
    torch.backends.cuda.matmul.allow_tf32 = bool(spec.allow_tf32)
    out = torch.empty(*(() if spec.batch == 1 else (spec.batch,)), spec.M, spec.N,
                      device="cuda", dtype=TORCH_DTYPES[spec.out_dtype])
    inputs = torch.bfloat16 if spec.dtype in QUANTIZED_DTYPES else TORCH_DTYPES[spec.dtype]
    if out.dtype is inputs:
        return lambda a, b: torch.matmul(a, b, out=out)
    return lambda a, b: out.copy_(torch.matmul(a, b))


def tflops(spec: GemmSpec, ms: float) -> float:
    return spec.flops / (ms * 1e-3) / 1e12
