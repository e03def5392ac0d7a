// tinyasr: the few string helpers the runtime sources use.
#ifndef TINYASR_SUPPORT_UTILS_H_
#define TINYASR_SUPPORT_UTILS_H_

#include <algorithm>
#include <cctype>
#include <cstring>
#include <string>

namespace tvm {
namespace support {

/*! \brief Whether `text` is a non-empty run of decimal digits. */
inline bool IsNumber(const std::string& text) {
  return !text.empty() &&
         std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); });
}

/*! \brief Whether `text` begins with `prefix`. */
inline bool StartsWith(const std::string& text, const char* prefix) {
  return text.compare(0, std::strlen(prefix), prefix) == 0;
}

}  // namespace support
}  // namespace tvm

#endif  // TINYASR_SUPPORT_UTILS_H_
