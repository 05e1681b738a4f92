// The options of `mdps bench unet|sampler|gemm|train` (tools/cmd_bench.cpp parses
// them) and what follows from them: the backend, the U-Net configuration, and
// moving host tensors onto the bench's backend.
#pragma once
#include "bench/harness/pytorch_twin_runner.h"
#include "engine/core/backend.h"
#include "engine/model/unet.h"
#include <string>

namespace mdps::bench {

struct UNetBenchArgs {
  int image_size = 64, base_channels = 32, batch = 8, threads = 0, runs = 5, heads = 4, res_blocks = 2;
  bool json = false;
  std::string trace, save_model;
  bool vs_pytorch = false;
  bool ops = false;  // --ops: the per-op breakdown of one more traced round
  TwinOptions twin;
  std::string device = "cpu", precision = "fp32";
  // `bench train`: steps of the timed run, images in the generated folder and their side in pixels.
  int steps = 20, images = 64, source_size = 256;
};


// The backend the bench runs on (--device, --precision, --threads). The twin
// and the sgemm ceiling are CPU figures: --vs-pytorch needs --device cpu.
Backend& bench_backend(const UNetBenchArgs& a);
// Host copies moved to the bench's backend (no copy on the CPU).
Tensor on_backend(const Tensor& t, Backend& be);
UNetConfig bench_config(const UNetBenchArgs& a);

}  // namespace mdps::bench
