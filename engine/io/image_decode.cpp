// libpng and libjpeg report errors through a longjmp out of their error
// callbacks; every function here that calls them keeps only trivially
// destructible locals between setjmp and the library calls, and turns the
// recorded message into an mdps::Error after the jump.
#include "engine/io/image_decode.h"
#include "engine/core/common.h"
#include "engine/core/file_checks.h"
#include "engine/io/image_bmp.h"
#include <atomic>
#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <new>
#include <png.h>
#include <jpeglib.h>
#include <stb_image_write.h>
#include <sys/stat.h>
#include <unistd.h>

namespace mdps {
namespace {

std::atomic<uint64_t> g_max_pixels{kDefaultMaxImagePixels};

std::string mib(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / (1024.0 * 1024.0));
  return buf;
}

void check_dimensions(int64_t w, int64_t h, const std::string& label) {
  MDPS_CHECK(w > 0 && h > 0, "cannot decode image '", label, "': zero size (", w, "x", h, ")");
  const uint64_t px = uint64_t(w) * uint64_t(h), limit = max_image_pixels();
  MDPS_CHECK(px <= limit, "image '", label, "' is ", w, "x", h, " = ", px, " pixels, above the limit of ", limit,
             " (--max-image-pixels raises it)");
}

// w * h * c bytes, with an out-of-memory error naming the file and the size.
void allocate(std::vector<uint8_t>& out, int64_t w, int64_t h, int c, const std::string& label) {
  const size_t n = size_t(w) * size_t(h) * size_t(c);
  try {
    out.resize(n);
  } catch (const std::bad_alloc&) {
    throw OutOfMemoryError(cat("image '", label, "': out of memory allocating ", n, " bytes (", mib(double(n)),
                               ") for its ", w, "x", h, " pixels"));
  }
}

// ---- PNG (libpng) -------------------------------------------------------------

struct PngSource {
  const uint8_t* data;
  size_t size, pos;
  char message[256];
  jmp_buf jump;
};

void png_fail(png_structp png, png_const_charp msg) {
  auto* src = static_cast<PngSource*>(png_get_error_ptr(png));
  std::snprintf(src->message, sizeof src->message, "%s", msg ? msg : "unknown libpng error");
  longjmp(src->jump, 1);
}
void png_quiet(png_structp, png_const_charp) {}  // warnings (e.g. a damaged ancillary chunk, skipped)

void png_read_bytes(png_structp png, png_bytep out, png_size_t n) {
  auto* src = static_cast<PngSource*>(png_get_io_ptr(png));
  if (n > src->size - src->pos) png_error(png, "the file ends early (truncated)");
  std::memcpy(out, src->data + src->pos, n);
  src->pos += n;
}

DecodedImage decode_png(const uint8_t* data, size_t size, const std::string& label) {
  DecodedImage img;
  std::vector<png_bytep> rows;
  PngSource src{data, size, 0, {0}, {}};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_fail, png_quiet);
  MDPS_CHECK(png, "cannot decode image '", label, "': libpng could not start");
  png_infop info = png_create_info_struct(png);
  // After a longjmp only `src` (its message), `png` and `info` are read; all
  // three are set before setjmp and live in memory.
  if (setjmp(src.jump)) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw Error(cat("cannot decode image '", label, "': damaged PNG: ", src.message));
  }
  if (!info) png_error(png, "out of memory");
  png_set_read_fn(png, &src, png_read_bytes);
  png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
  png_read_info(png, info);
  png_uint_32 w = 0, h = 0;
  int depth = 0, color = 0, interlace = 0;
  png_get_IHDR(png, info, &w, &h, &depth, &color, &interlace, nullptr, nullptr);
  {
    // The size check throws a C++ exception: release libpng first.
    const uint64_t px = uint64_t(w) * uint64_t(h);
    if (w == 0 || h == 0 || px > max_image_pixels()) {
      png_destroy_read_struct(&png, &info, nullptr);
      check_dimensions(int64_t(w), int64_t(h), label);
    }
  }
  if (depth == 16) png_set_strip_16(png);  // the high byte, as Pillow's RGB;16B
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  const int channels = png_get_channels(png, info);
  if (png_get_bit_depth(png, info) != 8 || channels < 1 || channels > 4) png_error(png, "unsupported sample layout");
  try {
    allocate(img.pixels, w, h, channels, label);
    rows.resize(h);
  } catch (...) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw;
  }
  for (png_uint_32 y = 0; y < h; ++y) rows[y] = img.pixels.data() + size_t(y) * w * size_t(channels);
  png_read_image(png, rows.data());
  png_read_end(png, nullptr);  // checks the remaining chunks' CRCs (and IEND)
  png_destroy_read_struct(&png, &info, nullptr);
  img.width = int(w);
  img.height = int(h);
  img.channels = channels;
  return img;
}

