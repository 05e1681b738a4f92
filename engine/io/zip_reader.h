// A minimal, strict ZIP reader for PyTorch's zip checkpoints (torch.save
// since 1.6): the end-of-central-directory record (and its ZIP64 form), the
// central directory and each entry's local header. PyTorch stores every
// record uncompressed, so only "stored" entries are read; a compressed entry
// is an error. Every offset and size is checked against the buffer before it
// is used, and every error names the archive.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace mdps {

struct ZipEntry {
  std::string name;
  uint64_t data_offset = 0;  // where the entry's bytes start in the archive
  uint64_t size = 0;         // bytes (stored: compressed size == uncompressed size)
  uint32_t crc32 = 0;        // as recorded in the central directory
};

// True when the buffer starts with a local file header ("PK\3\4").
bool looks_like_zip(const uint8_t* data, size_t size);

// CRC-32 (IEEE 802.3, as ZIP records it) of `size` bytes.
uint32_t crc32_ieee(const uint8_t* data, size_t size);

class ZipReader {
 public:
  // Parses the directory of the archive in [data, data + size); the bytes
  // must outlive the reader. `label` (the file name) leads every message.
  ZipReader(const uint8_t* data, size_t size, std::string label);

  const std::string& label() const { return label_; }
  const std::vector<ZipEntry>& entries() const { return entries_; }
  // nullptr when there is no entry of that name.
  const ZipEntry* find(const std::string& name) const;
  // The entry's bytes, CRC-checked (a recorded CRC of 0 on non-empty data is
  // taken as "not recorded", as writers that skip the checksum leave it).
  const uint8_t* bytes(const ZipEntry& e) const;

 private:
  const uint8_t* data_;
  size_t size_;
  std::string label_;
  std::vector<ZipEntry> entries_;
  std::unordered_map<std::string, size_t> index_;  // name -> entries_ position
};

}  // namespace mdps
