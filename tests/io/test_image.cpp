// Image decoding, PIL-compatible resizing, PNG output, tensor conversion and
// the colour maps. Expected resize values are derived by hand in comments
// from Pillow's algorithm (libImaging/Resample.c), not copied from a run.
#include <doctest/doctest.h>
#include "engine/eval/colormap.h"
#include "engine/io/image.h"
#include "tests/test_util.h"
#include <stb_image_write.h>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;
using namespace mdps;

namespace {

std::string write_bytes(const std::string& path, const std::vector<unsigned char>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  return path;
}

// The message of the mdps::Error `f` throws ("" if it throws none).
template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

Image make(int w, int h, int c, std::vector<float> px) {
  Image img(w, h, c);
  REQUIRE(px.size() == img.pixels.size());
  img.pixels = std::move(px);
  return img;
}

// ---- a minimal 16-bit grayscale PNG writer (stb_image_write only does 8 bit) ----
uint32_t crc32(const unsigned char* p, size_t n, uint32_t crc = 0) {
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) {
    crc ^= p[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}
void put32(std::vector<unsigned char>& v, uint32_t x) {
  for (int s = 24; s >= 0; s -= 8) v.push_back((unsigned char)(x >> s));
}
void chunk(std::vector<unsigned char>& png, const char* type, const std::vector<unsigned char>& data) {
  put32(png, uint32_t(data.size()));
  std::vector<unsigned char> body(type, type + 4);
  body.insert(body.end(), data.begin(), data.end());
  png.insert(png.end(), body.begin(), body.end());
  put32(png, crc32(body.data(), body.size()));
}
std::vector<unsigned char> png16_gray(int w, int h, const std::vector<uint16_t>& px) {
  std::vector<unsigned char> raw;  // filter byte 0, then big-endian samples
  for (int y = 0; y < h; ++y) {
    raw.push_back(0);
    for (int x = 0; x < w; ++x) {
      raw.push_back((unsigned char)(px[y * w + x] >> 8));
      raw.push_back((unsigned char)(px[y * w + x] & 0xFF));
    }
  }
  std::vector<unsigned char> z = {0x78, 0x01, 0x01};  // zlib header; one final stored block
  z.push_back((unsigned char)(raw.size() & 0xFF));
  z.push_back((unsigned char)(raw.size() >> 8));
  z.push_back((unsigned char)(~raw.size() & 0xFF));
  z.push_back((unsigned char)((~raw.size() >> 8) & 0xFF));
  z.insert(z.end(), raw.begin(), raw.end());
  uint32_t a = 1, b = 0;
  for (unsigned char c : raw) a = (a + c) % 65521, b = (b + a) % 65521;
  put32(z, (b << 16) | a);
  std::vector<unsigned char> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  std::vector<unsigned char> ihdr;
  put32(ihdr, uint32_t(w));
  put32(ihdr, uint32_t(h));
  ihdr.insert(ihdr.end(), {16, 0, 0, 0, 0});  // 16 bit, grayscale, deflate, no filter, no interlace
  chunk(png, "IHDR", ihdr);
  chunk(png, "IDAT", z);
  chunk(png, "IEND", {});
  return png;
}

}  // namespace

TEST_CASE("load_image: gray, RGB and RGBA PNGs all come back as 3 exact channels") {
  std::string dir = test::temp_dir("img_load");
  const int w = 3, h = 2;
  std::vector<unsigned char> gray = {0, 50, 100, 150, 200, 255};
  std::vector<unsigned char> rgb(w * h * 3), rgba(w * h * 4);
  for (int i = 0; i < w * h; ++i) {
    for (int c = 0; c < 3; ++c) rgb[i * 3 + c] = (unsigned char)(i * 40 + c * 7);
    for (int c = 0; c < 4; ++c) rgba[i * 4 + c] = (unsigned char)(c == 3 ? 10 : i * 30 + c);
  }
  REQUIRE(stbi_write_png((dir + "/g.png").c_str(), w, h, 1, gray.data(), w));
  REQUIRE(stbi_write_png((dir + "/rgb.png").c_str(), w, h, 3, rgb.data(), w * 3));
  REQUIRE(stbi_write_png((dir + "/rgba.png").c_str(), w, h, 4, rgba.data(), w * 4));

  Image g = load_image(dir + "/g.png");
  CHECK(g.width == w);
  CHECK(g.height == h);
  CHECK(g.channels == 3);
  for (int i = 0; i < w * h; ++i)
    for (int c = 0; c < 3; ++c) CHECK(g.pixels[i * 3 + c] == gray[i]);

  Image c3 = load_image(dir + "/rgb.png");
  REQUIRE(c3.channels == 3);
  for (size_t i = 0; i < rgb.size(); ++i) CHECK(c3.pixels[i] == rgb[i]);

  Image c4 = load_image(dir + "/rgba.png");
  REQUIRE(c4.channels == 3);  // alpha dropped, colour untouched (not premultiplied)
  for (int i = 0; i < w * h; ++i)
    for (int c = 0; c < 3; ++c) CHECK(c4.pixels[i * 3 + c] == rgba[i * 4 + c]);
}

TEST_CASE("load_image_gray: one channel; colour masks keep any non-black pixel") {
  std::string dir = test::temp_dir("img_gray");
  std::vector<unsigned char> rgb = {0, 0, 0, 200, 0, 0, 0, 0, 1, 10, 240, 30};
  REQUIRE(stbi_write_png((dir + "/m.png").c_str(), 4, 1, 3, rgb.data(), 12));
  Image m = load_image_gray(dir + "/m.png");
  REQUIRE(m.channels == 1);
  REQUIRE(m.width == 4);
  CHECK(m.pixels == std::vector<float>{0, 200, 1, 240});

  std::vector<unsigned char> ga = {7, 255, 9, 0};  // gray + alpha: alpha ignored
  REQUIRE(stbi_write_png((dir + "/ga.png").c_str(), 2, 1, 2, ga.data(), 4));
  CHECK(load_image_gray(dir + "/ga.png").pixels == std::vector<float>{7, 9});
}

TEST_CASE("load_image: 16-bit PNGs keep the high byte") {
  std::string dir = test::temp_dir("img_16");
  std::string p = write_bytes(dir + "/g16.png", png16_gray(3, 1, {0x0000, 0x12FF, 0xFF00}));
  Image img = load_image(p);
  REQUIRE(img.channels == 3);
  REQUIRE(img.width == 3);
  for (int c = 0; c < 3; ++c) {
    CHECK(img.at(0, 0, c) == 0);
    CHECK(img.at(1, 0, c) == 0x12);
    CHECK(img.at(2, 0, c) == 0xFF);
  }
  CHECK(load_image_gray(p).pixels == std::vector<float>{0, 0x12, 0xFF});
}

TEST_CASE("load_image: BMP is exact and JPEG is close") {
  std::string dir = test::temp_dir("img_fmt");
  const int w = 16, h = 8;
  std::vector<unsigned char> px(w * h * 3);
  for (int i = 0; i < w * h; ++i) px[i * 3] = 200, px[i * 3 + 1] = 90, px[i * 3 + 2] = 30;
  px[5 * 3 + 1] = 17;  // one odd pixel so a BMP row-order mix-up would show
  REQUIRE(stbi_write_bmp((dir + "/a.bmp").c_str(), w, h, 3, px.data()));
  Image b = load_image(dir + "/a.bmp");
  REQUIRE(b.width == w);
  REQUIRE(b.height == h);
  for (size_t i = 0; i < px.size(); ++i) CHECK(b.pixels[i] == px[i]);

  px[5 * 3 + 1] = 90;  // a flat colour survives JPEG up to rounding
  REQUIRE(stbi_write_jpg((dir + "/a.JPG").c_str(), w, h, 3, px.data(), 100));
  Image j = load_image(dir + "/a.JPG");
  REQUIRE(j.width == w);
  REQUIRE(j.channels == 3);
  for (size_t i = 0; i < px.size(); ++i) CHECK(std::fabs(j.pixels[i] - px[i]) <= 3.f);
}

TEST_CASE("load_image: unreadable files fail with the file's name") {
  std::string dir = test::temp_dir("img_bad");
  std::string garbage = write_bytes(dir + "/garbage.png", {'n', 'o', 't', ' ', 'a', 'n', ' ', 'i', 'm', 'g'});
  std::string empty = write_bytes(dir + "/empty.png", {});
  std::string missing = dir + "/missing.png";

  std::string e1 = error_of([&] { load_image(garbage); });
  CHECK(e1.find("garbage.png") != std::string::npos);
  CHECK(e1.find("cannot decode") != std::string::npos);
  std::string e2 = error_of([&] { load_image(empty); });
  CHECK(e2.find("empty.png") != std::string::npos);
  CHECK(e2.find("empty") != std::string::npos);
  std::string e3 = error_of([&] { load_image_gray(missing); });
  CHECK(e3.find("missing.png") != std::string::npos);
  CHECK(e3.find("no such file") != std::string::npos);
  std::string e4 = error_of([&] { load_image(dir); });
  CHECK(e4.find("directory") != std::string::npos);
}

TEST_CASE("save_png: rounds and clamps, round-trips, leaves no temporary file") {
  std::string dir = test::temp_dir("img_save");
  Image img = make(3, 2, 1, {12.4f, 12.6f, -5.f, 300.f, 0.5f, 254.49f});
  save_png(dir + "/out.png", img);
  Image back = load_image_gray(dir + "/out.png");
  CHECK(back.pixels == std::vector<float>{12, 13, 0, 255, 1, 254});
  int files = 0;
  for (auto& e : fs::directory_iterator(dir)) {
    files += 1;
    CHECK(e.path().filename() == "out.png");
  }
  CHECK(files == 1);

  Image rgb(4, 3, 3);
  for (size_t i = 0; i < rgb.pixels.size(); ++i) rgb.pixels[i] = float((i * 37) % 256);
  save_png(dir + "/rgb.png", rgb);
  CHECK(load_image(dir + "/rgb.png").pixels == rgb.pixels);

  std::string e = error_of([&] { save_png(dir + "/no/such/dir/x.png", rgb); });
  CHECK(e.find("x.png") != std::string::npos);
  CHECK(!error_of([&] { save_png(dir + "/two.png", Image(2, 2, 2)); }).empty());
}

TEST_CASE("resize_bilinear: 4 -> 2 uses PIL's antialiased triangle filter") {
  // scale = 2, so support = 2 and taps are weighted tri((j - center + 0.5) / 2).
  // Output 0: center 1, taps j = 0..2 (xmin = int(-0.5) = 0, xmax = int(3.5) = 3):
  //   tri(-0.25), tri(0.25), tri(0.75) = 0.75, 0.75, 0.25 -> normalised 3/7, 3/7, 1/7
  //   (0*3 + 100*3 + 200) / 7 = 500/7 = 71.43
  // Output 1: center 3, taps j = 1..3 (xmax = 5.5 clipped to 4): 1/7, 3/7, 3/7
  //   (100 + 200*3 + 255*3) / 7 = 1465/7 = 209.29
  Image row = make(4, 1, 1, {0, 100, 200, 255});
  Image f = resize_bilinear(row, 2, 1, false);
  REQUIRE(f.width == 2);
  REQUIRE(f.height == 1);
  CHECK(f.pixels[0] == doctest::Approx(500.0 / 7).epsilon(1e-6));
  CHECK(f.pixels[1] == doctest::Approx(1465.0 / 7).epsilon(1e-6));
  CHECK(resize_bilinear(row, 2, 1).pixels == std::vector<float>{71, 209});

  // The same along y (the vertical pass), with three channels kept apart.
  Image col(1, 4, 3);
  for (int y = 0; y < 4; ++y)
    for (int c = 0; c < 3; ++c) col.at(0, y, c) = c == 1 ? row.pixels[y] : float(c * 10);
  Image cv = resize_bilinear(col, 1, 2);
  CHECK(cv.at(0, 0, 1) == 71);
  CHECK(cv.at(0, 1, 1) == 209);
  CHECK(cv.at(0, 1, 0) == 0);
  CHECK(cv.at(0, 1, 2) == 20);
}

TEST_CASE("resize_bilinear: halving is a [1,3,3,1]/8 filter inside, not a 2x2 box") {
  // Interior output i has center 2i + 1 and taps 2i-1 .. 2i+2 with weights
  // tri(-0.75), tri(-0.25), tri(0.25), tri(0.75) = 1/4, 3/4, 3/4, 1/4 (sum 2).
  // At the edges the outside tap is dropped and the rest renormalised (3,3,1)/7.
  const int n = 10;
  std::vector<float> v(n);
  for (int x = 0; x < n; ++x) v[x] = float(x * x);  // curved, so box and triangle differ
  Image out = resize_bilinear(make(n, 1, 1, v), n / 2, 1, false);
  for (int i = 1; i < n / 2 - 1; ++i) {
    double want = (v[2 * i - 1] + 3 * v[2 * i] + 3 * v[2 * i + 1] + v[2 * i + 2]) / 8.0;
    CHECK(out.pixels[i] == doctest::Approx(want).epsilon(1e-6));
    CHECK(std::fabs(out.pixels[i] - (v[2 * i] + v[2 * i + 1]) / 2.0) > 0.1);
  }
  CHECK(out.pixels[0] == doctest::Approx((3 * v[0] + 3 * v[1] + v[2]) / 7.0).epsilon(1e-6));
  CHECK(out.pixels[n / 2 - 1] == doctest::Approx((v[n - 3] + 3 * v[n - 2] + 3 * v[n - 1]) / 7.0).epsilon(1e-6));
}

TEST_CASE("resize_bilinear: 2x2 -> 4x4 upscale with PIL's edge handling") {
  // scale 0.5, support 1: output 0 has center 0.25, taps j = int(-0.25) = 0 .. int(1.75) = 1,
  // so only pixel 0 (weight tri(0.25)) -> a copy; output 1 (center 0.75): 0.75, 0.25;
  // output 2 (center 1.25): 0.25, 0.75; output 3: a copy of pixel 1.
  // Rows [0,100] and [200,40] become [0,25,75,100] and [200,160,80,40]; then columns:
  //   row 1 = .75 r0 + .25 r1 = [50, 58.75, 76.25, 85]
  //   row 2 = .25 r0 + .75 r1 = [150, 126.25, 78.75, 55]
  Image in = make(2, 2, 1, {0, 100, 200, 40});
  Image f = resize_bilinear(in, 4, 4, false);
  std::vector<float> want = {0, 25, 75, 100, 50, 58.75f, 76.25f, 85, 150, 126.25f, 78.75f, 55, 200, 160, 80, 40};
  REQUIRE(f.pixels.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) CHECK(f.pixels[i] == doctest::Approx(want[i]).epsilon(1e-6));
  Image u = resize_bilinear(in, 4, 4);
  std::vector<float> want_u8 = {0, 25, 75, 100, 50, 59, 76, 85, 150, 126, 79, 55, 200, 160, 80, 40};
  CHECK(u.pixels == want_u8);
}

TEST_CASE("resize_bilinear: the 8-bit path rounds between the passes, like PIL") {
  // 3 -> 1: center 1.5, support 3, taps tri((j - 1) / 3) = 2/3, 1, 2/3 -> 2/7, 3/7, 2/7.
  // Rows [0,1,0], [1,1,0], [0,1,0] give 3/7, 5/7, 3/7 horizontally.
  // PIL stores them as uint8 0, 1, 0, so the vertical pass gives 3/7 -> 0;
  // in floating point the result is (2*3 + 3*5 + 2*3) / 49 = 27/49.
  Image in = make(3, 3, 1, {0, 1, 0, 1, 1, 0, 0, 1, 0});
  CHECK(resize_bilinear(in, 1, 1).pixels == std::vector<float>{0});
  CHECK(resize_bilinear(in, 1, 1, false).pixels[0] == doctest::Approx(27.0 / 49).epsilon(1e-6));
}

TEST_CASE("resize_bilinear: constants stay constant; same size is a copy") {
  for (bool u8 : {true, false}) {
    Image c(7, 5, 3, 123.f);
    for (auto [w, h] : {std::pair{3, 11}, {20, 2}, {1, 1}, {7, 5}, {64, 64}}) {
      Image r = resize_bilinear(c, w, h, u8);
      REQUIRE(r.width == w);
      REQUIRE(r.height == h);
      REQUIRE(r.channels == 3);
      for (float p : r.pixels) CHECK(p == doctest::Approx(123.f).epsilon(1e-6));
    }
  }
  Image rnd(5, 4, 3);
  auto v = test::random_floats(rnd.pixels.size(), 7, 0.f, 255.f);
  for (size_t i = 0; i < v.size(); ++i) rnd.pixels[i] = std::round(v[i]);
  CHECK(resize_bilinear(rnd, 5, 4).pixels == rnd.pixels);
  CHECK(!error_of([&] { resize_bilinear(rnd, 0, 4); }).empty());
}

TEST_CASE("resize_nearest: PIL picks floor((i + 0.5) * in / out)") {
  Image row = make(4, 1, 1, {10, 20, 30, 40});
  CHECK(resize_nearest(row, 2, 1).pixels == std::vector<float>{20, 40});      // 1, 3
  CHECK(resize_nearest(row, 8, 1).pixels == std::vector<float>{10, 10, 20, 20, 30, 30, 40, 40});
  Image three = make(3, 1, 1, {1, 2, 3});
  CHECK(resize_nearest(three, 2, 1).pixels == std::vector<float>{1, 3});      // 0.75, 2.25
  Image col = make(1, 3, 1, {1, 2, 3});
  CHECK(resize_nearest(col, 1, 2).pixels == std::vector<float>{1, 3});
}

TEST_CASE("image_to_tensor / tensor_to_image: [-1,1] CHW and back") {
  Image img(2, 1, 3);
  img.pixels = {0, 127.5f, 255, 51, 102, 204};
  Tensor t = image_to_tensor(img);
  REQUIRE(t.shape() == Shape{1, 3, 1, 2});
  // CHW: channel c of pixel x sits at c * W + x.
  CHECK(t.at(0) == doctest::Approx(-1.f));
  CHECK(t.at(1) == doctest::Approx(51 / 127.5 - 1));
  CHECK(t.at(2) == doctest::Approx(0.f));
  CHECK(t.at(3) == doctest::Approx(102 / 127.5 - 1));
  CHECK(t.at(4) == doctest::Approx(1.f));
  CHECK(t.at(5) == doctest::Approx(204 / 127.5 - 1));
  Image back = tensor_to_image(t);
  REQUIRE(back.channels == 3);
  for (size_t i = 0; i < img.pixels.size(); ++i) CHECK(back.pixels[i] == doctest::Approx(img.pixels[i]).epsilon(1e-5));

  Image other(2, 1, 3, 30.f);
  Tensor batch = images_to_tensor({img, other});
  REQUIRE(batch.shape() == Shape{2, 3, 1, 2});
  for (float p : tensor_to_image(batch, 1).pixels) CHECK(p == doctest::Approx(30.f).epsilon(1e-5));

  Tensor wild = Tensor::from_vector({1, 3, 1, 1}, {2.f, -3.f, 0.f});
  CHECK(tensor_to_image(wild).pixels == std::vector<float>{255, 0, 127.5f});
  CHECK(!error_of([&] { tensor_to_image(batch, 2); }).empty());
  CHECK(!error_of([&] { image_to_tensor(Image(2, 2, 1)); }).empty());
  CHECK(!error_of([&] { images_to_tensor({img, Image(3, 1, 3)}); }).empty());
}

TEST_CASE("load_model_image: loads, resizes like PIL, always 3 channels") {
  std::string dir = test::temp_dir("img_model");
  std::vector<unsigned char> gray(8 * 6);
  for (size_t i = 0; i < gray.size(); ++i) gray[i] = (unsigned char)(i * 5);
  REQUIRE(stbi_write_png((dir + "/g.png").c_str(), 8, 6, 1, gray.data(), 8));
  Image m = load_model_image(dir + "/g.png", 4);
  REQUIRE(m.width == 4);
  REQUIRE(m.height == 4);
  REQUIRE(m.channels == 3);
  CHECK(m.pixels == resize_bilinear(load_image(dir + "/g.png"), 4, 4).pixels);
  CHECK(!error_of([&] { load_model_image(dir + "/g.png", 0); }).empty());
}

TEST_CASE("colormap_jet follows matplotlib's table") {
  // jet(0) = (0, 0, 0.5), jet(1) = (0.5, 0, 0); uint8 by truncating x * 255.
  // A value in the middle lands on entry int(0.5 * 256) = 128, x = 128/255:
  // red (x - 0.35) / 0.31 = 0.4902, times 255 is 125 up to rounding, and matplotlib's
  // arithmetic lands just below it (124.99999...), so the byte is 124; green 1 -> 255;
  // blue 1 - (x - 0.34) / 0.31 = 0.4775 -> 121.
  std::vector<float> v = {0.f, 10.f, 5.f, NAN, -4.f, 20.f};
  Image c = colormap_jet(v.data(), 3, 2, 0.f, 10.f);
  REQUIRE(c.channels == 3);
  REQUIRE(c.width == 3);
  std::vector<float> want = {0, 0, 127, 127, 0, 0, 124, 255, 121, 0, 0, 0, 0, 0, 127, 127, 0, 0};
  for (size_t i = 0; i < want.size(); ++i) CHECK_MESSAGE(c.pixels[i] == want[i], "value ", i);
  Image flat = colormap_jet(v.data(), 3, 2, 1.f, 1.f);  // no range: everything at the bottom
  CHECK(flat.at(1, 0, 2) == 127);
  Image t = colormap_turbo(v.data(), 3, 2, 0.f, 10.f);
  CHECK(t.at(0, 0, 0) < t.at(1, 0, 0));  // turbo runs from dark blue to dark red
  CHECK(t.at(0, 0, 2) > t.at(1, 0, 2));
}

TEST_CASE("overlay and hstack") {
  Image base(2, 2, 1, 100.f), heat(2, 2, 3, 200.f);
  Image o = overlay(base, heat, 0.25f);
  REQUIRE(o.channels == 3);
  for (float p : o.pixels) CHECK(p == doctest::Approx(125.f));
  CHECK(overlay(base, heat, 0.f).pixels == std::vector<float>(12, 100.f));
  CHECK(!error_of([&] { overlay(base, Image(3, 2, 3)); }).empty());

  Image tall(1, 3, 1, 50.f);
  Image s = hstack({base, tall, heat}, 1);
  REQUIRE(s.width == 2 + 1 + 1 + 1 + 2);
  REQUIRE(s.height == 3);
  REQUIRE(s.channels == 3);
  CHECK(s.at(0, 0, 1) == 100);
  CHECK(s.at(0, 2, 1) == 0);    // padding under the shorter image
  CHECK(s.at(2, 0, 0) == 0);    // the gap
  CHECK(s.at(3, 2, 2) == 50);
  CHECK(s.at(6, 1, 0) == 200);
}
