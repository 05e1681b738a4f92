// One validation per option, shared by every command and the library: the
// bounds of the values a user gives (threads, steps, sample counts ...) and
// the usage-error type the command line maps to exit status 2.
//
// The protocol settings (lambda, eta, rho, samples, batch ...) are checked
// in EvalSettings::validate, which every command and the Detector call; the
// functions here are the bounds it and the other commands share.
#pragma once
#include "engine/core/common.h"
#include <cstdint>
#include <string>

namespace mdps {

// A value or combination of options the user must change (exit status 2 on
// the command line), as opposed to a failure while running (status 1).
class UsageError : public Error {
 public:
  explicit UsageError(const std::string& what) : Error(what) {}
};

#define MDPS_USAGE_CHECK(cond, ...)                                   \
  do {                                                                \
    if (!(cond)) throw ::mdps::UsageError(::mdps::cat(__VA_ARGS__));  \
  } while (0)

// Worker threads: 0 (all the CPUs this process may run on) .. kMaxThreads.
constexpr int kMaxThreads = 1024;
// Throws naming `what` (e.g. "--threads") unless 0 <= n <= kMaxThreads.
void check_threads(int64_t n, const std::string& what);
// The CPUs this process may run on (its affinity mask: taskset, cpusets,
// Slurm, containers), at least 1: the default thread count.
int available_cpus();

// Training length: 1 .. kMaxSteps optimiser steps (about 30 years at 1000
// steps a second); larger values are typos or overflows.
constexpr int64_t kMaxSteps = int64_t(1) << 40;
void check_steps(int64_t steps, const std::string& what);
// ceil(epochs * images / batch) without overflow, checked as a step count.
int64_t steps_for_epochs(int64_t epochs, int64_t images, int64_t batch);

// Posterior samples per image (Ns) and images per batch: 1 .. these.
constexpr int kMaxSamples = 1024;
constexpr int kMaxBatch = 4096;

// A float option that must be finite and >= 0 (e.g. --lambda, --eta, --rho).
void check_non_negative(double v, const std::string& what);

}  // namespace mdps
