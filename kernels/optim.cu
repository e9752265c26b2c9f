// optim.cu: optimizer steps over all parameters in one launch (multi-tensor):
// SGD with momentum, Nesterov momentum and weight decay (torch.optim.SGD), and
// Adam / AdamW with bias correction and amsgrad (torch.optim.Adam, AdamW).
//
// Kernels (T = float as _f32, double as _f64; n tensors, total = offsets[n]):
//   optim_advance_T(double* GPUCNN_INOUT scal, double beta1, double beta2)   one thread
//   sgd_step_T (const unsigned long long* params, const unsigned long long* grads,
//               const long long* offsets, int n, T* GPUCNN_INOUT buf, const double* scal,
//               double momentum, double dampening, double weight_decay, int nesterov)
//   adam_step_T(const unsigned long long* params, const unsigned long long* grads,
//               const long long* offsets, int n, T* GPUCNN_INOUT m, T* GPUCNN_INOUT v,
//               T* GPUCNN_INOUT vmax, const double* scal, double beta1, double beta2,
//               double eps, double weight_decay, int decoupled, int amsgrad)
//   params, grads: (n,) device addresses of the parameters (updated in place)
//   and of their gradients, tensor k holding offsets[k+1] - offsets[k] elements;
//   buf, m, v, vmax: (total,) the optimizer state of every tensor, flat, tensor
//   k at offsets[k] (vmax is read only with amsgrad, buf only with momentum).
//   scal: (6,) doubles on the device: lr, steps done t, beta1^t, beta2^t,
//   lr / (1 - beta1^t), 1 / sqrt(1 - beta2^t).
//
// The host writes lr into scal when it changes; optim_advance counts the step
// and updates the rest before each step kernel. So a step launches the same
// arguments every time, reads nothing back and allocates nothing, and a
// captured CUDA graph replays with the current step and learning rate.
// beta^t is a running product rather than pow(): the same bits on every
// backend and no double-precision library call.
//
// Element f of the flat range is handled by thread f mod stride, whichever
// tensor holds it, so small tensors (biases, batch-norm weights) spread over
// the grid instead of queuing on its first threads. Each element is updated
// by one thread with no reduction: the result does not depend on the grid.
#include "common.cuh"

template <typename T, typename F>
__device__ __forceinline__ void for_each_element(const unsigned long long* __restrict__ params,
                                                 const unsigned long long* __restrict__ grads,
                                                 const long long* __restrict__ offsets, int n, F f) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    const long long self = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    for (int k = 0; k < n; ++k) {
        const long long lo = offsets[k], hi = offsets[k + 1];
        T* p = reinterpret_cast<T*>(params[k]);
        const T* g = reinterpret_cast<const T*>(grads[k]);
        // The first flat index >= lo that is congruent to self modulo stride.
        for (long long e = lo + ((self - lo % stride) % stride + stride) % stride; e < hi; e += stride)
            f(p[e - lo], g[e - lo], e);
    }
}

template <typename T> struct SgdUpdate {
    T* buf;
    T lr, momentum, damp, wd;
    bool first, nesterov;
    __device__ __forceinline__ void operator()(T& p, T g, long long e) const {
        if (wd != T(0)) g += wd * p;
        if (momentum != T(0)) {
            // torch starts the buffer at the first gradient, undamped.
            const T b = first ? g : buf[e] * momentum + g * (T(1) - damp);
            buf[e] = b;
            g = nesterov ? g + momentum * b : b;
        }
        p -= lr * g;
    }
};

