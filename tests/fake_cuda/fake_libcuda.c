/* A stand-in for libcuda.so.1, so the launcher can be tested on machines without a GPU.
 *
 * Two devices; the primary context of device d is the pointer 0x1000 + d. Images starting
 * with "BAD" fail to load; functions whose name contains "missing" are not found. An entry's
 * parameter types are spelled after its last '_' (P = 8-byte pointer, F = f32), which is how
 * cuLaunchKernel here knows what to log. A grid of 999 blocks fails the launch. Everything
 * that happens is appended to a log that tests read with fake_log() and clear with
 * fake_clear(). */
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

CUresult cuLaunchKernel(void *fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                        unsigned by, unsigned bz, unsigned shared, void *stream,
                        void **params, void **extra) {
  Function *f = fn;
  if (current != f->module->ctx) return 201;
  if (shared > 48 * 1024 && (int)shared > f->max_dynamic_shared) return 1;
  if (gx == 999) return 719;
  if (extra != NULL) return 1;
  char line[512];  /* one log_line per launch: threads must not interleave */
  int n = snprintf(line, sizeof line, "launch %s grid=%u,%u,%u block=%u,%u,%u shared=%u "
                   "stream=%p ctx=%p args=", f->name, gx, gy, gz, bx, by, bz, shared, stream,
                   current);
  const char *types = strrchr(f->name, '_');
  for (int i = 0; types && types[i + 1] && n < (int)sizeof line; ++i) {
    if (types[i + 1] == 'P')
      n += snprintf(line + n, sizeof line - n, "%s%#llx", i ? "," : "",
                    *(unsigned long long *)params[i]);
    else
      n += snprintf(line + n, sizeof line - n, "%s%g", i ? "," : "", *(float *)params[i]);
  }
  log_line("%s\n", line);
  return 0;
}

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
