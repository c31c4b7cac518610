"""Helpers for runtime tests on machines without a GPU: CPU tensors pass for CUDA ones."""
from __future__ import annotations

import ctypes

import torch

from deepgen.runtime import kernel as km
from deepgen.runtime.kernel import Facts, Kernel

CUDA0 = torch.device("cuda", 0)


def facts_of(t: torch.Tensor, device=CUDA0, ptr: int | None = None) -> Facts:
    """A CPU tensor described as if it lived on `device`."""
    return Facts(device, t.dtype, tuple(t.shape), tuple(t.stride()),
                 t.data_ptr() if ptr is None else ptr)


class RecordingPlan:
    """Stands in for a LaunchPlan: records launch arguments, runs nothing."""

    def __init__(self):
        self.calls = []

    def launch(self, *args):
        self.calls.append(args)

    def launch_args(self, stream, pointers, f32s=(), i64s=None):
        """The general form (any signature): recorded as ("args", stream, pointers, f32s)."""
        self.calls.append(("args", stream, tuple(pointers), tuple(f32s)))


def pretend_cpu_is_cuda(monkeypatch, stream: int = 1234) -> RecordingPlan:
    """Let CPU tensors through Kernel's device check; launches go to the returned recorder."""
    plan = RecordingPlan()
    real = km.facts
    monkeypatch.setattr(km, "facts", lambda name, t: facts_of(t) if isinstance(t, torch.Tensor)
                        else real(name, t))
    monkeypatch.setattr(km, "_raw_stream", lambda device: stream)
    monkeypatch.setattr(Kernel, "_plan", lambda self, device: plan)
    return plan


class ComputingPlan(RecordingPlan):
    """Stands in for a LaunchPlan and does the kernel's work on CPU memory: it reads A, B (and
    C when beta != 0) through the raw pointers in the spec's packed layouts and writes C, so a
    wrong pointer, layout or copy shows up in the result."""

    def __init__(self, spec):
        super().__init__()
        self.spec = spec

    def launch(self, stream, pa, pb, pc, pw, alpha, beta):
        super().launch(stream, pa, pb, pc, pw, alpha, beta)
        self._compute(pa, pb, pc, alpha, beta)

    def launch_args(self, stream, pointers, f32s=(), i64s=None):
        """Pointers A, B, C, W, then the extra operands in signature order (the bias first
        when the spec has one); f32s alpha, beta. Applies the spec's epilogue chain."""
        RecordingPlan.launch_args(self, stream, pointers, f32s, i64s)
        pa, pb, pc = pointers[:3]
        self._compute(pa, pb, pc, f32s[0], f32s[1], bias=pointers[4] if len(pointers) > 4
                      else None)

    def _compute(self, pa, pb, pc, alpha, beta, bias=None):
        s = self.spec
        a = _view(pa, km.TORCH_DTYPES[s.dtype], (s.batch, *s.stored_shape("A")))
        b = _view(pb, km.TORCH_DTYPES[s.dtype], (s.batch, *s.stored_shape("B")))
        c = _view(pc, km.TORCH_DTYPES[s.out_dtype], (s.batch, s.M, s.N))
        a = a.transpose(1, 2) if s.a_transposed else a
        b = b.transpose(1, 2) if s.b_transposed else b
        acc = a.double() @ b.double()
        steps = getattr(getattr(s, "epilogue", None), "steps", ("alpha_beta",))
        for step in steps:
            if step == "alpha_beta":
                acc = alpha * acc + (beta * c.double() if beta != 0 else 0)
            elif step in ("bias_row", "bias_col"):
                n = s.M if step == "bias_row" else s.N
                v = _view(bias, km.TORCH_DTYPES[s.operand_dtype("bias")], (n,)).double()
                acc = acc + (v[:, None] if step == "bias_row" else v[None, :])
            elif step == "relu":
                acc = acc.clamp_min(0)
            elif step == "gelu_tanh":
                acc = torch.nn.functional.gelu(acc, approximate="tanh")
            elif step == "silu":
                acc = torch.nn.functional.silu(acc)
        c.copy_(acc)


def _view(ptr: int, dtype: torch.dtype, shape: tuple) -> torch.Tensor:
    """A tensor over CPU memory at address `ptr` (no copy)."""
    count = 1
    for n in shape:
        count *= n
    nbytes = count * torch.empty((), dtype=dtype).element_size()
    return torch.frombuffer((ctypes.c_char * nbytes).from_address(ptr), dtype=dtype).view(shape)


def pretend_kernels_run_on_cpu(monkeypatch) -> list[ComputingPlan]:
    """Like pretend_cpu_is_cuda, with every kernel computing through a ComputingPlan; returns
    the plans made, in order."""
    pretend_cpu_is_cuda(monkeypatch)
    plans = []

    def plan(self, device):
        if device not in self._plans:
            self._plans[device] = ComputingPlan(self.spec)
            plans.append(self._plans[device])
        return self._plans[device]

    monkeypatch.setattr(Kernel, "_plan", plan)
    return plans
