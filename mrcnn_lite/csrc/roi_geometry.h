// RoI geometry shared by the CPU and CUDA kernels (host + device).
//
// Mask R-CNN §3 / Figure 3: a RoI is split into pooled_h x pooled_w bins. Three ways to read a bin:
//   * RoIAlign: real-valued box, each bin sampled at grid x grid sub-cell centres by bilinear interpolation;
//   * RoIWarp:  the same, after rounding the box edges to the feature grid (quantize_box);
//   * RoIPool:  rounded box, bins rounded by floor/ceil, max over the integer cells of the bin.
// Every formula here mirrors torchvision's kernels (and mrcnn_lite/ops/reference) operation by operation,
// so float32 results agree to rounding.
#pragma once

#include <c10/macros/Macros.h>

#include <math.h>

namespace mrcnn_lite {

// C's round/floor/ceil for float and double, callable on host and device.
C10_HOST_DEVICE inline float round_c(float v) { return roundf(v); }
C10_HOST_DEVICE inline double round_c(double v) { return round(v); }
C10_HOST_DEVICE inline float floor_c(float v) { return floorf(v); }
C10_HOST_DEVICE inline double floor_c(double v) { return floor(v); }
C10_HOST_DEVICE inline float ceil_c(float v) { return ceilf(v); }
C10_HOST_DEVICE inline double ceil_c(double v) { return ceil(v); }

// One axis of a RoIAlign/RoIWarp box: bin b's samples sit at start + b * bin + (i + 0.5) * bin / grid.
template <typename T>
struct AlignAxis {
  T start;
  T bin;
  int grid;  // samples per bin along this axis (>= 0)
};

template <typename T>
C10_HOST_DEVICE inline AlignAxis<T> align_axis(T lo, T hi, T scale, int pooled, int sampling_ratio,
                                               bool aligned, bool quantize_box) {
  const T offset = aligned ? T(0.5) : T(0);
  T start = lo * scale;
  T end = hi * scale;
  if (quantize_box) {  // RoIWarp: snap the box to the feature grid first
    start = round_c(start);
    end = round_c(end);
  }
  start -= offset;
  end -= offset;
  T length = end - start;
  if (!aligned && length < T(1)) length = T(1);  // the original RoIAlign keeps boxes >= 1 cell
  AlignAxis<T> a;
  a.start = start;
  a.bin = length / static_cast<T>(pooled);
  a.grid = sampling_ratio > 0 ? sampling_ratio : static_cast<int>(ceil_c(length / static_cast<T>(pooled)));
  if (a.grid < 0) a.grid = 0;
  return a;
}

// Position of sample i of bin b.
template <typename T>
C10_HOST_DEVICE inline T sample_pos(const AlignAxis<T>& a, int b, int i) {
  return a.start + static_cast<T>(b) * a.bin + static_cast<T>(i + 0.5f) * a.bin / static_cast<T>(a.grid);
}

// Bilinear taps along one axis (torchvision's convention): outside [-1, size] -> both weights 0; else clamp
// to [0, size - 1] and split between the two neighbouring cells.
template <typename T>
C10_HOST_DEVICE inline void bilinear_axis(T pos, int size, int& lo, int& hi, T& w_lo, T& w_hi) {
  if (pos < T(-1) || pos > static_cast<T>(size)) {
    lo = hi = 0;
    w_lo = w_hi = T(0);
    return;
  }
  if (pos <= T(0)) pos = T(0);
  lo = static_cast<int>(pos);
  if (lo >= size - 1) {
    lo = hi = size - 1;
    pos = static_cast<T>(lo);
  } else {
    hi = lo + 1;
  }
  w_hi = pos - static_cast<T>(lo);
  w_lo = T(1) - w_hi;
}

// RoIPool along one axis: the integer cells [first, last) of bin b (empty when last <= first).
template <typename T>
C10_HOST_DEVICE inline void pool_bin(T lo, T hi, T scale, int pooled, int b, int size, int& first, int& last) {
  const int start = static_cast<int>(round_c(lo * scale));
  const int end = static_cast<int>(round_c(hi * scale));
  const int length = end - start + 1 > 1 ? end - start + 1 : 1;
  const T bin = static_cast<T>(length) / static_cast<T>(pooled);
  first = static_cast<int>(floor_c(static_cast<T>(b) * bin)) + start;
  last = static_cast<int>(ceil_c(static_cast<T>(b + 1) * bin)) + start;
  first = first < 0 ? 0 : (first > size ? size : first);
  last = last < 0 ? 0 : (last > size ? size : last);
}

}  // namespace mrcnn_lite
