// The public Detector (include/mdps/mdps.h) over the engine: options become
// EvalSettings the way `mdps score` builds them, pixels become the model's
// [-1,1] tensors through the same Pillow-exact resize, and scoring is the
// evaluation protocol (engine/eval/evaluate.h) on the images given.
#include "include/mdps/mdps.h"
#include "engine/detect/bundle.h"
#include "engine/core/backend_registry.h"
#include "engine/eval/evaluate.h"
#include "engine/io/image.h"
#include "engine/detect/presets.h"
#include "api/detector_settings.h"
#include "engine/core/option_checks.h"
#include <algorithm>
#include <cmath>
#include <mutex>

namespace mdps {
namespace {

// The CPU worker pool, the allocators and the CUDA stream are process-wide.
std::mutex& engine_lock() {
  static std::mutex m;
  return m;
}

// 8-bit pixels of any layout -> 3-channel floats at size x size, as
// load_model_image would give for the same pixels in a file.
Image to_model_image(const ImageView& v, int size, size_t index) {
  MDPS_CHECK(v.pixels != nullptr, "image ", index, ": pixels are null");
  MDPS_CHECK(v.width > 0 && v.height > 0, "image ", index, ": size ", v.width, "x", v.height, " is empty");
  MDPS_CHECK(v.channels == 1 || v.channels == 3 || v.channels == 4, "image ", index, ": ", v.channels,
             " channels (1, 3 or 4 expected)");
  const int64_t packed = int64_t(v.width) * v.channels;
  const int64_t stride = v.stride_bytes == 0 ? packed : v.stride_bytes;
  MDPS_CHECK(stride >= packed, "image ", index, ": stride ", stride, " bytes is less than a row (", packed, ")");
  Image img(v.width, v.height, 3);
  for (int y = 0; y < v.height; ++y) {
    const uint8_t* row = v.pixels + y * stride;
    for (int x = 0; x < v.width; ++x) {
      const uint8_t* px = row + int64_t(x) * v.channels;
      for (int c = 0; c < 3; ++c) img.at(x, y, c) = float(v.channels == 1 ? px[0] : px[c]);
    }
  }
  return v.width == size && v.height == size ? img : resize_bilinear(img, size, size, true);
}

}  // namespace

const char* library_version() { return MDPS_VERSION; }

struct Detector::Impl {
  Backend* backend = nullptr;
  std::unique_ptr<UNet> net;
  std::unique_ptr<ResNetFeatures> features;
  EvalSettings settings;
  float image_threshold = NAN, pixel_threshold = NAN;
};

Detector::Detector(const DetectorOptions& o) : impl_(std::make_unique<Impl>()) {
  MDPS_CHECK(!o.unet_path.empty(), "DetectorOptions.unet_path: no U-Net model given");
  check_threads(o.threads, "DetectorOptions.threads");
  std::lock_guard<std::mutex> lock(engine_lock());
  Impl& d = *impl_;
  d.backend = &backend_by_name(o.device, parse_precision(o.precision));
  if (o.threads > 0) d.backend->set_threads(o.threads);
  // The same loader as the command line's --model / --features.
  DetectorFiles files = open_detector(o.unet_path, o.features_path, *d.backend, o.features_prefix);
  const std::optional<Bundle>& bundle = files.bundle;
  d.settings = detector_settings(o, bundle ? &*bundle : nullptr);
  d.features = files.load_features(d.settings);
  d.net = std::move(files.net);
  // The options' thresholds win over a bundle's.
  const Thresholds bt = bundle ? bundle->thresholds() : Thresholds{};
  d.image_threshold = std::isnan(o.image_threshold) ? bt.image : o.image_threshold;
  d.pixel_threshold = std::isnan(o.pixel_threshold) ? bt.pixel : o.pixel_threshold;
  MDPS_CHECK(!std::isinf(d.image_threshold), "DetectorOptions.image_threshold is infinite");
  MDPS_CHECK(!std::isinf(d.pixel_threshold), "DetectorOptions.pixel_threshold is infinite");
}

Detector::~Detector() = default;
Detector::Detector(Detector&&) noexcept = default;
Detector& Detector::operator=(Detector&&) noexcept = default;

int Detector::image_size() const { return impl_->net->config().image_size; }
std::string Detector::settings_json() const { return impl_->settings.at_size(image_size()).to_json(); }
float Detector::image_threshold() const { return impl_->image_threshold; }
float Detector::pixel_threshold() const { return impl_->pixel_threshold; }

ScoreResult Detector::score(const uint8_t* pixels, int width, int height, int channels, int stride_bytes) {
  ImageView v;
  v.pixels = pixels;
  v.width = width;
  v.height = height;
  v.channels = channels;
  v.stride_bytes = stride_bytes;
  return score(v);
}

ScoreResult Detector::score(const ImageView& image) { return std::move(score_batch({image}).front()); }

std::vector<ScoreResult> Detector::score_batch(const std::vector<ImageView>& images) {
  return score_batch(images, ProgressFn());
}

std::vector<ScoreResult> Detector::score_batch(const std::vector<ImageView>& images, const ProgressFn& progress) {
  return score_batch(images, progress, 0);
}

std::vector<ScoreResult> Detector::score_batch(const std::vector<ImageView>& images, const ProgressFn& progress,
                                               size_t first_batch) {
  MDPS_CHECK(!images.empty(), "score_batch: no images given");
  const Impl& d = *impl_;
  const int S = image_size();
  // Every image is checked before any sampling starts.
  std::vector<Image> imgs;
  imgs.reserve(images.size());
  for (size_t i = 0; i < images.size(); ++i) imgs.push_back(to_model_image(images[i], S, i));

  std::lock_guard<std::mutex> lock(engine_lock());
  const size_t N = imgs.size(), plane = size_t(S) * S;
  ProtocolOutput po = run_protocol(
      *d.net, d.features.get(), N,
      [&](size_t b, size_t e) { return images_to_tensor(std::vector<Image>(imgs.begin() + b, imgs.begin() + e)); },
      d.settings, [&](size_t done, size_t total, double seconds, int) {
        if (progress) progress(done, total, seconds);
      },
      ProtocolPart{first_batch});
  const EvalSettings sized = d.settings.at_size(S);
  std::vector<float> scores = image_scores(Tensor::from_vector({int64_t(N), 1, S, S}, po.maps), sized.score_kind,
                                           sized.score_k, sized.score_fraction, sized.pixel_normals());

  std::vector<ScoreResult> out(N);
  for (size_t i = 0; i < N; ++i) {
    ScoreResult& r = out[i];
    r.image_score = scores[i];
    r.width = r.height = S;
    r.heat_map.assign(po.maps.begin() + i * plane, po.maps.begin() + (i + 1) * plane);
    // The same rules as `mdps score` (engine/detect/bundle.h).
    const Thresholds t{d.image_threshold, d.pixel_threshold};
    r.has_decision = t.has_image();
    r.anomalous = is_anomalous(r.image_score, t);
    if (t.has_pixel()) r.defect_mask = defect_mask(r.heat_map.data(), plane, t.pixel);
    r.reconstruction.assign(po.recon[i].begin(), po.recon[i].end());
  }
  return out;
}

std::vector<float> resize_map(const std::vector<float>& map, int width, int height, int out_w, int out_h) {
  MDPS_CHECK(width > 0 && height > 0 && map.size() == size_t(width) * height, "resize_map: ", map.size(),
             " values for a ", width, "x", height, " map");
  MDPS_CHECK(out_w > 0 && out_h > 0, "resize_map: output size ", out_w, "x", out_h, " is empty");
  if (out_w == width && out_h == height) return map;
  Image in(width, height, 1);
  in.pixels = map;
  return resize_bilinear(in, out_w, out_h, false).pixels;
}

}  // namespace mdps
