// The C interface (include/mdps/mdps_c.h): a thin shell over the C++
// Detector that turns every exception into a status code and a thread-local
// message, so no C++ exception ever crosses into a foreign caller.
#include "include/mdps/mdps_c.h"
#include "include/mdps/mdps.h"
#include "engine/io/image.h"
#include "engine/core/option_checks.h"
#include <cmath>
#include <cstddef>
#include <cstring>
#include <new>
#include <string>

struct mdps_detector {
  mdps::Detector detector;
  std::vector<uint8_t> last_mask;  // model resolution, from the last mdps_score
  int last_size = 0;
};

namespace {

thread_local std::string g_last_error;

mdps_status fail(mdps_status s, const std::string& message) {
  g_last_error = message;
  return s;
}

// Runs f, mapping exceptions to statuses.
template <typename F>
mdps_status guarded(F&& f) {
  try {
    g_last_error.clear();
    return f();
  } catch (const std::bad_alloc&) {
    return fail(MDPS_ERR_OUT_OF_MEMORY, "out of memory (an allocation of the C++ runtime failed)");
  } catch (const mdps::OutOfMemoryError& e) {
    return fail(MDPS_ERR_OUT_OF_MEMORY, e.what());
  } catch (const mdps::UsageError& e) {
    return fail(MDPS_ERR_INVALID_ARGUMENT, e.what());  // an option out of its range
  } catch (const std::exception& e) {
    return fail(MDPS_ERR_FAILED, e.what());
  } catch (...) {
    return fail(MDPS_ERR_FAILED, "unknown error");
  }
}

std::string str(const char* s) { return s ? s : ""; }

// The size of the first mdps_options (version 1: up to pixel_threshold).
constexpr uint32_t kMinOptionsSize = uint32_t(offsetof(mdps_options, pixel_threshold) + sizeof(float));

// "k=v;k=v" -> pairs; a part without '=' is an error naming it.
std::vector<std::pair<std::string, std::string>> parse_overrides(const std::string& text) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find(';', pos);
    if (end == std::string::npos) end = text.size();
    std::string part = text.substr(pos, end - pos);
    if (!part.empty()) {
      size_t eq = part.find('=');
      if (eq == std::string::npos || eq == 0)
        throw std::invalid_argument("mdps_options.overrides: '" + part + "' is not key=value");
      out.emplace_back(part.substr(0, eq), part.substr(eq + 1));
    }
    pos = end + 1;
  }
  return out;
}

}  // namespace

