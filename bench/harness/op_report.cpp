#include "bench/harness/op_report.h"
#include "engine/core/json_mini.h"
#include <cstdio>

namespace mdps::bench {

std::vector<std::vector<trace::OpTotal>> traced_op_totals(const std::vector<std::string>& spans,
                                                          const std::function<void()>& body) {
  const bool own = !trace::enabled();
  if (own) trace::start();
  body();
  if (own) trace::stop();
  const std::vector<trace::Event> evs = trace::events();
  std::vector<std::vector<trace::OpTotal>> out;
  for (const std::string& s : spans) out.push_back(trace::op_totals(evs, s));
  return out;
}

void print_op_totals(const std::string& phase, const std::vector<trace::OpTotal>& ops, double per,
                     const char* unit, std::string& json_rows) {
  double total = 0;
  bool device = !ops.empty();
  for (const trace::OpTotal& o : ops) {
    total += o.ns();
    device = device && o.device_ns >= 0;
  }
  const char* clock = device ? "device" : "host";
  std::printf("  %s, per op (%s; %s clock%s):\n", phase.c_str(), unit,
              clock, device ? ": CUDA events around each op" : "");
  std::printf("    %-26s %7s %10s %7s %9s %8s\n", "op", "calls", "ms", "share", "GFLOP/s", "GB/s");
  for (const trace::OpTotal& o : ops) {
    const double sec = o.ns() / 1e9;
    const double gf = sec > 0 ? o.flops / sec / 1e9 : 0, gb = sec > 0 ? o.bytes / sec / 1e9 : 0;
    const double share = total > 0 ? o.ns() / total : 0;
    std::printf("    %-26s %7.0f %10.3f %6.1f%% %9.1f %8.2f\n", o.name.c_str(), double(o.calls) / per,
                o.ns() / 1e6 / per, 100.0 * share, gf, gb);
    json_rows += cat(json_rows.empty() ? "" : ", ", "{\"phase\": ", json::quote(phase), ", \"op\": ",
                     json::quote(o.name), ", \"calls\": ", double(o.calls) / per, ", \"ms\": ", o.ns() / 1e6 / per,
                     ", \"share\": ", share, ", \"gflops\": ", gf, ", \"gbs\": ", gb, ", \"clock\": \"", clock,
                     "\"}");
  }
  std::printf("    %-26s %7s %10.3f\n", "total", "", total / 1e6 / per);
}

void print_paths(const Backend& be) {
  const std::string p = be.paths();
  if (!p.empty()) std::printf("  paths            %s\n", p.c_str());
}
std::string paths_key(const Backend& be) {
  const std::string p = be.paths();
  return p.empty() ? "" : cat(", \"paths\": ", json::quote(p));
}

}  // namespace mdps::bench
