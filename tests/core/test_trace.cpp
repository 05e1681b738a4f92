// The per-op tracer (engine/core/trace.h): a tiny U-Net's forward and backward
// traced; the Chrome trace JSON parses, holds one event per op, spans nest
// in time, and the FLOPs of the events add up to the count the bench uses.
#include <doctest/doctest.h>
#include "tests/test_util.h"
#include "tests/tiny_fixtures.h"
#include "engine/core/json_mini.h"
#include "engine/core/ops.h"
#include "engine/core/trace.h"
#include "engine/model/unet.h"
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

using namespace mdps;

namespace {

struct Ev {
  std::string name, cat;
  int64_t ts = 0, dur = 0;  // nanoseconds (the JSON has microseconds with 3 decimals)
  int64_t tid = 0;
  const json::Value* args = nullptr;
  int64_t end() const { return ts + dur; }
  double flops() const {
    const json::Value* f = args->find("flops");
    return f ? f->number : 0.0;
  }
  Shape shape(const char* key) const {
    const json::Value* v = args->find(key);
    REQUIRE(v);
    REQUIRE(v->kind == json::Kind::Array);
    Shape s;
    for (auto& d : v->items) s.push_back(int64_t(d.number));
    return s;
  }
};

int64_t to_ns(const json::Value& v) { return std::llround(v.number * 1000.0); }

// Parses the trace text and checks every event's required fields.
std::vector<Ev> parse_trace(const json::Value& root) {
  REQUIRE(root.kind == json::Kind::Object);
  const json::Value* evs = root.find("traceEvents");
  REQUIRE(evs);
  REQUIRE(evs->kind == json::Kind::Array);
  std::vector<Ev> out;
  for (const json::Value& e : evs->items) {
    REQUIRE(e.kind == json::Kind::Object);
    for (const char* k : {"name", "ph", "pid", "tid", "args"}) REQUIRE_MESSAGE(e.find(k), "event without ", k);
    if (e.find("ph")->str == "M") continue;  // thread names
    CHECK(e.find("ph")->str == "X");
    REQUIRE(e.find("ts"));
    REQUIRE(e.find("dur"));
    Ev ev;
    ev.name = e.find("name")->str;
    ev.cat = e.find("cat") ? e.find("cat")->str : "";
    ev.ts = to_ns(*e.find("ts"));
    ev.dur = to_ns(*e.find("dur"));
    ev.tid = int64_t(e.find("tid")->number);
    ev.args = e.find("args");
    REQUIRE(ev.args->kind == json::Kind::Object);
    CHECK(ev.ts >= 0);
    CHECK(ev.dur >= 0);
    out.push_back(ev);
  }
  return out;
}

// How many times each op runs in one forward, from the parameter list alone.
struct OpCounts {
  int conv = 0, linear = 0, group_norm = 0, attention = 0;
};
OpCounts expected_counts(const UNet& net) {
  auto ends = [](const std::string& s, const std::string& suf) {
    return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
  };
  OpCounts c;
  for (auto& p : net.params()) {
    const std::string& n = p.name;
    if (!ends(n, ".weight")) continue;
    const size_t nd = p.var.value.ndim();
    if (nd == 4 || ends(n, "to_qkv.weight") || ends(n, "proj_out.weight")) ++c.conv;
    if (nd == 2) ++c.linear;
    if (nd == 1) ++c.group_norm;  // every 1-d weight is a GroupNorm's
    if (ends(n, "to_qkv.weight")) ++c.attention;
  }
  return c;
}

int count(const std::vector<Ev>& evs, const std::string& name) {
  int n = 0;
  for (auto& e : evs) n += e.name == name;
  return n;
}

const Ev& only(const std::vector<Ev>& evs, const std::string& name) {
  const Ev* found = nullptr;
  for (auto& e : evs)
    if (e.name == name) {
      REQUIRE_MESSAGE(!found, "more than one ", name);
      found = &e;
    }
  REQUIRE_MESSAGE(found, "no ", name, " event");
  return *found;
}

bool inside(const Ev& inner, const Ev& outer) { return inner.ts >= outer.ts && inner.end() <= outer.end(); }

struct Traced {
  std::vector<Ev> events;
  json::Value root;
  int64_t flops = 0;  // ops::flop_count() over the traced region
};

template <typename F>
Traced trace_run(F&& f) {
  ops::reset_flop_count();
  trace::start();
  f();
  trace::stop();
  Traced t;
  t.flops = ops::flop_count();
  t.root = json::parse(trace::to_json(trace::events()), "trace");
  t.events = parse_trace(t.root);
  return t;
}

void check_conv_flops_from_shapes(const std::vector<Ev>& evs, const char* name, int per_event_products) {
  for (auto& e : evs) {
    if (e.name != name) continue;
    Shape y = e.shape("y"), w = e.shape("w");
    double expect = 2.0 * double(shape_numel(y)) * double(w[1] * w[2] * w[3]);
    CHECK(e.flops() == expect * per_event_products);
  }
}

// The "gemm" kernels inside each `op` event add up to that op's FLOPs.
void check_kernel_flops(const std::vector<Ev>& evs, const char* op) {
  int seen = 0;
  for (auto& o : evs) {
    if (o.name != op) continue;
    ++seen;
    double k = 0;
    for (auto& e : evs)
      if ((e.name == "gemm" || e.name.rfind("attention", 0) == 0) && e.cat == "kernel" && inside(e, o))
        k += e.flops();
    CHECK(k == o.flops());
  }
  CHECK(seen > 0);
}

}  // namespace

