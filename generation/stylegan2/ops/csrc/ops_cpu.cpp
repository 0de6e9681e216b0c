// CPU kernels for the StyleGAN2 ops (bias_act, upfirdn2d), loaded by ../_build.py with
// torch.utils.cpp_extension.load. Autograd lives in Python: the backward passes call these same
// kernels, so gradients of any order (bias_act: two) come from one implementation.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <ATen/OpMathType.h>

#include <algorithm>
#include <vector>

#include "sg2_math.h"

namespace {

// floor(a / b) and ceil(a / b) for b > 0 and any sign of a.
inline int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
inline int64_t ceil_div(int64_t a, int64_t b) { return -floor_div(-a, b); }

// Rows of `inner` contiguous elements share one bias value; the activation is a template
// argument so the per-element switch folds away and the inner loop can vectorise.
template <int ACT, typename scalar_t>
void bias_act_rows(const scalar_t* xp, const scalar_t* bp, const scalar_t* gp, scalar_t* yp, int64_t rows,
                   int64_t inner, int64_t channels, int order, at::opmath_type<scalar_t> alpha,
                   at::opmath_type<scalar_t> gain, at::opmath_type<scalar_t> clamp) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, inner));
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const acc_t bias = bp ? static_cast<acc_t>(bp[r % channels]) : acc_t(0);
      const scalar_t* xr = xp + r * inner;
      scalar_t* yr = yp + r * inner;
      if (order == 0) {
        for (int64_t i = 0; i < inner; ++i)
          yr[i] = static_cast<scalar_t>(
              sg2::bias_act_elem<acc_t>(ACT, 0, static_cast<acc_t>(xr[i]) + bias, acc_t(0), alpha, gain, clamp));
      } else {
        const scalar_t* gr = gp + r * inner;
        for (int64_t i = 0; i < inner; ++i)
          yr[i] = static_cast<scalar_t>(sg2::bias_act_elem<acc_t>(ACT, order, static_cast<acc_t>(xr[i]) + bias,
                                                                  static_cast<acc_t>(gr[i]), alpha, gain, clamp));
      }
    }
  });
}

template <typename scalar_t>
void bias_act_by_act(int act, const scalar_t* xp, const scalar_t* bp, const scalar_t* gp, scalar_t* yp, int64_t rows,
                     int64_t inner, int64_t channels, int order, at::opmath_type<scalar_t> alpha,
                     at::opmath_type<scalar_t> gain, at::opmath_type<scalar_t> clamp) {
#define SG2_CASE(ID) \
  case ID: return bias_act_rows<ID, scalar_t>(xp, bp, gp, yp, rows, inner, channels, order, alpha, gain, clamp);
  switch (act) {
    SG2_CASE(sg2::LINEAR) SG2_CASE(sg2::RELU) SG2_CASE(sg2::LRELU) SG2_CASE(sg2::TANH) SG2_CASE(sg2::SIGMOID)
    SG2_CASE(sg2::ELU) SG2_CASE(sg2::SELU) SG2_CASE(sg2::SOFTPLUS) SG2_CASE(sg2::SWISH)
  }
#undef SG2_CASE
}

torch::Tensor bias_act_cpu(torch::Tensor x, torch::Tensor b, torch::Tensor g, int64_t order, int64_t act,
                           double alpha, double gain, double clamp, int64_t dim) {
  TORCH_CHECK(x.device().is_cpu(), "bias_act_cpu: x must be a CPU tensor");
  TORCH_CHECK(dim >= 0 && dim < x.dim(), "bias_act_cpu: dim out of range");
  TORCH_CHECK(order >= 0 && order <= 2, "bias_act_cpu: order must be 0, 1 or 2");
  TORCH_CHECK(act >= sg2::LINEAR && act <= sg2::SWISH, "bias_act_cpu: unknown activation id");
  x = x.contiguous();
  const bool has_b = b.numel() > 0;
  const bool has_g = order > 0;
  if (has_b) {
    TORCH_CHECK(b.dim() == 1 && b.size(0) == x.size(dim), "bias_act_cpu: b must be [x.shape[dim]]");
    b = b.to(x.scalar_type()).contiguous();
  }
  if (has_g) {
    TORCH_CHECK(g.sizes() == x.sizes(), "bias_act_cpu: g must have the shape of x");
    g = g.to(x.scalar_type()).contiguous();
  }
  auto y = torch::empty_like(x);
  if (x.numel() == 0) return y;
  int64_t inner = 1;
  for (int64_t d = dim + 1; d < x.dim(); ++d) inner *= x.size(d);
  const int64_t channels = x.size(dim);
  const int64_t rows = x.numel() / inner;

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "bias_act_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* bp = has_b ? b.data_ptr<scalar_t>() : nullptr;
    const scalar_t* gp = has_g ? g.data_ptr<scalar_t>() : nullptr;
    scalar_t* yp = y.data_ptr<scalar_t>();
    const acc_t a = static_cast<acc_t>(alpha), gn = static_cast<acc_t>(gain), cl = static_cast<acc_t>(clamp);
    const int ord = static_cast<int>(order);
    bias_act_by_act<scalar_t>(static_cast<int>(act), xp, bp, gp, yp, rows, inner, channels, ord, a, gn, cl);
  });
  return y;
}

