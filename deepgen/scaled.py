"""deepgen.gemm's quantized (fp8, int8) form, after torch._scaled_mm:

    deepgen.gemm(a, b, scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16)
        = (a.float() @ b.float()) * sa * sb, cast to out_dtype        (then bias, activation)

a: (M, K) float8_e4m3fn or float8_e5m2, row-major; b: (K, N) of the same dtype, column-major
(the (K, N) view `w.t()` of an (N, K) row-major weight, as nn.Linear stores it; layout NT, the
only one fp8 wgmma reads: both operands K-major). scale_a, scale_b: float32 CUDA tensors of one
element (0-dim or shape (1,)), read by the kernel from device memory (so CUDA graphs replay
with their current values); or rowwise (torch._scaled_mm's rowwise form): scale_a (M, 1),
scale_b (1, N), C[m, n] = acc[m, n] * scale_a[m] * scale_b[n] (per token of a, per channel of
b: w8a8). Both or neither (no scales: the raw product). out_dtype:
torch.bfloat16, torch.float16 or torch.float32 (fp8 output is not built): required unless
`out` is given. alpha, beta, out, bias and activation as deepgen.gemm (the bias defaults to
the output type, as torch._scaled_mm's).

int8 (w8a8) follows the same convention (torch._scaled_mm takes no int8 on every build, and
torch._int_mm takes no scales and returns the raw int32 product): a, b torch.int8, a (M, K)
row-major, b (K, N) column-major (w.t() of an (N, K) int8 weight), the product summed in s32
on the tensor cores (exact), converted to f32 (exact while |a @ b| < 2^24), then
* scale_a * scale_b (per tensor, or rowwise: per token x per channel), alpha, bias,
activation, cast to out_dtype (bf16, f16 or f32; required: int32 output is not built).

deepgen.gemm comes here when it gets fp8 or int8 inputs, a scale or an out_dtype; errors name
the argument before anything compiles.

Block scales (fp8 only; DeepSeek-V3's fine-grained scaling, DeepGEMM's layout):
scale_a (M, ceil(K/128)) f32, one per 1 x 128 block of a along K, best given M-major (strides
(1, M): `sa_t.t()` of a contiguous (ceil(K/128), M) tensor, what DeepGEMM and torch's
blockwise scaled_mm take; any other layout is copied per call); scale_b (ceil(N/128),
ceil(K/128)) f32 contiguous, one per 128 x 128 block of the (N, K) weight. C[m, n] =
sum over K blocks kb of (a[m, kb] . w[n, kb]) * scale_a[m, kb] * scale_b[n // 128, kb].
A block call with alpha 1 and beta 0 (the defaults) runs a kernel compiled without the
alpha_beta step (spec_for's alpha_beta): DeepGEMM's and torch._scaled_mm's product, nothing read
from C.
"""
from __future__ import annotations

import functools

import torch

from deepgen import build
from deepgen.dtypes import FP8_DTYPES, OUTPUT_DTYPES, QUANTIZED_DTYPES
from deepgen.epilogue import ACTIVATIONS, EpilogueSpec
from deepgen.runtime import cache
from deepgen.runtime.kernel import ALIGNMENT, TORCH_DTYPES, Kernel, strides_match
from deepgen.runtime.kernel import check_devices as _check_devices  # the tests replace it
from deepgen.spec import GemmSpec

_NAMES = {v: k for k, v in TORCH_DTYPES.items()}
FP8 = tuple(TORCH_DTYPES[n] for n in FP8_DTYPES)
QUANTIZED = tuple(TORCH_DTYPES[n] for n in QUANTIZED_DTYPES)  # fp8 and int8
_OUT = tuple(TORCH_DTYPES[n] for n in OUTPUT_DTYPES)
_by_call: dict[tuple, Kernel] = {}  # call signature -> kernel, for calls needing no copies
_by_spec: dict[tuple, Kernel] = {}  # (spec, config, target) -> kernel


