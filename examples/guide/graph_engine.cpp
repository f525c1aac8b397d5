// docs/integration.md, "From a llama.cpp-style graph engine": the forward
// pass is split into one graph per stage; between two graphs pdrop scores
// the image tokens from the next layer's q/k (extra outputs of the graph
// just run), and the batch shrinks before the next graph is built, so the
// layers after a drop compute, and write KV cells for, the kept tokens only.
//
// The engine is a toy (attention-only layers, GQA, RoPE, random weights).
// The check: at every drop the kept image tokens are the best by a naive
// score (softmax of the last token's q against every k, mean over heads,
// in double), positions are re-indexed, and each layer ends with
// text + n_j KV cells. Exit status 0 when all of that holds.
#include <pdrop/pdrop.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

namespace {

using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct Batch {                     // one row per token, as a llama_ubatch
  Mat embd;                        // (n, D) hidden states entering the next layer
  std::vector<std::int64_t> pos;   // (n) RoPE positions
  std::int64_t n = 0;
};

struct Engine {
  std::int64_t L = 6, D = 32, Hq = 4, Hkv = 2, d = 8;
  std::vector<Mat> wq, wk, wv, wo;
  std::vector<Mat> k_cells, v_cells;       // per layer: (cells, Hkv*d)
  std::vector<std::int64_t> used_cells;    // per layer

  explicit Engine(std::int64_t cells) : k_cells(L), v_cells(L), used_cells(L, 0) {
    std::mt19937 rng(3);
    std::normal_distribution<float> nd(0.0f, 1.0f / std::sqrt(static_cast<float>(D)));
    auto mat = [&](std::int64_t r, std::int64_t c) {
      Mat m(r, c);
      for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = nd(rng);
      return m;
    };
    for (std::int64_t l = 0; l < L; ++l) {
      wq.push_back(mat(D, Hq * d)); wk.push_back(mat(D, Hkv * d));
      wv.push_back(mat(D, Hkv * d)); wo.push_back(mat(Hq * d, D));
      k_cells[l].resize(cells, Hkv * d);
      v_cells[l].resize(cells, Hkv * d);
    }
  }
  // Rotates pairs (x[2i], x[2i+1]) of each head of row r by pos[r] * 10000^(-2i/d).
  void rope(Mat& x, const std::vector<std::int64_t>& pos) const {
    for (Eigen::Index r = 0; r < x.rows(); ++r)
      for (Eigen::Index c = 0; c < x.cols(); c += 2) {
        const double a = static_cast<double>(pos[r]) * std::pow(10000.0, -double(c % d) / d);
        const float x0 = x(r, c), x1 = x(r, c + 1);
        x(r, c) = static_cast<float>(x0 * std::cos(a) - x1 * std::sin(a));
        x(r, c + 1) = static_cast<float>(x1 * std::cos(a) + x0 * std::sin(a));
      }
  }
  // Layer l's q and k of the batch rows, RoPE'd at the batch positions.
  void qk(std::int64_t l, const Batch& b, Mat& q, Mat& k) const {
    q = b.embd.topRows(b.n) * wq[l];
    k = b.embd.topRows(b.n) * wk[l];
    rope(q, b.pos);
    rope(k, b.pos);
  }
  // "Graph compute" of layers [first, last) over the batch: each layer
  // writes K/V cells [0, n) of its own cache and attends over them.
  void eval(std::int64_t first, std::int64_t last, Batch& b) {
    for (std::int64_t l = first; l < last; ++l) {
      Mat q, k;
      qk(l, b, q, k);
      k_cells[l].topRows(b.n) = k;
      v_cells[l].topRows(b.n) = b.embd.topRows(b.n) * wv[l];
      used_cells[l] = b.n;
      Mat attn(b.n, Hq * d);
      for (std::int64_t h = 0; h < Hq; ++h) {
        const std::int64_t g = h / (Hq / Hkv);
        Mat s = q.middleCols(h * d, d) * k.middleCols(g * d, d).transpose() / std::sqrt(float(d));
        for (std::int64_t i = 0; i < b.n; ++i) {
          s.row(i).tail(b.n - 1 - i).setConstant(-INFINITY);
          s.row(i) = (s.row(i).array() - s.row(i).maxCoeff()).exp().matrix();
          s.row(i) /= s.row(i).sum();
        }
        attn.middleCols(h * d, d) = s * v_cells[l].block(0, g * d, b.n, d);
      }
      b.embd.topRows(b.n) += attn * wo[l];
    }
  }
};

// Naive: mean over heads of the softmax of the last row's q against every
// k row, at the image tokens; in double.
std::vector<double> naive_scores(const Mat& q, const Mat& k, pdrop::ImageSpan image,
                                 std::int64_t Hq, std::int64_t Hkv, std::int64_t d) {
  const Eigen::Index last = q.rows() - 1;
  std::vector<double> out(static_cast<std::size_t>(image.length), 0.0);
  for (std::int64_t h = 0; h < Hq; ++h) {
    const std::int64_t g = h / (Hq / Hkv);
    std::vector<double> p(static_cast<std::size_t>(k.rows()));
    double mx = -INFINITY, sum = 0;
    for (Eigen::Index t = 0; t < k.rows(); ++t) {
      double dot = 0;
      for (std::int64_t i = 0; i < d; ++i) dot += double(q(last, h * d + i)) * k(t, g * d + i);
      p[t] = dot / std::sqrt(double(d));
      mx = std::max(mx, p[t]);
    }
    for (double& x : p) sum += (x = std::exp(x - mx));
    for (std::int64_t i = 0; i < image.length; ++i) out[i] += p[image.start + i] / sum / double(Hq);
  }
  return out;
}

}  // namespace

