"""Kernel: a compiled GEMM you call on torch tensors.

    k = deepgen.runtime.load("bundle/")      # or Kernel(artifact)
    c = k(a, b)                              # c = a @ b, shapes/dtypes/layouts from k.spec
    k(a, b, c, alpha=2.0, beta=1.0)          # c = 2 * a @ b + c, in place

Every tensor is checked against the spec before anything is launched: device, dtype, shape,
strides (the memory must be exactly the packed layout of the spec: a transposed view of a
contiguous tensor is layout "T", no copy is made) and 16-byte alignment. The common case is
decided by one comparison per property against values precomputed in __init__; only a call
that fails it goes through `check_operands`, which names the mismatch (or accepts a form the
fast test does not cover, such as a (1, M, K) operand of an unbatched kernel).

C and the workspace come from torch's caching allocator (so CUDA graph capture works); the
first call on a device loads the binary there, once per process: make it before a capture.
"""
from __future__ import annotations

import os
import threading
from typing import NamedTuple, Sequence

import torch

from deepgen.dtypes import INPUT_DTYPES, torch_dtype
from deepgen.spec import GemmSpec

from .artifact import KernelArtifact

TORCH_DTYPES = {name: torch_dtype(name) for name in INPUT_DTYPES}  # from deepgen.dtypes
ALIGNMENT = 16  # bytes; the kernels use 16-byte vector loads and stores

# torch's current stream as a plain int, without building a Stream object (what Inductor uses).
_raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None) or (
    lambda device: torch.cuda.current_stream(device).cuda_stream)


class Operand(NamedTuple):
    """What the kernel expects of one tensor argument."""

    name: str  # "a", "b" or "c"
    dtype: torch.dtype
    shape: tuple[int, int, int]  # logical (batch, rows, cols)
    strides: tuple[int, int, int]  # element strides of the packed layout
    layout: str  # "N" (row-major) or "T" (column-major)


class Facts(NamedTuple):
    """What a tensor argument is; tests build these directly."""

    device: torch.device
    dtype: torch.dtype
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    data_ptr: int


def facts(name: str, t) -> Facts:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    return Facts(t.device, t.dtype, tuple(t.shape), tuple(t.stride()), t.data_ptr())


def operand(name: str, dtype: str, batch: int, rows: int, cols: int, layout: str) -> Operand:
    strides = (rows * cols, cols, 1) if layout == "N" else (rows * cols, 1, rows)
    return Operand(name, TORCH_DTYPES[dtype], (batch, rows, cols), strides, layout)


def check_operands(expected: Sequence[Operand], actual: Sequence[Facts]) -> None:
    """Raise TypeError/ValueError naming the first mismatch; cheap checks first."""
    for op, f in zip(expected, actual):
        if f.device.type != "cuda":
            raise TypeError(f"{op.name}: must be a CUDA tensor, got device '{f.device}'")
    devices = {f.device.index for f in actual}
    if len(devices) > 1:
        where = ", ".join(f"{op.name} on cuda:{f.device.index}" for op, f in zip(expected, actual))
        raise ValueError(f"tensors must be on one device, got {where}")
    for op, f in zip(expected, actual):
        if f.dtype != op.dtype:
            raise TypeError(f"{op.name}: expected dtype {op.dtype}, got {f.dtype}")
        _check_shape(op, f)
        _check_strides(op, f)
        if f.data_ptr % ALIGNMENT:
            raise ValueError(f"{op.name}: data_ptr {f.data_ptr:#x} is not {ALIGNMENT}-byte "
                             f"aligned (a view with a storage offset?); pass a copy")


def _check_shape(op: Operand, f: Facts) -> None:
    batch = op.shape[0]
    if len(f.shape) == 3 or (len(f.shape) == 2 and batch == 1):
        if tuple(f.shape[-2:]) == op.shape[1:] and (len(f.shape) == 2 or f.shape[0] == batch):
            return
    want = op.shape if batch > 1 else f"{op.shape[1:]} or {op.shape}"
    raise ValueError(f"{op.name}: expected shape {want}, got {tuple(f.shape)}")


