// DeepGen's kernel launcher: loads GPU binaries and launches them on torch's streams.
//
// The driver library (libcuda.so.1, or libamdhip64.so for AMD) is opened with dlopen at run
// time, so building this needs no CUDA toolkit: the few driver types and entry points are
// declared here. Both drivers share one code path through a small table of function pointers
// (Backend); the CUDA driver API and HIP's module API have the same shapes where it matters.
//
// A LaunchPlan is made once per (kernel, device): it holds the CUfunction handles, grids,
// blocks, shared memory, cluster shapes and each launch's signature, so that a call only packs
// values and runs cuLaunchKernel (cuLaunchKernelEx for a cluster) once per launch. Loaded
// modules are cached per (backend, device, binary) for the life of the process (a module must
// outlive any CUDA graph that captured its kernels).
//
// Signatures (runtime/artifact.py): each kernel parameter is a (kind, slot) into the call's
// value store: `ptr` a device pointer (pointers[slot]), `f32` (f32s[slot]), `i32`/`i64`
// (i64s[slot], narrowed for i32), or `tma` (the plan's TMA descriptor number `slot`, a
// 128-byte CUtensorMap encoded with cuTensorMapEncodeTiled from pointers[its pointer slot] and
// passed by value). Descriptors are cached per (descriptor, pointer, dims, strides), so a
// repeated call re-encodes nothing. cuTensorMapEncodeTiled and cuLaunchKernelEx are looked up
// only by plans that need them: an older driver still runs every other kernel.
#include <dlfcn.h>

#include <array>
#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include <nanobind/nanobind.h>
#include <nanobind/stl/array.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

namespace nb = nanobind;
using namespace nb::literals;

namespace {

using Result = int;   // CUresult / hipError_t; 0 is success in both
using Handle = void*;  // CUcontext, CUmodule, CUfunction, CUstream (and HIP's)

// CUfunction_attribute values; hipFunction_attribute numbers them the same way.
enum FuncAttr : int {
  kMaxThreadsPerBlock = 0,
  kSharedSizeBytes = 1,
  kLocalSizeBytes = 3,
  kNumRegs = 4,
  kMaxDynamicSharedSizeBytes = 8,
};
constexpr unsigned kDefaultSharedLimit = 48 * 1024;  // above it, CUDA needs an opt-in

// The argument names of deepgen-kernel/1 (runtime/artifact.py ARG_NAMES) and their slots:
// pointers A, B, C, W are slots 0-3 and f32 scalars alpha, beta slots 0-1, which is also what
// the fast launch(stream, a, b, c, w, alpha, beta) fills.
constexpr std::array<const char*, 6> kArgNames = {"A", "B", "C", "W", "alpha", "beta"};
constexpr size_t kFastPointers = 4, kFastF32 = 2;
constexpr size_t kMaxParams = 32;
constexpr size_t kMaxTmaPerStep = 8;
constexpr size_t kTmaCacheLimit = 1024;  // descriptors per TMA param before the cache resets

enum Kind : uint8_t { kPtr, kF32, kI32, kI64, kTma };
constexpr std::array<const char*, 5> kKindNames = {"ptr", "f32", "i32", "i64", "tma"};

// The CUDA driver types this file needs, declared as cuda.h (12.x/13.x) lays them out.
struct alignas(128) TensorMap {  // CUtensorMap: 128 opaque bytes (cuda.h aligns it to 64/128)
  uint64_t opaque[16];
};
static_assert(sizeof(TensorMap) == 128, "CUtensorMap is 128 bytes");
constexpr int kLaunchAttributeClusterDimension = 4;  // CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION
struct LaunchAttribute {  // CUlaunchAttribute
  int id;
  char pad[4];
  union {
    char bytes[64];
    struct {
      unsigned x, y, z;
    } cluster;
  } value;
};
static_assert(sizeof(LaunchAttribute) == 72, "CUlaunchAttribute is 72 bytes");
struct LaunchConfig {  // CUlaunchConfig
  unsigned grid[3];
  unsigned block[3];
  unsigned shared_bytes;
  Handle stream;
  LaunchAttribute* attrs;
  unsigned num_attrs;
};
static_assert(sizeof(LaunchConfig) == 56, "CUlaunchConfig is 56 bytes");
using TensorMapEncodeTiled = Result (*)(TensorMap*, int, uint32_t, void*, const uint64_t*,
                                        const uint64_t*, const uint32_t*, const uint32_t*, int,
                                        int, int, int);
using LaunchKernelEx = Result (*)(const LaunchConfig*, Handle, void**, void**);

// A failed driver call; translated to deepgen.runtime.errors.DriverError.
struct DriverFailure : std::runtime_error {
  std::string call, name;
  int code;
  DriverFailure(const std::string& message, std::string call_, std::string name_, int code_)
      : std::runtime_error(message), call(std::move(call_)), name(std::move(name_)), code(code_) {}
};

// Driver entry point names, per backend.
struct Symbols {
  const char* library;
  const char* vendor;
  const char* init;
  const char* driver_version;
  const char* device_get;
  const char* primary_ctx_retain;
  const char* ctx_get_current;
  const char* ctx_set_current;
  const char* module_load_data;
  const char* module_get_function;
  const char* func_get_attribute;
  const char* func_set_attribute;  // nullptr: not needed (HIP has no dynamic-shared opt-in)
  const char* launch_kernel;
  const char* error_name;
  const char* error_string;
};

constexpr Symbols kCudaSymbols = {
    "libcuda.so.1", "NVIDIA", "cuInit", "cuDriverGetVersion", "cuDeviceGet",
    "cuDevicePrimaryCtxRetain", "cuCtxGetCurrent", "cuCtxSetCurrent", "cuModuleLoadData",
    "cuModuleGetFunction", "cuFuncGetAttribute", "cuFuncSetAttribute", "cuLaunchKernel",
    "cuGetErrorName", "cuGetErrorString"};
// Untested on hardware: no AMD GPU yet (tests/test_amdgpu.py runs it against a fake
// libamdhip64.so). hipGetErrorName/String return the string directly. HIP's context calls
// are deprecated but still exported; on AMD a "context" stands for a device.
constexpr Symbols kHipSymbols = {
    "libamdhip64.so", "AMD ROCm", "hipInit", "hipDriverGetVersion", "hipDeviceGet",
    "hipDevicePrimaryCtxRetain", "hipCtxGetCurrent", "hipCtxSetCurrent", "hipModuleLoadData",
    "hipModuleGetFunction", "hipFuncGetAttribute", nullptr, "hipModuleLaunchKernel",
    "hipGetErrorName", "hipGetErrorString"};

struct Backend {
  std::string name;  // "cuda" or "hip"
  bool cuda = true;
  Result (*init)(unsigned) = nullptr;
  Result (*driver_version)(int*) = nullptr;
  Result (*device_get)(int*, int) = nullptr;
  Result (*primary_ctx_retain)(Handle*, int) = nullptr;
  Result (*ctx_get_current)(Handle*) = nullptr;
  Result (*ctx_set_current)(Handle) = nullptr;
  Result (*module_load_data)(Handle*, const void*) = nullptr;
  Result (*module_get_function)(Handle*, Handle, const char*) = nullptr;
  Result (*func_get_attribute)(int*, int, Handle) = nullptr;
  Result (*func_set_attribute)(Handle, int, int) = nullptr;
  Result (*launch_kernel)(Handle, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                          unsigned, Handle, void**, void**) = nullptr;
  void* error_name_fn = nullptr;
  void* error_string_fn = nullptr;
  // Looked up on first use (lazy): a driver without them still runs other kernels.
  TensorMapEncodeTiled tensor_map_encode_tiled = nullptr;
  LaunchKernelEx launch_kernel_ex = nullptr;
  void* lib = nullptr;
  const char* library = "";
  std::map<int, Handle> contexts;  // device ordinal -> retained primary context

