/* A stand-in for libamdhip64.so: the fake CUDA driver of tests/fake_cuda under HIP's names,
 * so the launcher's HIP path runs on machines without an AMD GPU. Same devices, contexts,
 * log and failure rules; the differences are HIP's: hipGetErrorName/String return the
 * string, there is no cuFuncSetAttribute opt-in (a kernel takes up to 64 KiB of LDS). */
#define cuInit hipInit
#define cuDriverGetVersion hipDriverGetVersion
#define cuDeviceGet hipDeviceGet
#define cuDevicePrimaryCtxRetain hipDevicePrimaryCtxRetain
#define cuCtxGetCurrent hipCtxGetCurrent
#define cuCtxSetCurrent hipCtxSetCurrent
#define cuModuleLoadData hipModuleLoadData
#define cuFuncGetAttribute hipFuncGetAttribute
#define cuModuleGetFunction fake_cuModuleGetFunction
#define cuFuncSetAttribute fake_cuFuncSetAttribute
#define cuLaunchKernel hipModuleLaunchKernel
#define cuGetErrorName fake_cuGetErrorName
#define cuGetErrorString fake_cuGetErrorString
#include "../fake_cuda/fake_libcuda.c"

CUresult hipModuleGetFunction(void **fn, void *module, const char *name) {
  CUresult r = fake_cuModuleGetFunction(fn, module, name);
  if (r == 0) ((Function *)*fn)->max_dynamic_shared = 64 * 1024;
  return r;
}

const char *hipGetErrorName(CUresult r) {
  const char *s = NULL;
  return fake_cuGetErrorName(r, &s) == 0 ? s : "hipErrorUnknown";
}

const char *hipGetErrorString(CUresult r) {
  const char *s = NULL;
  return fake_cuGetErrorString(r, &s) == 0 ? s : "unknown error";
}
