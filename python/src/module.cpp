// mdps._core: the Python binding (pybind11). The package python/mdps wraps it
// with the Pythonic API (keyword settings, dtype conversion, result objects);
// this file only moves data across and keeps three rules:
//
//   - The GIL is released while the engine works; progress and warning
//     callbacks take it back on the calling thread, and also check for a
//     pending signal there, so Ctrl-C stops a long run at the next batch/step.
//   - Engine calls take turns: the CPU worker pool, allocators and CUDA stream
//     are process-wide (include/mdps/mdps.h), and the commands run in-process
//     (run()) do not take the Detector's own lock, so every call here holds
//     one module-wide mutex (taken after the GIL is released: no deadlock).
//   - Engine failures (mdps::Error, the message naming the file or setting at
//     fault) become mdps.Error, a RuntimeError; a bad command-line argument in
//     run() too.
//
// Settings come in as (key, text) pairs with the command-line flag's name
// (python/mdps/_settings.py turns lambda_=0.1 into ("lambda", "0.1")); the
// tables below map the keys that are not protocol settings to their fields,
// every other key goes to the engine's EvalSettings::set(), which knows (and
// validates) every protocol setting: a new setting there needs no change here.
#include "include/mdps/mdps.h"
#include "engine/core/common.h"
#include "engine/io/dataset.h"
#include "engine/io/demo_data.h"
#include "engine/io/image.h"
#include "engine/diffusion/trainer.h"
#include "tools/command.h"
#include "tools/eval_flags.h"
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <sstream>

namespace py = pybind11;

namespace mdps::python {
namespace {

using Pairs = std::vector<std::pair<std::string, std::string>>;

std::mutex& engine_mutex() {
  static std::mutex m;
  return m;
}

// The package's presets folder (set once at import by mdps/__init__.py).
std::string& package_presets() {
  static std::string dir;
  return dir;
}

// Releases the GIL, then takes the engine. While it is held, MDPS_PRESET_DIR
// names the package's presets when the user has not set it, so a preset is
// found by name also when the checkout the wheel was built from is gone.
class EngineSection {
 public:
  EngineSection() {
    const char* env = std::getenv("MDPS_PRESET_DIR");
    if ((!env || !*env) && !package_presets().empty()) {
      ::setenv("MDPS_PRESET_DIR", package_presets().c_str(), 1);
      set_env_ = true;
    }
  }
  ~EngineSection() {
    if (set_env_) ::unsetenv("MDPS_PRESET_DIR");
  }
  EngineSection(const EngineSection&) = delete;
  EngineSection& operator=(const EngineSection&) = delete;

