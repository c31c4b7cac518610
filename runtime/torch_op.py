"""The torch custom ops, so that torch.compile(fullgraph=True) and CUDA graphs see DeepGen:

    deepgen::gemm(Tensor a, Tensor b, float alpha=1.0, Tensor? bias=None,
                  str activation="none", str bias_dim="col", Tensor? scale_a=None,
                  Tensor? scale_b=None, ScalarType? out_dtype=None) -> Tensor
    deepgen::gemm_out(Tensor a, Tensor b, Tensor(a!) out, float alpha=1.0, float beta=0.0,
                      Tensor? bias=None, str activation="none", str bias_dim="col",
                      Tensor? scale_a=None, Tensor? scale_b=None) -> ()

(the epilogue arguments as deepgen.gemm takes them: a 1-D bias of N values per column or of M
values per row, an activation of deepgen.epilogue.ACTIVATIONS; fp8 scales and the output
dtype as deepgen.gemm takes them, after torch._scaled_mm: deepgen/scaled.py).

Both run deepgen.gemm on CUDA tensors. Their fake implementations give the output's shape and
dtype (and check a and b) without running anything, which is what torch.compile traces.

Defined with torch.library.Library rather than torch.library.custom_op: the latter's Python
wrapping measured 8.3 us per call against 2.4 us here (CPU, torch 2.13, trivial body), and
the host cost per call is what this op must keep low. For the same reason the ops have no
autograd formula of their own: a Python autograd kernel (torch.library.register_autograd)
measured 12.5 us per call against 3.8 us without (CPU, torch 2.13, trivial body), paid by
every call with or without grad. deepgen.gemm is differentiable (deepgen.autograd, a
torch.autograd.Function around these ops, eager and under torch.compile).

a may be (..., M, K) with a 2-D b: its leading dimensions fold into M (as F.linear).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from deepgen.dtypes import OUTPUT_DTYPES, torch_dtype
from deepgen.epilogue import ACTIVATIONS

_lib: torch.library.Library | None = None


def register(bind: Callable[[], Callable]) -> None:
    """Define the ops once per process (deepgen's import, or first use, calls this).

    `bind()` returns the ops' body, deepgen.gemm; it is called on the first call of an op.
    The package root passes it: the runtime never imports deepgen.api (nor the compiler
    behind it) itself."""
    global _lib, _bind
    if _lib is not None:
        return
    _bind = bind
    lib = torch.library.Library("deepgen", "FRAGMENT")
    epi = 'Tensor? bias=None, str activation="none", str bias_dim="col"'
    scales = "Tensor? scale_a=None, Tensor? scale_b=None"
    lib.define(f"gemm(Tensor a, Tensor b, float alpha=1.0, {epi}, {scales}, "
               f"ScalarType? out_dtype=None) -> Tensor")
    lib.define(f"gemm_out(Tensor a, Tensor b, Tensor(a!) out, float alpha=1.0, "
               f"float beta=0.0, {epi}, {scales}) -> ()")
    # CompositeExplicitAutograd serves every device, so a CPU tensor gets deepgen's TypeError
    # naming the argument rather than a dispatcher error.
    lib.impl("gemm", _gemm, "CompositeExplicitAutograd")
    lib.impl("gemm_out", _gemm_out, "CompositeExplicitAutograd")
    torch.library.register_fake("deepgen::gemm", _gemm_fake, lib=lib)
    torch.library.register_fake("deepgen::gemm_out", _gemm_out_fake, lib=lib)
    _lib = lib


def _gemm(a, b, alpha=1.0, bias=None, activation="none", bias_dim="col", scale_a=None,
          scale_b=None, out_dtype=None):
    if scale_a is None and scale_b is None and out_dtype is None:  # the plain form, positional
        return (_api_gemm or _bind_api())(a, b, None, alpha, 0.0, bias, None if activation
                                          == "none" else activation, bias_dim)
    return (_api_gemm or _bind_api())(a, b, alpha=alpha, bias=bias,
                                      activation=None if activation == "none" else activation,
                                      bias_dim=bias_dim, **_scaled(scale_a, scale_b, out_dtype))


def _gemm_out(a, b, out, alpha=1.0, beta=0.0, bias=None, activation="none", bias_dim="col",
              scale_a=None, scale_b=None):
    (_api_gemm or _bind_api())(a, b, out=out, alpha=alpha, beta=beta, bias=bias,
                               activation=None if activation == "none" else activation,
                               bias_dim=bias_dim, **_scaled(scale_a, scale_b, None))


def _scaled(scale_a, scale_b, out_dtype) -> dict:
    """The scaled form's keywords where given (deepgen.gemm's plain form takes none)."""
    given = {"scale_a": scale_a, "scale_b": scale_b, "out_dtype": out_dtype}
    return {k: v for k, v in given.items() if v is not None}


_api_gemm = None  # deepgen.api.gemm, bound on first use through register's `bind`
_bind: Callable[[], Callable] | None = None


def _bind_api():
    global _api_gemm
    _api_gemm = _bind()
    return _api_gemm


def _check(a, b) -> None:
    """The checks that need no data, in terms torch.compile can trace (symbolic shapes)."""
    torch._check_value((a.dim() in (2, 3) and b.dim() == a.dim())
                       or (a.dim() > 2 and b.dim() == 2),
                       lambda: f"a and b must both be 2-D or both 3-D (batched), or a "
                               f"(..., M, K) with a 2-D b (leading dimensions folded into M), "
                               f"got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    torch._check_type(a.dtype == b.dtype,
                      lambda: f"b: dtype {b.dtype} differs from a's {a.dtype}")
    torch._check_value(a.shape[-1] == b.shape[-2],
                       lambda: f"b: has {b.shape[-2]} rows, but a has K = {a.shape[-1]} "
                               f"columns")
    if b.dim() == 3:
        torch._check_value(a.shape[0] == b.shape[0],
                           lambda: f"b: batch {b.shape[0]} differs from a's batch {a.shape[0]}")


_BIAS_DTYPES = None


def _check_epilogue(a, b, bias, activation, bias_dim) -> None:
    """The epilogue arguments: activation and bias_dim names, the bias's rank, length, dtype."""
    global _BIAS_DTYPES
    torch._check_value(activation in ("none", *ACTIVATIONS),
                       lambda: f"activation: must be 'none' or one of "
                               f"{', '.join(ACTIVATIONS)}, got {activation!r}")
    torch._check_value(bias_dim in ("row", "col"),
                       lambda: f"bias_dim: must be 'col' (N values) or 'row' (M values), got "
                               f"{bias_dim!r}")
    if bias is None:
        return
    if _BIAS_DTYPES is None:
        _BIAS_DTYPES = tuple(torch_dtype(n) for n in OUTPUT_DTYPES)
    torch._check_type(bias.dtype in _BIAS_DTYPES,
                      lambda: f"bias: dtype {bias.dtype} is not supported (supported: "
                              f"{', '.join(map(str, _BIAS_DTYPES))})")
    want = (b.shape[-1] if bias_dim == "col" else a.shape[-2] if b.dim() == 3
            else math.prod(a.shape[:-1]))
    which = "N" if bias_dim == "col" else "M"
    torch._check_value(bias.dim() == 1,
                       lambda: f"bias: expected a 1-D tensor of {which} = {want} values "
                               f"(bias_dim={bias_dim!r}), got shape {tuple(bias.shape)}")
    torch._check_value(bias.shape[0] == want,
                       lambda: f"bias: expected shape ({want},): {which} = {want} "
                               f"(bias_dim={bias_dim!r}), got {tuple(bias.shape)}")


