// pdrop/dlpack.hpp - pdrop views over DLPack tensors (optional).
//
// Frameworks hand tensors across library boundaries as DLPack DLTensors
// (PyTorch: torch.utils.dlpack.to_dlpack(x) or x.__dlpack__(); JAX, CuPy,
// TVM, ...). These functions check such a tensor and describe its memory as
// a pdrop view, without copying or taking ownership: the view is valid as
// long as the producer keeps the tensor alive (until it calls the
// DLManagedTensor's deleter).
//
//   dlpack_head_view<T>(t, layout)  HeadView<T> of a per-head tensor:
//       DlpackLayout::hnd  [H, T, D] or [1, H, T, D]  (heads, tokens, dim)
//       DlpackLayout::nhd  [T, H, D] or [1, T, H, D]  (tokens, heads, dim)
//     The layout names which axis is which; the strides say where the
//     elements are, so a transposed or sliced tensor works as it is (e.g.
//     k.transpose(1, 2) of a contiguous [1, H, T, D] cache is consumed as nhd
//     and yields the same view as the cache itself as hnd).
//   dlpack_token_view<T>(t)   TokenView<T> of per-token rows: [T, W],
//     [1, T, W], or [T] (one feature per token, any stride).
//   dlpack_span<T>(t)         span<T> of a contiguous [T] vector.
//
// Accepted: device kDLCPU or kDLCUDAHost (host-readable memory); dtype equal
// to T's with lanes == 1 (float32 <-> float, float16 <-> pdrop::half,
// bfloat16 <-> pdrop::bfloat16, int64 <-> std::int64_t, int32 <->
// std::int32_t; T may be const); a leading batch dimension of exactly 1
// where listed; strides >= 0 in elements, or NULL for compact row-major (as
// DLPack specifies); the last dimension contiguous (stride 1); data +
// byte_offset aligned to the element size. Strides of dimensions of size 1
// are ignored (frameworks export arbitrary ones there). The resulting view
// passes the same checks the operators apply (view.hpp), and a view of a
// non-const T must have rows that do not overlap.
//
// Everything else throws before a view is made: pdrop::value_error for the
// device and the dtype, pdrop::shape_error for ndim, shape, strides, offset
// and alignment; the message names the argument (`name`) and the values.
//
// This header needs <dlpack/dlpack.h> (DLPack >= 0.6, e.g. Debian's
// libdlpack-dev); the rest of pdrop does not, and pdrop.hpp does not include
// this file.
#ifndef PDROP_DLPACK_HPP
#define PDROP_DLPACK_HPP

#include <dlpack/dlpack.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "pdrop/config.hpp"
#include "pdrop/detail/check.hpp"
#include "pdrop/errors.hpp"
#include "pdrop/view.hpp"

PDROP_BEGIN_NAMESPACE

// Which axes of a per-head DLPack tensor are heads and tokens (the last is
// always the head dim). An optional leading batch axis of size 1 comes first.
enum class DlpackLayout {
  hnd,  // [H, T, D] / [1, H, T, D]: PyTorch's (B, H, T, d) attention layout
  nhd,  // [T, H, D] / [1, T, H, D]: token-major, e.g. (B, T, H, d) projections
};

