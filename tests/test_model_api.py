"""What a model needs of deepgen.gemm, on the CPU machine: leading dimensions folded, autograd,
the torch fallback (warned once), DEEPGEN_DISABLE, deepgen.explain and deepgen.optimize's
dispatch rule (DeepGen only where the tuned database says it beats torch).

CPU tensors pass for CUDA ones (tests/runtime_fakes.py): kernels "run" by computing through
the pointers they are given, so wrong folding, layouts or gradients fail the comparisons
with float64 references."""
from __future__ import annotations

import dataclasses
import json
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F
from deepgen.runtime import cache
from deepgen.runtime.artifact import Launch, param_for
from deepgen.runtime.reference import reference_artifact
from runtime_fakes import FakeCompiler

import deepgen
from deepgen import api, fallback
from deepgen import routing as optimize
from deepgen.spec import GemmSpec


@pytest.fixture(autouse=True)
def fresh_state(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPGEN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DEEPGEN_DISABLE", raising=False)
    monkeypatch.setitem(fallback._state, "disabled", None)
    monkeypatch.setitem(fallback._state, "warned", False)
    for table in (api._by_call, api._by_spec):
        table.clear()
    cache.clear_memory()
    optimize.reset()
    torch._dynamo.reset()
    yield
    for table in (api._by_call, api._by_spec):
        table.clear()
    cache.clear_memory()
    optimize.reset()


class EpilogueFakeCompiler(FakeCompiler):
    """The reference kernel, taking the bias operand when the spec's epilogue has one (the
    ComputingPlan applies the epilogue chain)."""

    def compile_artifact(self, spec, config=None, target="sm_90a"):
        self.calls.append((spec, config, target))
        art = reference_artifact(spec, target=target)
        if any(s.startswith("bias") for s in spec.epilogue.steps):
            (launch,) = art.launches
            art = dataclasses.replace(art, launches=[Launch(
                launch.entry, launch.grid, launch.block, launch.shared_bytes,
                tuple(param_for(n, spec) for n in ("A", "B", "C", "bias", "alpha", "beta")))])
        return art


@pytest.fixture
def compiler(monkeypatch):
    fake = EpilogueFakeCompiler()
    monkeypatch.setitem(sys.modules, "deepgen.compiler", fake)
    monkeypatch.setattr(deepgen, "compiler", fake, raising=False)
    return fake


def ref(a, b, alpha=1.0, bias=None, activation=None, bias_dim="col"):
    """float64 torch: act(alpha * a @ b + bias), a (..., M, K) x b (K, N) or batched."""
    r = alpha * torch.matmul(a.double(), b.double())
    if bias is not None:
        v = bias.double()
        if bias_dim == "row":
            v = v.reshape(-1, 1) if b.dim() == 3 else v.reshape(*r.shape[:-1], 1)
        r = r + v
    if activation == "relu":
        r = torch.relu(r)
    elif activation == "silu":
        r = F.silu(r)
    elif activation == "gelu_tanh":
        r = F.gelu(r, approximate="tanh")
    return r


def meta(*shape, dtype=torch.float32):
    return torch.empty(*shape, device="meta", dtype=dtype)


# -- leading dimensions folded -------------------------------------------------------------------

def test_three_d_times_two_d_folds_into_m(cpu_gpu, compiler):
    a, b, bias = torch.randn(2, 3, 8), torch.randn(16, 8).t(), torch.randn(16)  # b as Linear
    c = deepgen.gemm(a, b, bias=bias)
    (spec, _, _), = compiler.calls
    assert (spec.M, spec.N, spec.K, spec.batch, spec.layout) == (6, 16, 8, 1, "NT")
    assert c.shape == (2, 3, 16)
    torch.testing.assert_close(c.double(), ref(a, b, bias=bias), rtol=1e-5, atol=1e-5)
    (kind, _, pointers, _), = cpu_gpu[0].calls
    assert kind == "args" and pointers[0] == a.data_ptr()  # folded as a view: no copy


def test_fold_with_out_and_row_bias(cpu_gpu, compiler):
    a, b = torch.randn(2, 2, 3, 8), torch.randn(8, 5)
    out, bias = torch.randn(2, 2, 3, 5), torch.randn(12)
    before = out.clone()
    assert deepgen.gemm(a, b, out=out, beta=0.5, bias=bias, bias_dim="row") is out
    want = ref(a, b, bias=bias, bias_dim="row") + 0.5 * before.double()
    torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-5)


