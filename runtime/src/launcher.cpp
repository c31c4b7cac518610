// DeepGen's kernel launcher: loads GPU binaries and launches them on torch's streams.
//
// The driver library (libcuda.so.1, or libamdhip64.so for AMD) is opened with dlopen at run
// time, so building this needs no CUDA toolkit: the few driver types and entry points are
// declared here. Both drivers share one code path through a small table of function pointers
// (Backend); the CUDA driver API and HIP's module API have the same shapes where it matters.
//
// A LaunchPlan is made once per (kernel, device): it holds the CUfunction handles, grids,
// blocks, shared memory and argument layout, so that a call only packs six values and runs
// cuLaunchKernel once per launch. Loaded modules are cached per (backend, device, binary) for
// the life of the process (a module must outlive any CUDA graph that captured its kernels).
#include <dlfcn.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include <nanobind/nanobind.h>
#include <nanobind/stl/array.h>
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

// The argument vocabulary of runtime/artifact.py, in slot order.
constexpr std::array<const char*, 6> kArgNames = {"A", "B", "C", "W", "alpha", "beta"};
constexpr size_t kMaxParams = 32;

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
  std::map<int, Handle> contexts;  // device ordinal -> retained primary context

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

// One launch of a plan: the function and everything cuLaunchKernel needs but the values.
struct Step {
  std::string entry;
  Handle function = nullptr;
  std::array<unsigned, 3> grid{}, block{};
  unsigned shared_bytes = 0;
  std::vector<uint8_t> slots;  // per kernel parameter: index into kArgNames
  std::array<int, 4> attributes{};  // registers, local bytes, static shared, max threads
};

// Python-side description of a launch: (entry, grid, block, shared_bytes, arg names).
using LaunchDesc = std::tuple<std::string, std::array<unsigned, 3>, std::array<unsigned, 3>,
                              unsigned, std::vector<std::string>>;

uint8_t slot_of(const std::string& entry, const std::string& arg) {
  for (size_t i = 0; i < kArgNames.size(); ++i)
    if (arg == kArgNames[i]) return static_cast<uint8_t>(i);
  throw nb::value_error(("launch '" + entry + "': unknown argument '" + arg +
                         "' (known: A, B, C, W, alpha, beta)").c_str());
}

class LaunchPlan {
 public:
  LaunchPlan(const std::string& backend, nb::bytes binary, int device,
             const std::vector<LaunchDesc>& launches)
      : device_(device) {
    if (launches.empty()) throw nb::value_error("launches: a plan needs at least one launch");
    for (const auto& [entry, grid, block, shared, args] : launches) {
      Step s;
      s.entry = entry;
      s.grid = grid;
      s.block = block;
      s.shared_bytes = shared;
      if (args.size() > kMaxParams)
        throw nb::value_error(("launch '" + entry + "': " + std::to_string(args.size()) +
                               " arguments, at most " + std::to_string(kMaxParams)).c_str());
      for (const auto& a : args) s.slots.push_back(slot_of(entry, a));
      for (unsigned d : grid)
        if (d == 0) throw nb::value_error(("launch '" + entry + "': grid has a zero").c_str());
      steps_.push_back(std::move(s));
    }
    // The bytes object's buffer is NUL-terminated, as cuModuleLoadData needs for PTX.
    std::string image(binary.c_str(), binary.size());
    nb::gil_scoped_release release;  // loading (PTX JIT) can take a while
    std::lock_guard<std::mutex> lock(g_mutex);
    Backend& b = backend_locked(backend);
    backend_ = &b;
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

  // Runs every launch in order on `stream`; pointers are device addresses (0 when unused).
  void launch(uintptr_t stream, uintptr_t a, uintptr_t b, uintptr_t c, uintptr_t w,
              float alpha, float beta) const {
    const uint64_t pointers[4] = {a, b, c, w};
    const float scalars[2] = {alpha, beta};
    void* values[6] = {(void*)&pointers[0], (void*)&pointers[1], (void*)&pointers[2],
                       (void*)&pointers[3], (void*)&scalars[0], (void*)&scalars[1]};
    void* params[kMaxParams];
    const Backend& be = *backend_;
    ContextScope scope(be, context_);
    for (const Step& s : steps_) {
      for (size_t i = 0; i < s.slots.size(); ++i) params[i] = values[s.slots[i]];
      Result r = be.launch_kernel(s.function, s.grid[0], s.grid[1], s.grid[2], s.block[0],
                                  s.block[1], s.block[2], s.shared_bytes,
                                  reinterpret_cast<Handle>(stream), params, nullptr);
      if (r != 0) be.check(r, be.cuda ? "cuLaunchKernel" : "hipModuleLaunchKernel", s.entry);
    }
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

 private:
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
      .def(nb::init<const std::string&, nb::bytes, int, const std::vector<LaunchDesc>&>(),
           "backend"_a, "binary"_a, "device"_a, "launches"_a,
           "Load `binary` on `device` (once per process) and look up each launch's entry.\n"
           "launches: [(entry, (gx, gy, gz), (bx, by, bz), shared_bytes, [arg names])]")
      .def("launch", &LaunchPlan::launch, "stream"_a, "a"_a, "b"_a, "c"_a, "w"_a, "alpha"_a,
           "beta"_a, nb::call_guard<nb::gil_scoped_release>(),
           "Run every launch in order on `stream` (a CUstream as int; 0 = legacy default).")
      .def("__call__", &LaunchPlan::launch, "stream"_a, "a"_a, "b"_a, "c"_a, "w"_a,
           "alpha"_a, "beta"_a, nb::call_guard<nb::gil_scoped_release>())
      .def_prop_ro("device", &LaunchPlan::device)
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
  m.attr("VERSION") = 1;
}
