// Fused CPU kernels of the Kalman filter and RTS smoother, forward and backward.
//
// Eager torch spends ~30 small batched ops per filter step, each a few microseconds of dispatch for a
// few hundred flops. These kernels do one update, one prediction, the whole RTS pass, or the whole
// filter per call: for a transition that does not read the state, and for the EKVAE's mixture of base
// matrices weighted by an MLP of the filtered mean.
// The batch is processed W elements at a time in "lanes": every scalar of the small-matrix code is
// a vector of W batch elements, so the compiler turns each operation into SIMD instructions.
//
// The forward formulas are those of the eager code in kalman.py (Joseph forms). The backward
// passes differentiate the equivalent standard forms, whose derivatives agree: at the optimal gain
// the Joseph form's derivative in the gain vanishes (docs/engine.md has the derivations).
// Matrices are row-major; B is the batch, n = Dz, d = Da, k = Du.

#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

namespace {

constexpr int W = 8;  // batch elements per lane vector

template <typename T>
struct Lanes {
  T v[W];
  Lanes() = default;
  Lanes(T x) {  // NOLINT: a scalar broadcasts to every lane
    for (int l = 0; l < W; ++l) v[l] = x;
  }
};

#define LANEWISE(op)                                                                   \
  template <typename T>                                                                \
  inline Lanes<T> operator op(const Lanes<T>& a, const Lanes<T>& b) {                  \
    Lanes<T> r;                                                                        \
    for (int l = 0; l < W; ++l) r.v[l] = a.v[l] op b.v[l];                             \
    return r;                                                                          \
  }                                                                                    \
  template <typename T>                                                                \
  inline Lanes<T> operator op(const Lanes<T>& a, T b) { return a op Lanes<T>(b); }     \
  template <typename T>                                                                \
  inline Lanes<T> operator op(T a, const Lanes<T>& b) { return Lanes<T>(a) op b; }
LANEWISE(+)
LANEWISE(-)
LANEWISE(*)
LANEWISE(/)
#undef LANEWISE

template <typename T>
inline Lanes<T>& operator+=(Lanes<T>& a, const Lanes<T>& b) { return a = a + b; }
template <typename T>
inline Lanes<T>& operator-=(Lanes<T>& a, const Lanes<T>& b) { return a = a - b; }
template <typename T>
inline Lanes<T> operator-(const Lanes<T>& a) { return T(0) - a; }

template <typename T>
inline Lanes<T> sqrt_lanes(const Lanes<T>& a) {
  Lanes<T> r;
  for (int l = 0; l < W; ++l) r.v[l] = std::sqrt(a.v[l]);
  return r;
}
template <typename T>
inline Lanes<T> log_lanes(const Lanes<T>& a) {
  Lanes<T> r;
  for (int l = 0; l < W; ++l) r.v[l] = std::log(a.v[l]);
  return r;
}
template <typename T>
inline bool all_positive(const Lanes<T>& a) {
  bool ok = true;
  for (int l = 0; l < W; ++l) ok = ok && a.v[l] > T(0);  // false for NaN too
  return ok;
}

// out (r x c) = alpha op(A) op(B) (+ out if accumulate); op(A) is r x m (A stored m x r if TA), op(B)
// is m x c (B stored c x m if TB). A and B may be lanes or shared scalars (H, R).
template <bool TA, bool TB, typename SA, typename SB, typename S, typename T>
inline void gemm_kernel(const SA* A, const SB* B, S* out, int r, int m, int c, T alpha, bool accumulate) {
  for (int i = 0; i < r; ++i) {
    for (int j = 0; j < c; ++j) {
      S s(T(0));
      for (int l = 0; l < m; ++l) s += (TA ? A[l * r + i] : A[i * m + l]) * (TB ? B[j * m + l] : B[l * c + j]);
      out[i * c + j] = accumulate ? out[i * c + j] + alpha * s : alpha * s;
    }
  }
}

template <typename SA, typename SB, typename S, typename T>
inline void gemm(const SA* A, const SB* B, S* out, int r, int m, int c, bool ta, bool tb, T alpha,
                 bool accumulate) {
  if (ta) {
    if (tb) gemm_kernel<true, true>(A, B, out, r, m, c, alpha, accumulate);
    else gemm_kernel<true, false>(A, B, out, r, m, c, alpha, accumulate);
  } else {
    if (tb) gemm_kernel<false, true>(A, B, out, r, m, c, alpha, accumulate);
    else gemm_kernel<false, false>(A, B, out, r, m, c, alpha, accumulate);
  }
}

// Lower Cholesky factor L of the symmetric d x d matrix S (only its lower triangle is read).
template <typename T>
void cholesky(const Lanes<T>* S, Lanes<T>* L, int d) {
  for (int j = 0; j < d; ++j) {
    Lanes<T> diag = S[j * d + j];
    for (int l = 0; l < j; ++l) diag -= L[j * d + l] * L[j * d + l];
    if (!all_positive(diag)) {
      throw std::runtime_error("kalman kernels: a covariance is not positive definite (Cholesky failed)");
    }
    const Lanes<T> root = sqrt_lanes(diag);
    L[j * d + j] = root;
    for (int i = j + 1; i < d; ++i) {
      Lanes<T> s = S[i * d + j];
      for (int l = 0; l < j; ++l) s -= L[i * d + l] * L[j * d + l];
      L[i * d + j] = s / root;
    }
    for (int i = 0; i < j; ++i) L[i * d + j] = Lanes<T>(T(0));
  }
}

// X (d x c) = L^{-1} Y for the lower factor L; X may alias Y.
template <typename T>
void forward_solve(const Lanes<T>* L, const Lanes<T>* Y, Lanes<T>* X, int d, int c) {
  for (int col = 0; col < c; ++col)
    for (int i = 0; i < d; ++i) {
      Lanes<T> s = Y[i * c + col];
      for (int l = 0; l < i; ++l) s -= L[i * d + l] * X[l * c + col];
      X[i * c + col] = s / L[i * d + i];
    }
}

// X <- L^{-T} X in place (d x c).
template <typename T>
void back_solve(const Lanes<T>* L, Lanes<T>* X, int d, int c) {
  for (int col = 0; col < c; ++col)
    for (int i = d - 1; i >= 0; --i) {
      Lanes<T> s = X[i * c + col];
      for (int l = i + 1; l < d; ++l) s -= L[l * d + i] * X[l * c + col];
      X[i * c + col] = s / L[i * d + i];
    }
}

// X (d x c) = (L L^T)^{-1} Y for the lower factor L; X may alias Y.
template <typename T>
void cholesky_solve(const Lanes<T>* L, const Lanes<T>* Y, Lanes<T>* X, int d, int c) {
  forward_solve(L, Y, X, d, c);
  back_solve(L, X, d, c);
}

template <typename T>
void symmetrise(Lanes<T>* M, int n) {  // M <- (M + M^T) / 2
  for (int i = 0; i < n; ++i)
    for (int j = i + 1; j < n; ++j) {
      const Lanes<T> s = T(0.5) * (M[i * n + j] + M[j * n + i]);
      M[i * n + j] = s;
      M[j * n + i] = s;
    }
}

template <typename T>
void symmetric_part(const Lanes<T>* G, Lanes<T>* out, int n) {  // out = (G + G^T) / 2
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) out[i * n + j] = T(0.5) * (G[i * n + j] + G[j * n + i]);
}

template <typename T>
void transpose(const Lanes<T>* A, Lanes<T>* out, int n) {
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) out[i * n + j] = A[j * n + i];
}

// Batch elements b0 .. b0 + W - 1 of a (B, count) block into lanes (past B: the last one); element
// b starts at base + b * stride (stride 0: one row shared by the batch, as torch's expand gives).
template <typename T>
void gather(const T* base, int64_t count, int64_t b0, int64_t B, Lanes<T>* dst, int64_t stride) {
  for (int l = 0; l < W; ++l) {
    const T* src = base + std::min<int64_t>(b0 + l, B - 1) * stride;
    for (int64_t i = 0; i < count; ++i) dst[i].v[l] = src[i];
  }
}

// The inverse of gather: lanes into batch elements b0 .. (those below B), element b at base + b * stride.
template <typename T>
void scatter(const Lanes<T>* src, int64_t count, int64_t b0, int64_t B, T* base, int64_t stride) {
  for (int l = 0; l < W && b0 + l < B; ++l) {
    T* dst = base + (b0 + l) * stride;
    for (int64_t i = 0; i < count; ++i) dst[i] = src[i].v[l];
  }
}

constexpr double kLog2Pi = 1.8378770664093453;

