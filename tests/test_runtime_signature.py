"""The typed kernel signature (runtime/artifact.py): params, size rules, bundles of both
formats, the Kernel's extra operands, and the launcher packing any signature, TMA descriptors
and cluster launches against the fake driver (tests/fake_cuda), all on the CPU."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

from deepgen.epilogue import EpilogueSpec
from deepgen.runtime.artifact import (FORMAT, ArtifactError, KernelArtifact, Launch, Param,
                                      check_rule, eval_rule, param_for, sizes_of, tma_param)
from deepgen.runtime.kernel import Kernel
from deepgen.runtime.reference import reference_artifact
from deepgen.spec import GemmSpec
from runtime_fakes import (FAKE_DRIVER_PRELUDE, build_fake_cuda, pretend_cpu_is_cuda,
                           run_with_fake_driver)

SIZES = {"M": 300, "N": 64, "K": 128, "batch": 2}
BIAS_SPEC = GemmSpec(M=256, N=64, K=128, dtype="bf16", epilogue=EpilogueSpec.of(bias="col"))


# -- size rules --------------------------------------------------------------------------------

@pytest.mark.parametrize("rule, value", [
    (7, 7), ("M", 300), ("cdiv(M, 128)", 3), ("N // 16 * batch", 8), ("M - N + 1", 237),
    ("min(M, N, K)", 64), ("max(cdiv(M, 64), 2)", 5), ("(M + 127) // 128", 3), ("-K + 200", 72),
])
def test_rules_evaluate_at_the_sizes(rule, value):
    assert eval_rule(rule, SIZES) == value


@pytest.mark.parametrize("rule, message", [
    ("Q + 1", "unknown name 'Q'"),
    ("M / 2", "operator Div is not allowed"),
    ("M ** 2", "operator Pow is not allowed"),
    ("M % 3", "operator Mod is not allowed"),
    ("__import__('os').system('true')", "Attribute is not allowed"),
    ("open('x')", "call of 'open' is not allowed"),
    ("M.bit_length()", "Attribute is not allowed"),
    ("[M][0]", "Subscript is not allowed"),
    ("1.5", "constant 1.5 is not an int"),
    ("cdiv(M)", "cdiv: takes 2 arguments"),
    ("M if N else K", "IfExp is not allowed"),
    ("lambda: 0", "Lambda is not allowed"),
    ("M +", "not an expression"),
    ("M" + " + M" * 200, "at most 256"),
    (1.0, "an int or a string"),
])
def test_bad_rules_are_artifact_errors(rule, message):
    with pytest.raises(ArtifactError, match=message):
        check_rule(rule, "launch 'k': grid[0]")


def test_an_unknown_name_or_a_disallowed_node_names_the_launch():
    with pytest.raises(ArtifactError, match=r"launch 'k': grid\[1\]: rule 'cdiv\(M, X\)': "
                                            r"unknown name 'X'"):
        Launch("k", (1, "cdiv(M, X)", 1), (32, 1, 1), 0, ())
    with pytest.raises(ArtifactError, match=r"launch 'k': grid\[2\]: .*operator BitOr"):
        Launch("k", (1, 1, "M | N"), (32, 1, 1), 0, ())


def test_evaluation_errors_name_the_launch():
    zero = Launch("k", ("cdiv(M, N - 64)", 1, 1), (32, 1, 1), 0, ())
    with pytest.raises(ArtifactError, match=r"launch 'k': grid\[0\]: .*cdiv by zero"):
        zero.grid_for(SIZES)
    empty = Launch("k", ("N - 64", 1, 1), (32, 1, 1), 0, ())
    with pytest.raises(ArtifactError, match=r"launch 'k': grid \[0, 1, 1\] .* out of range"):
        empty.grid_for(SIZES)
    with pytest.raises(ArtifactError, match="no size 'batch' given"):
        Launch("k", ("batch", 1, 1), (32, 1, 1), 0, ()).grid_for({"M": 1, "N": 1, "K": 1})


# -- params ------------------------------------------------------------------------------------

def test_param_table_maps_kernel_argument_names():
    spec = GemmSpec(M=32, N=48, K=16, dtype="f16", out_dtype="f32", layout="TN",
                    epilogue=EpilogueSpec.of(bias="row", bias_dtype="f32"))
    assert param_for("A", spec) == Param("A", "ptr", "f16", ("batch", "K", "M"))
    assert param_for("B", spec) == Param("B", "ptr", "f16", ("batch", "K", "N"))
    assert param_for("C", spec) == Param("C", "ptr", "f32", ("batch", "M", "N"))
    assert param_for("W", spec) == Param("W", "workspace")
    assert param_for("alpha", spec) == Param("alpha", "f32")
    assert param_for("K", spec) == Param("K", "i32", value="K")
    bias = param_for("bias", spec)
    assert (bias.kind, bias.dtype, bias.shape) == ("ptr", "f32", ("M",))
    sizes = sizes_of(spec)
    assert tuple(eval_rule(r, sizes) for r in bias.shape) == spec.operand_shape("bias")
    col = param_for("bias", BIAS_SPEC)
    assert (col.dtype, col.shape) == ("bf16", ("N",))
    assert tuple(eval_rule(r, sizes_of(BIAS_SPEC)) for r in col.shape) == \
        BIAS_SPEC.operand_shape("bias")
    with pytest.raises(ArtifactError, match="kernel argument 'D': not a known name"):
        param_for("D", spec)
    with pytest.raises(ArtifactError, match="bias: the spec's epilogue has no bias step"):
        param_for("bias", GemmSpec(M=1, N=1, K=1))


@pytest.mark.parametrize("fields, message", [
    ({"kind": "f64"}, "unknown kind 'f64'"),
    ({"kind": "ptr", "dtype": "f8"}, "unknown dtype 'f8'"),
    ({"kind": "tma", "dtype": "bf16", "shape": ["M", "K"]}, "needs dtype, shape and box"),
    ({"kind": "tma", "dtype": "bf16", "shape": ["M", "K"], "box": [64]}, "must have 2 ints"),
    ({"kind": "tma", "dtype": "bf16", "shape": ["M", "K"], "box": [512, 64]}, "1..256"),
    ({"kind": "tma", "dtype": "bf16", "shape": ["M", "K"], "box": [64, 64], "swizzle": 96},
     "swizzle 96 not in"),
    ({"kind": "tma", "dtype": "bf16", "shape": ["M", "K"], "box": [64, 4]},
     "8 bytes, TMA needs a multiple of 16"),
    ({"kind": "tma", "dtype": "f32", "shape": ["M", "K"], "box": [64, 64], "swizzle": 128},
     "256 bytes, more than the 128-byte swizzle"),
    ({"kind": "tma", "dtype": "f32", "shape": ["M", "K"], "box": [8, 8], "oob_fill": "zero"},
     "oob_fill 'zero' not in"),
    ({"kind": "tma", "dtype": "f32", "shape": ["M", "Z"], "box": [8, 8]}, "unknown name 'Z'"),
    ({"kind": "i32", "value": "M / 2"}, "operator Div"),
    ({"kind": "f32", "value": "M"}, "only i32/i64 params have a value rule"),
    ({"kind": "ptr", "colour": "red"}, "unknown field 'colour'"),
])
def test_bad_params_are_artifact_errors_naming_launch_and_param(fields, message):
    with pytest.raises(ArtifactError, match=f"launch 'k': param 'p'.*{message}"):
        Launch.from_dict({"entry": "k", "grid": [1, 1, 1], "block": [32, 1, 1],
                          "shared_bytes": 0, "params": [{"name": "p", **fields}]})


def test_launch_checks_names_grid_block_and_cluster():
    base = dict(entry="k", grid=(1, 1, 1), block=(32, 1, 1), shared_bytes=0, params=())
    with pytest.raises(ArtifactError, match="param 'A' appears twice"):
        Launch(**{**base, "params": ("A", "A")})
    with pytest.raises(ArtifactError, match="unknown argument 'X'"):
        Launch(**{**base, "params": ("X",)})
    with pytest.raises(ArtifactError, match="grid needs 3 rules"):
        Launch(**{**base, "grid": (1, 1)})
    with pytest.raises(ArtifactError, match="cluster must be 3 positive ints"):
        Launch(**{**base, "cluster": (2, 0, 1)})


# -- bundles -----------------------------------------------------------------------------------

def custom_artifact() -> KernelArtifact:
    """A kernel with every kind of param, rule grids, a cluster and a rule workspace."""
    s = BIAS_SPEC
    main = Launch("main_TPPFFPIL", ("cdiv(N, 32)", "cdiv(M, 128)", "batch"), (128, 1, 1), 1024,
                  (tma_param("A_tma", "A", s, (1, 64, 64)), param_for("B", s),
                   param_for("C", s), param_for("alpha", s), param_for("beta", s),
                   param_for("bias", s), param_for("K", s),
                   Param("k_tiles", "i64", value="cdiv(K, 64)")),
                  cluster=(2, 1, 1))
    reduce_ = Launch("reduce_PPFF", ("cdiv(M * N, 256)", 1, 1), (256, 1, 1), 0,
                     (Param("W", "workspace"), param_for("C", s), param_for("alpha", s),
                      param_for("beta", s)))
    return KernelArtifact(backend="cuda", target="sm_90a", binary=b"CUSTOM IMAGE",
                          launches=[main, reduce_], spec=s.to_dict(), config={"custom": True},
                          workspace_bytes="4 * M * N * batch")


def test_custom_signature_round_trips_through_a_bundle(tmp_path):
    art = custom_artifact()
    art.save(tmp_path)
    meta = json.loads((tmp_path / "kernel.json").read_text())
    assert meta["format"] == FORMAT == "deepgen-kernel/2"
    main = meta["launches"][0]
    assert main["grid"] == ["cdiv(N, 32)", "cdiv(M, 128)", "batch"]
    assert main["cluster"] == [2, 1, 1]
    assert main["params"][0] == {
        "name": "A_tma", "kind": "tma", "operand": "A", "dtype": "bf16",
        "shape": ["batch", "M", "K"], "box": [1, 64, 64], "element_strides": [1, 1, 1],
        "swizzle": 128, "interleave": 0, "l2_promotion": 128, "oob_fill": "none"}
    assert main["params"][5] == {"name": "bias", "kind": "ptr", "dtype": "bf16",
                                 "shape": ["N"]}
    assert main["params"][7] == {"name": "k_tiles", "kind": "i64", "value": "cdiv(K, 64)"}
    assert meta["workspace_bytes"] == "4 * M * N * batch"
    got = KernelArtifact.load(tmp_path)
    assert got.launches == art.launches and got.workspace_bytes == art.workspace_bytes
    assert got.launches[0].args == ("A_tma", "B", "C", "alpha", "beta", "bias", "K", "k_tiles")
    assert "cluster" not in meta["launches"][1]


def test_deepgen_kernel_1_bundles_still_load(tmp_path):
    """A bundle as the previous format wrote it: "args" name lists and int grids."""
    spec = GemmSpec(M=64, N=32, K=16, batch=2, dtype="bf16", layout="TN")
    art = reference_artifact(spec, split=True)
    art.save(tmp_path)
    meta = json.loads((tmp_path / "kernel.json").read_text())
    meta["format"] = "deepgen-kernel/1"
    for launch in meta["launches"]:
        launch["args"] = [p["name"] for p in launch.pop("params")]
    (tmp_path / "kernel.json").write_text(json.dumps(meta))
    old = KernelArtifact.load(tmp_path)
    assert [l.args for l in old.launches] == [("A", "B", "W"), ("W", "C", "alpha", "beta")]
    assert old.launches == art.launches
    a, w = old.launches[0].params[0], old.launches[0].params[2]
    assert (a.kind, a.dtype, a.shape) == ("ptr", "bf16", ("batch", "K", "M"))
    assert w == Param("W", "workspace")
    assert old.launches[1].params[2] == Param("alpha", "f32")
    k = Kernel(old)
    assert k.workspace_bytes == art.workspace_bytes and k._plain


def test_kernel_accessors():
    art = custom_artifact()
    k = Kernel(art)
    assert k.binary == b"CUSTOM IMAGE"
    assert list(k.signature) == ["main_TPPFFPIL", "reduce_PPFF"]
    assert k.signature["reduce_PPFF"][0] == Param("W", "workspace")
    assert k.extra_operands == ("bias",)
    assert k.workspace_bytes == 4 * 256 * 64
    assert k.sass is None  # not a cubin (and cuobjdump may be absent)
    assert k._descs[0][1:] == ((2, 2, 1), (128, 1, 1), 1024,
                               [("tma", 0), ("ptr", 1), ("ptr", 2), ("f32", 0), ("f32", 1),
                                ("ptr", 4), ("i32", 2), ("i64", 4)], (2, 1, 1))
    assert k._i64 == [256, 64, 128, 1, 2]
    assert k._tma[0]["dims"] == [1, 256, 128] and k._tma[0]["strides"] == [32768, 128, 1]


def test_a_bad_rule_fails_when_the_kernel_is_made():
    art = custom_artifact()
    art.launches[1] = Launch("reduce_PPFF", ("cdiv(M, N - 64)", 1, 1), (256, 1, 1), 0, ())
    with pytest.raises(ArtifactError, match="launch 'reduce_PPFF': grid"):
        Kernel(art)


# -- extra operands on the Kernel (CPU tensors stand in for CUDA ones) -------------------------

@pytest.fixture
def bias_kernel():
    s = BIAS_SPEC
    params = tuple(param_for(n, s) for n in ("A", "B", "C", "alpha", "beta", "bias"))
    art = KernelArtifact(backend="cuda", target="sm_90a", binary=b"X",
                         launches=[Launch("k", (1, 1, 1), (32, 1, 1), 0, params)],
                         spec=s.to_dict(), config={})
    return Kernel(art)


def _ab(spec=BIAS_SPEC):
    return (torch.zeros(spec.M, spec.K, dtype=torch.bfloat16),
            torch.zeros(spec.K, spec.N, dtype=torch.bfloat16))


def test_extra_operand_is_packed_after_a_b_c_w(monkeypatch, bias_kernel):
    plan = pretend_cpu_is_cuda(monkeypatch, stream=55)
    a, b = _ab()
    bias = torch.zeros(64, dtype=torch.bfloat16)
    c = bias_kernel(a, b, bias=bias, alpha=2.0)
    assert plan.calls == [("args", 55, (a.data_ptr(), b.data_ptr(), c.data_ptr(), 0,
                                        bias.data_ptr()), (2.0, 0.0))]


@pytest.mark.parametrize("kwargs, error, message", [
    ({}, TypeError, r"bias: missing; this kernel takes bias= \(a CUDA tensor, torch.bfloat16, "
                    r"shape \(64,\)\)"),
    ({"bias": torch.zeros(64, dtype=torch.bfloat16), "scale": 1.0}, TypeError,
     "scale: not an operand of this kernel"),
    ({"bias": torch.zeros(64)}, TypeError, "bias: expected dtype torch.bfloat16"),
    ({"bias": torch.zeros(256, dtype=torch.bfloat16)}, ValueError,
     r"bias: expected shape \(64,\), got \(256,\)"),
    ({"bias": torch.zeros(128, dtype=torch.bfloat16)[::2]}, ValueError,
     "bias: must be contiguous"),
    ({"bias": torch.zeros(72, dtype=torch.bfloat16)[1:65]}, ValueError,
     "bias: data_ptr .* is not 16-byte aligned"),
    ({"bias": [0.0] * 64}, TypeError, "bias: expected a torch.Tensor"),
])
def test_extra_operand_errors_name_it(monkeypatch, bias_kernel, kwargs, error, message):
    plan = pretend_cpu_is_cuda(monkeypatch)
    with pytest.raises(error, match=message):
        bias_kernel(*_ab(), **kwargs)
    assert plan.calls == []


def test_extra_operand_device_is_checked(monkeypatch, bias_kernel):
    pretend_cpu_is_cuda(monkeypatch)
    from deepgen.runtime import kernel as km
    from runtime_fakes import facts_of

    monkeypatch.setattr(km, "facts", lambda name, t: facts_of(
        t, torch.device("cuda", 1) if name == "bias" else torch.device("cuda", 0)))
    with pytest.raises(ValueError, match="a on cuda:0, bias on cuda:1"):
        bias_kernel(*_ab(), bias=torch.zeros(64, dtype=torch.bfloat16))


def test_plain_kernel_rejects_unknown_operands_and_keeps_the_fast_path(monkeypatch):
    plan = pretend_cpu_is_cuda(monkeypatch, stream=3)
    k = Kernel(reference_artifact(GemmSpec(M=8, N=4, K=6)))
    with pytest.raises(TypeError, match="bias: not an operand of this kernel .*none"):
        k(torch.zeros(8, 6), torch.zeros(6, 4), bias=torch.zeros(4))
    c = k(torch.zeros(8, 6), torch.zeros(6, 4))
    assert len(plan.calls) == 1 and plan.calls[0][0] == 3 and plan.calls[0][3] == c.data_ptr()


def test_run_without_the_required_operand_names_it(monkeypatch, bias_kernel):
    pretend_cpu_is_cuda(monkeypatch)
    a, b = _ab()
    with pytest.raises(TypeError, match="bias: missing"):
        bias_kernel._run(a, a.data_ptr(), b.data_ptr(), None, 1.0, 0.0, None)


# -- the launcher against the fake driver --------------------------------------------------------

PRELUDE = FAKE_DRIVER_PRELUDE + """
TMA = {"name": "A_tma", "pointer": 0, "dtype": "bf16", "dims": [1, 256, 128],
       "strides": [32768, 128, 1], "box": [1, 64, 64], "element_strides": [1, 1, 1],
       "swizzle": 128, "interleave": 0, "l2_promotion": 128, "oob_fill": "none"}