def _gemm_fake(a, b, alpha=1.0, bias=None, activation="none", bias_dim="col", scale_a=None,
               scale_b=None, out_dtype=None):
    _check(a, b)
    _check_epilogue(a, b, bias, activation, bias_dim)
    _check_scaled(a, b, scale_a, scale_b, out_dtype)
    return a.new_empty((*a.shape[:-1], b.shape[-1]), dtype=out_dtype or a.dtype)


def _check_scaled(a, b, scale_a, scale_b, out_dtype) -> None:
    """fp8: an output dtype of the outputs' types (fp8 output is not built); both scales or
    neither, float32, one element each (per tensor) or M and N (rowwise)."""
    out_types = tuple(torch_dtype(n) for n in OUTPUT_DTYPES)
    torch._check_type(out_dtype in (None, *out_types),
                      lambda: f"out_dtype: must be one of {out_types}, got {out_dtype}")
    torch._check_type((out_dtype or a.dtype) in out_types,
                      lambda: f"out_dtype: {a.dtype} inputs need an output dtype (fp8 output "
                              f"is not built): pass out_dtype=torch.bfloat16")
    torch._check_type((scale_a is None) == (scale_b is None),
                      lambda: "scale_a, scale_b: give both or neither")
    for name, s in (("scale_a", scale_a), ("scale_b", scale_b)):
        if s is not None:
            torch._check_type(s.dtype == torch.float32,
                              lambda name=name, s=s: f"{name}: must be float32, got {s.dtype}")
            want = a.shape[-2] if name == "scale_a" else b.shape[-1]  # rowwise: M or N
            kb, nb = -(-a.shape[-1] // 128), -(-b.shape[-1] // 128)  # fp8 block scales
            block = (a.shape[-2], kb) if name == "scale_a" else (nb, kb)
            torch._check_value(s.numel() == 1 or s.numel() == want or tuple(s.shape) == block,
                               lambda name=name, s=s, want=want, block=block: f"{name}: one "
                               f"element (per tensor), {want} (rowwise) or {block} (block), "
                               f"got shape {tuple(s.shape)}")


def _gemm_out_fake(a, b, out, alpha=1.0, beta=0.0, bias=None, activation="none",
                   bias_dim="col", scale_a=None, scale_b=None):
    _check_scaled(a, b, scale_a, scale_b, out.dtype)
    _check(a, b)
    _check_epilogue(a, b, bias, activation, bias_dim)
    want = (*a.shape[:-1], b.shape[-1])
    torch._check_value(tuple(out.shape) == tuple(want),
                       lambda: f"out: expected shape {tuple(want)}, got {tuple(out.shape)}")
