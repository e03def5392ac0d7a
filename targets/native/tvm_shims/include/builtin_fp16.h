// tinyasr: IEEE-754 binary conversions between floating formats (float <-> half, double -> half),
// round to nearest even, with NaN, infinity and subnormals handled. The template parameters name
// the source type, its bit representation type and significand bits, then the same for the
// destination; the runtime instantiates them for fp16 support.
#ifndef TINYASR_BUILTIN_FP16_H_
#define TINYASR_BUILTIN_FP16_H_

#include <cstdint>
#include <cstring>

namespace tinyasr_fp {

template <typename Rep, int SigBits, int TotalBits>
struct Format {
  static constexpr int kExpBits = TotalBits - SigBits - 1;
  static constexpr int kBias = (1 << (kExpBits - 1)) - 1;
  static constexpr int kMaxExp = (1 << kExpBits) - 1;
  static constexpr Rep kSigMask = (Rep(1) << SigBits) - 1;
};

template <typename T, typename Rep>
inline Rep ToBits(T value) {
  Rep bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}

template <typename T, typename Rep>
inline T FromBits(Rep bits) {
  T value;
  std::memcpy(&value, &bits, sizeof(bits));
  return value;
}

/*! \brief Shift right by `shift` bits, rounding to nearest even. */
inline uint64_t ShiftRound(uint64_t value, int shift) {
  if (shift <= 0) return value << -shift;
  if (shift >= 64) return 0;
  uint64_t kept = value >> shift;
  uint64_t rest = value & ((uint64_t(1) << shift) - 1);
  uint64_t half = uint64_t(1) << (shift - 1);
  if (rest > half || (rest == half && (kept & 1))) ++kept;
  return kept;
}

/*! \brief Convert a value given as sign/exponent/significand bits of format Src to format Dst. */
template <typename SrcRep, int SrcSig, typename DstRep, int DstSig>
inline DstRep Convert(SrcRep src) {
  using S = Format<SrcRep, SrcSig, int(sizeof(SrcRep) * 8)>;
  using D = Format<DstRep, DstSig, int(sizeof(DstRep) * 8)>;
  const int src_bits = sizeof(SrcRep) * 8, dst_bits = sizeof(DstRep) * 8;
  DstRep sign = DstRep((uint64_t(src) >> (src_bits - 1)) & 1) << (dst_bits - 1);
  int exp = int((uint64_t(src) >> SrcSig) & S::kMaxExp);
  uint64_t sig = uint64_t(src) & S::kSigMask;
  if (exp == S::kMaxExp) {  // infinity or NaN (keep NaNs quiet)
    DstRep payload = sig ? (DstRep(1) << (DstSig - 1)) | DstRep(ShiftRound(sig, SrcSig - DstSig) & D::kSigMask) : 0;
    return sign | (DstRep(D::kMaxExp) << DstSig) | payload;
  }
  if (exp == 0 && sig == 0) return sign;
  // Normalize to value = 1.frac * 2^(e), with the leading one at bit SrcSig.
  int e = exp - S::kBias;
  if (exp == 0) {
    e = 1 - S::kBias;
    while (!(sig & (uint64_t(1) << SrcSig))) {
      sig <<= 1;
      --e;
    }
  } else {
    sig |= uint64_t(1) << SrcSig;
  }
  int dst_exp = e + D::kBias;
  if (dst_exp >= D::kMaxExp) return sign | (DstRep(D::kMaxExp) << DstSig);
  if (dst_exp <= 0) {  // subnormal in the destination
    uint64_t m = ShiftRound(sig, SrcSig - DstSig + (1 - dst_exp));
    return sign | DstRep(m);  // a carry into the exponent field yields the smallest normal
  }
  uint64_t m = ShiftRound(sig, SrcSig - DstSig);
  if (m >> (DstSig + 1)) {  // rounding overflowed the significand
    m >>= 1;
    ++dst_exp;
    if (dst_exp >= D::kMaxExp) return sign | (DstRep(D::kMaxExp) << DstSig);
  }
  return sign | (DstRep(dst_exp) << DstSig) | DstRep(m & D::kSigMask);
}

}  // namespace tinyasr_fp

/*! \brief Narrow: SrcT (bits SrcRepT, SrcSigBits) to DstRepT bits (DstSigBits). */
template <typename SrcT, typename SrcRepT, int SrcSigBits, typename DstT, typename DstRepT,
          int DstSigBits>
inline DstT __truncXfYf2__(SrcT a) {
  return DstT(tinyasr_fp::Convert<SrcRepT, SrcSigBits, DstRepT, DstSigBits>(
      tinyasr_fp::ToBits<SrcT, SrcRepT>(a)));
}

/*! \brief Widen: SrcT bits (SrcSigBits) to DstT (bits DstRepT, DstSigBits). */
template <typename SrcT, typename SrcRepT, int SrcSigBits, typename DstT, typename DstRepT,
          int DstSigBits>
inline DstT __extendXfYf2__(SrcT a) {
  return tinyasr_fp::FromBits<DstT, DstRepT>(
      tinyasr_fp::Convert<SrcRepT, SrcSigBits, DstRepT, DstSigBits>(SrcRepT(a)));
}

#endif  // TINYASR_BUILTIN_FP16_H_