TEST_CASE("trace: a U-Net forward, one event per op, spans nest, FLOPs add up") {
  cpu_backend().set_threads(2);  // batch 2 over 2 threads: conv kernels run on a pool thread too
  UNet net(test::tiny_attention_unet_config(), cpu_backend());
  net.init_random(3);
  Tensor x = Tensor::from_vector({2, 3, 16, 16}, test::random_floats(2 * 3 * 16 * 16, 1));
  Tensor t = Tensor::from_vector({2}, {10.f, 500.f});
  Traced tr = trace_run([&] { net.forward(Var(x), t); });
  const auto& evs = tr.events;

  OpCounts want = expected_counts(net);
  CHECK(count(evs, "conv2d") == want.conv);
  CHECK(count(evs, "linear") == want.linear);
  CHECK(count(evs, "group_norm") + count(evs, "group_norm_silu") == want.group_norm);
  CHECK(count(evs, "qkv_attention") == want.attention);
  CHECK(count(evs, "timestep_embedding") == 1);
  CHECK(count(evs, "conv2d.backward") == 0);  // nothing recorded a tape

  // Every op and kernel lies within the forward span; each kernel within an op.
  const Ev& fwd = only(evs, "unet.forward");
  CHECK(fwd.cat == "span");
  for (auto& e : evs) {
    if (&e == &fwd) continue;
    CAPTURE(e.name);
    CHECK(inside(e, fwd));
    if (e.cat == "kernel") {
      bool in_op = false;
      for (auto& c : evs) in_op = in_op || (c.cat == "op" && inside(e, c));
      CHECK(in_op);
    }
  }
  // The ops are sequential on the calling thread: they do not overlap.
  std::vector<const Ev*> ops_main;
  for (auto& e : evs)
    if (e.cat == "op" && e.tid == fwd.tid) ops_main.push_back(&e);
  std::sort(ops_main.begin(), ops_main.end(), [](const Ev* a, const Ev* b) { return a->ts < b->ts; });
  for (size_t i = 1; i < ops_main.size(); ++i) CHECK(ops_main[i]->ts >= ops_main[i - 1]->end());

  // FLOPs: each conv's from its shapes; the op events' sum is the bench's count;
  // the kernels' products sum to the convs' figure.
  check_conv_flops_from_shapes(evs, "conv2d", 1);
  double op_flops = 0, conv_flops = 0, kernel_flops = 0;
  for (auto& e : evs) {
    if (e.cat == "op") op_flops += e.flops();
    if (e.name == "conv2d") conv_flops += e.flops();
    if (e.name == "conv.sgemm" || e.name == "conv.direct" || e.name == "conv.winograd") kernel_flops += e.flops();
  }
  CHECK(tr.flops > 0);
  CHECK(op_flops == double(tr.flops));
  CHECK(kernel_flops == conv_flops);
  // Winograd (one event per band: tile rows of an image, or whole images side
  // by side on the 8x8 level) on the 3x3 stride-1 pad-1 convolutions, the direct
  // kernel once per image on the rest (the 1x1), none through sgemm.
  int winograd_convs = 0;
  for (auto& e : evs)
    if (e.name == "conv2d" && e.shape("w")[2] == 3 && e.shape("x")[3] >= 8 && e.shape("y")[3] == e.shape("x")[3])
      ++winograd_convs;
  CHECK(winograd_convs > 0);
  CHECK(count(evs, "conv.sgemm") == 0);
  CHECK(count(evs, "conv.direct") == 2 * (want.conv - winograd_convs));
  CHECK(count(evs, "conv.winograd") >= winograd_convs);
  check_kernel_flops(evs, "qkv_attention");            // the fused kernel (or its products)
  // Two threads took part (the batch of two is split over the pool).
  std::map<int64_t, int> per_tid;
  for (auto& e : evs) per_tid[e.tid]++;
  CHECK(per_tid.size() == 2);
  cpu_backend().set_threads(0);
}

