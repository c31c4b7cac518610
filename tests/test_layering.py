"""Layering: deepgen.compiler reads deepgen.runtime.artifact (the data contract) and nothing else
of the runtime; nothing under runtime/ imports the compiler, not even lazily; what needs both
lives at the package root (deepgen/build.py). And the runtime really runs without MLIR: in a
process where `mlir` and `deepgen.compiler` cannot be imported, deepgen.gemm, the torch ops
and a preloaded bundle work, and no compiler module is ever loaded."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from deepgen.runtime.reference import reference_artifact
from deepgen.spec import GemmSpec
from runtime_fakes import build_fake_cuda

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
# Package folder -> import name (pyproject's wheel.packages).
PACKAGES = {"compiler": "deepgen.compiler", "runtime": "deepgen.runtime",
            "dialects": "deepgen.dialects", "deepgen": "deepgen"}


def _import_statements(path: Path, module: str) -> list[tuple[int, str, list[str]]]:
    """(line, absolute module, imported names) of every import statement in `path`, at any
    depth (function-level imports count: "not even lazily"); names are [] for `import X`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base_parts = parts[:len(parts) - node.level + 1]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module
            found.append((node.lineno, base, [a.name for a in node.names]))
    return found


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, module name) of every import in `path`; `from X import y` gives X and X.y."""
    return [(line, name) for line, base, names in _import_statements(path, module)
            for name in [base, *(f"{base}.{n}" for n in names)]]


def _sources(folder: str):
    """(path, module name) of every .py file of a source folder."""
    root = REPO / folder
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("").parts
        module = ".".join((PACKAGES[folder], *rel)).removesuffix(".__init__")
        yield path, module


def _under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_runtime_never_imports_the_compiler():
    bad = []
    for path, module in _sources("runtime"):
        text = path.read_text()
        for line, name in _imports(path, module):
            # deepgen.compiler by any spelling; also what reaches it (the package root's
            # compile paths, the tuner, the CLI) and MLIR itself.
            if any(_under(name, p) for p in ("deepgen.compiler", "deepgen.dialects",
                                             "deepgen.api", "deepgen.build", "deepgen.tuner",
                                             "deepgen.commands", "deepgen.cli", "mlir",
                                             "compiler")):
                bad.append(f"{path.relative_to(REPO)}:{line}: imports {name}")
        # importlib.import_module("deepgen.compiler") and the like would hide from the walk
        for n, ln in enumerate(text.splitlines(), 1):
            if "compiler" in ln and ("import_module" in ln or "__import__" in ln):
                bad.append(f"{path.relative_to(REPO)}:{n}: {ln.strip()}")
    assert bad == []


def test_compiler_reads_only_the_artifact_format_of_the_runtime():
    bad = []
    for folder in ("compiler", "dialects"):
        for path, module in _sources(folder):
            for line, name in _imports(path, module):
                if _under(name, "deepgen.runtime") and not _under(name, "deepgen.runtime.artifact"):
                    bad.append(f"{path.relative_to(REPO)}:{line}: imports {name}")
                # the package root's joining modules and the tools built on the compiler
                if any(_under(name, p) for p in ("deepgen.api", "deepgen.build", "deepgen.tuner",
                                                 "deepgen.commands", "deepgen.cli")):
                    bad.append(f"{path.relative_to(REPO)}:{line}: imports {name}")
    assert bad == []


def test_the_artifact_format_stands_alone():
    """What the compiler imports of the runtime imports nothing else of the runtime, and
    importing it runs no other runtime module (runtime/__init__ loads nothing eagerly)."""
    for line, name in _imports(REPO / "runtime" / "artifact.py", "deepgen.runtime.artifact"):
        assert not _under(name, "deepgen.runtime") or name == "deepgen.runtime.artifact", name
    code = ("import sys, deepgen.runtime.artifact; "
            "print(sorted(m for m in sys.modules if m.startswith('deepgen.runtime')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout.strip()
    assert out == "['deepgen.runtime', 'deepgen.runtime.artifact']"


def _module_graph() -> dict[str, set[str]]:
    """deepgen module -> the deepgen modules it imports (any depth), over every source
    folder; a package's own __init__ reached only as a parent is not an edge."""
    files = {}
    for folder in PACKAGES:
        for path, module in _sources(folder):
            if folder == "deepgen" and module.split(".")[1:2] and \
                    module.split(".")[1] in ("compiler", "runtime", "dialects"):
                continue
            files[module] = path
    graph = {}
    for module, path in files.items():
        edges = set()
        for _, base, names in _import_statements(path, module):
            # `from pkg import sub` depends on pkg.sub; on pkg itself only for names that are
            # not submodules. `import a.b` depends on a.b (parents run first, always).
            subs = [f"{base}.{n}" for n in names if f"{base}.{n}" in files]
            edges.update(subs)
            if not names or len(subs) < len(names):
                edges.add(base)
        # Ancestor packages always run before their modules: not an edge.
        graph[module] = {m for m in edges if m in files and m != module
                         and not module.startswith(m + ".")}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_between_layers():
    """No cycle through the runtime, between the package root's modules, or between the
    compiler, the dialect and the rest (function-level imports count). Cycles inside the
    compiler package (passes and their registry, the driver and its backends) are its own
    business and not checked here."""
    graph = _module_graph()
    layer = {}
    for m in graph:
        parts = m.split(".")
        layer[m] = ".".join(parts[:2]) if len(parts) > 1 else m
    crossing = [c for c in _cycles(graph) if len({layer[m] for m in c}) > 1
                or any(_under(m, "deepgen.runtime") for m in c)]
    assert crossing == []


