// A per-op timeline in the Chrome trace-event format (opens in Perfetto or
// chrome://tracing): `--trace FILE.json` on train, sample, eval and bench.
//
// Ops (engine/core/ops.cpp), their backward passes and coarse spans
// ("unet.forward", "sampler.step", "train.step", ...) open a trace::Scope;
// each records its name, start, duration and thread, plus shapes, bytes and
// FLOPs where known. When tracing is off a Scope costs one relaxed atomic
// load and a branch: nothing is formatted, timed or allocated.
//
// Events are complete events ("ph": "X") with microsecond timestamps from a
// steady clock, written with nanosecond digits so that nesting is exact.
// Categories: "span" (coarse phases), "op" (one differentiable op or its
// backward: the FLOPs of the "op" events add up to ops::flop_count()),
// "kernel" (work inside a backend op, e.g. im2col).
#pragma once
#include "engine/core/tensor.h"
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace mdps::trace {

// Named ranges for an outside profiler (NVTX on CUDA, so that Nsight Systems
// shows the sampler's rounds and steps, the U-Net's forward and backward and
// the train steps on its timeline). Scopes of category "span" push a range
// when they open and pop it when they close, whether or not the trace is
// collecting; "op" scopes do not (the CUDA backend marks each op itself).
class RangeMarker {
 public:
  virtual ~RangeMarker() = default;
  virtual void push(const char* name) = 0;
  virtual void pop() = 0;
};

class Scope;
namespace detail {
extern std::atomic<bool> g_enabled;
extern std::atomic<RangeMarker*> g_range_marker;
bool is_span(const char* cat);
}

// The marker of the backend a command runs on (backend_by_name sets it); null: none.
void set_range_marker(RangeMarker* marker);
inline RangeMarker* range_marker() { return detail::g_range_marker.load(std::memory_order_relaxed); }

inline bool enabled() { return detail::g_enabled.load(std::memory_order_relaxed); }

// Beyond this many events (a long eval would write gigabytes of JSON) new
// ones are counted, not kept; the file says how many were dropped.
constexpr size_t kDefaultMaxEvents = 2000000;

// Starts collecting (clears earlier events); the time origin is now.
void start(size_t max_events = kDefaultMaxEvents);
// Stops collecting; events stay until the next start().
void stop();

// A backend whose ops run asynchronously on a device (CUDA) times them
// itself: every scope asks the clock for a mark when it opens and when it
// closes (a CUDA event recorded on the backend's stream), and the time between
// the two is read when the events are collected. The host's `dur` of such an
// op is its launch time; the device's time goes into args as "device_us".
class DeviceClock {
 public:
  virtual ~DeviceClock() = default;
  // Enqueues a timestamp; its id, or -1 when no more can be kept.
  virtual int64_t mark() = 0;
  // Nanoseconds from mark `from` to mark `to`; waits until both have passed.
  virtual double elapsed_ns(int64_t from, int64_t to) = 0;
  // Forgets every mark (start() calls it); ids count from 0 again.
  virtual void clear() = 0;
};
// The clock of the backend a command runs on (backend_by_name sets it); null:
// none, the host clock is the only one.
void set_device_clock(DeviceClock* clock);
DeviceClock* device_clock();

struct Event {
  std::string name;
  const char* cat = "op";
  int64_t start_ns = 0, dur_ns = 0;  // since start()
  uint32_t tid = 0;                   // small per-thread number, 0 = the first thread seen
  std::string args;                   // JSON members without braces, e.g. "\"flops\": 12"
  // The device clock's marks at the scope's start and end (-1: none); events()
  // turns them into args "device_us" and device_ns.
  int64_t device_from = -1, device_to = -1;
  double device_ns = -1;  // >= 0 once resolved
};

// A copy of the events recorded so far (any thread), in completion order;
// those beyond the cap are counted in dropped_events(). With a device clock
// the device times are resolved first (waiting for the device).
std::vector<Event> events();
int64_t dropped_events();
// {"traceEvents": [...], "displayTimeUnit": "ms", "otherData":
// {"dropped_events": N}} with thread-name metadata.
std::string to_json(const std::vector<Event>& evs, int64_t dropped = 0);
// Writes the collected events to `path` atomically (temp name + rename).
void write(const std::string& path);

// Per op name, the totals of the events of category `cat` that lie within a
// span named `within` (on the span's thread; every span of that name counts;
// empty: all events): calls, host time, device time (when every one of them
// has one, else -1), FLOPs and bytes; largest time first (device time where
// known). What `mdps bench --ops` prints.
struct OpTotal {
  std::string name;
  int64_t calls = 0;
  double host_ns = 0, device_ns = 0, flops = 0, bytes = 0;
  double ns() const { return device_ns >= 0 ? device_ns : host_ns; }
};
std::vector<OpTotal> op_totals(const std::vector<Event>& evs, const std::string& within, const char* cat = "op");

// Times the enclosing block when tracing is on. Annotate with the setters;
// they do nothing when the scope is inactive.
class Scope {
 public:
  explicit Scope(const char* name, const char* cat = "op") {
    if (RangeMarker* r = range_marker(); r && detail::is_span(cat)) {
      r->push(name);
      marker_ = r;
    }
    if (enabled()) begin(name, cat);
  }
  ~Scope() {
    if (active_) end();
    if (marker_) marker_->pop();
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

  bool active() const { return active_; }
  // Ends the span here rather than at the closing brace.
  void close() {
    if (active_) end();
    active_ = false;
    if (marker_) marker_->pop();
    marker_ = nullptr;
  }
  // "in0": [2, 3, 64, 64] ... (the argument names are the keys)
  Scope& shape(const char* key, const Shape& s);
  Scope& num(const char* key, double v);
  Scope& text(const char* key, const std::string& v);
  Scope& flops(int64_t f) { return num("flops", double(f)); }
  Scope& bytes(int64_t b) { return num("bytes", double(b)); }

 private:
  void begin(const char* name, const char* cat);
  void end();
  bool active_ = false;
  const char* name_ = nullptr;
  const char* cat_ = nullptr;
  int64_t start_ns_ = 0;
  int64_t device_from_ = -1;
  RangeMarker* marker_ = nullptr;  // the marker a range was pushed on, to pop it
  std::string args_;
};

// Tracing for the lifetime of a command: start() when `path` is non-empty
// (throws when its folder does not exist), write() at destruction (also when
// the command fails, so a partial timeline shows where it stopped).
class Session {
 public:
  explicit Session(std::string path);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  // Writes now (rather than at destruction); a failure to write is a warning
  // on stderr, never an error of the command.
  void finish();

 private:
  std::string path_;
};

}  // namespace mdps::trace
