"""Runtime shapes on the CPU (issue 17): Dim and the spec's range M (keys, validation), the
wgmma range kernel's signature, grid rules and PTX, the strategies that refuse a range, the
RangeKernel binding an M, and deepgen.gemm's range table (compiles counted through a fake
compiler; kernels "run" on the CPU through their pointers, tests/runtime_fakes.py)."""
from __future__ import annotations

import dataclasses
import re

import pytest
import torch
from deepgen.runtime import cache
from deepgen.runtime.range_kernel import RangeKernel, make_kernel
from deepgen.runtime.reference import BLOCK, reference_artifact
from runtime_fakes import (
    FakeCompiler,
)

import deepgen
from deepgen import api, range_table
from deepgen.dims import DEFAULT_MAX_M, M_RANGES, Dim, range_of, ranges_up_to
from deepgen.errors import SpecError
from deepgen.spec import GemmSpec

BF16_NT = {"N": 256, "K": 128, "dtype": "bf16", "layout": "NT"}


# -- Dim and the spec ------------------------------------------------------------------------

def test_dim_round_trips_and_keys_differ():
    s = GemmSpec(M=Dim(max=2048, min=257), **BF16_NT)
    d = s.to_dict()
    assert d["M"] == {"max": 2048, "multiple_of": 1, "min": 257}
    assert GemmSpec.from_dict(d) == s and s.dynamic_m and s.max_m == 2048
    assert s.planning().M == 2048 and s.at(300).M == 300 and not s.at(300).dynamic_m
    other = GemmSpec(M=Dim(max=2048, min=1), **BF16_NT)
    assert cache.canonical_json(other.to_dict()) != cache.canonical_json(d)
    assert GemmSpec(M=2048, **BF16_NT).to_dict()["M"] == 2048  # int M keys unchanged
    with pytest.raises(ValueError, match=r"M: 256 is outside this kernel's range 257\.\.2048"):
        s.at(256)


@pytest.mark.parametrize("kwargs, message", [
    ({"M": Dim(max=10**6), "N": 4096, "K": 4096}, r"A size: .* exceeds the 32-bit index limit"),
    ({"M": Dim(max=64), "N": 64, "K": 64, "batch": 2}, r"batch: a range M is built for batch 1 only"),
    ({"M": Dim(max=64, multiple_of=3), "N": 64, "K": 64, "dtype": "bf16", "layout": "TN"},
     r"M.multiple_of: layout TN .* multiple of 8 for bf16, got 3"),
    ({"M": {"max": 4, "min": 8}, "N": 4, "K": 4}, r"M.min: 8 exceeds M.max 4"),
    ({"M": {"min": 8}, "N": 4, "K": 4}, r"M.max: a range needs a maximum"),
    ({"M": {"max": 8, "step": 2}, "N": 4, "K": 4}, r"M.step: not a Dim field"),
    ({"M": Dim(max=0) if False else {"max": 0}, "N": 4, "K": 4}, r"M.max: must be >= 1, got 0"),
])
def test_bad_ranges_name_the_field(kwargs, message):
    with pytest.raises(SpecError, match=message):
        GemmSpec(**kwargs)


def test_range_table_matches_routing():
    routing = pytest.importorskip("deepgen.routing")
    assert [(lo, hi) for lo, hi in M_RANGES[:-1]] == [tuple(r) for r in routing.RANGES[:-1]]
    assert M_RANGES[-1][0] == routing.RANGES[-1][0]
    assert [(d.min, d.max) for d in ranges_up_to(4096)] == [
        (1, 16), (17, 64), (65, 256), (257, 2048), (2049, 4096)]
    assert range_of(17) == Dim(max=64, min=17) and range_of(5000).max == DEFAULT_MAX_M
    with pytest.raises(ValueError, match="M: 0 is outside"):
        range_of(0)


# -- the compiler ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def range_artifact():
    compiler = pytest.importorskip("deepgen.compiler")
    spec = GemmSpec(M=Dim(max=2048, min=257), N=4096, K=4096, dtype="bf16", layout="NT")
    return compiler.compile_artifact(spec, keep_ir=False)