  // The optional entry point `symbol` (cuTensorMapEncodeTiled, cuLaunchKernelEx), looked up
  // once; DriverFailure when the driver lacks it. Caller holds g_mutex.
  template <class F>
  F optional_symbol(F& slot, const char* symbol, const char* why) {
    if (slot == nullptr) {
      void* p = dlsym(lib, symbol);
      if (p == nullptr)
        throw DriverFailure(std::string(library) + " has no symbol " + symbol + " (" + why +
                                "; driver too old?)", "dlsym", "MISSING_SYMBOL", -1);
      slot = reinterpret_cast<F>(p);
    }
    return slot;
  }

  const char* describe(Result r, bool want_name) const {
    void* fn = want_name ? error_name_fn : error_string_fn;
    const char* s = nullptr;
    if (fn == nullptr) return "?";
    if (cuda) {
      if (reinterpret_cast<Result (*)(Result, const char**)>(fn)(r, &s) != 0) s = nullptr;
    } else {
      s = reinterpret_cast<const char* (*)(Result)>(fn)(r);
    }
    return s ? s : "unknown error";
  }

  void check(Result r, const char* call, const std::string& what = "") const {
    if (r == 0) return;
    std::string name = describe(r, true);
    std::string message = std::string(call) + (what.empty() ? "" : "(" + what + ")") +
                          " failed: " + name + " (" + describe(r, false) + ")";
    throw DriverFailure(message, call, name, r);
  }
};

std::mutex g_mutex;  // guards everything below
std::map<std::string, std::unique_ptr<Backend>> g_backends;
std::map<std::tuple<std::string, int, std::string>, Handle> g_modules;

template <class F>
void bind(void* lib, const Symbols& s, const char* symbol, F& out) {
  void* p = dlsym(lib, symbol);
  if (p == nullptr)
    throw DriverFailure(std::string(s.library) + " has no symbol " + symbol +
                            " (driver too old?)", "dlsym", "MISSING_SYMBOL", -1);
  out = reinterpret_cast<F>(p);
}

// Opens the driver library; on failure, `error` says why. HIP is a user-space runtime and
// torch's ROCm build ships and loads its own copy: take the one already in the process (a
// second copy would keep its own device state), else the usual names (the unversioned
// symlink comes only with ROCm's development packages).
void* open_driver(const Symbols& s, bool hip, std::string& error) {
  constexpr int kFlags = RTLD_NOW | RTLD_LOCAL;
  static const char* const hip_also[] = {"libamdhip64.so.7", "libamdhip64.so.6"};
  if (hip) {
    if (void* lib = dlopen(s.library, kFlags | RTLD_NOLOAD)) return lib;
    for (const char* n : hip_also)
      if (void* lib = dlopen(n, kFlags | RTLD_NOLOAD)) return lib;
  }
  if (void* lib = dlopen(s.library, kFlags)) return lib;
  const char* err = dlerror();
  error = std::string("(") + (err ? err : "?") + ")";
  if (hip) {
    for (const char* n : hip_also)
      if (void* lib = dlopen(n, kFlags)) return lib;
    error += " nor libamdhip64.so.7 / .so.6: install ROCm (or torch for ROCm) or put its "
             "lib directory on LD_LIBRARY_PATH";
  }
  return nullptr;
}

// Opens and initializes the driver once per process. Caller holds g_mutex.
Backend& backend_locked(const std::string& name) {
  auto it = g_backends.find(name);
  if (it != g_backends.end()) return *it->second;
  if (name != "cuda" && name != "hip")
    throw nb::value_error(("backend: must be 'cuda' or 'hip', got '" + name + "'").c_str());
  const Symbols& s = name == "cuda" ? kCudaSymbols : kHipSymbols;
  // Never dlclose: the function pointers live as long as the process.
  std::string error;
  void* lib = open_driver(s, name == "hip", error);
  if (lib == nullptr)
    throw DriverFailure(std::string("no ") + s.vendor + " driver found: cannot open " +
                            s.library + " " + error,
                        "dlopen", "NO_DRIVER", -1);
  auto b = std::make_unique<Backend>();
  b->name = name;
  b->cuda = name == "cuda";
  b->lib = lib;
  b->library = s.library;
  bind(lib, s, s.init, b->init);
  bind(lib, s, s.driver_version, b->driver_version);
  bind(lib, s, s.device_get, b->device_get);
  bind(lib, s, s.primary_ctx_retain, b->primary_ctx_retain);
  bind(lib, s, s.ctx_get_current, b->ctx_get_current);
  bind(lib, s, s.ctx_set_current, b->ctx_set_current);
  bind(lib, s, s.module_load_data, b->module_load_data);
  bind(lib, s, s.module_get_function, b->module_get_function);
  bind(lib, s, s.func_get_attribute, b->func_get_attribute);
  if (s.func_set_attribute != nullptr) bind(lib, s, s.func_set_attribute, b->func_set_attribute);
  bind(lib, s, s.launch_kernel, b->launch_kernel);
  bind(lib, s, s.error_name, b->error_name_fn);
  bind(lib, s, s.error_string, b->error_string_fn);
  b->check(b->init(0), s.init);
  return *g_backends.emplace(name, std::move(b)).first->second;
}

// The device's primary context (the one torch uses), retained once. Caller holds g_mutex.
Handle primary_context_locked(Backend& b, int device) {
  auto it = b.contexts.find(device);
  if (it != b.contexts.end()) return it->second;
  int dev = 0;
  b.check(b.device_get(&dev, device), b.cuda ? "cuDeviceGet" : "hipDeviceGet",
          "device " + std::to_string(device));
  Handle ctx = nullptr;
  b.check(b.primary_ctx_retain(&ctx, dev),
          b.cuda ? "cuDevicePrimaryCtxRetain" : "hipDevicePrimaryCtxRetain");
  b.contexts.emplace(device, ctx);
  return ctx;
}

// Makes `ctx` current for a scope and restores the caller's context after, so that torch's
// notion of the current device is left alone when a kernel runs on another GPU.
class ContextScope {
 public:
  ContextScope(const Backend& b, Handle ctx) : b_(b) {
    b_.check(b_.ctx_get_current(&previous_), b_.cuda ? "cuCtxGetCurrent" : "hipCtxGetCurrent");
    if (previous_ != ctx) {
      b_.check(b_.ctx_set_current(ctx), b_.cuda ? "cuCtxSetCurrent" : "hipCtxSetCurrent");
      switched_ = true;
    }
  }
  ~ContextScope() {
    if (switched_) b_.ctx_set_current(previous_);  // nothing sensible to do on failure
  }
  ContextScope(const ContextScope&) = delete;
  ContextScope& operator=(const ContextScope&) = delete;