TEST_CASE("trace: the input-gradient backward, nested in tape.backward, FLOPs add up") {
  UNet net(test::tiny_attention_unet_config(), cpu_backend());
  net.init_random(4);
  Tensor x = Tensor::from_vector({1, 3, 16, 16}, test::random_floats(3 * 16 * 16, 2));
  Tensor t = Tensor::full({1}, 100.f);
  Traced tr = trace_run([&] {
    Tape tape;
    Var xv = make_leaf(x, MemCategory::InputGrad);
    Var loss;
    {
      TapeScope rec(tape);
      loss = ops::frobenius_norm(net.forward(xv, t));
    }
    tape.backward(loss);
    REQUIRE(xv.grad().defined());
  });
  const auto& evs = tr.events;
  OpCounts want = expected_counts(net);
  // Input-only mode: every conv's data gradient, no weight gradient.
  CHECK(count(evs, "conv2d.backward") == want.conv);
  check_conv_flops_from_shapes(evs, "conv2d.backward", 1);  // the data gradient only
  CHECK(count(evs, "conv.sgemm_weight") == 0);
  const Ev& bwd = only(evs, "tape.backward");
  const Ev& fwd = only(evs, "unet.forward");
  CHECK(bwd.ts >= fwd.end());
  for (auto& e : evs) {
    if (e.name.size() > 9 && e.name.compare(e.name.size() - 9, 9, ".backward") == 0) {
      CAPTURE(e.name);
      CHECK(inside(e, bwd));
    }
  }
  check_kernel_flops(evs, "qkv_attention.backward");  // the recomputed weights and four products
  double op_flops = 0;
  for (auto& e : evs)
    if (e.cat == "op") op_flops += e.flops();
  CHECK(op_flops == double(tr.flops));
}

TEST_CASE("trace: off costs nothing recorded; Session writes a file that parses") {
  UNet net(test::tiny_attention_unet_config(), cpu_backend());
  net.init_random(5);
  Tensor x = Tensor::from_vector({1, 3, 16, 16}, test::random_floats(3 * 16 * 16, 3));
  Tensor t = Tensor::full({1}, 7.f);
  trace::start();
  trace::stop();
  net.forward(Var(x), t);
  CHECK(trace::events().empty());

  const std::string dir = test::temp_dir("trace");
  const std::string path = dir + "/run.json";
  {
    trace::Session session(path);
    net.forward(Var(x), t);
  }  // written at the end of the session
  CHECK_FALSE(trace::enabled());
  std::ifstream in(path);
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  auto evs = parse_trace(json::parse(ss.str(), path));
  CHECK(count(evs, "unet.forward") == 1);
  CHECK(count(evs, "conv2d") == expected_counts(net).conv);
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir)) files += e.is_regular_file();
  CHECK(files == 1);  // no temp file left behind

  // A capped trace keeps the first events and counts the rest.
  trace::start(5);
  net.forward(Var(x), t);
  trace::stop();
  CHECK(trace::events().size() == 5);
  const int64_t dropped = trace::dropped_events();
  CHECK(dropped > 0);
  json::Value capped = json::parse(trace::to_json(trace::events(), dropped), "capped trace");
  CHECK(parse_trace(capped).size() == 5);
  CHECK(capped.find("otherData")->find("dropped_events")->number == double(dropped));

  // A path in a missing folder fails at once, before any work.
  CHECK_THROWS_AS(trace::Session(dir + "/no/such/dir/t.json"), Error);
  CHECK_FALSE(trace::enabled());
  // A folder that goes away meanwhile: finish() warns on stderr and never
  // fails the command whose results are already written (issue 19).
  std::filesystem::create_directories(dir + "/gone");
  trace::Session late(dir + "/gone/t.json");
  std::filesystem::remove_all(dir + "/gone");
  CHECK_NOTHROW(late.finish());
  CHECK_FALSE(std::filesystem::exists(dir + "/gone/t.json"));
  CHECK_FALSE(trace::enabled());
}

namespace {
// A device clock whose marks are ticks 1 us apart, so each scope's device
// time is (marks taken inside it + 1) us: checks which marks a scope pairs.
struct TickClock final : trace::DeviceClock {
  int64_t next = 0, clears = 0, cap = 1 << 20;
  int64_t mark() override { return next < cap ? next++ : -1; }
  double elapsed_ns(int64_t from, int64_t to) override {
    REQUIRE(from >= 0);
    REQUIRE(to < next);
    return double(to - from) * 1000.0;
  }
  void clear() override {
    next = 0;
    ++clears;
  }
};
}  // namespace

