// CUDA kernels for RoIAlign / RoIWarp / RoIPool, forward and backward (float, double, half, bfloat16).
//
// Forward: one thread per output element (roi, channel, bin row, bin column); it walks the bin's samples
// (bilinear, roi_geometry.h) or, for RoIPool, its integer cells, accumulating in at::opmath_type (float for
// half/bfloat16). Max mode records the winning sample's ordinal in `argmax`. The features are read through
// their strides, so channels_last (and any other strided) maps are used in place, without the copy that
// .contiguous() made on every call; for a channels_last map the threads are ordered channel-fastest, so
// neighbouring threads read neighbouring addresses. A tap of weight 0 is never read (0 * Inf = NaN), and
// RoIPool reads its cell directly, as the CPU kernel does.
// Backward: one thread per output gradient; it adds grad / count to the four taps of every sample (average)
// or grad to the four taps of the recorded winner (max) with atomicAdd into an opmath-typed buffer, which is
// cast to the input dtype at the end (so half/bfloat16 gradients are accumulated in float). The atomics make
// the summation order, hence the last bits, vary between runs: under torch.use_deterministic_algorithms(True)
// the backward raises (or warns with warn_only=True), as torchvision's does.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ceil_div.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/Atomic.cuh>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/Context.h>
#include <c10/cuda/CUDAGraphsC10Utils.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "roi_geometry.h"
#include "roi_ops.h"

