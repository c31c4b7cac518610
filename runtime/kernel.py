"""Kernel: a compiled GEMM you call on torch tensors.

    k = deepgen.runtime.load("bundle/")      # or Kernel(artifact)
    c = k(a, b)                              # c = a @ b, shapes/dtypes/layouts from k.spec
    k(a, b, c, alpha=2.0, beta=1.0)          # c = 2 * a @ b + c, in place
    k(a, b, bias=v)                          # a kernel whose signature takes a "bias" operand

Every tensor is checked against the spec before anything is launched: device, dtype, shape,
strides (the memory must be exactly the packed layout of the spec: a transposed view of a
contiguous tensor is layout "T", no copy is made) and 16-byte alignment. The common case is
decided by one comparison per property against values precomputed in __init__; only a call
that fails it goes through `check_operands`, which names the mismatch (or accepts a form the
fast test does not cover, such as a (1, M, K) operand of an unbatched kernel).

Operands beyond A, B and C (a bias, later scale vectors) are named by the kernel's signature
(`k.signature`, runtime/artifact.py) and passed as keywords; each is checked against its Param
(device, dtype, shape from its size rule, contiguous, 16-byte aligned). The launch packs the
signature through the launcher: the fixed A/B/C/W/alpha/beta form takes its fast path
(`LaunchPlan.launch`), anything else `LaunchPlan.launch_args` (values by slot).

C and the workspace come from torch's caching allocator (so CUDA graph capture works); the
first call on a device loads the binary there, once per process: make it before a capture.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from typing import NamedTuple, Sequence

import torch

from deepgen.dtypes import INPUT_DTYPES, torch_dtype
from deepgen.spec import GemmSpec

from .artifact import KernelArtifact, Launch, Param, eval_rule, sizes_of

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


def check_devices(tensors: Sequence[tuple]) -> None:
    """(name, tensor) pairs: every tensor a CUDA tensor on the first one's device (a), before
    any spec is built (deepgen.gemm and its scaled form)."""
    first = tensors[0][1].device
    for name, t in tensors:
        if t.device.type != "cuda":
            raise TypeError(f"{name}: must be a CUDA tensor, got device '{t.device}'")
        if t.device != first:
            raise ValueError(f"{name}: on {t.device}, but a is on {first}")


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


class ArtifactView:
    """What a kernel is, read from its artifact (`_artifact`) and spec (`_spec`): shared by
    Kernel and runtime/range_kernel.py's RangeKernel."""

    _artifact: KernelArtifact
    _spec: GemmSpec

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
    def ptx(self) -> str:
        """The PTX (or AMDGPU assembly) the binary was built from; "" when not kept."""
        return self._artifact.assembly

    @property
    def binary(self) -> bytes:
        """The GPU binary (cubin, or hsaco for AMD)."""
        return self._artifact.binary

    def save(self, directory: str | os.PathLike):
        """Write a bundle that `deepgen.runtime.load` can run without the compiler."""
        return self._artifact.save(directory)


