// The CPU stand-ins of the CUDA runtime, cuBLAS and cuDNN (this folder; built
// with -DMDPS_CUDA_STANDIN=ON, cmake/cuda_standin.cmake): what they share and
// what tests may ask of them. Each stand-in implements the documented
// behaviour of the subset of the API the CUDA backend calls, on the CPU:
//   - "device memory" is host memory the runtime stand-in tracks (256-byte
//     aligned, filled with NaN bytes on allocation as real device memory is not
//     cleared); every pointer an API call or a kernel receives is checked
//     against the live allocations: host pointers, freed blocks (use after
//     free, double free) and ranges running past their allocation are errors;
//   - streams run their work when it is enqueued (in order, so stream order
//     holds trivially; concurrency is what only a GPU shows);
//   - every refusal returns the API's documented error code and prints one line
//     "cuda stand-in: <function>: <why>" on stderr, and counts as misuse.
// Stand-in results are never GPU results (docs/gpu.md).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace mdps::standin {

// Misuse seen since the last reset (each printed on stderr when seen).
int64_t misuse_count();
// The text of the latest misuse ("" when none).
std::string last_misuse();
// Clears the count, the latest misuse and a sticky device fault, so one test
// of deliberate misuse does not poison the next (a real context stays dead).
void reset_misuse();

// Device memory currently allocated (bytes, blocks), and the limit above which
// cudaMalloc reports cudaErrorMemoryAllocation (default 16 GiB; 0: default).
size_t live_bytes();
size_t live_blocks();
void set_memory_limit(size_t bytes);

// ---- used by the stand-ins themselves ----------------------------------

// Records one misuse (printed once, counted).
void misuse(const char* function, const std::string& why);
// Where [p, p + bytes) lies: inside one live allocation (Live), not at all
// in device memory (Host), in a freed block (Freed) or past the end of a live
// allocation (Overrun). bytes 0: only the start is checked.
enum class Where { Live, Host, Freed, Overrun };
Where locate(const void* p, size_t bytes);
// "" when [p, p + bytes) is live device memory, else why not ("host pointer",
// "freed block", "past the end of its allocation").
std::string device_range_problem(const void* p, size_t bytes);
// A device fault inside a library call or kernel: sticky, as on a GPU
// (cudaErrorIllegalAddress from every later runtime call until reset_misuse).
void device_fault(const char* function, const std::string& why);
bool faulted();
// Whether a stream handle is the legacy default (null) or a live stream.
bool stream_live(const void* stream);

// Rounding as the hardware does to its narrower input formats (nearest even;
// NaN kept a NaN).
float round_to_bf16(float v);
float round_to_tf32(float v);
float bf16_to_float(uint16_t b);
uint16_t float_to_bf16_bits(float v);

}  // namespace mdps::standin
