"""deepgen export: range kernels as a C library with no Python and no DeepGen at run time.

    export("out/", [(4096, 4096)], dtype="bf16", layout="NT")

writes into out/:

    <gemm>_m<lo>-<hi>.cubin   one binary per M range of each exported GEMM
    deepgen_gemm.h            per GEMM: int <gemm>(a, b, c, M, alpha, beta[, bias][, scales]
                              [, workspace, ...], stream) and <gemm>_workspace_size(M) where a
                              kernel has a workspace; deepgen_load(dir) / deepgen_unload()
    deepgen_gemm.c            loads the cubins with the CUDA driver API and launches them: the
                              few driver types and entry points it needs are declared here and
                              libcuda.so.1 is opened with dlopen at run time (as DeepGen's
                              launcher does), so it builds without a CUDA toolkit; TMA
                              descriptors are encoded per call (cuTensorMapEncodeTiled, looked
                              up the same way) from the actual M
    CMakeLists.txt            builds libdeepgen_gemm (static) and links dl
    manifest.json             what was exported (specs, configs, ranges)

Each GEMM function picks the range kernel whose range holds M, evaluates the kernel's size
rules (grid, shapes, workspace) at M in C, and returns 0, a CUresult (> 0) from the driver,
or a DEEPGEN_E* code (< 0). Pointers are device pointers of packed operands in the
spec's layout (A M x K row-major for layout "N", stored K x M for "T"; C row-major M x N).
"""
from __future__ import annotations

import ast
import json
import os
from pathlib import Path

from deepgen.dims import range_label
from deepgen.runtime.artifact import SIZE_NAMES, KernelArtifact, atomic_write
from deepgen.spec import GemmSpec

from .precompile import precompile

HEADER = "deepgen_gemm.h"
SOURCE = "deepgen_gemm.c"
# CUtensorMapDataType and bytes per element (runtime/src/launcher.cpp tma_data_type)
TMA_TYPES = {"f32": (7, 4), "f16": (6, 2), "bf16": (9, 2), "tf32": (11, 4), "e4m3": (0, 1),
             "e5m2": (0, 1), "int8": (0, 1)}
ENUMS = {"interleave": (0, 16, 32), "swizzle": (0, 32, 64, 128), "l2_promotion": (0, 64, 128, 256)}
MAX_DEFAULT_SHARED = 48 * 1024


class ExportError(ValueError):
    """An artifact the C export cannot express (a rule, param kind or dtype)."""


def rule_to_c(rule) -> str:
    """A size rule (runtime/artifact.py) as a C expression over int64_t M, N, K, batch."""
    if isinstance(rule, int):
        return f"INT64_C({rule})"
    tree = ast.parse(str(rule).strip(), mode="eval")

    def emit(node) -> str:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return f"INT64_C({node.value})"
        if isinstance(node, ast.Name) and node.id in SIZE_NAMES:
            return node.id
        if isinstance(node, ast.BinOp):
            ops = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*"}
            if isinstance(node.op, ast.FloorDiv):
                return f"dg_div({emit(node.left)}, {emit(node.right)})"
            if type(node.op) in ops:
                return f"({emit(node.left)} {ops[type(node.op)]} {emit(node.right)})"
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return f"(-{emit(node.operand)})"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            args = [emit(a) for a in node.args]
            if node.func.id == "cdiv" and len(args) == 2:
                return f"dg_cdiv({args[0]}, {args[1]})"
            if node.func.id in ("min", "max") and len(args) >= 2:
                out = args[-1]
                for a in reversed(args[:-1]):
                    out = f"dg_{node.func.id}({a}, {out})"
                return out
        raise ExportError(f"size rule {rule!r}: cannot express {ast.dump(node)[:60]} in C")

    return emit(tree.body)


def _operands(spec: GemmSpec) -> list[str]:
    """The pointer operands a GEMM function takes besides a, b, c: bias, scales."""
    return list(spec.operands())


def _signature(name: str, spec: GemmSpec, workspace: bool) -> str:
    args = ["const void *a", "const void *b", "void *c", "int64_t M", "float alpha",
            "float beta"]
    args += [f"const void *{op}" for op in _operands(spec)]
    if workspace:
        args.append("void *workspace")
    args.append("CUstream stream")
    return f"int {name}({', '.join(args)})"


