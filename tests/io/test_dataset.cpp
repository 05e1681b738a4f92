// Data set listing: the real tire category (MVTec layout) in the shared data,
// and small generated MVTec / BTAD / plain trees with faults built in.
#include <doctest/doctest.h>
#include "engine/io/dataset.h"
#include "engine/core/common.h"
#include "engine/io/image.h"
#include "tests/test_util.h"
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

namespace fs = std::filesystem;
using namespace mdps;

namespace {

// Listing never decodes, so placeholder bytes are enough for image files.
void touch(const fs::path& p) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << "x";
}

template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::string name_of(const std::string& p) { return fs::path(p).filename().string(); }

// A small MVTec-style category: 3 train images, 2 good and 2 scratch test images.
fs::path make_mvtec(const fs::path& root) {
  for (auto n : {"002.png", "000.png", "001.PNG"}) touch(root / "train/good" / n);
  touch(root / "train/good/notes.txt");
  touch(root / "train/good/.hidden.png");
  for (auto n : {"000.png", "001.png"}) touch(root / "test/good" / n);
  for (auto n : {"001.png", "000.png"}) {
    touch(root / "test/scratch" / n);
    touch(root / "ground_truth/scratch" / (fs::path(n).stem().string() + "_mask.png"));
  }
  return root;
}

fs::path make_btad(const fs::path& root) {
  for (auto n : {"0000.bmp", "0001.bmp"}) touch(root / "train/ok" / n);
  touch(root / "test/ok/0000.bmp");
  touch(root / "test/ko/0000.bmp");
  touch(root / "test/ko/0001.bmp");
  touch(root / "ground_truth/ko/0000.png");
  touch(root / "ground_truth/ko/0001.bmp");
  return root;
}

}  // namespace

TEST_CASE("read_dataset: the shared tire category") {
  const std::string root = test::shared_dir() + "/data/tire";
  REQUIRE_MESSAGE(fs::is_directory(root), "shared data missing: ", root);
  Dataset ds = read_dataset(root);
  CHECK(ds.layout == "mvtec");
  CHECK(ds.train.size() == 210);
  CHECK(std::is_sorted(ds.train.begin(), ds.train.end()));
  REQUIRE(ds.test.size() == 112);

  std::map<std::string, int> per_type;
  int masks = 0;
  for (const Sample& s : ds.test) {
    per_type[s.defect_type] += 1;
    if (s.defect_type == "good") {
      CHECK(s.label == 0);
      CHECK(s.mask_path.empty());
    } else {
      CHECK(s.label == 1);
      REQUIRE(!s.mask_path.empty());
      CHECK(fs::is_regular_file(s.mask_path));
      CHECK(name_of(s.mask_path) == fs::path(s.image_path).stem().string() + "_mask.png");
      CHECK(fs::path(s.mask_path).parent_path().filename() == s.defect_type);
      masks += 1;
    }
    CHECK(fs::path(s.image_path).parent_path().filename() == s.defect_type);
  }
  CHECK(per_type == std::map<std::string, int>{{"good", 25}, {"contamination", 28}, {"cut", 27}, {"hole", 27},
                                               {"combined", 5}});
  CHECK(masks == 87);
  // Types in name order, files in name order within each.
  CHECK(ds.test.front().defect_type == "combined");
  CHECK(ds.test.back().defect_type == "hole");
  for (size_t i = 1; i < ds.test.size(); ++i)
    if (ds.test[i].defect_type == ds.test[i - 1].defect_type) CHECK(ds.test[i - 1].image_path < ds.test[i].image_path);

  CHECK(is_category_root(root));
  CHECK(training_images(root) == ds.train);
  auto cats = list_categories(test::shared_dir() + "/data");
  CHECK(std::find(cats.begin(), cats.end(), test::shared_dir() + "/data/tire") != cats.end());

  // The listed files decode: a train image as RGB, a mask as one channel of the same size.
  Image img = load_image(ds.train.front());
  CHECK(img.channels == 3);
  Image mask = load_image_gray(ds.test.front().mask_path);
  CHECK(mask.channels == 1);
  CHECK(mask.width == img.width);
  CHECK(mask.height == img.height);
  CHECK(*std::max_element(mask.pixels.begin(), mask.pixels.end()) > 0.f);
}

