// Declarations shared by the registration (ops.cpp) and the CPU / CUDA kernel files.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>
#include <tuple>

#include "roi_geometry.h"

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

// Argument checks shared by every backend and both passes; `op` names the operator in the message. Each
// message names the argument and the value. As in the Python front end, a non-floating-point tensor or an
// argmax that is not int32 raises TypeError (TORCH_CHECK_TYPE), anything else ValueError (TORCH_CHECK_VALUE).
inline void check_roi_params(const RoiParams& p, const char* op) {
  TORCH_CHECK_VALUE(p.pooled_h > 0 && p.pooled_w > 0 && p.pooled_h <= INT32_MAX && p.pooled_w <= INT32_MAX, op,
                    ": output size must be positive (and below 2^31), got (", p.pooled_h, ", ", p.pooled_w, ")");
  TORCH_CHECK_VALUE(std::isfinite(p.spatial_scale) && p.spatial_scale > 0, op,
                    ": spatial_scale must be a positive finite number, got ", p.spatial_scale);
  TORCH_CHECK_VALUE(p.sampling_ratio <= kMaxSamplingGrid, op, ": sampling_ratio must be at most ",
                    kMaxSamplingGrid, " samples per bin and axis (<= 0: adaptive), got ", p.sampling_ratio);
}

inline void check_roi_args(const at::Tensor& input, const at::Tensor& rois, const RoiParams& p, const char* op) {
  TORCH_CHECK_VALUE(input.dim() == 4, op, ": input must be a 4-D tensor [N, C, H, W], got ", input.dim(),
                    "-D of shape ", input.sizes());
  TORCH_CHECK_VALUE(rois.dim() == 2 && rois.size(1) == 5, op,
                    ": rois must be a Tensor[K, 5] (batch_index, x1, y1, x2, y2), got shape ", rois.sizes());
  TORCH_CHECK_TYPE(at::isFloatingType(input.scalar_type()), op,
                   ": input must be a floating-point tensor (float, double, half, bfloat16), got ",
                   input.scalar_type());
  TORCH_CHECK_VALUE(input.device() == rois.device(), op, ": input and rois must be on the same device, got ",
                    input.device(), " and ", rois.device());
  TORCH_CHECK_VALUE(input.scalar_type() == rois.scalar_type(), op,
                    ": input and rois must have the same dtype, got ", input.scalar_type(), " and ",
                    rois.scalar_type());
  TORCH_CHECK_VALUE(input.size(2) <= INT32_MAX && input.size(3) <= INT32_MAX, op,
                    ": input height and width must be below 2^31, got ", input.sizes());
  check_roi_params(p, op);
}

// The backward's arguments: grad [K, C, ph, pw] on the device of rois (and of argmax, int32, in max mode).
inline void check_roi_backward_args(const at::Tensor& grad, const at::Tensor& rois, const at::Tensor& argmax,
                                    const RoiParams& p, int64_t batch, int64_t channels, int64_t height,
                                    int64_t width, const char* op) {
  check_roi_params(p, op);
  TORCH_CHECK_VALUE(batch >= 0 && channels >= 0 && height >= 0 && width >= 0 && height <= INT32_MAX &&
                        width <= INT32_MAX,
                    op, ": the input shape (batch_size, channels, height, width) must be non-negative (height and "
                    "width below 2^31), got (", batch, ", ", channels, ", ", height, ", ", width, ")");
  TORCH_CHECK_VALUE(rois.dim() == 2 && rois.size(1) == 5, op,
                    ": rois must be a Tensor[K, 5] (batch_index, x1, y1, x2, y2), got shape ", rois.sizes());
  TORCH_CHECK_VALUE(grad.dim() == 4 && grad.size(0) == rois.size(0) && grad.size(1) == channels &&
                        grad.size(2) == p.pooled_h && grad.size(3) == p.pooled_w,
                    op, ": grad must have shape [K, C, ph, pw] = [", rois.size(0), ", ", channels, ", ", p.pooled_h,
                    ", ", p.pooled_w, "], got ", grad.sizes());
  TORCH_CHECK_TYPE(at::isFloatingType(grad.scalar_type()), op, ": grad must be a floating-point tensor, got ",
                   grad.scalar_type());
  TORCH_CHECK_VALUE(grad.device() == rois.device(), op, ": grad and rois must be on the same device, got ",
                    grad.device(), " and ", rois.device());
  TORCH_CHECK_VALUE(grad.scalar_type() == rois.scalar_type(), op,
                    ": grad and rois must have the same dtype, got ", grad.scalar_type(), " and ", rois.scalar_type());
  if (p.max_mode) {
    TORCH_CHECK_VALUE(argmax.sizes() == grad.sizes(), op, ": argmax must have grad's shape ", grad.sizes(),
                      " in max mode, got ", argmax.sizes());
    TORCH_CHECK_VALUE(argmax.device() == grad.device(), op, ": argmax must be on grad's device ", grad.device(),
                      ", got ", argmax.device());
    TORCH_CHECK_TYPE(argmax.scalar_type() == at::kInt, op, ": argmax must be int32, got ", argmax.scalar_type());
  }
}

// The values of rois: every batch index an integer in [0, batch - 1], every coordinate finite. The CPU checks
// with a loop over the K rows (no reduction kernels, no extra pass over the features); CUDA with one fused
// reduction and one device-to-host copy of its flag, building the detailed message only on failure, and not at
// all while a CUDA graph is being captured (a sync is illegal there): the kernels then skip a row with a bad
// batch index (zeros, no gradient) and read nothing for a non-finite coordinate (see roi_geometry.h).
void check_roi_values(const at::Tensor& rois, int64_t batch, const char* op);
void check_roi_values_cpu(const at::Tensor& rois, int64_t batch, const char* op);

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
bool cuda_stream_capturing();  // whether the current CUDA stream is capturing a graph
#endif

}  // namespace mrcnn_lite