 private:
  const Backend& b_;
  Handle previous_ = nullptr;
  bool switched_ = false;
};

// One parameter of a launch: where its value comes from in the call's value store.
struct ParamRef {
  Kind kind;
  uint16_t slot;
  uint8_t store = 0;    // ptr, f32, i64: which value array (0, 1, 2) ...
  uint32_t offset = 0;  // ... and the byte offset of the value in it
};

// A TMA descriptor of a plan: what cuTensorMapEncodeTiled gets besides the pointer, in the
// driver's order (dimension 0 is the innermost).
struct TmaSpec {
  std::string name;
  uint16_t pointer_slot = 0;
  int data_type = 0;  // CUtensorMapDataType
  unsigned element_bytes = 0;
  uint32_t rank = 0;
  std::array<uint64_t, 5> dims{};
  std::array<uint64_t, 4> strides{};  // bytes, of dimensions 1 .. rank-1
  std::array<uint32_t, 5> box{}, element_strides{};
  int interleave = 0, swizzle = 0, l2_promotion = 0, oob_fill = 0;  // the driver's enums
};

// Cache key of an encoded descriptor; box, type and swizzle are fixed per TmaSpec.
struct TmaKey {
  uint64_t pointer;
  std::array<uint64_t, 5> dims;
  std::array<uint64_t, 4> strides;
  bool operator<(const TmaKey& o) const {
    return std::tie(pointer, dims, strides) < std::tie(o.pointer, o.dims, o.strides);
  }
};

// One launch of a plan: the function and everything cuLaunchKernel needs but the values.
struct Step {
  std::string entry;
  Handle function = nullptr;
  std::array<unsigned, 3> grid{}, block{};
  unsigned shared_bytes = 0;
  std::vector<ParamRef> params;  // per kernel parameter, in order
  bool simple = true;            // only ptr, f32 and i64 params: packed without branches
  bool has_cluster = false;
  std::array<unsigned, 3> cluster{1, 1, 1};
  std::array<int, 4> attributes{};  // registers, local bytes, static shared, max threads
};

std::string join_error(const std::string& entry, const std::string& what) {
  return "launch '" + entry + "': " + what;
}

// A deepgen-kernel/1 argument name -> (kind, slot).
ParamRef legacy_ref(const std::string& entry, const std::string& arg) {
  for (size_t i = 0; i < kArgNames.size(); ++i)
    if (arg == kArgNames[i])
      return i < 4 ? ParamRef{kPtr, static_cast<uint16_t>(i)}
                   : ParamRef{kF32, static_cast<uint16_t>(i - 4)};
  throw nb::value_error(join_error(entry, "unknown argument '" + arg +
                                              "' (known: A, B, C, W, alpha, beta)").c_str());
}

ParamRef param_ref(const std::string& entry, nb::handle h) {
  if (nb::isinstance<nb::str>(h)) return legacy_ref(entry, nb::cast<std::string>(h));
  auto [kind, slot] = nb::cast<std::tuple<std::string, int>>(h);
  if (slot < 0 || slot > 0xFFFF)
    throw nb::value_error(join_error(entry, "slot " + std::to_string(slot) +
                                                " out of range").c_str());
  for (size_t k = 0; k < kKindNames.size(); ++k)
    if (kind == kKindNames[k]) return ParamRef{static_cast<Kind>(k), static_cast<uint16_t>(slot)};
  throw nb::value_error(join_error(entry, "unknown parameter kind '" + kind +
                                              "' (kinds: ptr, f32, i32, i64, tma)").c_str());
}

// DeepGen dtype name -> (CUtensorMapDataType, bytes).
std::pair<int, unsigned> tma_data_type(const std::string& where, const std::string& dtype) {
  if (dtype == "f32") return {7, 4};    // FLOAT32
  if (dtype == "f16") return {6, 2};    // FLOAT16
  if (dtype == "bf16") return {9, 2};   // BFLOAT16
  if (dtype == "tf32") return {11, 4};  // TFLOAT32
  if (dtype == "e4m3" || dtype == "e5m2" || dtype == "int8") return {0, 1};  // UINT8
  throw nb::value_error((where + ": no TMA data type for dtype '" + dtype + "'").c_str());
}

int enum_of(const std::string& where, const char* field, long value,
            std::initializer_list<long> allowed) {
  int i = 0;
  for (long a : allowed) {
    if (a == value) return i;
    ++i;
  }
  throw nb::value_error((where + ": " + field + " " + std::to_string(value) +
                         " is not allowed").c_str());
}

// Python-side description of a TMA descriptor (a dict; see LaunchPlan's docstring).
TmaSpec parse_tma(nb::handle h, size_t index) {
  nb::dict d = nb::cast<nb::dict>(h);
  TmaSpec t;
  auto get = [&](const char* key) -> nb::object {
    if (!d.contains(key))
      throw nb::value_error(("tma[" + std::to_string(index) + "]: missing '" + key + "'").c_str());
    return d[key];
  };
  t.name = nb::cast<std::string>(get("name"));
  std::string where = "tma '" + t.name + "'";
  int slot = nb::cast<int>(get("pointer"));
  if (slot < 0 || slot > 0xFFFF) throw nb::value_error((where + ": bad pointer slot").c_str());
  t.pointer_slot = static_cast<uint16_t>(slot);
  auto [type, bytes] = tma_data_type(where, nb::cast<std::string>(get("dtype")));
  t.data_type = type;
  t.element_bytes = bytes;
  auto dims = nb::cast<std::vector<uint64_t>>(get("dims"));      // outermost first
  auto strides = nb::cast<std::vector<uint64_t>>(get("strides"));  // elements, outermost first
  auto box = nb::cast<std::vector<uint32_t>>(get("box"));
  auto es = nb::cast<std::vector<uint32_t>>(get("element_strides"));
  const size_t rank = dims.size();
  if (rank < 1 || rank > 5 || strides.size() != rank || box.size() != rank || es.size() != rank)
    throw nb::value_error((where + ": dims, strides, box and element_strides need the same "
                                   "rank, 1 to 5").c_str());
  if (strides[rank - 1] != 1)
    throw nb::value_error((where + ": the innermost stride must be 1 element").c_str());
  t.rank = static_cast<uint32_t>(rank);
  for (size_t i = 0; i < rank; ++i) {  // reverse: the driver's dimension 0 is the innermost
    size_t j = rank - 1 - i;
    t.dims[i] = dims[j];
    t.box[i] = box[j];
    t.element_strides[i] = es[j];
    if (i > 0) t.strides[i - 1] = strides[j] * bytes;
  }
  t.interleave = enum_of(where, "interleave", nb::cast<long>(get("interleave")), {0, 16, 32});
  t.swizzle = enum_of(where, "swizzle", nb::cast<long>(get("swizzle")), {0, 32, 64, 128});
  t.l2_promotion =
      enum_of(where, "l2_promotion", nb::cast<long>(get("l2_promotion")), {0, 64, 128, 256});
  std::string oob = nb::cast<std::string>(get("oob_fill"));
  if (oob != "none" && oob != "nan")
    throw nb::value_error((where + ": oob_fill must be 'none' or 'nan'").c_str());
  t.oob_fill = oob == "nan" ? 1 : 0;
  return t;
}

class LaunchPlan {
 public:
  // launches: [(entry, grid, block, shared_bytes, params[, cluster])]; params: names of
  // deepgen-kernel/1 or (kind, slot) pairs. tma: descriptor dicts. i64: default i64 store.
  LaunchPlan(const std::string& backend, nb::bytes binary, int device,
             const std::vector<nb::object>& launches, const std::vector<nb::object>& tma,
             std::vector<int64_t> i64)
      : device_(device), i64_defaults_(std::move(i64)) {
    if (launches.empty()) throw nb::value_error("launches: a plan needs at least one launch");
    for (size_t i = 0; i < tma.size(); ++i) tma_.push_back(parse_tma(tma[i], i));
    bool needs_cluster = false;
    for (const nb::object& desc : launches) {
      auto items = nb::cast<std::vector<nb::object>>(desc);
      if (items.size() != 5 && items.size() != 6)
        throw nb::value_error("launches: each is (entry, grid, block, shared_bytes, params"
                              "[, cluster])");
      Step s;
      s.entry = nb::cast<std::string>(items[0]);
      s.grid = nb::cast<std::array<unsigned, 3>>(items[1]);
      s.block = nb::cast<std::array<unsigned, 3>>(items[2]);
      s.shared_bytes = nb::cast<unsigned>(items[3]);
      auto params = nb::cast<std::vector<nb::object>>(items[4]);
      if (params.size() > kMaxParams)
        throw nb::value_error(join_error(s.entry, std::to_string(params.size()) +
                                                      " arguments, at most " +
                                                      std::to_string(kMaxParams)).c_str());
      size_t tmas = 0;
      for (const nb::object& p : params) {
        ParamRef r = param_ref(s.entry, p);
        if (r.kind == kTma) {
          if (r.slot >= tma_.size())
            throw nb::value_error(join_error(s.entry, "tma slot " + std::to_string(r.slot) +
                                                          " but the plan has " +
                                                          std::to_string(tma_.size())).c_str());
          if (++tmas > kMaxTmaPerStep)
            throw nb::value_error(join_error(s.entry, "more than 8 TMA descriptors").c_str());
          need_pointers_ = std::max<size_t>(need_pointers_, tma_[r.slot].pointer_slot + 1);
        }
        if (r.kind == kPtr) need_pointers_ = std::max<size_t>(need_pointers_, r.slot + 1);
        if (r.kind == kF32) need_f32_ = std::max<size_t>(need_f32_, r.slot + 1);
        if (r.kind == kI32 || r.kind == kI64) need_i64_ = std::max<size_t>(need_i64_, r.slot + 1);
        if (r.kind == kPtr) r.store = 0, r.offset = r.slot * sizeof(uint64_t);
        if (r.kind == kF32) r.store = 1, r.offset = r.slot * sizeof(float);
        if (r.kind == kI64) r.store = 2, r.offset = r.slot * sizeof(int64_t);
        if (r.kind == kI32 || r.kind == kTma) s.simple = false;
        s.params.push_back(r);
      }
      if (items.size() == 6 && !items[5].is_none()) {
        s.cluster = nb::cast<std::array<unsigned, 3>>(items[5]);
        s.has_cluster = true;
        needs_cluster = true;
        for (unsigned d : s.cluster)
          if (d == 0) throw nb::value_error(join_error(s.entry, "cluster has a zero").c_str());
        for (int k = 0; k < 3; ++k)
          if (s.grid[k] % s.cluster[k])
            throw nb::value_error(join_error(s.entry, "grid is not a multiple of the "
                                                      "cluster shape").c_str());
      }
      for (unsigned d : s.grid)
        if (d == 0) throw nb::value_error(join_error(s.entry, "grid has a zero").c_str());
      steps_.push_back(std::move(s));
    }
    fast_ = need_pointers_ <= kFastPointers && need_f32_ <= kFastF32 &&
            need_i64_ <= i64_defaults_.size();
    tma_cache_.resize(tma_.size());
    if ((needs_cluster || !tma_.empty()) && backend != "cuda")
      throw nb::value_error("TMA descriptors and clusters need the 'cuda' backend");
    // The bytes object's buffer is NUL-terminated, as cuModuleLoadData needs for PTX.
    std::string image(binary.c_str(), binary.size());
    nb::gil_scoped_release release;  // loading (PTX JIT) can take a while
    std::lock_guard<std::mutex> lock(g_mutex);
    Backend& b = backend_locked(backend);
    backend_ = &b;
    if (!tma_.empty())
      encode_ = b.optional_symbol(b.tensor_map_encode_tiled, "cuTensorMapEncodeTiled",
                                  "TMA descriptors need it");
    if (needs_cluster)
      launch_ex_ = b.optional_symbol(b.launch_kernel_ex, "cuLaunchKernelEx",
                                     "cluster launches need it");
    context_ = primary_context_locked(b, device);
    ContextScope scope(b, context_);
    auto key = std::make_tuple(backend, device, std::move(image));
    auto it = g_modules.find(key);
    if (it == g_modules.end()) {
      Handle module = nullptr;
      b.check(b.module_load_data(&module, std::get<2>(key).data()),
              b.cuda ? "cuModuleLoadData" : "hipModuleLoadData");
      it = g_modules.emplace(std::move(key), module).first;
    }
    for (Step& s : steps_) prepare(b, it->second, s);
  }