"""


def _build_fake(tmp_path_factory, name: str, *flags: str) -> Path:
    pytest.importorskip("deepgen.runtime._launcher", reason="launcher not built")
    d = build_fake_cuda(tmp_path_factory.mktemp(name), *flags)
    if d is None:
        pytest.skip("no C compiler to build the fake driver")
    return d


@pytest.fixture(scope="module")
def fake_driver(tmp_path_factory) -> Path:
    return _build_fake(tmp_path_factory, "fake_cuda")


@pytest.fixture(scope="module")
def old_driver(tmp_path_factory) -> Path:
    return _build_fake(tmp_path_factory, "fake_cuda_old", "-DFAKE_OLD_DRIVER")


def run_child(driver: Path, body: str):
    return run_with_fake_driver(driver, PRELUDE + textwrap.dedent(body))


ENCODE = ("type=9 rank=3 addr=0x10000 dims=128,256,1 strides=256,65536 box=64,64,1 "
          "elementstrides=1,1,1 interleave=0 swizzle=3 l2=2 oob=0")


def test_any_signature_packs_tma_cluster_and_integer_params(fake_driver):
    out = run_child(fake_driver, """
        plan = _launcher.LaunchPlan("cuda", b"X", 0, [
            ("k_TPFIL", (4, 2, 1), (128, 1, 1), 0,
             [("tma", 0), ("ptr", 2), ("f32", 0), ("i32", 0), ("i64", 2)], (2, 1, 1)),
            ("r_PF", (5, 1, 1), (64, 1, 1), 0, [("ptr", 3), ("f32", 1)])],
            [TMA], [256, 64, 128, 1])
        plan.launch_args(7, [0x10000, 0x20000, 0x30000, 0x40000], [1.5, -2.0])
        first = plan.tma_encodes
        plan.launch_args(8, (0x10000, 0, 0x30000, 0), (2.5, 0.0), [5, 6, 7])
        plan.launch(9, 0x10000, 0, 0x30000, 0, 1.0, 0.0)    # the fast path: same descriptor
        again = plan.tma_encodes
        plan.launch_args(7, [0x50000, 0, 0x30000, 0], [1.0, 0.0])  # another tensor
        print(json.dumps({"log": log(), "encodes": [first, again, plan.tma_encodes]}))
    """)
    assert out["encodes"] == [1, 1, 2]
    assert out["log"] == [
        "load 1 ctx=0x1000",
        "encode #1 " + ENCODE,
        "launchex k_TPFIL grid=4,2,1 block=128,1,1 shared=0 stream=0x7 ctx=0x1000 attrs=1 "
        "cluster=2,1,1 args=tma#1@0x10000,0x30000,1.5,256,128",
        "launch r_PF grid=5,1,1 block=64,1,1 shared=0 stream=0x7 ctx=0x1000 args=0x40000,-2",
        "launchex k_TPFIL grid=4,2,1 block=128,1,1 shared=0 stream=0x8 ctx=0x1000 attrs=1 "
        "cluster=2,1,1 args=tma#1@0x10000,0x30000,2.5,5,7",
        "launch r_PF grid=5,1,1 block=64,1,1 shared=0 stream=0x8 ctx=0x1000 args=0,0",
        "launchex k_TPFIL grid=4,2,1 block=128,1,1 shared=0 stream=0x9 ctx=0x1000 attrs=1 "
        "cluster=2,1,1 args=tma#1@0x10000,0x30000,1,256,128",
        "launch r_PF grid=5,1,1 block=64,1,1 shared=0 stream=0x9 ctx=0x1000 args=0,0",
        "encode #2 " + ENCODE.replace("0x10000", "0x50000"),
        "launchex k_TPFIL grid=4,2,1 block=128,1,1 shared=0 stream=0x7 ctx=0x1000 attrs=1 "
        "cluster=2,1,1 args=tma#2@0x50000,0x30000,1,256,128",
        "launch r_PF grid=5,1,1 block=64,1,1 shared=0 stream=0x7 ctx=0x1000 args=0,0",
    ]


def test_tma_encoding_arguments_for_each_option(fake_driver):
    out = run_child(fake_driver, """
        t = dict(TMA, dtype="f32", dims=[96, 40], strides=[48, 1], box=[32, 8],
                 element_strides=[2, 1], swizzle=32, l2_promotion=256, oob_fill="nan")
        plan = _launcher.LaunchPlan("cuda", b"X", 0, [("k_T", (1, 1, 1), (32, 1, 1), 0,
                                                        [("tma", 0)])], [t])
        plan.launch_args(0, [0x7000], [])
        print(json.dumps([l for l in log() if l.startswith("encode")]))
    """)
    # f32 -> FLOAT32 (7); row stride 48 elements = 192 bytes (padded rows); dims innermost
    # first; swizzle 32B -> 1, L2 256B -> 3, NaN fill -> 1
    assert out == ["encode #1 type=7 rank=2 addr=0x7000 dims=40,96 strides=192 box=8,32 "
                   "elementstrides=1,2 interleave=0 swizzle=1 l2=3 oob=1"]


def test_kernel_packs_its_signature_through_the_launcher(fake_driver):
    out = run_child(fake_driver, """
        from deepgen.runtime.kernel import Kernel
        from test_runtime_signature import custom_artifact
        k = Kernel(custom_artifact())
        plan = k._plan(0)
        plan.launch_args(3, [0x10000, 0x20000, 0x30000, 0x40000, 0x60000], [2.0, 0.5])
        plan.launch_args(3, [0x10000, 0x20000, 0x30000, 0x40000, 0x60000], [2.0, 0.5])
        print(json.dumps({"log": log(), "encodes": plan.tma_encodes,
                          "fast": error(plan.launch, 0, 1, 2, 3, 4, 1.0, 0.0)}))
    """)
    main = ("launchex main_TPPFFPIL grid=2,2,1 block=128,1,1 shared=1024 stream=0x3 ctx=0x1000 "
            "attrs=1 cluster=2,1,1 args=tma#1@0x10000,0x20000,0x30000,2,0.5,0x60000,128,2")
    reduce_ = ("launch reduce_PPFF grid=64,1,1 block=256,1,1 shared=0 stream=0x3 ctx=0x1000 "
               "args=0x40000,0x30000,2,0.5")
    assert out["log"] == ["load 1 ctx=0x1000", "encode #1 " + ENCODE, main, reduce_, main,
                          reduce_]
    assert out["encodes"] == 1
    assert out["fast"]["type"] == "ValueError" and "launch_args" in out["fast"]["message"]


@pytest.mark.parametrize("expr, kind, message", [
    ('_launcher.LaunchPlan("cuda", b"X", 0, [GEMM]).launch_args, 0, [1, 2], [1.0, 0.0]',
     "ValueError", "the plan takes 3 pointers, 2 f32 and 0 i64 values; got 2, 2, 0"),
    ('_launcher.LaunchPlan("cuda", b"X", 0, [("k_I", (1,1,1), (1,1,1), 0, [("i32", 0)])], [], '
     '[1]).launch_args, 0, [], [], [2**40]', "ValueError", "i32 parameter 0 gets 1099511627776"),
    ('_launcher.LaunchPlan, "cuda", b"X", 0, [("k_P", (3,1,1), (1,1,1), 0, [], (2,1,1))]',
     "ValueError", "grid is not a multiple of the cluster shape"),
    ('_launcher.LaunchPlan, "cuda", b"X", 0, [("k_P", (1,1,1), (1,1,1), 0, [("f64", 0)])]',
     "ValueError", "unknown parameter kind 'f64'"),
    ('_launcher.LaunchPlan, "cuda", b"X", 0, [("k_T", (1,1,1), (1,1,1), 0, [("tma", 1)])], [TMA]',
     "ValueError", "tma slot 1 but the plan has 1"),
    ('_launcher.LaunchPlan, "cuda", b"X", 0, [("k_T", (1,1,1), (1,1,1), 0, [("tma", 0)])], '
     '[dict(TMA, swizzle=48)]', "ValueError", "swizzle 48 is not allowed"),
    ('_launcher.LaunchPlan, "hip", b"X", 0, [("k_T", (1,1,1), (1,1,1), 0, [("tma", 0)])], [TMA]',
     "ValueError", "need the 'cuda' backend"),
    ('_launcher.LaunchPlan("cuda", b"X", 0, [("k_T", (1,1,1), (1,1,1), 0, [("tma", 0)])], '
     '[TMA]).launch_args, 0, [0x1001]', "DriverError", "cuTensorMapEncodeTiled(A_tma) failed"),
])
def test_signature_errors(fake_driver, expr, kind, message):
    out = run_child(fake_driver, f"print(json.dumps(error({expr})))")
    assert out["type"] == kind and message in out["message"], out


def test_a_driver_without_tma_or_launch_ex_still_runs_other_kernels(old_driver):
    out = run_child(old_driver, """
        plan = _launcher.LaunchPlan("cuda", b"X", 0, [GEMM])
        plan.launch(7, 1, 2, 3, 0, 1.0, 0.0)
        print(json.dumps({
            "log": log(),
            "tma": error(_launcher.LaunchPlan, "cuda", b"X", 0,
                         [("k_T", (1, 1, 1), (1, 1, 1), 0, [("tma", 0)])], [TMA]),
            "cluster": error(_launcher.LaunchPlan, "cuda", b"X", 0,
                             [("k_P", (2, 1, 1), (1, 1, 1), 0, ["A"], (2, 1, 1))])}))
    """)
    assert out["log"][-1].startswith("launch k_PPPFF") and out["log"][-1].endswith("args=0x1,0x2,0x3,1,0")
    for key, symbol in (("tma", "cuTensorMapEncodeTiled"), ("cluster", "cuLaunchKernelEx")):
        assert out[key]["type"] == "DriverError" and out[key]["name"] == "MISSING_SYMBOL"
        assert symbol in out[key]["message"]
