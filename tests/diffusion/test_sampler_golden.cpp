// The authors' two samplers end to end against sampler64 (MDPS_GOLDEN_DIR),
// fed the recorded Gaussian draws. T, skip and w are the protocol the golden
// README documents; w is read from the metadata when it states it.
#include <doctest/doctest.h>
#include "tests/test_util.h"
#include "engine/io/safetensors.h"
#include "engine/diffusion/sampler.h"
#include <algorithm>
#include <cmath>
#include <regex>

using namespace mdps;

namespace {

// "... guidance weight w=50 ..." -> 50; fallback when the text has no w=.
float weight_from_metadata(const SafeTensorsFile& f, const std::string& key, float fallback) {
  auto it = f.metadata().find(key);
  if (it == f.metadata().end()) return fallback;
  std::smatch m;
  if (std::regex_search(it->second, m, std::regex("w=([0-9.]+)"))) return std::stof(m[1]);
  return fallback;
}

// noise{i} tensors sorted by their number, not as strings.
std::vector<Tensor> numbered(const SafeTensorsFile& f, const std::string& prefix) {
  std::vector<std::pair<int, std::string>> found;
  for (auto& n : f.names())
    if (n.rfind(prefix, 0) == 0) found.push_back({std::stoi(n.substr(prefix.size())), n});
  std::sort(found.begin(), found.end());
  std::vector<Tensor> out;
  for (size_t i = 0; i < found.size(); ++i) {
    REQUIRE(found[i].first == int(i));
    out.push_back(f.read_f32(found[i].second));
  }
  return out;
}

}  // namespace

TEST_CASE("the authors' samplers reproduce sampler64 from its recorded draws") {
  auto f = SafeTensorsFile::open(test::golden_dir() + "/sampler64.safetensors");
  UNet net(UNet::config_from_file(f), cpu_backend());
  net.load(f, "unet.");
  Tensor y = f.read_f32("y");
  SamplerSettings s;
  s.variant = Variant::Authors;
  s.norm = GuidanceNorm::L2;
  s.skip = 20;
  s.ddim_eta = 1.f;
  s.group = int(y.dim(0));  // the golden batch is one guidance group
  Sampler sampler(net, s);
  NoiseSchedule sched;

  SUBCASE("unmasked, w = 50") {
    // The start noise is not stored; x_T is. Recover z from it.
    Tensor xT = f.read_f32("x_T");
    const double a = sched.alpha_bar(200);
    std::vector<float> z = xT.to_vector(), yv = y.to_vector();
    for (size_t i = 0; i < z.size(); ++i)
      z[i] = float((double(z[i]) - std::sqrt(a) * yv[i]) / std::sqrt(1.0 - a));
    std::vector<Tensor> draws{Tensor::from_vector(y.shape(), z)};
    for (auto& t : numbered(f, "unmasked.noise")) draws.push_back(t);
    RecordedNoise noise(draws);
    Tensor out = sampler.sample(y, Tensor(), {200, weight_from_metadata(f, "unmasked", 50.f)}, noise);
    CHECK(noise.used() == noise.size());
    double e = test::rel_l2(out.to_vector(), f.read_f32_vector("unmasked.out"));
    INFO("unmasked.out rel L2 = " << e);
    CHECK(e < 1e-3);
  }

  SUBCASE("masked, w = 100") {
    RecordedNoise noise(numbered(f, "masked.noise"));
    Tensor mask = f.read_f32("mask");
    Tensor out = sampler.sample(y, mask, {200, weight_from_metadata(f, "masked", 100.f)}, noise);
    CHECK(noise.used() == noise.size());
    double e = test::rel_l2(out.to_vector(), f.read_f32_vector("masked.out"));
    INFO("masked.out rel L2 = " << e);
    CHECK(e < 1e-3);
  }
}
