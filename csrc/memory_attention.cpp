// Fused memory attention: each query attends over its K retrieved (key, value) pairs read
// straight from the memory bank by chunk slot, without materialising the [R, K, d] gathered
// keys and values. One torch autograd function, so the backward (for the queries; the bank
// takes no gradient) recomputes the scores from the bank instead of saving them.
//
// Shapes (the Rust side flattens batch, head and query into R rows):
//   q      [R, d]      the queries, already scaled as the caller's scores need (qk-norm and
//                      temperature applied), any float dtype;
//   keys   [S, c, d]   the bank's token keys, one row per chunk slot of every stream and head;
//   values [S, c, d]   the bank's token values;
//   rows   [R, kc]     int64: the store row (chunk slot) of each retrieved chunk;
//   mask   [R, kc]     bool: the retrieved chunk is a real cached chunk.
// Outputs, f32:
//   out [R, d]  Σ_j p_j v_j with p = softmax over the valid retrieved tokens of scale·q·k_j
//               (zeros where nothing is valid);
//   lse [R]     log Σ_j exp(scale·q·k_j) over the valid tokens (−inf where nothing is valid),
//               so that a caller can mix this softmax with another one (concat attention).
//
// Two implementations: a CPU loop over rows (f32 queries and f32 bank: the common CPU case),
// and a tiled one from ATen ops for every other case (CUDA, half-precision banks), which
// gathers one tile of rows at a time under a byte budget. Tests check both against the
// unfused path.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Bytes of gathered keys (and as many of values) one tile of the ATen path may hold.
constexpr int64_t kTileBytes = 64LL << 20;

struct Problem {
  const float* q;
  const float* keys;
  const float* values;
  const int64_t* rows;
  const bool* mask;
  int64_t kc, c, d;
  float scale;
};

// 16 independent accumulators: vectorises without reassociating a single sum.
static inline __attribute__((always_inline)) float dot(const float* a, const float* b, int64_t d) {
  float acc[16] = {0};
  int64_t i = 0;
  for (; i + 16 <= d; i += 16) {
    for (int l = 0; l < 16; ++l) acc[l] += a[i + l] * b[i + l];
  }
  float s = 0;
  for (int l = 0; l < 16; ++l) s += acc[l];
  for (; i < d; ++i) s += a[i] * b[i];
  return s;
}

static inline __attribute__((always_inline)) void axpy(float* y, float a, const float* x, int64_t d) {
  for (int64_t i = 0; i < d; ++i) y[i] += a * x[i];
}

// Scores of row r's valid retrieved tokens into s (invalid ones −inf); returns their max.
static inline __attribute__((always_inline)) float scores(const Problem& p, int64_t r, float* s) {
  const int64_t c = p.c, d = p.d;
  const float* q = p.q + r * d;
  float max = kNegInf;
  for (int64_t j = 0; j < p.kc; ++j) {
    if (!p.mask[r * p.kc + j]) {
      for (int64_t i = 0; i < c; ++i) s[j * c + i] = kNegInf;
      continue;
    }
    const float* k = p.keys + p.rows[r * p.kc + j] * c * d;
    for (int64_t i = 0; i < c; ++i) {
      const float v = dot(q, k + i * d, d) * p.scale;
      s[j * c + i] = v;
      max = v > max ? v : max;
    }
  }
  return max;
}

static inline __attribute__((always_inline)) void forward_range(const Problem& p, float* out, float* lse,
                                                                int64_t begin, int64_t end) {
  const int64_t c = p.c, d = p.d, k = p.kc * p.c;
  std::vector<float> s(k);
  for (int64_t r = begin; r < end; ++r) {
    float* o = out + r * d;
    std::memset(o, 0, sizeof(float) * d);
    const float max = scores(p, r, s.data());
    if (max == kNegInf) {
      lse[r] = kNegInf;
      continue;
    }
    float sum = 0;
    for (int64_t i = 0; i < k; ++i) {
      s[i] = std::exp(s[i] - max);  // exp(−inf) = 0 for invalid tokens
      sum += s[i];
    }
    const float inv = 1.0f / sum;
    for (int64_t j = 0; j < p.kc; ++j) {
      if (!p.mask[r * p.kc + j]) continue;
      const float* v = p.values + p.rows[r * p.kc + j] * c * d;
      for (int64_t i = 0; i < c; ++i) axpy(o, s[j * c + i] * inv, v + i * d, d);
    }
    lse[r] = max + std::log(sum);
  }
}

