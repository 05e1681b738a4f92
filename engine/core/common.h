// Basics every engine file uses: the error type, checks, and the
// __host__ __device__ marker for arithmetic shared by the CPU and CUDA paths.
#pragma once
#include <stdexcept>
#include <string>
#include <sstream>
#include <cstdint>

#if defined(__CUDACC__)
#define MDPS_HD __host__ __device__ __forceinline__
#else
#define MDPS_HD inline
#endif

namespace mdps {

// Every failure the engine reports is an mdps::Error whose message names the
// thing at fault (a file, a tensor, an option) and the problem.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// An allocation the engine sized failed; what() names the file, option or
// tensor and the bytes asked for. The C API reports it as
// MDPS_ERR_OUT_OF_MEMORY.
class OutOfMemoryError : public Error {
 public:
  explicit OutOfMemoryError(const std::string& what) : Error(what) {}
};

namespace detail {
inline void append(std::ostringstream&) {}
template <typename T, typename... R>
void append(std::ostringstream& os, const T& v, const R&... rest) {
  os << v;
  append(os, rest...);
}
}  // namespace detail

// cat("a", 1, "b") -> "a1b"
template <typename... A>
std::string cat(const A&... a) {
  std::ostringstream os;
  detail::append(os, a...);
  return os.str();
}

}  // namespace mdps

// MDPS_CHECK(cond, "message parts", ...) throws mdps::Error when cond is false.
#define MDPS_CHECK(cond, ...)                                         \
  do {                                                                \
    if (!(cond)) throw ::mdps::Error(::mdps::cat(__VA_ARGS__));       \
  } while (0)
