"""The int8 (w8a8) GPU correctness cases (tests/gpu/test_int8_gpu.py; make_bundle.py compiles
them into DIR/int8/<name>): int8 inputs, layout NT, through the wgmma strategy (s32
accumulation, converted to f32 in the epilogue): the defaults (ping-pong 128x128 at 4096^3,
cooperative 128x256 at K = 14336, swap_ab at M = 16, small tiles of odd shapes) and given
configs; partial tiles, K not a multiple of BK = 128 (TMA's zero fill), per-tensor and rowwise
scales (per token x per channel), bias + activation, alpha and beta with C read, bf16 / f16 /
f32 output, odd N, an N that is not an integer wgmma N (BN rounded up), split-K (unscaled).

The "int8-mma-" cases are the mma_sync strategy's (mma.sync m16n8k32, the sm_80-89 path, run
here on the H200 as sm_90a kernels): its default tiles, partial tiles in M, N and K, every
scale mode, bias + activation, alpha and beta, split-K with scaled partials, register-staged
copies of rows too narrow for cp.async (K = 1001), M = 1, batches, and an unswizzled padded
tile with direct stores.

Each case: (name, spec fields, config fields given (the rest completed by the strategy: wgmma
unless "strategy" says otherwise; {} is wgmma's default config), alpha, beta)."""
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
    ] + mma_sync_cases()


def mma_sync_cases() -> list:
    """The mma_sync strategy's int8 cases (m16n8k32; see the module docstring)."""
    rw = dict(dtype="int8", out_dtype="bf16", layout="NT", scale="rowwise")
    t = dict(rw, scale="tensor")
    raw = dict(dtype="int8", out_dtype="f32", layout="NT")
    mma = {"strategy": "mma_sync"}
    return [
        ("int8-mma-rowwise-4096", dict(rw, M=4096, N=4096, K=4096), mma, 1.0, 0.0),
        # BK 64: ptxas holds the default's 128 x 64 x 128 tile (K % BK != 0) to 168 registers
        # with a 4-byte spill, as it does bf16's 128 x 64 x 64 at this shape
        ("int8-mma-tensor-odd-f16", dict(t, M=1000, N=1232, K=4000, out_dtype="f16"),
         dict(mma, BK=64), 1.0, 0.0),
        ("int8-mma-rowwise-biascol-gelu-f16",
         dict(rw, M=520, N=392, K=1040, out_dtype="f16", epilogue=_epi("col", "gelu_tanh")),
         dict(mma, BK=64), 1.0, 0.0),
        ("int8-mma-f32-alpha-beta", dict(raw, M=256, N=200, K=384), mma, 2.0, 0.5),
        ("int8-mma-rowwise-splitk", dict(rw, M=16, N=4096, K=4096), dict(mma, split_k=4),
         1.0, 0.0),
        ("int8-mma-tensor-splitk-biasrow-relu-f32",
         dict(t, M=64, N=1024, K=8192, out_dtype="f32", epilogue=_epi("row", "relu")),
         dict(mma, split_k=8), 0.5, 0.25),
        ("int8-mma-rowwise-staged-k1001", dict(rw, M=300, N=40, K=1001, out_dtype="f32"), mma,
         1.0, 0.0),
        ("int8-mma-rowwise-m1", dict(rw, M=1, N=4096, K=4096), mma, 1.0, 0.0),
        ("int8-mma-batch3", dict(raw, M=200, N=136, K=640, batch=3), mma, 1.0, 0.0),
        ("int8-mma-rowwise-padded-direct",
         dict(rw, M=333, N=520, K=736, out_dtype="f32"),
         dict(mma, BM=64, BN=64, BK=64, warps_m=2, warps_n=2, smem_swizzle=False, smem_pad=16,
              register_prefetch=False, epilogue_smem=False), 1.0, 0.0),
    ]


def compile_case(spec_fields: dict, given: dict, target: str = "sm_90a"):
    from deepgen.compiler import compile_artifact
    from deepgen.spec import GemmSpec

    return compile_artifact(GemmSpec(**spec_fields), {"strategy": "wgmma", **given}, target,
                            keep_ir=False)
