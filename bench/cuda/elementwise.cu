// Playground: the backend's elementwise kernel, y[i] = f(a[i], b[(i / b_div) % b_mod]),
// on a U-Net feature map [8, 128, 64, 64] for a representative few ops, each
// with the (b_div, b_mod) the CUDA backend passes (kernels/cuda/cuda_backend.cpp):
//   op 0  add               a + b              (1, n)
//   op 1  axpby             0.7 a - 0.2 b      (1, n)  the backend runs it in place
//                                                      (b = y); here y is separate
//   op 2  silu              a / (1 + e^-a)     (1, 1)  no b
//   op 3  silu_backward     b s (1 + a (1 - s)), s = sigmoid(a)   (1, n)
//   op 4  add_channel_bias  a + v[n, c]        (H*W, N*C)  v broadcast over H*W
// Versions:
//   version 1  the production kernel (kernels/cuda/elementwise_kernel.cuh): one
//              element per thread, grid-stride, the op a runtime switch, a
//              64-bit division and modulo for b's index on every element
//              (also for the ops whose b is the full tensor or absent)
//   version 2  the op a template parameter, float4 loads and stores; no index
//              arithmetic for the full-tensor ops (n % 4 tail by the
//              production kernel), one 64-bit division per four elements for
//              the channel bias (needs H*W % 4 == 0)
//   version 3  add_channel_bias only: one (sample, channel) plane per
//              blockIdx.y (grid-stride over planes), float4 over the plane,
//              the bias read once per plane and thread, no division at all
//              (needs H*W % 4 == 0)
// Every version uses the production launch geometry, elementwise_blocks(work
// items, block) blocks of `block` threads, swept over bench::block_sizes().
// CPU reference: the CPU backend's add / axpby / silu / silu_backward /
// add_channel_bias. Tolerances (bench::validate, relative to max(1, |ref|)):
// add and add_channel_bias exact (one float add, as in the tests); axpby 1e-6
// (the GPU contracts a*b + c into an fma: one rounding fewer, <= 1 ulp of
// the larger term); silu 2e-6 (CUDA's expf vs the CPU's polynomial exp,
// a few ulps, no cancellation); silu_backward 1.2e-5 (the emulation test's
// 2e-6 x 6: 1 - s cancels for large a).
//   ./elementwise [VERSION] [--peak-gbs GBS] [--op K] [--n 8 --c 128 --h 64 --w 64]
// (--op K runs op K only; by default every op.)
#include "bench/cuda/common.h"
#include "engine/core/backend.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/elementwise_kernel.cuh"

namespace {

using mdps::cuda::EwOp;

// The production kernel's arithmetic for one element, the op fixed at compile time.
template <EwOp OP>
__device__ __forceinline__ float ew_apply(float a, float b, float alpha, float beta) {
  if constexpr (OP == EwOp::Add) {
    return a + b;
  } else if constexpr (OP == EwOp::Axpby) {
    return alpha * a + beta * b;
  } else if constexpr (OP == EwOp::Silu) {
    return a / (1.f + expf(-a));
  } else {
    static_assert(OP == EwOp::SiluBackward, "ew_apply: op not in the playground");
    const float s = 1.f / (1.f + expf(-a));
    return b * s * (1.f + a * (1.f - s));
  }
}

template <EwOp OP>
__device__ __forceinline__ float4 ew_apply4(float4 a, float4 b, float alpha, float beta) {
  return make_float4(ew_apply<OP>(a.x, b.x, alpha, beta), ew_apply<OP>(a.y, b.y, alpha, beta),
                     ew_apply<OP>(a.z, b.z, alpha, beta), ew_apply<OP>(a.w, b.w, alpha, beta));
}

// Version 2, full-tensor ops: n4 float4s of a (and b unless silu) into y.
template <EwOp OP>
__global__ void ew_float4(const float4* __restrict__ a, const float4* __restrict__ b, float4* __restrict__ y,
                          float alpha, float beta, int64_t n4) {
  constexpr bool reads_b = OP != EwOp::Silu;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n4; i += stride) {
    const float4 bv = reads_b ? b[i] : make_float4(0.f, 0.f, 0.f, 0.f);
    y[i] = ew_apply4<OP>(a[i], bv, alpha, beta);
  }
}

