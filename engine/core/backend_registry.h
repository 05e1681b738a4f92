// The backend registry: the one place that knows which backends this build
// has and turns `--device auto|cpu|cuda` into one of them.
//
// Which backends exist is decided by CMake, not by the preprocessor: the
// top-level CMakeLists.txt lists them (MDPS_BACKENDS: "cpu", plus "cuda" when
// the CUDA backend or its CPU stand-in is built) and generates the one
// function below, register_builtin_backends(), from
// engine/core/backend_list.cpp.in. The registry calls it once, on first use
// (an explicit call, not self-registering objects, which a static archive
// would drop). No other file asks the preprocessor whether CUDA is built.
//
// Each entry is a name and a getter returning the backend's process-wide
// instance, or null when the backend is built but cannot run here (no CUDA
// device). Backends never depend on the registry; the registry depends on
// nothing but the Backend interface, so the libraries link without a cycle.
#pragma once
#include "engine/core/backend.h"
#include <string>
#include <vector>

namespace mdps {

// The backend's instance, or null when it is built but unusable here.
using BackendGetter = Backend* (*)();

struct BackendEntry {
  std::string name;  // what --device names it: "cpu", "cuda"
  BackendGetter get = nullptr;
};

class BackendRegistry {
 public:
  // Adds a backend; a name registered twice throws.
  void add(const std::string& name, BackendGetter get);
  // In registration order, "cpu" first.
  const std::vector<BackendEntry>& entries() const { return entries_; }

 private:
  std::vector<BackendEntry> entries_;
};

// Defined by the generated list (build tree, backend_list.cpp): registers
// every backend the build has. Called by the registry only.
void register_builtin_backends(BackendRegistry& r);

// The registry, filled on first use.
const BackendRegistry& backend_registry();
// The names of the backends this build has ("cpu", and "cuda" when built).
std::vector<std::string> built_backends();
// True when this build has a backend of that name (usable or not).
bool backend_built(const std::string& name);
// The backend named, or null when the build lacks it or it cannot run here
// (backend_unavailable_reason says which).
Backend* find_backend(const std::string& name);
// Every backend of this build that can run here, "cpu" first.
std::vector<Backend*> available_backends();
// Why find_backend(name) is null: "this build has no CUDA backend (configure
// with -DMDPS_CUDA=ON)", "no CUDA device is present" or "unknown device";
// "" when the backend is available.
std::string backend_unavailable_reason(const std::string& name);

// "cpu", "cuda" or "auto" (cuda when available, else cpu) -> a backend, set
// to `precision`; throws `--device NAME: <reason>` for one that is not
// available and for a precision the backend lacks. The trace's device clock
// and range marker become the chosen backend's (none for the CPU).
Backend& backend_by_name(const std::string& name, Precision precision = Precision::FP32);

}  // namespace mdps
