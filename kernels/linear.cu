// linear.cu: the fully connected layer (seed §4 with filters that cover the
// whole input, so φ(x) = x) as three GEMMs on gemm.cuh's tiles.
//
// Kernels (T = float as _f32, double as _f64; R = rows of x, leading axes flattened):
//   linear_forward_T        (const T* x, const T* w, const T* b, T* y, int R, int I, int O)
//                             x: (R,I)  w: (O,I)  b: (O,)  y: (R,O)
//   linear_backward_data_T  (const T* dy, const T* w, T* dx, int R, int I, int O)
//                             dy: (R,O)  dx: (R,I)
//   linear_backward_weight_T(const T* dy, const T* x, T* out, int R, int I, int O, int chunk, int splits)
//                             out: (splits,O,I), partial sums over row chunks
//   linear_sum_splits_T     (const T* part, T* dw, long long n, int splits)   part: (splits,n)  dw: (n,)
//   linear_backward_bias_T  (const T* dy, T* db, int R, int O)                db: (O,)
// Element counts fit in int (checked by gpucnn/cuda/linear.py).
//
// The GEMMs (tile rows on grid y, tile columns on grid x):
//   forward          Y[r, o]  = sum over i of x[r, i] W[o, i]   + b[o]   (both operands along k)
//   backward-data    dX[r, i] = sum over o of dY[r, o] W[o, i]
//   backward-weight  dW[o, i] = sum over r of dY[r, o] x[r, i]           (both operands across k)
// The weight gradient's reduction over R is split into chunks run by separate
// blocks (grid z), each writing its own partial tile, added in split order by
// linear_sum_splits: bitwise reproducible with no atomics, as conv2d's filter gradient.
#include "common.cuh"
#include "gemm.cuh"
#include "tc_gemm.cuh"

#define DIMS int R, int I, int O
#define DIMS_ARGS R, I, O

// An operand's element (mn, k) of a row-major matrix p whose rows are k ...
template <typename T> struct AlongK {  // ... p[mn * ld + k]
    enum { ALONG_K = 1 };
    const T* p;
    int ld;
    typedef const T* H;  // row m (a pointer: the tensor-core tile adds k with one IMAD.WIDE)
    __device__ H at(int m) const { return p + (long long)m * ld; }
    __device__ const T* at(H h, int k) const { return h + k; }
    __device__ bool runs() const { return ld % 4 == 0 && aligned16(p); }  // tc_gemm.cuh's TcRuns
};

// ... or whose rows are mn: p[k * ld + mn].
template <typename T> struct AcrossK {
    enum { ALONG_K = 0 };
    const T* p;
    int ld;
    typedef int H;
    __device__ H at(int m) const { return m; }
    __device__ const T* at(H h, int k) const { return p + (long long)k * ld + h; }
};

// The GEMM of A (rows m) and B (columns n), each a plain row-major matrix
// seen one of the two ways above.
template <typename T, typename SA, typename SB> struct MatOp {
    SA sa;
    SB sb;
    int M, N;
    enum { A_ALONG_K = SA::ALONG_K, B_ALONG_K = SB::ALONG_K };
    enum { A_RUNS = SA::ALONG_K, B_RUNS = SB::ALONG_K };  // rows are contiguous (tc_gemm.cuh's TcRuns)
    typedef typename SA::H Row;
    typedef typename SB::H Col;
    __device__ Row row(int m) const { return sa.at(m); }
    __device__ Col col(int n) const { return sb.at(n); }
    __device__ const T* pa(Row r, int k) const { return sa.at(r, k); }
    __device__ const T* pb(Col c, int k) const { return sb.at(c, k); }
    __device__ bool a_runs() const { return sa.runs(); }  // called only where A_RUNS
    __device__ bool b_runs() const { return sb.runs(); }
    __device__ T a(Row r, int k) const { return *pa(r, k); }
    __device__ T b(Col c, int k) const { return *pb(c, k); }
};

// ------------------------------------------------------------------- forward

// run(op, kbeg, kend, store): the block tile, FFMA (GemmRun) or tensor-core (TcRun).
template <typename T, typename Run>
__device__ void linear_fwd(Run run, const T* __restrict__ x, const T* __restrict__ w,
                           const T* __restrict__ b, T* __restrict__ y, DIMS) {
    // B[k, o] = W[o, k]: w's rows read along k, like x's.
    const MatOp<T, AlongK<T>, AlongK<T>> op{{x, I}, {w, I}, R, O};
    run(op, 0, I, [&](int r, int o, T v) { y[(long long)r * O + o] = v + b[o]; });
}

// ------------------------------------------------------------------ backward

template <typename T, typename Run>
__device__ void linear_bwd_data(Run run, const T* __restrict__ dy, const T* __restrict__ w,
                                T* __restrict__ dx, DIMS) {
    // B[k, i] = W[k, i] is w itself: neighbouring columns are neighbours.
    const MatOp<T, AlongK<T>, AcrossK<T>> op{{dy, O}, {w, I}, R, I};
    run(op, 0, O, [&](int r, int i, T v) { dx[(long long)r * I + i] = v; });
}

