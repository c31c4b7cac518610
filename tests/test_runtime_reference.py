"""The reference PTX GEMM (deepgen.runtime.reference): it assembles, and it computes the GEMM.

The GPU tests use it to check the runtime without the compiler; here, with no GPU, a tiny
interpreter of the PTX subset it uses runs it on numpy memory, so a wrong index or a skipped
beta test shows up on the CPU machine already."""
from __future__ import annotations

import itertools
import re
import shutil
import subprocess

import numpy as np
import pytest

from deepgen.runtime.artifact import KernelArtifact
from deepgen.runtime.reference import FAULTS, faulty_artifact, reference_artifact
from deepgen.spec import GemmSpec

NP_DTYPES = {"f32": np.float32, "f16": np.float16, "bf16": np.uint16}  # bf16 stored as bits


def to_bf16_bits(x: np.ndarray) -> np.ndarray:
    bits = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def from_bf16_bits(b: np.ndarray) -> np.ndarray:
    return (b.astype(np.uint32) << 16).view(np.float32)


class PtxMachine:
    """Runs the kernels of one PTX module on a flat byte array, one thread at a time."""

    def __init__(self, ptx: str):
        self.entries = {}
        for m in re.finditer(r"\.entry (\w+)\((.*?)\)\s*\{(.*?)\n\}", ptx, re.S):
            params = re.findall(r"\.param \.\w+ (\w+)", m.group(2))
            lines = [l.strip().rstrip(";") for l in m.group(3).splitlines()]
            code = [l for l in lines if l and not l.startswith(".reg")]
            labels = {l[:-1]: i for i, l in enumerate(code) if l.endswith(":")}
            self.entries[m.group(1)] = (params, code, labels)
        self.memory = bytearray(1 << 20)
        self.top = 256

    def alloc(self, array: np.ndarray) -> int:
        addr = self.top
        data = array.tobytes()
        self.memory[addr:addr + len(data)] = data
        self.top = (addr + len(data) + 255) // 256 * 256
        return addr

    def read(self, addr: int, like: np.ndarray) -> np.ndarray:
        return np.frombuffer(bytes(self.memory[addr:addr + like.nbytes]),
                             like.dtype).reshape(like.shape)

    def launch(self, entry: str, grid, block, args: list) -> None:
        params, code, labels = self.entries[entry]
        values = dict(zip(params, args))
        for ctaid in itertools.product(*(range(g) for g in reversed(grid))):
            for tid in itertools.product(*(range(b) for b in reversed(block))):
                special = {}
                for axis, c, t, n in zip("zyx", ctaid, tid, reversed(block)):
                    special.update({f"%ctaid.{axis}": c, f"%tid.{axis}": t, f"%ntid.{axis}": n})
                self._run(code, labels, values, special)

    def _run(self, code, labels, params, special) -> None:
        regs, pc = dict(special), 0
        while pc < len(code):
            line = code[pc]
            pc += 1
            if line.endswith(":"):
                continue
            guard = re.match(r"@(!?)(%p\d+) (.*)", line)
            if guard:
                if regs[guard.group(2)] == (guard.group(1) == "!"):
                    continue
                line = guard.group(3)
            op, _, rest = line.partition(" ")
            ops = [o.strip() for o in rest.split(",")] if rest else []
            if op == "ret":
                return
            if op == "bra":
                pc = labels[ops[0]]
                continue
            self._step(op, ops, regs, params)

    def _value(self, operand, regs):
        if operand in regs:
            return regs[operand]
        if operand.startswith("0f"):
            return np.uint32(int(operand[2:], 16)).view(np.float32)
        return int(operand)

    def _step(self, op, ops, regs, params) -> None:
        v = [self._value(o, regs) for o in ops[1:]] if not op.startswith(("ld.", "st.")) else []
        d = ops[0] if ops else None
        parts = op.split(".")
        kind = parts[0]
        mask = (1 << 64) - 1 if parts[-1] in ("u64", "b64") else (1 << 32) - 1
        if kind == "ld" and parts[1] == "param":
            regs[d] = params[ops[1].strip("[]")]
        elif kind == "ld":
            addr = regs[ops[1].strip("[]")]
            width = 4 if parts[-1] == "f32" else 2
            raw = bytes(self.memory[addr:addr + width])
            regs[d] = np.frombuffer(raw, np.float32)[0] if width == 4 else \
                int(np.frombuffer(raw, np.uint16)[0])
        elif kind == "st":
            addr, src = regs[ops[0].strip("[]")], regs[ops[1]]
            raw = np.float32(src).tobytes() if parts[-1] == "f32" else np.uint16(src).tobytes()
            self.memory[addr:addr + len(raw)] = raw
        elif kind == "cvta":
            regs[d] = v[0]
        elif kind == "mov":
            regs[d] = np.uint32(v[0]).view(np.float32) if parts[1] == "b32" and \
                d.startswith("%f") else v[0]
        elif kind == "mad":
            regs[d] = (v[0] * v[1] + v[2]) & mask
        elif kind == "mul" and parts[1] in ("lo", "wide"):
            regs[d] = (v[0] * v[1]) & ((1 << 64) - 1 if parts[1] == "wide" else mask)
        elif kind == "mul":
            regs[d] = np.float32(v[0] * v[1])
        elif kind == "add":
            regs[d] = (v[0] + v[1]) & mask
        elif kind == "shl":
            regs[d] = (v[0] << v[1]) & mask
        elif kind == "fma":
            regs[d] = np.float32(np.float64(v[0]) * np.float64(v[1]) + np.float64(v[2]))
        elif kind == "setp":
            regs[d] = {"ge": v[0] >= v[1], "lt": v[0] < v[1], "eq": v[0] == v[1]}[parts[1]]
        elif kind == "or":
            regs[d] = v[0] or v[1]
        elif op == "cvt.f32.f16":
            regs[d] = np.float32(np.uint16(v[0]).view(np.float16))
        elif op == "cvt.u32.u16":
            regs[d] = v[0] & 0xFFFF
        elif op == "cvt.rn.f16.f32":
            regs[d] = int(np.float16(v[0]).view(np.uint16))
        elif op == "cvt.rn.bf16.f32":
            regs[d] = int(to_bf16_bits(np.array([v[0]], np.float32))[0])
        else:
            raise NotImplementedError(op)