template <typename T> struct AdamUpdate {
    T *m, *v, *vmax;
    T lr, step_size, inv_bc2_sqrt, b1, b2, eps, wd;
    bool decoupled, amsgrad;
    __device__ __forceinline__ void operator()(T& p, T g, long long e) const {
        if (wd != T(0)) {
            if (decoupled) p *= T(1) - lr * wd;  // AdamW: decay the weight, not the gradient
            else g += wd * p;
        }
        const T mi = m[e] + (T(1) - b1) * (g - m[e]);  // torch's lerp(m, g, 1 - beta1)
        const T vi = v[e] * b2 + (T(1) - b2) * g * g;
        m[e] = mi;
        v[e] = vi;
        T second = vi;
        if (amsgrad) {
            second = vmax[e] > vi ? vmax[e] : vi;
            vmax[e] = second;
        }
        p -= step_size * (mi / (sqrt(second) * inv_bc2_sqrt + eps));
    }
};

__device__ void advance(double* scal, double beta1, double beta2) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    scal[1] += 1.0;
    scal[2] *= beta1;
    scal[3] *= beta2;
    scal[4] = scal[0] / (1.0 - scal[2]);
    scal[5] = rsqrt(1.0 - scal[3]);
}

template <typename T>
__device__ void sgd(const unsigned long long* params, const unsigned long long* grads, const long long* offsets,
                    int n, T* buf, const double* scal, double momentum, double dampening, double weight_decay,
                    int nesterov) {
    const SgdUpdate<T> f{buf, (T)scal[0], (T)momentum, (T)dampening, (T)weight_decay, scal[1] == 1.0,
                         nesterov != 0};
    for_each_element<T>(params, grads, offsets, n, f);
}

template <typename T>
__device__ void adam(const unsigned long long* params, const unsigned long long* grads, const long long* offsets,
                     int n, T* m, T* v, T* vmax, const double* scal, double beta1, double beta2, double eps,
                     double weight_decay, int decoupled, int amsgrad) {
    const AdamUpdate<T> f{m, v, vmax, (T)scal[0], (T)scal[4], (T)scal[5], (T)beta1, (T)beta2, (T)eps,
                          (T)weight_decay, decoupled != 0, amsgrad != 0};
    for_each_element<T>(params, grads, offsets, n, f);
}

extern "C" __global__ void optim_advance_f32(double* GPUCNN_INOUT scal, double beta1, double beta2) {
    advance(scal, beta1, beta2);
}
extern "C" __global__ void optim_advance_f64(double* GPUCNN_INOUT scal, double beta1, double beta2) {
    advance(scal, beta1, beta2);
}

#define SGD_PARAMS(T)                                                                                   \
    const unsigned long long *__restrict__ params, const unsigned long long *__restrict__ grads,      \
        const long long *__restrict__ offsets, int n, T *GPUCNN_INOUT __restrict__ buf,                \
        const double *__restrict__ scal, double momentum, double dampening, double weight_decay, int nesterov
#define ADAM_PARAMS(T)                                                                                  \
    const unsigned long long *__restrict__ params, const unsigned long long *__restrict__ grads,      \
        const long long *__restrict__ offsets, int n, T *GPUCNN_INOUT __restrict__ m,                  \
        T *GPUCNN_INOUT __restrict__ v, T *GPUCNN_INOUT __restrict__ vmax, const double *__restrict__ scal, \
        double beta1, double beta2, double eps, double weight_decay, int decoupled, int amsgrad

extern "C" __global__ void sgd_step_f32(SGD_PARAMS(float)) {
    sgd(params, grads, offsets, n, buf, scal, momentum, dampening, weight_decay, nesterov);
}
extern "C" __global__ void sgd_step_f64(SGD_PARAMS(double)) {
    sgd(params, grads, offsets, n, buf, scal, momentum, dampening, weight_decay, nesterov);
}
extern "C" __global__ void adam_step_f32(ADAM_PARAMS(float)) {
    adam(params, grads, offsets, n, m, v, vmax, scal, beta1, beta2, eps, weight_decay, decoupled, amsgrad);
}
extern "C" __global__ void adam_step_f64(ADAM_PARAMS(double)) {
    adam(params, grads, offsets, n, m, v, vmax, scal, beta1, beta2, eps, weight_decay, decoupled, amsgrad);
}
