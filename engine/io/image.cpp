// Decoding is engine/image_decode.h (libpng, libjpeg-turbo, a BMP-only stb);
// PNG output is encoded in memory and written through the checked atomic
// writer (engine/atomic_file.h).
#include "engine/io/image.h"
#include "engine/core/atomic_file.h"
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <system_error>
#include <unistd.h>

namespace fs = std::filesystem;

namespace mdps {
namespace {

// 8-bit samples with `want` channels: 3 (RGB: gray repeated, alpha dropped)
// or 1 (gray as is; colour: the maximum of R, G, B).
std::vector<uint8_t> convert_channels(const DecodedImage& d, int want) {
  const size_t n = size_t(d.width) * size_t(d.height);
  const int c = d.channels;
  std::vector<uint8_t> out(n * size_t(want));
  const uint8_t* p = d.pixels.data();
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* px = p + i * size_t(c);
    if (want == 3) {
      for (int k = 0; k < 3; ++k) out[i * 3 + size_t(k)] = c >= 3 ? px[k] : px[0];
    } else {
      out[i] = c >= 3 ? std::max({px[0], px[1], px[2]}) : px[0];
    }
  }
  return out;
}

inline uint8_t to_u8(float v) {
  if (!(v > 0.f)) return 0;  // also NaN
  if (v >= 255.f) return 255;
  return uint8_t(std::floor(v + 0.5f));
}

// ---- Pillow's resampling (libImaging/Resample.c) ----------------------------------

constexpr int kPrecisionBits = 32 - 8 - 2;

// Rounds a product to double before it is used. -march=native lets GCC fuse
// a*b+c into one FMA (one rounding instead of two); Pillow's baseline x86-64
// build never does, and a weight or a tap bound can differ in the last bit.
inline double rounded(double x) {
  volatile double v = x;
  return v;
}

double triangle(double x) {
  if (x < 0.0) x = -x;
  return x < 1.0 ? 1.0 - x : 0.0;
}

struct Coeffs {
  int ksize = 0;
  std::vector<int> xmin, count;  // first source index and tap count per output
  std::vector<double> k;         // [out][ksize], normalised
};

// precompute_coeffs() for the bilinear filter (support 1) over the full box.
Coeffs precompute(int in_size, int out_size) {
  Coeffs c;
  double scale = double(float(in_size)) / out_size;
  double filterscale = scale < 1.0 ? 1.0 : scale;
  double support = 1.0 * filterscale;
  c.ksize = int(std::ceil(support)) * 2 + 1;
  c.xmin.resize(out_size);
  c.count.resize(out_size);
  c.k.assign(size_t(out_size) * c.ksize, 0.0);
  for (int xx = 0; xx < out_size; ++xx) {
    double center = rounded((xx + 0.5) * scale);
    double ss = 1.0 / filterscale;
    // (int) truncates toward zero, as in the C original; this matters for
    // negative values near the left edge when upscaling.
    int xmin = int(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = int(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double* k = &c.k[size_t(xx) * c.ksize];
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      double w = triangle(rounded((x + xmin - center + 0.5) * ss));
      k[x] = w;
      ww += w;
    }
    for (int x = 0; x < xmax; ++x)
      if (ww != 0.0) k[x] /= ww;
    c.xmin[xx] = xmin;
    c.count[xx] = xmax;
  }
  return c;
}

std::vector<int32_t> fixed_point(const std::vector<double>& k) {
  std::vector<int32_t> out(k.size());
  for (size_t i = 0; i < k.size(); ++i)
    out[i] = k[i] < 0 ? int32_t(-0.5 + k[i] * (1 << kPrecisionBits)) : int32_t(0.5 + k[i] * (1 << kPrecisionBits));
  return out;
}

inline uint8_t clip8(int64_t v) {
  if (v >= (int64_t(1) << kPrecisionBits << 8)) return 255;
  if (v <= 0) return 0;
  return uint8_t(v >> kPrecisionBits);
}

// One 1-D pass along x (horizontal) or y over an HWC buffer.
template <typename T, typename Acc>
void resample_pass(const std::vector<T>& in, int w, int h, int ch, bool horizontal, const Coeffs& co,
                   int out_len, std::vector<T>& out, Acc acc) {
  int ow = horizontal ? out_len : w, oh = horizontal ? h : out_len;
  out.assign(size_t(ow) * oh * ch, T(0));
  for (int y = 0; y < oh; ++y)
    for (int x = 0; x < ow; ++x) {
      int o = horizontal ? x : y;
      int first = co.xmin[o], n = co.count[o];
      for (int c = 0; c < ch; ++c) {
        auto at = [&](int j) -> T {
          return horizontal ? in[(size_t(y) * w + first + j) * ch + c] : in[(size_t(first + j) * w + x) * ch + c];
        };
        out[(size_t(y) * ow + x) * ch + c] = acc(o, n, at);
      }
    }
}

void check_resize_args(const Image& in, int w, int h, const char* what) {
  MDPS_CHECK(w > 0 && h > 0, what, ": target size ", w, "x", h, " must be positive");
  MDPS_CHECK(in.width > 0 && in.height > 0 && in.channels > 0, what, ": the input image is empty");
  MDPS_CHECK(in.pixels.size() == size_t(in.width) * in.height * in.channels, what, ": the input holds ",
             in.pixels.size(), " values, not ", in.width, "x", in.height, "x", in.channels);
}

// Pillow's 8-bit path on 8-bit samples (HWC, `ch` channels): no float copy
// of the full-size image is ever made.
Image resize_u8_samples(std::vector<uint8_t> cur, int in_w, int in_h, int ch, int w, int h) {
  int cw = in_w, chh = in_h;
  std::vector<uint8_t> next;
  auto pass = [&](bool horizontal, int in_size, int out_size) {
    Coeffs co = precompute(in_size, out_size);
    std::vector<int32_t> kk = fixed_point(co.k);
    resample_pass<uint8_t>(cur, cw, chh, ch, horizontal, co, out_size, next, [&](int o, int n, auto at) {
      int64_t ss = int64_t(1) << (kPrecisionBits - 1);
      const int32_t* k = &kk[size_t(o) * co.ksize];
      for (int j = 0; j < n; ++j) ss += int64_t(at(j)) * k[j];
      return clip8(ss);
    });
    cur.swap(next);
    std::vector<uint8_t>().swap(next);  // release the larger buffer early
    (horizontal ? cw : chh) = out_size;
  };
  if (w != in_w) pass(true, in_w, w);
  if (h != in_h) pass(false, in_h, h);
  Image out(w, h, ch);
  for (size_t i = 0; i < cur.size(); ++i) out.pixels[i] = cur[i];
  return out;
}

Image resize_u8(const Image& in, int w, int h) {
  std::vector<uint8_t> cur(in.pixels.size());
  for (size_t i = 0; i < cur.size(); ++i) cur[i] = to_u8(in.pixels[i]);
  return resize_u8_samples(std::move(cur), in.width, in.height, in.channels, w, h);
}

Image resize_float(const Image& in, int w, int h) {
  const int ch = in.channels;
  std::vector<float> cur = in.pixels, next;
  int cw = in.width, chh = in.height;
  auto pass = [&](bool horizontal, int in_size, int out_size) {
    Coeffs co = precompute(in_size, out_size);
    resample_pass<float>(cur, cw, chh, ch, horizontal, co, out_size, next, [&](int o, int n, auto at) {
      double ss = 0.0;
      const double* k = &co.k[size_t(o) * co.ksize];
      for (int j = 0; j < n; ++j) ss += double(at(j)) * k[j];
      return float(ss);
    });
    cur.swap(next);
    (horizontal ? cw : chh) = out_size;
  };
  if (w != in.width) pass(true, in.width, w);
  if (h != in.height) pass(false, in.height, h);
  Image out(w, h, ch);
  out.pixels = std::move(cur);
  return out;
}

}  // namespace

std::vector<uint8_t> load_image_rgb8(const std::string& path, int& width, int& height) {
  DecodedImage d = decode_image_file(path);
  width = d.width;
  height = d.height;
  return d.channels == 3 ? std::move(d.pixels) : convert_channels(d, 3);
}

Image load_image(const std::string& path) {
  int w = 0, h = 0;
  std::vector<uint8_t> px = load_image_rgb8(path, w, h);
  Image img(w, h, 3);
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = px[i];
  return img;
}

Image load_image_gray(const std::string& path) {
  DecodedImage d = decode_image_file(path);
  std::vector<uint8_t> g = d.channels == 1 ? std::move(d.pixels) : convert_channels(d, 1);
  Image img(d.width, d.height, 1);
  for (size_t i = 0; i < g.size(); ++i) img.pixels[i] = g[i];
  return img;
}

Image resize_bilinear(const Image& in, int w, int h, bool round_to_u8) {
  check_resize_args(in, w, h, "resize_bilinear");
  return round_to_u8 ? resize_u8(in, w, h) : resize_float(in, w, h);
}

Image resize_nearest(const Image& in, int w, int h) {
  check_resize_args(in, w, h, "resize_nearest");
  // ImagingScaleAffine: the source position starts at half a step and is
  // accumulated in double, then truncated.
  auto table = [](int in_size, int out_size) {
    std::vector<int> idx(out_size);
    double step = double(in_size) / out_size;
    double pos = step * 0.5;
    for (int i = 0; i < out_size; ++i, pos += step) idx[i] = std::min(std::max(int(pos), 0), in_size - 1);
    return idx;
  };
  std::vector<int> xs = table(in.width, w), ys = table(in.height, h);
  Image out(w, h, in.channels);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < in.channels; ++c) out.at(x, y, c) = in.at(xs[x], ys[y], c);
  return out;
}

