"""Where the compiler meets the runtime: what needs both lives here, at the package root.

The compiler (deepgen.compiler) makes KernelArtifacts and knows nothing of the runtime but
the artifact format; the runtime (deepgen.runtime) runs artifacts and never imports the
compiler. This module joins them:

    compile_gemm(M, N, K, config, ...)    -> a runtime Kernel (deepgen.compile_gemm)
    compile_cached(spec, config, target)  -> the artifact, through the disk kernel cache
    config_fits(config, spec, target)     -> whether a tuned neighbour's config validates
    tuned_config(spec, target)            -> the tuned database's config (neighbours too)

The kernel cache key (key_parts) holds the spec, the config, the target, DeepGen's version,
the tool versions and `compiler_hash()`: a sha256 of the compiler's sources, so a kernel
compiled before a pass was edited is never served after (as Triton hashes its own sources).
Imports neither MLIR nor torch at module level.
"""
from __future__ import annotations

import functools
import hashlib
import re
import sys
from pathlib import Path

from deepgen.runtime import cache, tuned
from deepgen.spec import GemmSpec

# The compiler's sources: these packages (every .py and .mlir file in them), and every other
# deepgen module they import, directly or through each other (spec, dtypes, epilogue, the
# artifact format, toolchain, ...), found by reading their import statements.
COMPILER_PACKAGES = ("deepgen.compiler", "deepgen.dialects")
SOURCE_SUFFIXES = (".py", ".mlir")


def compile_gemm(M: int, N: int, K: int, tile_cfg=None, *, dtype: str = "f32",
                 out_dtype: str | None = None, layout: str = "NN", batch: int = 1,
                 target: str = "sm_90a", epilogue=None, keep_ir: bool = True):
    """Compile C = epilogue(op(A) @ op(B)) to a Kernel (deepgen.runtime.Kernel); the default
    epilogue is alpha * op(A) @ op(B) + beta * C.

    `tile_cfg` is a TileConfig, a dict of its fields (BM, BN, BK, TM, TN, ...), or None for
    the default heuristic. `epilogue`: an EpilogueSpec (deepgen.epilogue; e.g.
    EpilogueSpec.of(bias="col", activation="gelu_tanh")), a legacy string ("none", "relu"),
    a list of steps or a dict; it becomes part of the spec. Every field is validated before
    any MLIR is built. Not cached: each call compiles (deepgen.gemm is the cached path)."""
    from deepgen.compiler import compile_artifact
    from deepgen.epilogue import EpilogueSpec
    from deepgen.runtime.kernel import Kernel

    spec = GemmSpec(M=M, N=N, K=K, batch=batch, dtype=dtype, out_dtype=out_dtype, layout=layout,
                    epilogue=EpilogueSpec.parse(epilogue))
    return Kernel(compile_artifact(spec, tile_cfg, target, keep_ir=keep_ir))


# -- tuned configs ------------------------------------------------------------------------------

def config_fits(config: dict, spec: GemmSpec, target: str | None) -> bool:
    """Whether `config` (a tuned database entry's, as stored) validates for `spec` on
    `target`; False when it does not, or when there is no compiler here to tell."""
    try:
        from deepgen.compiler import strategies
        from deepgen.compiler.config import TileConfig
        from deepgen.compiler.target import get_target
    except ImportError:  # no compiler here: nothing could be compiled with it anyway
        return False
    try:
        target = get_target(target or "sm_90a")
        if "strategy" in config:  # a strategy config (wgmma, gemv have no flat lowering)
            strategies.resolve(config, spec, target)
        else:
            strategies.validate(TileConfig.from_dict(config), spec, target)
    except (ValueError, TypeError):  # SpecError is a ValueError
        return False
    return True


def tuned_config(spec: GemmSpec, target: str | None = None) -> dict | None:
    """The tuned database's config for `spec`: its own entry, else the nearest comparable
    tuned shape's whose config still validates (what deepgen.gemm uses)."""
    return tuned.lookup(spec, target, validate=config_fits)


# -- the kernel cache ---------------------------------------------------------------------------

class NoCompilerError(RuntimeError):
    """No kernel can be had: not in the cache, and no compiler (or MLIR) here to build it."""


def compile_cached(spec: GemmSpec, config, target: str):
    """The artifact for (spec, config, target) from the kernel cache, compiled on a miss."""
    try:
        from deepgen import compiler
        compile_artifact = compiler.compile_artifact
    except (ImportError, AttributeError) as e:
        raise NoCompilerError(
            f"no kernel for {spec} on {target}: compiling needs deepgen.compiler and MLIR "
            f"({type(e).__name__}: {e}); on a host without them, load a bundle compiled "
            f"elsewhere with deepgen.runtime.preload(bundle_dir)") from e
    parts = key_parts(spec, config, target, compiler)
    return cache.cached_artifact(parts, lambda: compile_artifact(spec, config, target))


def key_parts(spec: GemmSpec, config, target: str, compiler=None) -> dict:
    """The kernel cache key of (spec, config, target) as built here, in clear."""
    config = config.to_dict() if hasattr(config, "to_dict") else config
    return {"spec": spec.to_dict(), "config": config, "target": target, **build_parts(compiler)}


BUILD_PARTS = ("deepgen", "toolchain", "compiler")