// Runs body(b0, scratch) for every chunk of W batch elements, in parallel over chunks; scratch is one
// vector of lanes per thread-task, of `scratch_size` entries.
template <typename T, typename Body>
void for_chunks(int64_t B, int64_t scratch_size, const Body& body) {
  const int64_t chunks = (B + W - 1) / W;
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    std::vector<Lanes<T>> scratch(scratch_size);
    for (int64_t chunk = begin; chunk < end; ++chunk) body(chunk * W, scratch.data());
  });
}

// x itself if the entries of each batch element (leading = 1) or of each step of each batch element
// (leading = 2, a (B, T, ...) tensor read step by step) are contiguous, whatever the strides of the
// leading dims, else a contiguous copy: the kernels read those blocks through the leading strides, so
// views and expanded matrices cost nothing.
torch::Tensor rows(const torch::Tensor& x, int64_t leading = 1) {
  int64_t expected = 1;
  for (int64_t dim = x.dim() - 1; dim >= leading; --dim) {
    if (x.size(dim) != 1 && x.stride(dim) != expected) return x.contiguous();
    expected *= x.size(dim);
  }
  return x;
}

void check_cpu(std::initializer_list<const torch::Tensor*> tensors) {
  for (const auto* t : tensors) TORCH_CHECK(t->device().is_cpu(), "kalman kernels: inputs must be on the CPU");
}

}  // namespace

// Work space of update_lanes, in lanes.
inline int64_t update_work(int n, int d) { return 2 * d * n + d * d + d + 2 * n * n; }  // C S y A AP KR

// One update on lanes: condition N(m, P) on x = H z + N(0, R) (R already jittered). Writes the posterior
// mo (n), Po (n, n), the log-likelihood ll (1) and, for the backward, L (d, d), KT = S^{-1} H P (d, n),
// w = S^{-1} (x - H m) (d); work has update_work(n, d) lanes.
template <typename T>
void update_lanes(const Lanes<T>* m, const Lanes<T>* P, const Lanes<T>* x, const T* h, const T* r, int n, int d,
                  Lanes<T>* mo, Lanes<T>* Po, Lanes<T>* ll, Lanes<T>* L, Lanes<T>* KT, Lanes<T>* w,
                  Lanes<T>* work) {
  using V = Lanes<T>;
  V *C = work, *S = C + d * n, *y = S + d * d, *A = y + d, *AP = A + n * n, *KR = AP + n * n;
  gemm(h, P, C, d, n, n, false, false, T(1), false);       // C = H P
  gemm(C, h, S, d, n, d, false, true, T(1), false);        // S = C H^T
  for (int i = 0; i < d * d; ++i) S[i] += V(r[i]);         //   + R
  cholesky(S, L, d);
  cholesky_solve(L, C, KT, d, n);                          // K^T = S^{-1} C
  gemm(h, m, y, d, n, 1, false, false, T(-1), false);      // y = x - H m
  for (int i = 0; i < d; ++i) y[i] += x[i];
  forward_solve(L, y, w, d, 1);                            // L^{-1} y: the log-likelihood's half
  V log_det(T(0)), quad(T(0));
  for (int i = 0; i < d; ++i) {
    quad += w[i] * w[i];
    log_det += log_lanes(L[i * d + i]);
  }
  ll[0] = T(-0.5) * (quad + T(d * kLog2Pi)) - log_det;
  back_solve(L, w, d, 1);                                  // w = L^{-T} L^{-1} y = S^{-1} y
  for (int j = 0; j < n; ++j) mo[j] = m[j];                // m' = m + K y
  gemm(KT, y, mo, n, d, 1, true, false, T(1), true);
  // Joseph form: (I - K H) P (I - K H)^T + K R K^T, made exactly symmetric.
  gemm(KT, h, A, n, d, n, true, false, T(-1), false);      // A = -K H
  for (int i = 0; i < n; ++i) A[i * n + i] += V(T(1));     //   + I
  gemm(A, P, AP, n, n, n, false, false, T(1), false);
  gemm(AP, A, Po, n, n, n, false, true, T(1), false);      // A P A^T
  gemm(KT, r, KR, n, d, d, true, false, T(1), false);      // K R
  gemm(KR, KT, Po, n, d, n, false, false, T(1), true);
  symmetrise(Po, n);
}

// One prediction on lanes: mo = F m + Bu x, Po = F P F^T + Q made exactly symmetric; Po must hold Q on
// entry; work has n * n lanes.
template <typename T>
void predict_lanes(const Lanes<T>* m, const Lanes<T>* P, const Lanes<T>* Fm, const Lanes<T>* Bm, const Lanes<T>* x,
                   int n, int k, Lanes<T>* mo, Lanes<T>* Po, Lanes<T>* work) {
  gemm(Bm, x, mo, n, k, 1, false, false, T(1), false);
  gemm(Fm, m, mo, n, n, 1, false, false, T(1), true);
  gemm(Fm, P, work, n, n, n, false, false, T(1), false);
  gemm(work, Fm, Po, n, n, n, false, true, T(1), true);
  symmetrise(Po, n);
}

// One update: condition N(mean, cov) on a = H z + N(0, R). R must already be jittered.
// Returns mean' (B, n), cov' (B, n, n), log_lik (B,), and for the backward chol (B, d, d),
// gain_t = S^{-1} H P (B, d, n), white = S^{-1} (a - H m) (B, d).
std::vector<torch::Tensor> update_forward(torch::Tensor mean, torch::Tensor cov, torch::Tensor a,
                                          torch::Tensor H, torch::Tensor R) {
  check_cpu({&mean, &cov, &a, &H, &R});
  mean = rows(mean); cov = rows(cov); a = rows(a); H = H.contiguous(); R = R.contiguous();
  const int64_t B = mean.size(0);
  const int n = mean.size(1), d = a.size(1);
  auto new_mean = torch::empty_like(mean), new_cov = torch::empty_like(cov);
  auto log_lik = torch::empty({B}, mean.options()), chol = torch::empty({B, d, d}, mean.options());
  auto gain_t = torch::empty({B, d, n}, mean.options()), white = torch::empty({B, d}, mean.options());
  AT_DISPATCH_FLOATING_TYPES(mean.scalar_type(), "update_forward", [&] {
    using T = scalar_t;
    using V = Lanes<T>;
    const T *h = H.data_ptr<T>(), *r = R.data_ptr<T>();
    const T *m_in = mean.data_ptr<T>(), *P_in = cov.data_ptr<T>(), *a_in = a.data_ptr<T>();
    T *m_out = new_mean.data_ptr<T>(), *P_out = new_cov.data_ptr<T>(), *ll_out = log_lik.data_ptr<T>();
    T *L_out = chol.data_ptr<T>(), *KT_out = gain_t.data_ptr<T>(), *w_out = white.data_ptr<T>();
    const int64_t own = 2 * n + 2 * n * n + 2 * d + 1 + d * d + d * n;  // the pointers below
    for_chunks<T>(B, own + update_work(n, d), [&](int64_t b0, V* buf) {
      V *m = buf, *P = m + n, *x = P + n * n, *mo = x + d, *Po = mo + n, *ll = Po + n * n, *L = ll + 1;
      V *KT = L + d * d, *w = KT + d * n, *work = w + d;
      gather(m_in, n, b0, B, m, mean.stride(0));
      gather(P_in, n * n, b0, B, P, cov.stride(0));
      gather(a_in, d, b0, B, x, a.stride(0));
      update_lanes(m, P, x, h, r, n, d, mo, Po, ll, L, KT, w, work);
      scatter(mo, n, b0, B, m_out, n);
      scatter(Po, n * n, b0, B, P_out, n * n);
      scatter(ll, 1, b0, B, ll_out, 1);
      scatter(L, d * d, b0, B, L_out, d * d);
      scatter(KT, d * n, b0, B, KT_out, d * n);
      scatter(w, d, b0, B, w_out, d);
    });
  });
  return {new_mean, new_cov, log_lik, chol, gain_t, white};
}