namespace mrcnn_lite {
namespace {

constexpr int kThreads = 256;

// The bin's sampling pattern along one axis: for RoIAlign/RoIWarp `count` samples, for RoIPool the cells
// [first, first + count).
template <typename T>
struct BinAxis {
  AlignAxis<T> g;
  int first;
  int count;
};

template <typename T>
__device__ inline BinAxis<T> bin_axis(T lo, T hi, int pooled, int b, int size, const RoiParams& p) {
  BinAxis<T> a;
  const T scale = static_cast<T>(p.spatial_scale);
  if (p.pool) {
    int last;
    pool_bin(lo, hi, scale, pooled, b, size, a.first, last);
    a.count = last > a.first ? last - a.first : 0;
  } else {
    a.g = align_axis(lo, hi, scale, pooled, static_cast<int>(p.sampling_ratio), p.aligned, p.quantize_box);
    a.first = 0;
    a.count = a.g.grid;
  }
  return a;
}

// Tap i of a bin along one axis.
template <typename T>
__device__ inline void bin_tap(const BinAxis<T>& a, int b, int i, int size, bool pool, int& lo, int& hi, T& w_lo,
                               T& w_hi) {
  if (pool) {
    lo = hi = a.first + i;
    w_lo = T(1);
    w_hi = T(0);
  } else {
    bilinear_axis(sample_pos(a.g, b, i), size, lo, hi, w_lo, w_hi);
  }
}

// The strides of the [N, C, H, W] features, in elements.
struct Strides {
  int64_t n, c, h, w;
};

// Output element idx -> (k, c, by, bx). NCHW features: bx fastest (the output's own order). Channels-last
// features (channel_fastest): c fastest, so a warp's reads of one tap are contiguous.
__device__ inline void decode(int64_t idx, int64_t channels, int64_t ph, int64_t pw, bool channel_fastest,
                              int64_t& k, int64_t& c, int& by, int& bx) {
  if (channel_fastest) {
    c = idx % channels;
    bx = static_cast<int>((idx / channels) % pw);
    by = static_cast<int>((idx / (channels * pw)) % ph);
    k = idx / (channels * pw * ph);
  } else {
    bx = static_cast<int>(idx % pw);
    by = static_cast<int>((idx / pw) % ph);
    c = (idx / (pw * ph)) % channels;
    k = idx / (pw * ph * channels);
  }
}

template <typename scalar_t>
__global__ void forward_kernel(int64_t total, const scalar_t* __restrict__ in, Strides st,
                               const scalar_t* __restrict__ rois, scalar_t* __restrict__ out,
                               int32_t* __restrict__ argmax, int64_t batch, int64_t channels, int height, int width,
                               bool channel_fastest, RoiParams p) {
  using T = at::opmath_type<scalar_t>;
  const int64_t ph = p.pooled_h, pw = p.pooled_w;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t k, c;
    int by, bx;
    decode(idx, channels, ph, pw, channel_fastest, k, c, by, bx);
    const int64_t o = ((k * channels + c) * ph + by) * pw + bx;  // the output is NCHW-contiguous
    const scalar_t* roi = rois + k * 5;
    const T b_f = static_cast<T>(roi[0]);
    // The host checked every row (check_roi_values) unless a CUDA graph was being captured; then a bad batch
    // index gives zeros (and no gradient), never an out-of-bounds read.
    if (!(b_f >= T(0) && b_f < static_cast<T>(batch))) {
      out[o] = scalar_t(0);
      if (p.max_mode) argmax[o] = -1;
      continue;
    }
    const int64_t b = static_cast<int64_t>(b_f);
    const T x1 = static_cast<T>(roi[1]), y1 = static_cast<T>(roi[2]);
    const T x2 = static_cast<T>(roi[3]), y2 = static_cast<T>(roi[4]);
    const BinAxis<T> ay = bin_axis(y1, y2, static_cast<int>(ph), by, height, p);
    const BinAxis<T> ax = bin_axis(x1, x2, static_cast<int>(pw), bx, width, p);
    const scalar_t* f = in + b * st.n + c * st.c;

    T sum = T(0), best = T(0);
    int32_t arg = -1;
    int32_t s = 0;
    for (int iy = 0; iy < ay.count; ++iy) {
      int ylo, yhi;
      T wylo, wyhi;
      bin_tap(ay, by, iy, height, p.pool, ylo, yhi, wylo, wyhi);
      for (int ix = 0; ix < ax.count; ++ix, ++s) {
        int xlo, xhi;
        T wxlo, wxhi;
        bin_tap(ax, bx, ix, width, p.pool, xlo, xhi, wxlo, wxhi);
        T v;
        if (p.pool) {  // RoIPool: the cell itself
          v = static_cast<T>(f[ylo * st.h + xlo * st.w]);
        } else {  // only taps of non-zero weight are read: an outside sample is 0 even next to an Inf
          v = T(0);
          const T w00 = wylo * wxlo, w01 = wylo * wxhi, w10 = wyhi * wxlo, w11 = wyhi * wxhi;
          if (w00 != T(0)) v += w00 * static_cast<T>(f[ylo * st.h + xlo * st.w]);
          if (w01 != T(0)) v += w01 * static_cast<T>(f[ylo * st.h + xhi * st.w]);
          if (w10 != T(0)) v += w10 * static_cast<T>(f[yhi * st.h + xlo * st.w]);
          if (w11 != T(0)) v += w11 * static_cast<T>(f[yhi * st.h + xhi * st.w]);
        }
        sum += v;
        if (max_better(v, best, arg)) {  // as the CPU kernel: the first maximum wins ties, NaN propagates
          best = v;
          arg = s;
        }
      }
    }
    if (p.max_mode) {
      out[o] = static_cast<scalar_t>(arg < 0 ? T(0) : best);
      argmax[o] = arg;
    } else {
      const int count = ay.count * ax.count;
      out[o] = static_cast<scalar_t>(sum / static_cast<T>(count > 1 ? count : 1));
    }
  }
}

template <typename scalar_t, typename acc_t>
__global__ void backward_kernel(int64_t total, const scalar_t* __restrict__ grad, const scalar_t* __restrict__ rois,
                                const int32_t* __restrict__ argmax, acc_t* __restrict__ gin, int64_t batch,
                                int64_t channels, int height, int width, RoiParams p) {
  using T = at::opmath_type<scalar_t>;
  const int ph = static_cast<int>(p.pooled_h), pw = static_cast<int>(p.pooled_w);
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int bx = idx % pw;
    const int by = (idx / pw) % ph;
    const int64_t c = (idx / (static_cast<int64_t>(pw) * ph)) % channels;
    const int64_t k = idx / (static_cast<int64_t>(pw) * ph * channels);
    const scalar_t* roi = rois + k * 5;
    const T b_f = static_cast<T>(roi[0]);
    if (!(b_f >= T(0) && b_f < static_cast<T>(batch))) continue;  // see the forward
    const int64_t b = static_cast<int64_t>(b_f);
    const T g = static_cast<T>(grad[idx]);
    if (g == T(0)) continue;
    const T x1 = static_cast<T>(roi[1]), y1 = static_cast<T>(roi[2]);
    const T x2 = static_cast<T>(roi[3]), y2 = static_cast<T>(roi[4]);
    const BinAxis<T> ay = bin_axis(y1, y2, ph, by, height, p);
    const BinAxis<T> ax = bin_axis(x1, x2, pw, bx, width, p);
    acc_t* gi = gin + (b * channels + c) * static_cast<int64_t>(height) * width;

    int iy0 = 0, iy1 = ay.count, ix0 = 0, ix1 = ax.count;
    T scale = g;
    if (p.max_mode) {  // only the winner recorded by the forward
      const int32_t s = argmax[idx];
      if (s < 0 || s >= ay.count * ax.count) continue;  // not a sample of this bin: not the forward's argmax
      iy0 = s / ax.count;
      iy1 = iy0 + 1;
      ix0 = s % ax.count;
      ix1 = ix0 + 1;
    } else {
      const int count = ay.count * ax.count;
      scale = g / static_cast<T>(count > 1 ? count : 1);
    }
    for (int iy = iy0; iy < iy1; ++iy) {
      int ylo, yhi;
      T wylo, wyhi;
      bin_tap(ay, by, iy, height, p.pool, ylo, yhi, wylo, wyhi);
      for (int ix = ix0; ix < ix1; ++ix) {
        int xlo, xhi;
        T wxlo, wxhi;
        bin_tap(ax, bx, ix, width, p.pool, xlo, xhi, wxlo, wxhi);
        if (wylo * wxlo != T(0)) gpuAtomicAdd(gi + ylo * width + xlo, static_cast<acc_t>(wylo * wxlo * scale));
        if (wylo * wxhi != T(0)) gpuAtomicAdd(gi + ylo * width + xhi, static_cast<acc_t>(wylo * wxhi * scale));
        if (wyhi * wxlo != T(0)) gpuAtomicAdd(gi + yhi * width + xlo, static_cast<acc_t>(wyhi * wxlo * scale));
        if (wyhi * wxhi != T(0)) gpuAtomicAdd(gi + yhi * width + xhi, static_cast<acc_t>(wyhi * wxhi * scale));
      }
    }
  }
}