int main() {
  const std::int64_t sys = 5, N0 = 40, question = 7, T = sys + N0 + question;
  Engine eng(T);
  const std::int64_t L = eng.L, D = eng.D, Hq = eng.Hq, Hkv = eng.Hkv, d = eng.d;
  Batch b{Mat::Random(T, D), std::vector<std::int64_t>(T), T};
  for (std::int64_t i = 0; i < T; ++i) b.pos[i] = i;
  pdrop::ImageSpan image{sys, N0};
  int bad = 0;

  // [snippet graph_engine]
  const auto s = pdrop::Schedule::pyramid(L, 3, 0.5);   // drops after layers 2, 4
  // The sequence's record: budgets, spans, cache lengths, decode positions.
  pdrop::SequenceState seq(s, pdrop::TokenView<const std::int64_t>(b.pos.data(), T, 1),
                           {&image, 1});
  pdrop::Workspace ws;
  ws.reserve(Hq, Hkv, 1, T, d, N0);
  std::vector<std::int64_t> keep(T);
  Mat q, k;
  for (std::int64_t j = 0; j < s.num_stages(); ++j) {
    const std::int64_t first = j == 0 ? 0 : s.drop_layers()[j - 1];
    const std::int64_t end = j + 1 < s.num_stages() ? s.drop_layers()[j] : L;
    eng.eval(first, end, b);                // the graph of layers [first, end)
    if (end == L) break;
    eng.qk(end, b, q, k);                   // extra outputs: layer end's q, k (RoPE'd)
    std::int64_t n_keep = 0;                // int(N0 * ratio), from the original span
    seq.keep_counts(j + 1, pdrop::Budget::per_span, {&n_keep, 1});
    const std::int64_t last = b.n - 1;
    const std::int64_t n = pdrop::rank_and_drop<float, float>(
        pdrop::split_heads(pdrop::rows_as_tokens(q.bottomRows(1)), Hq), {&last, 1},
        pdrop::split_heads(pdrop::rows_as_tokens(k), Hkv), seq.spans(), {&n_keep, 1}, ws,
        keep, {&image, 1});
    // [/snippet graph_engine]
    // Check this drop: the kept image tokens score at least as well, by the
    // naive score, as every dropped one (the image span still starts at sys).
    {
      const std::int64_t len = b.n - (T - N0);
      const auto ns = naive_scores(q, k, {sys, len}, Hq, Hkv, d);
      std::vector<bool> kept(static_cast<std::size_t>(len), false);
      for (std::int64_t i = sys; i < sys + n_keep; ++i) kept[keep[i] - sys] = true;
      double worst_kept = INFINITY, best_dropped = -INFINITY;
      for (std::int64_t i = 0; i < len; ++i) {
        if (kept[i]) worst_kept = std::min(worst_kept, ns[i]);
        else best_dropped = std::max(best_dropped, ns[i]);
      }
      if (!(worst_kept >= best_dropped - 1e-6) || image.length != n_keep) {
        std::printf("drop %lld: a dropped token scores %.9g > kept %.9g\n",
                    static_cast<long long>(j + 1), best_dropped, worst_kept);
        ++bad;
      }
    }
    // [snippet graph_engine_compact]
    const pdrop::span<const std::int64_t> kl(keep.data(), n);
    seq.apply_drop(kl);                     // checks the list, records the stage
    pdrop::compact_rows(pdrop::rows_as_tokens(b.embd.topRows(b.n)), kl);  // hidden states
    pdrop::compact_positions(pdrop::TokenView<std::int64_t>(b.pos.data(), b.n, 1), kl,
                             seq.position_mode());
    b.n = n;                                // the next graph is built for n tokens
  }
  // Decode: layer l's KV cells and the position of answer token t.
  //   seq.cache_length(l)   seq.position(l, t)   (then seq.append(1) per step)
  // [/snippet graph_engine_compact]

  for (std::int64_t i = 0; i < b.n; ++i)
    if (b.pos[i] != i) { std::printf("position %lld is %lld\n", (long long)i, (long long)b.pos[i]); ++bad; }
  for (std::int64_t l = 0; l < L; ++l) {
    // Naive: one image, its query outside it: text + int(N0 * ratio_j).
    const std::int64_t want = T - N0 + s.image_tokens(N0, s.stage_of_layer(l));
    if (seq.cache_length(l) != want || seq.position(l, 0) != want ||
        seq.position(l, 3) != want + 3) {
      std::printf("layer %lld: record says %lld cells, position %lld; want %lld\n",
                  (long long)l, (long long)seq.cache_length(l), (long long)seq.position(l, 0),
                  (long long)want);
      ++bad;
    }
    if (eng.used_cells[l] != want) {
      std::printf("layer %lld: %lld KV cells, want %lld\n", (long long)l,
                  (long long)eng.used_cells[l], (long long)want);
      ++bad;
    }
  }
  std::printf("graph_engine: KV cells per layer");
  for (auto c : eng.used_cells) std::printf(" %lld", static_cast<long long>(c));
  std::printf(": %s\n", bad ? "WRONG" : "ok");
  return bad ? 1 : 0;
}