Image to_rgb(const Image& img) {
  if (img.channels == 3) return img;
  MDPS_CHECK(img.channels == 1, "to_rgb: expected 1 or 3 channels, got ", img.channels);
  Image out(img.width, img.height, 3);
  for (size_t i = 0; i < img.pixels.size(); ++i)
    for (int c = 0; c < 3; ++c) out.pixels[i * 3 + c] = img.pixels[i];
  return out;
}

void save_png(const std::string& path, const Image& img) {
  MDPS_CHECK(img.channels == 1 || img.channels == 3 || img.channels == 4, "cannot write PNG '", path,
             "': images have 1, 3 or 4 channels, not ", img.channels);
  MDPS_CHECK(img.width > 0 && img.height > 0 && img.pixels.size() == size_t(img.width) * img.height * img.channels,
             "cannot write PNG '", path, "': the image is empty or inconsistent (", img.width, "x", img.height, "x",
             img.channels, ", ", img.pixels.size(), " values)");
  std::vector<unsigned char> bytes(img.pixels.size());
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = to_u8(img.pixels[i]);
  fs::path target(path);
  std::error_code ec;
  fs::path parent = target.parent_path();
  MDPS_CHECK(parent.empty() || fs::is_directory(parent, ec), "cannot write PNG '", path, "': folder '",
             parent.string(), "' does not exist");
  const std::vector<uint8_t> png = encode_png(bytes.data(), img.width, img.height, img.channels);
  write_file_atomic(path, png.data(), png.size());
}