def strides_match(shape, strides, want) -> bool:
    """Whether `strides` address the same elements as `want` (same length as shape)."""
    # A dimension of size 1 is never stepped over, so its stride does not matter.
    return all(s == w or n == 1 for n, s, w in zip(shape, strides, want))


def _check_strides(op: Operand, f: Facts) -> None:
    want = op.strides[-len(f.shape):]
    if strides_match(f.shape, f.strides, want):
        return
    kind = "row-major" if op.layout == "N" else "column-major, i.e. a transposed view"
    raise ValueError(f"{op.name}: expected strides {want} (layout '{op.layout}', {kind}), got "
                     f"{tuple(f.strides)}; pass a contiguous tensor or a kernel compiled "
                     f"for this layout")


class Kernel:
    """A KernelArtifact made callable on torch tensors (see the module docstring)."""

    def __init__(self, artifact: KernelArtifact):
        self._artifact = artifact
        self._spec = spec = GemmSpec.from_dict(artifact.spec)
        self._operands = (
            operand("a", spec.dtype, spec.batch, spec.M, spec.K, spec.layout[0]),
            operand("b", spec.dtype, spec.batch, spec.K, spec.N, spec.layout[1]),
            operand("c", spec.out_dtype, spec.batch, spec.M, spec.N, "N"))
        self._in_dtype = TORCH_DTYPES[spec.dtype]
        self._out_dtype = TORCH_DTYPES[spec.out_dtype]
        # Per number of dimensions of `a`: expected (shape, strides) of a, b and c.
        ndims = (2, 3) if spec.batch == 1 else (3,)
        self._expect = {n: tuple(x for op in self._operands
                                 for x in (torch.Size(op.shape[-n:]), op.strides[-n:]))
                        for n in ndims}
        # Shapes of a fresh C as plain tuples: torch.empty(*ints) parses fastest.
        self._c_shape = {n: tuple(self._operands[2].shape[-n:]) for n in ndims}
        self._workspace_bytes = artifact.workspace_bytes
        self._launches = [(l.entry, l.grid, l.block, l.shared_bytes, list(l.args))
                          for l in artifact.launches]
        self._plans: dict[int, object] = {}  # device index -> _launcher.LaunchPlan
        self._lock = threading.Lock()

    # -- calling -----------------------------------------------------------------------------

    def __call__(self, a, b, c=None, *, alpha=1.0, beta=0.0, stream=None):
        """C = alpha * A @ B + beta * C on `stream` (default: torch's current stream)."""
        if c is None and beta != 0:
            raise ValueError(f"beta: must be 0 when c is None (got {beta}): there is no C")
        try:
            dev, e = a.get_device(), self._expect[a.dim()]
            pa, pb, pc = a.data_ptr(), b.data_ptr(), 0 if c is None else c.data_ptr()
            ok = (dev >= 0 and b.get_device() == dev
                  and a.dtype is self._in_dtype and b.dtype is self._in_dtype
                  and a.shape == e[0] and b.shape == e[2]
                  and a.stride() == e[1] and b.stride() == e[3]
                  and (c is None or (c.get_device() == dev and c.dtype is self._out_dtype
                                     and c.shape == e[4] and c.stride() == e[5]))
                  and not (pa | pb | pc) & (ALIGNMENT - 1))
        except (AttributeError, KeyError, TypeError):
            ok = False
        if not ok:
            self.check(a, b, c)  # raises, unless the call is valid in a form `ok` leaves out
            pa, pb = a.data_ptr(), b.data_ptr()
        return self._run(a, pa, pb, c, alpha, beta, stream)

    def _run(self, a, pa: int, pb: int, c, alpha, beta, stream):
        """Launch without checking: the caller has checked the shapes, strides, dtypes, devices
        and alignment of a, b (pointers pa, pb) and c (deepgen.gemm does, for a call it has
        seen before)."""
        dev = a.get_device()
        fresh = w = None
        if c is None:
            c = fresh = torch.empty(*self._c_shape[a.dim()], dtype=self._out_dtype,
                                    device=a.device)
        if self._workspace_bytes:
            w = torch.empty(self._workspace_bytes, dtype=torch.uint8, device=a.device)
        if stream is None:
            s = _raw_stream(dev)
        else:
            s = stream if isinstance(stream, int) else stream.cuda_stream
            _keep_for_stream(s, dev, fresh, w)
        plan = self._plans.get(dev) or self._plan(dev)
        plan.launch(s, pa, pb, c.data_ptr(), 0 if w is None else w.data_ptr(), alpha, beta)
        return c

    def check(self, a, b, c=None) -> None:
        """Raise TypeError/ValueError if (a, b, c) do not fit this kernel; None if they do."""
        tensors = [("a", a), ("b", b)] + ([("c", c)] if c is not None else [])
        check_operands(self._operands[:len(tensors)], [facts(n, t) for n, t in tensors])

    def _plan(self, device: int):
        from . import _launcher  # the compiled extension; imported on first launch

        with self._lock:
            if device not in self._plans:
                self._plans[device] = _launcher.LaunchPlan(
                    self._artifact.backend, self._artifact.binary, device, self._launches)
            return self._plans[device]

    # -- what it is --------------------------------------------------------------------------

    @property
    def artifact(self) -> KernelArtifact:
        return self._artifact

    @property
    def spec(self) -> GemmSpec:
        return self._spec

    @property
    def config(self) -> dict:
        return self._artifact.config

    @property
    def target(self) -> str:
        return self._artifact.target

    @property
    def registers(self) -> int | None:
        """Registers per thread, the largest over the kernel's entries (ptxas's count)."""
        return self._resource("registers")

    @property
    def spills(self) -> int | None:
        """Bytes of spill stores per thread, the largest over the kernel's entries."""
        return self._resource("spill_stores")

    @property
    def shared_bytes(self) -> int:
        """Dynamic shared memory per block, the largest over the launches."""
        return max(l.shared_bytes for l in self._artifact.launches)

    @property
    def workspace_bytes(self) -> int:
        return self._workspace_bytes

    @property
    def ptx(self) -> str:
        """The PTX (or AMDGPU assembly) the binary was built from; "" when not kept."""
        return self._artifact.assembly

    def _resource(self, key: str) -> int | None:
        values = [r[key] for r in self._artifact.resources.values()
                  if isinstance(r, dict) and key in r]
        return max(values) if values else None

    def driver_attributes(self, device: int = 0) -> list[dict]:
        """What the driver reports per launch on `device`: registers, local bytes, shared."""
        return (self._plans.get(device) or self._plan(device)).attributes()

    def ir(self, stage: str) -> str:
        """The IR text the compiler kept for `stage` (in memory only; not in bundles)."""
        try:
            return self._artifact.ir_stages[stage]
        except KeyError:
            raise KeyError(f"stage {stage!r}: not kept; available stages: "
                           f"{sorted(self._artifact.ir_stages) or 'none'}") from None

    def save(self, directory: str | os.PathLike):
        """Write a bundle that `deepgen.runtime.load` can run without the compiler."""
        return self._artifact.save(directory)

    def __repr__(self) -> str:
        s = self._spec
        return (f"Kernel({s.M}x{s.N}x{s.K}, batch={s.batch}, {s.dtype}->{s.out_dtype}, "
                f"layout={s.layout}, target={self.target})")


def _keep_for_stream(stream: int, device: int, *tensors) -> None:
    """Tensors allocated here on the current stream but used on another one must not be
    reused by the caching allocator before that stream has finished with them."""
    tensors = [t for t in tensors if t is not None]
    if tensors and stream != _raw_stream(device):
        side = torch.cuda.ExternalStream(stream, device=device)
        for t in tensors:
            t.record_stream(side)


def load(directory: str | os.PathLike) -> Kernel:
    """The Kernel of a bundle written by Kernel.save / KernelArtifact.save."""
    return Kernel(KernelArtifact.load(directory))