// ---- JPEG (libjpeg-turbo) -----------------------------------------------------

struct JpegError {
  jpeg_error_mgr mgr;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  int warnings;
};

void jpeg_fail(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegError*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  longjmp(err->jump, 1);
}
// A warning means corrupt data that libjpeg papered over (e.g. "Premature end
// of JPEG file", filled with gray): the first one is kept and the file refused.
void jpeg_note(j_common_ptr cinfo, int level) {
  auto* err = reinterpret_cast<JpegError*>(cinfo->err);
  if (level < 0 && err->warnings++ == 0) (*cinfo->err->format_message)(cinfo, err->message);
}

DecodedImage decode_jpeg(const uint8_t* data, size_t size, const std::string& label) {
  DecodedImage img;
  jpeg_decompress_struct cinfo;
  JpegError err;
  std::memset(&err, 0, sizeof err);
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpeg_fail;
  err.mgr.emit_message = jpeg_note;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    throw Error(cat("cannot decode image '", label, "': damaged JPEG: ", err.message));
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  const uint64_t px = uint64_t(cinfo.image_width) * uint64_t(cinfo.image_height);
  if (cinfo.image_width == 0 || cinfo.image_height == 0 || px > max_image_pixels()) {
    const int64_t w = cinfo.image_width, h = cinfo.image_height;
    jpeg_destroy_decompress(&cinfo);
    check_dimensions(w, h, label);
  }
  if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
    jpeg_destroy_decompress(&cinfo);
    throw Error(cat("cannot decode image '", label, "': CMYK JPEG files are not read (convert it to RGB)"));
  }
  cinfo.out_color_space = cinfo.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&cinfo);
  const int channels = cinfo.output_components;
  try {
    allocate(img.pixels, cinfo.output_width, cinfo.output_height, channels, label);
  } catch (...) {
    jpeg_destroy_decompress(&cinfo);
    throw;
  }
  const size_t stride = size_t(cinfo.output_width) * size_t(channels);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = img.pixels.data() + size_t(cinfo.output_scanline) * stride;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  img.width = int(cinfo.output_width);
  img.height = int(cinfo.output_height);
  img.channels = channels;
  const int warnings = err.warnings;
  jpeg_destroy_decompress(&cinfo);
  MDPS_CHECK(warnings == 0, "cannot decode image '", label, "': damaged JPEG: ", err.message);
  return img;
}

// ---- BMP (stb_image, BMP only) ------------------------------------------------

DecodedImage decode_bmp(const uint8_t* data, size_t size, const std::string& label) {
  int w = 0, h = 0, c = 0;
  MDPS_CHECK(bmp::info(data, size, w, h, c), "cannot decode image '", label, "': damaged BMP header");
  check_dimensions(w, h, label);
  DecodedImage img;
  const int channels = c == 4 ? 4 : 3;
  std::string why;
  try {
    MDPS_CHECK(bmp::decode(data, size, channels, img.pixels, why), "cannot decode image '", label,
               "': damaged BMP: ", why);
  } catch (const std::bad_alloc&) {
    throw OutOfMemoryError(cat("image '", label, "': out of memory decoding its ", w, "x", h, " pixels (",
                               size_t(w) * size_t(h) * size_t(channels), " bytes)"));
  }
  img.width = w;
  img.height = h;
  img.channels = channels;
  return img;
}

