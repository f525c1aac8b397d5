// The byte format of the rank_drop fuzz target, shared by the target (which
// decodes) and the seed-corpus tool (which encodes golden cases).
//
// Every field is read front to back; any input decodes to a case (sizes are
// reduced modulo their caps, so every byte string is meaningful). Once the
// bytes run out, the rest (usually tensor values) comes from a PRNG seeded by
// the input, so short inputs still give full tensors.
//
//   u8  flags     bits 0-1 q type, 2-3 k type (0 float, 1 half, 2 bfloat16,
//                 3 float); bit 4 q token-major (NHD), bit 5 k NHD; bit 6
//                 values quantized (i8 * amp / 127) instead of raw f32;
//                 bit 7 hostile (mutations follow)
//   u8  hkv-1     (mod 8)           u8  group-1 (mod 8): hq = hkv * group
//   u8  nq-1      (mod 4)           u8  d-1     (mod 128)
//   u16 T-1       (mod 512)
//   u8  extras    bits 0-1 q row padding, 2-3 k row padding (elements,
//                 filled with NaN); bit 4 k rows after the last query
//                 position are NaN; bit 5 maybe_new_spans aliases spans
//   u8  options   bits 0-1 probability rounding (0 none, 1 fp16, 2 bf16,
//                 3 none); bits 2-4 softmax scale (0 = default 1/sqrt(d))
//   u8  amp       quantized values: amp = 2^(amp % 8 - 3)
//   u8  spans     (mod 4), then per span: u16 gap, u16 length, u16 keep
//                 (each reduced to what still fits)
//   u16 per query row: distance of its position from T-1 (mod T)
//   hostile only: u8 mutation count-1 (mod 4), then per mutation
//                 u8 kind, u8 which, 8 bytes raw int64 (little-endian)
//   values        q (Hq, nq, d) then k (Hkv, T, d), logical head-major
//                 order: 1 byte each (quantized) or 4 (raw f32; non-finite
//                 -> 0, |x| > 64 -> fmod(x, 64))
//
// Work cap: when Hq * nq * T * d exceeds 2^18, d is reduced to fit.
#ifndef PDROP_FUZZ_RANK_DROP_INPUT_HPP
#define PDROP_FUZZ_RANK_DROP_INPUT_HPP

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace pdrop_fuzz {

struct Mutation {
  std::uint8_t kind = 0, which = 0;
  std::int64_t raw = 0;
};

struct Case {
  int q_type = 0, k_type = 0;  // 0 float, 1 half, 2 bfloat16
  bool q_nhd = false, k_nhd = false, quantized = false, hostile = false;
  std::int64_t hkv = 1, group = 1, nq = 1, d = 1, tokens = 1;
  std::int64_t q_pad = 0, k_pad = 0;
  bool poison_tail = false, alias_new_spans = false;
  int rounding = 0;   // 0 none, 1 fp16, 2 bf16
  int scale_index = 0;
  float amp = 1.0f;
  std::vector<std::int64_t> span_start, span_length, keep_count, query_pos;
  std::vector<Mutation> mutations;
  std::vector<float> q_values, k_values;  // logical (h, i, c) / (g, t, c)
  std::int64_t hq() const { return hkv * group; }
};

inline constexpr std::int64_t kMaxWork = std::int64_t{1} << 18;
inline constexpr float kScales[8] = {0.0f, 0.01f, 0.125f, 0.5f, 1.0f, 2.0f, 8.0f, 1e-3f};

class Reader {
 public:
  Reader(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {
    state_ = 0x9E3779B9u ^ static_cast<std::uint32_t>(size * 2654435761u);
    for (std::size_t i = 0; i < size && i < 64; ++i) state_ = state_ * 31u + data[i];
    if (state_ == 0) state_ = 1;
  }
  std::uint8_t u8() {
    if (pos_ < size_) return data_[pos_++];
    state_ ^= state_ << 13;  // xorshift32 once the input is used up
    state_ ^= state_ >> 17;
    state_ ^= state_ << 5;
    return static_cast<std::uint8_t>(state_ >> 24);
  }
  bool exhausted() const { return pos_ >= size_; }
  std::uint16_t u16() {
    const std::uint16_t lo = u8();
    return static_cast<std::uint16_t>(lo | (u8() << 8));
  }
  std::int64_t i64() {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= std::uint64_t{u8()} << (8 * i);
    std::int64_t r;
    std::memcpy(&r, &v, sizeof r);
    return r;
  }
  float f32() {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= std::uint32_t{u8()} << (8 * i);
    float r;
    std::memcpy(&r, &v, sizeof r);
    return r;
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_, pos_ = 0;
  std::uint32_t state_;
};

inline float sanitize(float x) {
  if (!std::isfinite(x)) return 0.0f;
  if (std::fabs(x) > 64.0f) return std::fmod(x, 64.0f);
  return x;
}

inline Case decode(const std::uint8_t* data, std::size_t size) {
  Reader r(data, size);
  Case c;
  const std::uint8_t flags = r.u8();
  c.q_type = (flags & 3) % 3;
  c.k_type = ((flags >> 2) & 3) % 3;
  c.q_nhd = flags & 16;
  c.k_nhd = flags & 32;
  c.quantized = flags & 64;
  c.hostile = flags & 128;
  c.hkv = 1 + r.u8() % 8;
  c.group = 1 + r.u8() % 8;
  c.nq = 1 + r.u8() % 4;
  c.d = 1 + r.u8() % 128;
  c.tokens = 1 + r.u16() % 512;
  if (c.hq() * c.nq * c.tokens * c.d > kMaxWork)
    c.d = std::max<std::int64_t>(1, kMaxWork / (c.hq() * c.nq * c.tokens));
  const std::uint8_t extras = r.u8();
  c.q_pad = extras & 3;
  c.k_pad = (extras >> 2) & 3;
  c.poison_tail = extras & 16;
  c.alias_new_spans = extras & 32;
  const std::uint8_t options = r.u8();
  c.rounding = (options & 3) % 3;
  c.scale_index = (options >> 2) & 7;
  c.amp = std::ldexp(1.0f, r.u8() % 8 - 3);
  const int spans = r.u8() % 4;
  std::int64_t cursor = 0;
  for (int s = 0; s < spans; ++s) {
    const std::int64_t start = cursor + r.u16() % (c.tokens - cursor + 1);
    const std::int64_t length = r.u16() % (c.tokens - start + 1);
    c.span_start.push_back(start);
    c.span_length.push_back(length);
    c.keep_count.push_back(r.u16() % (length + 1));
    cursor = start + length;
  }
  for (std::int64_t i = 0; i < c.nq; ++i) c.query_pos.push_back(c.tokens - 1 - r.u16() % c.tokens);
  if (c.hostile) {
    const int n = 1 + r.u8() % 4;
    for (int m = 0; m < n; ++m) {
      Mutation mu;
      mu.kind = r.u8();
      mu.which = r.u8();
      mu.raw = r.i64();
      c.mutations.push_back(mu);
    }
  }
  auto values = [&](std::vector<float>& v, std::int64_t n) {
    v.resize(static_cast<std::size_t>(n));
    for (float& x : v) {
      if (c.quantized || r.exhausted())
        x = static_cast<float>(static_cast<std::int8_t>(r.u8())) * c.amp / 127.0f;
      else
        x = sanitize(r.f32());
    }
  };
  values(c.q_values, c.hq() * c.nq * c.d);
  values(c.k_values, c.hkv * c.tokens * c.d);
  return c;
}

// Encodes a non-hostile case with raw f32 values (seed corpus). The case
// must already respect the caps (sizes, work); spans sorted and disjoint.
inline std::vector<std::uint8_t> encode(const Case& c) {
  std::vector<std::uint8_t> out;
  auto u8 = [&](unsigned v) { out.push_back(static_cast<std::uint8_t>(v)); };
  auto u16 = [&](unsigned v) { u8(v & 0xff); u8(v >> 8); };
  u8(static_cast<unsigned>(c.q_type | (c.k_type << 2) | (c.q_nhd ? 16 : 0) | (c.k_nhd ? 32 : 0)));
  u8(static_cast<unsigned>(c.hkv - 1));
  u8(static_cast<unsigned>(c.group - 1));
  u8(static_cast<unsigned>(c.nq - 1));
  u8(static_cast<unsigned>(c.d - 1));
  u16(static_cast<unsigned>(c.tokens - 1));
  u8(static_cast<unsigned>(c.q_pad | (c.k_pad << 2) | (c.poison_tail ? 16 : 0) |
                           (c.alias_new_spans ? 32 : 0)));
  u8(static_cast<unsigned>(c.rounding | (c.scale_index << 2)));
  u8(3);  // amp 1 (unused for raw values)
  u8(static_cast<unsigned>(c.span_start.size()));
  std::int64_t cursor = 0;
  for (std::size_t s = 0; s < c.span_start.size(); ++s) {
    u16(static_cast<unsigned>(c.span_start[s] - cursor));
    u16(static_cast<unsigned>(c.span_length[s]));
    u16(static_cast<unsigned>(c.keep_count[s]));
    cursor = c.span_start[s] + c.span_length[s];
  }
  for (std::int64_t p : c.query_pos) u16(static_cast<unsigned>(c.tokens - 1 - p));
  for (const auto* v : {&c.q_values, &c.k_values})
    for (float x : *v) {
      std::uint32_t b;
      std::memcpy(&b, &x, sizeof b);
      for (int i = 0; i < 4; ++i) u8((b >> (8 * i)) & 0xff);
    }
  return out;
}

}  // namespace pdrop_fuzz

#endif  // PDROP_FUZZ_RANK_DROP_INPUT_HPP