def _launch_code(kernel: int, launch_index: int, launch, spec: GemmSpec) -> list[str]:
    """C statements launching one launch of kernel `kernel` at the sizes in scope."""
    lines = [f"  {{  /* {launch.entry} */"]
    values = []  # (C declaration, pointer expression for params[])
    for i, p in enumerate(launch.params):
        v = f"p{i}"
        if p.kind == "ptr":
            src = {"A": "a", "B": "b", "C": "c"}.get(p.name, p.name)
            lines.append(f"    const void *{v} = {src};")
            values.append(f"(void *)&{v}")
        elif p.kind == "workspace":
            lines.append(f"    void *{v} = workspace;")
            values.append(f"(void *)&{v}")
        elif p.kind == "f32":
            if p.name not in ("alpha", "beta"):
                raise ExportError(f"param {p.name!r}: only alpha and beta are f32 scalars here")
            lines.append(f"    float {v} = {p.name};")
            values.append(f"(void *)&{v}")
        elif p.kind in ("i32", "i64"):
            ctype = "int32_t" if p.kind == "i32" else "int64_t"
            lines.append(f"    {ctype} {v} = ({ctype})({rule_to_c(p.value)});")
            values.append(f"(void *)&{v}")
        elif p.kind == "tma":
            if p.dtype not in TMA_TYPES:
                raise ExportError(f"param {p.name!r}: no TMA data type for {p.dtype}")
            dtype, elt = TMA_TYPES[p.dtype]
            rank = len(p.shape)
            src = {"A": "a", "B": "b", "C": "c"}.get(p.operand, p.operand)
            dims = [rule_to_c(r) for r in p.shape]  # outermost first
            lines.append(f"    int64_t {v}_d[{rank}] = {{{', '.join(dims)}}};")
            lines.append(f"    DG_ALIGNED(128) dg_tensor_map {v};")
            enums = [ENUMS[f].index(getattr(p, f)) for f in ("interleave", "swizzle",
                                                               "l2_promotion")]
            box = ", ".join(str(x) for x in p.box)
            es = ", ".join(str(x) for x in p.element_strides)
            lines.append(f"    static const uint32_t {v}_box[{rank}] = {{{box}}};")
            lines.append(f"    static const uint32_t {v}_es[{rank}] = {{{es}}};")
            lines.append(f"    r = dg_encode(&{v}, {dtype}, {elt}, {rank}, {src}, {v}_d, "
                         f"{v}_box, {v}_es, {enums[0]}, {enums[1]}, {enums[2]}, "
                         f"{1 if p.oob_fill == 'nan' else 0});")
            lines.append("    if (r) return r;")
            values.append(f"(void *)&{v}")
        else:
            raise ExportError(f"param {p.name!r}: kind {p.kind!r} not exported")
    grid = ", ".join(f"(unsigned)({rule_to_c(g)})" for g in launch.grid)
    lines.append(f"    unsigned grid[3] = {{{grid}}};")
    lines.append(f"    void *params[{max(1, len(values))}] = {{{', '.join(values) or '0'}}};")
    cluster = launch.cluster or (1, 1, 1)
    lines.append(f"    r = dg_launch(&dg_kernels[{kernel}].fn[{launch_index}], grid, "
                 f"{launch.block[0]}, {launch.block[1]}, {launch.block[2]}, "
                 f"{launch.shared_bytes}, {cluster[0]}, {cluster[1]}, {cluster[2]}, "
                 f"stream, params);")
    lines.append("    if (r) return r;")
    lines.append("  }")
    return lines