 private:
  py::gil_scoped_release nogil_;
  std::lock_guard<std::mutex> lock_{engine_mutex()};
  bool set_env_ = false;
};

// On the engine's calling thread, GIL released: takes the GIL, raises a
// pending KeyboardInterrupt, calls fn (when given) with args.
template <typename... Args>
void call_back(const py::object& fn, Args&&... args) {
  py::gil_scoped_acquire gil;
  if (PyErr_CheckSignals() != 0) throw py::error_already_set();
  if (!fn.is_none()) fn(std::forward<Args>(args)...);
}

// A key as the Python caller wrote it, for messages.
std::string py_name(std::string key) {
  for (char& c : key)
    if (c == '-') c = '_';
  return key;
}

int to_int(const std::string& key, const std::string& v) {
  char* end = nullptr;
  errno = 0;
  long x = std::strtol(v.c_str(), &end, 10);
  MDPS_CHECK(!v.empty() && end && *end == 0 && errno == 0 && x >= INT32_MIN && x <= INT32_MAX, py_name(key), ": '",
             v, "' is not an integer");
  return int(x);
}

int64_t to_int64(const std::string& key, const std::string& v) {
  char* end = nullptr;
  errno = 0;
  long long x = std::strtoll(v.c_str(), &end, 10);
  MDPS_CHECK(!v.empty() && end && *end == 0 && errno == 0, py_name(key), ": '", v, "' is not an integer");
  return int64_t(x);
}

uint64_t to_uint64(const std::string& key, const std::string& v) {
  char* end = nullptr;
  errno = 0;
  unsigned long long x = std::strtoull(v.c_str(), &end, 10);
  MDPS_CHECK(!v.empty() && v[0] != '-' && end && *end == 0 && errno == 0, py_name(key), ": '", v,
             "' is not a non-negative integer");
  return uint64_t(x);
}

float to_float(const std::string& key, const std::string& v) {
  char* end = nullptr;
  float x = std::strtof(v.c_str(), &end);
  MDPS_CHECK(!v.empty() && end && *end == 0, py_name(key), ": '", v, "' is not a number");
  return x;
}

bool to_bool(const std::string& key, const std::string& v) {
  if (v == "true" || v == "1") return true;
  if (v == "false" || v == "0") return false;
  throw Error(cat(py_name(key), ": '", v, "' is not true or false"));
}

// "1,2,4" -> {1, 2, 4}; "" -> {} (e.g. no attention).
std::vector<int> to_int_list(const std::string& key, const std::string& v) {
  std::vector<int> out;
  std::stringstream ss(v);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(to_int(key, item));
  return out;
}

// ---- Detector -------------------------------------------------------------

// DetectorOptions fields that are not protocol settings, by flag name (as
// `mdps score`'s flags); every other key is an override (EvalSettings::set).
struct DetectorField {
  const char* key;
  void (*set)(DetectorOptions&, const std::string& key, const std::string& value);
};
const DetectorField kDetectorFields[] = {
    {"features-prefix", [](DetectorOptions& o, const std::string&, const std::string& v) { o.features_prefix = v; }},
    {"preset", [](DetectorOptions& o, const std::string&, const std::string& v) { o.preset = v; }},
    {"device", [](DetectorOptions& o, const std::string&, const std::string& v) { o.device = v; }},
    {"precision", [](DetectorOptions& o, const std::string&, const std::string& v) { o.precision = v; }},
    {"threads", [](DetectorOptions& o, const std::string& k, const std::string& v) { o.threads = to_int(k, v); }},
    {"image-threshold",
     [](DetectorOptions& o, const std::string& k, const std::string& v) { o.image_threshold = to_float(k, v); }},
    {"pixel-threshold",
     [](DetectorOptions& o, const std::string& k, const std::string& v) { o.pixel_threshold = to_float(k, v); }},
};

DetectorOptions detector_options(const std::string& model, const std::string& features, const Pairs& settings) {
  DetectorOptions o;
  o.unet_path = model;
  o.features_path = features;
  for (const auto& [key, value] : settings) {
    bool field = false;
    for (const auto& f : kDetectorFields)
      if (key == f.key) {
        f.set(o, key, value);
        field = true;
      }
    if (!field) o.overrides.emplace_back(key, value);
  }
  MDPS_CHECK(!std::isinf(o.image_threshold), "image_threshold: ", o.image_threshold, " is not finite");
  MDPS_CHECK(!std::isinf(o.pixel_threshold), "pixel_threshold: ", o.pixel_threshold, " is not finite");
  return o;
}

// An image as the Python side prepared it: C-contiguous uint8, H x W or H x W x C.
ImageView view_of(const py::array_t<uint8_t, py::array::c_style>& a, size_t index) {
  ImageView v;
  if (a.ndim() != 2 && a.ndim() != 3)
    throw std::invalid_argument(cat("image ", index, ": ", a.ndim(), " dimensions (H x W or H x W x C expected)"));
  v.pixels = a.data();
  v.height = int(a.shape(0));
  v.width = int(a.shape(1));
  v.channels = a.ndim() == 2 ? 1 : int(a.shape(2));
  if (v.channels != 1 && v.channels != 3 && v.channels != 4)
    throw std::invalid_argument(cat("image ", index, ": ", v.channels, " channels (1, 3 or 4 expected)"));
  return v;
}

// One image's result, computed without the GIL.
struct Scored {
  float score = 0.f;
  int anomalous = -1;  // -1: no image threshold
  int size = 0, width = 0, height = 0;
  std::vector<float> model_map, map;
  std::vector<uint8_t> mask;  // at the image's size; empty without a pixel threshold
  std::vector<uint8_t> recon;
};

Scored finish(ScoreResult&& r, int width, int height, float pixel_threshold) {
  Scored s;
  s.score = r.image_score;
  s.anomalous = r.has_decision ? int(r.anomalous) : -1;
  s.size = r.width;
  s.width = width;
  s.height = height;
  s.map = resize_map(r.heat_map, r.width, r.height, width, height);
  // The mask follows the map it is shown with: the same rule as the model-size
  // defect mask (value > pixel threshold), on the map at the image's size.
  if (!std::isnan(pixel_threshold)) {
    s.mask.resize(s.map.size());
    for (size_t i = 0; i < s.map.size(); ++i) s.mask[i] = s.map[i] > pixel_threshold;
  }
  s.model_map = std::move(r.heat_map);
  s.recon.resize(r.reconstruction.size());
  for (size_t i = 0; i < s.recon.size(); ++i)
    s.recon[i] = uint8_t(std::lround(std::min(255.f, std::max(0.f, r.reconstruction[i]))));
  return s;
}

template <typename T>
py::array_t<T> to_array(const std::vector<T>& v, std::vector<py::ssize_t> shape) {
  py::array_t<T> a(shape);
  if (!v.empty()) std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(T));
  return a;
}

// (score, anomalous or None, map HxW, mask HxW bool or None, model map SxS, reconstruction SxSx3)
py::tuple to_python(const Scored& s) {
  py::object anomalous = s.anomalous < 0 ? py::object(py::none()) : py::object(py::bool_(s.anomalous == 1));
  py::object mask = py::none();
  if (!s.mask.empty()) {
    py::array_t<bool> m({py::ssize_t(s.height), py::ssize_t(s.width)});
    std::memcpy(m.mutable_data(), s.mask.data(), s.mask.size());
    mask = m;
  }
  return py::make_tuple(s.score, anomalous, to_array(s.map, {s.height, s.width}), mask,
                        to_array(s.model_map, {s.size, s.size}), to_array(s.recon, {s.size, s.size, 3}));
}

py::list score_batch(Detector& det, const py::list& images, const py::object& progress) {
  std::vector<py::array_t<uint8_t, py::array::c_style>> arrays;
  std::vector<ImageView> views;
  for (size_t i = 0; i < images.size(); ++i) {
    arrays.push_back(images[i].cast<py::array_t<uint8_t, py::array::c_style>>());
    views.push_back(view_of(arrays.back(), i));
  }
  std::vector<Scored> out;
  {
    EngineSection engine;
    std::vector<ScoreResult> res = det.score_batch(views, [&](size_t done, size_t total, double seconds) {
      call_back(progress, done, total, seconds, 0);
    });
    const float t = det.pixel_threshold();
    for (size_t i = 0; i < res.size(); ++i) out.push_back(finish(std::move(res[i]), views[i].width, views[i].height, t));
  }
  py::list result;
  for (const auto& s : out) result.append(to_python(s));
  return result;
}

// ---- training -------------------------------------------------------------

// TrainOptions by `mdps train` flag name.
struct TrainField {
  const char* key;
  void (*set)(TrainOptions&, const std::string& key, const std::string& value);
};
const TrainField kTrainFields[] = {
    {"data", [](TrainOptions& o, const std::string&, const std::string& v) { o.data_dir = v; }},
    {"out", [](TrainOptions& o, const std::string&, const std::string& v) { o.out_path = v; }},
    {"image-size", [](TrainOptions& o, const std::string& k, const std::string& v) { o.image_size = to_int(k, v); }},
    {"base-channels",
     [](TrainOptions& o, const std::string& k, const std::string& v) { o.base_channels = to_int(k, v); }},
    {"channel-mult",
     [](TrainOptions& o, const std::string& k, const std::string& v) { o.channel_mults = to_int_list(k, v); }},
    {"res-blocks", [](TrainOptions& o, const std::string& k, const std::string& v) { o.res_blocks = to_int(k, v); }},
    {"attention",
     [](TrainOptions& o, const std::string& k, const std::string& v) { o.attention = to_int_list(k, v); }},
    {"heads", [](TrainOptions& o, const std::string& k, const std::string& v) { o.heads = to_int(k, v); }},
    {"batch", [](TrainOptions& o, const std::string& k, const std::string& v) { o.batch = to_int(k, v); }},
    {"lr", [](TrainOptions& o, const std::string& k, const std::string& v) { o.lr = to_float(k, v); }},
    {"weight-decay",
     [](TrainOptions& o, const std::string& k, const std::string& v) { o.weight_decay = to_float(k, v); }},
    {"adamw", [](TrainOptions& o, const std::string& k, const std::string& v) { o.adamw = to_bool(k, v); }},
    {"epochs", [](TrainOptions& o, const std::string& k, const std::string& v) { o.epochs = to_int64(k, v); }},
    {"steps", [](TrainOptions& o, const std::string& k, const std::string& v) { o.steps = to_int64(k, v); }},
    {"seed", [](TrainOptions& o, const std::string& k, const std::string& v) { o.seed = to_uint64(k, v); }},
    {"threads", [](TrainOptions& o, const std::string& k, const std::string& v) { o.threads = to_int(k, v); }},
    {"device", [](TrainOptions& o, const std::string&, const std::string& v) { o.device = v; }},
    {"precision", [](TrainOptions& o, const std::string&, const std::string& v) { o.precision = v; }},
    {"checkpoint-every",
     [](TrainOptions& o, const std::string& k, const std::string& v) { o.checkpoint_every = to_int64(k, v); }},
    {"resume", [](TrainOptions& o, const std::string&, const std::string& v) { o.resume = v; }},
    {"skip-bad", [](TrainOptions& o, const std::string& k, const std::string& v) { o.skip_bad = to_bool(k, v); }},
    {"log-csv", [](TrainOptions& o, const std::string&, const std::string& v) { o.log_csv = v; }},
};

py::dict train_model(const Pairs& options, const py::object& progress, const py::object& warn) {
  TrainOptions o;
  for (const auto& [key, value] : options) {
    bool known = false;
    for (const auto& f : kTrainFields)
      if (key == f.key) {
        f.set(o, key, value);
        known = true;
      }
    if (!known) {
      std::string names;
      for (const auto& f : kTrainFields) names += cat(names.empty() ? "" : ", ", py_name(f.key));
      throw Error(cat("train: unknown option '", py_name(key), "' (known: ", names, ")"));
    }
  }
  MDPS_CHECK(!o.data_dir.empty() || !o.resume.empty(), "train: data: give the folder of training images");
  MDPS_CHECK(o.device == "cpu" || o.device == "cuda" || o.device == "auto", "device: '", o.device,
             "' is not cpu, cuda or auto");
  o.on_warning = [&](const std::string& message) { call_back(warn, message); };
  TrainResult r;
  {
    EngineSection engine;
    r = mdps::train(o, [&](const TrainProgress& p) {
      call_back(progress, p.step, p.total_steps, p.epoch, p.first_step, p.loss, p.loss_avg, p.seconds,
                p.images_per_s, p.eta_s, p.done);
    });
  }
  py::dict d;
  d["config"] = r.config.to_json();
  d["first_step"] = r.first_step;
  d["final_step"] = r.final_step;
  d["images"] = r.images;
  d["batch"] = r.batch;
  d["losses"] = r.losses;
  d["final_loss_avg"] = r.final_loss_avg;
  d["seconds"] = r.seconds;
  d["images_per_s"] = r.images_per_s;
  d["out_path"] = r.out_path;
  d["csv_path"] = r.csv_path;
  d["skipped"] = r.skipped;
  return d;
}

// ---- the command line, in-process ----------------------------------------

// As tools/mdps.cpp's main() sets it up.
void configure(CLI::App& app) {
  app.set_version_flag("--version", std::string("mdps ") + MDPS_VERSION);
  app.require_subcommand(1);
  cli::add_all_commands(app);
}
constexpr const char* kAppHelp = "mdps: unsupervised visual anomaly detection with Masked Diffusion Posterior Sampling";

// Sets cli::progress_hook for the scope: every command's progress goes to
// `progress` (pass 0, or 1 and 2 with the dataset mask scope and in a
// calibration, 3 for a calibration's feature memory).
class ProgressHookScope {
 public:
  explicit ProgressHookScope(const py::object& progress) {
    cli::progress_hook() = [&progress](size_t done, size_t total, double seconds, int pass) {
      call_back(progress, done, total, seconds, pass);
    };
  }
  ~ProgressHookScope() { cli::progress_hook() = nullptr; }
  ProgressHookScope(const ProgressHookScope&) = delete;
  ProgressHookScope& operator=(const ProgressHookScope&) = delete;
};

// `mdps ARGS...` in-process for the API (mdps.evaluate, mdps.cli): raises
// mdps.Error for a bad argument or a failure; returns the help text when
// --help or --version was asked for, else "".
std::string run(const std::vector<std::string>& args, const py::object& progress) {
  EngineSection engine;
  ProgressHookScope hook(progress);
  CLI::App app{kAppHelp};
  configure(app);
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 takes them last first
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    std::ostringstream out, err;
    const int code = app.exit(e, out, err);
    if (code == 0) return out.str();
    std::string message = err.str();
    while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
    throw Error(message.empty() ? std::string(e.what()) : message);
  }
  return "";
}