// dq_r = scale · Σ_j p_j (g·v_j − g·out_r + g_lse) k_j, with p recomputed from the bank.
static inline __attribute__((always_inline)) void backward_range(const Problem& p, const float* out,
                                                                 const float* lse, const float* g,
                                                                 const float* g_lse, float* dq,
                                                                 int64_t begin, int64_t end) {
  const int64_t c = p.c, d = p.d, k = p.kc * p.c;
  std::vector<float> s(k);
  for (int64_t r = begin; r < end; ++r) {
    float* dqr = dq + r * d;
    std::memset(dqr, 0, sizeof(float) * d);
    if (lse[r] == kNegInf) continue;
    scores(p, r, s.data());
    const float* gr = g + r * d;
    const float centre = dot(gr, out + r * d, d) - (g_lse ? g_lse[r] : 0.0f);
    for (int64_t j = 0; j < p.kc; ++j) {
      if (!p.mask[r * p.kc + j]) continue;
      const int64_t row = p.rows[r * p.kc + j];
      const float* kb = p.keys + row * c * d;
      const float* vb = p.values + row * c * d;
      for (int64_t i = 0; i < c; ++i) {
        const float prob = std::exp(s[j * c + i] - lse[r]);
        const float ds = prob * (dot(gr, vb + i * d, d) - centre);
        axpy(dqr, ds * p.scale, kb + i * d, d);
      }
    }
  }
}

// The same loops compiled for the widest vector instructions the CPU has, chosen at run time.
#if defined(__x86_64__)
__attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma"))) void forward_avx512(
    const Problem& p, float* out, float* lse, int64_t b, int64_t e) {
  forward_range(p, out, lse, b, e);
}
__attribute__((target("avx2,fma"))) void forward_avx2(const Problem& p, float* out, float* lse, int64_t b,
                                                      int64_t e) {
  forward_range(p, out, lse, b, e);
}
__attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma"))) void backward_avx512(
    const Problem& p, const float* out, const float* lse, const float* g, const float* gl, float* dq,
    int64_t b, int64_t e) {
  backward_range(p, out, lse, g, gl, dq, b, e);
}
__attribute__((target("avx2,fma"))) void backward_avx2(const Problem& p, const float* out, const float* lse,
                                                       const float* g, const float* gl, float* dq, int64_t b,
                                                       int64_t e) {
  backward_range(p, out, lse, g, gl, dq, b, e);
}
#endif

enum class Isa { Avx512, Avx2, Portable };

Isa isa() {
#if defined(__x86_64__)
  static const Isa found = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                                   __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")
                               ? Isa::Avx512
                           : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? Isa::Avx2
                                                                                               : Isa::Portable;
  return found;
#else
  return Isa::Portable;
#endif
}

void forward_rows(const Problem& p, float* out, float* lse, int64_t b, int64_t e) {
  switch (isa()) {
#if defined(__x86_64__)
    case Isa::Avx512: return forward_avx512(p, out, lse, b, e);
    case Isa::Avx2: return forward_avx2(p, out, lse, b, e);
#endif
    default: return forward_range(p, out, lse, b, e);
  }
}

void backward_rows(const Problem& p, const float* out, const float* lse, const float* g, const float* gl,
                   float* dq, int64_t b, int64_t e) {
  switch (isa()) {
#if defined(__x86_64__)
    case Isa::Avx512: return backward_avx512(p, out, lse, g, gl, dq, b, e);
    case Isa::Avx2: return backward_avx2(p, out, lse, g, gl, dq, b, e);
#endif
    default: return backward_range(p, out, lse, g, gl, dq, b, e);
  }
}

// Whether the CPU loops take this problem (else the tiled ATen path does).
bool loops_take(const at::Tensor& q, const at::Tensor& keys, bool tiled) {
  return !tiled && q.device().is_cpu() && q.scalar_type() == at::kFloat && keys.scalar_type() == at::kFloat;
}

Problem problem(const at::Tensor& q, const at::Tensor& keys, const at::Tensor& values, const at::Tensor& rows,
                const at::Tensor& mask, double scale) {
  return Problem{q.data_ptr<float>(),   keys.data_ptr<float>(), values.data_ptr<float>(),
                 rows.data_ptr<int64_t>(), mask.data_ptr<bool>(), rows.size(1),
                 keys.size(1),          keys.size(2),           static_cast<float>(scale)};
}

