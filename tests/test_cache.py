"""The kernel cache (deepgen.runtime.cache) and the tuned-config reader (deepgen.runtime.tuned)."""
from __future__ import annotations

import json
import multiprocessing
import os
import time

import pytest

from deepgen.runtime import cache, tuned
from deepgen.runtime.artifact import KernelArtifact
from deepgen.runtime.reference import reference_artifact
from deepgen.spec import GemmSpec

SPEC = GemmSpec(M=32, N=16, K=8)
KEY = {"spec": SPEC.to_dict(), "config": {"BM": 32}, "target": "sm_90a", "deepgen": "0.1.0",
       "toolchain": {"mlir": "22.1.8.4", "ptxas": "13.0"}}


@pytest.fixture(autouse=True)
def cache_root(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPGEN_CACHE_DIR", str(tmp_path / "cache"))
    cache.clear_memory()
    yield tmp_path / "cache"
    cache.clear_memory()


class Builder:
    def __init__(self, spec: GemmSpec = SPEC):
        self.spec, self.calls = spec, 0

    def __call__(self) -> KernelArtifact:
        self.calls += 1
        return reference_artifact(self.spec)


def test_miss_then_memory_hit_then_disk_hit(cache_root):
    build = Builder()
    first = cache.cached_artifact(KEY, build)
    assert build.calls == 1
    assert cache.cached_artifact(KEY, build) is first  # memory
    cache.clear_memory()
    again = cache.cached_artifact(KEY, build)  # disk
    assert build.calls == 1
    assert again is not first and again.binary == first.binary
    entry = cache.entry_dir(cache.cache_key(KEY))
    assert entry.parent.parent == cache_root
    assert json.loads((entry / "key.json").read_text()) == KEY


def test_key_is_canonical():
    reordered = dict(reversed(list(KEY.items())))
    reordered["toolchain"] = {"ptxas": "13.0", "mlir": "22.1.8.4"}
    assert cache.cache_key(reordered) == cache.cache_key(KEY)
    from_dataclass = dict(KEY, spec=SPEC)  # objects with to_dict() encode as their dict
    assert cache.cache_key(from_dataclass) == cache.cache_key(KEY)


@pytest.mark.parametrize("part, value", [
    ("spec", GemmSpec(M=32, N=16, K=8, layout="NT").to_dict()),
    ("config", {"BM": 64}),
    ("config", None),
    ("target", "sm_80"),
    ("deepgen", "0.1.1"),
    ("toolchain", {"mlir": "22.1.8.4", "ptxas": "13.5"}),
])
def test_every_key_part_changes_the_key(part, value):
    changed = dict(KEY, **{part: value})
    assert cache.cache_key(changed) != cache.cache_key(KEY)
    build = Builder()
    cache.cached_artifact(KEY, build)
    cache.cached_artifact(changed, build)
    assert build.calls == 2


def test_unencodable_key_part_is_an_error():
    with pytest.raises(TypeError, match="cache key: cannot encode object"):
        cache.cache_key(dict(KEY, config=object()))


def _corrupt(entry, how: str) -> None:
    if how == "truncated binary":
        binary = entry / "kernel.cubin"
        binary.write_bytes(binary.read_bytes()[:10])
    elif how == "garbage kernel.json":
        (entry / "kernel.json").write_text("{\"format\": \"deepgen-kernel/1\", ")
    elif how == "missing kernel.json":
        (entry / "kernel.json").unlink()
    elif how == "same-size corruption":
        binary = entry / "kernel.cubin"
        binary.write_bytes(bytes(len(binary.read_bytes())))


@pytest.mark.parametrize("how", ["truncated binary", "garbage kernel.json",
                                 "missing kernel.json", "same-size corruption"])
def test_corrupt_entry_is_rebuilt_not_loaded(cache_root, how):
    build = Builder()
    good = cache.cached_artifact(KEY, build)
    entry = cache.entry_dir(cache.cache_key(KEY))
    _corrupt(entry, how)
    cache.clear_memory()
    rebuilt = cache.cached_artifact(KEY, build)
    assert build.calls == 2 and rebuilt.binary == good.binary
    assert KernelArtifact.load(entry).binary == good.binary  # the entry is whole again
    leftovers = [p.name for p in entry.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_failed_build_leaves_no_entry(cache_root):
    def build():
        raise RuntimeError("compiler crashed")

    with pytest.raises(RuntimeError, match="compiler crashed"):
        cache.cached_artifact(KEY, build)
    assert not cache.entry_dir(cache.cache_key(KEY)).exists()


def test_unwritable_cache_warns_and_still_returns_the_artifact(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("DEEPGEN_CACHE_DIR", str(blocker))
    build = Builder()
    with pytest.warns(UserWarning, match="cannot write the kernel cache"):
        art = cache.cached_artifact(KEY, build)
    assert art.binary == reference_artifact(SPEC).binary and build.calls == 1


# -- several processes ------------------------------------------------------------------------

def _race(barrier, results, index: int) -> None:
    """One process: builds after every process has missed the cache, then stores."""
    def build():
        barrier.wait(timeout=60)  # all processes are past their miss: both will write
        time.sleep(0.05 * index)
        return reference_artifact(SPEC)

    try:
        art = cache.cached_artifact(KEY, build)
        results[index] = "ok" if art.binary == reference_artifact(SPEC).binary else "wrong"
    except BaseException as e:  # reported to the parent instead of a silent exit code
        results[index] = f"{type(e).__name__}: {e}"


@pytest.mark.parametrize("processes", [2, 4])
def test_processes_writing_one_key_at_once_all_succeed(cache_root, processes):
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(processes)
    results = ctx.Manager().dict()
    workers = [ctx.Process(target=_race, args=(barrier, results, i)) for i in range(processes)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert dict(results) == {i: "ok" for i in range(processes)}
    entry = cache.entry_dir(cache.cache_key(KEY))
    assert KernelArtifact.load(entry).binary == reference_artifact(SPEC).binary
    assert sorted(os.listdir(entry.parent)) == [entry.name]  # no temporary directories left
    build = Builder()
    cache.clear_memory()
    cache.cached_artifact(KEY, build)
    assert build.calls == 0


# -- preloaded bundles ------------------------------------------------------------------------

def test_preload_matches_spec_target_and_config(tmp_path):
    art = reference_artifact(SPEC, target="sm_90a")
    art.save(tmp_path / "bundle")
    cache.preload(tmp_path / "bundle")
    assert cache.preloaded(SPEC.to_dict(), "sm_90a").binary == art.binary
    assert cache.preloaded(SPEC.to_dict(), "sm_80") is None
    assert cache.preloaded(GemmSpec(M=32, N=16, K=8, dtype="f16").to_dict(), "sm_90a") is None
    assert cache.preloaded(SPEC.to_dict(), "sm_90a", art.config) is not None
    assert cache.preloaded(SPEC.to_dict(), "sm_90a", {"BM": 64}) is None


# -- the tuned database -----------------------------------------------------------------------

def _write_tuned(root, entries, fmt=tuned.FORMAT):
    root.mkdir(parents=True, exist_ok=True)
    (root / "tuned.json").write_text(json.dumps({"format": fmt, "entries": entries}))


def test_no_tuned_database_means_no_config():
    assert tuned.lookup(SPEC) is None


def test_tuned_lookup_prefers_the_target_specific_entry(cache_root):
    _write_tuned(cache_root, [
        {"spec": {"M": 32, "N": 16, "K": 8}, "config": {"BM": 16}},  # defaults filled in
        {"spec": SPEC.to_dict(), "target": "sm_90a", "config": {"BM": 32}, "tflops": 1.0},
    ])
    assert tuned.lookup(SPEC, "sm_90a") == {"BM": 32}
    assert tuned.lookup(SPEC, "sm_80") == {"BM": 16}
    assert tuned.lookup(SPEC) == {"BM": 16}
    assert tuned.lookup(GemmSpec(M=32, N=16, K=8, layout="TT")) is None


def test_tuned_database_is_reread_when_it_changes(cache_root):
    _write_tuned(cache_root, [{"spec": SPEC.to_dict(), "config": {"BM": 16}}])
    assert tuned.lookup(SPEC) == {"BM": 16}
    _write_tuned(cache_root, [{"spec": SPEC.to_dict(), "config": {"BM": 128, "BN": 128}}])
    assert tuned.lookup(SPEC) == {"BM": 128, "BN": 128}


@pytest.mark.parametrize("content", ["{broken", json.dumps({"format": "other/1", "entries": []}),
                                     json.dumps({"format": tuned.FORMAT,
                                                 "entries": [{"spec": {"M": -1}}]})])
def test_malformed_tuned_database_warns_and_is_ignored(cache_root, content):
    cache_root.mkdir(parents=True)
    (cache_root / "tuned.json").write_text(content)
    with pytest.warns(UserWarning, match="ignoring the tuned-config database"):
        assert tuned.lookup(SPEC) is None
