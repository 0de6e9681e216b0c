// CUDA kernels for the StyleGAN2 ops (bias_act, upfirdn2d). Same semantics as ops_cpu.cpp; the
// Python side (../bias_act.py, ../upfirdn2d.py) owns autograd and argument checking.
#include <torch/extension.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "sg2_math.h"

namespace {

constexpr int kThreads = 256;

inline int num_blocks(int64_t n) {
  int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < 65535 * 8 ? blocks : 65535 * 8);  // grid-stride loops cover the rest
}

template <typename scalar_t>
__global__ void bias_act_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ b,
                                const scalar_t* __restrict__ g, scalar_t* __restrict__ y, int64_t n,
                                int64_t inner, int64_t channels, int act, int order,
                                at::opmath_type<scalar_t> alpha, at::opmath_type<scalar_t> gain,
                                at::opmath_type<scalar_t> clamp) {
  using acc_t = at::opmath_type<scalar_t>;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    acc_t z = static_cast<acc_t>(x[i]);
    if (b) z += static_cast<acc_t>(b[(i / inner) % channels]);
    acc_t gi = g ? static_cast<acc_t>(g[i]) : acc_t(0);
    y[i] = static_cast<scalar_t>(sg2::bias_act_elem<acc_t>(act, order, z, gi, alpha, gain, clamp));
  }
}

// One thread per output element; zero-inserted input samples are skipped (see ops_cpu.cpp).
template <typename scalar_t>
__global__ void upfirdn2d_kernel(const scalar_t* __restrict__ x, const at::opmath_type<scalar_t>* __restrict__ k,
                                 scalar_t* __restrict__ y, int64_t total, int64_t in_h, int64_t in_w,
                                 int64_t out_h, int64_t out_w, int64_t kh, int64_t kw, int64_t upx, int64_t upy,
                                 int64_t dx, int64_t dy, int64_t px0, int64_t py0) {
  using acc_t = at::opmath_type<scalar_t>;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t ox = i % out_w;
    const int64_t oy = (i / out_w) % out_h;
    const int64_t p = i / (out_w * out_h);
    const scalar_t* xp = x + p * in_h * in_w;
    const int64_t base_y = oy * dy - py0, base_x = ox * dx - px0;
    const int64_t tx0 = sg2::first_tap(base_x, upx);
    acc_t acc = 0;
    for (int64_t ty = sg2::first_tap(base_y, upy); ty < kh; ty += upy) {
      const int64_t iy = (base_y + ty) / upy;
      if (iy >= in_h) break;
      for (int64_t tx = tx0; tx < kw; tx += upx) {
        const int64_t ix = (base_x + tx) / upx;
        if (ix >= in_w) break;
        acc += static_cast<acc_t>(xp[iy * in_w + ix]) * k[ty * kw + tx];
      }
    }
    y[i] = static_cast<scalar_t>(acc);
  }
}

}  // namespace

torch::Tensor bias_act_cuda(torch::Tensor x, torch::Tensor b, torch::Tensor g, int64_t order, int64_t act,
                            double alpha, double gain, double clamp, int64_t dim) {
  TORCH_CHECK(x.is_cuda(), "bias_act_cuda: x must be a CUDA tensor");
  TORCH_CHECK(dim >= 0 && dim < x.dim(), "bias_act_cuda: dim out of range");
  TORCH_CHECK(order >= 0 && order <= 2, "bias_act_cuda: order must be 0, 1 or 2");
  const c10::cuda::CUDAGuard guard(x.device());
  x = x.contiguous();
  const bool has_b = b.numel() > 0, has_g = order > 0;
  if (has_b) {
    TORCH_CHECK(b.dim() == 1 && b.size(0) == x.size(dim), "bias_act_cuda: b must be [x.shape[dim]]");
    b = b.to(x.device(), x.scalar_type()).contiguous();
  }
  if (has_g) {
    TORCH_CHECK(g.sizes() == x.sizes(), "bias_act_cuda: g must have the shape of x");
    g = g.to(x.device(), x.scalar_type()).contiguous();
  }
  auto y = torch::empty_like(x);
  const int64_t n = x.numel();
  if (n == 0) return y;
  int64_t inner = 1;
  for (int64_t d = dim + 1; d < x.dim(); ++d) inner *= x.size(d);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "bias_act_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    bias_act_kernel<scalar_t><<<num_blocks(n), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        x.data_ptr<scalar_t>(), has_b ? b.data_ptr<scalar_t>() : nullptr, has_g ? g.data_ptr<scalar_t>() : nullptr,
        y.data_ptr<scalar_t>(), n, inner, x.size(dim), static_cast<int>(act), static_cast<int>(order),
        static_cast<acc_t>(alpha), static_cast<acc_t>(gain), static_cast<acc_t>(clamp));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return y;
}

torch::Tensor upfirdn2d_cuda(torch::Tensor x, torch::Tensor k, int64_t upx, int64_t upy, int64_t downx,
                             int64_t downy, int64_t px0, int64_t px1, int64_t py0, int64_t py1) {
  TORCH_CHECK(x.is_cuda(), "upfirdn2d_cuda: x must be a CUDA tensor");
  TORCH_CHECK(x.dim() == 4 && k.dim() == 2, "upfirdn2d_cuda: x must be [N, C, H, W] and k [kh, kw]");
  TORCH_CHECK(upx >= 1 && upy >= 1 && downx >= 1 && downy >= 1, "upfirdn2d_cuda: up/down must be >= 1");
  const c10::cuda::CUDAGuard guard(x.device());
  x = x.contiguous();
  const int64_t n = x.size(0), c = x.size(1), in_h = x.size(2), in_w = x.size(3);
  const int64_t kh = k.size(0), kw = k.size(1);
  TORCH_CHECK(in_h * upy + py0 + py1 >= kh && in_w * upx + px0 + px1 >= kw,
              "upfirdn2d_cuda: padded input is smaller than the filter");
  const int64_t out_h = (in_h * upy + py0 + py1 - kh) / downy + 1;
  const int64_t out_w = (in_w * upx + px0 + px1 - kw) / downx + 1;
  auto y = torch::empty({n, c, out_h, out_w}, x.options());
  const int64_t total = y.numel();
  if (total == 0) return y;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "upfirdn2d_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    auto kk = k.to(x.device(), c10::CppTypeToScalarType<acc_t>::value).contiguous();
    upfirdn2d_kernel<scalar_t><<<num_blocks(total), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        x.data_ptr<scalar_t>(), kk.data_ptr<acc_t>(), y.data_ptr<scalar_t>(), total, in_h, in_w, out_h, out_w,
        kh, kw, upx, upy, downx, downy, px0, py0);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return y;
}
