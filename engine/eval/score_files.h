// Scoring image files without ground truth, as `mdps score` does: every
// file read and resized to the model's size first (so a bad file fails
// before any sampling), the protocol in file order, image scores over the
// full maps (no crop). `mdps calibrate` scores its normal images the same
// way, so its thresholds apply to exactly the scores `mdps score` prints.
#pragma once
#include "engine/eval/evaluate.h"
#include "engine/io/image.h"
#include <string>
#include <vector>

namespace mdps {

struct FileScores {
  std::vector<Image> images;  // model-size RGB, in file order
  ProtocolOutput protocol;    // maps N*S*S and reconstructions
  std::vector<float> scores;  // one per file
};

FileScores score_files(const UNet& model, const ResNetFeatures* features, const std::vector<std::string>& paths,
                       const EvalSettings& settings, const EvalProgressFn& progress = {});

// Files and folders of images (a folder: its images, sorted) as one list.
std::vector<std::string> expand_image_paths(const std::vector<std::string>& paths_or_dirs);

}  // namespace mdps
