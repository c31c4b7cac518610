"""Cache correctness: the kernel cache key holds a hash of the compiler's sources (deepgen.build),
so editing a pass means compiling anew rather than serving the old cubin; `deepgen cache
list|prune|clear` shows and removes the entries that no longer match; tuned configs in
today's format are handed to the compiler as stored."""
from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from deepgen import build, cli
from deepgen.runtime import cache
from deepgen.runtime.reference import reference_artifact
from deepgen.spec import GemmSpec
from runtime_fakes import FakeCompiler, install_fake_compiler

SPEC = GemmSpec(M=32, N=16, K=8)
TOOLS = FakeCompiler.TOOLS


@pytest.fixture(autouse=True)
def cache_root(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPGEN_CACHE_DIR", str(tmp_path / "cache"))
    # The tool versions without running tools (compile_cached passes the compiler; the CLI
    # asks deepgen.toolchain): the same in both.
    monkeypatch.setattr(build, "_toolchain_versions", lambda provider: dict(TOOLS))
    cache.clear_memory()
    yield tmp_path / "cache"
    cache.clear_memory()
    build.compiler_hash.cache_clear()  # a test may have hashed edited sources


@pytest.fixture
def compiler(monkeypatch) -> FakeCompiler:
    return install_fake_compiler(monkeypatch)


# -- what is hashed -----------------------------------------------------------------------------

def test_compiler_sources_are_the_compiler_dialect_and_what_they_import():
    names = set(build.compiler_sources())
    for want in ("deepgen.compiler/__init__.py", "deepgen.compiler/config.py",
                 "deepgen.compiler/passes/tile_gemm.py", "deepgen.dialects/deepgen.irdl.mlir",
                 "deepgen.dialects/ops.py", "deepgen/spec.py", "deepgen/runtime/artifact.py",
                 "deepgen/toolchain.py"):
        assert want in names
    # What the compiler does not read is not part of its hash.
    for other in ("deepgen/api.py", "deepgen/build.py", "deepgen/runtime/kernel.py",
                  "deepgen/runtime/cache.py", "deepgen/__init__.py", "deepgen/cli.py"):
        assert other not in names
    assert not any(n.startswith("deepgen/tuner") or "__pycache__" in n for n in names)


def test_compiler_hash_is_a_sha256_computed_once_per_process(monkeypatch):
    build.compiler_hash.cache_clear()
    reads = []
    real = build._read
    monkeypatch.setattr(build, "_read", lambda p: reads.append(p) or real(p))
    h = build.compiler_hash()
    n = len(reads)
    assert len(h) == 64 and int(h, 16) >= 0 and n > 0
    assert build.compiler_hash() == h and len(reads) == n  # nothing read again


def test_hash_changes_when_a_source_changes(tmp_path):
    copies = {}
    for name, path in build.compiler_sources().items():
        copies[name] = tmp_path / name.replace("/", "__")
        shutil.copyfile(path, copies[name])
    before = build.source_hash(copies)
    pass_file = copies["deepgen.compiler/passes/tile_gemm.py"]
    text = pass_file.read_text()
    pass_file.write_text(text + "\n# an edited pass\n")
    assert build.source_hash(copies) != before
    pass_file.write_text(text)
    assert build.source_hash(copies) == before
    # A renamed file changes it too, as does a removed one.
    renamed = dict(copies)
    renamed["deepgen.compiler/passes/tile_gemm2.py"] = renamed.pop(
        "deepgen.compiler/passes/tile_gemm.py")
    assert build.source_hash(renamed) != before
    assert build.source_hash({k: v for k, v in copies.items() if "irdl" not in k}) != before


def test_a_new_module_the_compiler_imports_is_hashed(tmp_path, monkeypatch):
    """Sources follow the compiler's imports: a module it starts to import joins the hash."""
    driver = build.compiler_sources()["deepgen.compiler/driver.py"]
    real = build._read
    monkeypatch.setattr(build, "_read", lambda p: real(p) + (
        b"\nfrom deepgen.tuner import space\n" if p == driver else b""))
    assert "deepgen/tuner/space.py" in build.compiler_sources()


def test_editing_a_compiler_source_changes_the_cache_key(compiler, monkeypatch, cache_root):
    """The bug of issue 13: after a pass was edited, deepgen.gemm returned the old cubin."""
    build.compiler_hash.cache_clear()
    first = build.compile_cached(SPEC, None, "sm_90a")
    cache.clear_memory()  # a new process, same sources: the disk entry is used
    assert build.compile_cached(SPEC, None, "sm_90a").binary == first.binary
    assert len(compiler.calls) == 1

    edited = build.compiler_sources()["deepgen.compiler/passes/tile_gemm.py"]
    real = build._read
    monkeypatch.setattr(build, "_read", lambda p: real(p) + (b"\n# edited\n" if p == edited
                                                             else b""))
    build.compiler_hash.cache_clear()  # a new process after the edit
    cache.clear_memory()
    build.compile_cached(SPEC, None, "sm_90a")
    assert len(compiler.calls) == 2  # compiled again, not served from the old entry
    keys = [json.loads((d / "key.json").read_text())
            for d in (cache_root / "kernels").iterdir()]
    assert len(keys) == 2 and len({k["compiler"] for k in keys}) == 2
    assert {k["spec"] == SPEC.to_dict() and k["toolchain"] == TOOLS for k in keys} == {True}


def test_the_whole_spec_is_in_the_key(compiler):
    a = build.key_parts(SPEC, None, "sm_90a", compiler)
    b = build.key_parts(GemmSpec(M=32, N=16, K=8, allow_tf32=True), None, "sm_90a", compiler)
    assert a["spec"] == SPEC.to_dict() and cache.cache_key(a) != cache.cache_key(b)
    assert set(a) == {"spec", "config", "target", "deepgen", "toolchain", "compiler"}


def test_corrupt_entry_is_rebuilt(compiler, cache_root, capsys):
    build.compile_cached(SPEC, None, "sm_90a")
    (entry,) = (cache_root / "kernels").iterdir()
    binary = entry / "kernel.cubin"
    binary.write_bytes(binary.read_bytes()[:-3])
    assert cli.main(["cache", "list"]) == 0  # listed as broken until rebuilt
    assert "broken (binary is" in capsys.readouterr().out
    cache.clear_memory()
    art = build.compile_cached(SPEC, None, "sm_90a")
    assert len(compiler.calls) == 2 and art.binary == reference_artifact(SPEC).binary
    cache.clear_memory()
    build.compile_cached(SPEC, None, "sm_90a")  # the rebuilt entry is good
    assert len(compiler.calls) == 2


# -- tuned configs as stored --------------------------------------------------------------------

def test_tuned_config_in_todays_format_is_handed_through(compiler, cache_root):
    """An entry written by today's tuner (a flat TileConfig dict, no strategy field) reaches
    the compiler exactly as stored: reading it is the compiler's business."""
    today = {"BM": 128, "BN": 128, "BK": 16, "TM": 8, "TN": 8, "split_k": 1,
             "block_swizzle": 8, "mma": None, "async_copy": False, "stages": 2}
    cache_root.mkdir(parents=True)
    (cache_root / "tuned.json").write_text(json.dumps({"format": "deepgen-tuned/1", "entries": [
        {"spec": SPEC.to_dict(), "target": "sm_90a", "config": today, "tflops": 1.0}]}))
    from deepgen import api

    api._by_spec.clear()
    try:
        api.kernel_for(SPEC, None, "sm_90a")
    finally:
        api._by_spec.clear()
    assert compiler.calls == [(SPEC, today, "sm_90a")]


# -- deepgen cache list / prune / clear ---------------------------------------------------------

def _store(spec: GemmSpec, config=None, target="sm_90a", **override) -> str:
    parts = dict(build.key_parts(spec, config, target), **override)
    cache.cached_artifact(parts, lambda: reference_artifact(spec, target=target))
    return cache.cache_key(parts)


def _listing(capsys) -> dict[str, dict]:
    assert cli.main(["cache", "list", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return {r["key"]: r for r in rows}


@pytest.fixture
def populated(cache_root):
    """Four entries: current, built by another compiler, by another toolchain, and broken;
    plus a temporary directory a dead writer left an hour ago."""
    keys = {
        "current": _store(SPEC, {"BM": 32, "BN": 16, "BK": 8}),
        "compiler": _store(GemmSpec(M=64, N=64, K=64, dtype="bf16", layout="NT"),
                           compiler="0" * 64),
        "toolchain": _store(GemmSpec(M=8, N=8, K=8, batch=2), target="sm_80",
                            toolchain={"mlir": "old", "ptxas": "test"}),
        "broken": _store(GemmSpec(M=16, N=16, K=16)),
    }
    (cache_root / "kernels" / keys["broken"] / "kernel.json").write_text("{not json")
    dead = cache_root / "kernels" / ".0123456789abcdef-x.tmp"
    dead.mkdir()
    (dead / "kernel.json").write_text("{}")
    old = time.time() - 7200
    os.utime(dead, (old, old))
    young = cache_root / "kernels" / ".fedcba9876543210-y.tmp"  # a writer at work
    young.mkdir()
    cache.clear_memory()
    return keys


def test_cache_list(populated, capsys):
    rows = _listing(capsys)
    assert set(rows) == set(populated.values())
    status = {name: rows[key]["status"] for name, key in populated.items()}
    assert status["current"] == "current"
    assert status["compiler"] == "stale (compiler)"
    assert status["toolchain"] == "stale (toolchain)"
    assert status["broken"].startswith("broken (")
    cur = rows[populated["current"]]
    assert cur["spec"] == "32x16x8 f32 NN" and cur["config"] == "32x16x8"
    assert cur["target"] == "sm_90a" and cur["size"] > 0
    assert cur["compiler"] == build.compiler_hash()
    assert rows[populated["compiler"]]["spec"] == "64x64x64 bf16 NT"
    assert rows[populated["toolchain"]]["spec"] == "2x8x8x8 f32 NN"
    assert rows[populated["toolchain"]]["target"] == "sm_80"

    assert cli.main(["cache", "list"]) == 0
    text = capsys.readouterr().out
    assert str(cache.cache_dir() / "kernels") in text
    assert populated["current"][:12] in text and "stale (compiler)" in text
    assert "4 entries" in text and "1 current, 3 stale or broken" in text


def test_cache_prune_removes_stale_broken_and_dead_leftovers(populated, capsys, cache_root):
    assert cli.main(["cache", "prune"]) == 0
    out = capsys.readouterr().out
    left = sorted(p.name for p in (cache_root / "kernels").iterdir())
    assert left == sorted([populated["current"], ".fedcba9876543210-y.tmp"])
    for name in ("compiler", "toolchain", "broken"):
        assert f"removed {populated[name][:12]}" in out
    assert "removed leftover .0123456789abcdef-x.tmp" in out
    assert "prune: removed 3 of 4 entries" in out
    # The entry that is left is still served.
    hit = cache.cached_artifact(build.key_parts(SPEC, {"BM": 32, "BN": 16, "BK": 8}, "sm_90a"),
                                lambda: pytest.fail("the current entry was pruned"))
    assert hit.binary == reference_artifact(SPEC).binary


def test_cache_clear_removes_every_kernel_and_keeps_the_tuned_database(populated, capsys,
                                                                        cache_root):
    (cache_root / "tuned.json").write_text('{"format": "deepgen-tuned/1", "entries": []}')
    assert cli.main(["cache", "clear"]) == 0
    out = capsys.readouterr().out
    assert "clear: removed 4 of 4 entries" in out
    assert all(f"removed {k[:12]}" in out for k in populated.values())
    assert list((cache_root / "kernels").iterdir()) == []
    assert (cache_root / "tuned.json").exists()
    assert cli.main(["cache", "list"]) == 0
    assert "0 entries" in capsys.readouterr().out


def test_cache_commands_on_an_empty_cache(capsys):
    for action in ("list", "prune", "clear"):
        assert cli.main(["cache", action]) == 0
    assert "0 entries" in capsys.readouterr().out


def test_without_compiler_sources_prune_keeps_what_it_cannot_judge(populated, capsys,
                                                                    monkeypatch, cache_root):
    """A runtime-only install cannot tell which compiler built an entry: prune keeps entries
    that differ in nothing else."""
    monkeypatch.setattr(build, "_package_dir", lambda name: None)
    build.compiler_hash.cache_clear()
    assert build.compiler_hash() is None
    rows = _listing(capsys)
    assert rows[populated["current"]]["status"] == "unknown"
    assert rows[populated["compiler"]]["status"] == "unknown"
    assert rows[populated["toolchain"]]["status"] == "stale (toolchain)"
    assert cli.main(["cache", "prune"]) == 0
    assert "entries built by another compiler were kept" in capsys.readouterr().out
    left = {p.name for p in (cache_root / "kernels").iterdir()}
    assert populated["current"] in left and populated["compiler"] in left
    assert populated["broken"] not in left and populated["toolchain"] not in left
