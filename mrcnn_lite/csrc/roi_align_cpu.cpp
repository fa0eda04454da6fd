// CPU kernels for RoIAlign / RoIWarp / RoIPool, forward and backward.
//
// Speed comes from three choices:
//  1. Separable taps, computed once per RoI. A sample's row taps depend only on its bin row and its column
//     taps only on its bin column, so each RoI gets two small tables (rows, columns) of
//     (lo, hi, w_lo, w_hi) reused by every bin and every channel.
//  2. Channels last. The features are read as [N, H, W, C], so one bilinear tap is an axpy over a contiguous
//     vector of C channels, which the compiler vectorizes, instead of C scattered scalar loads.
//  3. Parallelism without a serial part: the forward splits the RoIs across threads (at::parallel_for); the
//     backward splits the channels, so each thread owns a disjoint slice of every gradient plane and
//     scatters into it without atomics or per-thread copies.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "roi_geometry.h"
#include "roi_ops.h"

namespace mrcnn_lite {
namespace {

// One sample (or, for RoIPool, one cell) along one axis: its two neighbouring cells and their weights.
template <typename T>
struct Tap {
  int lo, hi;
  T w_lo, w_hi;
};

// One feature row/column with its total weight in a bin (the average's taps, duplicates merged).
template <typename T>
struct Cell {
  int idx;
  T w;
};

// All taps of one RoI along one axis; bin b owns taps [begin[b], begin[b + 1]) and, merged by cell for the
// average, cells [cbegin[b], cbegin[b + 1]). Merging matters: two samples of a small bin usually share their
// neighbouring cells, so a 2x2-sample bin often needs 2x2 or 3x3 reads instead of 4x4.
template <typename T>
struct AxisTaps {
  std::vector<int> begin;
  std::vector<Tap<T>> taps;
  std::vector<int> cbegin;
  std::vector<Cell<T>> cells;
};

template <typename T>
void add_cell(std::vector<Cell<T>>& cells, int first, int idx, T w) {
  if (w == T(0)) return;
  for (int i = first; i < static_cast<int>(cells.size()); ++i) {
    if (cells[i].idx == idx) {
      cells[i].w += w;
      return;
    }
  }
  cells.push_back({idx, w});
}

template <typename T>
void merge_cells(AxisTaps<T>& a, int pooled) {
  a.cbegin.assign(pooled + 1, 0);
  a.cells.clear();
  for (int b = 0; b < pooled; ++b) {
    const int first = static_cast<int>(a.cells.size());
    for (int t = a.begin[b]; t < a.begin[b + 1]; ++t) {
      add_cell(a.cells, first, a.taps[t].lo, a.taps[t].w_lo);
      add_cell(a.cells, first, a.taps[t].hi, a.taps[t].w_hi);
    }
    a.cbegin[b + 1] = static_cast<int>(a.cells.size());
  }
}

template <typename T>
struct RoiTaps {
  int64_t batch = 0;
  T inv_count = T(1);  // 1 / (samples per bin), the average's divisor (torchvision counts outside samples)
  AxisTaps<T> y, x;
};

template <typename T>
void build_axis(AxisTaps<T>& a, T lo, T hi, int pooled, int size, const RoiParams& p) {
  a.begin.assign(pooled + 1, 0);
  a.taps.clear();
  const T scale = static_cast<T>(p.spatial_scale);
  if (p.pool) {
    for (int b = 0; b < pooled; ++b) {
      int first, last;
      pool_bin(lo, hi, scale, pooled, b, size, first, last);
      for (int c = first; c < last; ++c) a.taps.push_back({c, c, T(1), T(0)});
      a.begin[b + 1] = static_cast<int>(a.taps.size());
    }
    return;
  }
  const AlignAxis<T> g = align_axis(lo, hi, scale, pooled, static_cast<int>(p.sampling_ratio), p.aligned,
                                    p.quantize_box);
  for (int b = 0; b < pooled; ++b) {
    for (int i = 0; i < g.grid; ++i) {
      Tap<T> t;
      bilinear_axis(sample_pos(g, b, i), size, t.lo, t.hi, t.w_lo, t.w_hi);
      a.taps.push_back(t);
    }
    a.begin[b + 1] = static_cast<int>(a.taps.size());
  }
  if (!p.max_mode) merge_cells(a, pooled);
}

template <typename scalar_t, typename T>
void build_roi(RoiTaps<T>& r, const scalar_t* roi, int64_t height, int64_t width, const RoiParams& p) {
  r.batch = static_cast<int64_t>(roi[0]);
  const T x1 = static_cast<T>(roi[1]), y1 = static_cast<T>(roi[2]);
  const T x2 = static_cast<T>(roi[3]), y2 = static_cast<T>(roi[4]);
  build_axis(r.y, y1, y2, static_cast<int>(p.pooled_h), static_cast<int>(height), p);
  build_axis(r.x, x1, x2, static_cast<int>(p.pooled_w), static_cast<int>(width), p);
  if (!p.pool) {
    const int64_t per_bin = (r.y.begin[1] - r.y.begin[0]) * (r.x.begin[1] - r.x.begin[0]);
    r.inv_count = T(1) / static_cast<T>(std::max<int64_t>(per_bin, 1));
  }
}

// acc[0:n] += w * src[0:n]; the hot loop of both passes (auto-vectorized).
template <typename T, typename S>
inline void axpy(T* __restrict acc, const S* __restrict src, T w, int64_t n) {
  if (w == T(0)) return;
  for (int64_t i = 0; i < n; ++i) acc[i] += w * static_cast<T>(src[i]);
}

// acc += the bilinear sample at taps (ty, tx) of the channels-last plane f ([H, W, C]).
template <typename T, typename S>
inline void add_sample(T* acc, const S* f, const Tap<T>& ty, const Tap<T>& tx, int64_t width, int64_t c) {
  axpy(acc, f + (ty.lo * width + tx.lo) * c, ty.w_lo * tx.w_lo, c);
  axpy(acc, f + (ty.lo * width + tx.hi) * c, ty.w_lo * tx.w_hi, c);
  axpy(acc, f + (ty.hi * width + tx.lo) * c, ty.w_hi * tx.w_lo, c);
  axpy(acc, f + (ty.hi * width + tx.hi) * c, ty.w_hi * tx.w_hi, c);
}

template <typename scalar_t>
void forward_kernel(const scalar_t* in, const scalar_t* rois, scalar_t* out, int32_t* argmax, int64_t k_rois,
                    int64_t c, int64_t height, int64_t width, const RoiParams& p) {
  using T = at::opmath_type<scalar_t>;
  const int64_t ph = p.pooled_h, pw = p.pooled_w, bins = ph * pw;
  at::parallel_for(0, k_rois, 1, [&](int64_t k0, int64_t k1) {
    RoiTaps<T> r;
    std::vector<T> acc(c), val(c), obuf;
    std::vector<int32_t> arg(c);
    if (!p.max_mode) obuf.resize(bins * c);
    for (int64_t k = k0; k < k1; ++k) {
      build_roi(r, rois + k * 5, height, width, p);
      const scalar_t* f = in + r.batch * height * width * c;
      scalar_t* o = out + k * c * bins;
      if (!p.max_mode) {
        // average: obuf[bin][:] = sum over the bin's merged cells of w_y * w_x * f[y, x, :]
        std::fill(obuf.begin(), obuf.end(), T(0));
        for (int64_t by = 0; by < ph; ++by) {
          for (int64_t bx = 0; bx < pw; ++bx) {
            T* ob = obuf.data() + (by * pw + bx) * c;
            for (int cy = r.y.cbegin[by]; cy < r.y.cbegin[by + 1]; ++cy) {
              const Cell<T>& a = r.y.cells[cy];
              const scalar_t* row = f + a.idx * width * c;
              for (int cx = r.x.cbegin[bx]; cx < r.x.cbegin[bx + 1]; ++cx)
                axpy(ob, row + r.x.cells[cx].idx * c, a.w * r.x.cells[cx].w, c);
            }
          }
        }
        for (int64_t ch = 0; ch < c; ++ch)  // [bins, C] -> [C, bins]: contiguous writes
          for (int64_t bin = 0; bin < bins; ++bin)
            o[ch * bins + bin] = static_cast<scalar_t>(obuf[bin * c + ch] * r.inv_count);
        continue;
      }
      for (int64_t by = 0; by < ph; ++by) {
        for (int64_t bx = 0; bx < pw; ++bx) {
          const int64_t bin = by * pw + bx;
          const int y0 = r.y.begin[by], y1 = r.y.begin[by + 1];
          const int x0 = r.x.begin[bx], x1 = r.x.begin[bx + 1];
          // max: a sample outside the map reads 0 and competes; a bin with no samples outputs 0.
          std::fill(acc.begin(), acc.end(), -std::numeric_limits<T>::infinity());
          std::fill(arg.begin(), arg.end(), -1);
          int32_t s = 0;
          for (int ty = y0; ty < y1; ++ty) {
            for (int tx = x0; tx < x1; ++tx, ++s) {
              std::fill(val.begin(), val.end(), T(0));
              add_sample(val.data(), f, r.y.taps[ty], r.x.taps[tx], width, c);
              for (int64_t ch = 0; ch < c; ++ch) {
                const bool better = max_better(val[ch], acc[ch], arg[ch]);  // strict: first maximum wins ties
                acc[ch] = better ? val[ch] : acc[ch];
                arg[ch] = better ? s : arg[ch];
              }
            }
          }
          int32_t* a = argmax + k * c * bins;
          for (int64_t ch = 0; ch < c; ++ch) {
            o[ch * bins + bin] = static_cast<scalar_t>(arg[ch] < 0 ? T(0) : acc[ch]);
            a[ch * bins + bin] = arg[ch];
          }
        }
      }
    }
  });
}

template <typename scalar_t>
void backward_kernel(const scalar_t* grad, const scalar_t* rois, const int32_t* argmax,
                     at::opmath_type<scalar_t>* gin, int64_t k_rois, int64_t c, int64_t height, int64_t width,
                     const RoiParams& p) {
  using T = at::opmath_type<scalar_t>;
  const int64_t ph = p.pooled_h, pw = p.pooled_w, bins = ph * pw;
  std::vector<RoiTaps<T>> taps(k_rois);  // built once, shared read-only by all threads
  at::parallel_for(0, k_rois, 16, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) build_roi(taps[k], rois + k * 5, height, width, p);
  });
  // Each thread owns channels [c0, c1) of every plane: disjoint writes, no atomics.
  at::parallel_for(0, c, 1, [&](int64_t c0, int64_t c1) {
    const int64_t nc = c1 - c0;
    std::vector<T> g(nc);
    for (int64_t k = 0; k < k_rois; ++k) {
      const RoiTaps<T>& r = taps[k];
      T* gi = gin + r.batch * height * width * c + c0;  // channels-last plane, offset to this thread's slice
      const scalar_t* go = grad + (k * c + c0) * bins;
      for (int64_t by = 0; by < ph; ++by) {
        for (int64_t bx = 0; bx < pw; ++bx) {
          const int64_t bin = by * pw + bx;
          const int y0 = r.y.begin[by], y1 = r.y.begin[by + 1];
          const int x0 = r.x.begin[bx], x1 = r.x.begin[bx + 1];
          if (!p.max_mode) {  // every sample of the bin gets grad / count, spread over its 4 taps
            for (int64_t j = 0; j < nc; ++j) g[j] = static_cast<T>(go[j * bins + bin]) * r.inv_count;
            for (int cy = r.y.cbegin[by]; cy < r.y.cbegin[by + 1]; ++cy) {
              const Cell<T>& a = r.y.cells[cy];
              T* row = gi + a.idx * width * c;
              for (int cx = r.x.cbegin[bx]; cx < r.x.cbegin[bx + 1]; ++cx)
                axpy(row + r.x.cells[cx].idx * c, g.data(), a.w * r.x.cells[cx].w, nc);
            }
            continue;
          }
          // max: only the winning sample (recorded by the forward) receives the gradient.
          const int nx = x1 - x0;
          const int32_t count = (y1 - y0) * nx;
          const int32_t* am = argmax + (k * c + c0) * bins;
          for (int64_t j = 0; j < nc; ++j) {
            const int32_t s = am[j * bins + bin];
            if (s < 0) continue;
            TORCH_CHECK_VALUE(s < count, "roi_backward: argmax[", k, ", ", c0 + j, ", ", by, ", ", bx, "] = ", s,
                              " is not a sample of its bin (", count, " samples); pass the forward's argmax");
            const Tap<T>& a = r.y.taps[y0 + s / nx];
            const Tap<T>& b = r.x.taps[x0 + s % nx];
            const T v = static_cast<T>(go[j * bins + bin]);
            // taps of weight 0 (outside samples, RoIPool's second tap) are skipped: 0 * Inf would be NaN
            if (a.w_lo * b.w_lo != T(0)) gi[(a.lo * width + b.lo) * c + j] += a.w_lo * b.w_lo * v;
            if (a.w_lo * b.w_hi != T(0)) gi[(a.lo * width + b.hi) * c + j] += a.w_lo * b.w_hi * v;
            if (a.w_hi * b.w_lo != T(0)) gi[(a.hi * width + b.lo) * c + j] += a.w_hi * b.w_lo * v;
            if (a.w_hi * b.w_hi != T(0)) gi[(a.hi * width + b.hi) * c + j] += a.w_hi * b.w_hi * v;
          }
        }
      }
    }
  });
}

}  // namespace