// y[p, oy, ox] = sum_{ty, tx} P[p, oy*dy + ty, ox*dx + tx] * k[ty, tx], where P is x upsampled by
// zero insertion (up) and padded (px0, px1, py0, py1; negative = crop). k is used as given
// (correlation): the caller flips it and applies the gain. Zero-inserted samples are skipped.
template <typename scalar_t>
void upfirdn2d_rows(const scalar_t* x, const at::opmath_type<scalar_t>* k, scalar_t* y, int64_t planes,
                    int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w, int64_t kh, int64_t kw,
                    int64_t upx, int64_t upy, int64_t dx, int64_t dy, int64_t px0, int64_t py0) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, out_w * kh * kw / (upx * upy)));
  at::parallel_for(0, planes * out_h, grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> row(out_w);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t p = r / out_h, oy = r % out_h;
      std::fill(row.begin(), row.end(), acc_t(0));
      const int64_t base_y = oy * dy - py0;
      for (int64_t ty = sg2::first_tap(base_y, upy); ty < kh; ty += upy) {
        const int64_t iy = (base_y + ty) / upy;
        if (iy >= in_h) break;
        const scalar_t* xr = x + (p * in_h + iy) * in_w;
        const acc_t* kr = k + ty * kw;
        for (int64_t tx = 0; tx < kw; ++tx) {
          const acc_t kv = kr[tx];
          const int64_t off = tx - px0;  // upsampled column = ox*dx + off
          if (upx == 1) {
            const int64_t lo = std::max<int64_t>(0, ceil_div(-off, dx));
            const int64_t hi = std::min<int64_t>(out_w - 1, floor_div(in_w - 1 - off, dx));
            if (dx == 1) {
              for (int64_t ox = lo; ox <= hi; ++ox) row[ox] += kv * static_cast<acc_t>(xr[ox + off]);
            } else {
              for (int64_t ox = lo; ox <= hi; ++ox) row[ox] += kv * static_cast<acc_t>(xr[ox * dx + off]);
            }
          } else if (dx == 1) {
            int64_t ox = sg2::first_tap(off, upx);
            for (int64_t ix = (ox + off) / upx; ox < out_w && ix < in_w; ox += upx, ++ix)
              row[ox] += kv * static_cast<acc_t>(xr[ix]);
          } else {
            for (int64_t ox = 0; ox < out_w; ++ox) {
              const int64_t v = ox * dx + off;
              if (v >= 0 && v % upx == 0 && v / upx < in_w) row[ox] += kv * static_cast<acc_t>(xr[v / upx]);
            }
          }
        }
      }
      scalar_t* yr = y + r * out_w;
      for (int64_t ox = 0; ox < out_w; ++ox) yr[ox] = static_cast<scalar_t>(row[ox]);
    }
  });
}

torch::Tensor upfirdn2d_cpu(torch::Tensor x, torch::Tensor k, int64_t upx, int64_t upy, int64_t downx,
                            int64_t downy, int64_t px0, int64_t px1, int64_t py0, int64_t py1) {
  TORCH_CHECK(x.device().is_cpu() && k.device().is_cpu(), "upfirdn2d_cpu: tensors must be on the CPU");
  TORCH_CHECK(x.dim() == 4, "upfirdn2d_cpu: x must be [N, C, H, W]");
  TORCH_CHECK(k.dim() == 2, "upfirdn2d_cpu: k must be [kh, kw]");
  TORCH_CHECK(upx >= 1 && upy >= 1 && downx >= 1 && downy >= 1, "upfirdn2d_cpu: up/down must be >= 1");
  x = x.contiguous();
  const int64_t n = x.size(0), c = x.size(1), in_h = x.size(2), in_w = x.size(3);
  const int64_t kh = k.size(0), kw = k.size(1);
  const int64_t out_h = (in_h * upy + py0 + py1 - kh) / downy + 1;
  const int64_t out_w = (in_w * upx + px0 + px1 - kw) / downx + 1;
  TORCH_CHECK(in_h * upy + py0 + py1 >= kh && in_w * upx + px0 + px1 >= kw,
              "upfirdn2d_cpu: padded input is smaller than the filter");
  auto y = torch::empty({n, c, out_h, out_w}, x.options());
  if (y.numel() == 0) return y;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "upfirdn2d_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    auto kk = k.to(c10::CppTypeToScalarType<acc_t>::value).contiguous();
    upfirdn2d_rows<scalar_t>(x.data_ptr<scalar_t>(), kk.data_ptr<acc_t>(), y.data_ptr<scalar_t>(), n * c, in_h,
                             in_w, out_h, out_w, kh, kw, upx, upy, downx, downy, px0, py0);
  });
  return y;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("bias_act", &bias_act_cpu, "fused bias + activation + gain + clamp, or its 1st/2nd derivative (CPU)");
  m.def("upfirdn2d", &upfirdn2d_cpu, "upsample, FIR filter, downsample (CPU)");
}