// Version 2, channel bias: the four elements of a float4 share a plane (hw4 = H*W / 4).
__global__ void bias_float4(const float4* __restrict__ a, const float* __restrict__ v, float4* __restrict__ y,
                            int64_t n4, int64_t hw4) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n4; i += stride) {
    const float add = v[i / hw4];
    const float4 x = a[i];
    y[i] = make_float4(x.x + add, x.y + add, x.z + add, x.w + add);
  }
}

// Version 3, channel bias: plane p = (sample, channel) per blockIdx.y.
__global__ void bias_planes(const float4* __restrict__ a, const float* __restrict__ v, float4* __restrict__ y,
                            int64_t planes, int64_t hw4) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t p = blockIdx.y; p < planes; p += gridDim.y) {
    const float add = v[p];
    const float4* ap = a + p * hw4;
    float4* yp = y + p * hw4;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < hw4; i += stride) {
      const float4 x = ap[i];
      yp[i] = make_float4(x.x + add, x.y + add, x.z + add, x.w + add);
    }
  }
}

struct OpCase {
  const char* name;
  EwOp op;
  bool reads_b;    // second operand present
  bool broadcast;  // b is v [N, C] over H*W
  float alpha, beta;
  double tol;
};

// The most threads per block version `version` of op `k` can launch with.
int version_limit(int version, const OpCase& k) {
  if (version == 1) return bench::max_threads(mdps::cuda::elementwise_kernel);
  if (version == 3) return bench::max_threads(bias_planes);
  if (k.broadcast) return bench::max_threads(bias_float4);
  switch (k.op) {
    case EwOp::Add: return bench::max_threads(ew_float4<EwOp::Add>);
    case EwOp::Axpby: return bench::max_threads(ew_float4<EwOp::Axpby>);
    case EwOp::Silu: return bench::max_threads(ew_float4<EwOp::Silu>);
    default: return bench::max_threads(ew_float4<EwOp::SiluBackward>);
  }
}

