"""deepgen.profile / `deepgen profile` and `deepgen tune --from-profile` on the CPU machine:
the parser on recorded op records, a small torch model profiled on the CPU, the files, the
CLI, and the tuning configs a profile makes (validated against the schema)."""
from __future__ import annotations

import csv
import json
import textwrap
from types import SimpleNamespace

import pytest
import torch

import deepgen
from deepgen import cli, profiler
from deepgen.tuner import configfile, from_profile


def rec(name, shapes, dtypes, strides, us, in_gemm=False):
    return {"name": name, "shapes": shapes, "dtypes": dtypes, "strides": strides,
            "cpu_us": us, "self_cpu_us": us, "device_us": us, "self_device_us": us,
            "in_gemm": in_gemm}


BF = "c10::BFloat16"
# A recorded trace (the records deepgen.profiler.records makes of torch.profiler events):
RECORDS = [
    # nn.Linear with bias: aten::linear -> aten::addmm (inside: counted once, as the linear)
    rec("aten::linear", [[4, 512, 2048], [8192, 2048], [8192]], [BF] * 3,
        [[2048 * 512, 2048, 1], [2048, 1], [1]], 300.0),
    rec("aten::addmm", [[8192], [2048, 2048], [2048, 8192], [], []], [BF] * 3 + ["Scalar"] * 2,
        [[1], [2048, 1], [1, 2048], [], []], 290.0, in_gemm=True),
    rec("aten::linear", [[4, 512, 2048], [8192, 2048], [8192]], [BF] * 3,
        [[2048 * 512, 2048, 1], [2048, 1], [1]], 310.0),
    # nn.Linear without bias -> matmul -> mm
    rec("aten::linear", [[4, 512, 8192], [2048, 8192], []], [BF, BF, ""],
        [[8192 * 512, 8192, 1], [8192, 1], []], 200.0),
    rec("aten::matmul", [[4, 512, 8192], [8192, 2048]], [BF] * 2,
        [[8192 * 512, 8192, 1], [1, 8192]], 195.0, in_gemm=True),
    rec("aten::mm", [[2048, 8192], [8192, 2048]], [BF] * 2, [[8192, 1], [1, 8192]], 190.0,
        in_gemm=True),
    # attention scores: bmm with a transposed B
    rec("aten::bmm", [[32, 512, 128], [32, 128, 512]], [BF] * 2,
        [[512 * 128, 128, 1], [512 * 128, 1, 128]], 50.0),
    # a plain f32 mm, a matrix-vector matmul (not a GEMM shape), an fp8 scaled mm
    rec("aten::mm", [[64, 32], [32, 16]], ["float"] * 2, [[32, 1], [16, 1]], 5.0),
    rec("aten::matmul", [[64, 32], [32]], ["float"] * 2, [[32, 1], [1]], 3.0),
    rec("aten::_scaled_mm", [[128, 256], [256, 512], [], [], [], []],
        ["c10::Float8_e4m3fn"] * 2 + ["float"] * 2, [[256, 1], [1, 256], [], []], 40.0),
    rec("aten::silu", [[4, 512, 8192]], [BF], [[1]], 100.0),
]


