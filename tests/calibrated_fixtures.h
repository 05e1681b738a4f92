// Shared by the suites of the calibrated protocol (tests/eval/test_calibrated.cpp,
// tests/detect/test_feature_memory.cpp): fast settings that are not the
// defaults, the same as command-line flags, and a loader of image files.
#pragma once
#include "engine/detect/settings.h"
#include "engine/eval/evaluate.h"
#include "engine/io/image.h"
#include <string>
#include <vector>

namespace mdps::test {

// Two DDIM steps per round: fast, and not the defaults.
inline EvalSettings fast_calibrated() {
  EvalSettings s;
  s.protocol = Protocol::Calibrated;
  s.rounds.round1 = {40, 5.f};
  s.rounds.round2 = {40, 7.f};
  s.rounds.lambda = 0.2f;
  s.seed = 5;
  return s;
}
// fast_calibrated() as `mdps` flags.
inline const char* const kFastFlags = " --round1-t 40 --round1-rho 5 --t-start 40 --rho 7 --lambda 0.2 --seed 5";

// The images of a list as [n,3,S,S] at the model's size.
inline BatchLoader loader_of(const std::vector<std::string>& files, int S) {
  return [files, S](size_t b, size_t e) {
    std::vector<Image> imgs;
    for (size_t i = b; i < e; ++i) imgs.push_back(load_model_image(files[i], S));
    return images_to_tensor(imgs);
  };
}

}  // namespace mdps::test
