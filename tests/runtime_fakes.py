"""Helpers for runtime tests on machines without a GPU: CPU tensors pass for CUDA ones."""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import torch

import deepgen
from deepgen.runtime import kernel as km
from deepgen.runtime.kernel import Facts, Kernel
from deepgen.runtime.reference import reference_artifact

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


class FakeCompiler(types.ModuleType):
    """Stands in for deepgen.compiler: 'compiles' the reference kernel and records calls."""

    TOOLS = {"mlir": "test", "ptxas": "test"}

    def __init__(self):
        super().__init__("deepgen.compiler")
        self.calls = []

    def compile_artifact(self, spec, config=None, target="sm_90a"):
        self.calls.append((spec, config, target))
        return reference_artifact(spec, target=target)

    def toolchain_versions(self):
        return dict(self.TOOLS)


def install_fake_compiler(monkeypatch) -> FakeCompiler:
    """A FakeCompiler as deepgen.compiler for the test (undone by monkeypatch)."""
    fake = FakeCompiler()
    monkeypatch.setitem(sys.modules, "deepgen.compiler", fake)
    monkeypatch.setattr(deepgen, "compiler", fake, raising=False)
    return fake


# -- the fake CUDA driver (tests/fake_cuda/fake_libcuda.c) in child processes --------------------

FAKE_CUDA_SOURCE = Path(__file__).parent / "fake_cuda" / "fake_libcuda.c"

# What a child script that drives the launcher against the fake driver starts with: the
# launcher, the fake's launch log and an error() that reports what a call raised.
FAKE_DRIVER_PRELUDE = """
import ctypes, json, sys
from deepgen.runtime import _launcher
from deepgen.runtime.errors import DriverError
fake = ctypes.CDLL("libcuda.so.1")  # the same handle the launcher opened
fake.fake_log.restype = ctypes.c_char_p
def log():
    return fake.fake_log().decode().splitlines()
def error(fn, *args):
    try:
        fn(*args)
    except DriverError as e:
        return {"type": "DriverError", "message": str(e), "call": e.call, "name": e.name}
    except Exception as e:
        return {"type": type(e).__name__, "message": str(e)}
    return None
GEMM = ("k_PPPFF", (3, 2, 1), (16, 16, 1), 0, ["A", "B", "C", "alpha", "beta"])
"""


def build_fake_cuda(directory: Path, *flags: str) -> Path | None:
    """The fake libcuda.so.1 compiled into `directory` (with extra cc `flags`); None when
    there is no C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    subprocess.run([cc, "-shared", "-fPIC", "-O1", *flags, "-o", str(directory / "libcuda.so.1"),
                    str(FAKE_CUDA_SOURCE), "-lpthread"], check=True)
    return directory


def run_with_fake_driver(driver: Path, script: str):
    """Run `script` (dedented) in a child process that loads the fake driver from `driver`;
    return the JSON its last line printed."""
    env = dict(os.environ, LD_LIBRARY_PATH=str(driver))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env,
                          capture_output=True, text=True, timeout=120,
                          cwd=str(Path(__file__).parent))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])