def test_parse_recovers_gemm_shapes_and_groups_them():
    report = profiler.parse(RECORDS, device="gpu", calls=2, name="model")
    keys = [g["key"] for g in report["gemms"]]
    assert keys == ["2048x8192x2048 bf16 NT +bias", "2048x2048x8192 bf16 NT",
                    "512x512x128 x32 bf16 NT", "128x512x256 f8e4m3 NT +scaled",
                    "64x16x32 f32 NN"]
    big = report["gemms"][0]
    assert (big["M"], big["N"], big["K"], big["batch"], big["count"]) == (2048, 8192, 2048, 1, 2)
    assert (big["min_us"], big["max_us"], big["avg_us"], big["total_us"]) == (
        300.0, 310.0, 305.0, 610.0)
    assert big["ops"] == {"aten::linear": 2} and big["calls_per_run"] == 1.0
    assert report["unparsed_gemm_ops"] == 1  # the matrix-vector matmul
    gemm_us = 610 + 200 + 50 + 40 + 5
    assert report["gemm_us"] == gemm_us
    total = sum(r["self_device_us"] for r in RECORDS)
    assert report["total_us"] == total
    assert big["percent_of_gemm"] == pytest.approx(100 * 610 / gemm_us)
    assert big["percent_of_all"] == pytest.approx(100 * 610 / total)
    assert big["tflops"] == pytest.approx(2 * 2048 * 8192 * 2048 / 305e-6 / 1e12)
    ops = {o["op"]: o for o in report["ops"]}
    assert ops["aten::linear"]["count"] == 3 and ops["aten::linear"]["total_us"] == 810.0
    assert ops["aten::silu"]["percent"] == pytest.approx(100 * 100 / total)
    text = profiler.format_report(report)
    assert "% GPU" in text and "GPU time (kernels attributed to ops)" in text


@pytest.mark.parametrize("record, want", [
    (rec("aten::mm", [[8, 4], [4, 2]], ["float"] * 2, [[1, 8], [2, 1]], 1), (8, 2, 4, 1, "TN")),
    (rec("aten::matmul", [[2, 3, 8, 4], [4, 5]], [BF] * 2, [[96, 32, 4, 1], [5, 1]], 1),
     (48, 5, 4, 1, "NN")),
    (rec("aten::matmul", [[6, 8, 4], [6, 4, 5]], ["c10::Half"] * 2, [[32, 4, 1], [20, 5, 1]], 1),
     (8, 5, 4, 6, "NN")),
    (rec("aten::mm", [[8, 4], [4, 2]], ["float"] * 2, [], 1), (8, 2, 4, 1, "NN")),  # no strides
])
def test_gemm_of_each_op(record, want):
    g = profiler.gemm_of(record)
    assert (g["M"], g["N"], g["K"], g["batch"], g["layout"]) == want


def test_records_take_dtypes_from_kineto_when_events_lack_them():
    """torch 2.11's FunctionEvent has no input_dtypes (the H200 host's torch): the Kineto event
    with the same correlation id has them."""
    event = SimpleNamespace(  # a FunctionEvent without input_dtypes / strides
        id=7, name="aten::mm", device_type="DeviceType.CPU", cpu_parent=None,
        input_shapes=[[64, 32], [32, 16]], cpu_time_total=5.0, self_cpu_time_total=5.0,
        device_time_total=4.0, self_device_time_total=4.0)
    kineto = SimpleNamespace(correlation_id=lambda: 7,
                             dtypes=lambda: ["c10::BFloat16", "c10::BFloat16"])
    prof = SimpleNamespace(events=lambda: [event], profiler=SimpleNamespace(
        kineto_results=SimpleNamespace(events=lambda: [kineto])))
    (r,) = profiler.records(prof)
    assert r["dtypes"] == ["c10::BFloat16"] * 2 and r["strides"] == []
    assert profiler.gemm_of(r)["dtype"] == "bf16"


SCRIPT = '''
import sys
import torch

torch.manual_seed(0)
H = int(sys.argv[1])
model = torch.nn.Sequential(torch.nn.Linear(H, 2 * H), torch.nn.SiLU(),
                            torch.nn.Linear(2 * H, H, bias=False))
x = torch.randn(2, 8, H)
CALLS = []


def main():
    CALLS.append(1)
    with torch.no_grad():
        return model(x)
'''