bool starts_with(const uint8_t* d, size_t n, const char* magic, size_t m) {
  return n >= m && std::memcmp(d, magic, m) == 0;
}

const char* other_format(const uint8_t* d, size_t n) {
  if (starts_with(d, n, "GIF8", 4)) return "GIF";
  if (starts_with(d, n, "II*\0", 4) || starts_with(d, n, "MM\0*", 4)) return "TIFF";
  if (starts_with(d, n, "8BPS", 4)) return "PSD";
  if (starts_with(d, n, "#?RADIANCE", 10) || starts_with(d, n, "#?RGBE", 6)) return "HDR";
  if (starts_with(d, n, "RIFF", 4)) return "RIFF (WebP?)";
  if (n >= 2 && d[0] == 'P' && d[1] >= '1' && d[1] <= '7') return "PNM";
  return nullptr;
}

}  // namespace

uint64_t max_image_pixels() { return g_max_pixels.load(); }
void set_max_image_pixels(uint64_t n) {
  MDPS_CHECK(n >= 1, "--max-image-pixels must be at least 1, got ", n);
  g_max_pixels.store(n);
}

DecodedImage decode_image_bytes(const uint8_t* data, size_t size, const std::string& label) {
  MDPS_CHECK(size > 0, "cannot decode image '", label, "': the file is empty");
  if (starts_with(data, size, "\x89PNG\r\n\x1a\n", 8)) return decode_png(data, size, label);
  if (starts_with(data, size, "\xFF\xD8\xFF", 3)) return decode_jpeg(data, size, label);
  if (starts_with(data, size, "BM", 2)) return decode_bmp(data, size, label);
  const char* other = other_format(data, size);
  throw Error(cat("cannot decode image '", label, "': ",
                  other ? cat("a ", other, " file; ") : std::string("not an image file of a known format; "),
                  "mdps reads PNG, JPEG and BMP"));
}

DecodedImage decode_image_file(const std::string& path) {
  // Checked before opening: a FIFO would block, /dev/zero would never end.
  const int fd = open_regular_file(path, "cannot read image");
  std::vector<uint8_t> bytes;
  try {
    struct stat st;
    MDPS_CHECK(::fstat(fd, &st) == 0, "cannot read image '", path, "': cannot stat: ", std::strerror(errno));
    const uint64_t size = uint64_t(st.st_size);
    MDPS_CHECK(size > 0, "cannot decode image '", path, "': the file is empty");
    // No valid image of the allowed size needs more than 8 bytes a pixel
    // (16-bit RGBA, uncompressed) plus its headers.
    const uint64_t cap = max_image_pixels() * 8 + (uint64_t(1) << 20);
    MDPS_CHECK(size <= cap, "image '", path, "' is ", size, " bytes, more than any image within the limit of ",
               max_image_pixels(), " pixels holds (--max-image-pixels raises it)");
    try {
      bytes.resize(size_t(size));
    } catch (const std::bad_alloc&) {
      throw OutOfMemoryError(cat("image '", path, "': out of memory allocating ", size, " bytes to read it"));
    }
    size_t got = 0;
    while (got < bytes.size()) {
      const ssize_t k = ::read(fd, bytes.data() + got, bytes.size() - got);
      if (k < 0 && errno == EINTR) continue;
      MDPS_CHECK(k >= 0, "cannot read image '", path, "': ", std::strerror(errno));
      if (k == 0) break;
      got += size_t(k);
    }
    bytes.resize(got);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  return decode_image_bytes(bytes.data(), bytes.size(), path);
}

std::vector<uint8_t> encode_png(const uint8_t* pixels, int width, int height, int channels) {
  std::vector<uint8_t> out;
  auto append = [](void* ctx, void* data, int n) {
    auto* v = static_cast<std::vector<uint8_t>*>(ctx);
    const auto* p = static_cast<const uint8_t*>(data);
    v->insert(v->end(), p, p + n);
  };
  MDPS_CHECK(stbi_write_png_to_func(append, &out, width, height, channels, pixels, width * channels) != 0,
             "PNG encoding of a ", width, "x", height, "x", channels, " image failed");
  return out;
}

}  // namespace mdps