  // The fast path for the deepgen-kernel/1 vocabulary: pointers A, B, C, W, f32 alpha, beta
  // (0 for unused pointers); i32/i64 params take the plan's defaults.
  void launch(uintptr_t stream, uintptr_t a, uintptr_t b, uintptr_t c, uintptr_t w,
              float alpha, float beta) const {
    if (!fast_)
      throw nb::value_error("this plan's signature needs launch_args(stream, pointers, f32s"
                            "[, i64s])");
    const uint64_t pointers[kFastPointers] = {a, b, c, w};
    const float scalars[kFastF32] = {alpha, beta};
    run(stream, pointers, scalars, i64_defaults_.data());
  }

  // The general path: the value store by slot (i64s: the plan's defaults when None).
  void launch_args(uintptr_t stream, const std::vector<uint64_t>& pointers,
                   const std::vector<float>& f32s,
                   const std::optional<std::vector<int64_t>>& i64s) const {
    const std::vector<int64_t>& ints = i64s ? *i64s : i64_defaults_;
    if (pointers.size() < need_pointers_ || f32s.size() < need_f32_ || ints.size() < need_i64_)
      throw nb::value_error(("launch_args: the plan takes " + std::to_string(need_pointers_) +
                             " pointers, " + std::to_string(need_f32_) + " f32 and " +
                             std::to_string(need_i64_) + " i64 values; got " +
                             std::to_string(pointers.size()) + ", " +
                             std::to_string(f32s.size()) + ", " + std::to_string(ints.size()))
                                .c_str());
    run(stream, pointers.data(), f32s.data(), ints.data());
  }

