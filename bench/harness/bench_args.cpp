#include "bench/harness/bench_args.h"
#include "engine/core/backend_registry.h"

namespace mdps::bench {

Backend& bench_backend(const UNetBenchArgs& a) {
  Backend& be = backend_by_name(a.device, parse_precision(a.precision));
  MDPS_CHECK(!a.vs_pytorch || be.device() == Device::CPU, "--vs-pytorch times the PyTorch twin on the CPU: use it "
             "with --device cpu (this run resolved --device ", a.device, " to ", be.name(), ")");
  MDPS_CHECK(!(a.vs_pytorch && a.ops), "--ops and --vs-pytorch: use one at a time (the breakdown is of the engine "
             "alone)");
  if (a.threads > 0) be.set_threads(a.threads);
  return be;
}

Tensor on_backend(const Tensor& t, Backend& be) { return be.device() == Device::CPU ? t : t.to(be); }

UNetConfig bench_config(const UNetBenchArgs& a) {
  UNetConfig c;
  c.image_size = a.image_size;
  c.base_channels = a.base_channels;
  c.heads = a.heads;
  c.res_blocks = a.res_blocks;
  return c;
}

}  // namespace mdps::bench
