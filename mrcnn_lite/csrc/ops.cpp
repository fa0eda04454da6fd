// Operator registration: the schemas (TORCH_LIBRARY) and the CPU / CUDA implementations
// (TORCH_LIBRARY_IMPL). Autograd and the fake (meta) kernels are registered from Python in
// mrcnn_lite/ops/_extension.py with torch.library.register_autograd / register_fake.
//
// Two operator families, each with a forward and a backward:
//   roi_align: RoIAlign (quantize_box=false) and RoIWarp (quantize_box=true), avg or max;
//   roi_pool:  RoIPool (Fast R-CNN), max over integer cells.
#include <Python.h>
#include <torch/library.h>

#include "roi_ops.h"

namespace mrcnn_lite {
namespace {

RoiParams align_params(double spatial_scale, int64_t ph, int64_t pw, int64_t sampling_ratio, bool aligned,
                       bool max_mode, bool quantize_box) {
  RoiParams p;
  p.spatial_scale = spatial_scale;
  p.pooled_h = ph;
  p.pooled_w = pw;
  p.sampling_ratio = sampling_ratio;
  p.aligned = aligned;
  p.max_mode = max_mode;
  p.quantize_box = quantize_box;
  return p;
}

RoiParams pool_params(double spatial_scale, int64_t ph, int64_t pw) {
  RoiParams p;
  p.spatial_scale = spatial_scale;
  p.pooled_h = ph;
  p.pooled_w = pw;
  p.max_mode = true;
  p.pool = true;
  return p;
}

}  // namespace

void check_roi_values(const at::Tensor& rois, int64_t batch, const char* op) {
  if (rois.size(0) == 0) return;
  if (rois.is_cpu()) return check_roi_values_cpu(rois, batch, op);
#ifdef MRCNN_LITE_WITH_CUDA
  if (rois.is_cuda() && cuda_stream_capturing()) return;  // no sync while capturing: the kernels guard instead
#endif
  const at::Tensor b = rois.select(1, 0);
  const at::Tensor bad = rois.isfinite().logical_not().any().logical_or(b.lt(0).any()).logical_or(
      b.ge(static_cast<double>(batch)).any()).logical_or(b.ne(b.floor()).any());
  if (bad.item<bool>()) check_roi_values_cpu(rois.cpu(), batch, op);  // the one sync; the message on failure
}

namespace {

// One wrapper per (backend, op): unpack the schema arguments into RoiParams.
template <bool Cuda>
std::tuple<at::Tensor, at::Tensor> roi_align_fwd(const at::Tensor& input, const at::Tensor& rois,
                                                 double spatial_scale, int64_t ph, int64_t pw,
                                                 int64_t sampling_ratio, bool aligned, bool max_mode,
                                                 bool quantize_box) {
  const RoiParams p = align_params(spatial_scale, ph, pw, sampling_ratio, aligned, max_mode, quantize_box);
  check_roi_args(input, rois, p, "mrcnn_lite::roi_align");
  check_roi_values(rois, input.size(0), "mrcnn_lite::roi_align");
#ifdef MRCNN_LITE_WITH_CUDA
  if (Cuda) return roi_forward_cuda(input, rois, p);
#endif
  return roi_forward_cpu(input, rois, p);
}

template <bool Cuda>
at::Tensor roi_align_bwd(const at::Tensor& grad, const at::Tensor& rois, const at::Tensor& argmax,
                         double spatial_scale, int64_t ph, int64_t pw, int64_t batch, int64_t channels,
                         int64_t height, int64_t width, int64_t sampling_ratio, bool aligned, bool max_mode,
                         bool quantize_box) {
  const RoiParams p = align_params(spatial_scale, ph, pw, sampling_ratio, aligned, max_mode, quantize_box);
  check_roi_backward_args(grad, rois, argmax, p, batch, channels, height, width, "mrcnn_lite::roi_align_backward");
#ifdef MRCNN_LITE_WITH_CUDA
  if (Cuda) return roi_backward_cuda(grad, rois, argmax, p, batch, channels, height, width);
#endif
  return roi_backward_cpu(grad, rois, argmax, p, batch, channels, height, width);
}

template <bool Cuda>
std::tuple<at::Tensor, at::Tensor> roi_pool_fwd(const at::Tensor& input, const at::Tensor& rois,
                                                double spatial_scale, int64_t ph, int64_t pw) {
  const RoiParams p = pool_params(spatial_scale, ph, pw);
  check_roi_args(input, rois, p, "mrcnn_lite::roi_pool");
  check_roi_values(rois, input.size(0), "mrcnn_lite::roi_pool");
#ifdef MRCNN_LITE_WITH_CUDA
  if (Cuda) return roi_forward_cuda(input, rois, p);
#endif
  return roi_forward_cpu(input, rois, p);
}

template <bool Cuda>
at::Tensor roi_pool_bwd(const at::Tensor& grad, const at::Tensor& rois, const at::Tensor& argmax,
                        double spatial_scale, int64_t ph, int64_t pw, int64_t batch, int64_t channels,
                        int64_t height, int64_t width) {
  const RoiParams p = pool_params(spatial_scale, ph, pw);
  check_roi_backward_args(grad, rois, argmax, p, batch, channels, height, width, "mrcnn_lite::roi_pool_backward");
#ifdef MRCNN_LITE_WITH_CUDA
  if (Cuda) return roi_backward_cuda(grad, rois, argmax, p, batch, channels, height, width);
#endif
  return roi_backward_cpu(grad, rois, argmax, p, batch, channels, height, width);
}

}  // namespace

TORCH_LIBRARY(mrcnn_lite, m) {
  m.def(
      "roi_align(Tensor input, Tensor rois, float spatial_scale, int pooled_height, int pooled_width, "
      "int sampling_ratio, bool aligned, bool max_mode, bool quantize_box) -> (Tensor, Tensor)");
  m.def(
      "roi_align_backward(Tensor grad, Tensor rois, Tensor argmax, float spatial_scale, int pooled_height, "
      "int pooled_width, int batch_size, int channels, int height, int width, int sampling_ratio, "
      "bool aligned, bool max_mode, bool quantize_box) -> Tensor");
  m.def(
      "roi_pool(Tensor input, Tensor rois, float spatial_scale, int pooled_height, int pooled_width) "
      "-> (Tensor, Tensor)");
  m.def(
      "roi_pool_backward(Tensor grad, Tensor rois, Tensor argmax, float spatial_scale, int pooled_height, "
      "int pooled_width, int batch_size, int channels, int height, int width) -> Tensor");
}

TORCH_LIBRARY_IMPL(mrcnn_lite, CPU, m) {
  m.impl("roi_align", &roi_align_fwd<false>);
  m.impl("roi_align_backward", &roi_align_bwd<false>);
  m.impl("roi_pool", &roi_pool_fwd<false>);
  m.impl("roi_pool_backward", &roi_pool_bwd<false>);
}

#ifdef MRCNN_LITE_WITH_CUDA
TORCH_LIBRARY_IMPL(mrcnn_lite, CUDA, m) {
  m.impl("roi_align", &roi_align_fwd<true>);
  m.impl("roi_align_backward", &roi_align_bwd<true>);
  m.impl("roi_pool", &roi_pool_fwd<true>);
  m.impl("roi_pool_backward", &roi_pool_bwd<true>);
}
#endif

}  // namespace mrcnn_lite

// `import mrcnn_lite._C` loads this library (which runs the registrations above); the module itself is empty
// apart from a flag saying whether the CUDA kernels were compiled in.
static struct PyModuleDef mrcnn_lite_module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};

PyMODINIT_FUNC PyInit__C(void) {
  PyObject* mod = PyModule_Create(&mrcnn_lite_module);
  if (mod == nullptr) return nullptr;
#ifdef MRCNN_LITE_WITH_CUDA
  PyModule_AddIntConstant(mod, "with_cuda", 1);
#else
  PyModule_AddIntConstant(mod, "with_cuda", 0);
#endif
  return mod;
}