def write_export(out: str | os.PathLike, gemms: dict[str, list[KernelArtifact]]) -> Path:
    """Write the C library of `gemms` (C name -> its range kernels, ranges disjoint) into
    `out`; returns the directory. ExportError for what C cannot express."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    kernels = []  # (gemm name, spec, artifact, cubin file)
    decls, bodies, manifest = [], [], []
    for name, arts in gemms.items():
        specs = [GemmSpec.from_dict(a.spec) for a in arts]
        first = specs[0]
        for s in specs:
            if not s.dynamic_m:
                raise ExportError(f"{name}: M must be a range (deepgen.dims.Dim), got {s.M}")
            if (s.N, s.K, s.dtype, s.out_dtype, s.layout, s.epilogue, s.scale) != (
                    first.N, first.K, first.dtype, first.out_dtype, first.layout,
                    first.epilogue, first.scale):
                raise ExportError(f"{name}: its range kernels differ in more than M")
        workspace = any(a.workspace_bytes != 0 for a in arts)
        for a in arts:
            if len(a.launches) > 4:
                raise ExportError(f"{name}: {len(a.launches)} launches, at most 4 exported")
        sig = _signature(name, first, workspace)
        decls.append(f"/* {first.dtype} -> {first.out_dtype}, layout {first.layout}, "
                     f"N={first.N}, K={first.K}, M in "
                     f"{', '.join(range_label(s.M) for s in specs)}; epilogue "
                     f"{first.epilogue} */")
        decls.append(sig + ";")
        body = [sig + " {",
                f"  const int64_t N = {first.N}, K = {first.K}, batch = 1;",
                "  int r = 0;",
                "  (void)N; (void)K; (void)batch; (void)alpha; (void)beta;"]
        for s, art in sorted(zip(specs, arts), key=lambda x: x[0].M.min):
            idx = len(kernels)
            cubin = f"{name}_m{range_label(s.M)}{art.binary_suffix}"
            kernels.append((name, s, art, cubin))
            cond = f"M >= {s.M.min} && M <= {s.M.max}"
            if s.M.multiple_of > 1:
                cond += f" && M % {s.M.multiple_of} == 0"
            body.append(f"  if ({cond}) {{")
            body.append(f"    if (!dg_kernels[{idx}].loaded) return DEEPGEN_ENOTLOADED;")
            for li, launch in enumerate(art.launches):
                body += ["  " + line for line in _launch_code(idx, li, launch, s)]
            body.append("    return 0;")
            body.append("  }")
            manifest.append({"name": name, "cubin": cubin, "spec": art.spec,
                             "config": art.config, "range": range_label(s.M)})
        body.append("  return DEEPGEN_ERANGE;")
        body.append("}")
        bodies.append("\n".join(body))
        if workspace:
            ws = [f"size_t {name}_workspace_size(int64_t M) {{",
                  f"  const int64_t N = {first.N}, K = {first.K}, batch = 1;",
                  "  (void)N; (void)K; (void)batch;"]
            for s, art in zip(specs, arts):
                ws.append(f"  if (M >= {s.M.min} && M <= {s.M.max}) return "
                          f"(size_t)({rule_to_c(art.workspace_bytes)});")
            ws += ["  return 0;", "}"]
            decls.append(f"size_t {name}_workspace_size(int64_t M);")
            bodies.append("\n".join(ws))
    for name, s, art, cubin in kernels:
        atomic_write(root / cubin, art.binary)
    atomic_write(root / HEADER, _header(decls).encode())
    atomic_write(root / SOURCE, _source(kernels, bodies).encode())
    atomic_write(root / "CMakeLists.txt", CMAKE.encode())
    atomic_write(root / "manifest.json", json.dumps(
        {"format": "deepgen-export/1", "kernels": manifest}, indent=1, sort_keys=True).encode())
    return root


def _header(decls: list[str]) -> str:
    return HEADER_TEXT.replace("@DECLS@", "\n".join(decls))


def _source(kernels, bodies: list[str]) -> str:
    table = []
    for name, s, art, cubin in kernels:
        entries = ", ".join(f'"{l.entry}"' for l in art.launches)
        shared = ", ".join(str(l.shared_bytes) for l in art.launches)
        table.append(f'  {{"{cubin}", {len(art.launches)}, {{{entries}}}, {{{shared}}}, '
                     f'0, 0, {{0}}}},')
    text = SOURCE_TEXT.replace("@NKERNELS@", str(max(1, len(kernels))))
    text = text.replace("@KERNELS@", "\n".join(table) or "  {0}")
    return text.replace("@BODIES@", "\n\n".join(bodies))


def export(out: str | os.PathLike, shapes, *, dtype: str = "bf16", layout: str = "NT",
           out_dtype: str | None = None, epilogue=None, max_m: int | None = None,
           target: str = "sm_90a", progress=None) -> Path:
    """Precompile the range table of every (N, K) in `shapes` and write its C library into
    `out` (see the module docstring); returns the directory."""
    entries = precompile(shapes, dtype=dtype, layout=layout, out_dtype=out_dtype,
                         epilogue=epilogue, max_m=max_m, target=target, progress=progress)
    gemms: dict[str, list[KernelArtifact]] = {}
    for e in entries:
        gemms.setdefault(e["name"], []).append(e["artifact"])
    return write_export(out, gemms)


HEADER_TEXT = """\
/* Generated by deepgen export: GEMM range kernels callable from C (see deepgen_gemm.c). */
#ifndef DEEPGEN_GEMM_H
#define DEEPGEN_GEMM_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif
#ifndef CUDA_VERSION /* cuda.h not included: its stream type, declared the same way */
typedef struct CUstream_st *CUstream;
#endif
#define DEEPGEN_ERANGE (-1)     /* M is outside every exported range */
#define DEEPGEN_ENOTLOADED (-2) /* deepgen_load has not run (or failed) */
#define DEEPGEN_ENODRIVER (-3)  /* libcuda.so.1 or an entry point is missing */
#define DEEPGEN_EIO (-4)        /* a cubin could not be read */

