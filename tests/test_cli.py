"""The `deepgen` command line: dispatch, console script, and a light start-up."""
from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from deepgen import cli

HEAVY = ("mlir", "torch", "numpy", "llvmlite", "cuda")


def test_every_command_module_follows_the_contract():
    names = set()
    for module_name in cli.COMMANDS:
        module = importlib.import_module(module_name)
        assert callable(module.add_parser) and callable(module.run), module_name
        parser = argparse.ArgumentParser()
        sub = module.add_parser(parser.add_subparsers())
        assert isinstance(sub, argparse.ArgumentParser)
        names.add(sub.prog.split()[-1])
    assert "doctor" in names and len(names) == len(cli.COMMANDS)


def test_help_imports_nothing_heavy():
    """`deepgen --help` must stay fast: building the parser imports no MLIR, torch, ..."""
    code = ("import sys; from deepgen import cli; cli.build_parser(); "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip() == "[]"


def test_help_lists_commands():
    proc = subprocess.run([sys.executable, "-m", "deepgen", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0
    assert "doctor" in proc.stdout


def test_no_command_prints_usage_and_exits_2(capsys):
    assert cli.main([]) == 2
    assert "usage: deepgen" in capsys.readouterr().err


def test_unknown_command_exits_2():
    with pytest.raises(SystemExit) as e:
        cli.main(["no-such-command"])
    assert e.value.code == 2


def test_console_script_installed():
    script = Path(sys.executable).parent / "deepgen"
    if not script.exists():
        pytest.skip("deepgen console script not beside this interpreter")
    proc = subprocess.run([str(script), "--version"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("deepgen ")
