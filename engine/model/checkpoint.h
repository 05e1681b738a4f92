// Model files and training checkpoints (one safetensors format for both).
//
// Every U-Net parameter is stored under its own name at the top level, so any
// command reads the model with UNet::config_from_file + UNet::load(file). A
// checkpoint adds the optimiser state (optim.*, engine/model/optimizer.h) and the
// training position in the metadata:
//   unet_config   UNetConfig::to_json()
//   mdps_kind     "checkpoint" (with optimiser state) or "model"
//   step, epoch, seed, rng_position, target_steps, batch, lr, weight_decay,
//   adamw, data, images, image_size   (checkpoints only)
// Files are written to a temporary name and renamed (SafeTensorsWriter::write),
// so the previous file survives a crash at any moment.
#pragma once
#include "engine/model/unet.h"
#include <map>
#include <string>

namespace mdps {

class Adam;

// Where a training run stands; everything needed to resume it bit for bit.
struct TrainState {
  int64_t step = 0;          // optimiser steps done
  int64_t epoch = 0;         // whole passes over the data done
  uint64_t seed = 0;
  uint64_t rng_position = 0; // training samples drawn so far (step * batch)
  int64_t target_steps = 0;  // the run's --steps
  int batch = 0;
  AdamParams adam;
  std::string data;          // the --data folder as given
  int64_t images = 0;        // images trained on
  int64_t holdout = 0;       // images of `data` held out (--holdout; 0 in checkpoints older than it)
};

// A model file (no optimiser state).
void save_model(const std::string& path, const UNet& net);
// A full checkpoint: model, optimiser state and the training state.
void save_checkpoint(const std::string& path, const UNet& net, const Adam& adam, const TrainState& state);

// The training state in a checkpoint's metadata; throws naming the file when it
// is a plain model or a key is missing or malformed.
TrainState read_train_state(const SafeTensorsFile& f);
// Loads the model weights and the optimiser state of a checkpoint.
void load_checkpoint(const SafeTensorsFile& f, UNet& net, Adam& adam);

// "%.9g": floats round-trip exactly through the metadata text.
std::string float_to_text(float v);

}  // namespace mdps