TEST_CASE("trace: a device clock's marks give each event its device time in args") {
  TickClock clock;
  trace::set_device_clock(&clock);
  trace::start();
  CHECK(clock.clears == 1);  // start() forgets earlier marks
  {
    trace::Scope outer("outer", "span");
    { trace::Scope a("inner_a"); }
    { trace::Scope b("inner_b"); }
  }
  trace::stop();
  std::vector<trace::Event> evs = trace::events();
  REQUIRE(evs.size() == 3);
  std::map<std::string, double> dev;
  for (auto& e : evs) dev[e.name] = e.device_ns;
  CHECK(dev["inner_a"] == 1000.0);  // marks 1 and 2
  CHECK(dev["inner_b"] == 1000.0);  // marks 3 and 4
  CHECK(dev["outer"] == 5000.0);    // marks 0 and 5
  json::Value j = json::parse(trace::to_json(evs), "device trace");
  auto parsed = parse_trace(j);
  for (auto& e : parsed) {
    const json::Value* d = e.args->find("device_us");
    REQUIRE(d);
    CHECK(d->number == doctest::Approx(e.name == "outer" ? 5.0 : 1.0));
  }
  // Resolved once: reading again neither repeats the key nor asks the clock again.
  CHECK(trace::events()[0].args == evs[0].args);

  // When the clock keeps no more marks, scopes get no device time.
  clock.cap = 0;
  trace::start();
  { trace::Scope c("no_marks"); }
  trace::stop();
  REQUIRE(trace::events().size() == 1);
  CHECK(trace::events()[0].device_ns < 0);
  CHECK(trace::events()[0].args.find("device_us") == std::string::npos);
  trace::set_device_clock(nullptr);
  // Without a clock, nothing is marked.
  trace::start();
  { trace::Scope d("host_only"); }
  trace::stop();
  CHECK(trace::events()[0].device_from == -1);
}

TEST_CASE("trace: op totals within a span, per name, device time where every call has one") {
  auto ev = [](const char* name, const char* cat, int64_t start, int64_t dur, uint32_t tid, const char* args,
               double device_ns) {
    trace::Event e;
    e.name = name;
    e.cat = cat;
    e.start_ns = start;
    e.dur_ns = dur;
    e.tid = tid;
    e.args = args;
    e.device_ns = device_ns;
    return e;
  };
  const std::vector<trace::Event> evs = {
      ev("conv2d", "op", 10, 5, 0, "\"flops\": 100, \"bytes\": 8", 50),
      ev("conv2d", "op", 20, 5, 0, "\"flops\": 1e2", 70),
      ev("add", "op", 30, 2, 0, "\"bytes\": 12", -1),  // no device time
      ev("add", "op", 33, 2, 0, "", 4),
      ev("conv.direct", "kernel", 11, 3, 1, "", -1),   // another category
      ev("conv2d", "op", 11, 3, 1, "", 9),             // another thread than the span's
      ev("conv2d", "op", 200, 5, 0, "", 1000),         // after the span
      ev("phase", "span", 5, 40, 0, "", -1),
  };
  std::vector<trace::OpTotal> t = trace::op_totals(evs, "phase");
  REQUIRE(t.size() == 2);
  CHECK(t[0].name == "conv2d");  // 120 ns of device time first
  CHECK(t[0].calls == 2);
  CHECK(t[0].host_ns == 10);
  CHECK(t[0].device_ns == 120);
  CHECK(t[0].flops == 200);
  CHECK(t[0].bytes == 8);
  CHECK(t[1].name == "add");
  CHECK(t[1].calls == 2);
  CHECK(t[1].device_ns == -1);  // one call lacked it: the host time counts
  CHECK(t[1].ns() == 4);
  CHECK(t[1].bytes == 12);
  // No span given: every op event; a span name that never occurs: nothing.
  CHECK(trace::op_totals(evs, "").size() == 2);
  CHECK(trace::op_totals(evs, "")[0].calls == 4);
  CHECK(trace::op_totals(evs, "no such span").empty());
  CHECK(trace::op_totals(evs, "", "kernel").size() == 1);
}

TEST_CASE("trace: spans become profiler ranges, pushed and popped in order, whether or not the trace collects") {
  struct Recorder final : trace::RangeMarker {
    std::vector<std::string> log;
    void push(const char* name) override { log.push_back(std::string("+") + name); }
    void pop() override { log.push_back("-"); }
  } rec;
  trace::set_range_marker(&rec);
  for (bool collecting : {false, true}) {
    CAPTURE(collecting);
    rec.log.clear();
    if (collecting) trace::start();
    {
      trace::Scope round("sampler.round", "span");
      { trace::Scope op("conv2d"); }  // ops are the backend's to mark
      {
        trace::Scope step("sampler.step", "span");
        step.close();  // closing early pops once, the destructor not again
      }
      { trace::Scope k("conv.direct", "kernel"); }
    }
    if (collecting) trace::stop();
    CHECK(rec.log == std::vector<std::string>{"+sampler.round", "+sampler.step", "-", "-"});
  }
  trace::set_range_marker(nullptr);
  rec.log.clear();
  { trace::Scope s("sampler.round", "span"); }
  CHECK(rec.log.empty());
}
