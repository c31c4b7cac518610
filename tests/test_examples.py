"""examples/llama.py on the CPU with tiny sizes: profiled, optimized (everything stays with
torch, and the example says so), logits equal to torch's, the summary JSON written."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "llama.py"


@pytest.fixture
def llama(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPGEN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DEEPGEN_DISABLE", raising=False)
    spec = importlib.util.spec_from_file_location("llama_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_llama_example_on_the_cpu(llama, tmp_path, capsys):
    out, summary = tmp_path / "prof", tmp_path / "summary.json"
    rc = llama.main(["--tiny", "--device", "cpu", "--rounds", "2", "--out", str(out),
                     "--json", str(summary)])
    text = capsys.readouterr().out
    assert rc == 0
    assert "everything runs on torch here" in text and "--from-profile" in text
    data = json.loads(summary.read_text())
    assert data["ok"] and data["device"] == "cpu" and data["optimized_layers"] == 15
    assert set(data["steps"]) == {"prefill", "decode"}
    for step in data["steps"].values():
        assert step["rel_err_vs_torch"] == 0.0  # torch ran every GEMM
        assert len(step["rounds_ms"]["torch"]) == 2 and step["optimized_ms"] > 0
    assert {r["route"] for r in data["routes"]} == {"torch"}
    assert {(r["step"], r["M"]) for r in data["routes"]} == {("prefill", 32), ("decode", 2)}
    # the profiles: the GEMM shapes of both steps, files for `deepgen tune --from-profile`
    prof = json.loads((out / "prefill" / "profile.json").read_text())
    assert {(g["M"], g["N"], g["K"]) for g in prof["gemms"]} == {
        (32, 64, 64), (32, 128, 64), (32, 64, 128), (32, 256, 64)}
    assert (out / "decode" / "gemms.csv").exists()


def test_llama_example_hf_flag_falls_back_without_transformers(llama, capsys):
    _model, what = llama.build(llama.TINY, use_hf=True)
    try:
        import transformers  # noqa: F401
    except ImportError:
        assert what == "plain torch Llama"
        assert "transformers is not installed" in capsys.readouterr().out
    else:
        assert what == "transformers LlamaForCausalLM"