// Backward of update_forward. Returns grads of mean, cov, a, H, R (H's and R's summed over the batch;
// H's only with want_H: the EKVAE's H is fixed, and its gradient is a third of this function's work).
std::vector<torch::Tensor> update_backward(torch::Tensor g_mean, torch::Tensor g_cov, torch::Tensor g_ll,
                                           torch::Tensor mean, torch::Tensor cov, torch::Tensor H,
                                           torch::Tensor chol, torch::Tensor gain_t, torch::Tensor white,
                                           bool want_H) {
  g_mean = rows(g_mean); g_cov = rows(g_cov); g_ll = g_ll.contiguous();
  mean = rows(mean); cov = rows(cov); H = H.contiguous();
  chol = rows(chol); gain_t = rows(gain_t); white = rows(white);
  const int64_t B = mean.size(0);
  const int n = mean.size(1), d = H.size(0);
  auto gm = torch::empty_like(mean), gP = torch::empty_like(cov), ga = torch::empty({B, d}, mean.options());
  // Per batch element, summed at the end.
  auto gH = want_H ? torch::empty({B, d, n}, mean.options()) : torch::Tensor();
  auto gR = torch::empty({B, d, d}, mean.options());
  AT_DISPATCH_FLOATING_TYPES(mean.scalar_type(), "update_backward", [&] {
    using T = scalar_t;
    using V = Lanes<T>;
    const T* h = H.data_ptr<T>();
    const T *gm_in = g_mean.data_ptr<T>(), *gP_in = g_cov.data_ptr<T>(), *gl_in = g_ll.data_ptr<T>();
    const T *m_in = mean.data_ptr<T>(), *P_in = cov.data_ptr<T>(), *L_in = chol.data_ptr<T>();
    const T *KT_in = gain_t.data_ptr<T>(), *w_in = white.data_ptr<T>();
    T *gm_out = gm.data_ptr<T>(), *gP_out = gP.data_ptr<T>(), *ga_out = ga.data_ptr<T>();
    T *gH_out = want_H ? gH.data_ptr<T>() : nullptr, *gR_out = gR.data_ptr<T>();
    const int64_t total = 2 * n + 1 + 3 * n * n + 3 * d * d + 2 * d + 6 * d * n + d;
    for_chunks<T>(B, total, [&](int64_t b0, V* buf) {
      V *gmo = buf, *m = gmo + n, *gl = m + n, *gPo = gl + 1, *P = gPo + n * n, *Gs = P + n * n;
      V *L = Gs + n * n, *Sinv = L + d * d, *gS = Sinv + d * d, *v = gS + d * d, *gy = v + d;
      V *KT = gy + d, *KG = KT + d * n, *gC = KG + d * n, *C = gC + d * n, *tmp = C + d * n, *gHb = tmp + d * n;
      V* w = gHb + d * n;
      gather(gm_in, n, b0, B, gmo, g_mean.stride(0));
      gather(m_in, n, b0, B, m, mean.stride(0));
      gather(gl_in, 1, b0, B, gl, 1);
      gather(gP_in, n * n, b0, B, gPo, g_cov.stride(0));
      gather(P_in, n * n, b0, B, P, cov.stride(0));
      gather(L_in, d * d, b0, B, L, chol.stride(0));
      gather(KT_in, d * n, b0, B, KT, gain_t.stride(0));
      gather(w_in, d, b0, B, w, white.stride(0));
      symmetric_part(gPo, Gs, n);
      // P' = P - C^T S^{-1} C and m' = m + C^T w, with C = H P, S = H P H^T + R, w = S^{-1}(a - H m).
      gemm(KT, Gs, KG, d, n, n, false, false, T(1), false);     // K^T Gs
      for (int i = 0; i < d; ++i)                               // g_C = -2 K^T Gs + w g_m'^T
        for (int j = 0; j < n; ++j) gC[i * n + j] = T(-2) * KG[i * n + j] + w[i] * gmo[j];
      gemm(KT, gmo, v, d, n, 1, false, false, T(1), false);     // v = K^T g_m'
      for (int i = 0; i < d; ++i) gy[i] = v[i] - gl[0] * w[i];
      gemm(KG, KT, gS, d, n, d, false, true, T(1), false);      // g_S = K^T Gs K
      for (int i = 0; i < d * d; ++i) Sinv[i] = V(T(0));
      for (int i = 0; i < d; ++i) Sinv[i * d + i] = V(T(1));
      cholesky_solve(L, Sinv, Sinv, d, d);
      for (int i = 0; i < d; ++i)                               //   - v w^T + g_ll (w w^T - S^{-1}) / 2
        for (int j = 0; j < d; ++j)
          gS[i * d + j] += T(0.5) * gl[0] * (w[i] * w[j] - Sinv[i * d + j]) - v[i] * w[j];
      symmetrise(gS, d);
      gemm(h, gy, gmo, n, d, 1, true, false, T(-1), true);       // g_m = g_m' - H^T g_y
      for (int i = 0; i < n * n; ++i) gPo[i] = Gs[i];           // g_P = Gs + H^T g_C + H^T g_S H
      gemm(h, gC, gPo, n, d, n, true, false, T(1), true);
      gemm(gS, h, tmp, d, d, n, false, false, T(1), false);
      gemm(h, tmp, gPo, n, d, n, true, false, T(1), true);
      symmetrise(gPo, n);  // the gradient among symmetric matrices, as torch's Cholesky backward gives
      if (want_H) {                                             // g_H = g_C P + 2 g_S C - g_y m^T
        gemm(h, P, C, d, n, n, false, false, T(1), false);
        gemm(gC, P, gHb, d, n, n, false, false, T(1), false);
        gemm(gS, C, gHb, d, d, n, false, false, T(2), true);
        gemm(gy, m, gHb, d, 1, n, false, false, T(-1), true);
        scatter(gHb, d * n, b0, B, gH_out, d * n);
      }
      scatter(gmo, n, b0, B, gm_out, n);
      scatter(gPo, n * n, b0, B, gP_out, n * n);
      scatter(gy, d, b0, B, ga_out, d);
      scatter(gS, d * d, b0, B, gR_out, d * d);                        // g_R = g_S
    });
  });
  return {gm, gP, ga, want_H ? gH.sum(0) : gH, gR.sum(0)};
}

// One prediction: mean' = F m + Bu u, cov' = F P F^T + Q (predict_lanes).
std::vector<torch::Tensor> predict_forward(torch::Tensor mean, torch::Tensor cov, torch::Tensor F,
                                           torch::Tensor Bu, torch::Tensor u, torch::Tensor Q) {
  check_cpu({&mean, &cov, &F, &Bu, &u, &Q});
  mean = rows(mean); cov = rows(cov); F = rows(F); Bu = rows(Bu); u = rows(u); Q = rows(Q);
  const int64_t B = mean.size(0);
  const int n = mean.size(1), k = u.size(1);
  auto new_mean = torch::empty_like(mean), new_cov = torch::empty_like(cov);
  AT_DISPATCH_FLOATING_TYPES(mean.scalar_type(), "predict_forward", [&] {
    using T = scalar_t;
    using V = Lanes<T>;
    const T *m_in = mean.data_ptr<T>(), *P_in = cov.data_ptr<T>(), *F_in = F.data_ptr<T>();
    const T *B_in = Bu.data_ptr<T>(), *u_in = u.data_ptr<T>(), *Q_in = Q.data_ptr<T>();
    T *m_out = new_mean.data_ptr<T>(), *P_out = new_cov.data_ptr<T>();
    for_chunks<T>(B, 2 * n + 4 * n * n + n * k + k, [&](int64_t b0, V* buf) {
      V *m = buf, *P = m + n, *Fm = P + n * n, *Bm = Fm + n * n, *x = Bm + n * k, *FP = x + k, *mo = FP + n * n;
      V* Po = mo + n;
      gather(m_in, n, b0, B, m, mean.stride(0));
      gather(P_in, n * n, b0, B, P, cov.stride(0));
      gather(F_in, n * n, b0, B, Fm, F.stride(0));
      gather(B_in, n * k, b0, B, Bm, Bu.stride(0));
      gather(u_in, k, b0, B, x, u.stride(0));
      gather(Q_in, n * n, b0, B, Po, Q.stride(0));
      predict_lanes(m, P, Fm, Bm, x, n, k, mo, Po, FP);
      scatter(mo, n, b0, B, m_out, n);
      scatter(Po, n * n, b0, B, P_out, n * n);
    });
  });
  return {new_mean, new_cov};
}

