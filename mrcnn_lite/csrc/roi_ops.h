// Declarations shared by the registration (ops.cpp) and the CPU / CUDA kernel files.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <tuple>

namespace mrcnn_lite {

// Which RoI operator a kernel call computes (see roi_geometry.h).
struct RoiParams {
  double spatial_scale = 1.0;
  int64_t pooled_h = 1;
  int64_t pooled_w = 1;
  int64_t sampling_ratio = -1;  // <= 0: adaptive, ceil(roi size / pooled size) per RoI and axis
  bool aligned = false;         // half-pixel offset (detectron2 / torchvision aligned=True)
  bool max_mode = false;        // max instead of average over a bin's samples (RoIPool: always max)
  bool quantize_box = false;    // RoIWarp: round the box edges to the feature grid
  bool pool = false;            // RoIPool: rounded box, floor/ceil bins, integer cells
};

// Checks shared by every backend; `op` names the operator in the message.
inline void check_roi_args(const at::Tensor& input, const at::Tensor& rois, const RoiParams& p, const char* op) {
  TORCH_CHECK(input.dim() == 4, op, ": input must be a 4-D tensor [N, C, H, W], got ", input.dim(), "-D");
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5, op,
              ": rois must be a Tensor[K, 5] (batch_index, x1, y1, x2, y2), got shape ", rois.sizes());
  TORCH_CHECK(p.pooled_h > 0 && p.pooled_w > 0, op, ": output size must be positive, got (", p.pooled_h, ", ",
              p.pooled_w, ")");
  TORCH_CHECK(input.device() == rois.device(), op, ": input and rois must be on the same device, got ",
              input.device(), " and ", rois.device());
  TORCH_CHECK(input.scalar_type() == rois.scalar_type(), op, ": input and rois must have the same dtype, got ",
              input.scalar_type(), " and ", rois.scalar_type());
}

// Forward: (output [K, C, ph, pw], argmax [K, C, ph, pw] int32 in max mode, else [0]).
// argmax holds the winning sample's ordinal within its bin (row-major over the bin's samples / cells).
std::tuple<at::Tensor, at::Tensor> roi_forward_cpu(const at::Tensor& input, const at::Tensor& rois,
                                                   const RoiParams& p);
at::Tensor roi_backward_cpu(const at::Tensor& grad, const at::Tensor& rois, const at::Tensor& argmax,
                            const RoiParams& p, int64_t batch, int64_t channels, int64_t height, int64_t width);

#ifdef MRCNN_LITE_WITH_CUDA
std::tuple<at::Tensor, at::Tensor> roi_forward_cuda(const at::Tensor& input, const at::Tensor& rois,
                                                    const RoiParams& p);
at::Tensor roi_backward_cuda(const at::Tensor& grad, const at::Tensor& rois, const at::Tensor& argmax,
                             const RoiParams& p, int64_t batch, int64_t channels, int64_t height, int64_t width);
#endif

}  // namespace mrcnn_lite
