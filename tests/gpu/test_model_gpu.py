"""deepgen.gemm's autograd through DeepGen kernels and deepgen.optimize on a Llama-style MLP,
on the GPU, against float64 references.

Kernels: DEEPGEN_TEST_BUNDLE=DIR with DIR/model/ from `python tests/gpu/model_cases.py DIR`
(preloaded: the GPU host needs no MLIR), else compiled here when MLIR is importable. The CPU
counterparts are tests/test_model_api.py (same formulas through the fallback and fake kernels).
Errors are relative Frobenius norms against float64; DeepGen's must be within twice torch's own
(same dtype, same inputs) plus a small floor, so a wrong gradient or a wrong layer fails."""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import model_cases as cases
import pytest
import torch

pytestmark = pytest.mark.gpu


def rel(x, ref) -> float:
    return float((x.detach().double() - ref).norm() / ref.norm().clamp_min(1e-30))


@pytest.fixture(scope="module")
def kernels():
    from deepgen.runtime import cache

    bundle = os.environ.get("DEEPGEN_TEST_BUNDLE")
    d = Path(bundle) / "model" if bundle else None
    if d is not None and d.is_dir():
        for k in sorted(d.iterdir()):
            cache.preload(k)
        return "bundle"
    try:
        import mlir  # noqa: F401
    except ImportError:
        pytest.skip("no kernels: set DEEPGEN_TEST_BUNDLE to a bundle with model/ "
                    "(python tests/gpu/model_cases.py DIR) or install MLIR here")
    return "compiler"


@pytest.fixture(autouse=True)
def fresh(tmp_path, monkeypatch, kernels):
    from deepgen import api, fallback, routing

    monkeypatch.setenv("DEEPGEN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DEEPGEN_DISABLE", raising=False)
    monkeypatch.setitem(fallback._state, "disabled", None)
    api._by_call.clear()
    api._by_spec.clear()
    routing.reset()
    yield
    api._by_call.clear()
    api._by_spec.clear()
    routing.reset()


def _kernels_used() -> list:
    from deepgen import api

    assert all(v is not api._NO_KERNEL for v in api._by_spec.values()), "a torch fallback"
    return list(api._by_spec.values())


def _ref(a, b, bias, act, bias_dim):
    r = torch.matmul(a, b)
    if bias is not None:
        r = r + (bias if bias_dim == "col" else (
            bias.reshape(-1, 1) if b.dim() == 3 else bias.reshape(*r.shape[:-1], 1)))
    if act == "relu":
        r = torch.relu(r)
    elif act == "gelu_tanh":
        r = torch.nn.functional.gelu(r, approximate="tanh")
    return r


@pytest.mark.parametrize("name", list(cases.AUTOGRAD))
def test_autograd_through_deepgen_kernels(name):
    import deepgen

    a, b, bias, act, bias_dim = cases.autograd_inputs(name, "cuda")
    grad_out = None

    def run(fn, tensors, dtype):
        nonlocal grad_out
        leaves = [None if t is None else t.detach().to(dtype).requires_grad_()
                  for t in tensors]
        out = fn(*leaves)
        if grad_out is None:
            grad_out = torch.randn(out.shape, device="cuda",
                                   generator=torch.Generator("cuda").manual_seed(1))
        out.backward(grad_out.to(out.dtype))
        return out, [None if t is None else t.grad for t in leaves]

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback would warn
        out, grads = run(lambda x, y, v: deepgen.gemm(x, y, bias=v, activation=act,
                                                      bias_dim=bias_dim), (a, b, bias),
                         a.dtype)
    torch.cuda.synchronize()
    assert len(_kernels_used()) >= 3  # forward, dA, dB (and Z for gelu)
    ref, ref_grads = run(lambda x, y, v: _ref(x, y, v, act, bias_dim), (a, b, bias),
                         torch.float64)
    tout, tgrads = run(lambda x, y, v: _ref(x, y, v, act, bias_dim), (a, b, bias), a.dtype)
    floor = 1e-5 if a.dtype == torch.float32 else 2e-3
    assert torch.isfinite(out).all()
    assert rel(out, ref) <= 2 * rel(tout, ref) + floor
    for g, r, t, what in zip(grads, ref_grads, tgrads, ("a", "b", "bias")):
        if r is None:
            continue
        assert g is not None and g.shape == r.shape, what
        assert rel(g, r) <= 2 * rel(t, r) + floor, (what, rel(g, r), rel(t, r))


