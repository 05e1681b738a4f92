// Images on the host: decoding (image_decode.h), PIL-compatible resizing, PNG
// output, and the conversion to and from the model's [-1,1] NCHW tensors.
//
// Pixels are floats in [0,255], interleaved HWC. Decoded images hold exact
// integers, and resize_bilinear(..., true) reproduces Pillow's 8-bit result
// bit for bit, so what the engine feeds the model is what the authors' PIL
// pipeline fed theirs.
#pragma once
#include "engine/core/tensor.h"
#include "engine/io/image_decode.h"
#include <string>
#include <vector>

namespace mdps {

struct Image {
  int width = 0, height = 0, channels = 0;
  std::vector<float> pixels;  // HWC, [0,255]

  Image() = default;
  Image(int w, int h, int c, float fill = 0.f)
      : width(w), height(h), channels(c), pixels(size_t(w) * h * c, fill) {}
  bool empty() const { return pixels.empty(); }
  size_t index(int x, int y, int c = 0) const { return (size_t(y) * width + x) * channels + c; }
  float& at(int x, int y, int c = 0) { return pixels[index(x, y, c)]; }
  float at(int x, int y, int c = 0) const { return pixels[index(x, y, c)]; }
};

// PNG, JPEG or BMP (engine/image_decode.h: nothing else is read) as 3
// channels: grayscale is repeated, alpha dropped, 16-bit samples reduced to
// their high byte (as PIL's "RGB;16B" unpacker does). Errors name the file:
// missing, not a regular file (a folder, a FIFO, a device), empty, of another
// format, above max_image_pixels(), or damaged (with the decoder's reason).
Image load_image(const std::string& path);
// The same as 8-bit RGB samples (3 bytes a pixel instead of 12).
std::vector<uint8_t> load_image_rgb8(const std::string& path, int& width, int& height);
// One channel, for ground-truth masks: gray as is (alpha dropped); for colour
// files the maximum over R,G,B, so any non-black pixel stays non-zero.
Image load_image_gray(const std::string& path);

// Pillow's Image.resize(..., BILINEAR): a triangle filter whose support grows
// with the scale when downscaling (antialiased), pixel centres at (i+0.5)*scale,
// weights normalised per output pixel, horizontal pass then vertical pass.
// round_to_u8 reproduces Pillow's 8-bit path exactly (22-bit fixed-point
// weights, an 8-bit intermediate after the horizontal pass, rounded outputs);
// false works in double precision throughout, like Pillow's mode "F".
Image resize_bilinear(const Image& in, int w, int h, bool round_to_u8 = true);
// Pillow's Image.resize(..., NEAREST): source index floor((i+0.5)*in/out).
Image resize_nearest(const Image& in, int w, int h);
// A 3-channel copy (grayscale repeated); 3-channel images are returned as is.
Image to_rgb(const Image& img);

// 1, 3 or 4 channels; values clamped to [0,255] and rounded to nearest. The
// PNG is encoded in memory and written by write_file_atomic (every write
// checked, renamed only when complete), so readers never see a half-written
// PNG and a full disk is an error.
void save_png(const std::string& path, const Image& img);

// Model input: x = pixel / 127.5 - 1, CHW, as a CPU tensor [1,3,H,W].
Tensor image_to_tensor(const Image& img);  // requires 3 channels
// A batch [N,3,H,W] of equally sized 3-channel images.
Tensor images_to_tensor(const std::vector<Image>& imgs);
// Sample `index` of an [N,3,H,W] tensor (any backend) in [-1,1] -> pixels
// (x + 1) * 127.5 clamped to [0,255] (not rounded; save_png rounds).
Image tensor_to_image(const Tensor& t, int index = 0);
// load_image, then resize_bilinear to size x size (8-bit, as PIL) if needed;
// decoded and resized in 8 bits, without a float copy of the full image.
Image load_model_image(const std::string& path, int size);

}  // namespace mdps
