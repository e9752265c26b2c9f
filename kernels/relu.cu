// relu.cu: the ReLU layer (seed §7) and its leaky variant, and the elementwise
// sum of a residual connection (same memory-bound map).
//
// Kernels (T = float as _f32, double as _f64; n = number of elements):
//   relu_forward_T (const T* x, T* y, long long n, T slope)            x, y: (n,)
//   relu_backward_T(const T* dy, const T* x, T* dx, long long n, T slope)  dy, x, dx: (n,)
//   add_T(const T* a, const T* b, T* out, long long n)                 a, b, out: (n,)
//   add_relu_T(const T* a, const T* b, T* out, long long n)            a, b, out: (n,)
//
// y = x where x > 0, else slope * x; slope == 0 is torch.relu, which lets NaN
// through and maps -inf to 0 (slope * -inf would be NaN). dx = dy where x > 0,
// else slope * dy (the gradient at 0 is the negative side's, as in torch);
// with slope 0, dx = 0 where x <= 0, else dy (torch's threshold_backward).
// One read and one write per element, 16 bytes per access when aligned.
#include "common.cuh"

template <typename T> struct ReluFwd {
    T slope;
    __device__ __forceinline__ T operator()(T x, T) const {
        if (x > T(0) || is_nan(x)) return x;
        return slope == T(0) ? T(0) : x * slope;
    }
};

template <typename T> struct ReluBwd {
    T slope;
    // slope 0 is torch's threshold_backward (x <= 0 ? 0 : dy): a NaN x passes dy
    // and a blocked inf gives 0, where dy * 0 would give NaN.
    __device__ __forceinline__ T operator()(T dy, T x) const {
        if (slope == T(0)) return x <= T(0) ? T(0) : dy;
        return x > T(0) ? dy : dy * slope;
    }
};

template <typename T> struct Add {
    __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};

// torch.relu(a + b): a residual block's sum and the ReLU after it in one pass.
template <typename T> struct AddRelu {
    __device__ __forceinline__ T operator()(T a, T b) const { return ReluFwd<T>{T(0)}(a + b, T(0)); }
};

// out[i] = f(a[i], b[i]) for i < n: a 16-byte vector loop over the aligned
// bulk, then a scalar loop over the tail (or over everything if unaligned).
template <typename T, typename F>
__device__ __forceinline__ void map2(const T* __restrict__ a, const T* __restrict__ b,
                                     T* __restrict__ out, long long n, F f) {
    typedef typename Vec16<T>::type V;
    const int L = Vec16<T>::n;
    long long done = 0;
    if (aligned16(a) && aligned16(b) && aligned16(out)) {
        const long long nv = n / L;
        const V* av = reinterpret_cast<const V*>(a);
        const V* bv = reinterpret_cast<const V*>(b);
        V* ov = reinterpret_cast<V*>(out);
        GRID_STRIDE_LOOP(i, nv) {
            V va = av[i], vb = bv[i], r;
            const T* ea = reinterpret_cast<const T*>(&va);
            const T* eb = reinterpret_cast<const T*>(&vb);
            T* er = reinterpret_cast<T*>(&r);
#pragma unroll
            for (int k = 0; k < L; ++k) er[k] = f(ea[k], eb[k]);
            ov[i] = r;
        }
        done = nv * L;
    }
    GRID_STRIDE_LOOP(i, n - done) { out[done + i] = f(a[done + i], b[done + i]); }
}

extern "C" __global__ void relu_forward_f32(const float* __restrict__ x, float* __restrict__ y,
                                            long long n, float slope) {
    map2(x, x, y, n, ReluFwd<float>{slope});
}
extern "C" __global__ void relu_forward_f64(const double* __restrict__ x, double* __restrict__ y,
                                            long long n, double slope) {
    map2(x, x, y, n, ReluFwd<double>{slope});
}

extern "C" __global__ void relu_backward_f32(const float* __restrict__ dy, const float* __restrict__ x,
                                             float* __restrict__ dx, long long n, float slope) {
    map2(dy, x, dx, n, ReluBwd<float>{slope});
}
extern "C" __global__ void relu_backward_f64(const double* __restrict__ dy, const double* __restrict__ x,
                                             double* __restrict__ dx, long long n, double slope) {
    map2(dy, x, dx, n, ReluBwd<double>{slope});
}

// out[i] = F(a[i], b[i]): the float and double entry points of a map with no
// parameter.
#define MAP2_KERNELS(name, F)                                                                 \
    extern "C" __global__ void name##_f32(const float* __restrict__ a, const float* __restrict__ b, \
                                          float* __restrict__ out, long long n) {              \
        map2(a, b, out, n, F<float>{});                                                        \
    }                                                                                          \
    extern "C" __global__ void name##_f64(const double* __restrict__ a, const double* __restrict__ b, \
                                          double* __restrict__ out, long long n) {             \
        map2(a, b, out, n, F<double>{});                                                       \
    }

// out = a + b: Residual's forward (block(x) + shortcut(x)) and backward (the
// two branches' input gradients), so that a captured step holds it too.
MAP2_KERNELS(add, Add)

// out = relu(a + b): a residual block's sum and the ReLU that follows it
// (Sequential fuses the pair), one pass instead of two.
MAP2_KERNELS(add_relu, AddRelu)
