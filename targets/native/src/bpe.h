// Whisper's byte-level BPE, decoding side, in plain C++17 (no TVM): token ids -> UTF-8 text, the
// twin of model/whisper/tokenizer.py WhisperTokenizer.decode and Python's str.strip(), checked
// against them by tests/test_native_twins.py.
//
// Every token of the vocabulary is a string of characters that each stand for one byte (GPT-2's
// table: the printable Latin-1 bytes as themselves, the other 68 bytes as U+0100 onwards, in
// byte order). A token sequence decodes to the concatenation of its tokens' bytes, read as UTF-8
// with every invalid sequence replaced by U+FFFD as Python's errors="replace" does; ids from
// <|endoftext|> up (control and timestamp tokens) are skipped.

#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "wav.h"  // InputError

namespace tinyasr {

/*! \brief GPT-2's table: the byte each character U+0000..U+0143 stands for, -1 if none. */
inline std::vector<int> ByteOfCharacter() {
  auto printable = [](int byte) {
    return (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) ||
           (byte >= 0xAE && byte <= 0xFF);
  };
  std::vector<int> table(256 + 68, -1);
  int extra = 0;
  for (int byte = 0; byte < 256; ++byte) {
    table[printable(byte) ? byte : 256 + extra++] = byte;
  }
  return table;
}

/*!
 * \brief The length of the valid UTF-8 sequence at `text[at]`, or the negated length of its
 *        maximal invalid subpart (Unicode's "maximal subpart" rule, which Python's decoder
 *        follows: each such subpart becomes one U+FFFD).
 */
inline int Utf8SequenceAt(const std::string& text, size_t at) {
  auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  unsigned char lead = byte(at);
  if (lead < 0x80) return 1;
  int length = 0;
  unsigned char low = 0x80, high = 0xBF;  // the second byte's range
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) low = 0xA0;   // no overlong forms
    if (lead == 0xED) high = 0x9F;  // no surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) low = 0x90;   // no overlong forms
    if (lead == 0xF4) high = 0x8F;  // nothing above U+10FFFF
  } else {
    return -1;  // a continuation byte or a lead that never starts a valid sequence
  }
  for (int i = 1; i < length; ++i) {
    if (at + i >= text.size()) return -i;  // truncated at the end
    unsigned char next = byte(at + i);
    bool fits = i == 1 ? (next >= low && next <= high) : (next >= 0x80 && next <= 0xBF);
    if (!fits) return -i;
  }
  return length;
}

/*! \brief Bytes read as UTF-8, each maximal invalid subpart replaced by U+FFFD. */
inline std::string ReplaceInvalidUtf8(const std::string& bytes) {
  std::string text;
  for (size_t at = 0; at < bytes.size();) {
    int length = Utf8SequenceAt(bytes, at);
    if (length > 0) {
      text.append(bytes, at, length);
      at += length;
    } else {
      text += "\xEF\xBF\xBD";
      at += -length;
    }
  }
  return text;
}

/*! \brief The code points of valid UTF-8 text (the caller checked it is valid). */
inline std::vector<uint32_t> CodePoints(const std::string& text) {
  std::vector<uint32_t> points;
  for (size_t at = 0; at < text.size();) {
    int length = Utf8SequenceAt(text, at);
    if (length <= 0) throw std::logic_error("CodePoints: invalid UTF-8");
    const uint32_t lead_bits = length == 1 ? 0x7F : 0xFF >> (length + 1);
    uint32_t point = static_cast<unsigned char>(text[at]) & lead_bits;
    for (int i = 1; i < length; ++i) {
      point = (point << 6) | (static_cast<unsigned char>(text[at + i]) & 0x3F);
    }
    points.push_back(point);
    at += length;
  }
  return points;
}