// Backward of predict_forward: grads of mean, cov, F, Bu, u, Q.
std::vector<torch::Tensor> predict_backward(torch::Tensor g_mean, torch::Tensor g_cov, torch::Tensor mean,
                                            torch::Tensor cov, torch::Tensor F, torch::Tensor Bu, torch::Tensor u) {
  g_mean = rows(g_mean); g_cov = rows(g_cov); mean = rows(mean); cov = rows(cov);
  F = rows(F); Bu = rows(Bu); u = rows(u);
  const int64_t B = mean.size(0);
  const int n = mean.size(1), k = u.size(1);
  auto gm = torch::empty_like(mean), gP = torch::empty_like(cov), gF = torch::empty_like(cov);
  auto gB = torch::empty({B, n, k}, mean.options()), gu = torch::empty({B, k}, mean.options());
  auto gQ = torch::empty_like(cov);
  AT_DISPATCH_FLOATING_TYPES(mean.scalar_type(), "predict_backward", [&] {
    using T = scalar_t;
    using V = Lanes<T>;
    const T *gm_in = g_mean.data_ptr<T>(), *gP_in = g_cov.data_ptr<T>(), *m_in = mean.data_ptr<T>();
    const T *P_in = cov.data_ptr<T>(), *F_in = F.data_ptr<T>(), *B_in = Bu.data_ptr<T>(), *u_in = u.data_ptr<T>();
    T *gm_out = gm.data_ptr<T>(), *gP_out = gP.data_ptr<T>(), *gF_out = gF.data_ptr<T>();
    T *gB_out = gB.data_ptr<T>(), *gu_out = gu.data_ptr<T>(), *gQ_out = gQ.data_ptr<T>();
    for_chunks<T>(B, 3 * n + 7 * n * n + 2 * n * k + 2 * k, [&](int64_t b0, V* buf) {
      V *gmo = buf, *m = gmo + n, *gPo = m + n, *P = gPo + n * n, *Fm = P + n * n, *Bm = Fm + n * n;
      V *x = Bm + n * k, *Gs = x + k, *GF = Gs + n * n, *gFb = GF + n * n, *gPb = gFb + n * n, *gmb = gPb + n * n;
      V *gBb = gmb + n, *gub = gBb + n * k;
      gather(gm_in, n, b0, B, gmo, g_mean.stride(0));
      gather(m_in, n, b0, B, m, mean.stride(0));
      gather(gP_in, n * n, b0, B, gPo, g_cov.stride(0));
      gather(P_in, n * n, b0, B, P, cov.stride(0));
      gather(F_in, n * n, b0, B, Fm, F.stride(0));
      gather(B_in, n * k, b0, B, Bm, Bu.stride(0));
      gather(u_in, k, b0, B, x, u.stride(0));
      symmetric_part(gPo, Gs, n);                                  // g_Q = Gs
      gemm(Fm, gmo, gmb, n, n, 1, true, false, T(1), false);      // g_m = F^T g_m'
      gemm(gmo, m, gFb, n, 1, n, false, false, T(1), false);      // g_F = g_m' m^T
      gemm(Gs, Fm, GF, n, n, n, false, false, T(1), false);
      gemm(GF, P, gFb, n, n, n, false, false, T(2), true);        //   + 2 Gs F P
      gemm(Fm, GF, gPb, n, n, n, true, false, T(1), false);       // g_P = F^T Gs F
      gemm(gmo, x, gBb, n, 1, k, false, false, T(1), false);      // g_Bu = g_m' u^T
      gemm(Bm, gmo, gub, k, n, 1, true, false, T(1), false);      // g_u = Bu^T g_m'
      scatter(gmb, n, b0, B, gm_out, n);
      scatter(gPb, n * n, b0, B, gP_out, n * n);
      scatter(gFb, n * n, b0, B, gF_out, n * n);
      scatter(gBb, n * k, b0, B, gB_out, n * k);
      scatter(gub, k, b0, B, gu_out, k);
      scatter(Gs, n * n, b0, B, gQ_out, n * n);
    });
  });
  return {gm, gP, gF, gB, gu, gQ};
}

// The RTS pass over all steps. mean (B, T, n), cov (B, T, n, n): filtered; pred_mean (B, T-1, n),
// pred_cov, F, Q (B, T-1, n, n): the predictions z_{t+1 | t} and their transition. Returns the smoothed
// mean and covariance (exactly symmetric) and, for the backward, the gains G (B, T-1, n, n) and the
// Cholesky factors of pred_cov.
std::vector<torch::Tensor> rts_forward(torch::Tensor mean, torch::Tensor cov, torch::Tensor pred_mean,
                                       torch::Tensor pred_cov, torch::Tensor F, torch::Tensor Q) {
  check_cpu({&mean, &cov, &pred_mean, &pred_cov, &F, &Q});
  mean = mean.contiguous(); cov = cov.contiguous(); pred_mean = pred_mean.contiguous();
  pred_cov = pred_cov.contiguous(); F = F.contiguous(); Q = Q.contiguous();
  const int64_t B = mean.size(0), steps = mean.size(1);
  const int n = mean.size(2), nn = n * n;
  auto sm = torch::empty_like(mean), sc = torch::empty_like(cov);
  auto gains = torch::empty({B, steps - 1, n, n}, mean.options()), pchol = torch::empty_like(gains);
  AT_DISPATCH_FLOATING_TYPES(mean.scalar_type(), "rts_forward", [&] {
    using T = scalar_t;
    using V = Lanes<T>;
    const T *m_in = mean.data_ptr<T>(), *P_in = cov.data_ptr<T>(), *mp_in = pred_mean.data_ptr<T>();
    const T *Pp_in = pred_cov.data_ptr<T>(), *F_in = F.data_ptr<T>(), *Q_in = Q.data_ptr<T>();
    T *ms_out = sm.data_ptr<T>(), *Ps_out = sc.data_ptr<T>(), *G_out = gains.data_ptr<T>();
    T* L_out = pchol.data_ptr<T>();
    // Strides of one batch element in each (B, T, ...) / (B, T-1, ...) array: step t of element b starts
    // at base + b * stride + t * count.
    const int64_t sm_stride = steps * n, sP_stride = steps * nn, pm_stride = (steps - 1) * n;
    const int64_t pP_stride = (steps - 1) * nn;
    for_chunks<T>(B, 4 * n + 12 * nn, [&](int64_t b0, V* buf) {
      V *m = buf, *mp = m + n, *ms = mp + n, *ms_next = ms + n, *P = ms_next + n, *Pp = P + nn, *Fm = Pp + nn;
      V *Qm = Fm + nn, *L = Qm + nn, *FP = L + nn, *GT = FP + nn, *G = GT + nn, *A = G + nn, *AP = A + nn;
      V *Ps = AP + nn, *Ps_next = Ps + nn;
      const int64_t last = steps - 1;
      gather(m_in + last * n, n, b0, B, ms_next, sm_stride);
      gather(P_in + last * nn, nn, b0, B, Ps_next, sP_stride);
      symmetrise(Ps_next, n);
      scatter(ms_next, n, b0, B, ms_out + last * n, sm_stride);
      scatter(Ps_next, nn, b0, B, Ps_out + last * nn, sP_stride);
      for (int64_t t = steps - 2; t >= 0; --t) {
        gather(m_in + t * n, n, b0, B, m, sm_stride);
        gather(P_in + t * nn, nn, b0, B, P, sP_stride);
        gather(mp_in + t * n, n, b0, B, mp, pm_stride);
        gather(Pp_in + t * nn, nn, b0, B, Pp, pP_stride);
        gather(F_in + t * nn, nn, b0, B, Fm, pP_stride);
        gather(Q_in + t * nn, nn, b0, B, Qm, pP_stride);
        cholesky(Pp, L, n);
        gemm(Fm, P, FP, n, n, n, false, false, T(1), false);
        cholesky_solve(L, FP, GT, n, n);                        // G^T = Pp^{-1} F P
        transpose(GT, G, n);
        // m_s = m + G (m_s' - m_p); P_s = G (P_s' + Q) G^T + (I - G F) P (I - G F)^T.
        for (int i = 0; i < n; ++i) mp[i] = ms_next[i] - mp[i];
        for (int i = 0; i < n; ++i) ms[i] = m[i];
        gemm(G, mp, ms, n, n, 1, false, false, T(1), true);
        gemm(G, Fm, A, n, n, n, false, false, T(-1), false);
        for (int i = 0; i < n; ++i) A[i * n + i] += V(T(1));
        gemm(A, P, AP, n, n, n, false, false, T(1), false);
        gemm(AP, A, Ps, n, n, n, false, true, T(1), false);
        for (int i = 0; i < nn; ++i) Qm[i] += Ps_next[i];
        gemm(G, Qm, AP, n, n, n, false, false, T(1), false);
        gemm(AP, G, Ps, n, n, n, false, true, T(1), true);
        symmetrise(Ps, n);
        scatter(ms, n, b0, B, ms_out + t * n, sm_stride);
        scatter(Ps, nn, b0, B, Ps_out + t * nn, sP_stride);
        scatter(G, nn, b0, B, G_out + t * nn, pP_stride);
        scatter(L, nn, b0, B, L_out + t * nn, pP_stride);
        std::swap(ms, ms_next);
        std::swap(Ps, Ps_next);
      }
    });
  });
  return {sm, sc, gains, pchol};
}

