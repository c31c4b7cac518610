"""Portable bundles: Kernel.save / deepgen.runtime.load round trips, damaged bundles refused."""
from __future__ import annotations

import json

import pytest

import deepgen.runtime
from deepgen.runtime import ArtifactError, KernelArtifact
from deepgen.runtime.reference import reference_artifact
from deepgen.spec import GemmSpec


@pytest.fixture
def artifact() -> KernelArtifact:
    art = reference_artifact(GemmSpec(M=64, N=32, K=16, batch=2, dtype="bf16", layout="TN"),
                             split=True, shared_bytes=2048)
    art.resources = {"deepgen_ref_partial": {"registers": 30, "spills": 0}}
    art.compile_seconds = 0.25
    art.ir_stages = {"00-input": "module {}"}
    return art


def test_round_trip_keeps_everything_but_ir(tmp_path, artifact):
    deepgen.runtime.Kernel(artifact).save(tmp_path / "b")
    k = deepgen.runtime.load(tmp_path / "b")
    got = k.artifact
    for field in ("backend", "target", "binary", "launches", "spec", "config", "workspace_bytes",
                  "resources", "toolchain", "compile_seconds", "assembly"):
        assert getattr(got, field) == getattr(artifact, field), field
    assert got.ir_stages == {}  # kept in memory only
    assert k.spec == GemmSpec.from_dict(artifact.spec)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        "kernel.cubin", "kernel.json", "kernel.ptx"]


def _damage(directory, how: str) -> None:
    binary = directory / "kernel.cubin"
    if how == "truncated binary":
        binary.write_bytes(binary.read_bytes()[:-7])
    elif how == "flipped byte":
        data = bytearray(binary.read_bytes())
        data[100] ^= 0xFF
        binary.write_bytes(bytes(data))
    elif how == "missing binary":
        binary.unlink()
    elif how == "garbage json":
        (directory / "kernel.json").write_bytes(b"\x00{not json")
    elif how == "truncated json":
        text = (directory / "kernel.json").read_text()
        (directory / "kernel.json").write_text(text[: len(text) // 2])
    elif how == "other format":
        meta = json.loads((directory / "kernel.json").read_text())
        meta["format"] = "something-else/9"
        (directory / "kernel.json").write_text(json.dumps(meta))
    elif how == "unknown argument":  # a name outside deepgen-kernel/1's vocabulary
        meta = json.loads((directory / "kernel.json").read_text())
        meta["format"] = "deepgen-kernel/1"
        for launch in meta["launches"]:
            launch["args"] = [p["name"] for p in launch.pop("params")] + ["D"]
        (directory / "kernel.json").write_text(json.dumps(meta))
    elif how == "unknown kind":
        meta = json.loads((directory / "kernel.json").read_text())
        meta["launches"][0]["params"].append({"name": "D", "kind": "f64"})
        (directory / "kernel.json").write_text(json.dumps(meta))
    elif how == "bad grid rule":
        meta = json.loads((directory / "kernel.json").read_text())
        meta["launches"][0]["grid"][0] = "open('x')"
        (directory / "kernel.json").write_text(json.dumps(meta))
    elif how == "missing field":
        meta = json.loads((directory / "kernel.json").read_text())
        del meta["launches"]
        (directory / "kernel.json").write_text(json.dumps(meta))


DAMAGES = ["truncated binary", "flipped byte", "missing binary", "garbage json",
           "truncated json", "other format", "unknown argument", "unknown kind", "bad grid rule",
           "missing field"]


@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_bundle_raises_artifact_error(tmp_path, artifact, how):
    artifact.save(tmp_path)
    _damage(tmp_path, how)
    with pytest.raises(ArtifactError):
        deepgen.runtime.load(tmp_path)


def test_missing_bundle_raises_artifact_error(tmp_path):
    with pytest.raises(ArtifactError, match="cannot read kernel.json"):
        deepgen.runtime.load(tmp_path / "nowhere")


def test_bundle_without_checksum_still_loads(tmp_path, artifact):
    artifact.save(tmp_path)
    meta = json.loads((tmp_path / "kernel.json").read_text())
    del meta["binary_sha256"]
    (tmp_path / "kernel.json").write_text(json.dumps(meta))
    assert deepgen.runtime.load(tmp_path).artifact.binary == artifact.binary
