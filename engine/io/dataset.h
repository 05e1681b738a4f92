// Finding the images of a data set on disk: the MVTec AD and BTAD folder
// layouts, and plain folders of images for training.
//
// MVTec AD:  <root>/train/good/*, <root>/test/<type>/*,
//            <root>/ground_truth/<type>/<stem>_mask.png (not for "good")
// BTAD:      <root>/train/ok/*, <root>/test/ok/*, <root>/test/ko/*,
//            <root>/ground_truth/ko/<stem>.png or <stem>.bmp
// Files are in plain string order of their names (both data sets zero-pad).
#pragma once
#include <string>
#include <vector>

namespace mdps {

struct Sample {
  std::string image_path;
  std::string defect_type;  // "good" for normal images (BTAD's "ok" too)
  int label = 0;            // 0 normal, 1 anomalous
  std::string mask_path;    // empty for normal images
};

struct Dataset {
  std::string root;
  std::string layout;  // "mvtec" or "btad"
  std::vector<std::string> train;
  std::vector<Sample> test;  // test/<type> folders in name order, files in name order
};

// Throws, naming the path, for a missing root, a missing train/ or test/, an
// unknown layout, a folder without images, or a defective test image whose
// ground-truth mask is missing (naming the image and the expected mask).
Dataset read_dataset(const std::string& root);

// *.png, *.jpg, *.jpeg, *.bmp (any case; hidden files skipped), sorted.
// Throws if `dir` is missing, not a folder, or holds no images.
std::vector<std::string> list_images(const std::string& dir);
// The images in `dir` and in all folders below it, as paths relative to dir
// ("a.png", "sub/b.png"), sorted as paths (component by component, so a
// folder's files stay together). Names starting with '.' are skipped, files
// and folders alike; links to folders are not followed (no cycles). Throws
// when dir is not a folder or holds no image at any depth.
std::vector<std::string> list_images_recursive(const std::string& dir);

// The training images of a category root (train/good or train/ok), or of a
// plain folder of images.
std::vector<std::string> training_images(const std::string& dir);

// `k` of `n` items evenly spaced in order: indices i n / k for i < k (all of
// them when k >= n). How `mdps eval --calib-images` and `mdps train
// --holdout` pick images, so both pick the same ones.
std::vector<size_t> evenly_spaced(size_t n, size_t k);

// True when `dir` has train/good or train/ok (MVTec or BTAD layout).
bool is_category_root(const std::string& dir);

// Sorted subfolders of `root` that are category roots, as full paths (empty
// when there are none); throws if `root` is not a folder.
std::vector<std::string> list_categories(const std::string& root);

}  // namespace mdps