// tools/mdps.cpp's main() for `python -m mdps`: messages on stderr, the exit code back.
int cli_main(const std::vector<std::string>& argv) {
  EngineSection engine;
  CLI::App app{kAppHelp};
  configure(app);
  std::vector<std::string> reversed(argv.rbegin(), argv.rend());
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mdps: error: %s\n", e.what());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace mdps::python

PYBIND11_MODULE(_core, m) {
  using namespace mdps;
  using namespace mdps::python;
  m.doc() = "mdps._core: the engine binding under the mdps package (use the package, not this module).";
  py::register_exception<mdps::Error>(m, "Error", PyExc_RuntimeError);
  m.attr("__version__") = library_version();

  m.def("_set_package_presets", [](const std::string& dir) { package_presets() = dir; });

  py::class_<Detector>(m, "Detector")
      .def(py::init([](const std::string& model, const std::string& features, const Pairs& settings) {
             DetectorOptions o = detector_options(model, features, settings);
             EngineSection engine;
             return std::make_unique<Detector>(o);
           }),
           py::arg("model"), py::arg("features"), py::arg("settings"))
      .def("score_batch", &score_batch, py::arg("images"), py::arg("progress"))
      .def_property_readonly("image_size", &Detector::image_size)
      .def_property_readonly("settings_json", &Detector::settings_json)
      .def_property_readonly("image_threshold", &Detector::image_threshold)
      .def_property_readonly("pixel_threshold", &Detector::pixel_threshold);

  m.def("train", &train_model, py::arg("options"), py::arg("progress"), py::arg("warn"));
  m.def("run", &run, py::arg("args"), py::arg("progress"));
  m.def("cli_main", &cli_main, py::arg("argv"));

  m.def(
      "demo_dataset",
      [](const std::string& root, int size, int train, int test_good, int test_defect, uint64_t seed) {
        DemoDataOptions o;
        o.size = size;
        o.train = train;
        o.test_good = test_good;
        o.test_defect = test_defect;
        o.seed = seed;
        EngineSection engine;
        write_demo_dataset(root, o);
      },
      py::arg("root"), py::arg("size"), py::arg("train"), py::arg("test_good"), py::arg("test_defect"),
      py::arg("seed"));

  m.def("is_category_root", [](const std::string& dir) { return is_category_root(dir); }, py::arg("dir"));

  m.def(
      "load_image",
      [](const std::string& path) {
        Image img;
        {
          py::gil_scoped_release nogil;
          img = load_image(path);
        }
        py::array_t<uint8_t> a({py::ssize_t(img.height), py::ssize_t(img.width), py::ssize_t(3)});
        uint8_t* p = a.mutable_data();
        for (size_t i = 0; i < img.pixels.size(); ++i) p[i] = uint8_t(img.pixels[i]);
        return a;
      },
      py::arg("path"));
}