def front(a, b, *, out=None, alpha=1.0, beta=0.0, bias=None, activation=None, bias_dim="col",
          config=None, scale_a=None, scale_b=None, out_dtype=None):
    """deepgen.gemm's door for scaled calls: eager (gemm), or under torch.compile the torch
    ops with their scale arguments (torch.ops.deepgen.gemm's fake gives out_dtype)."""
    if torch.compiler.is_compiling():
        if config is not None:
            raise NotImplementedError("config: not supported under torch.compile (the op "
                                      "takes none)")
        act = activation or "none"
        if out is None:
            return torch.ops.deepgen.gemm(a, b, alpha, bias, act, bias_dim, scale_a, scale_b,
                                          out_dtype)
        if out_dtype is not None and out.dtype != out_dtype:
            raise TypeError(f"out: dtype {out.dtype} differs from out_dtype {out_dtype}")
        torch.ops.deepgen.gemm_out(a, b, out, alpha, beta, bias, act, bias_dim, scale_a,
                                   scale_b)
        return out
    return gemm(a, b, out=out, alpha=alpha, beta=beta, bias=bias, activation=activation,
                bias_dim=bias_dim, config=config, scale_a=scale_a, scale_b=scale_b,
                out_dtype=out_dtype)


def gemm(a, b, *, out=None, alpha=1.0, beta=0.0, bias=None, activation=None, bias_dim="col",
         config=None, scale_a=None, scale_b=None, out_dtype=None):
    """deepgen.gemm with scales / an output dtype (see the module docstring)."""
    if out is None and beta != 0:
        raise ValueError(f"beta: must be 0 when out is None (got {beta}): there is no C")
    plain = alpha == 1 and beta == 0  # block scales: a kernel without alpha_beta (spec_for)
    key = None
    if config is None:
        try:
            key = (_signature(a, b, out, bias, activation, bias_dim, scale_a, scale_b,
                              out_dtype), plain)
        except AttributeError:  # not tensors: the slow path says so
            key = None
        kernel = _by_call.get(key) if key is not None else None
        if kernel is not None and _aligned(a, b, out, bias, scale_a, scale_b):
            return kernel(a, b, out, alpha=alpha, beta=beta,
                          **_extras(kernel.spec, bias, scale_a, scale_b))
    spec = spec_for(a, b, out, bias=bias, activation=activation, bias_dim=bias_dim,
                    scale_a=scale_a, scale_b=scale_b, out_dtype=out_dtype,
                    alpha_beta=not plain)
    kernel = kernel_for(spec, config, _target_of(a.get_device()))
    extra = _extras(spec, bias, scale_a, scale_b)
    c = out
    if out is not None and not _is_packed(out, "N"):
        c = out.clone(memory_format=torch.contiguous_format) if beta != 0 else torch.empty(
            out.shape, dtype=out.dtype, device=out.device)
    result = kernel(a, b, c, alpha=alpha, beta=beta, **extra)
    if key is not None and c is out:
        _by_call[key] = kernel
    if c is not out:
        out.copy_(result)
        return out
    return result


def _signature(a, b, out, bias, activation, bias_dim, scale_a, scale_b, out_dtype) -> tuple:
    def t(x):
        return None if x is None else (x.shape, x.stride(), x.dtype, x.device)

    return (t(a), t(b), t(out), activation, bias_dim, t(bias), t(scale_a), t(scale_b),
            out_dtype)


def _aligned(*tensors) -> bool:
    return not any(t.data_ptr() % ALIGNMENT for t in tensors if t is not None)


def _extras(spec: GemmSpec, bias, scale_a, scale_b) -> dict:
    """The kernel's named operands: the bias (contiguous) and the scales as 1-D views (1, M
    or N values)."""
    extra = {}
    if bias is not None:
        contiguous = bias.shape[0] <= 1 or bias.stride(0) == 1
        extra["bias"] = bias if contiguous and not bias.data_ptr() % ALIGNMENT else (
            bias.clone(memory_format=torch.contiguous_format))
    if spec.scale == "block":  # the kernel reads scale_a as (ceil(K/128), M), contiguous
        sa_t = scale_a.t()
        extra["scale_a"] = sa_t if sa_t.is_contiguous() else sa_t.contiguous()
        extra["scale_b"] = scale_b if scale_b.is_contiguous() else scale_b.contiguous()
    elif spec.scale != "none":
        extra["scale_a"], extra["scale_b"] = (s if s.dim() == 1 and s.stride(0) == 1
                                              else s.reshape(-1).contiguous()
                                              for s in (scale_a, scale_b))
    return extra