void check_roi_values_cpu(const at::Tensor& rois, int64_t batch, const char* op) {
  TORCH_CHECK(rois.is_cpu(), "check_roi_values_cpu: expected CPU rois");
  const at::Tensor r = rois.contiguous();
  const int64_t k = r.size(0);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, r.scalar_type(), "check_roi_values", [&] {
    const scalar_t* v = r.const_data_ptr<scalar_t>();
    for (int64_t i = 0; i < k; ++i) {
      const double b = static_cast<double>(v[i * 5]);
      const double x1 = static_cast<double>(v[i * 5 + 1]), y1 = static_cast<double>(v[i * 5 + 2]);
      const double x2 = static_cast<double>(v[i * 5 + 3]), y2 = static_cast<double>(v[i * 5 + 4]);
      TORCH_CHECK_VALUE(std::isfinite(b) && std::isfinite(x1) && std::isfinite(y1) && std::isfinite(x2) &&
                            std::isfinite(y2),
                        op, ": rois[", i, "] = (", b, ", ", x1, ", ", y1, ", ", x2, ", ", y2,
                        ") is not finite: batch indices and box coordinates must be finite numbers");
      TORCH_CHECK_VALUE(b == std::floor(b), op, ": batch index rois[", i, ", 0] = ", b,
                        " must be an integer in [0, ", batch - 1, "]");
      TORCH_CHECK_VALUE(b >= 0 && b < static_cast<double>(batch), op, ": batch index out of range: rois[", i,
                        ", 0] = ", b, " must lie in [0, ", batch - 1, "] (input has ", batch, " images)");
    }
  });
}