class Kernel(ArtifactView):
    """A KernelArtifact made callable on torch tensors (see the module docstring)."""

    def __init__(self, artifact: KernelArtifact):
        self._artifact = artifact
        self._spec = spec = GemmSpec.from_dict(artifact.spec)
        if spec.dynamic_m:
            raise ValueError(f"M: the artifact's M is the range {spec.M}; load it as a "
                             f"RangeKernel (deepgen.runtime.load, runtime/range_kernel.py)")
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
        self._sizes = sizes_of(spec)
        self._workspace_bytes = artifact.workspace_for(self._sizes)
        self._signature = tuple(artifact.resolved_launches())
        self._pack_signature()
        self._plans: dict[int, object] = {}  # device index -> _launcher.LaunchPlan
        self._lock = threading.Lock()
        self._sass: str | None = None

    def _pack_signature(self) -> None:
        """Slots of the launcher's value store for every param, and the extra operands.

        Pointers: A, B, C, the workspace in slots 0-3 (the fast path's order), then the extra
        operands in order of first appearance. f32: alpha, beta, then extra scalars. i64: M, N,
        K, batch, then other integer rules (evaluated at the static sizes)."""
        sizes = self._sizes
        pointers = {"A": 0, "B": 1, "C": 2}
        f32s = {"alpha": 0, "beta": 1}
        i64 = [sizes["M"], sizes["N"], sizes["K"], sizes["batch"]]
        i64_slots = {"M": 0, "N": 1, "K": 2, "batch": 3}
        extras: dict[str, Param] = {}  # extra pointer operand -> the Param that declares it
        tma, descs = [], []

        def pointer_slot(name: str, declared: Param) -> int:
            if name not in pointers:
                pointers[name] = 4 + len(extras)
                extras[name] = declared
            return pointers[name]

        for launch in self._signature:
            where = f"launch {launch.entry!r}"
            refs = []
            for p in launch.params:
                if p.kind == "ptr":
                    refs.append(("ptr", pointer_slot(p.name, p)))
                elif p.kind == "workspace":
                    refs.append(("ptr", 3))
                elif p.kind == "f32":
                    refs.append(("f32", f32s.setdefault(p.name, len(f32s))))
                elif p.kind in ("i32", "i64"):
                    key = str(p.value)
                    if key not in i64_slots:
                        i64_slots[key] = len(i64)
                        i64.append(eval_rule(p.value, sizes, f"{where}: param {p.name!r}"))
                    refs.append((p.kind, i64_slots[key]))
                else:  # tma
                    dims = [eval_rule(r, sizes, f"{where}: param {p.name!r}: shape")
                            for r in p.shape]
                    strides = [1] * len(dims)
                    for i in range(len(dims) - 2, -1, -1):
                        strides[i] = strides[i + 1] * dims[i + 1]
                    refs.append(("tma", len(tma)))
                    tma.append({"name": p.name, "pointer": pointer_slot(p.operand, p),
                                "dtype": p.dtype, "dims": dims, "strides": strides,
                                "box": list(p.box), "element_strides": list(p.element_strides),
                                "swizzle": p.swizzle, "interleave": p.interleave,
                                "l2_promotion": p.l2_promotion, "oob_fill": p.oob_fill})
            descs.append((launch.entry, launch.grid_for(sizes), launch.block,
                          launch.shared_bytes, refs, launch.cluster))
        self._descs, self._tma, self._i64 = descs, tma, i64
        # Extra pointer operands in slot order: (name, dtype, shape), then extra f32 scalars.
        self._extra_ptrs = tuple(
            (name, TORCH_DTYPES.get(p.dtype) or torch_dtype(p.dtype),
             tuple(eval_rule(r, sizes, f"operand {name!r}: shape") for r in p.shape or ()))
            for name, p in extras.items())
        self._extra_f32 = tuple(n for n in f32s if n not in ("alpha", "beta"))
        self._extra_names = frozenset(n for n, _, _ in self._extra_ptrs) | set(self._extra_f32)
        self._plain = not self._extra_names  # the fixed A/B/C/W/alpha/beta form

    # -- calling -----------------------------------------------------------------------------

    def __call__(self, a, b, c=None, *, alpha=1.0, beta=0.0, stream=None, **operands):
        """C = alpha * A @ B + beta * C on `stream` (default: torch's current stream).

        `operands`: the kernel's other named operands (e.g. bias=...), see `signature`."""
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
        if operands or not self._plain:
            return self._run(a, pa, pb, c, alpha, beta, stream, self._extras(a, operands))
        return self._run(a, pa, pb, c, alpha, beta, stream)

    def _run(self, a, pa: int, pb: int, c, alpha, beta, stream, extra=None):
        """Launch without checking: the caller has checked the shapes, strides, dtypes, devices
        and alignment of a, b (pointers pa, pb) and c (deepgen.gemm does, for a call it has
        seen before). `extra`: None for the plain A/B/C form, else (pointers of the extra
        operands, values of the extra f32 scalars) in signature order, as `_extras` returns
        them after checking the tensors."""
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
        if extra is None:
            if not self._plain:
                self._extras(a, {})  # raises: names the missing operand
            plan.launch(s, pa, pb, c.data_ptr(), 0 if w is None else w.data_ptr(), alpha, beta)
        else:
            plan.launch_args(s, (pa, pb, c.data_ptr(), 0 if w is None else w.data_ptr(),
                                 *extra[0]), (alpha, beta, *extra[1]))
        return c

    def _extras(self, a, operands: dict) -> tuple[tuple, tuple]:
        """(pointers, f32 values) of the extra operands in `operands`, checked against the
        signature: TypeError/ValueError naming a missing, unknown or mismatched operand."""
        for name in operands:
            if name not in self._extra_names:
                takes = ", ".join(sorted(self._extra_names)) or "none"
                raise TypeError(f"{name}: not an operand of this kernel (its extra operands: "
                                f"{takes})")
        dev = a.get_device()
        pointers = []
        for name, dtype, shape in self._extra_ptrs:
            t = operands.get(name)
            if t is None:
                raise TypeError(f"{name}: missing; this kernel takes {name}= (a CUDA tensor, "
                                f"{dtype}, shape {shape})")
            try:
                p = t.data_ptr()
                ok = (dev >= 0 and t.get_device() == dev and t.dtype is dtype
                      and t.shape == shape and t.is_contiguous() and not p & (ALIGNMENT - 1))
            except AttributeError:
                ok = False
            if not ok:
                self._check_extra(name, dtype, shape, a, t)  # raises, unless only `ok` failed
                p = t.data_ptr()
            pointers.append(p)
        scalars = []
        for name in self._extra_f32:
            if name not in operands:
                raise TypeError(f"{name}: missing; this kernel takes {name}= (a float)")
            value = operands[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name}: expected a float, got {type(value).__name__}")
            scalars.append(float(value))
        return tuple(pointers), tuple(scalars)

    def _check_extra(self, name: str, dtype, shape: tuple, a, t) -> None:
        f, fa = facts(name, t), facts("a", a)
        if f.device.type != "cuda":
            raise TypeError(f"{name}: must be a CUDA tensor, got device '{f.device}'")
        if f.device != fa.device:
            raise ValueError(f"tensors must be on one device, got a on {fa.device}, {name} on "
                             f"{f.device}")
        if f.dtype != dtype:
            raise TypeError(f"{name}: expected dtype {dtype}, got {f.dtype}")
        if f.shape != shape and not (len(shape) > 1 and shape[0] == 1 and f.shape == shape[1:]):
            raise ValueError(f"{name}: expected shape {shape}, got {f.shape}")
        want = [1] * len(f.shape)
        for i in range(len(f.shape) - 2, -1, -1):
            want[i] = want[i + 1] * f.shape[i + 1]
        if not strides_match(f.shape, f.strides, want):
            raise ValueError(f"{name}: must be contiguous (strides {tuple(want)}), got "
                             f"{f.strides}; pass a contiguous tensor")
        if f.data_ptr % ALIGNMENT:
            raise ValueError(f"{name}: data_ptr {f.data_ptr:#x} is not {ALIGNMENT}-byte "
                             f"aligned (a view with a storage offset?); pass a copy")

    def check(self, a, b, c=None) -> None:
        """Raise TypeError/ValueError if (a, b, c) do not fit this kernel; None if they do."""
        tensors = [("a", a), ("b", b)] + ([("c", c)] if c is not None else [])
        check_operands(self._operands[:len(tensors)], [facts(n, t) for n, t in tensors])

    def _plan(self, device: int):
        from . import _launcher  # the compiled extension; imported on first launch

        with self._lock:
            if device not in self._plans:
                self._plans[device] = _launcher.LaunchPlan(
                    self._artifact.backend, self._artifact.binary, device, self._descs,
                    self._tma, self._i64)
            return self._plans[device]

    # -- what it is --------------------------------------------------------------------------

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
    def signature(self) -> dict[str, tuple[Param, ...]]:
        """Per launch entry, its parameters in order (runtime/artifact.py Param)."""
        return {l.entry: l.params for l in self._signature}

    @property
    def launches(self) -> tuple[Launch, ...]:
        """The launches with their signatures (grids and sizes as rules)."""
        return self._signature

    @property
    def extra_operands(self) -> tuple[str, ...]:
        """Names of the operands beyond a, b, c that a call passes as keywords (pointer
        operands, then f32 scalars), in the order `_run`'s `extra` takes their values."""
        return tuple(n for n, _, _ in self._extra_ptrs) + self._extra_f32

    @property
    def sass(self) -> str | None:
        """The binary's SASS (cuobjdump -sass); None where cuobjdump is not installed or the
        binary is not a cubin. RuntimeError if cuobjdump fails."""
        if self._sass is None:
            if self._artifact.backend != "cuda" or self._artifact.binary[:4] != b"\x7fELF":
                return None
            from deepgen.toolchain import cuobjdump_env, find_cuobjdump

            exe = find_cuobjdump()
            if exe is None:
                return None
            with tempfile.TemporaryDirectory(prefix="deepgen-sass-") as tmp:
                path = os.path.join(tmp, "kernel.cubin")
                with open(path, "wb") as f:
                    f.write(self._artifact.binary)
                proc = subprocess.run([exe, "-sass", path], capture_output=True, text=True,
                                      env=cuobjdump_env(exe))
            if proc.returncode != 0:
                raise RuntimeError(f"cuobjdump -sass failed ({exe}): "
                                   f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
            self._sass = proc.stdout
        return self._sass

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
    """The Kernel of a bundle written by Kernel.save / KernelArtifact.save (deepgen.runtime.load
    also loads range bundles: runtime/range_kernel.py)."""
    return Kernel(KernelArtifact.load(directory))
