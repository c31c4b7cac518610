"""The int8 (w8a8) GPU correctness cases (tests/gpu/test_int8_gpu.py; make_bundle.py compiles
them into DIR/int8/<name>): int8 inputs, layout NT, through the wgmma strategy (s32
accumulation, converted to f32 in the epilogue): the defaults (ping-pong 128x128 at 4096^3,
cooperative 128x256 at K = 14336, swap_ab at M = 16, small tiles of odd shapes) and given
configs; partial tiles, K not a multiple of BK = 128 (TMA's zero fill), per-tensor and rowwise
scales (per token x per channel), bias + activation, alpha and beta with C read, bf16 / f16 /
f32 output, odd N, an N that is not an integer wgmma N (BN rounded up), split-K (unscaled).

Each case: (name, spec fields, wgmma config fields given (the rest completed by the strategy;
{} is the default config), alpha, beta)."""
from __future__ import annotations


def _epi(bias=None, activation=None) -> dict:
    from deepgen.epilogue import EpilogueSpec
    return EpilogueSpec.of(bias=bias, activation=activation).to_dict()


def cases() -> list:
    rw = dict(dtype="int8", out_dtype="bf16", layout="NT", scale="rowwise")
    t = dict(rw, scale="tensor")
    return [
        ("int8-rowwise-4096", dict(rw, M=4096, N=4096, K=4096), {}, 1.0, 0.0),
        ("int8-tensor-4096", dict(t, M=4096, N=4096, K=4096), {}, 1.0, 0.0),
        ("int8-rowwise-f32-4096", dict(rw, M=4096, N=4096, K=4096, out_dtype="f32"), {},
         1.0, 0.0),
        ("int8-rowwise-2048x4096x14336", dict(rw, M=2048, N=4096, K=14336), {}, 1.0, 0.0),
        ("int8-rowwise-k4000-c2", dict(rw, M=1000, N=1232, K=4000),
         {"BM": 128, "BN": 256, "consumers": 2}, 1.0, 0.0),
        ("int8-rowwise-k4000-pingpong", dict(rw, M=1000, N=1232, K=4000),
         {"mode": "pingpong", "BM": 128, "BN": 128, "consumers": 2, "persistent": True,
          "stages": 7}, 1.0, 0.0),
        ("int8-rowwise-biascol-gelu-f16", dict(rw, M=520, N=392, K=1040, out_dtype="f16",
                                               epilogue=_epi("col", "gelu_tanh")), {}, 1.0,
         0.0),
        ("int8-rowwise-decode-m16", dict(rw, M=16, N=4096, K=4096), {}, 1.0, 0.0),
        ("int8-tensor-decode-m20", dict(t, M=20, N=4096, K=4096), {}, 1.0, 0.0),
        ("int8-f32-alpha-beta", dict(M=256, N=200, K=384, dtype="int8", out_dtype="f32",
                                     layout="NT"), {}, 2.0, 0.5),
        ("int8-rowwise-c2-odd-n-f32", dict(rw, M=700, N=1001, K=1024, out_dtype="f32"),
         {"BM": 128, "BN": 256, "consumers": 2}, 0.5, 0.0),
        ("int8-rowwise-n40", dict(rw, M=300, N=40, K=512, out_dtype="f32"), {}, 1.0, 0.0),
        ("int8-unscaled-splitk", dict(M=16, N=4096, K=4096, dtype="int8", out_dtype="f32",
                                      layout="NT"), {}, 1.0, 0.0),
    ]


def compile_case(spec_fields: dict, given: dict, target: str = "sm_90a"):
    from deepgen.compiler import compile_artifact
    from deepgen.spec import GemmSpec

    return compile_artifact(GemmSpec(**spec_fields), {"strategy": "wgmma", **given}, target,
                            keep_ir=False)