std::tuple<at::Tensor, at::Tensor> roi_forward_cpu(const at::Tensor& input, const at::Tensor& rois,
                                                   const RoiParams& p) {
  TORCH_CHECK(input.device().is_cpu(), "roi_forward_cpu: expected CPU tensors");
  const int64_t c = input.size(1), h = input.size(2), w = input.size(3);
  const int64_t k = rois.size(0);
  // [N, H, W, C] contiguous; free when the input is already channels-last.
  const at::Tensor nhwc = input.permute({0, 2, 3, 1}).contiguous();
  const at::Tensor r = rois.contiguous();
  at::Tensor out = at::empty({k, c, p.pooled_h, p.pooled_w}, input.options());
  const std::vector<int64_t> arg_shape =
      p.max_mode ? std::vector<int64_t>{k, c, p.pooled_h, p.pooled_w} : std::vector<int64_t>{0};
  at::Tensor argmax = at::empty(arg_shape, input.options().dtype(at::kInt));
  if (out.numel() == 0) return {out, argmax};
  if (h == 0 || w == 0) {  // an empty map: every sample lies outside it and reads 0, every RoIPool bin is empty
    out.zero_();
    if (p.max_mode) argmax.fill_(-1);
    return {out, argmax};
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "roi_forward_cpu", [&] {
    forward_kernel<scalar_t>(nhwc.const_data_ptr<scalar_t>(), r.const_data_ptr<scalar_t>(),
                             out.mutable_data_ptr<scalar_t>(), p.max_mode ? argmax.mutable_data_ptr<int32_t>() : nullptr,
                             k, c, h, w, p);
  });
  return {out, argmax};
}