TEST_CASE("read_dataset: a generated MVTec tree") {
  fs::path root = make_mvtec(test::temp_dir("ds_mvtec"));
  Dataset ds = read_dataset(root.string());
  CHECK(ds.layout == "mvtec");
  REQUIRE(ds.train.size() == 3);  // notes.txt and the hidden file are not images
  CHECK(name_of(ds.train[0]) == "000.png");
  CHECK(name_of(ds.train[1]) == "001.PNG");
  CHECK(name_of(ds.train[2]) == "002.png");
  REQUIRE(ds.test.size() == 4);
  CHECK(ds.test[0].defect_type == "good");
  CHECK(ds.test[0].label == 0);
  CHECK(ds.test[2].defect_type == "scratch");
  CHECK(ds.test[2].label == 1);
  CHECK(name_of(ds.test[2].image_path) == "000.png");
  CHECK(ds.test[2].mask_path == (root / "ground_truth/scratch/000_mask.png").string());
  CHECK(ds.test[3].mask_path == (root / "ground_truth/scratch/001_mask.png").string());
}

TEST_CASE("read_dataset: faults are reported with the path at fault") {
  SUBCASE("missing mask") {
    fs::path root = make_mvtec(test::temp_dir("ds_nomask"));
    fs::remove(root / "ground_truth/scratch/001_mask.png");
    std::string e = error_of([&] { read_dataset(root.string()); });
    CHECK(contains(e, (root / "test/scratch/001.png").string()));
    CHECK(contains(e, (root / "ground_truth/scratch/001_mask.png").string()));
  }
  SUBCASE("empty train folder") {
    fs::path root = make_mvtec(test::temp_dir("ds_empty"));
    for (auto& f : std::vector<fs::path>(fs::directory_iterator(root / "train/good"), {})) fs::remove(f);
    std::string e = error_of([&] { read_dataset(root.string()); });
    CHECK(contains(e, (root / "train/good").string()));
    CHECK(contains(e, "no images"));
  }
  SUBCASE("empty test type folder") {
    fs::path root = make_mvtec(test::temp_dir("ds_emptytype"));
    fs::create_directories(root / "test/crack");
    CHECK(contains(error_of([&] { read_dataset(root.string()); }), (root / "test/crack").string()));
  }
  SUBCASE("missing test folder") {
    fs::path root = make_mvtec(test::temp_dir("ds_notest"));
    fs::remove_all(root / "test");
    std::string e = error_of([&] { read_dataset(root.string()); });
    CHECK(contains(e, root.string()));
    CHECK(contains(e, "test/"));
  }
  SUBCASE("missing train folder") {
    fs::path root = make_mvtec(test::temp_dir("ds_notrain"));
    fs::remove_all(root / "train");
    CHECK(contains(error_of([&] { read_dataset(root.string()); }), "train/"));
  }
  SUBCASE("missing root") {
    std::string root = test::temp_dir("ds_noroot") + "/nothing";
    CHECK(contains(error_of([&] { read_dataset(root); }), root));
  }
  SUBCASE("unknown layout") {
    fs::path root = test::temp_dir("ds_layout");
    touch(root / "train/normal/000.png");
    touch(root / "test/normal/000.png");
    std::string e = error_of([&] { read_dataset(root.string()); });
    CHECK(contains(e, "layout"));
    CHECK(contains(e, root.string()));
  }
}