// Rows per tile of the ATen path.
int64_t tile_rows(const at::Tensor& q, const at::Tensor& keys, int64_t kc) {
  const int64_t per_row = kc * keys.size(1) * keys.size(2) * 4;
  return std::max<int64_t>(1, std::min<int64_t>(q.size(0), kTileBytes / std::max<int64_t>(per_row, 1)));
}

struct Tile {
  at::Tensor keys, values, probs, lse;  // [n, K, d], [n, K, d], [n, K], [n], all f32
};

// One tile's gathered keys and values (f32) and its probabilities under `lse`.
Tile gather_tile(const at::Tensor& q, const at::Tensor& keys, const at::Tensor& values, const at::Tensor& rows,
                 const at::Tensor& mask, const at::Tensor& lse, double scale) {
  const int64_t n = q.size(0), kc = rows.size(1), c = keys.size(1), d = keys.size(2);
  auto flat = rows.reshape({-1});
  auto k = keys.index_select(0, flat).view({n, kc * c, d}).to(at::kFloat);
  auto v = values.index_select(0, flat).view({n, kc * c, d}).to(at::kFloat);
  auto s = at::bmm(k, q.to(at::kFloat).unsqueeze(-1)).squeeze(-1) * scale;  // [n, K]
  auto valid = mask.unsqueeze(-1).expand({n, kc, c}).reshape({n, kc * c});
  s.masked_fill_(valid.logical_not(), kNegInf);
  // A row with nothing valid has lse −inf, and its NaN differences are masked out.
  auto l = lse.defined() ? lse : at::logsumexp(s, {-1});
  auto probs = at::where(valid, (s - l.unsqueeze(-1)).exp(), at::zeros_like(s));
  return Tile{k, v, probs, l};
}

std::vector<at::Tensor> forward_tiled(const at::Tensor& q, const at::Tensor& keys, const at::Tensor& values,
                                      const at::Tensor& rows, const at::Tensor& mask, double scale) {
  const int64_t r = q.size(0), step = tile_rows(q, keys, rows.size(1));
  auto out = at::empty({r, keys.size(2)}, q.options().dtype(at::kFloat));
  auto lse = at::empty({r}, q.options().dtype(at::kFloat));
  for (int64_t start = 0; start < r; start += step) {
    const int64_t n = std::min(step, r - start);
    auto qt = q.narrow(0, start, n), rt = rows.narrow(0, start, n), mt = mask.narrow(0, start, n);
    Tile t = gather_tile(qt, keys, values, rt, mt, at::Tensor(), scale);
    out.narrow(0, start, n).copy_(at::bmm(t.probs.unsqueeze(1), t.values).squeeze(1));
    lse.narrow(0, start, n).copy_(t.lse);
  }
  return {out, lse};
}

at::Tensor backward_tiled(const at::Tensor& q, const at::Tensor& keys, const at::Tensor& values,
                          const at::Tensor& rows, const at::Tensor& mask, const at::Tensor& out,
                          const at::Tensor& lse, const at::Tensor& g, const at::Tensor& g_lse, double scale) {
  const int64_t r = q.size(0), step = tile_rows(q, keys, rows.size(1));
  auto dq = at::empty({r, q.size(1)}, q.options().dtype(at::kFloat));
  for (int64_t start = 0; start < r; start += step) {
    const int64_t n = std::min(step, r - start);
    auto qt = q.narrow(0, start, n), lt = lse.narrow(0, start, n);
    Tile t = gather_tile(qt, keys, values, rows.narrow(0, start, n), mask.narrow(0, start, n), lt, scale);
    auto gt = g.narrow(0, start, n);
    auto centre = (gt * out.narrow(0, start, n)).sum(-1, true);  // [n, 1]
    if (g_lse.defined()) centre = centre - g_lse.narrow(0, start, n).unsqueeze(-1);
    auto dp = at::bmm(t.values, gt.unsqueeze(-1)).squeeze(-1);  // [n, K]
    auto ds = t.probs * (dp - centre);
    dq.narrow(0, start, n).copy_(at::bmm(ds.unsqueeze(1), t.keys).squeeze(1) * scale);
  }
  return dq;
}

