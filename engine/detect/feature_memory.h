// The feature memory: a nearest-neighbour term beside the reconstruction's
// map (PatchCore-style; issue 18).
//
// Why: on tire at 64x64 the diffusion model reconstructs the defects along
// with the part, so every map built on image against reconstruction ranks
// defective images no better than chance (image AUROC 0.53-0.55 over three
// seeds). How far an image's ResNet features lie from the nearest feature of
// any normal image does rank them (0.69-0.70, deterministic), and sharpens
// the pixel map (pixel AUROC 0.93 -> 0.97); bench/RESULTS.md.
//
//   embedding  the image [1,3,S,S] in [-1,1] resized (bilinear, align
//              corners) to kMemoryInput x kMemoryInput, ImageNet-normalised,
//              ResNet stages 2 and 3, each 3x3-mean-pooled (zero padding
//              counted), stage 3 resized (bilinear, align corners) to stage
//              2's grid (32x32), concatenated: grid^2 vectors of
//              C2 + C3 values (128 + 256 for ResNet-18). The input is resized
//              to one scale whatever the model's size: at 64x64 the stages
//              would be 8x8 and 4x4, too coarse to hold a defect (measured:
//              0.60 at the model's size, 0.69 at 256).
//   memory     the embeddings of the normal images (`mdps calibrate --normal`
//              and the calibration `mdps eval` runs; memory_image_indices), in
//              image order: images * grid^2 rows of dim values. A detector bundle
//              stores it as normal.memory [rows, dim].
//   distance   per position, the Euclidean distance to the nearest memory
//              row; the grid^2 map resized (bilinear, align corners) to S x S.
//   in the map final = C / C_max + w * blur(D) / D_max (fuse_memory_term):
//              C the MDPS map, blur the map's Gaussian, w --memory-weight,
//              the maxima over the normal images, each normal image's D taken
//              against the memory without its own rows (leave one out: against
//              itself every distance would be 0).
// Distances come from ||q||^2 + ||m||^2 - 2 q.m through the CPU's gemm in
// blocks of memory rows, clamped at 0: one image at a time, the same bits
// wherever the image sits in a run.
#pragma once
#include "engine/model/resnet.h"
#include "engine/core/tensor.h"
#include <string>
#include <vector>

namespace mdps {

constexpr int kMemoryInput = 256;
// The ResNet stages of the embedding; the extractor must reach the deepest.
const std::vector<int>& memory_layers();

struct FeatureMemory {
  int images = 0, grid = 0, dim = 0;
  std::vector<float> rows;  // images * grid * grid rows of dim values
  bool empty() const { return rows.empty(); }
  size_t rows_per_image() const { return size_t(grid) * size_t(grid); }
  // Throws naming `what` unless the sizes agree and every value is finite.
  void check(const std::string& what) const;
};

// A memory holds at most this many normal images: its size (rows of 384
// floats, 1.5 MB per image) and the time of a distance map (0.1 s per 10
// images on 2 cores) grow with it, and on tire 189 images ranked no better
// than 21 (bench/RESULTS.md).
constexpr size_t kMaxMemoryImages = 64;
// Which of N calibration images go into the memory: all up to
// kMaxMemoryImages, else that many evenly spaced (floor(k N / max)), in order.
std::vector<size_t> memory_image_indices(size_t N);

// Whether `fe` reaches the stages the embedding needs.
bool can_embed(const ResNetFeatures* fe);

// The embeddings of images [N,3,S,S] in [-1,1] (any backend): N * grid^2
// rows of dim values on the host; grid and dim are set.
std::vector<float> memory_embeddings(const ResNetFeatures& fe, const Tensor& images, int& grid, int& dim);

// For each of the nq rows of q (dim values each), the Euclidean distance to
// the nearest row of mem, leaving out the rows of memory image `skip` (-1:
// none; a memory of one image with skip 0 has nothing left: throws).
std::vector<float> nearest_distances(const FeatureMemory& mem, const float* q, size_t nq, int skip = -1);

// The distance map of one image [1,3,S,S]: [1,1,S,S] on the image's backend.
Tensor memory_distance_map(const FeatureMemory& mem, const ResNetFeatures& fe, const Tensor& image, int skip = -1);
// The same from the image's embedding (grid^2 rows of dim values, as
// memory_embeddings gives: calibration has them for the memory's own images),
// resized to [1,1,height,width] on `be`.
Tensor memory_distance_map(const FeatureMemory& mem, const float* rows, int grid, int dim, int64_t height,
                           int64_t width, Backend& be, int skip = -1);

// C / c_max + w * d / d_max element by element (c, d: blurred maps of one
// size); a maximum <= 0 counts as 1 (a term without spread adds itself).
std::vector<float> fuse_memory_term(const std::vector<float>& c, const std::vector<float>& d, float c_max, float d_max,
                                    float w);

}  // namespace mdps
