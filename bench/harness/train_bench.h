// `mdps bench train`: images per second of the real training loop
// (engine/diffusion/trainer.h, what `mdps train` runs), data loading included:
// a generated folder of PNG images (engine/io/demo_data.h, --source-size
// pixels a side, so decoding and resizing to --image-size are real work), the
// clock running from the call to train() to its return (decoding, model set-up,
// --steps steps, the checkpoint written). With --vs-pytorch the twin's
// training loop (bench/pytorch_twin.py --train-loop: Pillow decode + resize,
// batches, loss, backward, Adam) on the same folder, rounds alternating A B.
#pragma once
#include "bench/harness/bench_args.h"

namespace mdps::bench {

void bench_train(const UNetBenchArgs& a);

}  // namespace mdps::bench