  int device() const { return device_; }

  // What the driver says about each launch's function.
  nb::list attributes() const {
    nb::list out;
    for (const Step& s : steps_) {
      nb::dict d;
      d["entry"] = s.entry;
      d["registers"] = s.attributes[0];
      d["local_bytes"] = s.attributes[1];
      d["static_shared_bytes"] = s.attributes[2];
      d["max_threads_per_block"] = s.attributes[3];
      d["shared_bytes"] = s.shared_bytes;
      out.append(d);
    }
    return out;
  }

  // How many descriptors cuTensorMapEncodeTiled has encoded for this plan.
  size_t tma_encodes() const {
    std::lock_guard<std::mutex> lock(tma_mutex_);
    return tma_encodes_;
  }

 private:
  void run(uintptr_t stream, const uint64_t* pointers, const float* f32s,
           const int64_t* i64s) const {
    void* params[kMaxParams];
    const Backend& be = *backend_;
    ContextScope scope(be, context_);
    char* const stores[3] = {reinterpret_cast<char*>(const_cast<uint64_t*>(pointers)),
                             reinterpret_cast<char*>(const_cast<float*>(f32s)),
                             reinterpret_cast<char*>(const_cast<int64_t*>(i64s))};
    for (const Step& s : steps_) {
      if (s.simple) {
        for (size_t i = 0; i < s.params.size(); ++i)
          params[i] = stores[s.params[i].store] + s.params[i].offset;
      } else {
        pack(s, pointers, stores, params);
      }
      Handle h = reinterpret_cast<Handle>(stream);
      Result r;
      if (s.has_cluster) {
        LaunchAttribute attr{};
        attr.id = kLaunchAttributeClusterDimension;
        attr.value.cluster = {s.cluster[0], s.cluster[1], s.cluster[2]};
        LaunchConfig config{{s.grid[0], s.grid[1], s.grid[2]},
                            {s.block[0], s.block[1], s.block[2]},
                            s.shared_bytes, h, &attr, 1};
        r = launch_ex_(&config, s.function, params, nullptr);
        if (r != 0) be.check(r, "cuLaunchKernelEx", s.entry);
      } else {
        r = be.launch_kernel(s.function, s.grid[0], s.grid[1], s.grid[2], s.block[0],
                             s.block[1], s.block[2], s.shared_bytes, h, params, nullptr);
        if (r != 0) be.check(r, be.cuda ? "cuLaunchKernel" : "hipModuleLaunchKernel", s.entry);
      }
    }
  }