// Backward of rts_forward: grads of mean, cov, pred_mean, pred_cov, F (Q's is zero: see the top).
std::vector<torch::Tensor> rts_backward(torch::Tensor g_sm, torch::Tensor g_sc, torch::Tensor cov,
                                        torch::Tensor pred_mean, torch::Tensor pred_cov, torch::Tensor F,
                                        torch::Tensor sm, torch::Tensor sc, torch::Tensor gains,
                                        torch::Tensor pchol) {
  g_sm = g_sm.contiguous(); g_sc = g_sc.contiguous(); cov = cov.contiguous(); pred_mean = pred_mean.contiguous();
  pred_cov = pred_cov.contiguous(); F = F.contiguous();
  const int64_t B = sm.size(0), steps = sm.size(1);
  const int n = sm.size(2), nn = n * n;
  auto gm = torch::empty_like(sm), gP = torch::empty_like(sc);
  auto gmp = torch::empty_like(pred_mean), gPp = torch::empty_like(pred_cov), gF = torch::empty_like(F);
  AT_DISPATCH_FLOATING_TYPES(sm.scalar_type(), "rts_backward", [&] {
    using T = scalar_t;
    using V = Lanes<T>;
    const T *gsm_in = g_sm.data_ptr<T>(), *gsc_in = g_sc.data_ptr<T>(), *P_in = cov.data_ptr<T>();
    const T *mp_in = pred_mean.data_ptr<T>(), *Pp_in = pred_cov.data_ptr<T>(), *F_in = F.data_ptr<T>();
    const T *ms_in = sm.data_ptr<T>(), *Ps_in = sc.data_ptr<T>(), *G_in = gains.data_ptr<T>();
    const T* L_in = pchol.data_ptr<T>();
    T *gm_out = gm.data_ptr<T>(), *gP_out = gP.data_ptr<T>(), *gmp_out = gmp.data_ptr<T>();
    T *gPp_out = gPp.data_ptr<T>(), *gF_out = gF.data_ptr<T>();
    const int64_t sm_stride = steps * n, sP_stride = steps * nn, pm_stride = (steps - 1) * n;
    const int64_t pP_stride = (steps - 1) * nn;
    for_chunks<T>(B, 6 * n + 14 * nn, [&](int64_t b0, V* buf) {
      V *cm = buf, *am = cm + n, *dm = am + n, *gmpb = dm + n, *ms_next = gmpb + n, *mp = ms_next + n;
      V *cP = mp + n, *aP = cP + nn, *D = aP + nn, *gG = D + nn, *aPG = gG + nn, *gX = aPG + nn, *tmp = gX + nn;
      V *G = tmp + nn, *Fm = G + nn, *P = Fm + nn, *L = P + nn, *Ps_next = L + nn, *gPpb = Ps_next + nn;
      V* gFb = gPpb + nn;
      for (int i = 0; i < n; ++i) cm[i] = V(T(0));
      for (int i = 0; i < nn; ++i) cP[i] = V(T(0));
      // Standard form: m_s,t = m_t + G_t (m_s,t+1 - m_p,t), P_s,t = P_t + G_t (P_s,t+1 - P_p,t) G_t^T,
      // G_t = P_t F_t^T P_p,t^{-1}; the adjoints run forward in time, carrying into step t+1.
      for (int64_t t = 0; t < steps; ++t) {
        gather(gsm_in + t * n, n, b0, B, am, sm_stride);
        gather(gsc_in + t * nn, nn, b0, B, tmp, sP_stride);
        for (int i = 0; i < n; ++i) am[i] += cm[i];
        symmetric_part(tmp, aP, n);
        for (int i = 0; i < nn; ++i) aP[i] += cP[i];
        if (t == steps - 1) {
          scatter(am, n, b0, B, gm_out + t * n, sm_stride);
          scatter(aP, nn, b0, B, gP_out + t * nn, sP_stride);
          break;
        }
        gather(ms_in + (t + 1) * n, n, b0, B, ms_next, sm_stride);
        gather(mp_in + t * n, n, b0, B, mp, pm_stride);
        gather(Ps_in + (t + 1) * nn, nn, b0, B, Ps_next, sP_stride);
        gather(Pp_in + t * nn, nn, b0, B, D, pP_stride);
        gather(G_in + t * nn, nn, b0, B, G, pP_stride);
        gather(F_in + t * nn, nn, b0, B, Fm, pP_stride);
        gather(P_in + t * nn, nn, b0, B, P, sP_stride);
        gather(L_in + t * nn, nn, b0, B, L, pP_stride);
        for (int i = 0; i < n; ++i) dm[i] = ms_next[i] - mp[i];
        for (int i = 0; i < nn; ++i) D[i] = Ps_next[i] - D[i];
        gemm(am, dm, gG, n, 1, n, false, false, T(1), false);     // g_G = a_m dm^T + 2 a_P G D
        gemm(aP, G, aPG, n, n, n, false, false, T(1), false);
        gemm(aPG, D, gG, n, n, n, false, false, T(2), true);
        gemm(G, am, cm, n, n, 1, true, false, T(1), false);       // carry G^T a_m; g_m_p = -G^T a_m
        for (int i = 0; i < n; ++i) gmpb[i] = -cm[i];
        gemm(G, aPG, cP, n, n, n, true, false, T(1), false);      // carry G^T a_P G; g_P_p = -G^T a_P G
        transpose(gG, tmp, n);                                    // g_X = g_G Pp^{-1} = (Pp^{-1} g_G^T)^T
        cholesky_solve(L, tmp, tmp, n, n);
        transpose(tmp, gX, n);
        for (int i = 0; i < nn; ++i) gPpb[i] = -cP[i];
        gemm(G, gX, gPpb, n, n, n, true, false, T(-1), true);     //   - G^T g_X
        symmetrise(gPpb, n);
        gemm(gX, Fm, aP, n, n, n, false, false, T(1), true);      // g_P = a_P + g_X F
        gemm(gX, P, gFb, n, n, n, true, false, T(1), false);      // g_F = g_X^T P
        scatter(am, n, b0, B, gm_out + t * n, sm_stride);
        scatter(aP, nn, b0, B, gP_out + t * nn, sP_stride);
        scatter(gmpb, n, b0, B, gmp_out + t * n, pm_stride);
        scatter(gPpb, nn, b0, B, gPp_out + t * nn, pP_stride);
        scatter(gFb, nn, b0, B, gF_out + t * nn, pP_stride);
      }
    });
  });
  return {gm, gP, gmp, gPp, gF};
}

// Step t's update on lanes (posterior mo, Po; L, KT, w for the backward) into the (B, T, ...) outputs of
// a whole-filter call.
template <typename T>
void scatter_update(const Lanes<T>* mo, const Lanes<T>* Po, const Lanes<T>* L, const Lanes<T>* KT,
                    const Lanes<T>* w, int n, int d, int64_t t, int64_t steps, int64_t b0, int64_t B, T* m_out,
                    T* P_out, T* L_out, T* KT_out, T* w_out) {
  scatter(mo, n, b0, B, m_out + t * n, steps * n);
  scatter(Po, n * n, b0, B, P_out + t * n * n, steps * n * n);
  scatter(L, d * d, b0, B, L_out + t * d * d, steps * d * d);
  scatter(KT, d * n, b0, B, KT_out + t * d * n, steps * d * n);
  scatter(w, d, b0, B, w_out + t * d, steps * d);
}

