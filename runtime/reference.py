"""A naive GEMM written directly in PTX, to test and time the runtime without the compiler.

`reference_artifact(spec)` returns a KernelArtifact whose binary is PTX text (the driver
compiles it at load time), one thread per element of C, every spec (layouts, batch, dtypes,
alpha, beta) supported. With split=True it takes the path a split-K kernel takes: a first
launch writes f32 partial results into the workspace W, a second applies alpha/beta and
converts into C; that exercises multi-launch plans and workspaces. shared_bytes asks for
(unused) dynamic shared memory, to exercise the opt-in above 48 KiB.

It is slow on purpose (no tiling): a correctness and overhead reference, never a baseline.
Imports neither MLIR nor torch.
"""
from __future__ import annotations

from deepgen.spec import DTYPE_BYTES, GemmSpec

from .artifact import KernelArtifact, Launch

BLOCK = (16, 16, 1)
EPILOGUE_THREADS = 256

_HEADER = """.version 8.0
.target sm_80
.address_size 64
"""

# Loads (into %f2 / %f3 from the address in the named register) and stores (of %f4).
_LOAD = {
    "f32": "ld.global.f32 {dst}, [{addr}];",
    "f16": "ld.global.b16 %h1, [{addr}];\n    cvt.f32.f16 {dst}, %h1;",
    # bf16 is the high half of an f32: widen and shift.
    "bf16": "ld.global.b16 %h1, [{addr}];\n    cvt.u32.u16 %r20, %h1;\n"
            "    shl.b32 %r20, %r20, 16;\n    mov.b32 {dst}, %r20;",
}
_STORE = {
    "f32": "st.global.f32 [{addr}], %f4;",
    "f16": "cvt.rn.f16.f32 %h2, %f4;\n    st.global.b16 [{addr}], %h2;",
    "bf16": "cvt.rn.bf16.f32 %h2, %f4;\n    st.global.b16 [{addr}], %h2;",
}

_REGS = """    .reg .pred %p<8>;
    .reg .b32 %r<32>;
    .reg .b64 %rd<16>;
    .reg .f32 %f<16>;
    .reg .b16 %h<4>;
"""

# %f4 = alpha * %f1 (+ beta * C[%rd7] when beta != 0: C is not read otherwise, so a NaN in
# it cannot leak into the result), stored to C[%rd7].
_EPILOGUE = """    mul.f32 %f4, %f1, %f6;
    setp.eq.f32 %p4, %f7, 0f00000000;
    @%p4 bra STORE;
    {load_c}
    fma.rn.f32 %f4, %f7, %f5, %f4;
STORE:
    {store_c}
"""


def _dot_product(spec: GemmSpec) -> str:
    """PTX that leaves sum_k A[b,row,k] * B[b,k,col] in %f1, the C element index in %r10,
    and exits threads outside C. Expects A and B base addresses in %rd1 and %rd2."""
    M, N, K = spec.M, spec.N, spec.K
    a_row, a_k = (1, M) if spec.a_transposed else (K, 1)
    b_col, b_k = (K, 1) if spec.b_transposed else (1, N)
    eb = DTYPE_BYTES[spec.dtype]
    return f"""    mov.u32 %r1, %ctaid.x;
    mov.u32 %r2, %ntid.x;
    mov.u32 %r3, %tid.x;
    mad.lo.u32 %r4, %r1, %r2, %r3;
    mov.u32 %r1, %ctaid.y;
    mov.u32 %r2, %ntid.y;
    mov.u32 %r3, %tid.y;
    mad.lo.u32 %r5, %r1, %r2, %r3;
    mov.u32 %r6, %ctaid.z;
    setp.ge.u32 %p1, %r4, {N};
    setp.ge.u32 %p2, %r5, {M};
    or.pred %p1, %p1, %p2;
    @%p1 bra DONE;
    mul.lo.u32 %r7, %r6, {M * K};
    mad.lo.u32 %r7, %r5, {a_row}, %r7;
    mul.lo.u32 %r8, %r6, {K * N};
    mad.lo.u32 %r8, %r4, {b_col}, %r8;
    mov.f32 %f1, 0f00000000;
    mov.u32 %r9, 0;
LOOP:
    mul.wide.u32 %rd4, %r7, {eb};
    add.u64 %rd5, %rd1, %rd4;
    {_LOAD[spec.dtype].format(dst="%f2", addr="%rd5")}
    mul.wide.u32 %rd4, %r8, {eb};
    add.u64 %rd6, %rd2, %rd4;
    {_LOAD[spec.dtype].format(dst="%f3", addr="%rd6")}
    fma.rn.f32 %f1, %f2, %f3, %f1;
    add.u32 %r7, %r7, {a_k};
    add.u32 %r8, %r8, {b_k};
    add.u32 %r9, %r9, 1;
    setp.lt.u32 %p3, %r9, {K};
    @%p3 bra LOOP;
    mul.lo.u32 %r10, %r6, {M * N};
    mad.lo.u32 %r10, %r5, {N}, %r10;
    add.u32 %r10, %r10, %r4;
"""


def _params(*names_types: tuple[str, str]) -> str:
    return ",\n".join(f"    .param .{t} {n}" for n, t in names_types)