def test_fold_errors_name_the_argument(cpu_gpu, compiler):
    with pytest.raises(ValueError, match=r"out: expected shape \(2, 3, 5\)"):
        deepgen.gemm(torch.randn(2, 3, 8), torch.randn(8, 5), out=torch.empty(6, 5))
    with pytest.raises(ValueError, match="must both be 2-D or both 3-D"):
        deepgen.gemm(torch.randn(3, 8), torch.randn(2, 8, 5))
    assert compiler.calls == []


def test_fold_in_the_ops_fake_under_compile():
    def f(x, w, bias):
        return torch.ops.deepgen.gemm(x, w.t(), 1.0, bias, "silu", "col")

    out = torch.compile(f, fullgraph=True, backend="aot_eager")(
        meta(4, 7, 32, dtype=torch.bfloat16), meta(64, 32, dtype=torch.bfloat16),
        meta(64, dtype=torch.bfloat16))
    assert out.shape == (4, 7, 64) and out.dtype == torch.bfloat16
    with pytest.raises(Exception, match=r"bias: expected shape \(28,\)"):
        torch.compile(lambda x, w, v: torch.ops.deepgen.gemm(x, w, 1.0, v, "none", "row"),
                      fullgraph=True, backend="aot_eager")(meta(4, 7, 32), meta(32, 8),
                                                           meta(7))


# -- the torch fallback --------------------------------------------------------------------------

def test_fallback_without_a_compiler_warns_once_and_matches(cpu_gpu, no_compiler):
    a, b, bias = torch.randn(5, 8), torch.randn(8, 3), torch.randn(3)
    with pytest.warns(RuntimeWarning, match="no kernel can be had here.*runs torch's GEMM"):
        c = deepgen.gemm(a, b)
    torch.testing.assert_close(c, a @ b)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second warning would raise here
        c2 = deepgen.gemm(a, b, bias=bias, activation="gelu_tanh", alpha=0.5)
        out = torch.randn(5, 3)
        before = out.clone()
        deepgen.gemm(a, b, out=out, beta=2.0, bias=bias, bias_dim="col")
    torch.testing.assert_close(c2.double(), ref(a, b, 0.5, bias, "gelu_tanh"), rtol=1e-5,
                               atol=1e-5)
    torch.testing.assert_close(out.double(), ref(a, b, bias=bias) + 2 * before.double(),
                               rtol=1e-5, atol=1e-5)
    assert api._by_spec and all(v is api._NO_KERNEL for v in api._by_spec.values())


def test_fallback_keeps_bf16_like_torch(cpu_gpu, no_compiler):
    x, w, bias = (torch.randn(4, 16).bfloat16(), torch.randn(8, 16).bfloat16(),
                  torch.randn(8).bfloat16())
    with pytest.warns(RuntimeWarning):
        c = deepgen.gemm(x, w.t(), bias=bias)
    assert torch.equal(c, F.linear(x, w, bias))  # nn.Linear's own result, bit for bit