namespace detail {

// The DLPack dtype pdrop expects for element type T.
template <class T>
struct dl_dtype {
  static_assert(sizeof(T) == 0,
                "pdrop DLPack views hold float, pdrop::half, pdrop::bfloat16, "
                "std::int64_t or std::int32_t");
};
template <>
struct dl_dtype<float> {
  static constexpr std::uint8_t code = 2, bits = 32;  // kDLFloat
  static constexpr const char* name = "float32";
};
template <>
struct dl_dtype<half> {
  static constexpr std::uint8_t code = 2, bits = 16;  // kDLFloat
  static constexpr const char* name = "float16";
};
template <>
struct dl_dtype<bfloat16> {
  static constexpr std::uint8_t code = 4, bits = 16;  // kDLBfloat
  static constexpr const char* name = "bfloat16";
};
template <>
struct dl_dtype<std::int64_t> {
  static constexpr std::uint8_t code = 0, bits = 64;  // kDLInt
  static constexpr const char* name = "int64";
};
template <>
struct dl_dtype<std::int32_t> {
  static constexpr std::uint8_t code = 0, bits = 32;  // kDLInt
  static constexpr const char* name = "int32";
};

// Names by number, so that no enumerator newer than DLPack 0.6 is needed.
inline const char* dl_device_name(int type) {
  switch (type) {
    case 1: return "kDLCPU";
    case 2: return "kDLCUDA";
    case 3: return "kDLCUDAHost";
    case 4: return "kDLOpenCL";
    case 7: return "kDLVulkan";
    case 8: return "kDLMetal";
    case 9: return "kDLVPI";
    case 10: return "kDLROCM";
    case 11: return "kDLROCMHost";
    case 12: return "kDLExtDev";
    case 13: return "kDLCUDAManaged";
    case 14: return "kDLOneAPI";
    case 15: return "kDLWebGPU";
    case 16: return "kDLHexagon";
    default: return "unknown device type";
  }
}

inline const char* dl_code_name(int code) {
  switch (code) {
    case 0: return "kDLInt";
    case 1: return "kDLUInt";
    case 2: return "kDLFloat";
    case 3: return "kDLOpaqueHandle";
    case 4: return "kDLBfloat";
    case 5: return "kDLComplex";
    case 6: return "kDLBool";
    default: return "unknown type code";
  }
}

// A checked DLTensor: up to 4 dimensions, strides in elements (size-1
// dimensions get the compact stride), and the address of element 0.
struct DlDims {
  int ndim = 0;
  std::int64_t shape[4] = {0, 0, 0, 0};
  std::int64_t stride[4] = {0, 0, 0, 0};
  void* data = nullptr;  // data + byte_offset; null when the tensor is empty
};

// Checks device, dtype, ndim (one of ndim_a / ndim_b), shape, strides (the
// last one 1 when `last_contiguous`), byte_offset and alignment of `t`;
// `layouts` describes the accepted shapes for the message. Non-templated:
// the typed fronts pass the dtype.
inline DlDims dl_check(const char* fn, const char* name, const DLTensor& t,
                       std::uint8_t code, std::uint8_t bits, const char* type_name,
                       std::size_t elem, int ndim_a, int ndim_b, const char* layouts,
                       bool last_contiguous) {
  // The raw number: a device type newer than this header's enum must not be
  // loaded as the enum.
  static_assert(sizeof(t.device.device_type) == sizeof(std::int32_t), "DLDeviceType is 32-bit");
  std::int32_t dev = 0;
  std::memcpy(&dev, &t.device.device_type, sizeof dev);
  if (dev != 1 && dev != 3)
    fail<value_error>(fn, name, ".device (", dl_device_name(dev), " = ", dev, ", id ",
                      t.device.device_id,
                      ") must be kDLCPU or kDLCUDAHost: pdrop reads tensors on the host");
  if (t.dtype.code != code || t.dtype.bits != bits || t.dtype.lanes != 1)
    fail<value_error>(fn, name, ".dtype (code ", static_cast<int>(t.dtype.code), " ",
                      dl_code_name(t.dtype.code), ", bits ", static_cast<int>(t.dtype.bits),
                      ", lanes ", t.dtype.lanes, ") must be ", type_name, " (code ",
                      static_cast<int>(code), " ", dl_code_name(code), ", bits ",
                      static_cast<int>(bits), ", lanes 1) for the requested element type");
  if (t.ndim != ndim_a && t.ndim != ndim_b)
    fail<shape_error>(fn, name, ".ndim (", t.ndim, ") must be ", layouts);
  DlDims r;
  r.ndim = t.ndim;
  if (t.shape == nullptr)
    fail<shape_error>(fn, name, ".shape is null with ndim ", t.ndim);
  bool empty = false;
  for (int i = 0; i < t.ndim; ++i) {
    if (t.shape[i] < 0)
      fail<shape_error>(fn, name, ".shape[", i, "] (", t.shape[i], ") must be >= 0");
    r.shape[i] = t.shape[i];
    empty = empty || t.shape[i] == 0;
  }
  // Element strides: given, or compact row-major; size-1 axes get the
  // compact stride (their stride is never used to step).
  std::int64_t compact = 1;
  for (int i = t.ndim - 1; i >= 0; --i) {
    const std::int64_t given = t.strides != nullptr ? t.strides[i] : compact;
    if (r.shape[i] > 1 && given < 0)
      fail<shape_error>(fn, name, ".strides[", i, "] (", given,
                        ") must be >= 0 (pdrop views step forward)");
    r.stride[i] = r.shape[i] > 1 ? given : compact;
    if (!empty) compact = checked_mul(fn, name, compact, r.shape[i]);
  }
  const int last = t.ndim - 1;
  if (last_contiguous && last >= 0 && r.shape[last] > 1 && r.stride[last] != 1)
    fail<shape_error>(fn, name, ".strides[", last, "] (", r.stride[last],
                      ") must be 1: the last dimension (size ", r.shape[last],
                      ") must be contiguous");
  if (t.byte_offset > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
    fail<shape_error>(fn, name, ".byte_offset (", t.byte_offset, ") is too large");
  if (empty) return r;  // no element is ever read: data stays null
  // Largest element offset, checked for int64 overflow, also in bytes
  // together with byte_offset.
  std::int64_t extent = 1;
  for (int i = 0; i < t.ndim; ++i)
    extent = checked_add(fn, name, extent, checked_mul(fn, name, r.shape[i] - 1, r.stride[i]));
  checked_add(fn, name, checked_mul(fn, name, extent, static_cast<std::int64_t>(elem)),
              static_cast<std::int64_t>(t.byte_offset));
  if (t.data == nullptr)
    fail<shape_error>(fn, name, ".data is null with ", extent, " elements in reach");
  const auto addr = reinterpret_cast<std::uintptr_t>(t.data) +
                    static_cast<std::uintptr_t>(t.byte_offset);
  if (addr % elem != 0)
    fail<shape_error>(fn, name, ".data + byte_offset (", t.data, " + ", t.byte_offset,
                      ") must be aligned to the element size (", elem, " bytes)");
  r.data = static_cast<unsigned char*>(t.data) + t.byte_offset;
  return r;
}

template <class T>
DlDims dl_check_typed(const char* fn, const char* name, const DLTensor& t, int ndim_a,
                      int ndim_b, const char* layouts, bool last_contiguous = true) {
  using E = dl_dtype<std::remove_cv_t<T>>;
  return dl_check(fn, name, t, E::code, E::bits, E::name, sizeof(T), ndim_a, ndim_b,
                  layouts, last_contiguous);
}

}  // namespace detail

// HeadView<T> of a DLPack tensor of shape [H, T, D] / [1, H, T, D] (hnd) or
// [T, H, D] / [1, T, H, D] (nhd); any strides >= 0 with the last axis
// contiguous. `name` is the argument named in errors (e.g. "k").
// Throws value_error (device, dtype) / shape_error (everything else).
template <class T>
HeadView<T> dlpack_head_view(const DLTensor& tensor, DlpackLayout layout,
                             const char* name = "tensor") {
  constexpr const char* fn = "pdrop::dlpack_head_view";
  const bool hnd = layout == DlpackLayout::hnd;
  const detail::DlDims d = detail::dl_check_typed<T>(
      fn, name, tensor, 3, 4,
      hnd ? "3 ([H, T, D]) or 4 ([1, H, T, D]) for layout hnd"
          : "3 ([T, H, D]) or 4 ([1, T, H, D]) for layout nhd");
  const int b = d.ndim - 3;  // first axis after the batch
  if (b == 1 && d.shape[0] != 1)
    detail::fail<shape_error>(fn, name, ".shape[0] (", d.shape[0],
                              ") must be 1: a batch of one sequence");
  const int h = hnd ? b : b + 1, t = hnd ? b + 1 : b;
  const HeadView<T> v(static_cast<T*>(d.data), d.shape[h], d.shape[t], d.shape[b + 2],
                      d.stride[h], d.stride[t]);
  detail::check_head_view(fn, name, v.data, v.heads, v.tokens, v.dim, v.head_stride,
                          v.token_stride, sizeof(T), !std::is_const_v<T>);
  return v;
}

// TokenView<T> of a DLPack tensor of shape [T, W] or [1, T, W] (features
// contiguous, any row stride >= W), or [T] (one feature per token, any
// stride: e.g. a column of positions). Note [1, T] is one token of T
// features: pass a [T] tensor for per-token scalars.
template <class T>
TokenView<T> dlpack_token_view(const DLTensor& tensor, const char* name = "tensor") {
  constexpr const char* fn = "pdrop::dlpack_token_view";
  detail::DlDims d;
  if (tensor.ndim == 1) {
    // One feature per token: any stride steps the tokens.
    d = detail::dl_check_typed<T>(fn, name, tensor, 1, 1, "1, 2 or 3", false);
    const TokenView<T> v(static_cast<T*>(d.data), d.shape[0], 1, d.stride[0]);
    detail::check_token_view(fn, name, v.data, v.tokens, v.features, v.row_stride,
                             sizeof(T));
    return v;
  }
  d = detail::dl_check_typed<T>(fn, name, tensor, 2, 3,
                                "1 ([T]), 2 ([T, W]) or 3 ([1, T, W])");
  const int b = d.ndim - 2;
  if (b == 1 && d.shape[0] != 1)
    detail::fail<shape_error>(fn, name, ".shape[0] (", d.shape[0],
                              ") must be 1: a batch of one sequence");
  const TokenView<T> v(static_cast<T*>(d.data), d.shape[b], d.shape[b + 1], d.stride[b]);
  detail::check_token_view(fn, name, v.data, v.tokens, v.features, v.row_stride,
                           sizeof(T));
  return v;
}

// span<T> of a contiguous 1-D DLPack tensor [T] (stride 1 or NULL strides).
template <class T>
span<T> dlpack_span(const DLTensor& tensor, const char* name = "tensor") {
  constexpr const char* fn = "pdrop::dlpack_span";
  const detail::DlDims d = detail::dl_check_typed<T>(fn, name, tensor, 1, 1, "1 ([T])");
  return span<T>(static_cast<T*>(d.data), d.shape[0]);
}

// The same, for the DLManagedTensor a producer hands over (its dl_tensor).
// The view does not own the tensor: call its deleter only when done with it.
template <class T>
HeadView<T> dlpack_head_view(const DLManagedTensor& managed, DlpackLayout layout,
                             const char* name = "tensor") {
  return dlpack_head_view<T>(managed.dl_tensor, layout, name);
}
template <class T>
TokenView<T> dlpack_token_view(const DLManagedTensor& managed, const char* name = "tensor") {
  return dlpack_token_view<T>(managed.dl_tensor, name);
}
template <class T>
span<T> dlpack_span(const DLManagedTensor& managed, const char* name = "tensor") {
  return dlpack_span<T>(managed.dl_tensor, name);
}

PDROP_END_NAMESPACE

#endif  // PDROP_DLPACK_HPP
