// `--ops`: the per-op breakdown of one traced run (times per op from the
// trace, on a device from CUDA events), as a text table and JSON rows; and
// which implementation paths the backend took.
#pragma once
#include "engine/core/backend.h"
#include "engine/core/trace.h"
#include <functional>
#include <string>
#include <vector>

namespace mdps::bench {

// Runs `body` with the trace on (or inside the --trace session already
// running) and returns the op totals within each of the named spans.
std::vector<std::vector<trace::OpTotal>> traced_op_totals(const std::vector<std::string>& spans,
                                                          const std::function<void()>& body);
// The per-op table of one phase (times divided by `per`, e.g. images) and its
// JSON rows ({"phase", "op", "calls", "ms", "share", "gflops", "gbs", "clock"}).
void print_op_totals(const std::string& phase, const std::vector<trace::OpTotal>& ops, double per,
                     const char* unit, std::string& json_rows);
// Which implementation the backend's ops took (Backend::paths), after the runs
// that built them; nothing where the backend has no choice.
void print_paths(const Backend& be);
// The same as a JSON member `, "paths": "..."` (empty when there is none).
std::string paths_key(const Backend& be);

}  // namespace mdps::bench