  // Fills `params` for a step with i32 or tma params. Their values live in this thread's
  // buffers until the next step's packing (the driver copies them during the launch call);
  // kept off run()'s stack so that the common path's frame stays small.
  void pack(const Step& s, const uint64_t* pointers, char* const stores[3],
            void** params) const {
    static thread_local int32_t narrow[kMaxParams];
    static thread_local TensorMap maps[kMaxTmaPerStep];
    size_t tmas = 0;
    for (size_t i = 0; i < s.params.size(); ++i) {
      const ParamRef r = s.params[i];
      if (r.kind == kI32) {
        int64_t v = reinterpret_cast<const int64_t*>(stores[2])[r.slot];
        if (v < INT32_MIN || v > INT32_MAX)
          throw nb::value_error(join_error(s.entry, "i32 parameter " + std::to_string(i) +
                                                        " gets " + std::to_string(v)).c_str());
        narrow[i] = static_cast<int32_t>(v);
        params[i] = &narrow[i];
      } else if (r.kind == kTma) {
        descriptor(r.slot, pointers[tma_[r.slot].pointer_slot], maps[tmas]);
        params[i] = &maps[tmas++];
      } else {
        params[i] = stores[r.store] + r.offset;
      }
    }
  }

  // Copies the descriptor of TMA `index` for `pointer` into `out`, encoding it on first use.
  void descriptor(size_t index, uint64_t pointer, TensorMap& out) const {
    const TmaSpec& t = tma_[index];
    TmaKey key{pointer, t.dims, t.strides};
    std::lock_guard<std::mutex> lock(tma_mutex_);
    auto& cache = tma_cache_[index];
    auto it = cache.find(key);
    if (it == cache.end()) {
      if (cache.size() >= kTmaCacheLimit) cache.clear();
      TensorMap map{};
      Result r = encode_(&map, t.data_type, t.rank, reinterpret_cast<void*>(pointer),
                         t.dims.data(), t.strides.data(), t.box.data(), t.element_strides.data(),
                         t.interleave, t.swizzle, t.l2_promotion, t.oob_fill);
      if (r != 0) backend_->check(r, "cuTensorMapEncodeTiled", t.name);
      ++tma_encodes_;
      it = cache.emplace(key, map).first;
    }
    out = it->second;
  }