at::Tensor roi_backward_cpu(const at::Tensor& grad, const at::Tensor& rois, const at::Tensor& argmax,
                            const RoiParams& p, int64_t batch, int64_t channels, int64_t height, int64_t width) {
  TORCH_CHECK(grad.device().is_cpu() && rois.device().is_cpu(), "roi_backward_cpu: expected CPU tensors");
  const auto acc_type = at::toOpMathType(grad.scalar_type());
  at::Tensor gin = at::zeros({batch, height, width, channels}, grad.options().dtype(acc_type));
  check_roi_values_cpu(rois, batch, "mrcnn_lite::roi_backward");
  if (grad.numel() > 0 && gin.numel() > 0) {
    const at::Tensor g = grad.contiguous();
    const at::Tensor r = rois.contiguous();
    const at::Tensor a = argmax.contiguous();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_backward_cpu", [&] {
      backward_kernel<scalar_t>(g.const_data_ptr<scalar_t>(), r.const_data_ptr<scalar_t>(),
                                p.max_mode ? a.const_data_ptr<int32_t>() : nullptr,
                                gin.mutable_data_ptr<at::opmath_type<scalar_t>>(), rois.size(0), channels, height,
                                width, p);
    });
  }
  return gin.permute({0, 3, 1, 2}).contiguous().to(grad.scalar_type());
}

}  // namespace mrcnn_lite