def test_profile_a_cpu_model_writes_files(tmp_path, capsys):
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(),
                                torch.nn.Linear(64, 16, bias=False))
    x = torch.randn(3, 5, 32)
    with torch.no_grad():
        report = deepgen.profile(model, x, repeat=2, out=tmp_path / "p", name="mlp")
    printed = capsys.readouterr().out
    assert report["device"] == "cpu" and "% CPU" in printed and "CPU time" in printed
    got = {(g["M"], g["N"], g["K"], g["layout"], g["epilogue"], g["count"])
           for g in report["gemms"]}
    assert got == {(15, 64, 32, "NT", "bias", 2), (15, 16, 64, "NT", "none", 2)}
    assert report["gemm_us"] > 0 and 0 < report["gemm_percent"] <= 100
    data = json.loads((tmp_path / "p" / "profile.json").read_text())
    assert data["format"] == "deepgen-profile/1" and data["gemms"] == report["gemms"]
    rows = list(csv.DictReader((tmp_path / "p" / "gemms.csv").open()))
    assert [(int(r["M"]), r["epilogue"]) for r in rows] == [(g["M"], g["epilogue"])
                                                             for g in report["gemms"]]
    assert (tmp_path / "p" / "ops.csv").read_text().startswith("op,count,min_us,max_us")
    pytest.importorskip("matplotlib")
    assert (tmp_path / "p" / "gemms.png").read_bytes()[:4] == b"\x89PNG"
    assert not list((tmp_path / "p").glob(".*tmp*"))  # atomic writes leave no temporaries


def test_cli_profile_calls_main_with_the_script_args(tmp_path, capsys):
    script = tmp_path / "model.py"
    script.write_text(textwrap.dedent(SCRIPT))
    out = tmp_path / "prof"
    assert cli.main(["profile", "--out", str(out), "--repeat", "2", "--warmup", "1",
                     str(script), "16"]) == 0
    report = json.loads((out / "profile.json").read_text())
    assert report["name"] == "model.py:main" and report["calls"] == 2
    assert {(g["M"], g["N"], g["K"]) for g in report["gemms"]} == {(16, 32, 16), (16, 16, 32)}
    assert all(g["count"] == 2 for g in report["gemms"])  # warmup not profiled
    assert "model.py:main" in capsys.readouterr().out


def test_cli_profile_runs_a_script_without_main_whole(tmp_path, capsys):
    script = tmp_path / "flat.py"
    script.write_text("import torch\nprint('ran', torch.mm(torch.ones(4, 2), "
                      "torch.ones(2, 3)).sum().item())\n")
    assert cli.main(["profile", "--out", str(tmp_path / "o"), str(script)]) == 0
    io = capsys.readouterr()
    assert "ran 24.0" in io.out and "defines no main()" in io.err
    report = json.loads((tmp_path / "o" / "profile.json").read_text())
    assert [(g["M"], g["N"], g["K"]) for g in report["gemms"]] == [(4, 3, 2)]


def test_cli_profile_errors(tmp_path, capsys):
    assert cli.main(["profile"]) == 2
    assert cli.main(["profile", str(tmp_path / "missing.py")]) == 2
    bad = tmp_path / "bad.py"
    bad.write_text("def main():\n    raise ValueError('boom')\n")
    assert cli.main(["profile", "--out", str(tmp_path / "o"), str(bad)]) == 1
    assert "bad.py failed: ValueError: boom" in capsys.readouterr().err


# -- tune --from-profile ------------------------------------------------------------------------

def _profile_file(tmp_path, records=RECORDS) -> str:
    d = tmp_path / "llama"
    d.mkdir()
    profiler.write(profiler.parse(records, name="llama"), d)
    return str(d / "profile.json")