// The whole filter in one call, for a transition that does not read the state (a linear system, the
// KVAE): its matrices are known for every step before filtering starts, so no Python runs between the
// steps. a (B, T, d), T >= 2; F, Q (B, T-1, n, n), Bu (B, T-1, n, k), u (B, T-1, k): step t's
// prediction z_{t+1} = F_t z_t + Bu_t u_t; mean0 (B, n), cov0 (B, n, n): the prior of z_1. Returns the
// filtered mean (B, T, n) and cov (B, T, n, n), the log-likelihood summed over steps (B,), the
// predictions pred_mean (B, T-1, n) and pred_cov (B, T-1, n, n) and, for the backward, every update's
// chol (B, T, d, d), gain_t (B, T, d, n) and white (B, T, d).
std::vector<torch::Tensor> filter_forward(torch::Tensor a, torch::Tensor F, torch::Tensor Bu, torch::Tensor u,
                                          torch::Tensor Q, torch::Tensor H, torch::Tensor R, torch::Tensor mean0,
                                          torch::Tensor cov0) {
  check_cpu({&a, &F, &Bu, &u, &Q, &H, &R, &mean0, &cov0});
  const int64_t B = a.size(0), steps = a.size(1);
  TORCH_CHECK(steps >= 2, "filter_forward: needs T >= 2 steps");
  for (const auto* x : {&F, &Bu, &u, &Q})
    TORCH_CHECK(x->size(0) == B && x->size(1) == steps - 1, "filter_forward: F, Bu, u, Q must be (B, T-1, ...)");
  TORCH_CHECK(mean0.size(0) == B && cov0.size(0) == B, "filter_forward: mean0, cov0 must be (B, ...)");
  a = rows(a, 2); F = rows(F, 2); Bu = rows(Bu, 2); u = rows(u, 2); Q = rows(Q, 2);
  mean0 = rows(mean0); cov0 = rows(cov0); H = H.contiguous(); R = R.contiguous();
  const int n = mean0.size(1), d = a.size(2), k = u.size(2), nn = n * n;
  auto opts = a.options();
  auto mean = torch::empty({B, steps, n}, opts), cov = torch::empty({B, steps, n, n}, opts);
  auto log_lik = torch::empty({B}, opts), pred_mean = torch::empty({B, steps - 1, n}, opts);
  auto pred_cov = torch::empty({B, steps - 1, n, n}, opts), chol = torch::empty({B, steps, d, d}, opts);
  auto gain_t = torch::empty({B, steps, d, n}, opts), white = torch::empty({B, steps, d}, opts);
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "filter_forward", [&] {
    using T = scalar_t;
    using V = Lanes<T>;
    const T *h = H.data_ptr<T>(), *r = R.data_ptr<T>(), *a_in = a.data_ptr<T>(), *F_in = F.data_ptr<T>();
    const T *B_in = Bu.data_ptr<T>(), *u_in = u.data_ptr<T>(), *Q_in = Q.data_ptr<T>();
    const T *m0_in = mean0.data_ptr<T>(), *P0_in = cov0.data_ptr<T>();
    T *m_out = mean.data_ptr<T>(), *P_out = cov.data_ptr<T>(), *ll_out = log_lik.data_ptr<T>();
    T *mp_out = pred_mean.data_ptr<T>(), *Pp_out = pred_cov.data_ptr<T>(), *L_out = chol.data_ptr<T>();
    T *KT_out = gain_t.data_ptr<T>(), *w_out = white.data_ptr<T>();
    const int64_t own = 2 * n + 3 * nn + 2 * d + n * k + k + 2 + d * d + d * n;  // the pointers below
    for_chunks<T>(B, own + std::max<int64_t>(update_work(n, d), nn), [&](int64_t b0, V* buf) {
      V *m = buf, *P = m + n, *mo = P + nn, *Po = mo + n, *x = Po + nn, *Fm = x + d, *Bm = Fm + nn;
      V *xu = Bm + n * k, *ll = xu + k, *total = ll + 1, *L = total + 1, *KT = L + d * d, *w = KT + d * n;
      V* work = w + d;
      gather(m0_in, n, b0, B, m, mean0.stride(0));
      gather(P0_in, nn, b0, B, P, cov0.stride(0));
      total[0] = V(T(0));
      for (int64_t t = 0; t < steps; ++t) {
        gather(a_in + t * a.stride(1), d, b0, B, x, a.stride(0));
        update_lanes(m, P, x, h, r, n, d, mo, Po, ll, L, KT, w, work);
        total[0] += ll[0];
        scatter_update(mo, Po, L, KT, w, n, d, t, steps, b0, B, m_out, P_out, L_out, KT_out, w_out);
        if (t + 1 == steps) break;
        gather(F_in + t * F.stride(1), nn, b0, B, Fm, F.stride(0));
        gather(B_in + t * Bu.stride(1), n * k, b0, B, Bm, Bu.stride(0));
        gather(u_in + t * u.stride(1), k, b0, B, xu, u.stride(0));
        gather(Q_in + t * Q.stride(1), nn, b0, B, P, Q.stride(0));   // the prediction's cov starts as Q
        predict_lanes(mo, Po, Fm, Bm, xu, n, k, m, P, work);
        scatter(m, n, b0, B, mp_out + t * n, (steps - 1) * n);
        scatter(P, nn, b0, B, Pp_out + t * nn, (steps - 1) * nn);
      }
      scatter(total, 1, b0, B, ll_out, 1);
    });
  });
  return {mean, cov, log_lik, pred_mean, pred_cov, chol, gain_t, white};
}

// What a filter's backward carries from step to step: the grads of H (only if wanted), R, the prior of z_1,
// and those reaching the filtered belief at t through the prediction from t.
struct FilterAdjoint {
  torch::Tensor gH, gR, g_mean0, g_cov0, gm_later, gP_later;
};

// One step back through a filter's forward: the update at t, from the prediction from t-1 (or, at t = 0,
// the prior), then that prediction, with the action u_prev at t-1. Stores g_a[t], accumulates gH and gR;
// returns predict_backward's grads (mean, cov, F, Bu, u, Q at t-1), or nothing at t = 0, where it sets the
// prior's grads. The filter's outputs are indexed as in filter_forward.
std::vector<torch::Tensor> filter_step_backward(
    int64_t t, const torch::Tensor& g_mean, const torch::Tensor& g_cov, const torch::Tensor& g_ll,
    const torch::Tensor& g_pred_mean, const torch::Tensor& g_pred_cov, const torch::Tensor& mean0,
    const torch::Tensor& cov0, const torch::Tensor& mean, const torch::Tensor& cov, const torch::Tensor& pred_mean,
    const torch::Tensor& pred_cov, const torch::Tensor& H, const torch::Tensor& chol, const torch::Tensor& gain_t,
    const torch::Tensor& white, const torch::Tensor& F, const torch::Tensor& Bu, const torch::Tensor& u_prev,
    bool want_H, std::vector<torch::Tensor>& ga, FilterAdjoint& adj) {
  auto gm = g_mean.select(1, t), gP = g_cov.select(1, t);
  if (t + 1 < mean.size(1)) { gm = gm + adj.gm_later; gP = gP + adj.gP_later; }
  const bool first = t == 0;
  auto up = update_backward(gm, gP, g_ll, first ? mean0 : pred_mean.select(1, t - 1),
                            first ? cov0 : pred_cov.select(1, t - 1), H, chol.select(1, t),
                            gain_t.select(1, t), white.select(1, t), want_H);
  ga[t] = up[2];
  if (want_H) adj.gH = adj.gH.defined() ? adj.gH + up[3] : up[3];
  adj.gR = adj.gR.defined() ? adj.gR + up[4] : up[4];
  if (first) {
    adj.g_mean0 = up[0]; adj.g_cov0 = up[1];
    return {};
  }
  return predict_backward(up[0] + g_pred_mean.select(1, t - 1), up[1] + g_pred_cov.select(1, t - 1),
                          mean.select(1, t - 1), cov.select(1, t - 1), F.select(1, t - 1), Bu.select(1, t - 1),
                          u_prev);
}

// Backward of filter_forward: from the grads of its five outputs (g_ll (B,) reaches every step's
// log-likelihood) to the grads of a, F, Bu, u, Q, H (only with want_H), R, mean0, cov0; step by step
// backwards in time, through the same per-step backward kernels as the filter in Python.
std::vector<torch::Tensor> filter_backward(torch::Tensor g_mean, torch::Tensor g_cov, torch::Tensor g_ll,
                                           torch::Tensor g_pred_mean, torch::Tensor g_pred_cov, torch::Tensor F,
                                           torch::Tensor Bu, torch::Tensor u, torch::Tensor H, torch::Tensor mean0,
                                           torch::Tensor cov0, torch::Tensor mean, torch::Tensor cov,
                                           torch::Tensor pred_mean, torch::Tensor pred_cov, torch::Tensor chol,
                                           torch::Tensor gain_t, torch::Tensor white, bool want_H) {
  const int64_t steps = mean.size(1);
  std::vector<torch::Tensor> ga(steps), gF(steps - 1), gB(steps - 1), gu(steps - 1), gQ(steps - 1);
  FilterAdjoint adj;
  for (int64_t t = steps - 1; t >= 0; --t) {
    auto pred = filter_step_backward(t, g_mean, g_cov, g_ll, g_pred_mean, g_pred_cov, mean0, cov0, mean, cov,
                                     pred_mean, pred_cov, H, chol, gain_t, white, F, Bu,
                                     t > 0 ? u.select(1, t - 1) : u, want_H, ga, adj);
    if (t == 0) break;
    adj.gm_later = pred[0]; adj.gP_later = pred[1];
    gF[t - 1] = pred[2]; gB[t - 1] = pred[3]; gu[t - 1] = pred[4]; gQ[t - 1] = pred[5];
  }
  return {torch::stack(ga, 1), torch::stack(gF, 1), torch::stack(gB, 1), torch::stack(gu, 1),
          torch::stack(gQ, 1), adj.gH, adj.gR, adj.g_mean0, adj.g_cov0};
}