  static void prepare(const Backend& b, Handle module, Step& s) {
    b.check(b.module_get_function(&s.function, module, s.entry.c_str()),
            b.cuda ? "cuModuleGetFunction" : "hipModuleGetFunction", s.entry);
    const char* get = b.cuda ? "cuFuncGetAttribute" : "hipFuncGetAttribute";
    const int which[4] = {kNumRegs, kLocalSizeBytes, kSharedSizeBytes, kMaxThreadsPerBlock};
    for (int i = 0; i < 4; ++i)
      b.check(b.func_get_attribute(&s.attributes[i], which[i], s.function), get, s.entry);
    unsigned threads = s.block[0] * s.block[1] * s.block[2];
    if (threads == 0 || threads > static_cast<unsigned>(s.attributes[3]))
      throw nb::value_error(("launch '" + s.entry + "': block of " + std::to_string(threads) +
                             " threads, the kernel allows 1 to " +
                             std::to_string(s.attributes[3])).c_str());
    // The default limit counts static + dynamic shared memory (MLIR's dynamic-shared-memory
    // symbol alone takes 1 static byte): opt in whenever the sum passes it.
    const auto static_shared = static_cast<size_t>(s.attributes[2]);
    if (s.shared_bytes + static_shared > kDefaultSharedLimit && b.func_set_attribute != nullptr)
      b.check(b.func_set_attribute(s.function, kMaxDynamicSharedSizeBytes,
                                   static_cast<int>(s.shared_bytes)),
              "cuFuncSetAttribute", s.entry + ", MAX_DYNAMIC_SHARED_SIZE_BYTES=" +
                                        std::to_string(s.shared_bytes));
  }

