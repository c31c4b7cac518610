"""The fp8 GPU correctness cases (tests/gpu/test_fp8_gpu.py; make_bundle.py compiles them into
DIR/fp8/<name>): e4m3 and e5m2 inputs, layout NT, through the wgmma strategy's defaults
(ping-pong 128x128 at 4096^3, cooperative 128x256 at K = 14336, swap_ab at M = 16, the small
tiles of odd shapes) and given configs; partial tiles (M, N not multiples of the tile), K not a
multiple of BK = 128 (TMA's zero fill), per-tensor scales != 1, rowwise scales (per row of A,
per column of B), bias + activation, alpha and beta with C read, bf16 / f16 / f32 output,
odd N, split-K (unscaled).

Each case: (name, spec fields, wgmma config fields given (the rest completed by the strategy;
{} is the default config), alpha, beta)."""
from __future__ import annotations


def _epi(bias=None, activation=None) -> dict:
    from deepgen.epilogue import EpilogueSpec
    return EpilogueSpec.of(bias=bias, activation=activation).to_dict()


def cases() -> list:
    e4 = dict(dtype="e4m3", out_dtype="bf16", layout="NT", scale="tensor")
    return [
        ("fp8-e4m3-4096", dict(e4, M=4096, N=4096, K=4096), {}, 1.0, 0.0),
        ("fp8-e4m3-1000x1234x4096", dict(e4, M=1000, N=1234, K=4096), {}, 1.0, 0.0),
        ("fp8-e4m3-2048x4096x14336", dict(e4, M=2048, N=4096, K=14336), {}, 1.0, 0.0),
        ("fp8-e4m3-k4000-c2", dict(e4, M=1000, N=1234, K=4000),
         {"BM": 128, "BN": 256, "consumers": 2}, 1.0, 0.0),
        ("fp8-e4m3-k4000-pingpong", dict(e4, M=1000, N=1234, K=4000),
         {"mode": "pingpong", "BM": 128, "BN": 128, "consumers": 2, "persistent": True,
          "stages": 7}, 1.0, 0.0),
        ("fp8-e4m3-biascol-gelu-f16", dict(e4, M=520, N=392, K=1040, out_dtype="f16",
                                           epilogue=_epi("col", "gelu_tanh")), {}, 1.0, 0.0),
        ("fp8-e4m3-decode-m16", dict(e4, M=16, N=4096, K=4096), {}, 1.0, 0.0),
        ("fp8-e5m2-f32-alpha-beta", dict(M=256, N=200, K=384, dtype="e5m2", out_dtype="f32",
                                         layout="NT"), {}, 2.0, 0.5),
        ("fp8-e4m3-unscaled-splitk", dict(M=16, N=4096, K=4096, dtype="e4m3", out_dtype="f32",
                                          layout="NT"), {}, 1.0, 0.0),
        # rowwise scales (scale_a over M, scale_b over N): ping-pong, partial tiles with bias
        # and relu, swap_ab (C stored transposed), cooperative 128x256 at odd N
        ("fp8-e4m3-rowwise-4096", dict(e4, M=4096, N=4096, K=4096, scale="rowwise"), {},
         1.0, 0.0),
        ("fp8-e4m3-rowwise-biascol-relu", dict(e4, M=1000, N=1234, K=2048, scale="rowwise",
                                               epilogue=_epi("col", "relu")), {}, 1.0, 0.0),
        ("fp8-e4m3-rowwise-decode-m16", dict(e4, M=16, N=4096, K=4096, scale="rowwise"), {},
         1.0, 0.0),
        ("fp8-e4m3-rowwise-c2-odd-n", dict(e4, M=700, N=1001, K=1024, scale="rowwise",
                                           out_dtype="f32"),
         {"BM": 128, "BN": 256, "consumers": 2}, 0.5, 0.0),
        # the TMA epilogue's rowwise scales (each row's and column pair's loaded once:
        # StoreOperands) over partial tiles with a bias; rowwise through the cluster reduce
        # (register groups at index-valued offsets: scales loaded per value), with swap_ab
        ("fp8-e4m3-rowwise-tma-epilogue", dict(e4, M=1000, N=1000, K=1024, scale="rowwise",
                                               epilogue=_epi("col", "relu")),
         {"epilogue": "tma"}, 1.0, 0.0),
        ("fp8-e4m3-rowwise-splitk-cluster", dict(e4, M=256, N=4096, K=4096, scale="rowwise"),
         {"split_k": 2, "reduce": "cluster"}, 1.0, 0.0),
        ("fp8-e4m3-rowwise-decode-splitk-cluster", dict(e4, M=16, N=4096, K=4096,
                                                        scale="rowwise"),
         {"swap_ab": True, "split_k": 2, "reduce": "cluster"}, 1.0, 0.0),
    ]


def compile_case(spec_fields: dict, given: dict, target: str = "sm_90a"):
    from deepgen.compiler import compile_artifact
    from deepgen.spec import GemmSpec

    return compile_artifact(GemmSpec(**spec_fields), {"strategy": "wgmma", **given}, target,
                            keep_ir=False)