def run_reference(art: KernelArtifact, a, b, c, alpha, beta) -> np.ndarray:
    machine = PtxMachine(art.binary.decode())
    pointers = {"A": machine.alloc(a), "B": machine.alloc(b), "C": machine.alloc(c),
                "W": machine.alloc(np.full(art.workspace_bytes // 4 or 1, np.nan, np.float32))}
    scalars = {"alpha": np.float32(alpha), "beta": np.float32(beta)}
    for launch in art.launches:
        args = [pointers.get(name, scalars.get(name)) for name in launch.args]
        machine.launch(launch.entry, launch.grid, launch.block, args)
    return machine.read(pointers["C"], c)


def stored(x: np.ndarray, transposed: bool, dtype: str) -> np.ndarray:
    """The packed memory of logical (batch, rows, cols) x in the layout and dtype."""
    x = np.ascontiguousarray(np.swapaxes(x, 1, 2) if transposed else x)
    return to_bf16_bits(x) if dtype == "bf16" else x.astype(NP_DTYPES[dtype])


def as_f64(x: np.ndarray, dtype: str) -> np.ndarray:
    return (from_bf16_bits(x) if dtype == "bf16" else x).astype(np.float64)


CASES = [  # dtype, out_dtype, layout, batch, split, alpha, beta
    ("f32", "f32", "NN", 1, False, 1.0, 0.0),
    ("f32", "f32", "NT", 2, False, 1.5, -0.5),
    ("f32", "f32", "TN", 2, True, 2.0, 0.0),
    ("f32", "f32", "TT", 1, True, -1.0, 0.25),
    ("f16", "f32", "TN", 2, False, 1.0, 1.0),
    ("f16", "f16", "NT", 1, True, 0.5, 0.0),
    ("bf16", "bf16", "TT", 2, False, 1.0, 0.5),
    ("bf16", "f32", "NN", 1, True, 3.0, 1.0),
]


@pytest.mark.parametrize("dtype, out_dtype, layout, batch, split, alpha, beta", CASES)
def test_reference_kernel_computes_the_gemm(dtype, out_dtype, layout, batch, split, alpha,
                                            beta):
    M, N, K = 5, 18, 3  # N > 16: two blocks across; M, N, K all different
    spec = GemmSpec(M=M, N=N, K=K, batch=batch, dtype=dtype, out_dtype=out_dtype,
                    layout=layout)
    rng = np.random.default_rng(0)
    a = stored(rng.standard_normal((batch, M, K)), spec.a_transposed, dtype)
    b = stored(rng.standard_normal((batch, K, N)), spec.b_transposed, dtype)
    c0 = rng.standard_normal((batch, M, N)) if beta else np.full((batch, M, N), np.nan)
    c = stored(c0, False, out_dtype)  # NaN where beta == 0: it must never be read
    got = as_f64(run_reference(reference_artifact(spec, split=split), a, b, c, alpha, beta),
                 out_dtype)
    a64 = as_f64(a, dtype)
    b64 = as_f64(b, dtype)
    a64 = np.swapaxes(a64, 1, 2) if spec.a_transposed else a64
    b64 = np.swapaxes(b64, 1, 2) if spec.b_transposed else b64
    want = alpha * a64 @ b64 + (beta * as_f64(c, out_dtype) if beta else 0)
    tol = {"f32": 1e-6, "f16": 2e-3, "bf16": 1e-2}[out_dtype]
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.skipif(shutil.which("ptxas") is None, reason="no ptxas on PATH")
@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("dtype, out_dtype", [("f32", "f32"), ("f16", "bf16"), ("bf16", "f16")])
def test_reference_ptx_assembles(tmp_path, dtype, out_dtype, split):
    spec = GemmSpec(M=33, N=17, K=9, batch=3, dtype=dtype, out_dtype=out_dtype, layout="TN")
    ptx = tmp_path / "k.ptx"
    ptx.write_bytes(reference_artifact(spec, split=split).binary)
    subprocess.run(["ptxas", "-arch=sm_90", "-o", str(tmp_path / "k.cubin"), str(ptx)],
                   check=True, capture_output=True)


def test_reference_launches_and_workspace():
    spec = GemmSpec(M=40, N=20, K=8, batch=3)
    plain, split = reference_artifact(spec), reference_artifact(spec, split=True)
    assert [l.grid for l in plain.launches] == [(2, 3, 3)]
    assert plain.workspace_bytes == 0
    assert [l.args for l in split.launches] == [("A", "B", "W"), ("W", "C", "alpha", "beta")]
    assert split.workspace_bytes == 4 * 3 * 40 * 20


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_faulty_kernels_fault_before_their_first_load(tmp_path, fault):
    spec = GemmSpec(M=64, N=32, K=16, dtype="bf16")
    art = faulty_artifact(spec, fault)
    ptx = art.binary.decode()
    body = ptx.split("ld.param.u64 %rd1, [pA];")[0]
    assert FAULTS[fault] in body and FAULTS[fault] not in reference_artifact(spec).binary.decode()
    assert art.config["fault"] == fault and art.launches == reference_artifact(spec).launches
    if shutil.which("ptxas"):  # the GPU tests and benchmarks/multi_gpu_tune.py load it there
        (tmp_path / "k.ptx").write_bytes(art.binary)
        subprocess.run(["ptxas", "-arch=sm_90", "-o", str(tmp_path / "k.cubin"),
                        str(tmp_path / "k.ptx")], check=True, capture_output=True)


def test_an_unknown_fault_is_refused():
    with pytest.raises(ValueError, match="fault: 'oops' is not one of"):
        faulty_artifact(GemmSpec(M=8, N=8, K=8), "oops")
