// The run-time choice of the direct convolution's tiles (conv_tiles.h).
#include "kernels/cpu/conv_tiles.h"
#include "kernels/cpu/cpu_features.h"
#include <atomic>
#include <cstdlib>
#include <cstring>

namespace mdps::cpu {

namespace {

// The widest unit this build has tiles for: a W = 16 vector needs AVX-512 at compile time.
constexpr VectorIsa kCompiled =
#if defined(__AVX512F__)
    VectorIsa::avx512;
#elif defined(__AVX2__) && defined(__FMA__)
    VectorIsa::avx2;
#else
    VectorIsa::sse;
#endif

VectorIsa detected() {
  if (has_avx512f()) return VectorIsa::avx512;
  if (has_avx2_fma()) return VectorIsa::avx2;
  return VectorIsa::sse;
}

// MDPS_CPU_ISA: avx512 (no cap), avx2 or sse; anything else is ignored.
VectorIsa env_cap() {
  const char* e = std::getenv("MDPS_CPU_ISA");
  if (e && std::strcmp(e, "avx2") == 0) return VectorIsa::avx2;
  if (e && std::strcmp(e, "sse") == 0) return VectorIsa::sse;
  return VectorIsa::avx512;
}

std::atomic<int> g_cap{int(VectorIsa::avx512)};

VectorIsa lowest(VectorIsa a, VectorIsa b) { return int(a) < int(b) ? a : b; }

}  // namespace

const char* vector_isa_name(VectorIsa isa) {
  switch (isa) {
    case VectorIsa::avx512: return "AVX-512";
    case VectorIsa::avx2: return "AVX2";
    default: return "SSE";
  }
}

VectorIsa vector_isa() {
  static const VectorIsa machine = lowest(lowest(kCompiled, detected()), env_cap());
  return lowest(machine, VectorIsa(g_cap.load(std::memory_order_relaxed)));
}

void cap_vector_isa(VectorIsa cap) { g_cap.store(int(cap), std::memory_order_relaxed); }

// AVX-512's 24-accumulator tiles: the one that computes the fewest padded
// channels, 8x3 on a tie (fewest loads per FMA: 3 vectors and 8 broadcasts
// for 24 FMAs).
static ConvTile avx512_tile(int64_t Co) {
  constexpr int width = 16;
  ConvTile best{width, 8, 3};
  auto padded = [&](int co) { return (Co + co - 1) / co * co; };
  for (ConvTile t : {ConvTile{width, 6, 4}, ConvTile{width, 4, 6}})
    if (padded(t.co) < padded(best.co)) best = t;
  return best;
}

ConvTile direct_conv_tile(int64_t Co, int64_t Wo) {
  switch (vector_isa()) {
    case VectorIsa::avx512: return avx512_tile(Co);
    case VectorIsa::avx2: return {8, 4, 3};
    default: return {4, 4, 3};
  }
}

std::string direct_conv_tiles_description() {
  const VectorIsa isa = vector_isa();
  std::string s = std::string("direct conv: ") + vector_isa_name(isa) + ", tiles ";
  switch (isa) {
    case VectorIsa::avx512: return s + "8x3, 6x4 or 4x6 vectors of 16 floats by output channels";
    case VectorIsa::avx2: return s + "4x3 vectors of 8 floats";
    default: return s + "4x3 vectors of 4 floats";
  }
}

}  // namespace mdps::cpu