/* Loads every exported cubin from `dir` into the current CUDA context (the primary context
   of device 0 when none is current). 0, a CUresult, or a DEEPGEN_E* code. */
int deepgen_load(const char *dir);
void deepgen_unload(void);

@DECLS@

#ifdef __cplusplus
}
#endif
#endif
"""

SOURCE_TEXT = r"""/* Generated by deepgen export. Loads the cubins next to it with the CUDA driver API and
   launches them; needs no CUDA toolkit: the driver's types and entry points are declared
   here and libcuda.so.1 is opened at run time. */
#include "deepgen_gemm.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DG_ALIGNED(n) __attribute__((aligned(n)))
typedef int dg_result;
typedef struct { DG_ALIGNED(128) uint64_t opaque[16]; } dg_tensor_map; /* CUtensorMap */
typedef struct { int id; char pad[4]; union { char bytes[64]; struct { unsigned x, y, z; } cluster; } value; } dg_launch_attribute; /* CUlaunchAttribute */
typedef struct { unsigned grid[3], block[3], shared; CUstream stream; dg_launch_attribute *attrs; unsigned num_attrs; } dg_launch_config; /* CUlaunchConfig */

static struct {
  void *lib;
  dg_result (*init)(unsigned);
  dg_result (*ctx_get_current)(void **);
  dg_result (*ctx_set_current)(void *);
  dg_result (*device_get)(int *, int);
  dg_result (*primary_ctx_retain)(void **, int);
  dg_result (*module_load_data)(void **, const void *);
  dg_result (*module_unload)(void *);
  dg_result (*module_get_function)(void **, void *, const char *);
  dg_result (*func_set_attribute)(void *, int, int);
  dg_result (*launch_kernel)(void *, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, CUstream, void **, void **);
  dg_result (*launch_kernel_ex)(const dg_launch_config *, void *, void **, void **);
  dg_result (*encode_tiled)(dg_tensor_map *, int, uint32_t, void *, const uint64_t *, const uint64_t *, const uint32_t *, const uint32_t *, int, int, int, int);
} dg;

typedef struct {
  const char *file;
  int launches;
  const char *entries[4];
  unsigned shared[4];
  int loaded;
  void *module;
  void *fn[4];
} dg_kernel;

static dg_kernel dg_kernels[@NKERNELS@] = {
@KERNELS@
};

static inline int64_t dg_cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
static inline int64_t dg_div(int64_t a, int64_t b) { return a / b; }
static inline int64_t dg_min(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t dg_max(int64_t a, int64_t b) { return a > b ? a : b; }

#define DG_SYM(field, name) \
  do { *(void **)(&dg.field) = dlsym(dg.lib, name); if (!dg.field) return DEEPGEN_ENODRIVER; } while (0)

static int dg_open(void) {
  if (dg.lib) return 0;
  dg.lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!dg.lib) return DEEPGEN_ENODRIVER;
  DG_SYM(init, "cuInit");
  DG_SYM(ctx_get_current, "cuCtxGetCurrent");
  DG_SYM(ctx_set_current, "cuCtxSetCurrent");
  DG_SYM(device_get, "cuDeviceGet");
  DG_SYM(primary_ctx_retain, "cuDevicePrimaryCtxRetain");
  DG_SYM(module_load_data, "cuModuleLoadData");
  DG_SYM(module_get_function, "cuModuleGetFunction");
  DG_SYM(func_set_attribute, "cuFuncSetAttribute");
  DG_SYM(launch_kernel, "cuLaunchKernel");
  /* optional: only kernels with clusters / TMA descriptors need them */
  *(void **)(&dg.launch_kernel_ex) = dlsym(dg.lib, "cuLaunchKernelEx");
  *(void **)(&dg.encode_tiled) = dlsym(dg.lib, "cuTensorMapEncodeTiled");
  *(void **)(&dg.module_unload) = dlsym(dg.lib, "cuModuleUnload");
  return dg.init(0);
}

static int dg_read(const char *dir, const char *file, char **data) {
  size_t n = strlen(dir) + strlen(file) + 2;
  char *path = malloc(n);
  if (!path) return DEEPGEN_EIO;
  snprintf(path, n, "%s/%s", dir, file);
  FILE *f = fopen(path, "rb");
  free(path);
  if (!f) return DEEPGEN_EIO;
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  *data = malloc((size_t)size + 1);
  if (!*data || fread(*data, 1, (size_t)size, f) != (size_t)size) { fclose(f); free(*data); return DEEPGEN_EIO; }
  (*data)[size] = 0; /* PTX images are text */
  fclose(f);
  return 0;
}