// ---- The whole filter of a neurally linearised transition (the EKVAE's), in one call.
// z_{t+1} = F_t z_t + Bu_t u_t + N(0, Q_t) with (F_t, Bu_t, diag Q_t) = alpha_t (F_bases, B_bases, Q_bases)
// and alpha_t = softmax(mlp([m_t, v_t])), the mixer an MLP of Linear layers with ReLU between, evaluated at
// the filtered mean m_t. The Kalman algebra runs on lanes as in filter_forward, the mixer as batched
// products; the backward steps back through the per-step backward kernels (filter_step_backward), the
// mixer's part as batched ATen products; no Python (and no autograd records) between steps.

// a (B, T, d), T >= 2; v (B, T-1, dv): what the mixer reads beside z, its first k columns the actions that
// Bu multiplies; H, R (already jittered); mean0 (B, n), cov0 (B, n, n); F_bases (M, n, n), B_bases (M, n, k),
// Q_bases (M, n) (variances); the mixer's weights (out, in) and biases (out). Returns the filtered mean
// (B, T, n) and cov, the log-likelihood (B,), pred_mean (B, T-1, n), pred_cov, the transition's F and Q
// (B, T-1, n, n) (the RTS pass reads them) and, for the backward, chol, gain_t, white (per update), Bu
// (B, T-1, n, k), alpha (B, T-1, M) and each hidden layer's output (B, T-1, width).
// Per step: the update on lanes; the mixer as batched BLAS products over the whole batch (B x 64 x 64 is
// a product BLAS does well and lanes do not); the mixture and the prediction on lanes.
std::vector<torch::Tensor> mixture_filter_forward(torch::Tensor a, torch::Tensor v, torch::Tensor H, torch::Tensor R,
                                                  torch::Tensor mean0, torch::Tensor cov0, torch::Tensor F_bases,
                                                  torch::Tensor B_bases, torch::Tensor Q_bases,
                                                  std::vector<torch::Tensor> weights,
                                                  std::vector<torch::Tensor> biases) {
  check_cpu({&a, &v, &H, &R, &mean0, &cov0, &F_bases, &B_bases, &Q_bases});
  const int64_t B = a.size(0), steps = a.size(1), M = F_bases.size(0);
  const int n = mean0.size(1), d = a.size(2), k = B_bases.size(2), dv = v.size(2), nn = n * n;
  const size_t depth = weights.size();
  TORCH_CHECK(steps >= 2, "mixture_filter_forward: needs T >= 2 steps");
  TORCH_CHECK(v.size(0) == B && v.size(1) == steps - 1 && dv >= k,
              "mixture_filter_forward: v must be (B, T-1, dv) with dv >= Du");
  TORCH_CHECK(depth > 0 && biases.size() == depth, "mixture_filter_forward: one bias per weight");
  TORCH_CHECK(F_bases.dim() == 3 && F_bases.size(1) == n && F_bases.size(2) == n,
              "mixture_filter_forward: F_bases must be (M, Dz, Dz)");
  TORCH_CHECK(B_bases.dim() == 3 && B_bases.size(0) == M && B_bases.size(1) == n,
              "mixture_filter_forward: B_bases must be (M, Dz, Du)");
  TORCH_CHECK(Q_bases.dim() == 2 && Q_bases.size(0) == M && Q_bases.size(1) == n,
              "mixture_filter_forward: Q_bases must be (M, Dz)");
  TORCH_CHECK(H.dim() == 2 && H.size(0) == d && H.size(1) == n && R.size(0) == d && R.size(1) == d &&
                  cov0.size(0) == B && cov0.size(1) == n && cov0.size(2) == n && mean0.size(0) == B,
              "mixture_filter_forward: H (Da, Dz), R (Da, Da), mean0 (B, Dz), cov0 (B, Dz, Dz) do not fit a");
  for (const auto* x : {&v, &H, &R, &mean0, &cov0, &F_bases, &B_bases, &Q_bases})
    TORCH_CHECK(x->scalar_type() == a.scalar_type(), "mixture_filter_forward: every input must have a's dtype");
  for (size_t l = 0; l < depth; ++l)
    TORCH_CHECK(weights[l].dim() == 2 && biases[l].dim() == 1 && weights[l].scalar_type() == a.scalar_type() &&
                    biases[l].scalar_type() == a.scalar_type(),
                "mixture_filter_forward: the mixer's weights must be (out, in) and its biases (out), in a's dtype");
  int64_t width = n + dv;
  for (size_t l = 0; l < depth; ++l) {
    TORCH_CHECK(weights[l].size(1) == width && biases[l].size(0) == weights[l].size(0),
                "mixture_filter_forward: the mixer's layers do not fit together");
    width = weights[l].size(0);
  }
  TORCH_CHECK(width == M, "mixture_filter_forward: the mixer must give one logit per base matrix");
  a = rows(a, 2); v = v.contiguous(); mean0 = rows(mean0); cov0 = rows(cov0); H = H.contiguous(); R = R.contiguous();
  const auto F_flat = F_bases.contiguous(), B_flat = B_bases.contiguous(), Q_flat = Q_bases.contiguous();
  auto opts = a.options();
  auto mean = torch::empty({B, steps, n}, opts), cov = torch::empty({B, steps, n, n}, opts);
  auto log_lik = torch::zeros({B}, opts), pred_mean = torch::empty({B, steps - 1, n}, opts);
  auto pred_cov = torch::empty({B, steps - 1, n, n}, opts), F = torch::empty_like(pred_cov);
  auto Q = torch::empty_like(pred_cov), Bu = torch::empty({B, steps - 1, n, k}, opts);
  auto chol = torch::empty({B, steps, d, d}, opts), gain_t = torch::empty({B, steps, d, n}, opts);
  auto white = torch::empty({B, steps, d}, opts);
  // The mixer's tensors are time-major, so that each step's (B, width) block is contiguous for BLAS.
  auto alpha = torch::empty({steps - 1, B, M}, opts);
  std::vector<torch::Tensor> hidden;
  for (size_t l = 0; l + 1 < depth; ++l) hidden.push_back(torch::empty({steps - 1, B, weights[l].size(0)}, opts));
  auto logits = torch::empty({B, M}, opts);
  // The first layer's part that reads v, for all steps at once: (T-1, B, width_1).
  const auto first_v = torch::addmm(biases[0], v.transpose(0, 1).reshape({(steps - 1) * B, dv}),
                                    weights[0].narrow(1, n, dv).t())
                           .view({steps - 1, B, -1});
  const auto first_z = weights[0].narrow(1, 0, n).t();
  std::vector<torch::Tensor> weights_t;
  for (const auto& w : weights) weights_t.push_back(w.t());
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "mixture_filter_forward", [&] {
    using T = scalar_t;
    using V = Lanes<T>;
    const T *h = H.data_ptr<T>(), *r = R.data_ptr<T>(), *a_in = a.data_ptr<T>(), *v_in = v.data_ptr<T>();
    const T *m0_in = mean0.data_ptr<T>(), *P0_in = cov0.data_ptr<T>();
    const T *Fb = F_flat.data_ptr<T>(), *Bb = B_flat.data_ptr<T>(), *Qb = Q_flat.data_ptr<T>();
    T *m_out = mean.data_ptr<T>(), *P_out = cov.data_ptr<T>(), *ll_out = log_lik.data_ptr<T>();
    T *mp_out = pred_mean.data_ptr<T>(), *Pp_out = pred_cov.data_ptr<T>(), *L_out = chol.data_ptr<T>();
    T *KT_out = gain_t.data_ptr<T>(), *w_out = white.data_ptr<T>(), *F_out = F.data_ptr<T>();
    T *Q_out = Q.data_ptr<T>(), *B_out = Bu.data_ptr<T>(), *alpha_in = alpha.data_ptr<T>();
    for (int64_t t = 0; t < steps; ++t) {
      // Update with a_t, from the prior of z_1 or the prediction from t-1.
      const T* m_prior = t == 0 ? m0_in : mp_out + (t - 1) * n;
      const T* P_prior = t == 0 ? P0_in : Pp_out + (t - 1) * nn;
      const int64_t m_stride = t == 0 ? mean0.stride(0) : (steps - 1) * n;
      const int64_t P_stride = t == 0 ? cov0.stride(0) : (steps - 1) * nn;
      for_chunks<T>(B, 2 * n + 2 * nn + 2 * d + 1 + d * d + d * n + update_work(n, d), [&](int64_t b0, V* buf) {
        V *m = buf, *P = m + n, *x = P + nn, *mo = x + d, *Po = mo + n, *ll = Po + nn, *L = ll + 1, *KT = L + d * d;
        V *w = KT + d * n, *work = w + d;
        gather(m_prior, n, b0, B, m, m_stride);
        gather(P_prior, nn, b0, B, P, P_stride);
        gather(a_in + t * a.stride(1), d, b0, B, x, a.stride(0));
        update_lanes(m, P, x, h, r, n, d, mo, Po, ll, L, KT, w, work);
        gather(ll_out, 1, b0, B, x, 1);  // the log-likelihood so far
        ll[0] += x[0];
        scatter(ll, 1, b0, B, ll_out, 1);
        scatter_update(mo, Po, L, KT, w, n, d, t, steps, b0, B, m_out, P_out, L_out, KT_out, w_out);
      });
      if (t + 1 == steps) break;
      // The mixer at the filtered mean: alpha_t = softmax(mlp([m_t, v_t])).
      torch::Tensor input = mean.select(1, t);
      for (size_t l = 0; l < depth; ++l) {
        torch::Tensor out = l + 1 < depth ? hidden[l].select(0, t) : logits;
        if (l == 0) torch::addmm_out(out, first_v.select(0, t), input, first_z);
        else torch::addmm_out(out, biases[l], input, weights_t[l]);
        if (l + 1 < depth) out.relu_();
        input = out;
      }
      auto alpha_t = alpha.select(0, t);
      torch::softmax_out(alpha_t, logits, 1);
      // The mixture and the prediction.
      for_chunks<T>(B, 3 * n + 4 * nn + n * k + k + M, [&](int64_t b0, V* buf) {
        V *m = buf, *P = m + n, *Fm = P + nn, *Bm = Fm + nn, *xu = Bm + n * k, *al = xu + k, *q = al + M;
        V *mo = q + n, *Po = mo + n, *work = Po + nn;
        gather(m_out + t * n, n, b0, B, m, steps * n);
        gather(P_out + t * nn, nn, b0, B, P, steps * nn);
        gather(v_in + t * dv, k, b0, B, xu, (steps - 1) * dv);
        gather(alpha_in + t * B * M, M, b0, B, al, M);
        gemm(al, Fb, Fm, 1, M, nn, false, false, T(1), false);
        gemm(al, Bb, Bm, 1, M, n * k, false, false, T(1), false);
        gemm(al, Qb, q, 1, M, n, false, false, T(1), false);
        for (int i = 0; i < nn; ++i) Po[i] = V(T(0));  // the prediction's cov starts as Q = diag(q)
        for (int i = 0; i < n; ++i) Po[i * n + i] = q[i];
        scatter(Po, nn, b0, B, Q_out + t * nn, (steps - 1) * nn);
        predict_lanes(m, P, Fm, Bm, xu, n, k, mo, Po, work);
        scatter(Fm, nn, b0, B, F_out + t * nn, (steps - 1) * nn);
        scatter(Bm, n * k, b0, B, B_out + t * n * k, (steps - 1) * n * k);
        scatter(mo, n, b0, B, mp_out + t * n, (steps - 1) * n);
        scatter(Po, nn, b0, B, Pp_out + t * nn, (steps - 1) * nn);
      });
    }
  });
  std::vector<torch::Tensor> out = {mean, cov, log_lik, pred_mean, pred_cov, F, Q, chol, gain_t, white, Bu,
                                    alpha.transpose(0, 1)};
  for (const auto& layer : hidden) out.push_back(layer.transpose(0, 1));
  return out;
}