// Enough blocks to fill the GPU; the kernels grid-stride over the rest.
int blocks_for(int64_t total) {
  int device = 0, sms = 1;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const int64_t max_blocks = static_cast<int64_t>(sms) * 32;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(at::ceil_div(total, int64_t(kThreads)), max_blocks)));
}

}  // namespace

bool cuda_stream_capturing() {
  return c10::cuda::currentStreamCaptureStatusMayInitCtx() != c10::cuda::CaptureStatus::None;
}

std::tuple<at::Tensor, at::Tensor> roi_forward_cuda(const at::Tensor& input, const at::Tensor& rois,
                                                    const RoiParams& p) {
  TORCH_CHECK(input.is_cuda() && rois.is_cuda(), "roi_forward_cuda: expected CUDA tensors");
  const c10::cuda::CUDAGuard guard(input.device());
  const int64_t n = input.size(0), c = input.size(1), h = input.size(2), w = input.size(3);
  const int64_t k = rois.size(0);
  const at::Tensor r = rois.contiguous();
  at::Tensor out = at::empty({k, c, p.pooled_h, p.pooled_w}, input.options());
  const std::vector<int64_t> arg_shape =
      p.max_mode ? std::vector<int64_t>{k, c, p.pooled_h, p.pooled_w} : std::vector<int64_t>{0};
  at::Tensor argmax = at::empty(arg_shape, input.options().dtype(at::kInt));
  const int64_t total = out.numel();
  if (total == 0) return {out, argmax};
  if (h == 0 || w == 0) {  // an empty map: every sample lies outside it and reads 0 (as on the CPU)
    out.zero_();
    if (p.max_mode) argmax.fill_(-1);
    return {out, argmax};
  }
  const Strides st{input.stride(0), input.stride(1), input.stride(2), input.stride(3)};
  const bool channel_fastest = c > 1 && input.stride(1) == 1;  // channels_last
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "roi_forward_cuda", [&] {
    forward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
        total, input.const_data_ptr<scalar_t>(), st, r.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(),
        p.max_mode ? argmax.mutable_data_ptr<int32_t>() : nullptr, n, c, static_cast<int>(h), static_cast<int>(w),
        channel_fastest, p);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {out, argmax};
}

at::Tensor roi_backward_cuda(const at::Tensor& grad, const at::Tensor& rois, const at::Tensor& argmax,
                             const RoiParams& p, int64_t batch, int64_t channels, int64_t height, int64_t width) {
  // Device and dtype of grad, rois and argmax: check_roi_backward_args (ops.cpp) ran first.
  TORCH_CHECK(grad.is_cuda() && rois.is_cuda(), "roi_backward_cuda: expected CUDA tensors");
  at::globalContext().alertNotDeterministic(p.pool ? "mrcnn_lite::roi_pool_backward (CUDA)"
                                                   : "mrcnn_lite::roi_align_backward (CUDA)");
  const c10::cuda::CUDAGuard guard(grad.device());
  const auto acc_type = at::toOpMathType(grad.scalar_type());
  at::Tensor gin = at::zeros({batch, channels, height, width}, grad.options().dtype(acc_type));
  const int64_t total = grad.numel();
  if (total > 0 && gin.numel() > 0) {
    const at::Tensor g = grad.contiguous();
    const at::Tensor r = rois.contiguous();
    const at::Tensor a = argmax.contiguous();
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_backward_cuda", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      backward_kernel<scalar_t, acc_t><<<blocks_for(total), kThreads, 0, stream>>>(
          total, g.const_data_ptr<scalar_t>(), r.const_data_ptr<scalar_t>(),
          p.max_mode ? a.const_data_ptr<int32_t>() : nullptr, gin.mutable_data_ptr<acc_t>(), batch, channels,
          static_cast<int>(height), static_cast<int>(width), p);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return gin.to(grad.scalar_type());
}

}  // namespace mrcnn_lite