TEST_CASE("read_dataset: BTAD layout with ok/ko and .png or .bmp masks") {
  fs::path root = make_btad(test::temp_dir("ds_btad"));
  Dataset ds = read_dataset(root.string());
  CHECK(ds.layout == "btad");
  CHECK(ds.train.size() == 2);
  REQUIRE(ds.test.size() == 3);
  // "ko" sorts before "ok".
  CHECK(ds.test[0].defect_type == "ko");
  CHECK(ds.test[0].label == 1);
  CHECK(ds.test[0].mask_path == (root / "ground_truth/ko/0000.png").string());
  CHECK(ds.test[1].mask_path == (root / "ground_truth/ko/0001.bmp").string());
  CHECK(ds.test[2].defect_type == "good");
  CHECK(ds.test[2].label == 0);
  CHECK(ds.test[2].mask_path.empty());
  CHECK(training_images(root.string()) == ds.train);

  fs::remove(root / "ground_truth/ko/0001.bmp");
  std::string e = error_of([&] { read_dataset(root.string()); });
  CHECK(contains(e, (root / "test/ko/0001.bmp").string()));
  CHECK(contains(e, (root / "ground_truth/ko/0001.png").string()));
  CHECK(contains(e, (root / "ground_truth/ko/0001.bmp").string()));
}

TEST_CASE("list_images, training_images and list_categories") {
  fs::path dir = test::temp_dir("ds_plain");
  for (auto n : {"b.JPEG", "a.jpg", "c.Bmp", "d.png", "e.gif", "f.txt"}) touch(dir / "imgs" / n);
  fs::create_directories(dir / "imgs/sub.png");  // a folder named like an image
  auto imgs = list_images((dir / "imgs").string());
  REQUIRE(imgs.size() == 4);
  CHECK(name_of(imgs[0]) == "a.jpg");
  CHECK(name_of(imgs[1]) == "b.JPEG");
  CHECK(name_of(imgs[2]) == "c.Bmp");
  CHECK(name_of(imgs[3]) == "d.png");
  CHECK(!is_category_root((dir / "imgs").string()));
  CHECK(training_images((dir / "imgs").string()) == imgs);

  CHECK(contains(error_of([&] { list_images((dir / "nope").string()); }), (dir / "nope").string()));
  fs::create_directories(dir / "empty");
  CHECK(contains(error_of([&] { training_images((dir / "empty").string()); }), "no images"));

  fs::path multi = dir / "multi";
  make_mvtec(multi / "zipper");
  make_btad(multi / "01");
  fs::create_directories(multi / "docs");
  touch(multi / "readme.png");
  CHECK(list_categories(multi.string()) ==
        std::vector<std::string>{(multi / "01").string(), (multi / "zipper").string()});
  CHECK(list_categories((dir / "imgs").string()).empty());
  CHECK(contains(error_of([&] { list_categories((dir / "nope").string()); }), (dir / "nope").string()));
}

TEST_CASE("list_images_recursive: every depth, sorted as paths, hidden names and folder links skipped") {
  fs::path dir = test::temp_dir("ds_recursive");
  const fs::path root = dir / "imgs";
  for (auto n : {"z.png", "a.png", "b/c.png", "b/a/d.JPG", "b-x/e.png", "b/f.txt", ".hidden.png", ".git/g.png",
                 "b/.h/h.png"})
    touch(root / n);
  fs::create_directories(root / "b/folder.png");  // a folder named like an image, with an image inside
  touch(root / "b/folder.png/i.png");
  fs::create_directory_symlink(root / "b", root / "link");  // followed, it would list b's images twice
  const std::vector<std::string> want{"a.png", "b/a/d.JPG", "b/c.png", "b/folder.png/i.png", "b-x/e.png", "z.png"};
  CHECK(list_images_recursive(root.string()) == want);
  // A folder's own images in the same order as list_images.
  std::vector<std::string> top;
  for (const auto& p : list_images(root.string())) top.push_back(name_of(p));
  CHECK(top == std::vector<std::string>{"a.png", "z.png"});

  fs::create_directories(dir / "empty/deep/er");
  touch(dir / "empty/deep/notes.txt");
  CHECK(contains(error_of([&] { list_images_recursive((dir / "empty").string()); }), "no images"));
  CHECK(contains(error_of([&] { list_images_recursive((dir / "nope").string()); }), (dir / "nope").string()));
}