// Backward of mixture_filter_forward: from the grads of its seven outputs (g_F, g_Q: what the RTS pass
// sends back) to the grads of a, v, H (only with want_H), R, mean0, cov0, F_bases, B_bases, Q_bases, then
// every weight and every bias. Backwards in time through the per-step backward kernels; the gradient that
// reaches the mixing weights runs back through the softmax and the mixer into the filtered mean (the
// linearisation point). The parameters' grads are summed over all steps in one product each at the end.
std::vector<torch::Tensor> mixture_filter_backward(
    torch::Tensor g_mean, torch::Tensor g_cov, torch::Tensor g_ll, torch::Tensor g_pred_mean,
    torch::Tensor g_pred_cov, torch::Tensor g_F, torch::Tensor g_Q, torch::Tensor v, torch::Tensor H,
    torch::Tensor mean0, torch::Tensor cov0, torch::Tensor mean, torch::Tensor cov, torch::Tensor pred_mean,
    torch::Tensor pred_cov, torch::Tensor chol, torch::Tensor gain_t, torch::Tensor white, torch::Tensor F,
    torch::Tensor Bu, torch::Tensor alpha, std::vector<torch::Tensor> hidden, torch::Tensor F_bases,
    torch::Tensor B_bases, torch::Tensor Q_bases, std::vector<torch::Tensor> weights, bool want_H) {
  const int64_t B = mean.size(0), steps = mean.size(1), M = F_bases.size(0);
  const int64_t n = mean.size(2), k = B_bases.size(2), dv = v.size(2);
  const size_t depth = weights.size();
  const auto F_flat = F_bases.reshape({M, n * n}), B_flat = B_bases.reshape({M, n * k});
  std::vector<torch::Tensor> ga(steps), gv(steps - 1), gF(steps - 1), gB(steps - 1), gq(steps - 1);
  std::vector<std::vector<torch::Tensor>> g_pre(depth, std::vector<torch::Tensor>(steps - 1));
  FilterAdjoint adj;
  for (int64_t t = steps - 1; t >= 0; --t) {
    const int64_t s = t - 1;  // the prediction from step s to t
    const auto vs = v.select(1, std::max<int64_t>(s, 0));
    auto pred = filter_step_backward(t, g_mean, g_cov, g_ll, g_pred_mean, g_pred_cov, mean0, cov0, mean, cov,
                                     pred_mean, pred_cov, H, chol, gain_t, white, F, Bu, vs.narrow(1, 0, k),
                                     want_H, ga, adj);
    if (t == 0) break;
    gF[s] = pred[2] + g_F.select(1, s);
    gB[s] = pred[3];
    gq[s] = (pred[5] + g_Q.select(1, s)).diagonal(0, 1, 2);
    const auto alpha_s = alpha.select(1, s);
    auto g_alpha = torch::mm(gF[s].reshape({B, n * n}), F_flat.t());
    g_alpha.addmm_(gB[s].reshape({B, n * k}), B_flat.t()).addmm_(gq[s], Q_bases.t());
    auto g_h = alpha_s * (g_alpha - (alpha_s * g_alpha).sum(1, true));  // through the softmax
    for (size_t l = depth; l-- > 0;) {
      g_pre[l][s] = g_h;
      g_h = torch::mm(g_h, weights[l]);
      if (l > 0) g_h = torch::threshold_backward(g_h, hidden[l - 1].select(1, s), 0);  // ReLU's, in one op
    }
    adj.gm_later = pred[0] + g_h.narrow(1, 0, n);
    adj.gP_later = pred[1];
    gv[s] = g_h.narrow(1, n, dv).clone();
    gv[s].narrow(1, 0, k).add_(pred[4]);
  }
  const auto alpha_all = alpha.reshape({-1, M}).t();
  std::vector<torch::Tensor> out = {
      torch::stack(ga, 1), torch::stack(gv, 1), adj.gH, adj.gR, adj.g_mean0, adj.g_cov0,
      torch::mm(alpha_all, torch::stack(gF, 1).reshape({-1, n * n})).view_as(F_bases),
      torch::mm(alpha_all, torch::stack(gB, 1).reshape({B * (steps - 1), n * k})).view_as(B_bases),
      torch::mm(alpha_all, torch::stack(gq, 1).reshape({-1, n}))};
  std::vector<torch::Tensor> g_biases;
  for (size_t l = 0; l < depth; ++l) {
    const auto g_out = torch::stack(g_pre[l], 1).reshape({-1, weights[l].size(0)});
    const auto input = l == 0 ? torch::cat({mean.narrow(1, 0, steps - 1), v}, 2).reshape({-1, n + dv})
                              : hidden[l - 1].reshape({-1, weights[l].size(1)});
    out.push_back(torch::mm(g_out.t(), input));
    g_biases.push_back(g_out.sum(0));
  }
  out.insert(out.end(), g_biases.begin(), g_biases.end());
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("update_forward", &update_forward);
  m.def("update_backward", &update_backward);
  m.def("predict_forward", &predict_forward);
  m.def("predict_backward", &predict_backward);
  m.def("rts_forward", &rts_forward);
  m.def("rts_backward", &rts_backward);
  m.def("filter_forward", &filter_forward);
  m.def("filter_backward", &filter_backward);
  m.def("mixture_filter_forward", &mixture_filter_forward);
  m.def("mixture_filter_backward", &mixture_filter_backward);
}