def test_disable_switch_routes_to_torch(cpu_gpu, compiler, monkeypatch):
    monkeypatch.setenv("DEEPGEN_DISABLE", "1")
    fallback.disabled(refresh=True)
    a, b = torch.randn(2, 5, 8), torch.randn(8, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # on purpose: no warning
        c = deepgen.gemm(a, b, activation="relu")
    torch.testing.assert_close(c, torch.relu(a @ b))
    assert compiler.calls == [] and cpu_gpu == []
    assert deepgen.explain(a, b).source == "disabled"
    monkeypatch.setenv("DEEPGEN_DISABLE", "0")
    assert not fallback.disabled(refresh=True)
    deepgen.gemm(a, b)
    assert len(compiler.calls) == 1


# -- autograd ------------------------------------------------------------------------------------

CASES = [  # a shape, b shape, bias length (None: no bias), bias_dim
    ((5, 8), (8, 3), 3, "col"),
    ((2, 4, 8), (8, 6), 6, "col"),          # folded, as F.linear
    ((2, 4, 8), (8, 6), 8, "row"),          # folded, a bias per row of the folded M
    ((3, 4, 8), (3, 8, 6), 4, "row"),       # batched
    ((3, 4, 8), (3, 8, 6), None, "col"),
]


def _grads(fn, *tensors):
    leaves = [t.detach().clone().requires_grad_() if t is not None else None for t in tensors]
    out = fn(*leaves)
    out.backward(torch.linspace(-1, 1, out.numel()).reshape(out.shape).to(out.dtype))
    return out, [None if t is None else t.grad for t in leaves]


@pytest.mark.parametrize("activation", [None, "relu", "gelu_tanh", "silu"])
@pytest.mark.parametrize("a_shape, b_shape, nbias, bias_dim", CASES)
@pytest.mark.parametrize("route", ["fallback", "kernels"])
def test_autograd_matches_float64(request, monkeypatch, route, a_shape, b_shape, nbias,
                                  bias_dim, activation):
    request.getfixturevalue("cpu_gpu")
    if route == "fallback":
        request.getfixturevalue("no_compiler")
        monkeypatch.setitem(fallback._state, "warned", True)
    else:
        request.getfixturevalue("compiler")
    torch.manual_seed(0)
    a, b = torch.randn(a_shape), torch.randn(b_shape)
    bias = None if nbias is None else torch.randn(nbias)
    out, grads = _grads(lambda x, y, v: deepgen.gemm(x, y, alpha=0.75, bias=v,
                                                     activation=activation,
                                                     bias_dim=bias_dim), a, b, bias)
    want, want_grads = _grads(lambda x, y, v: ref(x, y, 0.75, v, activation, bias_dim),
                              a.double(), b.double(), None if bias is None else bias.double())
    torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-5)
    for got, exp in zip(grads, want_grads):
        if exp is None:
            assert got is None
        else:
            assert got is not None and got.shape == exp.shape and got.dtype == torch.float32
            torch.testing.assert_close(got.double(), exp, rtol=1e-4, atol=1e-4)


def test_backward_gemms_go_through_deepgen(cpu_gpu, compiler):
    a = torch.randn(2, 4, 8, requires_grad=True)
    w = torch.randn(6, 8, requires_grad=True)  # nn.Linear's (N, K)
    deepgen.gemm(a, w.t()).sum().backward()
    specs = [(s.M, s.N, s.K, s.layout) for s, _, _ in compiler.calls]
    # forward (8 x 6 x 8, NT), dA = dC @ W (8 x 8 x 6, NN), dW^T = A^T @ dC (8 x 6 x 8, TN)
    assert specs == [(8, 6, 8, "NT"), (8, 8, 6, "NN"), (8, 6, 8, "TN")]


def test_out_with_grad_is_an_error(cpu_gpu, compiler):
    a = torch.randn(4, 8, requires_grad=True)
    with pytest.raises(RuntimeError, match="out: .*does not support automatic differentiation"):
        deepgen.gemm(a, torch.randn(8, 2), out=torch.empty(4, 2))
    with torch.no_grad():  # no grad: out= is fine
        deepgen.gemm(a, torch.randn(8, 2), out=torch.empty(4, 2))


def test_autograd_under_torch_compile():
    def f(x, w, bias):
        return deepgen.gemm(x, w.t(), bias=bias, activation="gelu_tanh").float().sum()

    x = meta(2, 4, 16, dtype=torch.bfloat16).requires_grad_()
    w = meta(8, 16, dtype=torch.bfloat16).requires_grad_()
    bias = meta(8, dtype=torch.bfloat16).requires_grad_()
    loss = torch.compile(f, fullgraph=True, backend="aot_eager")(x, w, bias)
    loss.backward()
    assert x.grad.shape == x.shape and w.grad.shape == w.shape and bias.grad.shape == (8,)


# -- explain -------------------------------------------------------------------------------------

