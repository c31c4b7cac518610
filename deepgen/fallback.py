"""deepgen.gemm's way out to torch: the same product computed by torch's own ops.

Used when no DeepGen kernel can be had (no compiler or MLIR here, and no preloaded bundle or
cache entry: a warning says so once per process) and for every call when the environment sets
DEEPGEN_DISABLE=1 (read once, at the first deepgen.gemm; `disabled(refresh=True)` reads it
again). The result is what torch gives: a plain product is torch.matmul, a column bias with
alpha = 1 is F.linear (cuBLAS's bias epilogue, as nn.Linear), anything else is computed in
float32 from torch's product and rounded once to the output type. Differentiable, as torch's
ops are. Imports torch, never MLIR.
"""
from __future__ import annotations

import os
import warnings

import torch
import torch.nn.functional as F

_state = {"disabled": None, "warned": False}

TRUE = ("1", "true", "yes", "on")


def disabled(refresh: bool = False) -> bool:
    """Whether DEEPGEN_DISABLE asks for torch everywhere (read once unless `refresh`)."""
    if refresh or _state["disabled"] is None:
        _state["disabled"] = os.environ.get("DEEPGEN_DISABLE", "").strip().lower() in TRUE
    return _state["disabled"]


# read at import: a first read inside torch.compile's trace would add a guard on the
# environment and trace deepgen.gemm a second time
disabled()


def warn_once(reason: str) -> None:
    """One RuntimeWarning per process for the first call that falls back to torch."""
    if not _state["warned"]:
        _state["warned"] = True
        warnings.warn(f"deepgen: no kernel can be had here: {reason}. deepgen.gemm runs "
                      f"torch's GEMM instead (warned once per process; DEEPGEN_DISABLE=1 "
                      f"chooses torch on purpose)", RuntimeWarning, stacklevel=6)


_ACT = {"relu": torch.relu, "silu": F.silu,
        "gelu_tanh": lambda x: F.gelu(x, approximate="tanh")}


def torch_gemm(a, b, out=None, alpha=1.0, beta=0.0, bias=None, activation=None,
               bias_dim: str = "col"):
    """act(alpha * a @ b + beta * out + bias) with torch's ops, as deepgen.gemm defines it:
    a (..., M, K) with b (K, N), or (batch, M, K) with (batch, K, N); the result in `out`
    (returned) or in a new tensor of a's dtype."""
    act = None if activation in (None, "none") else activation
    out_dtype = a.dtype if out is None else out.dtype
    wide = out_dtype == torch.float32 and a.dtype != torch.float32
    x, w = (a.float(), b.float()) if wide else (a, b)
    bias_done = False
    if (bias is not None and bias_dim == "col" and b.dim() == 2 and alpha == 1.0
            and bias.dtype == x.dtype):
        r = F.linear(x, w.transpose(0, 1), bias)  # nn.Linear's own path (cuBLAS epilogue)
        bias_done = True
    else:
        r = torch.matmul(x, w)
    plain = alpha == 1.0 and beta == 0.0 and (bias is None or bias_done) and act is None
    if not plain:
        r = r.float()
        if alpha != 1.0:
            r = r * alpha
        if beta != 0.0:
            r = r + beta * out.float()
        if bias is not None and not bias_done:
            v = bias.float()
            if bias_dim == "row":  # M values, shared by a batch; folded: one per row
                v = v.reshape(-1, 1) if b.dim() == 3 else v.reshape(*r.shape[:-1], 1)
            r = r + v
        if act is not None:
            r = _ACT[act](r)
    r = r.to(out_dtype)
    if out is None:
        return r
    out.copy_(r)
    return out