def _gemm_entry(spec: GemmSpec) -> str:
    cb = DTYPE_BYTES[spec.out_dtype]
    epilogue = _EPILOGUE.format(
        load_c=_LOAD[spec.out_dtype].format(dst="%f5", addr="%rd7"),
        store_c=_STORE[spec.out_dtype].format(addr="%rd7"))
    return f""".visible .entry deepgen_ref_gemm(
{_params(("pA", "u64"), ("pB", "u64"), ("pC", "u64"), ("alpha", "f32"), ("beta", "f32"))}
)
{{
{_REGS}    ld.param.u64 %rd1, [pA];
    ld.param.u64 %rd2, [pB];
    ld.param.u64 %rd3, [pC];
    ld.param.f32 %f6, [alpha];
    ld.param.f32 %f7, [beta];
    cvta.to.global.u64 %rd1, %rd1;
    cvta.to.global.u64 %rd2, %rd2;
    cvta.to.global.u64 %rd3, %rd3;
{_dot_product(spec)}    mul.wide.u32 %rd4, %r10, {cb};
    add.u64 %rd7, %rd3, %rd4;
{epilogue}DONE:
    ret;
}}
"""


def _split_entries(spec: GemmSpec) -> str:
    cb = DTYPE_BYTES[spec.out_dtype]
    total = spec.batch * spec.M * spec.N
    epilogue = _EPILOGUE.format(
        load_c=_LOAD[spec.out_dtype].format(dst="%f5", addr="%rd7"),
        store_c=_STORE[spec.out_dtype].format(addr="%rd7"))
    return f""".visible .entry deepgen_ref_partial(
{_params(("pA", "u64"), ("pB", "u64"), ("pW", "u64"))}
)
{{
{_REGS}    ld.param.u64 %rd1, [pA];
    ld.param.u64 %rd2, [pB];
    ld.param.u64 %rd3, [pW];
    cvta.to.global.u64 %rd1, %rd1;
    cvta.to.global.u64 %rd2, %rd2;
    cvta.to.global.u64 %rd3, %rd3;
{_dot_product(spec)}    mul.wide.u32 %rd4, %r10, 4;
    add.u64 %rd7, %rd3, %rd4;
    st.global.f32 [%rd7], %f1;
DONE:
    ret;
}}

.visible .entry deepgen_ref_epilogue(
{_params(("pW", "u64"), ("pC", "u64"), ("alpha", "f32"), ("beta", "f32"))}
)
{{
{_REGS}    ld.param.u64 %rd1, [pW];
    ld.param.u64 %rd3, [pC];
    ld.param.f32 %f6, [alpha];
    ld.param.f32 %f7, [beta];
    cvta.to.global.u64 %rd1, %rd1;
    cvta.to.global.u64 %rd3, %rd3;
    mov.u32 %r1, %ctaid.x;
    mov.u32 %r2, %ntid.x;
    mov.u32 %r3, %tid.x;
    mad.lo.u32 %r10, %r1, %r2, %r3;
    setp.ge.u32 %p1, %r10, {total};
    @%p1 bra DONE;
    mul.wide.u32 %rd4, %r10, 4;
    add.u64 %rd5, %rd1, %rd4;
    ld.global.f32 %f1, [%rd5];
    mul.wide.u32 %rd4, %r10, {cb};
    add.u64 %rd7, %rd3, %rd4;
{epilogue}DONE:
    ret;
}}
"""


def reference_artifact(spec: GemmSpec, *, split: bool = False, shared_bytes: int = 0,
                       target: str = "sm_90a") -> KernelArtifact:
    """A KernelArtifact of the naive PTX GEMM for `spec` (see the module docstring).

    `target` only labels the artifact (the PTX runs on sm_80 and newer), so that a preloaded
    reference kernel matches the device's target."""
    grid = (-(-spec.N // BLOCK[0]), -(-spec.M // BLOCK[1]), spec.batch)
    if split:
        ptx = _HEADER + _split_entries(spec)
        total = spec.batch * spec.M * spec.N
        launches = [Launch("deepgen_ref_partial", grid, BLOCK, shared_bytes, ("A", "B", "W")),
                    Launch("deepgen_ref_epilogue", (-(-total // EPILOGUE_THREADS), 1, 1),
                           (EPILOGUE_THREADS, 1, 1), 0, ("W", "C", "alpha", "beta"))]
        workspace = 4 * total
    else:
        ptx = _HEADER + _gemm_entry(spec)
        launches = [Launch("deepgen_ref_gemm", grid, BLOCK, shared_bytes,
                           ("A", "B", "C", "alpha", "beta"))]
        workspace = 0
    return KernelArtifact(backend="cuda", target=target, binary=ptx.encode(), launches=launches,
                          spec=spec.to_dict(), config={"reference": True, "split": split},
                          workspace_bytes=workspace, assembly=ptx,
                          toolchain={"reference": "hand-written PTX, JIT by the driver"})


FAULTS = {  # PTX put before the kernel's first load
    "trap": "    trap;\n",  # ends the CUDA context: the process that ran it must be replaced
    "hang": "HANG:\n    bra.uni HANG;\n",  # never ends: only a deadline stops it
}


def faulty_artifact(spec: GemmSpec, fault: str, *, target: str = "sm_90a") -> KernelArtifact:
    """The reference kernel broken on purpose (`fault` in FAULTS), for tests and benchmarks of
    a tuner that must survive such candidates."""
    if fault not in FAULTS:
        raise ValueError(f"fault: {fault!r} is not one of {sorted(FAULTS)}")
    art = reference_artifact(spec, target=target)
    first = "    ld.param.u64 %rd1, [pA];"
    ptx = art.binary.decode().replace(first, FAULTS[fault] + first, 1)
    art.binary, art.assembly = ptx.encode(), ptx
    art.config = {**art.config, "fault": fault}
    return art
