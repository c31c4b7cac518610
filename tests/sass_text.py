"""The SASS of a cubin (cuobjdump -sass), for the CPU tests that check what runs."""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest


def sass_of(binary: bytes) -> str:
    """The cubin's SASS text; skips the test where cuobjdump is not installed."""
    from deepgen.toolchain import cuobjdump_env, find_cuobjdump

    exe = find_cuobjdump()
    if exe is None:
        pytest.skip("cuobjdump not found (pip install nvidia-cuda-cuobjdump "
                    "nvidia-cuda-nvdisasm, or set DEEPGEN_CUOBJDUMP)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "k.cubin"
        path.write_bytes(binary)
        return subprocess.run([exe, "-sass", str(path)], capture_output=True, text=True,
                              env=cuobjdump_env(exe), check=True).stdout