def test_wgmma_range_kernel_takes_m_and_a_grid_rule(range_artifact):
    art = range_artifact
    (launch,) = art.launches
    assert [p.name for p in launch.params] == ["A", "B", "C", "alpha", "beta", "M"]
    m = launch.params[-1]
    assert (m.kind, m.value) == ("i32", "M")
    assert art.config["mode"] == "pingpong" and art.config["persistent"]
    assert launch.grid == ("min(cdiv(M, 128) * 32, 132)", 1, 1)
    sizes = {"M": 300, "N": 4096, "K": 4096, "batch": 1}
    assert launch.grid_for(sizes) == (96, 1, 1)
    assert launch.grid_for({**sizes, "M": 2048}) == (132, 1, 1)
    res = art.resources["deepgen_wgmma_gemm"]
    assert res["spill_stores"] == 0 and res["stack_bytes"] == 0
    # the PTX takes M as a .u32/.b32 parameter after the pointers and reads the grid size
    entry = re.search(r"\.entry deepgen_wgmma_gemm\((.*?)\)", art.assembly, re.DOTALL).group(1)
    assert re.search(r"\.param \.[ub]32 \w+_param_\d+\s*$", entry.strip())
    assert "%nctaid.x" in art.assembly


def test_range_kernels_of_the_exact_config_share_the_tile():
    compiler = pytest.importorskip("deepgen.compiler")
    spec = GemmSpec(M=Dim(max=64, min=17), N=4096, K=4096, dtype="bf16", layout="NT")
    art = compiler.compile_artifact(spec, keep_ir=False)
    # the exact default at M = 64 would be swap_ab: the range default is a cooperative tile
    assert not art.config["swap_ab"] and art.config["split_k"] == 1 and art.config["BM"] == 64
    assert art.launches[0].grid == ("cdiv(M, 64) * 32", 1, 1)


@pytest.mark.parametrize("spec, config, message", [
    (GemmSpec(M=Dim(max=256), N=256, K=256, dtype="bf16", layout="NT"),
     {"strategy": "mma_sync"}, r"M: a range M is not built for the mma_sync strategy yet"),
    (GemmSpec(M=Dim(max=256), N=256, K=256, dtype="bf16", layout="NT"),
     {"strategy": "simt"}, r"M: a range M is not built for the simt strategy yet"),
    (GemmSpec(M=Dim(max=256), N=256, K=256), None,
     r"M: a range M is built for the wgmma strategy only .* f32 NN"),
    (GemmSpec(M=Dim(max=256), N=4096, K=4096, dtype="bf16", layout="NT"),
     {"strategy": "wgmma", "swap_ab": True}, r"swap_ab: with a range M"),
    (GemmSpec(M=Dim(max=256), N=4096, K=4096, dtype="bf16", layout="NT"),
     {"strategy": "wgmma", "split_k": 2}, r"split_k: 2 with a range M"),
])
def test_strategies_without_ranges_say_so(spec, config, message, monkeypatch):
    compiler = pytest.importorskip("deepgen.compiler")
    from deepgen.compiler import driver

    monkeypatch.setattr(driver, "compile_context", lambda: pytest.fail("MLIR ran"))
    with pytest.raises(SpecError, match=message):
        compiler.compile_artifact(spec, config, keep_ir=False)


# -- the runtime and deepgen.gemm's table ------------------------------------------------------

def fake_range_artifact(spec: GemmSpec, target: str = "sm_90a"):
    """The reference kernel relabelled as a range kernel: grid rules over M, spec with the Dim
    (the CPU plans compute with the bound Kernel's spec, so a wrong M shows in the result)."""
    art = reference_artifact(spec.planning(), target=target)
    (launch,) = art.launches
    grid = (launch.grid[0], f"cdiv(M, {BLOCK[1]})", 1)
    return dataclasses.replace(art, spec=spec.to_dict(),
                               launches=[dataclasses.replace(launch, grid=grid)])


class RangeCompiler(FakeCompiler):
    def compile_artifact(self, spec, config=None, target="sm_90a"):
        self.calls.append((spec, config, target))
        if spec.dynamic_m:
            return fake_range_artifact(spec, target)
        return reference_artifact(spec, target=target)


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPGEN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DEEPGEN_DYNAMIC_M", raising=False)
    monkeypatch.delenv("DEEPGEN_MAX_M", raising=False)
    tables = (api._by_call, api._by_spec, range_table._by_range)
    for t in tables:
        t.clear()
    cache.clear_memory()
    range_table.set_dynamic_m(None)
    yield
    for t in tables:
        t.clear()
    cache.clear_memory()
    range_table.set_dynamic_m(None)


@pytest.fixture
def compiler(monkeypatch):
    fake = RangeCompiler()
    monkeypatch.setitem(__import__("sys").modules, "deepgen.compiler", fake)
    monkeypatch.setattr(deepgen, "compiler", fake, raising=False)
    return fake


