// rank_and_drop_batch: a batch of sequences of different lengths, image
// positions and image counts equals running rank_and_drop /
// rank_and_drop_global on each sequence alone, byte for byte; the packed
// (ubatch) and right-padded layouts compact to the same rows as the
// sequences compacted one by one.
#include <gtest/gtest.h>

#include <thread>

#include "pdrop/batch.hpp"
#include "test_util.hpp"

namespace {

using pdrop::HeadView;
using pdrop::ImageSpan;
using pdrop::SequenceDrop;
using I64 = std::int64_t;

constexpr I64 kHq = 4, kHkv = 2, kD = 8;

// One sequence, its own buffers (head-major q and k).
struct Seq {
  I64 tokens;
  std::vector<ImageSpan> spans;
  std::vector<I64> counts;
  pdrop::Budget budget;
  std::vector<I64> pos;
  std::vector<float> q, k;
  HeadView<const float> qv() const {
    return pdrop::hnd_view<const float>(q.data(), kHq, static_cast<I64>(pos.size()), kD);
  }
  HeadView<const float> kv() const { return pdrop::hnd_view<const float>(k.data(), kHkv, tokens, kD); }
  I64 n_image() const {
    I64 n = 0;
    for (auto& s : spans) n += s.length;
    return n;
  }
  SequenceDrop<float, float> drop() const { return {qv(), pos, kv(), spans, counts, budget}; }
};

Seq make_seq(std::mt19937& rng, I64 tokens, std::vector<ImageSpan> spans, std::vector<I64> counts,
             pdrop::Budget budget = pdrop::Budget::per_span, I64 nq = 1) {
  Seq s{tokens, std::move(spans), std::move(counts), budget, {tokens - 1}, {}, {}};
  for (I64 i = 1; i < nq; ++i) s.pos.push_back(std::uniform_int_distribution<I64>(0, tokens - 1)(rng));
  s.q = pdrop_test::random_vector<float>(static_cast<std::size_t>(kHq * nq * kD), rng, -2, 2);
  s.k = pdrop_test::random_vector<float>(static_cast<std::size_t>(kHkv * tokens * kD), rng, -2, 2);
  return s;
}

// A mixed batch: text only, three images, length 1, one image token in a
// length-2 sequence, a global budget over two images, a long one with two
// query rows.
std::vector<Seq> mixed_batch() {
  std::mt19937 rng(4242);
  std::vector<Seq> b;
  b.push_back(make_seq(rng, 12, {}, {}));
  b.push_back(make_seq(rng, 90, {{3, 24}, {30, 24}, {60, 24}}, {12, 0, 23}));
  b.push_back(make_seq(rng, 1, {}, {}));
  b.push_back(make_seq(rng, 2, {{0, 1}}, {0}));
  b.push_back(make_seq(rng, 57, {{5, 20}, {30, 20}}, {13}, pdrop::Budget::global));
  b.push_back(make_seq(rng, 1, {{0, 0}}, {0}));
  b.push_back(make_seq(rng, 140, {{10, 120}}, {37}, pdrop::Budget::per_span, 2));
  return b;
}

struct Alone {
  std::vector<I64> keep;
  std::vector<ImageSpan> spans;
  std::vector<float> scores;
};

Alone run_alone(const Seq& s, pdrop::Workspace& ws) {
  Alone a{std::vector<I64>(static_cast<std::size_t>(s.tokens)), std::vector<ImageSpan>(s.spans.size()),
          std::vector<float>(static_cast<std::size_t>(s.n_image()))};
  const I64 t = s.budget == pdrop::Budget::global
                    ? pdrop::rank_and_drop_global<float, float>(s.qv(), s.pos, s.kv(), s.spans, s.counts[0],
                                                                ws, a.keep, a.spans, a.scores)
                    : pdrop::rank_and_drop<float, float>(s.qv(), s.pos, s.kv(), s.spans, s.counts, ws,
                                                         a.keep, a.spans, a.scores);
  a.keep.resize(static_cast<std::size_t>(t));
  return a;
}

struct Out {
  std::vector<I64> keep, offsets, lengths;
  std::vector<ImageSpan> spans;
  std::vector<float> scores;
  I64 rows = -1;  // what rank_and_drop_batch returned
};

Out sized_out(const std::vector<Seq>& batch) {
  I64 tokens = 0, spans = 0, image = 0;
  for (auto& s : batch) {
    tokens += s.tokens;
    spans += static_cast<I64>(s.spans.size());
    image += s.n_image();
  }
  return Out{std::vector<I64>(static_cast<std::size_t>(tokens), -5),
             std::vector<I64>(batch.size() + 1, -5), std::vector<I64>(batch.size(), -5),
             std::vector<ImageSpan>(static_cast<std::size_t>(spans), ImageSpan{-5, -5}),
             std::vector<float>(static_cast<std::size_t>(image), -5.0f)};
}

// The batch result equals each sequence alone.
void expect_equals_alone(const std::vector<Seq>& batch, const Out& o, I64 rows) {
  pdrop::Workspace ws;
  I64 sp = 0, sc = 0;
  ASSERT_EQ(o.offsets[0], 0);
  for (std::size_t b = 0; b < batch.size(); ++b) {
    SCOPED_TRACE(::testing::Message() << "sequence " << b);
    const Alone a = run_alone(batch[b], ws);
    const std::vector<I64> got(o.keep.begin() + o.offsets[b], o.keep.begin() + o.offsets[b + 1]);
    EXPECT_EQ(got, a.keep);
    EXPECT_EQ(o.lengths[b], static_cast<I64>(a.keep.size()));
    for (std::size_t i = 0; i < a.spans.size(); ++i) {
      EXPECT_EQ(o.spans[sp + i].start, a.spans[i].start);
      EXPECT_EQ(o.spans[sp + i].length, a.spans[i].length);
    }
    for (std::size_t i = 0; i < a.scores.size(); ++i)
      EXPECT_TRUE(pdrop_test::same_bits(&o.scores[sc + i], &a.scores[i], 1)) << "score " << i;
    if (batch[b].spans.empty() || batch[b].n_image() == 0) {  // passes through
      std::vector<I64> id(static_cast<std::size_t>(batch[b].tokens));
      std::iota(id.begin(), id.end(), 0);
      EXPECT_EQ(got, id);
    }
    sp += static_cast<I64>(a.spans.size());
    sc += static_cast<I64>(a.scores.size());
  }
  EXPECT_EQ(rows, o.offsets.back());
  for (std::size_t i = static_cast<std::size_t>(rows); i < o.keep.size(); ++i) EXPECT_EQ(o.keep[i], -5);
}

// rank_and_drop_batch over `seqs` (the drops of `batch`) with every output,
// into a fresh Out, checked against each sequence alone.
Out batch_equals_alone(const std::vector<Seq>& batch,
                       pdrop::span<const SequenceDrop<float, float>> seqs, pdrop::Workspace& ws) {
  Out o = sized_out(batch);
  o.rows = pdrop::rank_and_drop_batch<float, float>(seqs, ws, o.keep, o.offsets, o.lengths,
                                                    o.spans, o.scores);
  expect_equals_alone(batch, o, o.rows);
  return o;
}

// The sequences' drops with sequence b's keys read through k_of(b) (a copy
// of them in another layout) instead of its own buffer.
template <class KOf>
std::vector<SequenceDrop<float, float>> drops_with_keys(const std::vector<Seq>& batch, KOf k_of) {
  std::vector<SequenceDrop<float, float>> seqs;
  for (std::size_t b = 0; b < batch.size(); ++b) {
    auto d = batch[b].drop();
    d.k = k_of(static_cast<I64>(b));
    seqs.push_back(d);
  }
  return seqs;
}

TEST(Batch, MixedRaggedBatchEqualsEachSequenceAlone) {
  const auto batch = mixed_batch();
  std::vector<SequenceDrop<float, float>> seqs;
  for (auto& s : batch) seqs.push_back(s.drop());
  pdrop::Workspace ws;
  const Out o = batch_equals_alone(batch, seqs, ws);
  // Optional outputs left out: the same keep lists.
  Out o2 = sized_out(batch);
  const I64 rows2 = pdrop::rank_and_drop_batch<float, float>(seqs, ws, o2.keep, o2.offsets);
  EXPECT_EQ(rows2, o.rows);
  EXPECT_EQ(o2.keep, o.keep);
  EXPECT_EQ(o2.offsets, o.offsets);
  // Every sub-batch (a suffix, a single sequence, none) agrees as well.
  for (std::size_t first = 0; first <= batch.size(); ++first) {
    const std::vector<Seq> sub(batch.begin() + static_cast<std::ptrdiff_t>(first), batch.end());
    batch_equals_alone(sub,
                       pdrop::span<const SequenceDrop<float, float>>(
                           seqs.data() + first, static_cast<I64>(sub.size())),
                       ws);
  }
}

TEST(Batch, ParallelOverloadIsBitIdentical) {
  const auto batch = mixed_batch();
  std::vector<SequenceDrop<float, float>> seqs;
  for (auto& s : batch) seqs.push_back(s.drop());
  Out a = sized_out(batch), b = sized_out(batch);
  pdrop::Workspace ws, ws2;
  pdrop::rank_and_drop_batch<float, float>(seqs, ws, a.keep, a.offsets, a.lengths, a.spans, a.scores);
  pdrop::rank_and_drop_batch<float, float>(seqs, ws2, b.keep, b.offsets, b.lengths, b.spans, b.scores,
                                           {}, pdrop_test::ThreadFor{2});
  EXPECT_EQ(a.keep, b.keep);
  EXPECT_EQ(a.offsets, b.offsets);
  EXPECT_EQ(pdrop_test::bytes_of(a.spans), pdrop_test::bytes_of(b.spans));
  EXPECT_EQ(pdrop_test::bytes_of(a.scores), pdrop_test::bytes_of(b.scores));
}

// A llama.cpp-style ubatch: all sequences' rows packed (K token-major, the
// hidden rows side by side), sequence b at rows [off[b], off[b+1]).
TEST(Batch, PackedUbatchCompactsInOneCall) {
  const auto batch = mixed_batch();
  const I64 B = static_cast<I64>(batch.size()), width = 5;
  std::vector<I64> off{0};
  for (auto& s : batch) off.push_back(off.back() + s.tokens);
  const I64 total = off.back();
  std::vector<float> k_packed(static_cast<std::size_t>(total * kHkv * kD));
  std::vector<float> hidden(static_cast<std::size_t>(total * width));
  std::mt19937 rng(8);
  for (auto& x : hidden) x = std::uniform_real_distribution<float>(-1, 1)(rng);
  for (I64 b = 0; b < B; ++b)
    for (I64 g = 0; g < kHkv; ++g)
      for (I64 t = 0; t < batch[b].tokens; ++t)
        std::copy_n(batch[b].kv().row(g, t), kD, &k_packed[((off[b] + t) * kHkv + g) * kD]);
  const auto k_all = pdrop::nhd_view<const float>(k_packed.data(), total, kHkv, kD);
  const auto seqs = drops_with_keys(batch, [&](I64 b) {
    return pdrop::token_slice(k_all, off[b], batch[b].tokens);
  });
  pdrop::Workspace ws;
  Out o = batch_equals_alone(batch, seqs, ws);
  const I64 rows = o.rows;

  // Packed rows, then one compaction of the packed hidden states.
  const std::vector<float> before = hidden;
  pdrop::batch_keep_rows(o.keep, o.offsets, off);
  pdrop::compact_rows(pdrop::TokenView<float>(hidden.data(), total, width), {o.keep.data(), rows});
  pdrop::Workspace ws2;
  I64 out_row = 0;
  for (I64 b = 0; b < B; ++b) {
    const Alone a = run_alone(batch[b], ws2);
    ASSERT_EQ(o.offsets[b], out_row);
    for (I64 t : a.keep) {
      for (I64 f = 0; f < width; ++f)
        EXPECT_EQ(hidden[out_row * width + f], before[(off[b] + t) * width + f]) << b << " " << t;
      ++out_row;
    }
  }
  EXPECT_EQ(out_row, rows);
}

// Right-padded (B, T_max, Hkv, d) keys with per-sequence lengths.
TEST(Batch, RightPaddedLayoutWithLengths) {
  const auto batch = mixed_batch();
  const I64 B = static_cast<I64>(batch.size());
  I64 t_max = 0;
  for (auto& s : batch) t_max = std::max(t_max, s.tokens);
  const I64 bstride = t_max * kHkv * kD;
  // Padding rows hold NaN: reading one would be a non-finite error.
  std::vector<float> k_pad(static_cast<std::size_t>(B * bstride), std::nanf(""));
  for (I64 b = 0; b < B; ++b)
    for (I64 g = 0; g < kHkv; ++g)
      for (I64 t = 0; t < batch[b].tokens; ++t)
        std::copy_n(batch[b].kv().row(g, t), kD, &k_pad[b * bstride + (t * kHkv + g) * kD]);
  const auto seqs = drops_with_keys(batch, [&](I64 b) {
    return pdrop::nhd_view<const float>(k_pad.data() + b * bstride, batch[b].tokens, kHkv, kD);
  });
  pdrop::Workspace ws;
  batch_equals_alone(batch, seqs, ws);
}

TEST(Batch, ReservedWorkspaceDoesNotGrow) {
  const auto batch = mixed_batch();
  std::vector<SequenceDrop<float, float>> seqs;
  I64 t_max = 0, image = 0;
  for (auto& s : batch) {
    seqs.push_back(s.drop());
    t_max = std::max(t_max, s.tokens);
    image += s.n_image();
  }
  pdrop::Workspace ws;
  ws.reserve(kHq, kHkv, 2, t_max, kD, image);
  const std::size_t bytes = ws.bytes();
  Out o = sized_out(batch);
  pdrop::rank_and_drop_batch<float, float>(seqs, ws, o.keep, o.offsets, o.lengths, o.spans, o.scores);
  EXPECT_EQ(ws.bytes(), bytes);
}

TEST(Batch, RejectedCallsNameTheSequenceAndWriteNothing) {
  auto batch = mixed_batch();
  std::vector<SequenceDrop<float, float>> seqs;
  for (auto& s : batch) seqs.push_back(s.drop());
  Out o = sized_out(batch);
  pdrop::Workspace ws;
  const auto snap = [&] {
    return std::make_tuple(pdrop_test::bytes_of(o.keep), pdrop_test::bytes_of(o.offsets),
                           pdrop_test::bytes_of(o.lengths), pdrop_test::bytes_of(o.spans),
                           pdrop_test::bytes_of(o.scores));
  };
  const auto before = snap();
  auto call = [&](const std::vector<SequenceDrop<float, float>>& s) {
    pdrop::rank_and_drop_batch<float, float>(s, ws, o.keep, o.offsets, o.lengths, o.spans, o.scores);
  };
  {
    auto bad = seqs;
    const std::vector<I64> counts{12, 0, 25};
    bad[1].keep_counts = counts;
    pdrop_test::expect_invalid([&] { call(bad); },
                               "pdrop::rank_and_drop_batch: seqs[1]: keep_counts[2] (25) must be in [0, spans[2].length = 24]");
  }
  {
    auto bad = seqs;
    const std::vector<I64> n{41};
    bad[4].keep_counts = n;
    pdrop_test::expect_invalid([&] { call(bad); }, "seqs[4]: n_keep (41)");
  }
  {
    auto bad = seqs;
    const std::vector<I64> pos{2};
    bad[3].query_pos = pos;
    pdrop_test::expect_invalid([&] { call(bad); }, "seqs[3]: query_pos[0] (2)");
  }
  pdrop_test::expect_invalid([&] {
    pdrop::rank_and_drop_batch<float, float>(seqs, ws, {o.keep.data(), 10}, o.offsets);
  }, "keep.size (10) must be >=");
  pdrop_test::expect_invalid([&] {
    pdrop::rank_and_drop_batch<float, float>(seqs, ws, o.keep, {o.offsets.data(), 7});
  }, "keep_offsets.size (7) must be seqs.size + 1 (8)");
  pdrop_test::expect_invalid([&] {
    pdrop::rank_and_drop_batch<float, float>(seqs, ws, o.keep, o.offsets, {o.lengths.data(), 3});
  }, "maybe_new_lengths.size (3)");
  pdrop_test::expect_invalid([&] {
    pdrop::rank_and_drop_batch<float, float>(seqs, ws, o.keep, o.offsets, {}, {o.spans.data(), 2});
  }, "maybe_new_spans.size (2)");
  pdrop_test::expect_invalid([&] {
    pdrop::rank_and_drop_batch<float, float>(seqs, ws, o.keep, o.offsets, {}, {}, {o.scores.data(), 1});
  }, "maybe_scores.size (1)");
  pdrop_test::expect_invalid([&] {
    pdrop::rank_and_drop_batch<float, float>(seqs, ws, o.keep, {o.keep.data() + 20, 8});
  }, "keep overlaps keep_offsets");
  {  // new spans over another sequence's spans
    std::vector<ImageSpan> packed_spans{{3, 24}, {30, 24}, {60, 24}, {0, 1}, {5, 20}, {30, 20}, {0, 0}, {10, 120}};
    std::vector<ImageSpan> cross = packed_spans;
    std::swap(cross[6], cross[7]);  // seq 6's span at index 6, where seq 5's output goes
    auto alias = seqs;
    alias[6].spans = {cross.data() + 6, 1};
    const auto cross_before = pdrop_test::bytes_of(cross);
    pdrop_test::expect_invalid([&] {
      pdrop::rank_and_drop_batch<float, float>(alias, ws, o.keep, o.offsets, {}, cross);
    }, "maybe_new_spans overlaps seqs[6].spans");
    EXPECT_EQ(pdrop_test::bytes_of(cross), cross_before);
    // Each sequence's spans being its own slice of the output is fine.
    auto own = seqs;
    I64 sp = 0;
    for (std::size_t b = 0; b < own.size(); ++b) {
      own[b].spans = {packed_spans.data() + sp, static_cast<I64>(batch[b].spans.size())};
      sp += static_cast<I64>(batch[b].spans.size());
    }
    Out ref = sized_out(batch);
    pdrop::rank_and_drop_batch<float, float>(seqs, ws, ref.keep, ref.offsets, {}, ref.spans);
    std::vector<I64> keep2(o.keep.size(), -5), off2(o.offsets.size());
    pdrop::rank_and_drop_batch<float, float>(own, ws, keep2, off2, {}, packed_spans);
    EXPECT_EQ(keep2, ref.keep);
    EXPECT_EQ(pdrop_test::bytes_of(packed_spans), pdrop_test::bytes_of(ref.spans));
  }
  // A non-finite key in the last sequence: nothing written for the others.
  batch[6].k[(1 * 140 + 50) * kD + 3] = std::nanf("");
  pdrop_test::expect_invalid([&] { call(seqs); }, "pdrop::rank_and_drop_batch: seqs[6]: q or k holds a non-finite");
  EXPECT_EQ(snap(), before);
}

TEST(Batch, KeepRowsValidates) {
  std::vector<I64> keep{0, 2, 0, 1, 1}, offsets{0, 2, 4, 5}, seq{0, 3, 5, 7};
  const auto before = keep;
  pdrop_test::expect_invalid([&] { pdrop::batch_keep_rows(keep, offsets, {seq.data(), 3}); }, "seq_offsets.size (3)");
  std::vector<I64> short_seq{0, 3, 4, 6};  // sequence 1 has one row, keeps two
  pdrop_test::expect_invalid([&] { pdrop::batch_keep_rows(keep, offsets, short_seq); }, "sequence 1 keeps 2 rows of 1");
  std::vector<I64> bad_keep{0, 2, 1, 1, 1};
  pdrop_test::expect_invalid([&] { pdrop::batch_keep_rows(bad_keep, offsets, seq); }, "strictly ascending");
  EXPECT_EQ(keep, before);
  pdrop::batch_keep_rows(keep, offsets, seq);
  EXPECT_EQ(keep, (std::vector<I64>{0, 2, 3, 4, 6}));
  pdrop_test::expect_invalid([&] { pdrop::token_slice(pdrop::TokenView<I64>(keep.data(), 5, 1), 3, 3); },
                             "rows [3, 3 + 3)");
}

}  // namespace
