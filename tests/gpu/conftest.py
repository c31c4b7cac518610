"""Where the GPU tests get their kernels: a bundle compiled elsewhere, or the compiler.

The GPU host has no MLIR, so the kernels come from `$DEEPGEN_TEST_BUNDLE` (written by
`python tests/gpu/make_bundle.py DIR` on a machine with MLIR). Without it, they are compiled
here when MLIR is importable; otherwise the tests that need kernels skip, saying how to get them.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # make_bundle, for the tests of this folder
import make_bundle  # noqa: E402

BUNDLE_ENV = "DEEPGEN_TEST_BUNDLE"


class Kernels:
    """Sweep kernels by case name and the smoke-suite bundle, from a bundle or the compiler."""

    def __init__(self, bundle: Path | None, tmp_factory):
        self.bundle = bundle
        self._tmp_factory = tmp_factory
        self._cache: dict = {}
        self._suite: Path | None = None

    def sweep(self, name: str, spec_fields: dict, overrides: dict | None):
        from deepgen.runtime import Kernel, load

        if name not in self._cache:
            if self.bundle is not None:
                path = self.bundle / "sweep" / name
                if not (path / "kernel.json").exists():
                    pytest.fail(f"{path}: not in the bundle (made before this case existed?): "
                                f"rebuild it with `python tests/gpu/make_bundle.py {self.bundle}`")
                self._cache[name] = load(path)
            else:
                self._cache[name] = Kernel(make_bundle.compile_case(spec_fields, overrides))
        return self._cache[name]

    def strategy_case(self, kind: str, name: str, spec_fields: dict, given: dict):
        """A case of a kernel-building strategy (tests/gpu/<kind>_cases.py, kind "gemv" or
        "wgmma") from DIR/<kind>, or compiled here."""
        from deepgen.runtime import Kernel, load

        key = (kind, name)
        if key not in self._cache:
            if self.bundle is not None:
                path = self.bundle / kind / name
                if not (path / "kernel.json").exists():
                    pytest.fail(f"{path}: not in the bundle: rebuild it with "
                                f"`python tests/gpu/make_bundle.py {self.bundle}`")
                self._cache[key] = load(path)
            else:
                cases = make_bundle.strategy_cases(kind)
                self._cache[key] = Kernel(cases.compile_case(spec_fields, given))
        return self._cache[key]

    def suite_bundle(self) -> Path:
        if self._suite is None:
            if self.bundle is not None:
                self._suite = self.bundle / "suite"
                if not (self._suite / "index.json").exists():
                    pytest.fail(f"{self._suite}/index.json missing: rebuild the bundle with "
                                f"`python tests/gpu/make_bundle.py {self.bundle}`")
            else:
                gs = make_bundle.gemm_suite()
                self._suite = self._tmp_factory.mktemp("suite")
                gs.compile_bundle(self._suite, gs.entries(["smoke"]), log=lambda line: None)
        return self._suite


@pytest.fixture(scope="session")
def kernels(tmp_path_factory) -> Kernels:
    env = os.environ.get(BUNDLE_ENV)
    if env:
        bundle = Path(env)
        if not bundle.is_dir():
            pytest.fail(f"{BUNDLE_ENV}={env}: no such directory")
        return Kernels(bundle, tmp_path_factory)
    if importlib.util.find_spec("mlir") is None:
        pytest.skip(f"no kernels: set {BUNDLE_ENV}=DIR to a bundle made by "
                    f"`python tests/gpu/make_bundle.py DIR` on a machine with MLIR")
    return Kernels(None, tmp_path_factory)