def test_range_kernel_binds_each_m(fresh, cpu_gpu):
    spec = GemmSpec(M=Dim(max=64, min=17), N=24, K=16, dtype="f32")
    k = make_kernel(fake_range_artifact(spec))
    assert isinstance(k, RangeKernel) and k.dim == Dim(max=64, min=17)
    for M in (17, 40, 64):
        a, b = torch.randn(M, 16), torch.randn(16, 24)
        c = k(a, b)
        torch.testing.assert_close(c.double(), a.double() @ b.double(), rtol=1e-5, atol=1e-5)
        assert k.for_m(M).launches[0].grid_for({"M": M, "N": 24, "K": 16, "batch": 1})[1] == -(-M // 16)
    assert k.bound == (17, 40, 64) and k.for_m(40) is k.for_m(40)
    with pytest.raises(ValueError, match=r"M: 65 is outside this kernel's range 17\.\.64"):
        k(torch.randn(65, 16), torch.randn(16, 24))
    with pytest.raises(ValueError, match="load it as a RangeKernel"):
        deepgen.runtime.Kernel(fake_range_artifact(spec))


def test_range_kernel_plans_each_m_once(fresh, cpu_gpu, monkeypatch):
    """The per-M launch plan (the bound view: grid, M and TMA shapes from the size rules; its
    launcher plan) is made once per M: repeated calls at a bound M take the inline fast check
    straight to the view's launch, evaluating no rule and binding nothing."""
    from deepgen.runtime import artifact as art_mod
    from deepgen.runtime import kernel as km

    spec = GemmSpec(M=Dim(max=64, min=17), N=24, K=16, dtype="f32")
    k = RangeKernel(fake_range_artifact(spec))
    packs, binds, rules = [], [], [0]
    real_pack, real_for_m, real_eval = (km.Kernel._pack_signature, RangeKernel.for_m,
                                        art_mod.eval_rule)
    monkeypatch.setattr(km.Kernel, "_pack_signature",
                        lambda self: (packs.append(self.spec.M), real_pack(self))[1])
    monkeypatch.setattr(RangeKernel, "for_m",
                        lambda self, M: (binds.append(M), real_for_m(self, M))[1])

    def eval_rule(*args, **kw):
        rules[0] += 1
        return real_eval(*args, **kw)

    monkeypatch.setattr(km, "eval_rule", eval_rule)
    monkeypatch.setattr(art_mod, "eval_rule", eval_rule)
    # CPU tensors report device -1: let the fast check see device 0, as a CUDA tensor would
    monkeypatch.setattr(torch.Tensor, "get_device", lambda self: 0)
    b = torch.randn(16, 24)
    inputs = {M: (torch.randn(M, 16), torch.empty(M, 24)) for M in (17, 40, 64)}
    for a, c in inputs.values():  # first call per M: binds, plans
        k(a, b, c)
    assert packs == [17, 40, 64] and binds == [17, 40, 64] and rules[0] > 0
    plans = {M: k.for_m(M)._plans[0] for M in inputs}
    binds.clear()
    rules[0] = 0
    for _ in range(3):
        for a, c in inputs.values():
            c.fill_(float("nan"))
            assert k(a, b, c) is c
            torch.testing.assert_close(c.double(), a.double() @ b.double(), rtol=1e-5,
                                       atol=1e-5)
    assert packs == [17, 40, 64] and binds == [] and rules[0] == 0
    assert {M: k.for_m(M)._plans[0] for M in inputs} == plans
    assert all(len(plans[M].calls) == 4 for M in inputs)  # 1 + 3 launches, each its own plan
    # the general path still names mistakes: a fresh C with beta, an operand it does not take
    a = inputs[40][0]
    with pytest.raises(ValueError, match="beta: must be 0 when c is None"):
        k(a, b, beta=1.0)
    with pytest.raises(TypeError, match="bias: not an operand of this kernel"):
        k(a, b, bias=torch.randn(24))
    with pytest.raises(ValueError, match=r"b: expected shape"):
        k(a, torch.randn(16, 8))


def test_every_m_compiles_one_kernel_per_range(fresh, cpu_gpu, compiler):
    """M = 1..300 through deepgen.gemm(dynamic_m=True): one compile per range touched (1-16,
    17-64, 65-256, 257-2048), each result checked against float64."""
    b = torch.randn(16, 8)
    for M in range(1, 301):
        a = torch.randn(M, 16)
        c = deepgen.gemm(a, b, dynamic_m=True)
        torch.testing.assert_close(c.double(), a.double() @ b.double(), rtol=1e-5, atol=1e-5)
    ranges = [(s.M.min, s.M.max) for s, _, _ in compiler.calls]
    assert ranges == [(1, 16), (17, 64), (65, 256), (257, 2048)]
    # not opted in, an M not seen before: the exact-shape kernel (a call signature seen with
    # dynamic_m keeps its bound range kernel on deepgen.gemm's fast path)
    deepgen.gemm(torch.randn(333, 16), b)
    assert compiler.calls[-1][0].M == 333 and len(compiler.calls) == 5


def test_process_switch_and_env(fresh, cpu_gpu, compiler, monkeypatch):
    b = torch.randn(16, 8)
    monkeypatch.setenv("DEEPGEN_DYNAMIC_M", "1")
    monkeypatch.setenv("DEEPGEN_MAX_M", "100")
    range_table.set_dynamic_m(None)
    for M in (3, 5, 90, 101):
        deepgen.gemm(torch.randn(M, 16), b)
    assert [c[0].M for c in compiler.calls] == [Dim(max=16), Dim(max=100, min=65), 101]
    deepgen.set_dynamic_m(False)
    deepgen.gemm(torch.randn(4, 16), b)
    assert compiler.calls[-1][0].M == 4


def test_refused_range_warns_once_and_runs_the_exact_kernel(fresh, cpu_gpu, compiler,
                                                          monkeypatch):
    real = compiler.compile_artifact

    def refuse(spec, config=None, target="sm_90a"):
        if spec.dynamic_m:
            compiler.calls.append((spec, config, target))
            raise SpecError("M: a range M is built for the wgmma strategy only")
        return real(spec, config, target)

    monkeypatch.setattr(compiler, "compile_artifact", refuse)
    b = torch.randn(16, 8)
    with pytest.warns(UserWarning, match="range kernels: M: a range M is built for the wgmma"):
        c = deepgen.gemm(torch.randn(3, 16), b, dynamic_m=True)
    assert c.shape == (3, 8)
    deepgen.gemm(torch.randn(4, 16), b, dynamic_m=True)  # refusal remembered: no retry
    assert [s.dynamic_m for s, _, _ in compiler.calls] == [True, False, False]


def test_preloaded_range_bundle_runs_without_a_compiler(fresh, cpu_gpu, monkeypatch, tmp_path):
    import sys

    spec = GemmSpec(M=Dim(max=2048, min=257), N=8, K=16, dtype="f32")
    fake_range_artifact(spec).save(tmp_path / "b")
    cache.preload(tmp_path / "b")
    monkeypatch.setitem(sys.modules, "deepgen.compiler", None)
    monkeypatch.delattr(deepgen, "compiler", raising=False)
    for M in (300, 1000):
        a, b = torch.randn(M, 16), torch.randn(16, 8)
        torch.testing.assert_close(deepgen.gemm(a, b, dynamic_m=True).double(),
                                   a.double() @ b.double(), rtol=1e-5, atol=1e-5)
    assert isinstance(deepgen.runtime.load(tmp_path / "b"), RangeKernel)


# -- torch.compile with dynamic shapes -------------------------------------------------------

def test_torch_compile_dynamic_traces_once_and_compiles_one_kernel_per_range(
        fresh, cpu_gpu, compiler):
    """torch.compile(f, dynamic=True) over deepgen.gemm (the op torch.ops.deepgen.gemm under
    compile) with range kernels on (deepgen.set_dynamic_m): one graph for every M, M symbolic
    in it (the op's fake gives the (M, N) output of a symbolic M); running it compiles one
    range kernel per range touched, every result against float64."""
    torch._dynamo.reset()
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    deepgen.set_dynamic_m(True)
    # deepgen.fallback reads DEEPGEN_DISABLE lazily: read inside the first trace, its state
    # changes under dynamo's guard and costs one retrace per process (not per M); read it first
    from deepgen import fallback

    fallback.disabled()
    f = torch.compile(lambda a, b: deepgen.gemm(a, b) * 2.0, dynamic=True, backend=backend)
    b = torch.randn(16, 8)
    try:
        for M in (3, 5, 17, 40, 64, 100, 300, 1000):
            a = torch.randn(M, 16)
            c = f(a, b)
            assert c.shape == (M, 8)
            torch.testing.assert_close(c.double(), 2 * a.double() @ b.double(), rtol=1e-5,
                                       atol=1e-5)
    finally:
        torch._dynamo.reset()
    assert len(graphs) == 1  # traced once: no recompile for a new M
    (gm,) = graphs
    ops = [n for n in gm.graph.nodes if n.op == "call_function"
           and "deepgen" in str(n.target)]
    assert len(ops) == 1
    out_m = ops[0].meta["example_value"].shape[0]
    assert isinstance(out_m, torch.SymInt)  # the fake's output M is the input's symbol
    ranges = [(s.M.min, s.M.max) for s, _, _ in compiler.calls]
    assert ranges == [(1, 16), (17, 64), (65, 256), (257, 2048)]
