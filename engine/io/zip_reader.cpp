#include "engine/io/zip_reader.h"
#include "engine/core/common.h"
#include <algorithm>
#include <array>

namespace mdps {

namespace {

constexpr uint32_t kLocalSig = 0x04034b50, kCentralSig = 0x02014b50, kEocdSig = 0x06054b50;
constexpr uint32_t kEocd64Sig = 0x06064b50, kEocd64LocatorSig = 0x07064b50;
constexpr size_t kEocdBytes = 22, kLocatorBytes = 20, kEocd64Bytes = 56, kCentralBytes = 46, kLocalBytes = 30;

uint64_t le(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// begin + len <= limit without overflow.
bool fits(uint64_t begin, uint64_t len, uint64_t limit) { return begin <= limit && len <= limit - begin; }

}  // namespace

bool looks_like_zip(const uint8_t* data, size_t size) { return size >= 4 && le(data, 4) == kLocalSig; }

uint32_t crc32_ieee(const uint8_t* data, size_t size) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < size; ++i) c = table[(c ^ data[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

ZipReader::ZipReader(const uint8_t* data, size_t size, std::string label)
    : data_(data), size_(size), label_(std::move(label)) {
  const std::string& L = label_;
  MDPS_CHECK(size_ >= kEocdBytes, L, ": not a zip archive (", size_, " bytes, too short for an end-of-central-directory record)");

  // The end-of-central-directory record: the last one whose comment runs
  // exactly to the end of the file (a signature inside a comment does not).
  size_t eocd = size_t(-1);
  const size_t lowest = size_ - kEocdBytes > 0xFFFF ? size_ - kEocdBytes - 0xFFFF : 0;
  for (size_t p = size_ - kEocdBytes + 1; p-- > lowest;) {
    if (le(data_ + p, 4) == kEocdSig && p + kEocdBytes + le(data_ + p + 20, 2) == size_) {
      eocd = p;
      break;
    }
  }
  MDPS_CHECK(eocd != size_t(-1), L, ": no end-of-central-directory record (truncated, or not a zip archive)");
  const uint8_t* e = data_ + eocd;
  MDPS_CHECK(le(e + 4, 2) == 0 && le(e + 6, 2) == 0, L, ": multi-disk zip archives are not supported");
  uint64_t count = le(e + 10, 2), cd_size = le(e + 12, 4), cd_offset = le(e + 16, 4);
  uint64_t cd_limit = eocd;  // the central directory ends before the record(s) describing it

  // ZIP64: a locator right before the record points at the 64-bit record,
  // whose counts and offsets replace the 16/32-bit ones (PyTorch always writes it).
  if (eocd >= kLocatorBytes && le(data_ + eocd - kLocatorBytes, 4) == kEocd64LocatorSig) {
    const uint8_t* loc = data_ + eocd - kLocatorBytes;
    MDPS_CHECK(le(loc + 4, 4) == 0 && le(loc + 16, 4) <= 1, L, ": multi-disk zip archives are not supported");
    uint64_t rec = le(loc + 8, 8);
    MDPS_CHECK(fits(rec, kEocd64Bytes, eocd - kLocatorBytes), L, ": ZIP64 end-of-central-directory offset ", rec,
               " is out of range");
    const uint8_t* z = data_ + rec;
    MDPS_CHECK(le(z, 4) == kEocd64Sig, L, ": bad ZIP64 end-of-central-directory signature at offset ", rec);
    MDPS_CHECK(le(z + 16, 4) == 0 && le(z + 20, 4) == 0, L, ": multi-disk zip archives are not supported");
    count = le(z + 32, 8);
    cd_size = le(z + 40, 8);
    cd_offset = le(z + 48, 8);
    cd_limit = rec;
  } else {
    MDPS_CHECK(count != 0xFFFF && cd_size != 0xFFFFFFFFu && cd_offset != 0xFFFFFFFFu, L,
               ": the end-of-central-directory record needs ZIP64, but there is no ZIP64 locator");
  }
  MDPS_CHECK(fits(cd_offset, cd_size, cd_limit), L, ": central directory (offset ", cd_offset, ", ", cd_size,
             " bytes) lies outside the archive");
  MDPS_CHECK(count <= cd_size / kCentralBytes, L, ": central directory of ", cd_size, " bytes cannot hold ", count,
             " entries");

  entries_.reserve(size_t(count));
  uint64_t p = cd_offset;
  const uint64_t cd_end = cd_offset + cd_size;
  for (uint64_t i = 0; i < count; ++i) {
    MDPS_CHECK(fits(p, kCentralBytes, cd_end), L, ": central directory entry ", i, " is truncated");
    const uint8_t* c = data_ + p;
    MDPS_CHECK(le(c, 4) == kCentralSig, L, ": bad central directory signature for entry ", i, " at offset ", p);
    const uint64_t flags = le(c + 8, 2), method = le(c + 10, 2);
    const uint64_t name_len = le(c + 28, 2), extra_len = le(c + 30, 2), comment_len = le(c + 32, 2);
    MDPS_CHECK(fits(p + kCentralBytes, name_len + extra_len + comment_len, cd_end), L,
               ": central directory entry ", i, " runs past the directory");
    ZipEntry ent;
    ent.name.assign(reinterpret_cast<const char*>(c + kCentralBytes), size_t(name_len));
    ent.crc32 = uint32_t(le(c + 16, 4));
    uint64_t csize = le(c + 20, 4), usize = le(c + 24, 4), local = le(c + 42, 4), disk = le(c + 34, 2);

    // ZIP64 extra field: the 64-bit values of the fields saturated above, in this order.
    const uint8_t* x = c + kCentralBytes + name_len;
    const uint8_t* x_end = x + extra_len;
    while (x_end - x >= 4) {
      uint64_t id = le(x, 2), len = le(x + 2, 2);
      MDPS_CHECK(len <= uint64_t(x_end - x - 4), L, ": entry '", ent.name, "': extra field overruns its record");
      if (id == 0x0001) {
        const uint8_t* q = x + 4;
        uint64_t left = len;
        auto take = [&](uint64_t& field) {
          MDPS_CHECK(left >= 8, L, ": entry '", ent.name, "': ZIP64 extra field is too short");
          field = le(q, 8);
          q += 8;
          left -= 8;
        };
        if (usize == 0xFFFFFFFFu) take(usize);
        if (csize == 0xFFFFFFFFu) take(csize);
        if (local == 0xFFFFFFFFu) take(local);
        if (disk == 0xFFFF && left >= 4) disk = le(q, 4);
      }
      x += 4 + len;
    }
    MDPS_CHECK(disk == 0, L, ": entry '", ent.name, "' is on another disk; multi-disk archives are not supported");
    MDPS_CHECK(!(flags & 1), L, ": entry '", ent.name, "' is encrypted");
    MDPS_CHECK(method == 0, L, ": entry '", ent.name, "' is compressed (method ", method,
               "); only stored entries are supported (PyTorch writes them uncompressed)");
    MDPS_CHECK(csize == usize, L, ": stored entry '", ent.name, "' has compressed size ", csize,
               " but uncompressed size ", usize);
    ent.size = usize;

    MDPS_CHECK(fits(local, kLocalBytes, cd_offset), L, ": entry '", ent.name, "': local header offset ", local,
               " is out of range");
    const uint8_t* h = data_ + local;
    MDPS_CHECK(le(h, 4) == kLocalSig, L, ": entry '", ent.name, "': bad local header signature at offset ", local);
    MDPS_CHECK(le(h + 8, 2) == method, L, ": entry '", ent.name, "': local header disagrees with the central directory on the method");
    const uint64_t lname = le(h + 26, 2), lextra = le(h + 28, 2);
    MDPS_CHECK(fits(local + kLocalBytes, lname + lextra, cd_offset), L, ": entry '", ent.name,
               "': local header runs past the data");
    MDPS_CHECK(lname == name_len && std::equal(h + kLocalBytes, h + kLocalBytes + lname, c + kCentralBytes), L,
               ": entry '", ent.name, "': local header names a different file");
    ent.data_offset = local + kLocalBytes + lname + lextra;
    MDPS_CHECK(fits(ent.data_offset, ent.size, cd_offset), L, ": entry '", ent.name, "' (", ent.size,
               " bytes at offset ", ent.data_offset, ") runs past the end of the data (truncated archive?)");
    MDPS_CHECK(index_.emplace(ent.name, entries_.size()).second, L, ": entry '", ent.name, "' appears twice");
    entries_.push_back(std::move(ent));
    p += kCentralBytes + name_len + extra_len + comment_len;
  }
}

const ZipEntry* ZipReader::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

const uint8_t* ZipReader::bytes(const ZipEntry& e) const {
  const uint8_t* b = data_ + e.data_offset;
  if (e.crc32 != 0 || e.size == 0) {
    uint32_t c = crc32_ieee(b, size_t(e.size));
    MDPS_CHECK(c == e.crc32, label_, ": entry '", e.name, "' is corrupted (CRC-32 ", c, " != recorded ", e.crc32, ")");
  }
  return b;
}

}  // namespace mdps
