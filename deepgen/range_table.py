"""deepgen.gemm's range table (issue 17): per (N, K, dtype, layout, epilogue) one range
kernel per M range (deepgen.dims.M_RANGES: 1-16, 17-64, 65-256, 257-2048, 2049 up to
max_m), so a new M within a known range compiles nothing.

Opt-in (exact-shape kernels stay the default): `deepgen.gemm(..., dynamic_m=True)` for one
call, or for the process (the torch ops follow it too) `deepgen.set_dynamic_m(True)` or the
environment variable DEEPGEN_DYNAMIC_M=1; DEEPGEN_MAX_M sets the last range's maximum
(deepgen.dims.DEFAULT_MAX_M). A call the range kernels do not serve (batch > 1, M above
max_m, a spec or target no strategy builds ranges for: compiler/ranges.py) takes the
exact-shape kernel as before, with a warning once per reason where a range was refused.

Under torch.compile (dynamic=True, or automatic dynamic shapes after a second M) the op
torch.ops.deepgen.gemm is traced once with a symbolic M (its fake gives the (M, N) output);
at run time the op body follows the process switch (deepgen.set_dynamic_m /
DEEPGEN_DYNAMIC_M: dynamic_m= of a deepgen.gemm call inside a compiled function is not
part of the op), so a new M compiles nothing within a known range. CUDA graphs capture one
M per graph (runtime/range_kernel.py).

The range kernel of a range comes, in order, from this process's table, a preloaded bundle
(deepgen precompile writes them), the disk cache, else the compiler (the tuned database's
entry for the range spec when it has one, else the range default).
"""
from __future__ import annotations

import os
import warnings

from deepgen import build
from deepgen.dims import DEFAULT_MAX_M, range_of
from deepgen.errors import SpecError
from deepgen.runtime import cache, tuned
from deepgen.spec import GemmSpec

_state = {"on": None, "max_m": None}  # None: read DEEPGEN_DYNAMIC_M / DEEPGEN_MAX_M
_by_range: dict[tuple, object] = {}  # (range spec, target) -> RangeKernel, or a refusal string
_warned: set[str] = set()


def set_dynamic_m(on: bool | None) -> None:
    """Range kernels for every deepgen.gemm call of the process (None: back to the
    environment variable DEEPGEN_DYNAMIC_M)."""
    _state["on"] = None if on is None else bool(on)


def enabled(flag: bool | None = None) -> bool:
    if flag is not None:
        return bool(flag)
    if _state["on"] is None:
        _state["on"] = os.environ.get("DEEPGEN_DYNAMIC_M", "") not in ("", "0")
    return _state["on"]


def set_max_m(n: int | None) -> None:
    """The last range's maximum (deepgen.aot.preload_bundles sets the bundles'); None: back
    to DEEPGEN_MAX_M or DEEPGEN_MAX_M's default."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"max_m: must be an int >= 1, got {n!r}")
    _state["max_m"] = n


def max_m() -> int:
    if _state["max_m"] is not None:
        return _state["max_m"]
    value = os.environ.get("DEEPGEN_MAX_M")
    if not value:
        return DEFAULT_MAX_M
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"DEEPGEN_MAX_M: expected an int, got {value!r}") from None
    if n < 1:
        raise ValueError(f"DEEPGEN_MAX_M: must be >= 1, got {n}")
    return n


def range_spec(spec: GemmSpec, limit: int | None = None) -> GemmSpec | None:
    """The spec of the range kernel that serves `spec` (M replaced by its range), or None
    where the table has none (batch > 1, M above the maximum, M already a range)."""
    limit = max_m() if limit is None else limit
    if spec.dynamic_m or spec.batch != 1 or spec.M > limit:
        return None
    try:
        return GemmSpec.from_dict({**spec.to_dict(), "M": range_of(spec.M, limit).to_dict()})
    except SpecError:  # e.g. a 32-bit size limit at the range's maximum
        return None


def range_kernel(rspec: GemmSpec, target: str):
    """The RangeKernel of `rspec` on `target` (compiled once per cache); None where the
    compiler refuses the range (warned once) or there is no compiler and no bundle."""
    from deepgen.runtime.range_kernel import RangeKernel

    key = (rspec, target)
    k = _by_range.get(key)
    if k is not None:
        return k if not isinstance(k, str) else None
    art = cache.preloaded(rspec.to_dict(), target, None)
    if art is None:
        try:
            art = build.compile_cached(rspec, tuned.lookup(rspec, target), target)
        except SpecError as e:
            _refuse(key, f"range kernels: {e}; exact-shape kernels instead")
            return None
        except build.NoCompilerError as e:
            _refuse(key, f"range kernels: {str(e).split(': ', 1)[-1]}")
            return None
    k = _by_range[key] = RangeKernel(art)
    return k


def _refuse(key, message: str) -> None:
    _by_range[key] = message
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, stacklevel=4)


def kernel_at(spec: GemmSpec, target: str):
    """The Kernel of the range kernel serving `spec` bound to its M, or None (the caller
    takes the exact-shape kernel)."""
    rspec = range_spec(spec)
    if rspec is None:
        return None
    k = range_kernel(rspec, target)
    return None if k is None else k.for_m(spec.M)


def clear() -> None:
    _by_range.clear()


__all__ = ["enabled", "kernel_at", "max_m", "range_kernel", "range_spec", "set_dynamic_m",
           "set_max_m"]