def test_select_top_and_cover(tmp_path):
    prof = profiler.load(_profile_file(tmp_path))
    chosen, summary = from_profile.select(prof)  # cover 0.9 by default
    # 610 + 200 of 905 us = 89.5% < 90%: the bmm (50) is needed too; fp8 is not tunable here
    assert [(g["M"], g["N"], g["K"], g["batch"]) for g in chosen] == [
        (2048, 8192, 2048, 1), (2048, 2048, 8192, 1), (512, 512, 128, 32)]
    assert summary["skipped"] == 1 and summary["skipped_dtypes"] == ["f8e4m3"]
    assert summary["covered"] == pytest.approx(860 / 905)
    chosen, _ = from_profile.select(prof, top=1)
    assert len(chosen) == 1 and chosen[0]["epilogue"] == "none"
    for kwargs, msg in (({"top": 1, "cover": 0.5}, "not both"), ({"cover": 1.5}, "--cover"),
                        ({"top": 0}, "--top-shapes")):
        with pytest.raises(from_profile.ProfileError, match=msg):
            from_profile.select(prof, **kwargs)


def test_tune_from_profile_writes_valid_configs(tmp_path, capsys):
    path = _profile_file(tmp_path, RECORDS + [
        rec("aten::linear", [[1, 1, 2048], [8192, 2048], []], [BF, BF, ""],
            [[2048, 2048, 1], [2048, 1], []], 400.0),          # decode: gemv space
        rec("aten::linear", [[1, 64, 2048], [8192, 2048], []], [BF, BF, ""],
            [[2048 * 64, 2048, 1], [2048, 1], []], 100.0)])    # M = 64: wgmma swap_ab
    out = tmp_path / "tune"
    assert cli.main(["tune", "--from-profile", path, "--cover", "1.0", "--out", str(out),
                     "--write-only"]) == 0
    printed = capsys.readouterr().out
    assert "of 7 GEMM shapes cover" in printed
    files = sorted((out / "configs").glob("*.json"))
    names = [f.stem for f in files]
    assert names == ["llama-bf16-nt-gemv", "llama-bf16-nt-wgmma", "llama-bf16-nt-wgmma_small",
                     "llama-f32-nn-simt"]
    loaded = {f.stem: configfile.load(f) for f in files}  # checked against the schema
    assert [(s.M, s.N, s.K) for s in loaded["llama-bf16-nt-gemv"].specs] == [(1, 8192, 2048)]
    assert [(s.M, s.batch) for s in loaded["llama-bf16-nt-wgmma"].specs] == [
        (2048, 1), (2048, 1), (512, 32)]
    assert loaded["llama-bf16-nt-wgmma_small"].space["swap_ab"] == [True]
    assert all(s.layout == "NT" and s.dtype == "bf16"
               for s in loaded["llama-bf16-nt-wgmma"].specs)


def test_tune_from_profile_dry_run_and_errors(tmp_path, capsys):
    pytest.importorskip("mlir")
    path = _profile_file(tmp_path)
    assert cli.main(["tune", "--from-profile", path, "--top-shapes", "1", "--out",
                     str(tmp_path / "t"), "--dry-run", "--no-progress"]) == 0
    assert "candidates for 1 shapes on sm_90a" in capsys.readouterr().out
    assert cli.main(["tune", "--from-profile", path, "--top-shapes", "1", "--cover", "0.5",
                     "--write-only", "--out", str(tmp_path / "t2")]) == 2
    assert "not both" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "something"}))
    assert cli.main(["tune", "--from-profile", str(bad), "--write-only"]) == 2
    assert "not a deepgen profile" in capsys.readouterr().err
    assert cli.main(["tune", "--from-profile", path, "cfg.json"]) == 2
    assert cli.main(["tune"]) == 2


def test_cli_profile_a_module(tmp_path, monkeypatch, capsys):
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "run.py").write_text(textwrap.dedent(SCRIPT))
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "prof"
    assert cli.main(["profile", "--out", str(out), "-m", "mypkg.run", "8"]) == 0
    report = json.loads((out / "profile.json").read_text())
    assert {(g["M"], g["N"], g["K"]) for g in report["gemms"]} == {(16, 16, 8), (16, 8, 16)}
    assert cli.main(["profile", "-m", "mypkg.nothere"]) == 2
