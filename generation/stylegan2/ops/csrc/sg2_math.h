// Element math shared by the CPU (ops_cpu.cpp) and CUDA (ops_cuda.cu) kernels of the StyleGAN2 ops.
// Written for hdvila; the semantics follow the plain-PyTorch reference paths in ../bias_act.py and
// ../upfirdn2d.py, which the tests compare against.
#pragma once

#include <cmath>
#include <cstdint>

// Forced inlining matters: the activation id is a compile-time constant in the CPU kernels, and
// only once act_eval is inlined does its switch fold away so the element loops vectorise.
#ifdef __CUDACC__
#define SG2_HD __host__ __device__ __forceinline__
#else
#define SG2_HD inline __attribute__((always_inline))
#endif

namespace sg2 {

// Activation ids; keep in sync with ACTIVATIONS in ../bias_act.py.
enum Act : int { LINEAR = 0, RELU = 1, LRELU = 2, TANH = 3, SIGMOID = 4, ELU = 5, SELU = 6, SOFTPLUS = 7, SWISH = 8 };

SG2_HD float fexp(float v) { return expf(v); }
SG2_HD double fexp(double v) { return exp(v); }
SG2_HD float fexpm1(float v) { return expm1f(v); }
SG2_HD double fexpm1(double v) { return expm1(v); }
SG2_HD float flog1p(float v) { return log1pf(v); }
SG2_HD double flog1p(double v) { return log1p(v); }
SG2_HD float ftanh(float v) { return tanhf(v); }
SG2_HD double ftanh(double v) { return tanh(v); }
SG2_HD float fabs_(float v) { return fabsf(v); }
SG2_HD double fabs_(double v) { return fabs(v); }

template <typename T>
SG2_HD T sigmoid(T z) { return T(1) / (T(1) + fexp(-z)); }

// order 0: act(z); order 1: act'(z); order 2: act''(z). Matches torch's conventions at the kinks
// (relu'(0) = 0, leaky_relu'(0) = alpha, elu/selu take the negative branch at 0) and softplus'
// threshold of 20 (beta 1).
template <typename T>
SG2_HD T act_eval(int act, int order, T z, T alpha) {
  switch (act) {
    case RELU:
      return order == 0 ? (z > T(0) ? z : T(0)) : order == 1 ? (z > T(0) ? T(1) : T(0)) : T(0);
    case LRELU:
      return order == 0 ? (z > T(0) ? z : alpha * z) : order == 1 ? (z > T(0) ? T(1) : alpha) : T(0);
    case TANH: {
      T t = ftanh(z);
      return order == 0 ? t : order == 1 ? T(1) - t * t : T(-2) * t * (T(1) - t * t);
    }
    case SIGMOID: {
      T s = sigmoid(z);
      return order == 0 ? s : order == 1 ? s * (T(1) - s) : s * (T(1) - s) * (T(1) - T(2) * s);
    }
    case ELU:
      if (z > T(0)) return order == 0 ? z : order == 1 ? T(1) : T(0);
      return order == 0 ? fexpm1(z) : fexp(z);
    case SELU: {
      const T lam = T(1.0507009873554804934193349852946);
      const T a = T(1.6732632423543772848170429916717);
      if (z > T(0)) return order == 0 ? lam * z : order == 1 ? lam : T(0);
      return order == 0 ? lam * a * fexpm1(z) : lam * a * fexp(z);
    }
    case SOFTPLUS: {
      if (z > T(20)) return order == 0 ? z : order == 1 ? T(1) : T(0);
      T s = sigmoid(z);
      return order == 0 ? flog1p(fexp(z)) : order == 1 ? s : s * (T(1) - s);
    }
    case SWISH: {
      T s = sigmoid(z);
      if (order == 0) return z * s;
      if (order == 1) return s * (T(1) + z * (T(1) - s));
      return s * (T(1) - s) * (T(2) + z * (T(1) - T(2) * s));
    }
    default:  // LINEAR
      return order == 0 ? z : order == 1 ? T(1) : T(0);
  }
}

// One element of bias_act. order 0 returns clamp(act(z) * gain); order k > 0 returns
// g * gain * act^(k)(z), zeroed where the clamp was active (as torch.clamp's gradient is).
template <typename T>
SG2_HD T bias_act_elem(int act, int order, T z, T g, T alpha, T gain, T clamp) {
  if (order == 0) {
    T y = act_eval(act, 0, z, alpha) * gain;
    if (clamp >= T(0)) y = y > clamp ? clamp : (y < -clamp ? -clamp : y);
    return y;
  }
  if (clamp >= T(0) && fabs_(act_eval(act, 0, z, alpha) * gain) > clamp) return T(0);
  return g * gain * act_eval(act, order, z, alpha);
}

// Smallest filter tap t >= 0 such that base + t lands on a real (not zero-inserted) sample of the
// upsampled input: base + t >= 0 and (base + t) % up == 0.
SG2_HD int64_t first_tap(int64_t base, int64_t up) {
  if (base < 0) return -base;
  int64_t r = base % up;
  return r == 0 ? 0 : up - r;
}

}  // namespace sg2
