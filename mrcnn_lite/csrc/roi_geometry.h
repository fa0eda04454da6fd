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
#include <stdint.h>

namespace mrcnn_lite {

// Largest sample grid per bin and axis. The adaptive grid (sampling_ratio <= 0) is
// min(ceil(roi size / pooled size), kMaxSamplingGrid), and an explicit sampling_ratio above it is rejected, so
// a huge box (1e30) costs at most 256 x 256 samples per bin instead of looping practically forever. A 7-bin
// axis reaches the cap only for boxes wider than 1792 feature cells.
constexpr int kMaxSamplingGrid = 256;
// RoIPool's rounded box edges are clamped to +-2^28 cells before the integer cast (C's cast of a float beyond
// INT_MAX is undefined behaviour); only boxes far larger than any feature map are affected.
constexpr double kMaxPoolCoord = 268435456.0;

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
  if (sampling_ratio > 0) {
    a.grid = sampling_ratio < kMaxSamplingGrid ? sampling_ratio : kMaxSamplingGrid;
  } else {  // clamp in floating point first: casting a NaN or a huge value to int is undefined behaviour
    const T g = ceil_c(length / static_cast<T>(pooled));
    a.grid = !(g > T(0)) ? 0 : (g < static_cast<T>(kMaxSamplingGrid) ? static_cast<int>(g) : kMaxSamplingGrid);
  }
  return a;
}

// Position of sample i of bin b.
template <typename T>
C10_HOST_DEVICE inline T sample_pos(const AlignAxis<T>& a, int b, int i) {
  return a.start + static_cast<T>(b) * a.bin + static_cast<T>(i + 0.5f) * a.bin / static_cast<T>(a.grid);
}

// Bilinear taps along one axis (torchvision's convention): outside [-1, size] -> both weights 0; else clamp
// to [0, size - 1] and split between the two neighbouring cells. A NaN position (a box whose scaled edges
// overflowed) and an empty axis (size 0) count as outside, so no cell is ever read out of bounds.
template <typename T>
C10_HOST_DEVICE inline void bilinear_axis(T pos, int size, int& lo, int& hi, T& w_lo, T& w_hi) {
  if (size <= 0 || !(pos >= T(-1) && pos <= static_cast<T>(size))) {
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
C10_HOST_DEVICE inline int pool_edge(T v) {  // round, then clamp to +-kMaxPoolCoord (NaN -> -kMaxPoolCoord)
  const T r = round_c(v);
  const T m = static_cast<T>(kMaxPoolCoord);
  return static_cast<int>(!(r > -m) ? -m : (r < m ? r : m));
}

template <typename T>
C10_HOST_DEVICE inline void pool_bin(T lo, T hi, T scale, int pooled, int b, int size, int& first, int& last) {
  const int start = pool_edge(lo * scale);
  const int end = pool_edge(hi * scale);
  const int length = end - start + 1 > 1 ? end - start + 1 : 1;
  const T bin = static_cast<T>(length) / static_cast<T>(pooled);
  first = static_cast<int>(floor_c(static_cast<T>(b) * bin)) + start;
  last = static_cast<int>(ceil_c(static_cast<T>(b + 1) * bin)) + start;
  first = first < 0 ? 0 : (first > size ? size : first);
  last = last < 0 ? 0 : (last > size ? size : last);
}

// Max mode's comparison, shared by the CPU and CUDA kernels: the first sample wins unless a later one is
// larger, or is NaN where the best so far is not. So a bin's max is torch.max over its samples (NaN propagates; all -inf
// gives -inf; the first maximum wins ties), and a bin without samples outputs 0 with argmax -1.
template <typename T>
C10_HOST_DEVICE inline bool max_better(T v, T best, int32_t arg) {
  return arg < 0 || v > best || (v != v && best == best);
}

}  // namespace mrcnn_lite
