"""benchmarks/quant_bench.py (what fp8_bench.py, int8_bench.py and fp8_block_bench.py share) on
the CPU with fakes: the command line, the interleaved rounds with a fake timer, the one check
with C poisoned, the table and the atomic JSON; and each benchmark's --build for one small
shape (the --run side needs a GPU: tests/gpu)."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load(name: str):
    key = f"deepgen_bench_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, REPO / "benchmarks" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[key] = mod
        spec.loader.exec_module(mod)
    return sys.modules[key]


@pytest.fixture(scope="module")
def qb():
    return _load("quant_bench")


def test_main_passes_the_arguments_and_needs_a_mode(qb, tmp_path, capsys):
    calls = []
    shapes = {"a": (1, 2, 3), "b": (4, 5, 6)}

    def main(*argv):
        return qb.main("doc line\nmore", shapes, lambda d, s: calls.append(("build", d, s)),
                       lambda d, o, r, s: calls.append(("run", d, o, r, s)), "x_bench.json",
                       list(argv))

    assert main("--build", str(tmp_path)) == 0
    assert calls == [("build", tmp_path, ["a", "b"])]
    calls.clear()
    main("--build", "B", "--run", "R", "--rounds", "7", "--shapes", "b", "--out", "o.json")
    assert calls == [("build", Path("B"), ["b"]), ("run", Path("R"), Path("o.json"), 7, ["b"])]
    calls.clear()
    main("--run", "R")
    assert calls == [("run", Path("R"), Path("x_bench.json"), 5, ["a", "b"])]
    with pytest.raises(SystemExit):
        main()
    assert "give --build DIR and/or --run DIR" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main("--build", "B", "--shapes", "c")
    assert calls == [("run", Path("R"), Path("x_bench.json"), 5, ["a", "b"])]


def test_interleaved_rounds_time_every_impl_each_round(qb):
    order = []
    ms = {"x": iter([1.0, 3.0, 2.0]), "y": iter([4.0, 4.0, 8.0])}
    impls = {"x": "fx", "y": "fy"}
    sets = [("a", "b")]

    def fake_time_ms(fn, given_sets):
        assert given_sets is sets
        name = fn[1]
        order.append(name)
        return next(ms[name])

    rates, med = qb.interleaved(impls, sets, 3, 2e12, fake_time_ms)
    # interleaved, not all of x then all of y; each round starts one impl further on
    assert order == ["x", "y", "y", "x", "x", "y"]
    assert rates["x"] == pytest.approx([2000.0, 2000 / 3, 1000.0])
    assert med == pytest.approx({"x": 1000.0, "y": 500.0})
    assert qb.best_deepgen({"torch": 9.0, "deepgen:a": 1.0, "deepgen:b": 2.0}) == "deepgen:b"


class _FakeC:
    def __init__(self):
        self.value = None

    def fill_(self, v):
        self.value = v


def test_check_once_poisons_c_before_each_impl(qb):
    c = _FakeC()
    seen = []

    def writes_c(x):
        assert c.value != c.value  # NaN: poisoned before this run
        c.value = x

    impls = {"returns": lambda x: x + 1, "writes": writes_c}
    checks = qb.check_once(impls, lambda fn: fn(10), c, 11,
                           lambda r, ref: abs((r.value if r is c else r) - ref),
                           lambda: seen.append("sync"))
    assert checks == {"returns": 0, "writes": 1}
    assert seen == ["sync", "sync"]
    scaled = qb.check_once({"i": lambda x: x}, lambda fn: fn(3), c, 6, lambda r, ref: r - ref,
                           lambda: None, result=lambda r: 2 * r)
    assert scaled == {"i": 0}


def test_set_count_exceeds_twice_the_l2(qb):
    assert qb.set_count(4096, 4096, 4096, 50 * 2**20) == 4
    assert qb.set_count(16, 16, 16, 50 * 2**20) == 8
    assert qb.set_count(16384, 16384, 16384, 50 * 2**20) == 1


def test_table_and_json(qb, tmp_path, capsys):
    row = {"shape": "4096^3", "median_tflops": {"torch": 700.0, "deepgen:default": 770.25},
           "ratio_vs_torch": {"torch": 1.0, "deepgen:default": 1.1}, "x": {"torch": 2.0,
                                                                         "deepgen:default": 3.0},
           "rel_error": {"torch": 1e-3, "deepgen:default": 2e-3}}
    text = qb.format_table([row], "median_tflops", "TFLOP/s", 20,
                           [("ratio_vs_torch", "x torch", 8), ("x", "x other", 9)])
    assert text.splitlines() == [
        (f"{'shape':18s} {'impl':20s} {'TFLOP/s':>8s} {'x torch':>8s} {'x other':>9s} "
         f"{'rel err':>9s}"),
        f"{'4096^3':18s} {'torch':20s} {700.0:8.1f} {1.0:8.3f} {2.0:9.3f} {1e-3:9.2e}",
        (f"{'4096^3':18s} {'deepgen:default':20s} {770.25:8.1f} {1.1:8.3f} {3.0:9.3f} "
         f"{2e-3:9.2e}")]
    out = tmp_path / "sub" / "r.json"
    doc = {"benchmark": "x", "results": [row]}
    assert qb.finish(out, doc, text) is doc
    assert json.loads(out.read_text()) == doc
    assert [p.name for p in out.parent.iterdir()] == ["r.json"]  # written through a temp file
    assert capsys.readouterr().out == text + "\n"


@pytest.mark.parametrize("bench,shape,variants", [
    ("fp8_bench", "16x4096x4096", ["default"]),
    ("int8_bench", "32x4096x4096", ["default", "mma_sync"]),  # and mma.sync m16n8k32
    ("fp8_block_bench", "64x2112x7168", ["default", "split1", "ahead_off", "bn128",
                                            "no_smem", "ffma_yield",
                                            "prefetch"]),  # ffma_plain: default
])
def test_build_one_small_shape(bench, shape, variants, tmp_path, capsys):
    pytest.importorskip("mlir")
    mod = _load(bench)
    assert mod.main(["--build", str(tmp_path), "--shapes", shape]) == 0
    index = json.loads((tmp_path / "index.json").read_text())
    assert [(e["shape"], e["variant"]) for e in index] == [(shape, v) for v in variants]
    for e in index:
        assert e["config"]["strategy"] == ("mma_sync" if e["variant"] == "mma_sync" else "wgmma")
        assert (tmp_path / shape / e["variant"] / "kernel.json").exists()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(variants) and all(line.startswith(shape) for line in lines)
