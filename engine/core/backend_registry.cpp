#include "engine/core/backend_registry.h"
#include "engine/core/trace.h"
#include <mutex>

namespace mdps {

namespace {

// Every backend the project has, built here or not, so that a name this
// build lacks gets an error that says how to build it.
struct KnownBackend {
  const char* name;
  const char* label;      // as the error names it
  const char* configure;  // the CMake option that builds it; "" for always built
};
constexpr KnownBackend kKnown[] = {
    {"cpu", "CPU", ""},
    {"cuda", "CUDA", "-DMDPS_CUDA=ON"},
};

const KnownBackend* known(const std::string& name) {
  for (const KnownBackend& k : kKnown)
    if (name == k.name) return &k;
  return nullptr;
}

const BackendEntry* entry(const std::string& name) {
  for (const BackendEntry& e : backend_registry().entries())
    if (e.name == name) return &e;
  return nullptr;
}

}  // namespace

void BackendRegistry::add(const std::string& name, BackendGetter get) {
  MDPS_CHECK(get, "backend registry: backend '", name, "' has no getter");
  for (const BackendEntry& e : entries_) MDPS_CHECK(e.name != name, "backend registry: '", name, "' registered twice");
  entries_.push_back({name, get});
}

const BackendRegistry& backend_registry() {
  static const BackendRegistry* registry = [] {
    auto* r = new BackendRegistry;  // never destroyed: backends outlive static destruction
    register_builtin_backends(*r);
    return r;
  }();
  return *registry;
}

std::vector<std::string> built_backends() {
  std::vector<std::string> names;
  for (const BackendEntry& e : backend_registry().entries()) names.push_back(e.name);
  return names;
}

bool backend_built(const std::string& name) { return entry(name) != nullptr; }

Backend* find_backend(const std::string& name) {
  const BackendEntry* e = entry(name);
  return e ? e->get() : nullptr;
}

std::vector<Backend*> available_backends() {
  std::vector<Backend*> out;
  for (const BackendEntry& e : backend_registry().entries())
    if (Backend* b = e.get()) out.push_back(b);
  return out;
}

std::string backend_unavailable_reason(const std::string& name) {
  const KnownBackend* k = known(name);
  if (!backend_built(name)) {
    if (!k) return "unknown device";
    return cat("this build has no ", k->label, " backend (configure with ", k->configure, ")");
  }
  if (find_backend(name)) return "";
  return cat("no ", k ? k->label : name.c_str(), " device is present");
}

// The backend named by --device, set to --precision (backends are process-wide,
// so the setting is too; set_precision throws for one the backend lacks).
Backend& backend_by_name(const std::string& name, Precision precision) {
  Backend* be = nullptr;
  if (name == "auto") {
    be = find_backend("cuda");
    if (!be) be = find_backend("cpu");
  } else if (!known(name)) {
    throw Error(cat("unknown device '", name, "' (expected cpu, cuda or auto)"));
  } else {
    be = find_backend(name);
    MDPS_CHECK(be, "--device ", name, ": ", backend_unavailable_reason(name));
  }
  MDPS_CHECK(be, "--device ", name, ": no backend is available");
  be->set_precision(precision);
  trace::set_device_clock(be->device_clock());
  trace::set_range_marker(be->range_marker());
  return *be;
}

}  // namespace mdps