def build_parts(compiler=None) -> dict:
    """The key parts that say what builds kernels here: DeepGen's version, the tool versions
    (`compiler.toolchain_versions()`, else deepgen.toolchain's, which is what the compiler's
    returns) and the compiler's source hash. An entry whose parts differ is stale."""
    import deepgen

    if compiler is None:
        from deepgen import toolchain as compiler  # the same versions, without MLIR
    return {"deepgen": deepgen.__version__, "toolchain": _toolchain_versions(compiler),
            "compiler": compiler_hash()}


def stale_parts(parts: dict, current: dict) -> list[str]:
    """The build parts (BUILD_PARTS) in which a cache entry's key `parts` differ from
    `current` (build_parts()): the reasons it can never be hit again."""
    return [name for name in BUILD_PARTS if parts.get(name) != current.get(name)]


@functools.cache
def _toolchain_versions(compiler) -> dict:
    return compiler.toolchain_versions()  # may run tools (ptxas --version): once per process


# -- the compiler's source hash -----------------------------------------------------------------

@functools.cache
def compiler_hash() -> str | None:
    """sha256 over the compiler's sources (compiler_sources()), once per process; None when
    the compiler's sources are not here (a runtime-only install)."""
    sources = compiler_sources()
    return source_hash(sources) if sources else None


def source_hash(sources: dict[str, Path]) -> str:
    """sha256 over (name, contents) of `sources`, in sorted name order."""
    h = hashlib.sha256()
    for name in sorted(sources):
        data = _read(sources[name])
        h.update(f"{name}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def _read(path: Path) -> bytes:
    return path.read_bytes()


def compiler_sources(packages=COMPILER_PACKAGES) -> dict[str, Path]:
    """{name: file} of the compiler's sources: every .py and .mlir file of `packages`, plus
    the deepgen modules they import (transitively), other than plain parent packages. Names
    are module-relative ("deepgen.compiler/passes/tile_gemm.py", "deepgen/spec.py"), so the
    hash is the same for an installed wheel and an editable install. Nothing is imported."""
    found: dict[str, Path] = {}
    todo: list[tuple[str, Path]] = []  # (module name, .py file) to read imports from
    for pkg in packages:
        base = _package_dir(pkg)
        if base is None:
            return {}  # no compiler here
        for f in sorted(base.rglob("*")):
            if f.suffix in SOURCE_SUFFIXES and f.is_file() and "__pycache__" not in f.parts:
                rel = f.relative_to(base)
                found[f"{pkg}/{rel.as_posix()}"] = f
                if f.suffix == ".py":
                    mod = ".".join((pkg, *rel.with_suffix("").parts))
                    todo.append((mod.removesuffix(".__init__"), f))
    seen = {mod for mod, _ in todo}
    while todo:
        mod, f = todo.pop()
        for name in _deepgen_imports(mod, f):
            if name in seen or any(name == p or name.startswith(p + ".") for p in packages):
                continue
            seen.add(name)
            path = _module_file(name)
            if path is None or path.name == "__init__.py":
                continue  # not a module file, or a parent package (deepgen, deepgen.runtime)
            found[name.replace(".", "/", 1).replace(".", "/") + ".py"] = path
            todo.append((name, path))
    return found


_IMPORT = re.compile(r"^[ \t]*(?:from[ \t]+(\.*)([\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n#;]*)"
                     r"|import[ \t]+([^\n#;]*))", re.M)


def _deepgen_imports(module: str, path: Path) -> set[str]:
    """The deepgen modules `path` (module `module`) may import: every `import deepgen.x`,
    `from deepgen.x import y` (x and x.y) and relative import, at any depth in the file.
    Read with a regular expression (an ast walk of the compiler took 0.3 s): a line of a
    docstring that looks like an import at most adds a file to the hash."""
    try:
        text = _read(path).decode("utf-8", "replace")
    except OSError:
        return set()
    is_pkg = path.name == "__init__.py"
    names = set()
    for dots, base, what, plain in _IMPORT.findall(text):
        if plain:
            names.update(n.split(" as ")[0].strip() for n in plain.split(","))
            continue
        if dots:
            parts = module.split(".")
            keep = len(parts) - len(dots) + (1 if is_pkg else 0)
            if keep <= 0:
                continue
            base = ".".join(parts[:keep] + ([base] if base else []))
        names.add(base)
        for n in what.strip("() \t\n").split(","):
            n = n.split(" as ")[0].strip()
            if n.isidentifier():
                names.add(f"{base}.{n}")
    return {n for n in names if n.startswith("deepgen.")}


def _module_file(name: str) -> Path | None:
    """The .py file of deepgen module `name`, found without importing it or its parents
    (deepgen itself is imported)."""
    parts = name.split(".")
    top = _find_spec(".".join(parts[:2]))
    if top is None:
        return None
    if len(parts) == 2:
        return Path(top.origin) if top.origin and top.origin.endswith(".py") else None
    for base in top.submodule_search_locations or ():
        stem = Path(base, *parts[2:])
        for candidate in (stem.with_suffix(".py"), stem / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def _package_dir(name: str) -> Path | None:
    spec = _find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        if Path(base, "__init__.py").is_file():
            return Path(base)
    return None


def _find_spec(name: str):
    """The spec of a direct submodule of deepgen, asked of the import system's finders
    directly: whatever sys.modules holds for it (a test's stand-in, None) does not matter."""
    import deepgen

    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        if find is None:
            continue
        try:
            spec = find(name, deepgen.__path__)
        except ImportError:  # a finder that forbids it: as good as absent
            return None
        if spec is not None:
            return spec
    return None
