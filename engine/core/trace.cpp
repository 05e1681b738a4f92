#include "engine/core/trace.h"
#include "engine/core/atomic_file.h"
#include "engine/core/json_mini.h"
#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <filesystem>
#include <cstdio>
#include <iostream>
#include <mutex>

namespace mdps::trace {

namespace detail {
std::atomic<bool> g_enabled{false};
std::atomic<RangeMarker*> g_range_marker{nullptr};
bool is_span(const char* cat) { return std::strcmp(cat, "span") == 0; }
}

void set_range_marker(RangeMarker* marker) { detail::g_range_marker.store(marker); }

namespace {

using Clock = std::chrono::steady_clock;

struct Collector {
  std::mutex mu;
  std::vector<Event> events;
  size_t max_events = kDefaultMaxEvents;
  int64_t dropped = 0;
  Clock::time_point origin = Clock::now();
};

Collector& collector() {
  static Collector* c = new Collector;  // never destroyed: pool threads may still trace at exit
  return *c;
}

std::atomic<DeviceClock*> g_device_clock{nullptr};

std::atomic<uint32_t> g_next_tid{0};

// A small stable number per thread (Perfetto draws one track per tid).
uint32_t this_thread_tid() {
  thread_local uint32_t tid = g_next_tid.fetch_add(1);
  return tid;
}

int64_t ns_since(Clock::time_point t0, Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t - t0).count();
}
// Absolute steady-clock nanoseconds; events are made relative to the origin at the end.
int64_t now_ns() { return ns_since(Clock::time_point(), Clock::now()); }

// Microseconds with all nanosecond digits: "12.345"; exact, so nesting
// survives the text form.
std::string micros(int64_t ns) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%lld.%03lld", static_cast<long long>(ns / 1000), static_cast<long long>(ns % 1000));
  return buf;
}

void append_key(std::string& args, const char* key) {
  if (!args.empty()) args += ", ";
  args += json::quote(key);
  args += ": ";
}

}  // namespace

void set_device_clock(DeviceClock* clock) { g_device_clock.store(clock); }
DeviceClock* device_clock() { return g_device_clock.load(); }

void start(size_t max_events) {
  Collector& c = collector();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    if (DeviceClock* d = device_clock()) d->clear();
    c.events.clear();
    c.max_events = max_events;
    c.dropped = 0;
    c.origin = Clock::now();
  }
  detail::g_enabled.store(true);
}

void stop() { detail::g_enabled.store(false); }

std::vector<Event> events() {
  Collector& c = collector();
  std::lock_guard<std::mutex> lock(c.mu);
  if (DeviceClock* d = device_clock()) {
    for (Event& e : c.events) {
      if (e.device_from < 0 || e.device_to < 0 || e.device_ns >= 0) continue;
      e.device_ns = d->elapsed_ns(e.device_from, e.device_to);
      append_key(e.args, "device_us");
      e.args += micros(int64_t(e.device_ns + 0.5));
    }
  }
  return c.events;
}

namespace {
// The number after "key": in an event's args, or 0.
double arg_number(const std::string& args, const char* key) {
  const std::string k = cat("\"", key, "\": ");
  const size_t at = args.find(k);
  return at == std::string::npos ? 0.0 : std::strtod(args.c_str() + at + k.size(), nullptr);
}
}  // namespace

std::vector<OpTotal> op_totals(const std::vector<Event>& evs, const std::string& within, const char* cat) {
  struct Span {
    int64_t from, to;
    uint32_t tid;
  };
  std::vector<Span> spans;
  for (const Event& e : evs)
    if (!within.empty() && e.name == within) spans.push_back({e.start_ns, e.start_ns + e.dur_ns, e.tid});
  auto inside = [&](const Event& e) {
    if (within.empty()) return true;
    for (const Span& s : spans)
      if (e.tid == s.tid && s.from <= e.start_ns && e.start_ns + e.dur_ns <= s.to) return true;
    return false;
  };
  std::vector<OpTotal> out;
  std::map<std::string, size_t> at;
  for (const Event& e : evs) {
    if (std::strcmp(e.cat, cat) != 0 || !inside(e)) continue;
    auto [it, fresh] = at.try_emplace(e.name, out.size());
    if (fresh) out.push_back(OpTotal{e.name});
    OpTotal& t = out[it->second];
    ++t.calls;
    t.host_ns += double(e.dur_ns);
    t.device_ns = (t.device_ns >= 0 && e.device_ns >= 0) ? t.device_ns + e.device_ns : -1;
    t.flops += arg_number(e.args, "flops");
    t.bytes += arg_number(e.args, "bytes");
  }
  std::stable_sort(out.begin(), out.end(), [](const OpTotal& a, const OpTotal& b) { return a.ns() > b.ns(); });
  return out;
}

