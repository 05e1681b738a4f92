// The run-time choice of the direct convolution's tiles (conv_tiles.h).
#include "kernels/cpu/conv_tiles.h"
#include "kernels/cpu/cpu_features.h"
#include <algorithm>
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

namespace {

// Estimated cycles (in half cycles) of a tile of co channels by up to nv
// vectors over the image's nvec pixel vectors and Co channels, per tap: the
// most of its FMAs (two a cycle), its loads (two a cycle) and its input
// vectors from L2 (2.5 cycles each: where the image's input does not stay in
// L1, tiles of few channels wait on it; the 8x8 level's Co 128 on one thread
// of a Xeon (Emerald Rapids), shared machine: 4 x 4 vectors 106-116 GFLOP/s,
// 6x4 118-127, 8x2 111-123, 8x3 115-124).
int64_t tile_cost(int64_t Co, int64_t nvec, int co, int nv) {
  auto one = [&](int64_t n) { return n ? std::max<int64_t>({co * n, co + n, 5 * n}) : 0; };
  const int64_t blocks = (Co + co - 1) / co;
  return blocks * (nvec / nv * one(nv) + one(nvec % nv));
}

}  // namespace

ConvTile direct_conv_tile(int64_t Co, int64_t Ho, int64_t Wo, bool pointwise) {
  const VectorIsa isa = vector_isa();
  const int width = isa == VectorIsa::avx512 ? 16 : isa == VectorIsa::avx2 ? 8 : 4;
  const int64_t row_vectors = (Wo + width - 1) / width;
  const bool flat = pointwise || row_vectors * width * 4 > Wo * 5;
  const int64_t nvec = flat ? (Ho * Wo + width - 1) / width : Ho * row_vectors;
  if (isa != VectorIsa::avx512) return {width, 4, 3, flat};
  ConvTile best{width, 8, 3, flat};
  int64_t best_cost = tile_cost(Co, nvec, 8, 3);
  for (ConvTile t : {ConvTile{width, 6, 4, flat}, ConvTile{width, 4, 6, flat}, ConvTile{width, 8, 2, flat}}) {
    const int64_t c = tile_cost(Co, nvec, t.co, t.nv);
    if (c * 50 < best_cost * 49) {  // more than 2% fewer cycles
      best = t;
      best_cost = c;
    }
  }
  return best;
}

std::string direct_conv_tiles_description() {
  const VectorIsa isa = vector_isa();
  std::string s = std::string("direct conv: ") + vector_isa_name(isa) + ", tiles ";
  switch (isa) {
    case VectorIsa::avx512: return s + "8x3, 6x4, 4x6 or 8x2 vectors of 16 floats by output channels, rows or flat pixels";
    case VectorIsa::avx2: return s + "4x3 vectors of 8 floats";
    default: return s + "4x3 vectors of 4 floats";
  }
}

}  // namespace mdps::cpu