def spec_for(a, b, out=None, *, bias=None, activation=None, bias_dim="col", scale_a=None,
             scale_b=None, out_dtype=None, alpha_beta: bool = True) -> GemmSpec:
    """The GemmSpec of a scaled call; TypeError/ValueError naming the argument that does not
    fit (torch._scaled_mm's rules where they overlap), before anything compiles. With block
    scales and alpha_beta False (a call with alpha 1 and beta 0, as gemm passes it) the chain
    has no alpha_beta step: the kernel reads neither alpha, beta nor C (measured 1-6% faster
    at DeepGEMM's M = 4096 shapes, most at K = 1536 where the store is a larger share:
    benchmarks/NOTES.md, session 13). Other scale modes keep the step (per-tensor scales are
    folded into alpha)."""
    if activation is not None and activation not in ("none", *ACTIVATIONS):
        raise ValueError(f"activation: must be None or one of {', '.join(ACTIVATIONS)}, got "
                         f"{activation!r}")
    if bias_dim not in ("row", "col"):
        raise ValueError(f"bias_dim: must be 'col' (N values) or 'row' (M values), got "
                         f"{bias_dim!r}")
    tensors = [(n, t) for n, t in (("a", a), ("b", b), ("out", out), ("bias", bias),
                                   ("scale_a", scale_a), ("scale_b", scale_b)) if t is not None]
    for name, t in tensors:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    _check_devices(tensors)
    if a.dtype != b.dtype:
        raise TypeError(f"b: dtype {b.dtype} differs from a's {a.dtype}")
    if a.dtype not in _NAMES:
        raise TypeError(f"a: dtype {a.dtype} is not supported (supported: "
                        f"{', '.join(map(str, _NAMES))})")
    if a.dim() != 2 or b.dim() != 2:
        raise ValueError(f"a and b must be 2-D for a scaled GEMM (as torch._scaled_mm), got "
                         f"shapes {tuple(a.shape)} and {tuple(b.shape)}")
    (M, K), (K2, N) = a.shape, b.shape
    if K2 != K:
        raise ValueError(f"b: has {K2} rows, but a has K = {K} columns")
    fp8 = a.dtype in QUANTIZED  # fp8 or int8: the same rules
    if fp8:
        kind = "fp8" if a.dtype in FP8 else "int8"
        if not _is_packed(a, "N"):
            raise ValueError(f"a: {kind} a must be row-major (M, K) (contiguous, 16-byte "
                             f"aligned), got strides {a.stride()}: {kind} wgmma reads K-major "
                             f"operands only")
        if not _is_packed(b, "T"):
            raise ValueError(f"b: {kind} b must be column-major (K, N), i.e. w.t() of an (N, K) "
                             f"row-major w (layout NT: {kind} wgmma reads K-major operands "
                             f"only), got strides {b.stride()} for shape {tuple(b.shape)}")
    if out_dtype is not None and out_dtype not in _OUT:
        raise TypeError(f"out_dtype: must be one of {', '.join(map(str, _OUT))}, got "
                        f"{out_dtype}")
    if out is not None:
        if out_dtype is not None and out.dtype != out_dtype:
            raise TypeError(f"out: dtype {out.dtype} differs from out_dtype {out_dtype}")
        if tuple(out.shape) != (M, N):
            raise ValueError(f"out: expected shape {(M, N)}, got {tuple(out.shape)}")
        out_dtype = out.dtype
    if out_dtype is None:
        if fp8:
            raise TypeError(f"out_dtype: {a.dtype} inputs need an output dtype ({kind} output "
                            f"is not built): pass out_dtype=torch.bfloat16 (or float16, "
                            f"float32) or out=")
        out_dtype = a.dtype
    if out_dtype not in _OUT:
        raise TypeError(f"out: dtype {out_dtype} is not an output dtype (one of "
                        f"{', '.join(map(str, _OUT))})")
    scale = _scale_mode(scale_a, scale_b, a, M, N, fp8)
    out_name = _NAMES[out_dtype]
    bias_dtype = None
    if bias is not None:
        if bias.dtype not in _OUT:
            raise TypeError(f"bias: dtype {bias.dtype} is not supported (supported: "
                            f"{', '.join(map(str, _OUT))})")
        want = N if bias_dim == "col" else M
        if bias.dim() != 1 or bias.shape[0] != want:
            raise ValueError(f"bias: expected shape ({want},) (bias_dim={bias_dim!r}), got "
                             f"{tuple(bias.shape)}")
        bias_dtype = _NAMES[bias.dtype]
    layout = "".join(next((lay for lay in "NT" if _is_packed(t, lay)), "?") for t in (a, b))
    if "?" in layout:
        raise ValueError(f"a, b: pass operands the kernel reads in place (row-major or "
                         f"column-major, 16-byte aligned), got strides {a.stride()} and "
                         f"{b.stride()}")
    dtype = _NAMES[a.dtype]
    default_bias = out_name if fp8 else dtype  # GemmSpec.operand_dtype("bias")
    epilogue = EpilogueSpec.of(bias=bias_dim if bias is not None else None,
                               activation=activation,
                               bias_dtype=None if bias_dtype == default_bias else bias_dtype,
                               alpha_beta=alpha_beta or scale != "block")
    return GemmSpec(M=M, N=N, K=K, dtype=dtype, out_dtype=out_name, layout=layout,
                    allow_tf32=dtype == "f32" and bool(torch.backends.cuda.matmul.allow_tf32),
                    epilogue=epilogue, scale=scale)


