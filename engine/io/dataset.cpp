#include "engine/io/dataset.h"
#include "engine/core/common.h"
#include <algorithm>
#include <cctype>
#include <filesystem>
#include <system_error>

namespace fs = std::filesystem;

namespace mdps {
namespace {

bool is_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}
bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

bool has_image_extension(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp";
}

std::vector<fs::path> sorted_subdirs(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->path().filename().string()[0] != '.' && is_dir(it->path())) out.push_back(it->path());
  MDPS_CHECK(!ec, "cannot list folder '", dir.string(), "': ", ec.message());
  std::sort(out.begin(), out.end(), [](const fs::path& a, const fs::path& b) {
    return a.filename().string() < b.filename().string();
  });
  return out;
}

// The train/<normal> folder name of a category root, or "" when neither exists.
std::string normal_folder(const fs::path& root) {
  if (is_dir(root / "train" / "good")) return "good";
  if (is_dir(root / "train" / "ok")) return "ok";
  return "";
}

std::string find_mask(const fs::path& gt_dir, const std::string& stem, const std::string& layout,
                      std::string& expected) {
  if (layout == "mvtec") {
    fs::path m = gt_dir / (stem + "_mask.png");
    expected = m.string();
    return is_file(m) ? m.string() : "";
  }
  fs::path png = gt_dir / (stem + ".png"), bmp = gt_dir / (stem + ".bmp");
  expected = png.string() + "' or '" + bmp.string();
  if (is_file(png)) return png.string();
  if (is_file(bmp)) return bmp.string();
  return "";
}

}  // namespace

std::vector<std::string> list_images(const std::string& dir) {
  MDPS_CHECK(fs::exists(fs::path(dir)), "image folder '", dir, "' does not exist");
  MDPS_CHECK(is_dir(dir), "'", dir, "' is not a folder");
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path& p = it->path();
    std::string name = p.filename().string();
    if (name.empty() || name[0] == '.' || !has_image_extension(p) || is_dir(p)) continue;
    names.push_back(name);
  }
  MDPS_CHECK(!ec, "cannot list folder '", dir, "': ", ec.message());
  MDPS_CHECK(!names.empty(), "folder '", dir, "' holds no images (*.png, *.jpg, *.jpeg, *.bmp)");
  std::sort(names.begin(), names.end());
  std::vector<std::string> out;
  out.reserve(names.size());
  for (const auto& n : names) out.push_back((fs::path(dir) / n).string());
  return out;
}

std::vector<std::string> list_images_recursive(const std::string& dir) {
  MDPS_CHECK(fs::exists(fs::path(dir)), "image folder '", dir, "' does not exist");
  MDPS_CHECK(is_dir(dir), "'", dir, "' is not a folder");
  std::vector<fs::path> rel;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, fs::directory_options::none, ec), end; !ec && it != end;
       it.increment(ec)) {
    const fs::path& p = it->path();
    const std::string name = p.filename().string();
    if (name.empty() || name[0] == '.') {
      if (it->is_directory(ec)) it.disable_recursion_pending();
      ec.clear();
      continue;
    }
    if (is_dir(p)) continue;  // folders are walked by the iterator; links to folders are not followed
    if (has_image_extension(p)) rel.push_back(p.lexically_relative(dir));
  }
  MDPS_CHECK(!ec, "cannot list folder '", dir, "': ", ec.message());
  MDPS_CHECK(!rel.empty(), "folder '", dir, "' holds no images (*.png, *.jpg, *.jpeg, *.bmp) at any depth");
  std::sort(rel.begin(), rel.end());
  std::vector<std::string> out;
  out.reserve(rel.size());
  for (const auto& r : rel) out.push_back(r.generic_string());
  return out;
}

bool is_category_root(const std::string& dir) { return !normal_folder(dir).empty(); }

std::vector<std::string> training_images(const std::string& dir) {
  std::string normal = normal_folder(dir);
  if (normal.empty()) return list_images(dir);
  return list_images((fs::path(dir) / "train" / normal).string());
}

std::vector<std::string> list_categories(const std::string& root) {
  MDPS_CHECK(is_dir(root), "data folder '", root, "' does not exist or is not a folder");
  std::vector<std::string> out;
  for (const auto& d : sorted_subdirs(root))
    if (is_category_root(d.string())) out.push_back(d.string());
  return out;
}

Dataset read_dataset(const std::string& root_str) {
  const fs::path root(root_str);
  MDPS_CHECK(fs::exists(root), "data set folder '", root_str, "' does not exist");
  MDPS_CHECK(is_dir(root), "data set path '", root_str, "' is not a folder");
  MDPS_CHECK(is_dir(root / "train"), "data set '", root_str, "' has no train/ folder");
  MDPS_CHECK(is_dir(root / "test"), "data set '", root_str, "' has no test/ folder");
  const std::string normal = normal_folder(root);
  MDPS_CHECK(!normal.empty(), "data set '", root_str,
             "' has an unknown layout: expected train/good (MVTec AD) or train/ok (BTAD)");

  Dataset ds;
  ds.root = root_str;
  ds.layout = normal == "good" ? "mvtec" : "btad";
  ds.train = list_images((root / "train" / normal).string());

  auto types = sorted_subdirs(root / "test");
  MDPS_CHECK(!types.empty(), "data set '", root_str, "': test/ holds no folders");
  for (const auto& type_dir : types) {
    const std::string type = type_dir.filename().string();
    const bool good = type == normal;
    for (const auto& img : list_images(type_dir.string())) {
      Sample s;
      s.image_path = img;
      s.defect_type = good ? "good" : type;
      s.label = good ? 0 : 1;
      if (!good) {
        std::string expected;
        s.mask_path = find_mask(root / "ground_truth" / type, fs::path(img).stem().string(), ds.layout, expected);
        MDPS_CHECK(!s.mask_path.empty(), "data set '", root_str, "': defective test image '", img,
                   "' has no ground-truth mask (expected '", expected, "')");
      }
      ds.test.push_back(std::move(s));
    }
  }
  return ds;
}

std::vector<size_t> evenly_spaced(size_t n, size_t k) {
  k = std::min(k, n);
  std::vector<size_t> out;
  for (size_t i = 0; i < k; ++i) out.push_back(i * n / k);
  return out;
}

}  // namespace mdps
