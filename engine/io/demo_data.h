// A small synthetic data set in MVTec AD layout for `mdps demo` and the
// tests: a striped, slightly noisy texture as the normal class, and test
// images with planted defects (bright blobs, dark scratches) and their
// ground-truth masks. Deterministic for a seed.
#pragma once
#include <cstdint>
#include <string>

namespace mdps {

struct DemoDataOptions {
  int size = 32;           // image side in pixels
  int train = 48;          // train/good images
  int test_good = 10;      // test/good images
  int test_defect = 5;     // images per defect type (blob, scratch)
  uint64_t seed = 1;
};

// Writes <root>/train/good/NNN.png, <root>/test/{good,blob,scratch}/NNN.png and
// <root>/ground_truth/{blob,scratch}/NNN_mask.png (0 or 255). Existing files
// of the same names are replaced.
void write_demo_dataset(const std::string& root, const DemoDataOptions& opts);

}  // namespace mdps