  const Backend* backend_ = nullptr;
  Handle context_ = nullptr;
  int device_;
  std::vector<Step> steps_;
  std::vector<int64_t> i64_defaults_;
  size_t need_pointers_ = 0, need_f32_ = 0, need_i64_ = 0;
  bool fast_ = false;
  std::vector<TmaSpec> tma_;
  TensorMapEncodeTiled encode_ = nullptr;
  LaunchKernelEx launch_ex_ = nullptr;
  mutable std::mutex tma_mutex_;
  mutable std::vector<std::map<TmaKey, TensorMap>> tma_cache_;
  mutable size_t tma_encodes_ = 0;
};

// Raises deepgen.runtime.errors.DriverError(message, call, name, code).
void raise_driver_error(const DriverFailure& e) {
  try {
    nb::object cls = nb::module_::import_("deepgen.runtime.errors").attr("DriverError");
    nb::object exc = cls(e.what(), e.call, e.name, e.code);
    PyErr_SetObject(cls.ptr(), exc.ptr());
  } catch (nb::python_error& pe) {
    pe.restore();  // the errors module itself failed to import: report that
  }
}

}  // namespace

NB_MODULE(_launcher, m) {
  m.doc() = "DeepGen's kernel launcher (driver opened with dlopen at run time)";
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const DriverFailure& e) {
      raise_driver_error(e);
    }
  });

  nb::class_<LaunchPlan>(m, "LaunchPlan",
                         "The launches of one kernel, prepared for one device.")
      .def(nb::init<const std::string&, nb::bytes, int, const std::vector<nb::object>&,
                    const std::vector<nb::object>&, std::vector<int64_t>>(),
           "backend"_a, "binary"_a, "device"_a, "launches"_a, "tma"_a = std::vector<nb::object>(),
           "i64"_a = std::vector<int64_t>(),
           "Load `binary` on `device` (once per process) and look up each launch's entry.\n"
           "launches: [(entry, (gx, gy, gz), (bx, by, bz), shared_bytes, params[, cluster])];\n"
           "params: per kernel parameter, (kind, slot) with kind 'ptr' (pointers[slot]), 'f32'\n"
           "(f32s[slot]), 'i32'/'i64' (i64s[slot]) or 'tma' (descriptor tma[slot]); or a name\n"
           "of A, B, C, W (pointer slots 0-3), alpha, beta (f32 slots 0-1). cluster: (cx, cy,\n"
           "cz) or None (cuLaunchKernelEx with a cluster dimension).\n"
           "tma: [{name, pointer (slot), dtype, dims, strides (elements; both outermost first),\n"
           "box, element_strides, swizzle, interleave, l2_promotion (bytes), oob_fill}].\n"
           "i64: the i64 store used when a call gives none (the static sizes).")
      .def("launch", &LaunchPlan::launch, "stream"_a, "a"_a, "b"_a, "c"_a, "w"_a, "alpha"_a,
           "beta"_a, nb::call_guard<nb::gil_scoped_release>(),
           "Run every launch in order on `stream` (a CUstream as int; 0 = legacy default),\n"
           "pointers A, B, C, W and f32 alpha, beta in slots 0-3 and 0-1 (the fast path).")
      .def("__call__", &LaunchPlan::launch, "stream"_a, "a"_a, "b"_a, "c"_a, "w"_a,
           "alpha"_a, "beta"_a, nb::call_guard<nb::gil_scoped_release>())
      .def("launch_args", &LaunchPlan::launch_args, "stream"_a, "pointers"_a,
           "f32s"_a = std::vector<float>(), "i64s"_a = nb::none(),
           nb::call_guard<nb::gil_scoped_release>(),
           "Run every launch with any signature: pointers, f32s and i64s by slot\n"
           "(i64s None: the plan's i64 defaults).")
      .def_prop_ro("device", &LaunchPlan::device)
      .def_prop_ro("tma_encodes", &LaunchPlan::tma_encodes,
                   "How many TMA descriptors this plan has encoded (cache misses).")
      .def("attributes", &LaunchPlan::attributes,
           "Per launch: registers, local (spill) bytes, static and dynamic shared bytes.");

  m.def(
      "driver_version",
      [](const std::string& backend) {
        std::lock_guard<std::mutex> lock(g_mutex);
        Backend& b = backend_locked(backend);
        int v = 0;
        b.check(b.driver_version(&v), b.cuda ? "cuDriverGetVersion" : "hipDriverGetVersion");
        return v;
      },
      "backend"_a = "cuda", "The driver's version number (CUDA: 1000 * major + 10 * minor).");
  m.def(
      "loaded_modules",
      [] {
        std::lock_guard<std::mutex> lock(g_mutex);
        return g_modules.size();
      },
      "How many (backend, device, binary) modules this process has loaded.");
  m.attr("VERSION") = 2;
}
