// Python bindings for the CUDA kernels in ops_cuda.cu (kept in a .cpp so nvcc never sees pybind11).
#include <torch/extension.h>

torch::Tensor bias_act_cuda(torch::Tensor x, torch::Tensor b, torch::Tensor g, int64_t order, int64_t act,
                            double alpha, double gain, double clamp, int64_t dim);
torch::Tensor upfirdn2d_cuda(torch::Tensor x, torch::Tensor k, int64_t upx, int64_t upy, int64_t downx,
                             int64_t downy, int64_t px0, int64_t px1, int64_t py0, int64_t py1);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("bias_act", &bias_act_cuda, "fused bias + activation + gain + clamp, or its 1st/2nd derivative (CUDA)");
  m.def("upfirdn2d", &upfirdn2d_cuda, "upsample, FIR filter, downsample (CUDA)");
}