/*! \brief Python's str.isspace() for one code point (Unicode Zs, and bidi classes B, S, WS). */
inline bool IsPythonSpace(uint32_t point) {
  return (point >= 0x09 && point <= 0x0D) || (point >= 0x1C && point <= 0x20) ||
         point == 0x85 || point == 0xA0 || point == 0x1680 ||
         (point >= 0x2000 && point <= 0x200A) ||
         point == 0x2028 || point == 0x2029 || point == 0x202F || point == 0x205F ||
         point == 0x3000;
}

/*! \brief Python's str.strip() of valid UTF-8 text. */
inline std::string StripSpaces(const std::string& text) {
  std::vector<uint32_t> points = CodePoints(text);
  size_t begin = 0, end = points.size();
  while (begin < end && IsPythonSpace(points[begin])) ++begin;
  while (end > begin && IsPythonSpace(points[end - 1])) --end;
  size_t byte_begin = 0, byte_end = text.size();
  for (size_t i = 0, at = 0; i < points.size(); ++i) {  // code point index -> byte offset
    size_t length = static_cast<size_t>(Utf8SequenceAt(text, at));
    if (i == begin) byte_begin = at;
    if (i + 1 == end) byte_end = at + length;
    at += length;
  }
  return begin == end ? "" : text.substr(byte_begin, byte_end - byte_begin);
}

/*! \brief A Whisper vocabulary (vocabulary.txt: id = line number), each token as its bytes. */
class ByteLevelVocabulary {
 public:
  /*!
   * \brief Parses the `contents` of the file `path` (std::nullopt: it could not be read), which
   *        must hold `size` tokens (the deployable's n_vocab); text tokens below `first_special`
   *        must be byte-level strings. Problems are InputErrors naming `path`.
   */
  ByteLevelVocabulary(const std::string& path, std::optional<std::string> contents, int64_t size,
                      int64_t first_special)
      : first_special_(first_special) {
    if (!contents) {
      throw InputError(path + ": missing from the deployable (the Whisper vocabulary)");
    }
    std::string text = std::move(*contents);
    const bool empty = text.empty();
    if (!empty && text.back() == '\n') text.pop_back();  // as Python's reader drops the last ""
    std::vector<int> byte_of = ByteOfCharacter();
    size_t line = 0;
    for (size_t at = 0; !empty && at <= text.size(); ++line) {
      size_t end = text.find('\n', at);
      if (end == std::string::npos) end = text.size();
      std::string token = text.substr(at, end - at);
      at = end + 1;
      if (static_cast<int64_t>(line) >= first_special) {  // a control token: never decoded
        tokens_.emplace_back();
        continue;
      }
      std::string bytes;
      for (size_t i = 0; i < token.size();) {
        int length = Utf8SequenceAt(token, i);
        uint32_t point = length > 0 ? CodePoints(token.substr(i, length))[0] : 0xFFFFFFFF;
        if (point >= byte_of.size() || byte_of[point] < 0) {
          throw InputError(path + ": line " + std::to_string(line + 1) +
                           " is not a byte-level BPE token");
        }
        bytes += static_cast<char>(byte_of[point]);
        i += length;
      }
      tokens_.push_back(bytes);
    }
    if (static_cast<int64_t>(tokens_.size()) != size) {
      throw InputError(path + ": " + std::to_string(tokens_.size()) + " tokens, the deployable's " +
                       "model has " + std::to_string(size));
    }
  }

  /*! \brief The text of the text tokens among `ids` (special and out-of-range ids skipped). */
  std::string Decode(const std::vector<int64_t>& ids) const {
    std::string bytes;
    for (int64_t id : ids) {
      if (id >= 0 && id < first_special_ && id < static_cast<int64_t>(tokens_.size())) {
        bytes += tokens_[id];
      }
    }
    return ReplaceInvalidUtf8(bytes);
  }

 private:
  int64_t first_special_;
  std::vector<std::string> tokens_;  // each token's bytes ("" for control tokens)
};

}  // namespace tinyasr
