"""The gemv strategy's GPU correctness cases (tests/gpu/test_gemv_gpu.py; make_bundle.py
compiles them into DIR/gemv/<name>): every dtype and layout, ragged N, K tails, narrow
vectors, batch, alpha/beta, bias per row/column with activations, output casts, split-K.

Each case: (name, spec fields, gemv config fields given (the rest completed by the
strategy), alpha, beta)."""
from __future__ import annotations


def _epi(bias=None, activation=None, bias_dtype=None) -> dict:
    from deepgen.epilogue import EpilogueSpec
    return EpilogueSpec.of(bias=bias, activation=activation, bias_dtype=bias_dtype).to_dict()


def cases() -> list:
    out = []
    # (M, N, K): ragged N and a K tail (vec 8/4); odd N (NN: vec 1); odd K (NT: vec 1)
    shapes = [(3, 203, 1000), (1, 4096, 1000), (5, 130, 77)]
    for dtype in ("f16", "bf16", "f32"):
        for layout in ("NN", "NT", "TN", "TT"):
            for (m, n, k) in shapes:
                out.append((f"gemv-{dtype}-{layout}-{m}x{n}x{k}",
                            dict(M=m, N=n, K=k, dtype=dtype, layout=layout), {}, 1.0, 0.0))
    nt = dict(dtype="bf16", layout="NT")
    out += [
        ("gemv-splitk4-NT", dict(nt, M=4, N=96, K=2048), {"split_k": 4}, 1.0, 0.0),
        ("gemv-splitk3-beta-NN-f16", dict(M=2, N=256, K=1000, dtype="f16", layout="NN"),
         {"split_k": 3}, 1.5, -0.5),
        ("gemv-alpha-beta-NT", dict(nt, M=2, N=512, K=1024), {}, 0.5, 2.0),
        ("gemv-biascol-gelu-NT", dict(nt, M=2, N=512, K=1024, epilogue=_epi("col", "gelu_tanh")),
         {}, 1.0, 0.0),
        ("gemv-biasrow-silu-splitk2-NT", dict(nt, M=3, N=200, K=4096,
                                              epilogue=_epi("row", "silu")), {"split_k": 2},
         1.0, 0.0),
        ("gemv-biascol-relu-NN-f16", dict(M=4, N=1024, K=300, dtype="f16", layout="NN",
                                          epilogue=_epi("col", "relu")), {}, 1.0, 0.5),
        ("gemv-f32out-NT", dict(nt, M=8, N=1000, K=512, out_dtype="f32"), {}, 1.0, 0.0),
        ("gemv-biasrow-gelu-f32out-NN", dict(M=3, N=512, K=256, dtype="bf16", out_dtype="f32",
                                             layout="NN", epilogue=_epi("row", "gelu_tanh", "f32")),
         {}, 1.0, 0.0),
        ("gemv-batch3-NT", dict(nt, M=2, N=64, K=256, batch=3), {}, 1.0, 0.0),
        ("gemv-batch2-splitk2-NN-f32", dict(M=3, N=128, K=600, batch=2, dtype="f32",
                                             layout="NN"), {"split_k": 2}, 2.0, 1.0),
        ("gemv-M16-NT", dict(nt, M=16, N=1024, K=4096), {}, 1.0, 0.0),
        ("gemv-M32-NT-f16", dict(M=32, N=256, K=1024, dtype="f16", layout="NT"), {}, 1.0, 0.0),
        ("gemv-rows1-unroll8-NT", dict(nt, M=1, N=4096, K=4096), {"rows": 1, "unroll": 8},
         1.0, 0.0),
        ("gemv-rows4-warps8-TT", dict(M=2, N=777, K=2048, dtype="f16", layout="TT"),
         {"rows": 4, "warps": 8}, 1.0, 0.0),
        # k_warps: warps sharing columns split the K slice (sums through shared memory);
        # K tails that leave the last warps' parts short or empty, ragged N, split-K, epilogue
        ("gemv-kwarps8-NN", dict(M=1, N=4096, K=4096, dtype="bf16", layout="NN"),
         {"warps": 8, "k_warps": 8, "unroll": 8}, 1.0, 0.0),
        ("gemv-kwarps8-tail-NN", dict(M=3, N=1000, K=1001, dtype="bf16", layout="NN"),
         {"warps": 8, "k_warps": 8, "unroll": 8, "split_k": 3}, 1.0, 0.0),
        ("gemv-kwarps4-beta-bias-TN-f16", dict(M=4, N=520, K=700, dtype="f16", layout="TN",
                                                epilogue=_epi("col", "silu")),
         {"warps": 8, "k_warps": 4, "unroll": 4, "split_k": 1}, 0.5, 1.5),
        ("gemv-kwarps16-f32-NN", dict(M=2, N=2048, K=3000, dtype="f32", layout="NN"),
         {"warps": 16, "k_warps": 16, "unroll": 8}, 1.0, 0.0),
        ("gemv-kwarps8-batch2-NN", dict(M=2, N=256, K=5000, batch=2, dtype="bf16", layout="NN"),
         {"warps": 8, "k_warps": 8, "unroll": 16}, 1.0, 0.0),
    ]
    return out


def compile_case(spec_fields: dict, given: dict, target: str = "sm_90a"):
    from deepgen.compiler import compile_artifact
    from deepgen.spec import GemmSpec

    return compile_artifact(GemmSpec(**spec_fields), {"strategy": "gemv", **given}, target,
                            keep_ir=False)
