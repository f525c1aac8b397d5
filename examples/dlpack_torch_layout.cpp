// dlpack_torch_layout - consuming tensors exactly as PyTorch exports them.
//
// A PyTorch model keeps, per layer, a key cache k of shape [1, 32, T, 128]
// in float16 (batch, heads, tokens, head dim; contiguous). Code that works
// token-major passes k.transpose(1, 2), shape [1, T, 32, 128], to pdrop:
//
//   capsule = torch.utils.dlpack.to_dlpack(k.transpose(1, 2))
//
// That tensor is not contiguous: its strides are those of k with axes 1
// and 2 swapped, (32*T*128, 128, T*128, 1). When k itself is a slice of a
// larger buffer (here: layer 1 of a [2, 1, 32, C, 128] cache preallocated
// for C >= T tokens), the exporter may describe the slice as the buffer's
// pointer plus a byte_offset (DLPack allows both that and an advanced data
// pointer; PyTorch advances the pointer, other frameworks use the offset).
// Likewise the query: the last row q[:, :, -1:, :] of a [1, 32, T, 128]
// projection is the projection's storage with byte_offset (T-1)*128*2.
//
// This program builds those DLTensors by hand, with the values PyTorch
// would put in each field, turns them into pdrop views, scores and selects
// the image tokens, and checks the result against views built by hand over
// the same memory. Exit code 0 when they agree.
#include <dlpack/dlpack.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "pdrop/dlpack.hpp"
#include "pdrop/pdrop.hpp"

int main() {
  using pdrop::half;
  constexpr std::int64_t kLayers = 2, kHeads = 32, kDim = 128, kCap = 640, kTokens = 611;
  constexpr pdrop::ImageSpan kImage{5, 576};  // LLaVA-1.5: 576 image tokens
  constexpr std::int64_t kKeep = 288;

  // The cache [L=2][1][32][C][128] and the query projection [1][32][T][128],
  // fp16, random.
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<half> cache(static_cast<std::size_t>(kLayers * kHeads * kCap * kDim));
  std::vector<half> qproj(static_cast<std::size_t>(kHeads * kTokens * kDim));
  for (auto& x : cache) x = half(dist(rng));
  for (auto& x : qproj) x = half(dist(rng));

  // k = cache[1, :, :, :T, :]   -> [1, 32, T, 128], strides (32*C*128, C*128, 128, 1)
  // k.transpose(1, 2)           -> [1, T, 32, 128], strides (32*C*128, 128, C*128, 1)
  // exported as the cache's pointer + byte_offset of layer 1.
  std::int64_t k_shape[4] = {1, kTokens, kHeads, kDim};
  std::int64_t k_strides[4] = {kHeads * kCap * kDim, kDim, kCap * kDim, 1};
  DLTensor k_dl{};
  k_dl.data = cache.data();
  k_dl.device = DLDevice{kDLCPU, 0};
  k_dl.ndim = 4;
  k_dl.dtype = DLDataType{kDLFloat, 16, 1};  // torch.float16
  k_dl.shape = k_shape;
  k_dl.strides = k_strides;  // in elements, as DLPack specifies
  k_dl.byte_offset = static_cast<std::uint64_t>(1 * kHeads * kCap * kDim) * sizeof(half);

  // q[:, :, -1:, :] -> [1, 32, 1, 128], strides (32*T*128, T*128, 128, 1),
  // byte_offset of row T-1.
  std::int64_t q_shape[4] = {1, kHeads, 1, kDim};
  std::int64_t q_strides[4] = {kHeads * kTokens * kDim, kTokens * kDim, kDim, 1};
  DLTensor q_dl{};
  q_dl.data = qproj.data();
  q_dl.device = DLDevice{kDLCPU, 0};
  q_dl.ndim = 4;
  q_dl.dtype = DLDataType{kDLFloat, 16, 1};
  q_dl.shape = q_shape;
  q_dl.strides = q_strides;
  q_dl.byte_offset = static_cast<std::uint64_t>((kTokens - 1) * kDim) * sizeof(half);

  // The views: k is token-major by its shape ([1, T, H, D] -> nhd); its
  // strides make it the head-major cache it really is.
  const auto k = pdrop::dlpack_head_view<const half>(k_dl, pdrop::DlpackLayout::nhd, "k");
  const auto q = pdrop::dlpack_head_view<const half>(q_dl, pdrop::DlpackLayout::hnd, "q");
  std::printf("k: %lld heads x %lld tokens x %lld dim, head_stride %lld, token_stride %lld\n",
              static_cast<long long>(k.heads), static_cast<long long>(k.tokens),
              static_cast<long long>(k.dim), static_cast<long long>(k.head_stride),
              static_cast<long long>(k.token_stride));

  // Score + select on them, and on views built by hand over the same memory.
  const std::int64_t last = kTokens - 1;
  pdrop::Workspace ws;
  std::vector<float> scores(kImage.length), scores_hand(kImage.length);
  std::vector<std::int64_t> kept(kKeep), kept_hand(kKeep);
  pdrop::score_image_tokens(q, {&last, 1}, k, {&kImage, 1}, ws, scores);
  pdrop::select_top_k(scores, kKeep, ws, kept);

  const auto k_hand = pdrop::hnd_view<const half>(
      cache.data() + kHeads * kCap * kDim, kHeads, kTokens, kDim, kCap);
  const pdrop::HeadView<const half> q_hand(qproj.data() + (kTokens - 1) * kDim, kHeads, 1, kDim,
                                           kTokens * kDim, kDim);
  pdrop::score_image_tokens(q_hand, {&last, 1}, k_hand, {&kImage, 1}, ws, scores_hand);
  pdrop::select_top_k(scores_hand, kKeep, ws, kept_hand);

  const bool same = kept == kept_hand &&
                    std::memcmp(scores.data(), scores_hand.data(), scores.size() * 4) == 0;
  std::printf("kept %lld of %lld image tokens (first at %lld, last at %lld): %s hand-built views\n",
              static_cast<long long>(kKeep), static_cast<long long>(kImage.length),
              static_cast<long long>(kImage.start + kept.front()),
              static_cast<long long>(kImage.start + kept.back()),
              same ? "same as" : "DIFFERENT from");

  // A tensor pdrop cannot read is refused with a message, e.g. the cache
  // still on the GPU.
  k_dl.device = DLDevice{kDLCUDA, 0};
  try {
    pdrop::dlpack_head_view<const half>(k_dl, pdrop::DlpackLayout::nhd, "k");
    std::printf("a CUDA tensor was accepted\n");
    return 1;
  } catch (const pdrop::invalid_argument& e) {
    std::printf("refused: %s\n", e.what());
  }
  return same ? 0 : 1;
}
