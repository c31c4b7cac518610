"""GPU correctness cases of the decode defaults (wgmma/config.py's decode rules; issue 15):
each case is a decode-sized spec that the default heuristic serves with one of the rules,
compiled with its default config (tests/gpu/test_decode_gpu.py; make_bundle.py compiles them
into DIR/decode/<name>): the narrow non-swapped tile (64 rows with one consumer, 128 with
two, 64 rows of twice the columns in 2x1 clusters; the deep ring; partial tiles in M, N and
K; bias, activations, beta), 64-row swap_ab tiles without a split (16 stages; NN: B MN-major
as wgmma's A), split 2 in a cluster with the deep ring, and 128-row ones at two CTAs per SM.

Each case: (name, spec fields, the fields the default config must have, alpha, beta)."""
from __future__ import annotations


def _epi(bias=None, activation=None) -> dict:
    from deepgen.epilogue import EpilogueSpec
    return EpilogueSpec.of(bias=bias, activation=activation).to_dict()


NARROW = {"swap_ab": False, "split_k": 1}
SWAP = {"swap_ab": True, "BM": 64}


def cases() -> list:
    nt = {"dtype": "bf16", "layout": "NT"}
    return [
        ("decode-narrow-NT-m100-partial-biascol-gelu-beta",
         {**nt, "M": 100, "N": 6152, "K": 4160, "epilogue": _epi("col", "gelu_tanh")},
         {**NARROW, "BM": 64, "BN": 96, "cluster_m": 2, "stages": 11}, 1.0, 0.5),
        ("decode-narrow-NT-m100-c2-biascol-relu",
         {**nt, "M": 100, "N": 4096, "K": 4160, "epilogue": _epi("col", "relu")},
         {**NARROW, "BM": 128, "BN": 32, "consumers": 2, "cluster_m": 1, "stages": 11}, 1.0, 0.0),
        ("decode-swap-2cta-NT-m5-partial", {**nt, "M": 5, "N": 20488, "K": 4096},
         {"swap_ab": True, "BM": 128, "BN": 8, "ctas_per_sm": 2, "stages": 6, "split_k": 1},
         1.0, 0.0),
        ("decode-narrow-NT-m64-alpha-f16",
         {"M": 64, "N": 4096, "K": 4096, "dtype": "f16", "layout": "NT"},
         {**NARROW, "BM": 64, "BN": 32, "consumers": 1, "stages": 16}, 1.5, 0.0),
        ("decode-narrow-NT-m40-n20008-biasrow-silu",
         {**nt, "M": 40, "N": 20008, "K": 4096, "epilogue": _epi("row", "silu")},
         {**NARROW, "BM": 64, "BN": 160, "consumers": 1, "stages": 8}, 1.0, 0.0),
        ("decode-swap64-NT-m13-beta", {**nt, "M": 13, "N": 8192, "K": 8192},
         {**SWAP, "BN": 16, "stages": 16, "split_k": 1}, 1.0, 1.0),
        ("decode-swap64-NN-m128-biascol-relu-f16",
         {"M": 128, "N": 4096, "K": 4096, "dtype": "f16", "layout": "NN",
          "epilogue": _epi("col", "relu")},
         {**SWAP, "BN": 128, "stages": 9, "split_k": 1}, 1.0, 0.0),
        ("decode-swap64-NN-m72-partial",
         {"M": 72, "N": 6152, "K": 4104, "dtype": "bf16", "layout": "NN"},
         {**SWAP, "BN": 72, "stages": 13, "split_k": 1}, 0.5, 0.0),
        ("decode-swap64-cluster-NT-m100-k14336-beta", {**nt, "M": 100, "N": 4096, "K": 14336},
         {**SWAP, "BN": 104, "stages": 10, "split_k": 2, "reduce": "cluster"}, 1.0, 0.5),
    ]


def compile_case(spec_fields: dict, expect: dict | None = None, target: str = "sm_90a"):
    """The KernelArtifact of the spec's default config (`expect` names what it must be; the
    tests check it)."""
    from deepgen.compiler import compile_artifact

    from deepgen.spec import GemmSpec

    return compile_artifact(GemmSpec(**spec_fields), None, target, keep_ir=False)
