"""RangeKernel: a range kernel (GemmSpec M a deepgen.dims.Dim) callable on torch tensors.

    k = deepgen.runtime.load("bundle/")     # a RangeKernel when the bundle's M is a range
    c = k(a, b)                             # any M of the range: M = a.shape[-2]
    k.for_m(300)                            # the Kernel bound to M = 300 (same binary)

One binary serves every M of its range: binding an M builds a `Kernel` view of the same
artifact with the spec at that M, so the grid, the M argument and the TMA descriptors'
shapes (size rules over M, runtime/artifact.py) are evaluated there, once per M; its launch
plan (runtime/src/launcher.cpp: packed parameter slots, encoded descriptors) is built once
per M and device on the first launch; the launcher's module cache holds the binary once per
device. No MLIR, no compile.

Host cost per call: a call at an M bound before does the bound view's own fast check (one
comparison per property against the values that view precomputed) inline and goes straight
to its launch (`Kernel._run`), so it costs what `Kernel.__call__` costs plus one dict lookup
by M (no second Python frame, no keyword forwarding, no rule evaluated). Anything else (a
new M, a form the fast check leaves out, extra operands such as a bias, a bad argument) goes
through `for_m(M)(...)`, which binds or names the mistake.

CUDA graphs: the range kernel binds M at launch (the grid, the M argument and the TMA
descriptors, encoded from the tensors' pointers and M), so a captured graph holds one M and
its tensors: replaying it serves that M only. Capture one graph per M you replay (torch's
CUDA graph trees under torch.compile(mode="reduce-overhead") record one per distinct shape
the same way), or pad M up to a captured size. Make one call at each M before capturing (it
loads the binary and builds that M's plan outside the capture).
"""
from __future__ import annotations

import dataclasses
import os
import threading

from deepgen.spec import GemmSpec

from .artifact import KernelArtifact
from .kernel import ALIGNMENT, ArtifactView, Kernel


class RangeKernel(ArtifactView):
    def __init__(self, artifact: KernelArtifact):
        spec = GemmSpec.from_dict(artifact.spec)
        if not spec.dynamic_m:
            raise ValueError(f"M: {spec.M} is not a range; use deepgen.runtime.Kernel")
        self._artifact, self._spec, self._dim = artifact, spec, spec.M
        self._by_m: dict[int, Kernel] = {}
        self._lock = threading.Lock()

    def for_m(self, M: int) -> Kernel:
        """The Kernel of this binary bound to M (ValueError naming M outside the range)."""
        k = self._by_m.get(M)
        if k is None:
            if isinstance(M, bool) or not isinstance(M, int):
                raise TypeError(f"M: expected an int, got {type(M).__name__}")
            self._dim.check(M)
            with self._lock:
                k = self._by_m.get(M)
                if k is None:
                    art = dataclasses.replace(self._artifact,
                                              spec={**self._artifact.spec, "M": M})
                    k = self._by_m[M] = Kernel(art)
        return k

    def __call__(self, a, b, c=None, *, alpha=1.0, beta=0.0, stream=None, **operands):
        """C = alpha * A @ B + beta * C at M = a.shape[-2] (see Kernel.__call__)."""
        try:
            shape = a.shape
            k = self._by_m[shape[-2]]
            if operands or not k._plain or (c is None and beta != 0):
                raise KeyError  # the general path: extra operands, or beta's error
            dev, e = a.get_device(), k._expect[len(shape)]
            pa, pb, pc = a.data_ptr(), b.data_ptr(), 0 if c is None else c.data_ptr()
            # Kernel.__call__'s fast check, against the bound view's precomputed values
            ok = (dev >= 0 and b.get_device() == dev
                  and a.dtype is k._in_dtype and b.dtype is k._in_dtype
                  and shape == e[0] and b.shape == e[2]
                  and a.stride() == e[1] and b.stride() == e[3]
                  and (c is None or (c.get_device() == dev and c.dtype is k._out_dtype
                                     and c.shape == e[4] and c.stride() == e[5]))
                  and not (pa | pb | pc) & (ALIGNMENT - 1))
        except (AttributeError, IndexError, KeyError, TypeError):
            ok = False
        if ok:
            return k._run(a, pa, pb, c, alpha, beta, stream)
        return self.for_m(self._m_of(a))(a, b, c, alpha=alpha, beta=beta, stream=stream,
                                         **operands)

    @staticmethod
    def _m_of(a) -> int:
        try:
            return int(a.shape[-2])
        except (AttributeError, IndexError, TypeError):
            raise TypeError(f"a: expected a torch.Tensor of 2 or 3 dimensions, got "
                            f"{type(a).__name__}") from None

    def check(self, a, b, c=None) -> None:
        self.for_m(self._m_of(a)).check(a, b, c)

    # -- what it is --------------------------------------------------------------------------

    @property
    def dim(self):
        """The range of M (deepgen.dims.Dim)."""
        return self._dim

    @property
    def launches(self):
        return tuple(self._artifact.resolved_launches())

    @property
    def bound(self) -> tuple[int, ...]:
        """The Ms bound so far (for_m)."""
        return tuple(sorted(self._by_m))

    def workspace_bytes_at(self, M: int) -> int:
        return self._artifact.workspace_for({"M": M, "N": self._spec.N, "K": self._spec.K,
                                             "batch": self._spec.batch})

    def __repr__(self) -> str:
        s = self._spec
        return (f"RangeKernel(M={s.M}, N={s.N}, K={s.K}, {s.dtype}->{s.out_dtype}, "
                f"layout={s.layout}, target={self.target})")


def make_kernel(artifact: KernelArtifact):
    """A Kernel, or a RangeKernel when the artifact's M is a range."""
    if isinstance(artifact.spec.get("M"), dict):
        return RangeKernel(artifact)
    return Kernel(artifact)


def load(directory: str | os.PathLike):
    """The Kernel of a bundle (Kernel.save / KernelArtifact.save), or a RangeKernel when its
    M is a range (deepgen.runtime.load)."""
    return make_kernel(KernelArtifact.load(directory))