def _tuned(entries):
    root = cache.cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    (root / "tuned.json").write_text(json.dumps({"format": "deepgen-tuned/1",
                                                 "entries": entries}))


def test_explain_default_heuristic_and_tuned():
    pytest.importorskip("mlir")
    a, w = torch.randn(128, 256).bfloat16(), torch.randn(512, 256).bfloat16()
    ex = deepgen.explain(a, w.t(), target="sm_90a")
    assert (ex.route, ex.source) == ("deepgen", "heuristic")
    assert ex.spec["layout"] == "NT" and ex.strategy and ex.config["strategy"] == ex.strategy
    assert ex.cached is False and "default heuristic" in str(ex)
    spec = GemmSpec(M=128, N=512, K=256, dtype="bf16", layout="NT")
    _tuned([{"spec": spec.to_dict(), "target": "sm_90a", "ms": 0.01, "baseline_ms": 0.02,
             "device": "GPU", "config": {"strategy": "mma_sync", "BM": 64}}])
    optimize.reset()
    ex = deepgen.explain(a.reshape(2, 64, 256), w.t(), target="sm_90a")  # folded: same spec
    assert (ex.source, ex.strategy, ex.config["BM"]) == ("tuned", "mma_sync", 64)
    text = str(ex)
    assert "tuned database" in text and "DeepGen 0.01 ms vs torch 0.02 ms (2.00x)" in text


def test_explain_fallback_without_compiler(cpu_gpu, no_compiler):
    ex = deepgen.explain(torch.randn(4, 8), torch.randn(8, 2))
    assert (ex.route, ex.source) == ("torch", "fallback")
    assert "no compiler" in ex.reason and ex.config is None


def test_explain_explicit_config_and_bad_arguments(cpu_gpu):
    pytest.importorskip("mlir")
    ex = deepgen.explain(torch.randn(64, 64), torch.randn(64, 64),
                         config={"strategy": "simt", "BM": 32})
    assert (ex.source, ex.strategy, ex.config["BM"]) == ("explicit", "simt", 32)
    with pytest.raises(ValueError, match="b: has 7 rows"):
        deepgen.explain(torch.randn(4, 8), torch.randn(7, 2))


# -- optimize: the dispatch rule ------------------------------------------------------------------

def _entry(M, ms, base, N=256, K=128, target="sm_90a", device="GPU", key="baseline_ms"):
    spec = GemmSpec(M=M, N=N, K=K, dtype="bf16", layout="NT")
    e = {"spec": spec.to_dict(), "target": target, "device": device, "ms": ms,
         "config": {"strategy": "wgmma"}}
    if key == "baseline_ms":
        e["baseline_ms"] = base
    elif key == "baseline_tflops":
        e["baseline_tflops"] = spec.flops / (base * 1e-3) / 1e12
    return e


def spec_of(M, N=256, K=128):
    return GemmSpec(M=M, N=N, K=K, dtype="bf16", layout="NT")


def test_rule_routes_only_where_the_database_says_deepgen_wins():
    _tuned([_entry(2048, 0.05, 0.06), _entry(4096, 0.09, 0.10),   # 2049+: wins
            _entry(1024, 0.05, 0.04),                              # 257-2048: 1024 loses
            _entry(128, 0.02, 0.03, key="baseline_tflops"),        # older entry: derived
            _entry(32, 0.02, 0.03, key=None),                      # no torch time: never
            _entry(8, 0.005, 0.0051)])                             # host-bound: never
    win = lambda M, **kw: optimize.wins(spec_of(M, **kw), "sm_90a", "GPU")
    assert win(4096) and win(3000)
    assert not win(2048) and not win(300)  # 2048 wins, 1024 loses: the range does not
    assert win(128) and win(100)
    assert not win(32) and not win(8)
    assert not win(4096, N=512) and not win(5000, K=256)  # not in the database
    assert not optimize.wins(spec_of(4096), "sm_80", "GPU")  # another target
    assert not optimize.wins(spec_of(4096), "sm_90a", "Other GPU")  # another device
    # without host costs, the 8-row GEMM's 2% win counts; a 1.1x margin turns 128 down
    assert optimize.wins(spec_of(8), "sm_90a", "GPU", host_us={})
    assert not optimize.wins(spec_of(128), "sm_90a", "GPU", min_speedup=1.6)


