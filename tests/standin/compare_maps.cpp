// standin_compare_maps A B [TOL]: compares the anomaly maps and image scores of
// two `mdps eval` outputs (A/maps.safetensors, B/maps.safetensors), for the
// CI stage that runs `mdps eval --device cuda` on the CUDA stand-ins against
// `--device cpu` (tools/scripts/run_tests.sh). Prints the largest absolute
// differences; exits 1 when a map value or score differs by more than TOL
// times the largest value (at least 1; default TOL 1e-3, docs/gpu.md says
// why) or the shapes or labels differ, 2 on a bad argument.
#include "engine/io/safetensors.h"
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4) {
    std::fprintf(stderr, "usage: standin_compare_maps DIR_A DIR_B [TOL]\n");
    return 2;
  }
  const double tol = argc == 4 ? std::atof(argv[3]) : 1e-3;
  try {
    auto a = mdps::SafeTensorsFile::open(std::string(argv[1]) + "/maps.safetensors");
    auto b = mdps::SafeTensorsFile::open(std::string(argv[2]) + "/maps.safetensors");
    int bad = 0;
    for (const char* name : {"anomaly_maps", "image_scores", "gt_masks"}) {
      mdps::Tensor x = a.read_f32(name), y = b.read_f32(name);
      if (x.shape() != y.shape()) {
        std::fprintf(stderr, "mdps: error: %s: shapes differ\n", name);
        return 1;
      }
      std::vector<float> u = x.to_vector(), v = y.to_vector();
      double worst = 0, scale = 0;
      for (size_t i = 0; i < u.size(); ++i) {
        const double d = std::fabs(double(u[i]) - double(v[i]));
        worst = std::isnan(d) ? INFINITY : std::max(worst, d);
        scale = std::max(scale, std::fabs(double(u[i])));
      }
      // Maps and scores are compared relative to their size (TOL for values up
      // to 1): float32 rounds relative to the magnitude, and a map's scale
      // depends on its terms (the feature memory's fused map reaches ~20,
      // the eta combination ~10; both differ by ~1e-6 of it on the stand-ins).
      // Masks are 0 / 1: exact up to TOL.
      const double limit = std::string(name) == "gt_masks" ? tol : tol * std::max(1.0, scale);
      const bool ok = worst <= limit;
      std::printf("%-13s %zu values, max |a - b| = %.3g (largest |a| %.3g), limit %.3g: %s\n", name, u.size(), worst,
                  scale, limit, ok ? "ok" : "DIFFERENT");
      bad += !ok;
    }
    return bad ? 1 : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mdps: error: %s\n", e.what());
    return 2;
  }
}