extern "C" {

const char* mdps_version(void) { return mdps::library_version(); }

void mdps_options_init(mdps_options* o) {
  if (!o) return;
  const mdps::DetectorOptions d;
  *o = mdps_options{};
  o->struct_size = sizeof(mdps_options);
  o->round1_t = d.round1_t;
  o->round1_rho = d.round1_rho;
  o->round2_t = d.round2_t;
  o->round2_rho = d.round2_rho;
  o->lambda = d.lambda;
  o->eta = d.eta;
  o->skip = d.skip;
  o->samples = d.samples;
  o->batch = d.batch;
  o->threads = d.threads;
  o->seed = d.seed;
  o->image_threshold = d.image_threshold;
  o->pixel_threshold = d.pixel_threshold;
}

mdps_status mdps_detector_create(const mdps_options* given, mdps_detector** out) {
  if (out) *out = nullptr;
  if (!given || !out)
    return fail(MDPS_ERR_INVALID_ARGUMENT, "mdps_detector_create: options and out must not be NULL");
  // The ABI rule (docs/embedding.md): a caller's struct_size says which
  // fields it has; those it lacks (an older header) keep their defaults.
  if (given->struct_size < kMinOptionsSize || given->struct_size > sizeof(mdps_options))
    return fail(MDPS_ERR_INVALID_ARGUMENT,
                "mdps_options.struct_size is " + std::to_string(given->struct_size) +
                    ": fill the options with mdps_options_init first (this library reads " +
                    std::to_string(kMinOptionsSize) + " to " + std::to_string(sizeof(mdps_options)) + " bytes)");
  mdps_options copy;
  mdps_options_init(&copy);
  std::memcpy(&copy, given, given->struct_size);
  const mdps_options* o = &copy;
  if (!o->unet_path || !*o->unet_path)
    return fail(MDPS_ERR_INVALID_ARGUMENT, "mdps_options.unet_path: no U-Net model given");
  return guarded([&] {
    mdps::DetectorOptions d;
    d.unet_path = o->unet_path;
    d.features_path = str(o->features_path);
    d.features_prefix = str(o->features_prefix);
    d.preset = str(o->preset);
    d.overrides = parse_overrides(str(o->overrides));
    if (o->variant) d.variant = o->variant;
    if (o->image_score) d.image_score = o->image_score;
    if (o->device) d.device = o->device;
    d.round1_t = o->round1_t;
    d.round1_rho = o->round1_rho;
    d.round2_t = o->round2_t;
    d.round2_rho = o->round2_rho;
    d.lambda = o->lambda;
    d.eta = o->eta;
    d.skip = o->skip;
    d.samples = o->samples;
    d.batch = o->batch;
    d.threads = o->threads;
    d.seed = o->seed;
    d.image_threshold = o->image_threshold;
    d.pixel_threshold = o->pixel_threshold;
    *out = new mdps_detector{mdps::Detector(d), {}, 0};
    return MDPS_OK;
  });
}

void mdps_detector_destroy(mdps_detector* det) { delete det; }

int mdps_image_size(const mdps_detector* det) { return det ? det->detector.image_size() : 0; }

mdps_status mdps_detector_thresholds(const mdps_detector* det, float* image_threshold, float* pixel_threshold) {
  if (!det) return fail(MDPS_ERR_INVALID_ARGUMENT, "mdps_detector_thresholds: detector must not be NULL");
  g_last_error.clear();
  if (image_threshold) *image_threshold = det->detector.image_threshold();
  if (pixel_threshold) *pixel_threshold = det->detector.pixel_threshold();
  return MDPS_OK;
}

mdps_status mdps_score(mdps_detector* det, const uint8_t* pixels, int width, int height, int channels, int stride,
                       float* image_score, float* heat_map, int heat_w, int heat_h, int* anomalous) {
  if (!det || !pixels) return fail(MDPS_ERR_INVALID_ARGUMENT, "mdps_score: detector and pixels must not be NULL");
  if (width <= 0 || height <= 0 || (channels != 1 && channels != 3 && channels != 4) ||
      (stride != 0 && stride < width * channels))
    return fail(MDPS_ERR_INVALID_ARGUMENT, "mdps_score: bad image layout (" + std::to_string(width) + "x" +
                                               std::to_string(height) + ", " + std::to_string(channels) +
                                               " channels, stride " + std::to_string(stride) + ")");
  if (heat_map && (heat_w <= 0 || heat_h <= 0))
    return fail(MDPS_ERR_INVALID_ARGUMENT, "mdps_score: heat_map given with an empty size " +
                                               std::to_string(heat_w) + "x" + std::to_string(heat_h));
  return guarded([&] {
    mdps::ScoreResult r = det->detector.score(pixels, width, height, channels, stride);
    std::vector<float> heat;
    if (heat_map) heat = mdps::resize_map(r.heat_map, r.width, r.height, heat_w, heat_h);
    // Outputs are written only once everything succeeded.
    if (heat_map) std::copy(heat.begin(), heat.end(), heat_map);
    if (image_score) *image_score = r.image_score;
    if (anomalous) *anomalous = r.has_decision ? int(r.anomalous) : -1;
    det->last_mask = std::move(r.defect_mask);
    det->last_size = r.width;
    return MDPS_OK;
  });
}

mdps_status mdps_last_defect_mask(mdps_detector* det, uint8_t* mask, int heat_w, int heat_h) {
  if (!det || !mask || heat_w <= 0 || heat_h <= 0)
    return fail(MDPS_ERR_INVALID_ARGUMENT, "mdps_last_defect_mask: NULL argument or empty size");
  if (det->last_mask.empty())
    return fail(MDPS_ERR_FAILED, det->last_size == 0 ? "mdps_last_defect_mask: nothing scored yet"
                                                     : "mdps_last_defect_mask: the detector has no pixel threshold");
  return guarded([&] {
    const int S = det->last_size;
    mdps::Image m(S, S, 1);
    for (size_t k = 0; k < det->last_mask.size(); ++k) m.pixels[k] = float(det->last_mask[k]);
    mdps::Image r = mdps::resize_nearest(m, heat_w, heat_h);
    for (size_t k = 0; k < r.pixels.size(); ++k) mask[k] = r.pixels[k] > 0.5f ? 1 : 0;
    return MDPS_OK;
  });
}

const char* mdps_last_error(void) { return g_last_error.c_str(); }

}  // extern "C"
