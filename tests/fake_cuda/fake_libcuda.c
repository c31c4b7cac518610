/* A stand-in for libcuda.so.1, so the launcher can be tested on machines without a GPU.
 *
 * Two devices; the primary context of device d is the pointer 0x1000 + d. Images starting
 * with "BAD" fail to load; functions whose name contains "missing" are not found. An entry's
 * parameter types are spelled after its last '_' (P = 8-byte pointer, F = f32, I = i32,
 * L = i64, T = a 128-byte CUtensorMap by value), which is how cuLaunchKernel and
 * cuLaunchKernelEx here know what to log. A grid of 999 blocks fails the launch. Everything
 * that happens is appended to a log that tests read with fake_log() and clear with
 * fake_clear().
 *
 * cuTensorMapEncodeTiled logs every argument it gets and writes a descriptor whose first two
 * words are the global address and the encode's number (1, 2, ...); a launch logs a T
 * parameter as tma#<number>@<address> (and "!unaligned" when its storage is not 64-byte
 * aligned). cuLaunchKernelEx logs its config and cluster attribute. Built with
 * -DFAKE_OLD_DRIVER, the library has neither of the two (a driver from before CUDA 12). */
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
typedef struct { void *ctx; int id; } Module;
typedef struct { char name[128]; Module *module; int max_dynamic_shared; } Function;

static __thread void *current;
static int loads;
static char log_buf[1 << 20];
static size_t log_len;
static pthread_mutex_t log_mutex = PTHREAD_MUTEX_INITIALIZER;

static void log_line(const char *fmt, ...) {
  va_list ap;
  pthread_mutex_lock(&log_mutex);
  va_start(ap, fmt);
  int n = vsnprintf(log_buf + log_len, sizeof log_buf - log_len, fmt, ap);
  va_end(ap);
  if (n > 0 && log_len + n < sizeof log_buf) log_len += n;
  pthread_mutex_unlock(&log_mutex);
}

const char *fake_log(void) { return log_buf; }
void fake_clear(void) { log_len = 0; log_buf[0] = 0; }
/* Quiet: launches check their arguments but log nothing (timing the launcher's own cost). */
static int quiet;
void fake_set_quiet(int q) { quiet = q; }

CUresult cuInit(unsigned flags) { return flags == 0 ? 0 : 1; }
CUresult cuDriverGetVersion(int *v) { *v = 12080; return 0; }
CUresult cuDeviceGet(int *dev, int ordinal) {
  if (ordinal < 0 || ordinal >= 2) return 101;
  *dev = ordinal;
  return 0;
}
CUresult cuDevicePrimaryCtxRetain(void **ctx, int dev) {
  *ctx = (void *)(uintptr_t)(0x1000 + dev);
  return 0;
}
CUresult cuCtxGetCurrent(void **ctx) { *ctx = current; return 0; }
CUresult cuCtxSetCurrent(void *ctx) { current = ctx; return 0; }

CUresult cuModuleLoadData(void **module, const void *image) {
  if (strncmp((const char *)image, "BAD", 3) == 0) return 200;
  Module *m = calloc(1, sizeof *m);
  m->ctx = current;
  m->id = ++loads;
  *module = m;
  log_line("load %d ctx=%p\n", m->id, current);
  return 0;
}

CUresult cuModuleGetFunction(void **fn, void *module, const char *name) {
  if (strstr(name, "missing")) return 500;
  Function *f = calloc(1, sizeof *f);
  snprintf(f->name, sizeof f->name, "%s", name);
  f->module = module;
  *fn = f;
  return 0;
}

CUresult cuFuncGetAttribute(int *value, int attr, void *fn) {
  Function *f = fn;
  switch (attr) {
    case 0: *value = strstr(f->name, "small") ? 128 : 1024; return 0;  /* max threads */
    case 1: *value = 256; return 0;                                    /* static shared */
    case 3: *value = 8; return 0;                                      /* local bytes */
    case 4: *value = 42; return 0;                                     /* registers */
    default: return 1;
  }
}

CUresult cuFuncSetAttribute(void *fn, int attr, int value) {
  Function *f = fn;
  if (attr != 8 || value > 227 * 1024) return 1;
  f->max_dynamic_shared = value;
  log_line("setattr %s max_dynamic_shared=%d\n", f->name, value);
  return 0;
}

/* Appends the parameters of `f` (types after the last '_' of its name) to line[n..]. */
static int format_args(char *line, int n, int cap, Function *f, void **params) {
  const char *types = strrchr(f->name, '_');
  for (int i = 0; types && types[i + 1] && n < cap; ++i) {
    const char *sep = i ? "," : "";
    switch (types[i + 1]) {
      case 'P':
        n += snprintf(line + n, cap - n, "%s%#llx", sep, *(unsigned long long *)params[i]);
        break;
      case 'I':
        n += snprintf(line + n, cap - n, "%s%d", sep, *(int *)params[i]);
        break;
      case 'L':
        n += snprintf(line + n, cap - n, "%s%lld", sep, *(long long *)params[i]);
        break;
      case 'T': {
        const unsigned long long *map = params[i];
        n += snprintf(line + n, cap - n, "%stma#%llu@%#llx%s", sep, map[1], map[0],
                      ((uintptr_t)params[i] % 64) ? "!unaligned" : "");
        break;
      }
      default:
        n += snprintf(line + n, cap - n, "%s%g", sep, *(float *)params[i]);
    }
  }
  return n;
}