@pytest.fixture
def fake_gpu_rule(monkeypatch):
    """CPU tensors count as on the GPU for the rule, on an sm_90a device named GPU."""
    monkeypatch.setattr(optimize, "_on_gpu", lambda t: True)
    monkeypatch.setattr(optimize, "_device", lambda index: ("sm_90a", "GPU"))
    _tuned([_entry(2048, 0.05, 0.06), _entry(4096, 0.09, 0.10)])


def test_optimize_routes_winning_linear_layers(cpu_gpu, compiler, fake_gpu_rule):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(128, 256), torch.nn.SiLU(),
                                torch.nn.Linear(256, 128, bias=False)).bfloat16()
    x = torch.randn(2, 2048, 128).bfloat16()  # M = 4096 for both layers
    want = model(x)
    assert deepgen.optimize(model) is model
    # the second layer (N 128, K 256) wins nowhere in the database: a plain nn.Linear
    assert [type(m).__name__ for m in model] == ["OptimizedLinear", "FusedActivation", "Linear"]
    got = model(x)
    specs = [(s.M, s.N, s.K, s.layout, s.epilogue.steps) for s, _, _ in compiler.calls]
    assert specs == [(4096, 256, 128, "NT", ("alpha_beta", "bias_col", "silu"))]  # 2nd: torch
    torch.testing.assert_close(got.float(), want.float(), rtol=2e-2, atol=2e-2)
    model(x)
    assert len(compiler.calls) == 1 and len(cpu_gpu[0].calls) == 2  # decided once, ran twice
    small = torch.randn(3, 128).bfloat16()  # M = 3: not in the database, torch
    want_small = F.silu(F.linear(small, model[0].weight, model[0].bias))
    torch.testing.assert_close(model[0](small), want_small, rtol=0, atol=0)
    assert len(compiler.calls) == 1
    optimize.restore(model)
    assert type(model[0]) is torch.nn.Linear


def test_optimize_is_state_dict_compatible_and_off_when_disabled(monkeypatch):
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    keys = list(model.state_dict())
    deepgen.optimize(model)
    assert list(model.state_dict()) == keys and type(model[0]) is optimize.OptimizedLinear
    x = torch.randn(2, 4)  # a CPU tensor: the rule says torch
    torch.testing.assert_close(model(x), F.linear(x, model[0].weight, model[0].bias))
    optimize.restore(model)
    monkeypatch.setenv("DEEPGEN_DISABLE", "1")
    fallback.disabled(refresh=True)
    assert type(deepgen.optimize(model)[0]) is torch.nn.Linear


def test_optimized_linear_under_torch_compile(monkeypatch):
    monkeypatch.setattr(optimize, "decide", lambda a, b: a.shape[-1] == 32)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(),
                                torch.nn.Linear(64, 16)).to("meta", torch.bfloat16)
    deepgen.optimize(model)
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    compiled = torch.compile(model, fullgraph=True, backend=backend)
    with torch.no_grad():  # inference: the op itself in the graph
        out = compiled(meta(4, 8, 32, dtype=torch.bfloat16))
    assert out.shape == (4, 8, 16)
    targets = [str(n.target) for n in graphs[-1].graph.nodes if n.op == "call_function"]
    assert targets.count("deepgen.gemm") == 1 and any("linear" in t for t in targets)
    out = compiled(meta(4, 8, 32, dtype=torch.bfloat16))  # parameters require grad
    targets = [str(n.target) for n in graphs[-1].graph.nodes if n.op == "call_function"]
    assert "autograd_function_apply" in targets and "deepgen.gemm" not in targets
    assert out.shape == (4, 8, 16) and out.requires_grad