int64_t dropped_events() {
  Collector& c = collector();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.dropped;
}

std::string to_json(const std::vector<Event>& evs, int64_t dropped) {
  const int pid = int(::getpid());
  std::string out = "{\"traceEvents\": [\n";
  uint32_t max_tid = 0;
  for (const Event& e : evs) max_tid = std::max(max_tid, e.tid);
  bool first = true;
  for (uint32_t t = 0; t <= max_tid && !evs.empty(); ++t) {
    out += cat(first ? "" : ",\n", "{\"name\": \"thread_name\", \"ph\": \"M\", \"pid\": ", pid, ", \"tid\": ", t,
               ", \"args\": {\"name\": ", json::quote(t == 0 ? "main" : cat("thread ", t)), "}}");
    first = false;
  }
  for (const Event& e : evs) {
    out += cat(first ? "" : ",\n", "{\"name\": ", json::quote(e.name), ", \"cat\": \"", e.cat,
               "\", \"ph\": \"X\", \"ts\": ", micros(e.start_ns), ", \"dur\": ", micros(e.dur_ns), ", \"pid\": ", pid,
               ", \"tid\": ", e.tid, ", \"args\": {", e.args, "}}");
    first = false;
  }
  out += cat("\n], \"displayTimeUnit\": \"ms\", \"otherData\": {\"dropped_events\": ", dropped, "}}\n");
  return out;
}

void write(const std::string& path) {
  const int64_t dropped = dropped_events();
  write_text_atomic(path, to_json(events(), dropped));
  if (dropped > 0)
    std::cerr << "mdps: warning: " << path << ": the trace kept the first " << collector().max_events
              << " events and dropped " << dropped << "\n";
}

void Scope::begin(const char* name, const char* cat) {
  active_ = true;
  name_ = name;
  cat_ = cat;
  // The device's mark first and the host clock after it, so that the host
  // duration leaves out the cost of the marks.
  DeviceClock* d = device_clock();
  device_from_ = d ? d->mark() : -1;
  start_ns_ = now_ns();
}

void Scope::end() {
  active_ = false;
  const int64_t end_ns = now_ns();
  Event e;
  if (device_from_ >= 0) {
    if (DeviceClock* d = device_clock()) {
      e.device_from = device_from_;
      e.device_to = d->mark();
    }
  }
  e.name = name_;
  e.cat = cat_;
  e.dur_ns = end_ns - start_ns_;
  e.tid = this_thread_tid();
  e.args = std::move(args_);
  Collector& c = collector();
  std::lock_guard<std::mutex> lock(c.mu);
  e.start_ns = start_ns_ - ns_since(Clock::time_point(), c.origin);
  // A scope that began before start() moved the origin is dropped.
  if (e.start_ns < 0) return;
  if (c.events.size() < c.max_events) {
    c.events.push_back(std::move(e));
  } else {
    ++c.dropped;
  }
}

Scope& Scope::shape(const char* key, const Shape& s) {
  if (!active_) return *this;
  append_key(args_, key);
  args_ += "[";
  for (size_t i = 0; i < s.size(); ++i) args_ += cat(i ? ", " : "", s[i]);
  args_ += "]";
  return *this;
}

Scope& Scope::num(const char* key, double v) {
  if (!active_) return *this;
  append_key(args_, key);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  args_ += buf;
  return *this;
}

Scope& Scope::text(const char* key, const std::string& v) {
  if (!active_) return *this;
  append_key(args_, key);
  args_ += json::quote(v);
  return *this;
}

Session::Session(std::string path) : path_(std::move(path)) {
  if (path_.empty()) return;
  // Fail before the command's work, not after it.
  std::filesystem::path dir = std::filesystem::path(path_).parent_path();
  MDPS_CHECK(dir.empty() || std::filesystem::is_directory(dir), "--trace '", path_, "': the folder '", dir.string(),
             "' does not exist");
  start();
}

void Session::finish() {
  if (path_.empty()) return;
  stop();
  std::string p = path_;
  path_.clear();
  // The trace is a diagnostic: failing to write it never fails the command
  // whose results are already written (docs/cli.md).
  try {
    write(p);
  } catch (const std::exception& e) {
    std::cerr << "mdps: warning: --trace: the trace was not written: " << e.what() << "\n";
  }
}

Session::~Session() {
  if (path_.empty()) return;
  try {
    finish();
  } catch (const std::exception& e) {
    // Destructors run while an error unwinds: report, never throw.
    std::cerr << "mdps: warning: trace not written: " << e.what() << "\n";
  }
}

}  // namespace mdps::trace