# -- a process without MLIR and without the compiler ----------------------------------------

BLOCKED = """
import importlib.abc, sys

class NoCompiler(importlib.abc.MetaPathFinder):
    '''As on a GPU host that has only the runtime: mlir and deepgen.compiler do not import.'''
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "mlir" or name == "deepgen.compiler" or \\
                name.startswith("deepgen.compiler."):
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, NoCompiler())
"""


@pytest.fixture(scope="module")
def fake_driver_dir(tmp_path_factory) -> Path | None:
    return build_fake_cuda(tmp_path_factory.mktemp("fake_cuda"))


def _run_blocked(body: str, tmp_path: Path, env_extra: dict | None = None) -> dict:
    env = dict(os.environ, DEEPGEN_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
               **(env_extra or {}))
    proc = subprocess.run([sys.executable, "-c", BLOCKED + textwrap.dedent(body)], env=env,
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


COMPILER_LOADED = ("sorted(m for m in sys.modules if m.startswith('deepgen.compiler') "
                   "or m == 'mlir' or m.startswith('mlir.'))")


def test_runtime_runs_a_preloaded_bundle_without_mlir_or_the_compiler(tmp_path):
    spec = GemmSpec(M=5, N=3, K=8)
    reference_artifact(spec).save(tmp_path / "bundle")  # "compiled elsewhere"
    out = _run_blocked(f"""
        import json
        try:
            import deepgen.compiler
            blocked = False
        except ImportError:
            blocked = True
        import deepgen, torch
        from deepgen import api
        from runtime_fakes import pretend_kernels_run_on_cpu

        ops = [str(torch.ops.deepgen.gemm.default._schema),
               str(torch.ops.deepgen.gemm_out.default._schema)]
        # The fake (meta) kernels: what torch.compile traces.
        meta = torch.ops.deepgen.gemm(torch.empty(5, 8, device="meta"),
                                      torch.empty(8, 3, device="meta"))
        art = deepgen.runtime.preload({str(tmp_path / "bundle")!r})

        mp = pytest_monkeypatch = __import__("pytest").MonkeyPatch()
        mp.setattr(api, "_check_devices", lambda tensors: None)  # CPU tensors pass for CUDA
        mp.setattr(api, "target_of", lambda device: "sm_90a")
        plans = pretend_kernels_run_on_cpu(mp)

        a, b = torch.randn(5, 8), torch.randn(8, 3)
        want = a.double() @ b.double()
        c1 = deepgen.gemm(a, b)
        c2 = torch.ops.deepgen.gemm(a, b, 2.0)
        kernel = api.kernel_for(api.spec_for(a, b)[0], None, "sm_90a")
        import warnings
        with warnings.catch_warnings(record=True) as caught:  # not preloaded: torch runs it
            warnings.simplefilter("always")
            a6 = torch.randn(6, 8)
            c3 = deepgen.gemm(a6, b)
        missing = [str(w.message) for w in caught]
        missing.append(torch.allclose(c3.double(), a6.double() @ b.double(), atol=1e-5))
        print(json.dumps({{
            "blocked": blocked, "ops": ops, "meta": [list(meta.shape), str(meta.device)],
            "c1": torch.allclose(c1.double(), want, atol=1e-5),
            "c2": torch.allclose(c2.double(), 2 * want, atol=1e-5),
            "launches": len(plans), "preloaded": kernel.artifact is art,
            "missing": missing, "loaded": {COMPILER_LOADED}}}))
    """, tmp_path)
    assert out["blocked"]
    assert out["ops"][0].startswith("deepgen::gemm(Tensor a, Tensor b")
    assert out["meta"] == [[5, 3], "meta"]
    assert out["c1"] and out["c2"]
    assert out["launches"] == 1 and out["preloaded"]
    (warning, fell_back) = out["missing"]  # one warning, and torch's result
    assert "compiling needs deepgen.compiler and MLIR" in warning and fell_back
    assert "runs torch's GEMM instead" in warning
    assert out["loaded"] == []


def test_preloaded_bundle_launches_through_the_launcher_without_the_compiler(tmp_path,
                                                                            fake_driver_dir):
    """The same host, down to the launcher: the preloaded kernel is loaded and launched
    through the nanobind extension against the fake driver (tests/fake_cuda)."""
    if fake_driver_dir is None:
        pytest.skip("no C compiler to build the fake driver")
    spec = GemmSpec(M=5, N=3, K=8)
    reference_artifact(spec).save(tmp_path / "bundle")
    out = _run_blocked(f"""
        import ctypes, json
        import torch, deepgen
        from deepgen import api
        from deepgen.runtime import kernel as km
        from runtime_fakes import facts_of

        deepgen.runtime.preload({str(tmp_path / "bundle")!r})
        mp = __import__("pytest").MonkeyPatch()
        mp.setattr(api, "_check_devices", lambda tensors: None)
        mp.setattr(api, "target_of", lambda device: "sm_90a")
        mp.setattr(km, "facts", lambda name, t: facts_of(t))
        mp.setattr(km, "_raw_stream", lambda device: 0x77)
        real_plan = km.Kernel._plan
        mp.setattr(km.Kernel, "_plan", lambda self, device: real_plan(self, 0))  # cuda:0

        a, b = torch.randn(5, 8), torch.randn(8, 3)
        c = torch.ops.deepgen.gemm(a, b)
        fake = ctypes.CDLL("libcuda.so.1")  # the driver the launcher opened
        fake.fake_log.restype = ctypes.c_char_p
        log = fake.fake_log().decode().splitlines()
        print(json.dumps({{"log": log, "a": hex(a.data_ptr()), "b": hex(b.data_ptr()),
                          "c": hex(c.data_ptr()), "loaded": {COMPILER_LOADED}}}))
    """, tmp_path, {"LD_LIBRARY_PATH": str(fake_driver_dir)})
    (launch,) = [ln for ln in out["log"] if ln.startswith("launch ")]
    (want,) = reference_artifact(spec).launches
    grid, block = ",".join(map(str, want.grid)), ",".join(map(str, want.block))
    assert launch.startswith(f"launch {want.entry} grid={grid} block={block} "), out["log"]
    assert "stream=0x77" in launch
    assert out["loaded"] == []
