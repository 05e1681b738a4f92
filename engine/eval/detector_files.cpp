#include "engine/eval/detector_files.h"
#include "engine/io/safetensors.h"

namespace mdps {

std::string find_resnet_prefix(const SafeTensorsFile& f, const std::string& what) {
  for (const char* p : {"", "resnet.", "module.", "model.", "backbone."})
    if (f.has(std::string(p) + "conv1.weight") && f.has(std::string(p) + "layer1.0.conv1.weight")) return p;
  throw Error(cat(what, ": not a ResNet (no 'conv1.weight' and 'layer1.0.conv1.weight', with or without a ",
                  "'resnet.', 'module.', 'model.' or 'backbone.' prefix)"));
}

std::unique_ptr<ResNetFeatures> load_features(const std::string& path, const std::vector<int>& layers,
                                              Backend& backend, const std::string& prefix) {
  const int deepest = deepest_stage(layers);
  SafeTensorsFile f = SafeTensorsFile::open(path);
  const std::string pre = prefix.empty() ? find_resnet_prefix(f, "--features " + path) : prefix;
  return std::make_unique<ResNetFeatures>(ResNetFeatures::load(f, pre, deepest, backend));
}

std::unique_ptr<UNet> load_unet(const std::string& path, Backend& backend) {
  try {
    return UNet::from_file(path, backend);
  } catch (const Error& e) {
    std::string msg = e.what();
    if (msg.find(path) == std::string::npos) msg = cat("--model ", path, ": ", msg);
    throw Error(cat(msg, " (expected a U-Net model or checkpoint written by `mdps train`)"));
  }
}

DetectorFiles open_detector(const std::string& model, const std::string& features, Backend& backend,
                            const std::string& features_prefix) {
  DetectorFiles d;
  d.model_path = model;
  d.features_path = features;
  d.features_prefix = features_prefix;
  d.bundle = Bundle::open_if_bundle(model);
  d.net = d.bundle ? d.bundle->load_unet(backend) : load_unet(model, backend);
  return d;
}

std::unique_ptr<ResNetFeatures> DetectorFiles::load_features(const EvalSettings& s) const {
  if (!features_path.empty()) return mdps::load_features(features_path, s.map.layers, net->backend(), features_prefix);
  if (bundle) return bundle->load_features(s.map.layers, net->backend());
  return nullptr;
}

ResNetSource DetectorFiles::resnet_source(std::optional<SafeTensorsFile>& holder) const {
  if (!features_path.empty()) {
    holder = SafeTensorsFile::open(features_path);
    return {&*holder, features_prefix.empty() ? find_resnet_prefix(*holder, "--features " + features_path)
                                              : features_prefix};
  }
  if (bundle && bundle->has_features()) return {&bundle->file(), "resnet."};
  return {};
}

BundleProvenance DetectorFiles::provenance() const {
  BundleProvenance p;
  p.model = bundle ? bundle->metadata("source_model") : model_path;
  p.features = !features_path.empty() ? features_path : bundle ? bundle->metadata("source_features") : "";
  return p;
}

std::string DetectorFiles::features_source() const {
  if (!features_path.empty()) return features_path;
  if (bundle && bundle->has_features()) return model_path;
  return "";
}

}  // namespace mdps