def _database(wins: bool, with_baseline: bool = True) -> None:
    from deepgen.runtime import tuned

    from deepgen.spec import GemmSpec

    entries = []
    for fields in cases.mlp_specs():
        spec = GemmSpec(**fields)
        e = {"spec": spec.to_dict(), "target": "sm_90a", "config": {},
             "device": torch.cuda.get_device_name(0), "ms": 0.05}
        if with_baseline:
            e["baseline_ms"] = 0.06 if wins else 0.04
        entries.append(e)
    path = tuned.tuned_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"format": "deepgen-tuned/1", "entries": entries}))


def test_optimized_llama_mlp_matches_torch():
    import deepgen
    from deepgen import routing

    model, x = cases.mlp("cuda")
    ref_model = cases.LlamaMLP(cases.MLP["hidden"], cases.MLP["intermediate"],
                               cases.MLP["head"]).cuda().double()
    ref_model.load_state_dict(model.state_dict())
    with torch.no_grad():
        want = model(x)
        ref = ref_model(x.double())
        _database(wins=True)
        deepgen.optimize(model)
        assert {type(m) for m in model.modules() if isinstance(m, torch.nn.Linear)} == {
            routing.OptimizedLinear}
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            got = model(x)
            torch.cuda.synchronize()
        used = _kernels_used()
        assert len(used) == 3  # gate and up (one spec), down, head (bias fused)
        assert any("bias_col" in k.spec.epilogue.steps for k in used)
        assert rel(got, ref) <= 2 * rel(want, ref) + 2e-3, (rel(got, ref), rel(want, ref))
        compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
        torch.testing.assert_close(compiled(x), got)  # the same kernels in a compiled graph


def test_optimized_llama_mlp_backward_matches_torch():
    """Gradients through the optimized model (every layer on DeepGen kernels, backward GEMMs
    too) against float64, within twice the error of torch's own bf16 model."""
    import deepgen

    model, x = cases.mlp("cuda")
    torch_model = cases.mlp("cuda")[0]
    ref_model = cases.LlamaMLP(cases.MLP["hidden"], cases.MLP["intermediate"],
                               cases.MLP["head"]).cuda().double()
    ref_model.load_state_dict(model.state_dict())
    _database(wins=True)
    deepgen.optimize(model)
    grad_out = torch.randn(*cases.MLP["tokens"], cases.MLP["head"], device="cuda")

    def grads(m, dtype):
        xi = x.detach().to(dtype).requires_grad_()
        m(xi).backward(grad_out.to(dtype))
        return [xi.grad] + [p.grad for p in m.parameters()]

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        got = grads(model, x.dtype)
        torch.cuda.synchronize()
    used = {(k.spec.M, k.spec.N, k.spec.K, k.spec.layout) for k in _kernels_used()}
    assert len(used) >= 6, used  # the forward's three and backward GEMMs (dX, dW) on DeepGen
    ref, want = grads(ref_model, torch.float64), grads(torch_model, x.dtype)
    names = ["x"] + [n for n, _ in model.named_parameters()]
    for name, g, r, t in zip(names, got, ref, want, strict=True):
        assert g is not None and g.dtype == x.dtype, name
        assert rel(g, r) <= 2 * rel(t, r) + 2e-3, (name, rel(g, r), rel(t, r))


@pytest.mark.parametrize("wins, with_baseline", [(False, True), (True, False)])
def test_optimize_keeps_torch_where_deepgen_is_not_faster(wins, with_baseline):
    import deepgen
    from deepgen import api

    model, x = cases.mlp("cuda")
    with torch.no_grad():
        want = model(x)
        _database(wins, with_baseline)
        deepgen.optimize(model)
        got = model(x)
    assert api._by_spec == {} and torch.equal(got, want)  # torch ran every layer
