#include "engine/detect/feature_memory.h"
#include "engine/core/trace.h"
#include <algorithm>
#include <cmath>
#include <limits>

namespace mdps {

const std::vector<int>& memory_layers() {
  static const std::vector<int> layers{2, 3};
  return layers;
}

std::vector<size_t> memory_image_indices(size_t N) {
  std::vector<size_t> out;
  const size_t n = std::min(N, kMaxMemoryImages);
  for (size_t k = 0; k < n; ++k) out.push_back(N <= kMaxMemoryImages ? k : k * N / kMaxMemoryImages);
  return out;
}

bool can_embed(const ResNetFeatures* fe) { return fe && fe->deepest_layer() >= memory_layers().back(); }

void FeatureMemory::check(const std::string& what) const {
  MDPS_CHECK(images >= 1 && grid >= 1 && dim >= 1 && rows.size() == size_t(images) * rows_per_image() * size_t(dim),
             what, ": a feature memory of ", images, " images of ", grid, "x", grid, " vectors of ", dim,
             " values cannot hold ", rows.size(), " values");
  for (size_t i = 0; i < rows.size(); ++i)
    MDPS_CHECK(std::isfinite(rows[i]), what, ": feature memory value ", i, " is not finite (", rows[i], ")");
}

namespace {

// 3x3 mean with zero padding counted (divide by 9 everywhere), per plane of
// a host [C,H,W] block: the pooling of the feature term.
std::vector<float> mean_pool3(const float* x, int64_t C, int64_t H, int64_t W) {
  std::vector<float> out(size_t(C * H * W));
  for (int64_t c = 0; c < C; ++c)
    for (int64_t i = 0; i < H; ++i)
      for (int64_t j = 0; j < W; ++j) {
        float s = 0.f;
        for (int64_t di = -1; di <= 1; ++di)
          for (int64_t dj = -1; dj <= 1; ++dj) {
            const int64_t a = i + di, b = j + dj;
            if (a >= 0 && a < H && b >= 0 && b < W) s += x[(c * H + a) * W + b];
          }
        out[size_t((c * H + i) * W + j)] = s / 9.f;
      }
  return out;
}

}  // namespace

std::vector<float> memory_embeddings(const ResNetFeatures& fe, const Tensor& images, int& grid, int& dim) {
  MDPS_CHECK(images.defined() && images.ndim() == 4 && images.dim(1) == 3 && images.dim(0) >= 1,
             "feature memory: images ", images.defined() ? images.describe() : std::string("undefined"),
             " are not [N,3,H,W]");
  MDPS_CHECK(can_embed(&fe), "feature memory: the feature extractor reaches stage ", fe.deepest_layer(),
             "; the embedding needs stage ", memory_layers().back());
  trace::Scope span("memory_embeddings", "span");
  Backend& be = fe.backend();
  const int64_t N = images.dim(0);
  Tensor x = images.device() == be.device() ? images : images.to(be);
  if (x.dim(2) != kMemoryInput || x.dim(3) != kMemoryInput) {
    Tensor up = Tensor::empty({N, 3, kMemoryInput, kMemoryInput}, be);
    be.resize_bilinear_align_corners(x, up);
    x = up;
  }
  std::vector<Tensor> f = fe.forward(imagenet_normalise(x), memory_layers());
  Tensor f2 = f[0].to(cpu_backend()), f3 = f[1].to(cpu_backend());
  const int64_t C2 = f2.dim(1), H = f2.dim(2), W = f2.dim(3), C3 = f3.dim(1), H3 = f3.dim(2), W3 = f3.dim(3);
  MDPS_CHECK(H == W, "feature memory: stage 2 gives ", f2.describe(), ", not a square grid");
  grid = int(H);
  dim = int(C2 + C3);
  const std::vector<float> v2 = f2.to_vector(), v3 = f3.to_vector();
  std::vector<float> out(size_t(N * H * W * dim));
  for (int64_t n = 0; n < N; ++n) {
    const std::vector<float> p2 = mean_pool3(v2.data() + n * C2 * H * W, C2, H, W);
    // Stage 3 pooled at its own grid, then resized to stage 2's.
    const Tensor p3 = Tensor::from_vector({1, C3, H3, W3}, mean_pool3(v3.data() + n * C3 * H3 * W3, C3, H3, W3));
    Tensor r3 = Tensor::empty({1, C3, H, W}, cpu_backend());
    cpu_backend().resize_bilinear_align_corners(p3, r3);
    const std::vector<float> q3 = r3.to_vector();
    float* o = out.data() + size_t(n * H * W * dim);
    for (int64_t pos = 0; pos < H * W; ++pos) {
      float* row = o + pos * dim;
      for (int64_t c = 0; c < C2; ++c) row[c] = p2[size_t(c * H * W + pos)];
      for (int64_t c = 0; c < C3; ++c) row[C2 + c] = q3[size_t(c * H * W + pos)];
    }
  }
  return out;
}

std::vector<float> nearest_distances(const FeatureMemory& mem, const float* q, size_t nq, int skip) {
  MDPS_CHECK(!mem.empty() && mem.dim >= 1, "feature memory: empty");
  const size_t per = mem.rows_per_image(), total = size_t(mem.images) * per, D = size_t(mem.dim);
  MDPS_CHECK(skip < 0 || mem.images > 1, "feature memory: leaving out the only image leaves nothing to compare with");
  trace::Scope span("memory_nearest", "span");
  auto sq = [D](const float* r) {
    double s = 0.0;
    for (size_t c = 0; c < D; ++c) s += double(r[c]) * double(r[c]);
    return float(s);
  };
  std::vector<float> qn(nq), best(nq, std::numeric_limits<float>::infinity());
  for (size_t i = 0; i < nq; ++i) qn[i] = sq(q + i * D);
  // Blocks of memory rows: the dot products of nq x block stay small.
  const size_t block = 2048;
  std::vector<float> dots(nq * block), mn(block);
  for (size_t b0 = 0; b0 < total; b0 += block) {
    const size_t nb = std::min(block, total - b0);
    const float* m = mem.rows.data() + b0 * D;
    for (size_t j = 0; j < nb; ++j) mn[j] = sq(m + j * D);
    cpu_backend().gemm(false, true, int64_t(nq), int64_t(nb), int64_t(D), 1.f, q, int64_t(D), 0, m, int64_t(D), 0,
                       0.f, dots.data(), int64_t(nb), 0, 1);
    for (size_t i = 0; i < nq; ++i) {
      const float* d = dots.data() + i * nb;
      float b = best[i];
      for (size_t j = 0; j < nb; ++j) {
        if (skip >= 0 && (b0 + j) / per == size_t(skip)) continue;
        b = std::min(b, qn[i] + mn[j] - 2.f * d[j]);
      }
      best[i] = b;
    }
  }
  for (float& b : best) b = std::sqrt(std::max(0.f, b));
  return best;
}

Tensor memory_distance_map(const FeatureMemory& mem, const ResNetFeatures& fe, const Tensor& image, int skip) {
  MDPS_CHECK(image.defined() && image.ndim() == 4 && image.dim(0) == 1 && image.dim(1) == 3,
             "feature memory: ", image.defined() ? image.describe() : std::string("undefined"), " is not one image");
  int grid = 0, dim = 0;
  const std::vector<float> e = memory_embeddings(fe, image, grid, dim);
  return memory_distance_map(mem, e.data(), grid, dim, image.dim(2), image.dim(3), image.backend(), skip);
}

Tensor memory_distance_map(const FeatureMemory& mem, const float* rows, int grid, int dim, int64_t height,
                           int64_t width, Backend& be, int skip) {
  MDPS_CHECK(grid == mem.grid && dim == mem.dim, "feature memory: the image's embedding (", grid, "x", grid, " of ",
             dim, ") does not fit the memory's (", mem.grid, "x", mem.grid, " of ", mem.dim,
             "): the detector's feature extractor is not the one its memory was taken with");
  const Tensor d = Tensor::from_vector({1, 1, grid, grid}, nearest_distances(mem, rows, size_t(grid) * grid, skip));
  Tensor out = Tensor::empty({1, 1, height, width}, be);
  be.resize_bilinear_align_corners(d.to(be), out);
  return out;
}

std::vector<float> fuse_memory_term(const std::vector<float>& c, const std::vector<float>& d, float c_max, float d_max,
                                    float w) {
  MDPS_CHECK(c.size() == d.size(), "feature memory: maps of ", c.size(), " and ", d.size(), " values");
  const float cm = c_max > 0.f ? c_max : 1.f, dm = d_max > 0.f ? d_max : 1.f;
  std::vector<float> out(c.size());
  for (size_t i = 0; i < c.size(); ++i) out[i] = c[i] / cm + w * (d[i] / dm);
  return out;
}

}  // namespace mdps
