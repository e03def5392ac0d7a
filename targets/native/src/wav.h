// Reading 16 kHz mono 16-bit PCM wav files: the C++ twin of tinyasr.model.data.datadir's
// load_wav (read_wav_format, _checked_format, _read_pcm), for the board transcriber. It accepts
// what load_wav accepts, returns the same samples and rejects the rest with load_wav's message;
// tests/test_native_twins.py checks that over odd wavs. Plain C++17, no TVM.

#pragma once

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace tinyasr {

/*! \brief Bad user input: reported as one line and exit code 2. */
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace wav_detail {

constexpr uint32_t kFormatPcm = 0x0001;
constexpr uint32_t kFormatExtensible = 0xFFFE;
constexpr uint32_t kUnknownSize = 0xFFFFFFFF;  // a data size a writer streaming to a pipe left
// The KSDATAFORMAT_SUBTYPE GUID's bytes after its first two (which hold the format tag).
constexpr unsigned char kSubtypeGuidTail[14] = {0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80,
                                                0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71};

inline uint32_t ReadLE(const unsigned char* bytes, int width) {
  uint32_t value = 0;
  for (int i = width - 1; i >= 0; --i) value = (value << 8) | bytes[i];
  return value;
}

/*! \brief Python's repr() of a bytes object (a chunk name in a message, as load_wav writes it). */
inline std::string BytesRepr(const unsigned char* bytes, size_t size) {
  bool single = false, dbl = false;
  for (size_t i = 0; i < size; ++i) single |= bytes[i] == '\'', dbl |= bytes[i] == '"';
  char quote = single && !dbl ? '"' : '\'';
  std::string out = "b";
  out += quote;
  for (size_t i = 0; i < size; ++i) {
    unsigned char c = bytes[i];
    if (c == quote || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x20 || c >= 0x7f) {
      char hex[5];
      std::snprintf(hex, sizeof(hex), "\\x%02x", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + quote;
}

struct Closer {
  void operator()(std::FILE* file) const { std::fclose(file); }
};

/*! \brief The format of a wav: rate, channels, bytes per sample, where the samples lie. */
struct WavFormat {
  uint32_t rate = 0;
  uint32_t channels = 0;
  uint32_t width = 0;
  uint64_t data_offset = 0;
  uint64_t data_bytes = 0;
};

/*! \brief (rate, channels, bytes per sample) of a PCM `fmt ` chunk body (_parse_fmt). */
inline WavFormat ParseFmt(const unsigned char* body, size_t size, const std::string& at) {
  if (size < 16) {
    throw InputError(at + ": unreadable wav (fmt chunk of " + std::to_string(size) +
                     " bytes, need 16)");
  }
  uint32_t tag = ReadLE(body, 2), channels = ReadLE(body + 2, 2), rate = ReadLE(body + 4, 4);
  uint32_t bits = ReadLE(body + 14, 2);
  if (tag == kFormatExtensible) {
    if (size < 40 || ReadLE(body + 16, 2) < 22) {
      throw InputError(at + ": unreadable wav (extensible fmt chunk too short)");
    }
    if (std::memcmp(body + 26, kSubtypeGuidTail, sizeof(kSubtypeGuidTail)) != 0) {
      throw InputError(at + ": unreadable wav (unknown extensible sub-format)");
    }
    tag = ReadLE(body + 24, 2);
  }
  if (tag != kFormatPcm) {
    std::string kind = tag == 3   ? "float"
                       : tag == 6 ? "A-law"
                       : tag == 7 ? "mu-law"
                                  : "format tag " + std::to_string(tag);
    throw InputError(at + ": " + kind +
                     " samples, expected 16-bit PCM (convert with `sox IN -e signed-integer -b "
                     "16 OUT`)");
  }
  if (channels < 1 || bits < 1) {
    throw InputError(at + ": unreadable wav (" + std::to_string(channels) + " channels of " +
                     std::to_string(bits) + "-bit samples)");
  }
  WavFormat format;
  format.rate = rate;
  format.channels = channels;
  format.width = (bits + 7) / 8;
  return format;
}

inline InputError Unreadable(const std::string& at, const std::string& why) {
  return InputError(at + ": unreadable wav (" + why + ")");
}

/*!
 * \brief The format and sample location of a RIFF/WAVE file from its chunk headers
 *        (read_wav_format): `fmt ` must be PCM (plain or extensible with the PCM sub-format),
 *        the first `data` chunk ends the walk, other chunks are skipped; every size is bounded by
 *        the file's own.
 */
inline WavFormat ReadWavFormat(std::FILE* file, const std::string& at) {
  struct stat info;
  if (fstat(fileno(file), &info) != 0) throw Unreadable(at, std::strerror(errno));
  const uint64_t size = static_cast<uint64_t>(info.st_size);
  unsigned char head[12];
  if (std::fread(head, 1, 12, file) < 12 || std::memcmp(head, "RIFF", 4) != 0 ||
      std::memcmp(head + 8, "WAVE", 4) != 0) {
    throw Unreadable(at, "no RIFF/WAVE header");
  }
  uint64_t position = 12;
  std::optional<WavFormat> fmt;
  while (true) {
    unsigned char chunk[8];
    if (position > size || std::fseek(file, static_cast<long>(position), SEEK_SET) != 0 ||
        std::fread(chunk, 1, 8, file) < 8) {
      throw Unreadable(at, fmt ? "no data chunk; truncated header?"
                               : "no fmt chunk; truncated header?");
    }
    uint64_t length = ReadLE(chunk + 4, 4);
    const uint64_t body_start = position + 8;
    if (std::memcmp(chunk, "data", 4) == 0) {
      if (!fmt) throw Unreadable(at, "data chunk before fmt chunk");
      const uint64_t available = size - body_start, frame = uint64_t{fmt->width} * fmt->channels;
      if (length == kUnknownSize) length = available;
      if (length > available) {
        throw InputError(at + ": truncated wav (header says " +
                         std::to_string(length / fmt->width / fmt->channels) +
                         " samples, file holds " +
                         std::to_string(available / fmt->width / fmt->channels) + ")");
      }
      if (length % frame) {
        throw InputError(at + ": truncated wav (" + std::to_string(length) +
                         " data bytes is not a whole number of " +
                         std::to_string(8 * fmt->width) + "-bit samples)");
      }
      fmt->data_offset = body_start;
      fmt->data_bytes = length;
      return *fmt;
    }
    if (length > size - body_start) {
      throw Unreadable(at, "chunk " + BytesRepr(chunk, 4) + " of " + std::to_string(length) +
                               " bytes runs past the end of the file");
    }
    if (std::memcmp(chunk, "fmt ", 4) == 0) {
      unsigned char body[64];
      size_t got = std::fread(body, 1, std::min<uint64_t>(length, sizeof(body)), file);
      fmt = ParseFmt(body, got, at);
    }
    position = body_start + length + (length & 1);  // chunks are word-aligned
  }
}

}  // namespace wav_detail

/*!
 * \brief Samples of a mono 16-bit PCM wav at `sample_rate` as float at int16 scale (as Kaldi
 *        reads them): load_wav's samples, or an InputError with load_wav's message.
 */
inline std::vector<float> ReadWav(const std::string& path, int64_t sample_rate) {
  using namespace wav_detail;
  struct stat info;
  if (stat(path.c_str(), &info) != 0 || !S_ISREG(info.st_mode)) {
    throw InputError(path + ": wav file not found");
  }
  std::unique_ptr<std::FILE, Closer> file(std::fopen(path.c_str(), "rb"));
  if (!file) throw Unreadable(path, std::strerror(errno));
  WavFormat found = ReadWavFormat(file.get(), path);
  if (found.rate != sample_rate) {
    std::string rate = std::to_string(sample_rate);
    throw InputError(path + ": sample rate " + std::to_string(found.rate) + " Hz, expected " +
                     rate + " Hz (resample with `sox IN -r " + rate + " OUT`)");
  }
  if (found.channels != 1) {
    throw InputError(path + ": " + std::to_string(found.channels) +
                     " channels, expected mono (convert with `sox IN -c 1 OUT`)");
  }
  if (found.width != 2) {
    throw InputError(path + ": " + std::to_string(8 * found.width) +
                     "-bit samples, expected 16-bit (convert with `sox IN -b 16 OUT`)");
  }
  std::vector<unsigned char> data(found.data_bytes);
  if (std::fseek(file.get(), static_cast<long>(found.data_offset), SEEK_SET) != 0 ||
      std::fread(data.data(), 1, data.size(), file.get()) != data.size()) {
    throw InputError(path + ": truncated wav");  // the file shrank since its header was read
  }
  std::vector<float> samples(data.size() / 2);
  for (size_t i = 0; i < samples.size(); ++i) {
    samples[i] = static_cast<int16_t>(ReadLE(data.data() + 2 * i, 2));
  }
  return samples;
}

}  // namespace tinyasr