Tensor image_to_tensor(const Image& img) { return images_to_tensor({img}); }

Tensor images_to_tensor(const std::vector<Image>& imgs) {
  MDPS_CHECK(!imgs.empty(), "images_to_tensor: no images");
  const int w = imgs[0].width, h = imgs[0].height;
  const size_t plane = size_t(w) * h;
  std::vector<float> v(imgs.size() * 3 * plane);
  for (size_t n = 0; n < imgs.size(); ++n) {
    const Image& img = imgs[n];
    MDPS_CHECK(img.channels == 3, "image_to_tensor: image ", n, " has ", img.channels,
               " channels; the model takes 3 (use to_rgb)");
    MDPS_CHECK(img.width == w && img.height == h, "image_to_tensor: image ", n, " is ", img.width, "x", img.height,
               ", image 0 is ", w, "x", h);
    MDPS_CHECK(img.pixels.size() == plane * 3, "image_to_tensor: image ", n, " holds ", img.pixels.size(),
               " values, not ", plane * 3);
    float* dst = &v[n * 3 * plane];
    for (size_t i = 0; i < plane; ++i)
      for (int c = 0; c < 3; ++c) dst[c * plane + i] = img.pixels[i * 3 + c] / 127.5f - 1.f;
  }
  return Tensor::from_vector({int64_t(imgs.size()), 3, h, w}, v);
}

Image tensor_to_image(const Tensor& t, int index) {
  MDPS_CHECK(t.defined() && t.ndim() == 4 && t.dim(1) == 3, "tensor_to_image: expected [N,3,H,W], got ",
             t.defined() ? t.describe() : std::string("an undefined tensor"));
  MDPS_CHECK(index >= 0 && index < t.dim(0), "tensor_to_image: index ", index, " out of range for ", t.describe());
  const int h = int(t.dim(2)), w = int(t.dim(3));
  std::vector<float> v = t.slice_batch(index, index + 1).to_vector();
  const size_t plane = size_t(w) * h;
  Image img(w, h, 3);
  for (size_t i = 0; i < plane; ++i)
    for (int c = 0; c < 3; ++c) {
      float p = (v[c * plane + i] + 1.f) * 127.5f;
      img.pixels[i * 3 + c] = std::isnan(p) ? 0.f : std::min(255.f, std::max(0.f, p));
    }
  return img;
}

Image load_model_image(const std::string& path, int size) {
  MDPS_CHECK(size > 0, "load_model_image: size ", size, " must be positive");
  // Decoded to 8 bits and resized in 8 bits (Pillow's path): the full-size
  // image never exists as floats, so a large photo costs 3 bytes a pixel.
  int w = 0, h = 0;
  std::vector<uint8_t> px = load_image_rgb8(path, w, h);
  if (w == size && h == size) {
    Image img(w, h, 3);
    for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = px[i];
    return img;
  }
  return resize_u8_samples(std::move(px), w, h, 3, size, size);
}

}  // namespace mdps
