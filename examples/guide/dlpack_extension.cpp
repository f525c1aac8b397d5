// docs/integration.md, "From a PyTorch C++ extension (DLPack)": the
// extension receives torch tensors as DLPack tensors (at::toDLPack(t) in
// C++, t.__dlpack__() from Python) and calls pdrop on torch's own memory,
// whatever its strides: no copy, no torch headers in the pdrop call.
//
// Here the tensors are made by hand the way torch exports them: q as the
// last-token slice q[:, :, -1:, :] of a (1, Hq, T, d) tensor, k as
// k.transpose(1, 2) of a (1, T, Hkv, d) projection, hidden (1, T, D),
// positions (T) and keep (T) int64. The check: the keep list and the
// compacted hidden states and positions equal a call on hand-built views
// of the same memory followed by a plain gather. Exit status 0 when they do.
#include <pdrop/dlpack.hpp>
#include <pdrop/pdrop.hpp>

#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

namespace {

// [snippet dlpack_extension]
// Called with the tensors' DLManagedTensors; hidden and positions are
// compacted in place, keep (an int64 [T] tensor) receives the keep list.
// Returns the new length: the Python side slices hidden[:, :n], positions[:n].
std::int64_t drop_image_tokens(const DLManagedTensor& q_last,  // [1, Hq, 1, d]
                               const DLManagedTensor& k,       // [1, Hkv, T, d]
                               const DLManagedTensor& hidden,  // [1, T, D]
                               const DLManagedTensor& positions, const DLManagedTensor& keep,
                               pdrop::ImageSpan& image, std::int64_t n_keep,
                               pdrop::Workspace& ws) {
  using pdrop::DlpackLayout;
  const auto q = pdrop::dlpack_head_view<const float>(q_last, DlpackLayout::hnd, "q_last");
  const auto kv = pdrop::dlpack_head_view<const float>(k, DlpackLayout::hnd, "k");
  const auto h = pdrop::dlpack_token_view<float>(hidden, "hidden");
  const auto pos = pdrop::dlpack_token_view<std::int64_t>(positions, "positions");
  const auto out = pdrop::dlpack_span<std::int64_t>(keep, "keep");
  const std::int64_t last = kv.tokens - 1;
  const std::int64_t n = pdrop::rank_and_drop<float, float>(
      q, {&last, 1}, kv, {&image, 1}, {&n_keep, 1}, ws, out, {&image, 1});
  pdrop::compact_rows(h, {out.data, n});
  pdrop::compact_positions(pos, {out.data, n});
  return n;
}
// [/snippet dlpack_extension]

// A DLManagedTensor over memory the caller owns (no deleter needed).
template <class T>
DLManagedTensor tensor(T* data, std::vector<std::int64_t>& shape,
                       std::vector<std::int64_t>& strides, std::uint8_t code,
                       std::uint64_t byte_offset = 0) {
  DLManagedTensor m{};
  m.dl_tensor.data = data;
  m.dl_tensor.device = {kDLCPU, 0};
  m.dl_tensor.ndim = static_cast<std::int32_t>(shape.size());
  m.dl_tensor.dtype = {code, static_cast<std::uint8_t>(8 * sizeof(T)), 1};
  m.dl_tensor.shape = shape.data();
  m.dl_tensor.strides = strides.data();
  m.dl_tensor.byte_offset = byte_offset;
  return m;
}

}  // namespace

int main() {
  const std::int64_t Hq = 4, Hkv = 2, d = 8, D = 24, T = 41, N0 = 30, n_keep = 11;
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  std::vector<float> q(Hq * T * d), k(T * Hkv * d), hidden(T * D);
  for (auto* v : {&q, &k, &hidden})
    for (float& x : *v) x = nd(rng);
  std::vector<std::int64_t> pos(T), keep(T, -1);
  for (std::int64_t i = 0; i < T; ++i) pos[i] = i;
  const auto hidden0 = hidden;

  // torch's exports: q[:, :, -1:, :] of a contiguous (1, Hq, T, d) tensor
  // (byte offset to the last token, its strides); k.transpose(1, 2) of a
  // contiguous (1, T, Hkv, d) one; hidden (1, T, D); positions and keep (T).
  std::vector<std::int64_t> q_shape{1, Hq, 1, d}, q_strides{Hq * T * d, T * d, d, 1};
  std::vector<std::int64_t> k_shape{1, Hkv, T, d}, k_strides{T * Hkv * d, d, Hkv * d, 1};
  std::vector<std::int64_t> h_shape{1, T, D}, h_strides{T * D, D, 1};
  std::vector<std::int64_t> p_shape{T}, p_strides{1};
  const auto q_t = tensor(q.data(), q_shape, q_strides, kDLFloat, (T - 1) * d * sizeof(float));
  const auto k_t = tensor(k.data(), k_shape, k_strides, kDLFloat);
  const auto h_t = tensor(hidden.data(), h_shape, h_strides, kDLFloat);
  const auto p_t = tensor(pos.data(), p_shape, p_strides, kDLInt);
  const auto keep_t = tensor(keep.data(), p_shape, p_strides, kDLInt);

  pdrop::Workspace ws;
  pdrop::ImageSpan image{3, N0};
  const std::int64_t n = drop_image_tokens(q_t, k_t, h_t, p_t, keep_t, image, n_keep, ws);

  // Reference: the same call on views built by hand, then a plain gather.
  pdrop::ImageSpan want_image{3, N0};
  std::vector<std::int64_t> want_keep(T);
  const std::int64_t last = T - 1;
  const std::int64_t want_n = pdrop::rank_and_drop<float, float>(
      pdrop::HeadView<const float>(q.data() + (T - 1) * d, Hq, 1, d, T * d, d), {&last, 1},
      pdrop::nhd_view<const float>(k.data(), T, Hkv, d), {&want_image, 1}, {&n_keep, 1}, ws,
      want_keep, {&want_image, 1});
  int bad = 0;
  if (n != want_n || n != T - N0 + n_keep || image.start != want_image.start ||
      image.length != n_keep) {
    std::printf("new length %lld (want %lld) or span wrong\n", (long long)n, (long long)want_n);
    ++bad;
  }
  for (std::int64_t i = 0; i < n && !bad; ++i) {
    const std::int64_t src = want_keep[i];
    bool ok = keep[i] == src && pos[i] == i;
    for (std::int64_t f = 0; f < D; ++f) ok = ok && hidden[i * D + f] == hidden0[src * D + f];
    if (!ok) {
      std::printf("row %lld: keep %lld (want %lld), position %lld, or hidden differs\n",
                  (long long)i, (long long)keep[i], (long long)src, (long long)pos[i]);
      ++bad;
    }
  }
  std::printf("dlpack_extension: %lld of %lld tokens kept: %s\n", static_cast<long long>(n),
              static_cast<long long>(T), bad ? "WRONG" : "ok");
  return bad ? 1 : 0;
}
