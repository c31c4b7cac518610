"""The wgmma strategy (issue 14) on the GPU: correctness of a set of cases, then TFLOP/s at
the timing points against cuBLAS (torch.matmul) and DeepGen's default (mma_sync), in
interleaved rounds in one process.

    python benchmarks/wgmma_bench.py --compile-only BUNDLE [--only REGEX]   # CPU, MLIR
    python benchmarks/wgmma_bench.py --run BUNDLE [--rounds 5] [--out r.json]  # GPU, runtime
    ncu ... python benchmarks/wgmma_bench.py --launch BUNDLE/NAME... [--iters 5]  # profiling

--run checks every kernel against float64 with C poisoned (alpha/beta cases with C read),
printing each case before it runs (an mbarrier phase bug hangs: run it under `timeout`), then
times the points' variants and cuBLAS in `rounds` interleaved rounds (median per variant).
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gemm_suite import add_bundle_modes, device_info, git_commit  # noqa: E402

W = {"strategy": "wgmma"}
BIG = dict(M=4096, N=4096, K=4096)
# name -> (spec fields, config (None: DeepGen's default), alpha, beta, timed point or None)
CASES = {
    "bf16_NT_4096_128x128": (dict(BIG, dtype="bf16", layout="NT"), W, 1.0, 0.0, "bf16_NT_4096^3"),
    "bf16_NT_4096_128x256_c2": (dict(BIG, dtype="bf16", layout="NT"),
                                dict(W, BN=256, consumers=2, stages=4), 1.0, 0.0, "bf16_NT_4096^3"),
    "bf16_NT_4096_256x128_c2": (dict(BIG, dtype="bf16", layout="NT"),
                                dict(W, BM=256, consumers=2, stages=4), 1.0, 0.0, "bf16_NT_4096^3"),
    "bf16_NT_4096_128x128_2cta": (dict(BIG, dtype="bf16", layout="NT"),
                                  dict(W, stages=3, consumer_registers=216, ctas_per_sm=2),
                                  1.0, 0.0, "bf16_NT_4096^3"),
    "bf16_NT_4096_128x256_c2_s3": (dict(BIG, dtype="bf16", layout="NT"),
                                   dict(W, BN=256, consumers=2, stages=3), 1.0, 0.0,
                                   "bf16_NT_4096^3"),
    "bf16_NT_8192_128x256_c2": (dict(M=8192, N=8192, K=8192, dtype="bf16", layout="NT"),
                                dict(W, BN=256, consumers=2, stages=4), 1.0, 0.0,
                                "bf16_NT_8192^3"),
    "bf16_NT_2048x4096x14336_128x256_c2": (dict(M=2048, N=4096, K=14336, dtype="bf16",
                                                layout="NT"),
                                           dict(W, BN=256, consumers=2, stages=4), 1.0, 0.0,
                                           "bf16_NT_2048x4096x14336"),
    "bf16_NT_2048x4096x14336_128x128_2cta": (dict(M=2048, N=4096, K=14336, dtype="bf16",
                                                  layout="NT"),
                                             dict(W, stages=3, consumer_registers=216,
                                                  ctas_per_sm=2), 1.0, 0.0,
                                             "bf16_NT_2048x4096x14336"),
    "bf16_NT_4096_128x256_c2_pers": (dict(BIG, dtype="bf16", layout="NT"),
                                     dict(W, BN=256, consumers=2, stages=4, persistent=True),
                                     1.0, 0.0, "bf16_NT_4096^3"),
    "bf16_NT_4096_128x128_2cta_pers": (dict(BIG, dtype="bf16", layout="NT"),
                                       dict(W, stages=3, consumer_registers=216, ctas_per_sm=2,
                                            persistent=True), 1.0, 0.0, "bf16_NT_4096^3"),
    "bf16_NT_8192_128x256_c2_pers": (dict(M=8192, N=8192, K=8192, dtype="bf16", layout="NT"),
                                     dict(W, BN=256, consumers=2, stages=4, persistent=True),
                                     1.0, 0.0, "bf16_NT_8192^3"),
    "bf16_NT_2048x4096x14336_128x256_c2_pers": (
        dict(M=2048, N=4096, K=14336, dtype="bf16", layout="NT"),
        dict(W, BN=256, consumers=2, stages=4, persistent=True), 1.0, 0.0,
        "bf16_NT_2048x4096x14336"),
    "bf16_NT_4096_128x256_c2_cl2": (dict(BIG, dtype="bf16", layout="NT"),
                                    dict(W, BN=256, consumers=2, stages=4, cluster_m=2),
                                    1.0, 0.0, "bf16_NT_4096^3"),
    "bf16_NT_8192_128x256_c2_cl2": (dict(M=8192, N=8192, K=8192, dtype="bf16", layout="NT"),
                                    dict(W, BN=256, consumers=2, stages=4, cluster_m=2),
                                    1.0, 0.0, "bf16_NT_8192^3"),
    "bf16_NT_2048x4096x14336_128x256_c2_cl2": (
        dict(M=2048, N=4096, K=14336, dtype="bf16", layout="NT"),
        dict(W, BN=256, consumers=2, stages=4, cluster_m=2), 1.0, 0.0,
        "bf16_NT_2048x4096x14336"),
    "bf16_NN_4096_128x256_c2_cl2": (dict(BIG, dtype="bf16", layout="NN"),
                                    dict(W, BN=256, consumers=2, stages=4, cluster_m=2),
                                    1.0, 0.0, "bf16_NN_4096^3"),
    "bf16_NT_4096_mma_sync": (dict(BIG, dtype="bf16", layout="NT"), None, 1.0, 0.0, "bf16_NT_4096^3"),
    "f16_NT_4096_128x256_c2": (dict(BIG, dtype="f16", layout="NT"),
                               dict(W, BN=256, consumers=2, stages=4), 1.0, 0.0, "f16_NT_4096^3"),
    "bf16_NN_4096_128x256_c2": (dict(BIG, dtype="bf16", layout="NN"),
                                dict(W, BN=256, consumers=2, stages=4), 1.0, 0.0, "bf16_NN_4096^3"),
    "bf16_NN_4096_mma_sync": (dict(BIG, dtype="bf16", layout="NN"), None, 1.0, 0.0, "bf16_NN_4096^3"),
    # correctness only: partial tiles, batch, K below one tile, alpha/beta, epilogue, outputs
    "f16_NT_128x128": (dict(M=128, N=128, K=64, dtype="f16", layout="NT"), W, 1.0, 0.0, None),
    "bf16_NT_partial": (dict(M=1000, N=1000, K=1000, dtype="bf16", layout="NT"), W, 1.0, 0.0, None),
    "bf16_NT_odd_n": (dict(M=127, N=129, K=40, dtype="bf16", layout="NT"), W, 1.0, 0.0, None),
    "f16_NT_batch3": (dict(M=200, N=136, K=520, batch=3, dtype="f16", layout="NT"), W, 1.0, 0.0, None),
    "bf16_NT_alpha_beta": (dict(M=384, N=256, K=256, dtype="bf16", layout="NT"), W, 1.5, -0.5, None),
    "bf16_NT_bias_gelu_c2": (dict(M=300, N=520, K=200, dtype="bf16", layout="NT",
                                  epilogue={"steps": ["alpha_beta", "bias_col", "gelu_tanh"]}),
                             dict(W, BN=256, consumers=2), 1.0, 0.0, None),
    "f16_NT_f32out_256x128": (dict(M=512, N=384, K=1024, dtype="f16", out_dtype="f32",
                                   layout="NT"), dict(W, BM=256, consumers=2), 1.0, 0.0, None),
    "bf16_NN_partial": (dict(M=1000, N=1000, K=1000, dtype="bf16", layout="NN"), W, 1.0, 0.0, None),
    "f16_NN_batch2_c2": (dict(M=256, N=512, K=192, batch=2, dtype="f16", layout="NN"),
                         dict(W, BN=256, consumers=2), 2.0, 1.0, None),
}

# Mid-sized shapes of the suite (layout NN, as gemm_suite runs them), where the default is
# still mma_sync: wgmma variants against that default, to place the default heuristic's
# boundary on measurements ("mid_" cases; run 4).
_MID_SHAPES = {"1024^3": dict(M=1024, N=1024, K=1024), "128x4096x4096": dict(M=128, N=4096, K=4096),
               "128x14336x4096": dict(M=128, N=14336, K=4096),
               "64x512^3": dict(M=512, N=512, K=512, batch=64),
               "1024x4096x4096": dict(M=1024, N=4096, K=4096)}
_MID_VARIANTS = {"mma_sync": None, "128x128": W, "128x64": dict(W, BN=64),
                 "64x128": dict(W, BM=64), "128x128_2cta": dict(W, stages=3,
                                                                consumer_registers=216,
                                                                ctas_per_sm=2),
                 "128x256_c2": dict(W, BN=256, consumers=2)}
for _shape, _fields in _MID_SHAPES.items():
    for _variant, _cfg in _MID_VARIANTS.items():
        CASES[f"mid_bf16_NN_{_shape}_{_variant}"] = (dict(_fields, dtype="bf16", layout="NN"),
                                                     _cfg, 1.0, 0.0, f"bf16_NN_{_shape}")

# split-K (issue 14 step "split-K where output tiles are fewer than SMs"): M = 128 with N = 4096
# gives 32 tiles of 128x128 on 132 SMs; slices of K along grid z fill the GPU, the shared
# deepgen-split-k reduce applies the epilogue. Against the default (mma_sync with split-K 4).
_SPLITK_SHAPES = {"128x4096x4096": dict(M=128, N=4096, K=4096),
                  "128x4096x14336": dict(M=128, N=4096, K=14336)}
_SPLITK_VARIANTS = {"default": None, "128x128_s4": dict(W, split_k=4),
                    "128x256c2_s8": dict(W, BN=256, consumers=2, split_k=8),
                    "64x128_s2": dict(W, BM=64, split_k=2)}
for _layout in ("NT", "NN"):
    for _shape, _fields in _SPLITK_SHAPES.items():
        for _variant, _cfg in _SPLITK_VARIANTS.items():
            CASES[f"splitk_bf16_{_layout}_{_shape}_{_variant}"] = (
                dict(_fields, dtype="bf16", layout=_layout), _cfg, 1.0, 0.0,
                f"bf16_{_layout}_{_shape}")

# swap_ab (issue 15): decode shapes, M = 8..128 by the (N, K) of Llama-3 projections, layout
# NT (B as nn.Linear stores it): C^T = B^T A^T with N on wgmma's 64-row M and split-K fitted
# to the SMs, one CTA per SM or two; against the default (mma_sync at these M).
DECODE_MS = (8, 16, 32, 64, 128)
DECODE_NK = ((4096, 4096), (14336, 4096), (4096, 14336), (28672, 4096), (8192, 8192))
_SWAP_VARIANTS = {"default": None, "swap": dict(W, swap_ab=True),
                  "swap_2cta": dict(W, swap_ab=True, ctas_per_sm=2)}


def _decode_cases(layouts=("NT",)) -> None:
    for layout in layouts:
        for m in DECODE_MS:
            for n, k in DECODE_NK:
                point = f"bf16_{layout}_{m}x{n}x{k}"
                for variant, cfg in _SWAP_VARIANTS.items():
                    name = f"decode_bf16_{layout}_{m}x{n}x{k}_{variant}"
                    if cfg is None and f"splitk_{point}_default" in CASES:
                        continue  # the point's default is timed once (its splitk_ case)
                    CASES[name] = (dict(M=m, N=n, K=k, dtype="bf16", layout=layout), cfg,
                                   1.0, 0.0, point)


_decode_cases()
# NN (the suite's layout): B stored K x N is MN-major as wgmma's A operand once swapped
DECODE_NK_NN = DECODE_NK[:3]
for _m in DECODE_MS:
    for _n, _k in DECODE_NK_NN:
        _point = f"bf16_NN_{_m}x{_n}x{_k}"
        for _variant, _cfg in _SWAP_VARIANTS.items():
            if _cfg is None and f"splitk_{_point}_default" in CASES:
                continue
            CASES[f"decode_bf16_NN_{_m}x{_n}x{_k}_{_variant}"] = (
                dict(M=_m, N=_n, K=_k, dtype="bf16", layout="NN"), _cfg, 1.0, 0.0, _point)


def before_swap(spec):
    """The default heuristic's config before swap_ab became the decode default (2026-12-02):
    wgmma's measured tiles where preferred_tile takes them, else mma_sync's default."""
    from deepgen.compiler import strategies
    from deepgen.compiler.strategies.wgmma import config as wc
    from deepgen.compiler.target import get_target

    tile = wc.preferred_tile(spec)
    if tile is not None:
        return wc.WgmmaConfig(BM=tile[0], BN=tile[1], consumers=tile[2], stages=4)
    return strategies.get("mma_sync").default_config(spec, get_target("sm_90a"))


# The swap_ab default (run 2): the decode suite's other Llama (N, K) against the default before
# it and cuBLAS; f16 where the suite's default changed; variants at the weakest points.
FINAL_NK = ((6144, 4096), (10240, 8192), (57344, 8192), (8192, 28672))
for _m in DECODE_MS:
    for _n, _k in FINAL_NK:
        for _variant, _cfg in {"default": None, "before": before_swap}.items():
            CASES[f"final_bf16_NT_{_m}x{_n}x{_k}_{_variant}"] = (
                dict(M=_m, N=_n, K=_k, dtype="bf16", layout="NT"), _cfg, 1.0, 0.0,
                f"bf16_NT_{_m}x{_n}x{_k}")
for _m, _n, _k in ((16, 4096, 4096), (16, 14336, 4096), (16, 4096, 14336), (128, 4096, 4096),
                   (128, 4096, 14336), (128, 14336, 4096)):
    for _variant, _cfg in {"default": None, "before": before_swap}.items():
        CASES[f"final_f16_NN_{_m}x{_n}x{_k}_{_variant}"] = (
            dict(M=_m, N=_n, K=_k, dtype="f16", layout="NN"), _cfg, 1.0, 0.0,
            f"f16_NN_{_m}x{_n}x{_k}")
for _layout, _m, _n, _k in (("NT", 64, 4096, 4096), ("NT", 128, 4096, 4096),
                            ("NT", 128, 8192, 8192), ("NN", 64, 4096, 4096),
                            ("NT", 8, 14336, 4096), ("NT", 32, 14336, 4096),
                            ("NT", 128, 14336, 4096)):
    for _variant, _cfg in {"default": None, "swap_c2": dict(W, swap_ab=True, consumers=2),
                           "swap_bm64": dict(W, swap_ab=True, BM=64)}.items():
        CASES[f"final_bf16_{_layout}_{_m}x{_n}x{_k}_{_variant}"] = (
            dict(M=_m, N=_n, K=_k, dtype="bf16", layout=_layout), _cfg, 1.0, 0.0,
            f"bf16_{_layout}_{_m}x{_n}x{_k}")

# layouts TN and TT (wgmma's A operand MN-major: its transpose bit) against the default
for _layout in ("TN", "TT"):
    for _variant, _cfg in {"default": None, "128x256c2": dict(W, BN=256, consumers=2),
                           "128x128": dict(W, BN=128)}.items():
        CASES[f"tn_bf16_{_layout}_4096_{_variant}"] = (dict(BIG, dtype="bf16", layout=_layout),
                                                       _cfg, 1.0, 0.0, f"bf16_{_layout}_4096^3")

# tf32 (issue 14: "tf32 4096^3, layout NT: >= 0.9x cuBLAS with TF32"): f32 data read as tf32 by
# m64nNk8 wgmma, BK 32; cuBLAS with TF32 allowed (measure.torch_baseline follows
# spec.allow_tf32) and DeepGen's default (mma_sync m16n8k8) in the same rounds; correctness
# cases first (partial tiles, split-K with beta)
TF32 = dict(dtype="f32", allow_tf32=True, layout="NT")
for _variant, _cfg in {"default": None, "128x256c2": dict(W, BN=256, consumers=2, stages=4),
                       "256x128c2": dict(W, BM=256, BN=128, consumers=2, stages=4),
                       # K tiles are half as deep as bf16's: deeper rings of narrower tiles
                       "128x192c2_s5": dict(W, BN=192, consumers=2, stages=5),
                       "128x128c2_s6": dict(W, BN=128, consumers=2, stages=6),
                       "128x256c2_pers": dict(W, BN=256, consumers=2, stages=4,
                                              persistent=True)}.items():
    CASES[f"tf32_NT_4096_{_variant}"] = (dict(BIG, **TF32), _cfg, 1.0, 0.0, "tf32_NT_4096^3")
CASES["tf32_NT_partial"] = (dict(M=1000, N=1000, K=1000, **TF32), W, 1.0, 0.0, None)
CASES["tf32_NT_splitk2_beta"] = (dict(M=128, N=512, K=1024, **TF32), dict(W, split_k=2),
                                 1.0, 0.5, None)


# Ping-pong (mode "pingpong": two consumer warpgroups on their own tiles of a persistent CTA,
# taking turns on the tensor cores) against the cooperative default at the large shapes the
# default serves (layout NN as gemm_suite runs them, and NT 4096^3): "pp_" cases.
_PP_SHAPES = {"4096^3": dict(M=4096, N=4096, K=4096), "2048^3": dict(M=2048, N=2048, K=2048),
              "8192^3": dict(M=8192, N=8192, K=8192)}
for _m in (2048, 4096):
    for _n, _k in ((4096, 4096), (14336, 4096), (4096, 14336)):
        if not _m == _n == _k:  # 4096^3 is there already
            _PP_SHAPES[f"{_m}x{_n}x{_k}"] = dict(M=_m, N=_n, K=_k)
PP = dict(W, mode="pingpong", consumers=2, persistent=True)
_PP_VARIANTS = {"default": None,
                **{f"pp128x128_s{s}": dict(PP, BM=128, BN=128, stages=s) for s in (5, 6, 7)}}
for _shape, _fields in _PP_SHAPES.items():
    for _variant, _cfg in _PP_VARIANTS.items():
        CASES[f"pp_bf16_NN_{_shape}_{_variant}"] = (dict(_fields, dtype="bf16", layout="NN"),
                                                    _cfg, 1.0, 0.0, f"bf16_NN_{_shape}")
# more of the design space at 4096^3 alone: ring depth, raster group, the cooperative
# persistent kernel (the producer runs ahead into the next tile, the tensor cores idle under
# the epilogue)
for _variant, _cfg in {"pp128x128_s4": dict(PP, BM=128, BN=128, stages=4),
                       "pp64x256_s4": dict(PP, BM=64, BN=256, stages=4),
                       "pp64x256_s5": dict(PP, BM=64, BN=256, stages=5),
                       "c2_pers": dict(W, BN=256, consumers=2, stages=4, persistent=True)}.items():
    CASES[f"pp_bf16_NN_4096^3_{_variant}"] = (dict(BIG, dtype="bf16", layout="NN"), _cfg,
                                              1.0, 0.0, "bf16_NN_4096^3")
for _variant, _cfg in _PP_VARIANTS.items():
    for _dt, _lay in (("bf16", "NT"), ("f16", "NN")):
        CASES[f"pp_{_dt}_{_lay}_4096^3_{_variant}"] = (dict(BIG, dtype=_dt, layout=_lay), _cfg,
                                                       1.0, 0.0, f"{_dt}_{_lay}_4096^3")


# The default after the ping-pong runs (config.default_config: ping-pong 128x128 s7 where the
# large tile's K <= 4096, cooperative 128x256 s4 above) against the other kernel, at the suite's
# large points (layout NN) and the ones the rule newly covers (batched, 1024 rows): "ppd_"
# cases (run 3).
COOP = dict(W, mode="cooperative", BN=256, consumers=2, stages=4, persistent=False)
PP7 = dict(PP, BM=128, BN=128, stages=7)
_PPD_SHAPES = {**{f"bf16_NN_{k}": dict(v, dtype="bf16", layout="NN") for k, v in _PP_SHAPES.items()},
               "bf16_NN_1024x4096x4096": dict(M=1024, N=4096, K=4096, dtype="bf16", layout="NN"),
               "bf16_NN_8x2048^3": dict(M=2048, N=2048, K=2048, batch=8, dtype="bf16",
                                        layout="NN"),
               "bf16_NN_64x512^3": dict(M=512, N=512, K=512, batch=64, dtype="bf16", layout="NN"),
               "bf16_NT_4096^3": dict(BIG, dtype="bf16", layout="NT"),
               "f16_NN_4096^3": dict(BIG, dtype="f16", layout="NN")}
for _point, _fields in _PPD_SHAPES.items():
    _other = ("coop", COOP) if _fields["K"] <= 4096 else ("pp128x128_s7", PP7)
    for _variant, _cfg in (("default", None), _other):
        CASES[f"ppd_{_point}_{_variant}"] = (_fields, _cfg, 1.0, 0.0, _point)
for _variant, _cfg in {"pp128x192_s5": dict(PP, BM=128, BN=192, stages=5),
                       "pp128x128_s6": dict(PP, BM=128, BN=128, stages=6)}.items():
    CASES[f"ppd_bf16_NN_4096^3_{_variant}"] = (dict(BIG, dtype="bf16", layout="NN"), _cfg,
                                               1.0, 0.0, "bf16_NN_4096^3")

# 8192^3 and wave quantization (session 3, not yet run): 128x256 tiles are 2048 = 15.5 waves of
# 132 CTAs (the last wave half idle, ~3%, about the gap to cuBLAS); 128x192 tiles are 2752 =
# 20.85 waves. "q8k_" cases: the default against 192-wide tiles, cooperative and ping-pong.
_Q8K = dict(M=8192, N=8192, K=8192)
for _lay in ("NN", "NT"):
    for _variant, _cfg in {"default": None,
                           "c2_128x192_s5": dict(COOP, BN=192, stages=5),
                           "c2_128x192_s5_pers": dict(COOP, BN=192, stages=5, persistent=True),
                           "pp128x192_s5": dict(PP, BM=128, BN=192, stages=5),
                           "pp128x128_s7": PP7}.items():
        CASES[f"q8k_bf16_{_lay}_{_variant}"] = (dict(_Q8K, dtype="bf16", layout=_lay), _cfg,
                                                1.0, 0.0, f"bf16_{_lay}_8192^3")

# The ping-pong 128x192 default past K = 4096 (session 4) where the large tile rule applies:
# "kbig_" cases, the default against the cooperative 128x256 it replaced and ping-pong 128x128,
# and at K = 4096 the 128x192 against the 128x128 default there.
for _name, _fields in {"bf16_NN_8192^3": dict(_Q8K, dtype="bf16", layout="NN"),
                       "f16_NN_8192^3": dict(_Q8K, dtype="f16", layout="NN"),
                       "bf16_NN_2048x4096x14336": dict(M=2048, N=4096, K=14336, dtype="bf16",
                                                       layout="NN"),
                       "bf16_NN_4096x4096x14336": dict(M=4096, N=4096, K=14336, dtype="bf16",
                                                       layout="NN"),
                       "bf16_NN_4096^3": dict(BIG, dtype="bf16", layout="NN"),
                       "bf16_NN_4096x14336x4096": dict(M=4096, N=14336, K=4096, dtype="bf16",
                                                       layout="NN")}.items():
    for _variant, _cfg in {"default": None, "c2_128x256_s4": COOP, "pp128x128_s7": PP7,
                           "pp128x192_s5": dict(PP, BM=128, BN=192, stages=5)}.items():
        CASES[f"kbig_{_name}_{_variant}"] = (_fields, _cfg, 1.0, 0.0, _name)


# The TMA epilogue (epilogue "tma": stmatrix into shared sub-tiles, TMA stores) against the
# direct one, on the defaults before the TMA rule at the large points (layout NN): "tmast_"
# cases (run 1). Its buffers take 2 x 64 x epilogue_n x 2 bytes per consumer: ping-pong
# 128 x 128 fits 6 stages of 7 ("direct_s6" separates the ring from the epilogue there).
def direct_before(spec):
    """The default with the direct epilogue it had before the TMA rule (ping-pong: 7 stages)."""
    from deepgen.compiler import strategies
    from deepgen.compiler.target import get_target

    cfg = strategies.default_config(spec, get_target("sm_90a"))
    stages = 7 if cfg.mode == "pingpong" and cfg.epilogue == "tma" else cfg.stages
    return cfg.replace(epilogue="direct", epilogue_n=32, stages=stages)


def tma_store_variant(epilogue_n: int | None, stages_only: bool = False):
    """direct_before with the TMA epilogue of `epilogue_n` columns (None: the direct epilogue;
    stages_only: one stage fewer), as many stages as fit the shared memory."""
    def make(spec):
        from deepgen.compiler import strategies
        from deepgen.compiler.target import get_target

        from deepgen.spec import SpecError

        target = get_target("sm_90a")
        cfg = direct_before(spec)
        if epilogue_n is not None:
            cfg = cfg.replace(epilogue="tma", epilogue_n=epilogue_n)
        elif stages_only:
            cfg = cfg.replace(stages=cfg.stages - 1)
        while True:
            try:
                return strategies.resolve(cfg, spec, target)
            except SpecError:
                if cfg.stages <= 2:
                    raise
                cfg = cfg.replace(stages=cfg.stages - 1)
    return make


_TMAST_SHAPES = {"4096^3": BIG, "8192^3": {"M": 8192, "N": 8192, "K": 8192},
                 "2048x4096x14336": {"M": 2048, "N": 4096, "K": 14336},
                 "4096x4096x14336": {"M": 4096, "N": 4096, "K": 14336},
                 "2048x14336x4096": {"M": 2048, "N": 14336, "K": 4096}}
for _name, _fields in _TMAST_SHAPES.items():
    _variants = {"default": direct_before, "tma32": tma_store_variant(32),
                 "tma64": tma_store_variant(64)}
    if _fields["K"] == 4096:  # ping-pong 128 x 128 in 7 stages: the direct epilogue in 6
        _variants["direct_s6"] = tma_store_variant(None, stages_only=True)
    for _variant, _cfg in _variants.items():
        CASES[f"tmast_bf16_NN_{_name}_{_variant}"] = (
            {**_fields, "dtype": "bf16", "layout": "NN"}, _cfg, 1.0, 0.0, f"bf16_NN_{_name}")


# The TMA epilogue as the default (config.PINGPONG_TMA, COOPERATIVE_TMA) against the direct
# epilogue it replaced, at every suite point whose default kernel it changed (layout NN, bf16
# and f16): "tmast2_" cases (run 2).
_TMAST2_SHAPES = {"4096^3": BIG, "2048^3": {"M": 2048, "N": 2048, "K": 2048},
                  "8x2048^3": {"M": 2048, "N": 2048, "K": 2048, "batch": 8},
                  "2048x4096x4096": {"M": 2048, "N": 4096, "K": 4096},
                  "2048x14336x4096": {"M": 2048, "N": 14336, "K": 4096},
                  "4096x14336x4096": {"M": 4096, "N": 14336, "K": 4096},
                  "2048x4096x14336": {"M": 2048, "N": 4096, "K": 14336},
                  "4096x4096x14336": {"M": 4096, "N": 4096, "K": 14336}}
for _dt in ("bf16", "f16"):
    for _name, _fields in _TMAST2_SHAPES.items():
        for _variant, _cfg in {"default": None, "direct": direct_before}.items():
            CASES[f"tmast2_{_dt}_NN_{_name}_{_variant}"] = (
                {**_fields, "dtype": _dt, "layout": "NN"}, _cfg, 1.0, 0.0, f"{_dt}_NN_{_name}")


# 1x2 clusters (cluster_n 2: the CTAs of neighbouring tile columns share A, each loading half
# of A's BM x BK tile and multicasting it to both) against the 2x1 (cluster_m 2: B shared) and
# no cluster, on the cooperative 128 x 256 (direct epilogue, and the TMA epilogue with 32-column
# sub-tiles the default takes past K = 8192), bf16 NN, with the default beside them: "c12_"
# cases (not yet run). The epilogue spelled out: COOP alone keeps the default's where valid.
C12_DIRECT = dict(COOP, epilogue="direct", epilogue_n=32)
C12_TMA = dict(COOP, epilogue="tma", epilogue_n=32)
for _name, _fields in {"4096^3": BIG, "8192^3": {"M": 8192, "N": 8192, "K": 8192}}.items():
    for _variant, _cfg in {"default": None, "coop": C12_DIRECT,
                           "coop_cl12": dict(C12_DIRECT, cluster_n=2),
                           "coop_cl21": dict(C12_DIRECT, cluster_m=2),
                           "coop_tma32": C12_TMA,
                           "coop_tma32_cl12": dict(C12_TMA, cluster_n=2)}.items():
        CASES[f"c12_bf16_NN_{_name}_{_variant}"] = (
            {**_fields, "dtype": "bf16", "layout": "NN"}, _cfg, 1.0, 0.0, f"bf16_NN_{_name}")


def compile_all(bundle: Path, only: str | None) -> None:
    from deepgen.compiler import compile_artifact
    from deepgen.spec import GemmSpec

    bundle.mkdir(parents=True, exist_ok=True)
    index = []
    for name, (fields, cfg, alpha, beta, point) in CASES.items():
        if only and not re.search(only, name):
            continue
        t = time.perf_counter()
        if callable(cfg):  # a config computed from the spec (e.g. before_swap)
            cfg = cfg(GemmSpec(**fields))
        art = compile_artifact(GemmSpec(**fields), cfg, "sm_90a", keep_ir=False)
        art.save(bundle / name)
        index.append({"name": name, "alpha": alpha, "beta": beta, "point": point})
        res = next(iter(art.resources.values()))
        print(f"{name:28s} {time.perf_counter() - t:5.2f} s  regs {res['registers']} spills "
              f"{res['spill_stores']} smem {art.launches[0].shared_bytes}", flush=True)
    (bundle / "index.json").write_text(json.dumps(index, indent=1))


def run_all(bundle: Path, rounds: int, out: Path | None, warmup_ms: float = 25,
            rep_ms: float = 100) -> int:
    import torch

    from deepgen.runtime import load, measure

    torch.manual_seed(0)
    index = json.loads((bundle / "index.json").read_text())
    index.sort(key=lambda e: e["point"] is not None)  # small correctness cases first
    checks, points, failures = {}, {}, 0
    for e in index:
        print(f"check {e['name']} ...", end=" ", flush=True)
        k = load(bundle / e["name"])
        errs = [measure.check(k, k.spec, alpha=e["alpha"], beta=e["beta"]) for _ in range(2)]
        ok = max(errs) <= measure.tolerance(k.spec)
        failures += not ok
        print(f"{'ok' if ok else 'FAIL'} rel_err {max(errs):.2e}", flush=True)
        checks[e["name"]] = {"rel_err": errs, "ok": ok, "config": k.config, "spec": k.spec.to_dict()}
        if e["point"] and ok:
            points.setdefault(e["point"], {"spec": k.spec, "variants": {}})["variants"][e["name"]] = k
    results = {}

    def save() -> None:  # after every point: a run cut short by its timeout keeps what it has
        report = {"benchmark": "wgmma_bench", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                  "git_commit": git_commit(), **device_info(), "rounds": rounds,
                  "warmup_ms": warmup_ms, "rep_ms": rep_ms, "checks": checks, "points": results}
        if out:
            out.write_text(json.dumps(report, indent=1))

    save()
    for point, p in points.items():
        spec = p["spec"]
        sets = measure.input_sets(spec)
        shape = (spec.M, spec.N) if spec.batch == 1 else (spec.batch, spec.M, spec.N)
        c = torch.empty(shape, device="cuda", dtype=measure.TORCH_DTYPES[spec.out_dtype])
        runners = {v: (lambda a, b, k=k: k(a, b, c)) for v, k in p["variants"].items()}
        runners["cublas"] = measure.torch_baseline(spec)
        ms = {v: [] for v in runners}
        for _ in range(rounds):
            for v, run_one in runners.items():
                ms[v].append(measure.time_ms(run_one, sets, warmup_ms=warmup_ms,
                                             rep_ms=rep_ms))
        cub = statistics.median(ms["cublas"])
        results[point] = {v: {"tflops_median": measure.tflops(spec, statistics.median(x)),
                              "tflops_rounds": [measure.tflops(spec, m) for m in x],
                              "ms_median": statistics.median(x),
                              "vs_cublas": cub / statistics.median(x)} for v, x in ms.items()}
        save()
    print(f"\n{'point':16s} {'variant':28s} {'TFLOP/s':>8s} {'min':>6s} {'max':>6s} {'vs cuBLAS':>9s}")
    for point, rows in results.items():
        for v, r in rows.items():
            tf = r["tflops_rounds"]
            print(f"{point:16s} {v:28s} {r['tflops_median']:8.1f} {min(tf):6.1f} {max(tf):6.1f} "
                  f"{r['vs_cublas']:9.2f}")
    print(f"checks: {sum(c['ok'] for c in checks.values())}/{len(checks)} passed")
    return 1 if failures else 0


def launch(kernel_dirs: list[Path], iters: int) -> int:
    """Run each compiled kernel `iters` times in turn on random inputs (under a profiler such
    as ncu: launches 0..iters-1 are the first kernel's, and so on)."""
    import torch

    from deepgen.runtime import load, measure

    for kernel_dir in kernel_dirs:
        k = load(kernel_dir)
        a, b = measure.operand(k.spec, "A"), measure.operand(k.spec, "B")
        shape = (k.spec.M, k.spec.N) if k.spec.batch == 1 else (k.spec.batch, k.spec.M, k.spec.N)
        c = torch.empty(shape, device="cuda", dtype=measure.TORCH_DTYPES[k.spec.out_dtype])
        for _ in range(iters):
            k(a, b, c)
        torch.cuda.synchronize()
        print(f"{kernel_dir.name}: {iters} launches", flush=True)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bundle_modes(p)
    p.add_argument("--launch", type=Path, nargs="+", metavar="BUNDLE/NAME",
                   help="run kernels of a bundle --iters times each (under a profiler)")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--only", help="compile the cases whose name matches this regex")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", type=Path)
    p.add_argument("--warmup-ms", type=float, default=25, help="per timing (do_bench warmup)")
    p.add_argument("--rep-ms", type=float, default=100, help="per timing (do_bench rep)")
    a = p.parse_args()
    if a.launch:
        return launch(a.launch, a.iters)
    if not (a.compile_only or a.run):
        p.error("one of --compile-only, --run, --launch is required")
    if a.compile_only:
        compile_all(a.compile_only, a.only)
        return 0
    return run_all(a.run, a.rounds, a.out, a.warmup_ms, a.rep_ms)


if __name__ == "__main__":
    sys.exit(main())