int deepgen_load(const char *dir) {
  int r = dg_open();
  if (r) return r;
  void *ctx = NULL;
  if ((r = dg.ctx_get_current(&ctx))) return r;
  if (!ctx) {
    int dev = 0;
    if ((r = dg.device_get(&dev, 0)) || (r = dg.primary_ctx_retain(&ctx, dev)) ||
        (r = dg.ctx_set_current(ctx)))
      return r;
  }
  for (size_t i = 0; i < sizeof dg_kernels / sizeof dg_kernels[0]; ++i) {
    dg_kernel *k = &dg_kernels[i];
    if (!k->file || k->loaded) continue;
    char *image = NULL;
    if ((r = dg_read(dir, k->file, &image))) return r;
    r = dg.module_load_data(&k->module, image);
    free(image);
    if (r) return r;
    for (int j = 0; j < k->launches; ++j) {
      if ((r = dg.module_get_function(&k->fn[j], k->module, k->entries[j]))) return r;
      if (k->shared[j] > 48 * 1024 &&
          (r = dg.func_set_attribute(k->fn[j], 8 /* MAX_DYNAMIC_SHARED_SIZE_BYTES */, (int)k->shared[j])))
        return r;
    }
    k->loaded = 1;
  }
  return 0;
}

void deepgen_unload(void) {
  for (size_t i = 0; i < sizeof dg_kernels / sizeof dg_kernels[0]; ++i) {
    if (dg_kernels[i].loaded && dg.module_unload) dg.module_unload(dg_kernels[i].module);
    dg_kernels[i].loaded = 0;
  }
}

/* A tiled TMA descriptor of a packed operand: dims outermost first (elements). */
static int dg_encode(dg_tensor_map *map, int dtype, unsigned elt, unsigned rank, const void *ptr,
                     const int64_t *dims, const uint32_t *box, const uint32_t *es,
                     int interleave, int swizzle, int l2, int oob) {
  if (!dg.encode_tiled) return DEEPGEN_ENODRIVER;
  uint64_t d[5], s[4];
  uint64_t stride = elt;
  uint32_t b[5], e[5];
  for (unsigned i = 0; i < rank; ++i) { /* the driver's dimension 0 is the innermost */
    unsigned j = rank - 1 - i;
    d[i] = (uint64_t)dims[j];
    b[i] = box[j];
    e[i] = es[j];
    if (i > 0) s[i - 1] = stride;
    stride *= (uint64_t)dims[j];
  }
  return dg.encode_tiled(map, dtype, rank, (void *)ptr, d, s, b, e, interleave, swizzle, l2, oob);
}

static int dg_launch(void **fn, const unsigned *grid, unsigned bx, unsigned by, unsigned bz,
                     unsigned shared, unsigned cx, unsigned cy, unsigned cz, CUstream stream,
                     void **params) {
  if (cx * cy * cz == 1)
    return dg.launch_kernel(*fn, grid[0], grid[1], grid[2], bx, by, bz, shared, stream, params, NULL);
  if (!dg.launch_kernel_ex) return DEEPGEN_ENODRIVER;
  dg_launch_attribute attr;
  memset(&attr, 0, sizeof attr);
  attr.id = 4; /* CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION */
  attr.value.cluster.x = cx; attr.value.cluster.y = cy; attr.value.cluster.z = cz;
  dg_launch_config config = {{grid[0], grid[1], grid[2]}, {bx, by, bz}, shared, stream, &attr, 1};
  return dg.launch_kernel_ex(&config, *fn, params, NULL);
}

@BODIES@
"""

CMAKE = """\
# Generated by deepgen export: builds the exported GEMMs as a static library.
#   cmake -S . -B build && cmake --build build
# Link it with your program (target_link_libraries(app deepgen_gemm)); at run time call
# deepgen_load("<this directory>") once, then the GEMM functions (deepgen_gemm.h).
cmake_minimum_required(VERSION 3.10)
project(deepgen_gemm C)
set(CMAKE_C_STANDARD 11)
set(CMAKE_POSITION_INDEPENDENT_CODE ON)
add_library(deepgen_gemm STATIC deepgen_gemm.c)
target_include_directories(deepgen_gemm PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(deepgen_gemm PUBLIC ${CMAKE_DL_LIBS})
add_library(deepgen_gemm_shared SHARED deepgen_gemm.c)
target_link_libraries(deepgen_gemm_shared PUBLIC ${CMAKE_DL_LIBS})
set_target_properties(deepgen_gemm_shared PROPERTIES OUTPUT_NAME deepgen_gemm)
"""
