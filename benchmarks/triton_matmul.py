"""The Triton baseline of benchmarks/gemm_suite.py: a tutorial-style tiled matmul in Triton.

    C[b] = A[b] @ B[b]        A: (batch,) M x K, B: (batch,) K x N, any strides (row- or
                              column-major views), C: row-major, f32 accumulation

Grouped block order (GROUP_M) for L2 reuse, batch on the second grid axis, masked edges, and
`tl.dot(..., input_precision=...)`: "ieee" for plain fp32, "tf32" for TF32 (and the default,
ignored, for f16/bf16). Tuning is the benchmark's own small loop (`tune`) over CONFIGS, pruned
by the problem's M and by shared memory, each candidate timed the suite's way (runtime/measure.py).
Imports triton: load it only where triton is importable.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def matmul_kernel(a_ptr, b_ptr, c_ptr, M, N, K,
                  stride_ab, stride_am, stride_ak,
                  stride_bb, stride_bk, stride_bn,
                  stride_cb, stride_cm, stride_cn,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                  GROUP_M: tl.constexpr, PRECISION: tl.constexpr):
    pid = tl.program_id(0)
    batch = tl.program_id(1).to(tl.int64)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    num_pid_in_group = GROUP_M * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * GROUP_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + ((pid % num_pid_in_group) % group_size_m)
    pid_n = (pid % num_pid_in_group) // group_size_m

    a_ptr += batch * stride_ab
    b_ptr += batch * stride_bb
    c_ptr += batch * stride_cb
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    mask_m = offs_m < M
    mask_n = offs_n < N
    a_ptrs = a_ptr + offs_m[:, None] * stride_am + offs_k[None, :] * stride_ak
    b_ptrs = b_ptr + offs_k[:, None] * stride_bk + offs_n[None, :] * stride_bn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        k_left = K - k * BLOCK_K
        a = tl.load(a_ptrs, mask=mask_m[:, None] & (offs_k[None, :] < k_left), other=0.0)
        b = tl.load(b_ptrs, mask=(offs_k[:, None] < k_left) & mask_n[None, :], other=0.0)
        acc = tl.dot(a, b, acc, input_precision=PRECISION)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk
    c = acc.to(c_ptr.dtype.element_ty)
    c_ptrs = c_ptr + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn
    tl.store(c_ptrs, c, mask=mask_m[:, None] & mask_n[None, :])


# (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages): a small list, pruned per problem.
CONFIGS = [
    (128, 256, 64, 8, 3),
    (128, 128, 64, 4, 4),
    (128, 128, 32, 4, 4),
    (64, 128, 32, 4, 4),
    (64, 64, 64, 4, 4),
    (16, 128, 128, 4, 4),  # skinny M (decode)
    (16, 64, 128, 4, 4),
]
GROUP_M = 8
SHARED_LIMIT = 200 * 1024  # bytes of pipelined operand tiles; the H100 allows 227 KiB a block


def precision(dtype: torch.dtype, allow_tf32: bool) -> str:
    if dtype == torch.float32:
        return "tf32" if allow_tf32 else "ieee"
    return "tf32"  # the default; not used for 16-bit inputs


def candidates(M: int, element_bytes: int, shared_limit: int = SHARED_LIMIT) -> list[tuple]:
    """CONFIGS that suit an M-row problem and fit in shared memory."""
    if M <= 16:
        fits_m = lambda bm: bm == 16
    elif M <= 64:
        fits_m = lambda bm: bm <= 64
    else:
        fits_m = lambda bm: bm >= 64
    out = [c for c in CONFIGS
           if fits_m(c[0]) and c[4] * (c[0] * c[2] + c[2] * c[1]) * element_bytes <= shared_limit]
    return out or [min(CONFIGS, key=lambda c: c[4] * (c[0] * c[2] + c[2] * c[1]))]


def _3d(t: torch.Tensor) -> tuple[int, int, int]:
    """(batch stride, row stride, column stride); batch stride 0 for a 2-D tensor."""
    return (0, *t.stride()) if t.dim() == 2 else tuple(t.stride())


def matmul(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, config: tuple,
           allow_tf32: bool = False) -> torch.Tensor:
    """c = a @ b with one config (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages)."""
    bm, bn, bk, warps, stages = config
    M, K = a.shape[-2:]
    N = b.shape[-1]
    batch = a.shape[0] if a.dim() == 3 else 1
    grid = (triton.cdiv(M, bm) * triton.cdiv(N, bn), batch)
    matmul_kernel[grid](a, b, c, M, N, K, *_3d(a), *_3d(b), *_3d(c),
                        BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=GROUP_M,
                        PRECISION=precision(a.dtype, allow_tf32),
                        num_warps=warps, num_stages=stages)
    return c


def tune(a, b, c, allow_tf32: bool, bench) -> tuple[tuple, dict]:
    """The fastest candidate config for these operands; `bench(fn) -> ms`. Returns
    (config, {config string: ms or an error string})."""
    times: dict = {}
    best, best_ms = None, float("inf")
    for cfg in candidates(a.shape[-2], a.element_size()):
        key = "x".join(map(str, cfg[:3])) + f"-w{cfg[3]}-s{cfg[4]}"
        try:
            ms = bench(lambda: matmul(a, b, c, cfg, allow_tf32))
        except Exception as e:  # OutOfResources, compile errors: drop the candidate
            times[key] = f"{type(e).__name__}: {str(e)[:200]}"
            continue
        times[key] = ms
        if ms < best_ms:
            best, best_ms = cfg, ms
    if best is None:
        raise RuntimeError(f"no Triton config ran: {times}")
    return best, times