def test_optimizing_context_routes_functions(cpu_gpu, compiler, fake_gpu_rule):
    x, w = torch.randn(2048, 128).bfloat16(), torch.randn(256, 128).bfloat16()
    with optimize.optimizing():
        c1 = torch.matmul(x, w.t())          # 2048 x 256 x 128 NT: in the database, wins
        c2 = x @ w.t()
        c3 = F.linear(x, w)
        c4 = torch.mm(x[:100], w.t())       # M = 100: not in the database
        c5 = torch.matmul(x, w.t().contiguous())  # layout NN: not in the database
    assert [(s.M, s.layout) for s, _, _ in compiler.calls] == [(2048, "NT")]
    assert len(cpu_gpu[0].calls) == 3
    want = (x.double() @ w.double().t())
    for c in (c1, c2, c3):
        torch.testing.assert_close(c.double(), want, rtol=2e-2, atol=2e-1)
    torch.testing.assert_close(c4, x[:100] @ w.t())
    torch.testing.assert_close(c5, x @ w.t())


def test_explain_borrows_a_tuned_neighbour():
    pytest.importorskip("mlir")
    near = GemmSpec(M=256, N=512, K=256, dtype="bf16", layout="NT")
    _tuned([{"spec": near.to_dict(), "target": "sm_90a",
             "config": {"strategy": "mma_sync", "BM": 64, "BN": 128}}])
    a, w = torch.randn(200, 256).bfloat16(), torch.randn(512, 256).bfloat16()
    ex = deepgen.explain(a, w.t(), target="sm_90a")
    assert (ex.source, ex.strategy) == ("tuned-neighbour", "mma_sync")
    assert (ex.config["BM"], ex.config["BN"]) == (64, 128) and ex.tuned is None


def test_optimize_fuses_a_following_activation(cpu_gpu, compiler, fake_gpu_rule):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(128, 256), torch.nn.GELU(approximate="tanh"),
                                torch.nn.Linear(256, 128)).bfloat16()
    hooked = torch.nn.Sequential(torch.nn.Linear(128, 256), torch.nn.ReLU()).bfloat16()
    hooked[1].register_forward_hook(lambda m, i, o: None)  # a hook: not fused
    x = torch.randn(4, 1024, 128).bfloat16()  # M = 4096
    want, want_hooked = model(x), hooked(x)
    deepgen.optimize(model)
    deepgen.optimize(hooked)
    assert type(model[1]) is optimize.FusedActivation and model[0]._deepgen_act == "gelu_tanh"
    assert type(hooked[1]) is torch.nn.ReLU and hooked[0]._deepgen_act is None
    got = model(x)
    steps = [s.epilogue.steps for s, _, _ in compiler.calls]
    assert steps == [("alpha_beta", "bias_col", "gelu_tanh")]
    torch.testing.assert_close(got.float(), want.float(), rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(hooked(x).float(), want_hooked.float(), rtol=2e-2, atol=2e-2)
    small = torch.randn(3, 128).bfloat16()  # not routed: torch's F.linear, then the activation
    torch.testing.assert_close(model[0](small), torch.nn.functional.gelu(
        torch.nn.functional.linear(small, model[0].weight, model[0].bias), approximate="tanh"))
    optimize.restore(model)
    assert [type(m) for m in model] == [torch.nn.Linear, torch.nn.GELU, torch.nn.Linear]
    torch.testing.assert_close(model(x), want)


def test_gpu_model_bundle_holds_every_kernel_the_gpu_cases_call():
    """tests/gpu/model_cases.py compiles what the GPU model tests call, found by running them
    here: the optimized MLP's layers too (its _may_win reads a database the CPU run lacks; the
    2026-12-02 GPU run failed on the missing kernels)."""
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "gpu"))
    try:
        import model_cases
    finally:
        sys.path.pop(0)
    rule = (optimize.wins, optimize.range_wins, optimize._may_win)
    got = {(s.M, s.N, s.K, s.layout, any(st.startswith("bias") for st in s.epilogue.steps))
           for s in model_cases.collect_specs()}
    for fields in model_cases.mlp_specs():
        bias = fields["N"] == model_cases.MLP["head"]
        assert (fields["M"], fields["N"], fields["K"], "NT", bias) in got
    assert (optimize.wins, optimize.range_wins, optimize._may_win) == rule  # put back