// Grid z runs over splits; split s reduces rows [s*chunk, min((s+1)*chunk, R)) into out[s].
template <typename T, typename Run>
__device__ void linear_bwd_weight(Run run, const T* __restrict__ dy, const T* __restrict__ x,
                                  T* __restrict__ out, DIMS, int chunk, int splits) {
    // A[o, r] = dY[r, o] and B[r, i] = x[r, i]: both read across k (rows of dy and x).
    const MatOp<T, AcrossK<T>, AcrossK<T>> op{{dy, O}, {x, I}, O, I};
    for (int s = blockIdx.z; s < splits; s += gridDim.z) {
        const int kbeg = s * chunk, kend = min(R, kbeg + chunk);
        T* part = out + (long long)s * O * I;
        run(op, kbeg, kend, [&](int o, int i, T v) { part[(long long)o * I + i] = v; });
    }
}

// ------------------------------------------------------------ entry points

#if TC_PART_BASE  // the kernels without tensor cores: one part on a GPU (tc_gemm.cuh)
GEMM_KERNEL linear_forward_f32(const float* __restrict__ x, const float* __restrict__ w,
                               const float* __restrict__ b, float* __restrict__ y, DIMS) {
    __shared__ GemmSmem<float> sm;
    linear_fwd(gemm_run<float>(sm), x, w, b, y, DIMS_ARGS);
}
GEMM_KERNEL linear_forward_f64(const double* __restrict__ x, const double* __restrict__ w,
                               const double* __restrict__ b, double* __restrict__ y, DIMS) {
    __shared__ GemmSmem<double> sm;
    linear_fwd(gemm_run<double>(sm), x, w, b, y, DIMS_ARGS);
}
GEMM_KERNEL linear_backward_data_f32(const float* __restrict__ dy, const float* __restrict__ w,
                                     float* __restrict__ dx, DIMS) {
    __shared__ GemmSmem<float> sm;
    linear_bwd_data(gemm_run<float>(sm), dy, w, dx, DIMS_ARGS);
}
GEMM_KERNEL linear_backward_data_f64(const double* __restrict__ dy, const double* __restrict__ w,
                                     double* __restrict__ dx, DIMS) {
    __shared__ GemmSmem<double> sm;
    linear_bwd_data(gemm_run<double>(sm), dy, w, dx, DIMS_ARGS);
}
GEMM_KERNEL linear_backward_weight_f32(const float* __restrict__ dy, const float* __restrict__ x,
                                       float* __restrict__ out, DIMS, int chunk, int splits) {
    __shared__ GemmSmem<float> sm;
    linear_bwd_weight(gemm_run<float>(sm), dy, x, out, DIMS_ARGS, chunk, splits);
}
GEMM_KERNEL linear_backward_weight_f64(const double* __restrict__ dy, const double* __restrict__ x,
                                       double* __restrict__ out, DIMS, int chunk, int splits) {
    __shared__ GemmSmem<double> sm;
    linear_bwd_weight(gemm_run<double>(sm), dy, x, out, DIMS_ARGS, chunk, splits);
}
extern "C" __global__ void linear_sum_splits_f32(const float* __restrict__ part, float* __restrict__ dw,
                                                 long long n, int splits) {
    sum_splits(part, dw, n, splits);
}
extern "C" __global__ void linear_sum_splits_f64(const double* __restrict__ part, double* __restrict__ dw,
                                                 long long n, int splits) {
    sum_splits(part, dw, n, splits);
}
// db[o] = sum over r of dy[r, o]: bias_grad with one pixel per "image".
extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
linear_backward_bias_f32(const float* __restrict__ dy, float* __restrict__ db, int R, int O) {
    __shared__ float part[GEMM_THREADS];
    bias_grad(part, dy, db, R, O, 1);
}
extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
linear_backward_bias_f64(const double* __restrict__ dy, double* __restrict__ db, int R, int O) {
    __shared__ double part[GEMM_THREADS];
    bias_grad(part, dy, db, R, O, 1);
}
#endif

// Tensor-core float kernels: the same bodies on tc_gemm.cuh's tiles (see TC_VARIANTS for the names).
#if TC_AVAILABLE
// Blocks per SM (TC_KERNEL): 3xTF32's 128 tile spills at 2 (128 registers); the weight gradient's 64 tile
// asks for 3 (170 registers: its tf32 kernel fits in 168, where unbounded it took 176 and 2 blocks).
#define LINEAR_TC(SFX, MODE, TILE)                                                                              \
    TC_KERNEL(TILE, MODE == TC_TF32 ? 2 : 1) linear_forward_##SFX(const float* __restrict__ x, const float* __restrict__ w,             \
                                         const float* __restrict__ b, float* __restrict__ y, DIMS) {            \
        linear_fwd(TcRun<MODE, TILE>{}, x, w, b, y, DIMS_ARGS);                                                 \
    }                                                                                                           \
    TC_KERNEL(TILE, MODE == TC_TF32 ? 2 : 1) linear_backward_data_##SFX(const float* __restrict__ dy, const float* __restrict__ w,      \
                                               float* __restrict__ dx, DIMS) {                                  \
        linear_bwd_data(TcRun<MODE, TILE>{}, dy, w, dx, DIMS_ARGS);                                             \
    }                                                                                                           \
    TC_KERNEL(TILE, TILE::THREADS == 128 ? 3 : 1) linear_backward_weight_##SFX(const float* __restrict__ dy, const float* __restrict__ x,    \
                                                 float* __restrict__ out, DIMS, int chunk, int splits) {        \
        linear_bwd_weight(TcRun<MODE, TILE>{}, dy, x, out, DIMS_ARGS, chunk, splits);                           \
    }
TC_VARIANTS(LINEAR_TC)
#endif
