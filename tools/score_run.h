// What `mdps score --resume` checks before it carries on a run: the rows of
// OUT/scores.csv must come from the same detector, or the resumed CSV would
// mix two detectors' scores without a trace. OUT/score_run.json records, for
// the run that wrote the CSV:
//   {"engine_version", "model", "model_digest", "features", "features_digest",
//    "image_threshold", "pixel_threshold", "settings"}
// (digests: FNV-1a 64 of the file's bytes, as shard fingerprints; settings:
// the detector's values at the model's size). `batch` is left out of the
// settings under the calibrated protocol, where it changes speed, never a
// score; under the authors' protocol it couples the images and stays.
//
// Write order: a fresh run writes score_run.json just after its first rows,
// so a run killed in between leaves new rows beside the old record: the next
// --resume refuses (safe), never accepts rows of another detector.
#pragma once
#include <string>

namespace mdps::cli {

// The record of this run as JSON text.
std::string score_run_record(const std::string& model, const std::string& features, float image_threshold,
                             float pixel_threshold, const std::string& settings_json);

// Throws (naming `record_path` and every field that differs) when the record
// on disk is not `current`; a record that cannot be parsed is an error too.
void check_score_run(const std::string& record_path, const std::string& current);

}  // namespace mdps::cli
