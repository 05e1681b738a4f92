// Launch geometry shared by the CUDA launchers and the emulation tests, so the
// tests run the kernels with the configuration the GPU gets.
#pragma once
#include <algorithm>
#include <cstdint>

namespace mdps::cuda {

// Threads per block of the block-reducing kernels (group norm, softmax): a
// multiple of the warp size, which their full-warp shuffles require.
constexpr unsigned kReduceBlock = 256;
// Threads per block of the top-k image score (one block per map, so a large
// block: the map's passes are spread over more threads).
constexpr unsigned kTopKBlock = 512;
// Threads per block of the grid-stride elementwise kernels.
constexpr unsigned kElementwiseBlock = 256;
// Grid-stride kernels need no more blocks than fill the device several times.
constexpr int64_t kMaxElementwiseBlocks = 4096;

inline unsigned elementwise_blocks(int64_t n, unsigned block = kElementwiseBlock,
                                   int64_t max_blocks = kMaxElementwiseBlocks) {
  int64_t b = (n + block - 1) / block;
  return unsigned(std::max<int64_t>(1, std::min(b, max_blocks)));
}

// Blocks of the first stage of a whole-tensor sum (one double partial each):
// few enough that the single finishing block adds them in a few passes.
constexpr int64_t kMaxSumPartials = 1024;
inline unsigned sum_partial_blocks(int64_t n) { return elementwise_blocks(n, kReduceBlock, kMaxSumPartials); }

// Elements of memory one operand of a strided-batched row-major product
// reads: `batch` matrices `stride` apart (0: one shared matrix), each of
// `rows` rows of `cols` used elements `ld` apart. What --precision bf16 casts.
inline int64_t gemm_operand_extent(int64_t rows, int64_t cols, int64_t ld, int64_t stride, int64_t batch) {
  return (batch - 1) * stride + (rows - 1) * ld + cols;
}

// The tiled transposes (transpose_bf16_kernel.cuh): tiles of `tile` along one
// extent, and blocks along the batch (gridDim.z is at most 65535; the kernel
// loops over the rest).
inline unsigned transpose_tiles_along(int64_t extent, unsigned tile) {
  return unsigned(std::max<int64_t>(1, (extent + tile - 1) / tile));
}
inline unsigned transpose_batch_blocks(int64_t n) { return unsigned(std::max<int64_t>(1, std::min<int64_t>(n, 65535))); }

}  // namespace mdps::cuda