static CUresult check_launch(Function *f, unsigned gx, unsigned shared, void **extra) {
  if (current != f->module->ctx) return 201;
  if (shared > 48 * 1024 && (int)shared > f->max_dynamic_shared) return 1;
  if (gx == 999) return 719;
  if (extra != NULL) return 1;
  return 0;
}

CUresult cuLaunchKernel(void *fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                        unsigned by, unsigned bz, unsigned shared, void *stream,
                        void **params, void **extra) {
  Function *f = fn;
  CUresult r = check_launch(f, gx, shared, extra);
  if (r || quiet) return r;
  char line[1024];  /* one log_line per launch: threads must not interleave */
  int n = snprintf(line, sizeof line, "launch %s grid=%u,%u,%u block=%u,%u,%u shared=%u "
                   "stream=%p ctx=%p args=", f->name, gx, gy, gz, bx, by, bz, shared, stream,
                   current);
  format_args(line, n, (int)sizeof line, f, params);
  log_line("%s\n", line);
  return 0;
}

#ifndef FAKE_OLD_DRIVER
/* cuda.h's CUlaunchAttribute and CUlaunchConfig, as the launcher declares them. */
typedef struct {
  int id;
  char pad[4];
  union { char bytes[64]; struct { unsigned x, y, z; } cluster; } value;
} LaunchAttribute;
typedef struct {
  unsigned grid[3], block[3], shared;
  void *stream;
  LaunchAttribute *attrs;
  unsigned num_attrs;
} LaunchConfig;

CUresult cuLaunchKernelEx(const LaunchConfig *config, void *fn, void **params, void **extra) {
  Function *f = fn;
  CUresult r = check_launch(f, config->grid[0], config->shared, extra);
  if (r || quiet) return r;
  char line[1024];
  int n = snprintf(line, sizeof line, "launchex %s grid=%u,%u,%u block=%u,%u,%u shared=%u "
                   "stream=%p ctx=%p attrs=%u", f->name, config->grid[0], config->grid[1],
                   config->grid[2], config->block[0], config->block[1], config->block[2],
                   config->shared, config->stream, current, config->num_attrs);
  for (unsigned i = 0; i < config->num_attrs; ++i) {
    const LaunchAttribute *a = &config->attrs[i];
    if (a->id == 4) /* CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION */
      n += snprintf(line + n, sizeof line - n, " cluster=%u,%u,%u", a->value.cluster.x,
                    a->value.cluster.y, a->value.cluster.z);
    else
      n += snprintf(line + n, sizeof line - n, " attr%d", a->id);
  }
  n += snprintf(line + n, sizeof line - n, " args=");
  format_args(line, n, (int)sizeof line, f, params);
  log_line("%s\n", line);
  return 0;
}

static unsigned long long encodes;

static int list_u64(char *out, int cap, const unsigned long long *v, unsigned count) {
  int n = 0;
  for (unsigned i = 0; i < count && n < cap; ++i)
    n += snprintf(out + n, cap - n, "%s%llu", i ? "," : "", v[i]);
  if (count == 0) n += snprintf(out + n, cap - n, "-");
  return n;
}

static int list_u32(char *out, int cap, const unsigned *v, unsigned count) {
  int n = 0;
  for (unsigned i = 0; i < count && n < cap; ++i)
    n += snprintf(out + n, cap - n, "%s%u", i ? "," : "", v[i]);
  return n;
}

CUresult cuTensorMapEncodeTiled(void *map, int type, unsigned rank, void *address,
                                const unsigned long long *dims,
                                const unsigned long long *strides, const unsigned *box,
                                const unsigned *element_strides, int interleave, int swizzle,
                                int l2, int oob) {
  if ((uintptr_t)map % 64 || rank < 1 || rank > 5 || (uintptr_t)address % 16 || !address)
    return 1;
  char d[128], s[128], b[128], e[128];
  list_u64(d, sizeof d, dims, rank);
  list_u64(s, sizeof s, strides, rank - 1);
  list_u32(b, sizeof b, box, rank);
  list_u32(e, sizeof e, element_strides, rank);
  pthread_mutex_lock(&log_mutex);
  unsigned long long id = ++encodes;
  pthread_mutex_unlock(&log_mutex);
  unsigned long long *words = map;
  memset(map, 0xAB, 128);
  words[0] = (uintptr_t)address;
  words[1] = id;
  log_line("encode #%llu type=%d rank=%u addr=%p dims=%s strides=%s box=%s elementstrides=%s "
           "interleave=%d swizzle=%d l2=%d oob=%d\n", id, type, rank, address, d, s, b, e,
           interleave, swizzle, l2, oob);
  return 0;
}
#endif

static const char *name_of(CUresult r) {
  switch (r) {
    case 1: return "CUDA_ERROR_INVALID_VALUE";
    case 101: return "CUDA_ERROR_INVALID_DEVICE";
    case 200: return "CUDA_ERROR_INVALID_IMAGE";
    case 201: return "CUDA_ERROR_INVALID_CONTEXT";
    case 500: return "CUDA_ERROR_NOT_FOUND";
    case 719: return "CUDA_ERROR_LAUNCH_FAILED";
    default: return NULL;
  }
}
CUresult cuGetErrorName(CUresult r, const char **s) { *s = name_of(r); return *s ? 0 : 1; }
CUresult cuGetErrorString(CUresult r, const char **s) {
  *s = name_of(r) ? "fake driver error" : NULL;
  return *s ? 0 : 1;
}
