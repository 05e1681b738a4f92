#include "engine/eval/score_files.h"
#include "engine/detect/anomaly_map.h"
#include "engine/io/dataset.h"
#include <filesystem>

namespace fs = std::filesystem;

namespace mdps {

FileScores score_files(const UNet& model, const ResNetFeatures* features, const std::vector<std::string>& paths,
                       const EvalSettings& settings, const EvalProgressFn& progress) {
  MDPS_CHECK(!paths.empty(), "no images given");
  const int S = model.config().image_size;
  FileScores r;
  r.images.reserve(paths.size());
  for (const auto& p : paths) r.images.push_back(load_model_image(p, S));
  r.protocol = run_protocol(
      model, features, paths.size(),
      [&](size_t b, size_t e) {
        return images_to_tensor(std::vector<Image>(r.images.begin() + long(b), r.images.begin() + long(e)));
      },
      settings, progress);
  const EvalSettings sized = settings.at_size(S);
  r.scores = image_scores(Tensor::from_vector({int64_t(paths.size()), 1, S, S}, r.protocol.maps), sized.score_kind,
                          sized.score_k, sized.score_fraction, sized.pixel_normals());
  return r;
}

std::vector<std::string> expand_image_paths(const std::vector<std::string>& paths_or_dirs) {
  std::vector<std::string> out;
  for (const auto& p : paths_or_dirs) {
    if (fs::is_directory(p)) {
      for (auto& f : list_images(p)) out.push_back(f);
    } else {
      out.push_back(p);
    }
  }
  return out;
}

std::vector<ImageInput> list_image_inputs(const std::vector<std::string>& paths_or_dirs, bool recursive) {
  if (!recursive) {
    std::vector<ImageInput> out;
    for (auto& p : expand_image_paths(paths_or_dirs)) out.push_back({p, ""});
    return out;
  }
  std::vector<ImageInput> out;
  for (const auto& p : paths_or_dirs) {
    if (!fs::is_directory(p)) {
      out.push_back({p, ""});
      continue;
    }
    for (auto& rel : list_images_recursive(p)) {
      const fs::path r(rel);
      out.push_back({(fs::path(p) / r).string(), r.parent_path().generic_string()});
    }
  }
  return out;
}

}  // namespace mdps