def _scale_mode(scale_a, scale_b, a, M: int, N: int, fp8: bool) -> str:
    if scale_a is None and scale_b is None:
        return "none"
    for name, s in (("scale_a", scale_a), ("scale_b", scale_b)):
        if s is None:
            raise TypeError(f"{name}: missing; give both scale_a and scale_b (or neither)")
        if not isinstance(s, torch.Tensor):
            raise TypeError(f"{name}: expected a float32 CUDA tensor, got {type(s).__name__}")
        if s.dtype != torch.float32:
            raise TypeError(f"{name}: must be float32 (as torch._scaled_mm), got {s.dtype}")
    if not fp8:
        raise TypeError(f"scale_a, scale_b: scales apply to fp8 inputs ({', '.join(map(str, FP8))})"
                        f" and int8 inputs, got {a.dtype}")
    if scale_a.numel() == 1 and scale_b.numel() == 1:
        return "tensor"
    rows = tuple(scale_a.shape) in ((M,), (M, 1))
    cols = tuple(scale_b.shape) in ((N,), (1, N))
    if rows and cols:
        return "rowwise"
    K = a.shape[1]
    kb, nb = -(-K // 128), -(-N // 128)
    if tuple(scale_a.shape) == (M, kb) and tuple(scale_b.shape) == (nb, kb):
        if a.dtype not in FP8:
            raise TypeError(f"scale_a, scale_b: block scales are built for fp8 inputs, got "
                            f"{a.dtype}")
        return "block"
    raise ValueError(f"scale_a, scale_b: one element each (per tensor), or scale_a (M, 1) = "
                     f"({M}, 1) and scale_b (1, N) = (1, {N}) (rowwise: per token of a, per "
                     f"channel of b), or (fp8 block scales) scale_a (M, ceil(K/128)) = ({M}, "
                     f"{kb}) and scale_b (ceil(N/128), ceil(K/128)) = ({nb}, {kb}), got shapes "
                     f"{tuple(scale_a.shape)} and {tuple(scale_b.shape)}")




def _is_packed(t: torch.Tensor, layout: str) -> bool:
    """Whether 2-D `t` lies in memory exactly as the packed `layout` (16-byte aligned)."""
    rows, cols = t.shape
    want = (cols, 1) if layout == "N" else (1, rows)
    return strides_match(t.shape, t.stride(), want) and not t.data_ptr() % ALIGNMENT


def kernel_for(spec: GemmSpec, config=None, target: str = "sm_90a") -> Kernel:
    """The Kernel for `spec` on `target` (a preloaded bundle, the disk cache, else compiled)."""
    key = (spec, cache.canonical_json(config), target)
    kernel = _by_spec.get(key)
    if kernel is None:
        cfg = config.to_dict() if hasattr(config, "to_dict") else config
        art = cache.preloaded(spec.to_dict(), target, cfg)
        if art is None:
            art = build.compile_cached(spec, config or build.tuned_config(spec, target), target)
        kernel = _by_spec[key] = Kernel(art)
    return kernel


@functools.cache
def _target_of(device: int) -> str:
    major, minor = torch.cuda.get_device_capability(device)
    return f"sm_{major}{minor}" + ("a" if (major, minor) == (9, 0) else "")
