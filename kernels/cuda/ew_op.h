// The ops of the elementwise kernel (elementwise_kernel.cuh), in a header of
// its own so host code can name them without the kernel or CUDA built-ins.
#pragma once

namespace mdps::cuda {

// Fill: alpha; Add/Sub/Mul: a op b; Scale: alpha a; Axpby: alpha a + beta b;
// Silu: silu(a); SiluBackward: b * silu'(a) (a = x, b = dy); Relu: max(a, 0);
// ScaleByInverseSqrt: inverse_norm(b) a, b one element read on the device.
enum class EwOp : int { Fill, Add, Sub, Mul, Scale, Axpby, Silu, SiluBackward, Relu, ScaleByInverseSqrt };

}  // namespace mdps::cuda