void launch_ew_float4(EwOp op, unsigned grid, int block, const float4* a, const float4* b, float4* y, float alpha,
                      float beta, int64_t n4) {
  switch (op) {
    case EwOp::Add: ew_float4<EwOp::Add><<<grid, block>>>(a, b, y, alpha, beta, n4); break;
    case EwOp::Axpby: ew_float4<EwOp::Axpby><<<grid, block>>>(a, b, y, alpha, beta, n4); break;
    case EwOp::Silu: ew_float4<EwOp::Silu><<<grid, block>>>(a, b, y, alpha, beta, n4); break;
    default: ew_float4<EwOp::SiluBackward><<<grid, block>>>(a, b, y, alpha, beta, n4); break;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bench::Options o = bench::parse(argc, argv);
  const int64_t N = o.size("n", 8), C = o.size("c", 128), H = o.size("h", 64), W = o.size("w", 64);
  const int64_t only_op = o.size("op", -1);
  const int64_t hw = H * W, planes = N * C, n = planes * hw;
  if (n < 1) {
    std::fprintf(stderr, "elementwise: empty tensor\n");
    return 2;
  }
  bench::print_device();
  std::printf("elementwise over [%lld, %lld, %lld, %lld]\n", (long long)N, (long long)C, (long long)H, (long long)W);

  const std::vector<OpCase> ops = {
      {"add", EwOp::Add, true, false, 0.f, 0.f, 0.0},
      {"axpby", EwOp::Axpby, true, false, 0.7f, -0.2f, 1e-6},
      {"silu", EwOp::Silu, false, false, 0.f, 0.f, 2e-6},
      {"silu_backward", EwOp::SiluBackward, true, false, 0.f, 0.f, 1.2e-5},
      {"add_channel_bias", EwOp::Add, true, true, 0.f, 0.f, 0.0},
  };
  const mdps::Shape s{N, C, H, W};
  const std::vector<float> av = bench::random_floats(size_t(n), 1, -6.f, 6.f), bv = bench::random_floats(size_t(n), 2),
                           vv = bench::random_floats(size_t(planes), 3);
  const mdps::Tensor a = mdps::Tensor::from_vector(s, av), b = mdps::Tensor::from_vector(s, bv),
                     v = mdps::Tensor::from_vector({N, C}, vv);
  float* da = bench::to_device(av);
  float* db = bench::to_device(bv);
  float* dv = bench::to_device(vv);
  float* dy = bench::device_buffer<float>(size_t(n));
  mdps::Backend& cpu = mdps::cpu_backend();

  for (size_t k = 0; k < ops.size(); ++k) {
    if (only_op >= 0 && only_op != int64_t(k)) continue;
    const OpCase& op = ops[k];
    mdps::Tensor ref = mdps::Tensor::zeros(s);
    switch (k) {
      case 0: cpu.add(a, b, ref); break;
      case 1:
        ref.copy_from(b);
        cpu.axpby(op.alpha, a, op.beta, ref);
        break;
      case 2: cpu.silu(a, ref); break;
      case 3: cpu.silu_backward(a, b, ref); break;
      default: cpu.add_channel_bias(a, v, ref); break;
    }
    const std::vector<float> ref_v = ref.to_vector();
    // Read a (and b, or v once), write y.
    const double streams = op.reads_b && !op.broadcast ? 3 : 2;
    const double bytes = 4.0 * (double(n) * streams + (op.broadcast ? double(planes) : 0));
    const float* b_ptr = op.broadcast ? dv : (op.reads_b ? db : nullptr);
    const int64_t b_div = op.broadcast ? hw : 1, b_mod = op.broadcast ? planes : (op.reads_b ? n : 1);
    std::printf("op %zu: %s\n", k, op.name);

    for (int version = 1; version <= 3; ++version) {
      if (o.version != 0 && o.version != version) continue;
      if (version == 3 && !op.broadcast) continue;  // version 3 is the channel bias's alone
      if (version >= 2 && op.broadcast && hw % 4 != 0) {
        std::printf("version %d: skipped (needs H*W %% 4 == 0)\n", version);
        continue;
      }
      const int limit = version_limit(version, op);
      for (int block : bench::block_sizes()) {
        if (bench::over_thread_limit(version, block, limit)) continue;
        auto launch = [&] {
          if (version == 1) {
            mdps::cuda::elementwise_kernel<<<mdps::cuda::elementwise_blocks(n, unsigned(block)), block>>>(
                op.op, da, b_ptr, dy, op.alpha, op.beta, n, b_div, b_mod);
          } else if (version == 2 && op.broadcast) {
            const int64_t n4 = n / 4;
            bias_float4<<<mdps::cuda::elementwise_blocks(n4, unsigned(block)), block>>>(
                reinterpret_cast<const float4*>(da), dv, reinterpret_cast<float4*>(dy), n4, hw / 4);
          } else if (version == 2) {
            const int64_t n4 = n / 4, done = 4 * n4;
            if (n4 > 0)
              launch_ew_float4(op.op, mdps::cuda::elementwise_blocks(n4, unsigned(block)), block,
                               reinterpret_cast<const float4*>(da), reinterpret_cast<const float4*>(db),
                               reinterpret_cast<float4*>(dy), op.alpha, op.beta, n4);
            if (done < n)  // the last n % 4 elements
              mdps::cuda::elementwise_kernel<<<1, 32>>>(op.op, da + done, op.reads_b ? db + done : nullptr,
                                                        dy + done, op.alpha, op.beta, n - done, 1,
                                                        op.reads_b ? n - done : 1);
          } else {
            const int64_t hw4 = hw / 4;
            const unsigned gy = unsigned(std::min<int64_t>(planes, 65535));
            const unsigned gx = mdps::cuda::elementwise_blocks(
                hw4, unsigned(block), std::max<int64_t>(1, mdps::cuda::kMaxElementwiseBlocks / int64_t(gy)));
            bias_planes<<<dim3(gx, gy), block>>>(reinterpret_cast<const float4*>(da), dv,
                                                 reinterpret_cast<float4*>(dy), planes, hw4);
          }
        };
        BENCH_CHECK(cudaMemset(dy, 0xff, size_t(n) * sizeof(float)));
        auto valid = [&] { return bench::validate(op.name, bench::to_host(dy, size_t(n)), ref_v, op.tol); };
        bench::time_if_valid(version, block, launch, valid, bytes, 0, o);
      }
    }
  }
  for (float* p : {da, db, dv, dy}) BENCH_CHECK(cudaFree(p));
  return 0;
}