struct MemoryAttention : public torch::autograd::Function<MemoryAttention> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& keys,
                               const at::Tensor& values, const at::Tensor& rows, const at::Tensor& mask,
                               double scale, bool tiled) {
    auto qc = q.contiguous();
    auto rc = rows.contiguous();
    auto mc = mask.contiguous();
    std::vector<at::Tensor> result;
    if (loops_take(qc, keys, tiled)) {
      auto out = at::empty({qc.size(0), qc.size(1)}, qc.options());
      auto lse = at::empty({qc.size(0)}, qc.options());
      const Problem p = problem(qc, keys, values, rc, mc, scale);
      float* o = out.data_ptr<float>();
      float* l = lse.data_ptr<float>();
      at::parallel_for(0, qc.size(0), 16, [&](int64_t b, int64_t e) { forward_rows(p, o, l, b, e); });
      result = {out, lse};
    } else {
      result = forward_tiled(qc, keys, values, rc, mc, scale);
    }
    // The bank's stores are saved, not copied: its version counter makes a write between
    // this forward and its backward an error instead of a silently wrong gradient.
    ctx->save_for_backward({qc, keys, values, rc, mc, result[0], result[1]});
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["tiled"] = tiled;
    return result;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &q = saved[0], &keys = saved[1], &values = saved[2], &rows = saved[3], &mask = saved[4],
               &out = saved[5], &lse = saved[6];
    const double scale = ctx->saved_data["scale"].toDouble();
    const bool tiled = ctx->saved_data["tiled"].toBool();
    auto g = grads[0].defined() ? grads[0].to(at::kFloat).contiguous() : at::zeros_like(out);
    auto g_lse = grads[1].defined() ? grads[1].to(at::kFloat).contiguous() : at::Tensor();
    at::Tensor dq;
    if (loops_take(q, keys, tiled)) {
      dq = at::empty_like(q);
      const Problem p = problem(q, keys, values, rows, mask, scale);
      const float *o = out.data_ptr<float>(), *l = lse.data_ptr<float>(), *gp = g.data_ptr<float>();
      const float* gl = g_lse.defined() ? g_lse.data_ptr<float>() : nullptr;
      float* dqp = dq.data_ptr<float>();
      at::parallel_for(0, q.size(0), 16,
                       [&](int64_t b, int64_t e) { backward_rows(p, o, l, gp, gl, dqp, b, e); });
    } else {
      dq = backward_tiled(q, keys, values, rows, mask, out, lse, g, g_lse, scale).to(q.scalar_type());
    }
    return {dq, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

char* error_copy(const std::string& what) {
  char* e = static_cast<char*>(std::malloc(what.size() + 1));
  if (e) std::memcpy(e, what.c_str(), what.size() + 1);
  return e;
}

}  // namespace

extern "C" {

// Runs the fused memory attention; on success writes new tensors to *out and *lse and returns
// null, else returns a malloc'd message (free it with lm_free_error) and writes nothing.
char* lm_memory_attention(const at::Tensor* q, const at::Tensor* keys, const at::Tensor* values,
                          const at::Tensor* rows, const at::Tensor* mask, double scale, int tiled,
                          at::Tensor** out, at::Tensor** lse) {
  try {
    TORCH_CHECK(q->dim() == 2 && keys->dim() == 3 && values->sizes() == keys->sizes(),
                "memory attention: q must be [R, d] and keys, values [S, c, d]");
    TORCH_CHECK(keys->size(2) == q->size(1), "memory attention: head dims differ");
    TORCH_CHECK(keys->is_contiguous() && values->is_contiguous(), "memory attention: stores must be contiguous");
    TORCH_CHECK(rows->dim() == 2 && rows->size(0) == q->size(0) && rows->scalar_type() == at::kLong,
                "memory attention: rows must be [R, kc] int64");
    TORCH_CHECK(mask->sizes() == rows->sizes() && mask->scalar_type() == at::kBool,
                "memory attention: mask must be [R, kc] bool");
    TORCH_CHECK(keys->scalar_type() == values->scalar_type(), "memory attention: stores differ in dtype");
    auto result = MemoryAttention::apply(*q, *keys, *values, *rows, *mask, scale, tiled != 0);
    *out = new at::Tensor(result[0]);
    *lse = new at::Tensor(result[1]);
    return nullptr;
  } catch (const std::exception& e) {
    return error_copy(e.what());
  }
}

void lm_free_error(char* e) { std::free(e); }

}  // extern "C"
