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

// One input of `mdps score`: the path (a folder's image joined to the folder
// as given) and, with `recursive`, the image's folder relative to the folder
// given ("" for files given directly and a folder's own images), where its
// pictures go under the output folder.
struct ImageInput {
  std::string path, subdir;
};
// As expand_image_paths; with `recursive`, a folder's images at any depth
// (engine/io/dataset.h list_images_recursive: sorted as paths).
std::vector<ImageInput> list_image_inputs(const std::vector<std::string>& paths_or_dirs, bool recursive);

}  // namespace mdps
