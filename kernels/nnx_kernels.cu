// CUDA kernels for the nnx CuPy backend, compiled at run time by cupy.RawModule (NVRTC).
// No CUDA headers are needed. Every kernel is a template instantiated for float and double
// through RawModule's name_expressions. Arrays are C-contiguous; the Python wrappers in
// nnx/backends/cupy_backend.py check dtype, contiguity and shape before each launch.
//
// Activation codes NNX_ACT_* and loss codes NNX_LOSS_* are macros given at compile time
// (-DNNX_ACT_SIGMOID=1, ...) from nnx/backends/codes.py, the one place they are defined.
//
// NaN and infinities go through every kernel as through the NumPy backend (tested on the
// CPU emulation): max(v, 0) keeps a NaN (as np.maximum does, unlike fmax or v > 0 ? v : 0),
// relu's gradient multiplies by 0 or 1 (a NaN or infinite dA stays NaN where A <= 0, as
// dA * (A > 0) does), and sums are scaled by 1/m before they are added, as NumPy scales dZ.
// CuPy compiles with -ftz=true: float (not double) arithmetic flushes denormals to zero.

// max(v, 0) that propagates NaN, as np.maximum(v, 0) does.
template <typename T>
__device__ __forceinline__ T nnx_relu(T v) {
    return v <= T(0) ? T(0) : v;
}

// Multiply, add and subtract, each rounded on its own, as NumPy and PyTorch round them:
// NVRTC contracts a * b + c into one fma (one rounding) by default, which the kernels that
// promise NumPy's rounding (act_backward, the optimizer steps) must not do (CUDA never merges __fmul_rn / __fadd_rn into an fma).
// tests/backends/test_gpu_readiness.py reads the PTX of every kernel in
// cuda_launch.NUMPY_ROUNDING_KERNELS and fails on an fma.
__device__ __forceinline__ float nnx_mul(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double nnx_mul(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float nnx_add(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double nnx_add(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ float nnx_sub(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ double nnx_sub(double a, double b) { return __dsub_rn(a, b); }

template <typename T>
__device__ __forceinline__ T nnx_sigmoid(T z) {
    // exp is only ever taken of -|z|: finite for every finite logit
    if (z >= T(0)) {
        return T(1) / (T(1) + exp(-z));
    }
    T e = exp(z);
    return e / (T(1) + e);
}

template <typename T>
__device__ __forceinline__ T nnx_activate(T v, int act) {
    if (act == NNX_ACT_SIGMOID) return nnx_sigmoid(v);
    if (act == NNX_ACT_RELU) return nnx_relu(v);
    if (act == NNX_ACT_TANH) return tanh(v);
    return v;
}

// Z (n, m) <- act(Z + b), b (n, 1) broadcast over columns.
template <typename T>
__global__ void bias_act(T* Z, const T* b, long long n, long long m, int act) {
    long long size = n * m;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < size;
         i += (long long)blockDim.x * gridDim.x) {
        Z[i] = nnx_activate(Z[i] + b[i / m], act);
    }
}

// dA <- dA * act'(Z), written with the activation's output A.
template <typename T>
__global__ void act_backward(T* dA, const T* A, long long size, int act) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < size;
         i += (long long)blockDim.x * gridDim.x) {
        T a = A[i];
        if (act == NNX_ACT_SIGMOID) dA[i] = nnx_mul(dA[i], nnx_mul(a, nnx_sub(T(1), a)));
        else if (act == NNX_ACT_RELU) dA[i] *= a > T(0) ? T(1) : T(0);  // as dA * (A > 0): NaN * 0 is NaN
        else if (act == NNX_ACT_TANH) dA[i] = nnx_mul(dA[i], nnx_sub(T(1), nnx_mul(a, a)));
    }
}

template <typename T>
__global__ void sigmoid_inplace(T* Z, long long size) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < size;
         i += (long long)blockDim.x * gridDim.x) {
        Z[i] = nnx_sigmoid(Z[i]);
    }
}

// Per-example loss, d loss / dz, and whether the prediction is right.
template <typename T>
__device__ __forceinline__ void nnx_example(double z, double y, int loss_code,
                                            double* loss, double* dz, double* ok) {
    if (loss_code == NNX_LOSS_BCE) {
        double e = exp(-fabs(z));
        *loss = nnx_relu(z) - z * y + log1p(e);
        double s = z >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
        *dz = s - y;
        *ok = ((z > 0.0) == (y > 0.5)) ? 1.0 : 0.0;
    } else {
        double a = nnx_sigmoid(z);
        double d = a - y;
        *loss = 0.5 * d * d;
        *dz = d * a * (1.0 - a);
        *ok = ((a > 0.5) == (y > 0.5)) ? 1.0 : 0.0;
    }
}

// Deterministic block sum of one double per thread (fixed shuffle + shared-memory order).
// Every thread gets the total. `scratch` holds at least 32 doubles.
__device__ __forceinline__ double nnx_block_sum(double v, double* scratch) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();  // scratch may still be read from the previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    double total = 0.0;
    int warps = (blockDim.x + 31) >> 5;
    for (int w = 0; w < warps; ++w) total += scratch[w];
    return total;
}

// BCE from logits: dZ = (sigmoid(Z) - Y) / m; per-block partial (loss, correct) sums.
template <typename T>
__global__ void bce_logits(const T* Z, const T* Y, T* dZ, long long m, double* partial) {
    __shared__ double scratch[32];
    double loss = 0.0, correct = 0.0, inv_m = 1.0 / (double)m;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < m;
         i += (long long)blockDim.x * gridDim.x) {
        double l, d, ok;
        nnx_example<T>((double)Z[i], (double)Y[i], 0, &l, &d, &ok);
        loss += l * inv_m;
        correct += ok;
        dZ[i] = (T)(d * inv_m);
    }
    loss = nnx_block_sum(loss, scratch);
    correct = nnx_block_sum(correct, scratch);
    if (threadIdx.x == 0) {
        partial[2 * blockIdx.x] = loss;
        partial[2 * blockIdx.x + 1] = correct;
    }
}

// Raw X words as loaded: VEC consecutive elements of type XT (a uchar4 for 4 pixels).
template <typename XT, int VEC> struct nnx_raw { XT v[VEC]; };
template <> struct nnx_raw<unsigned char, 4> { uchar4 q; };

// Loads the VEC elements starting at element j (zeros past n) without converting them, so
// a load can be issued early and stay in flight while the block does other work.
template <typename XT, int VEC>
__device__ __forceinline__ nnx_raw<XT, VEC> nnx_load_raw(const XT* row, long long j, long long n) {
    nnx_raw<XT, VEC> r;
#pragma unroll
    for (int v = 0; v < VEC; ++v) r.v[v] = (j + v < n) ? row[j + v] : XT(0);
    return r;
}

template <>
__device__ __forceinline__ nnx_raw<unsigned char, 4> nnx_load_raw<unsigned char, 4>(const unsigned char* row,
                                                                                    long long j, long long n) {
    nnx_raw<unsigned char, 4> r;
    if (j + 4 <= n) {  // one 4-byte load: rows start on 4-byte boundaries (the plan checks X's address and n)
        r.q = *reinterpret_cast<const uchar4*>(row + j);
    } else {
        r.q.x = j < n ? row[j] : 0;
        r.q.y = j + 1 < n ? row[j + 1] : 0;
        r.q.z = j + 2 < n ? row[j + 2] : 0;
        r.q.w = 0;
    }
    return r;
}

// Element v of a raw word, converted to the compute type.
template <typename T, typename XT, int VEC>
__device__ __forceinline__ T nnx_elem(const nnx_raw<XT, VEC>& r, int v) {
    return (T)r.v[v];
}

// A byte (0..255) as float or double, exactly: the byte becomes the low mantissa bits of
// 2^23 (2^52), which is then subtracted. An integer add and a float add, both full-rate,
// where (float)byte is a conversion instruction that sm_90 issues at a quarter of the rate.
template <typename T>
__device__ __forceinline__ T nnx_from_byte(unsigned byte);

template <>
__device__ __forceinline__ float nnx_from_byte<float>(unsigned byte) {
    return __uint_as_float(0x4B000000u | byte) - 8388608.0f;
}

template <>
__device__ __forceinline__ double nnx_from_byte<double>(unsigned byte) {
    return __hiloint2double(0x43300000, (int)byte) - 4503599627370496.0;
}

template <>
__device__ __forceinline__ float nnx_elem<float, unsigned char, 4>(const nnx_raw<unsigned char, 4>& r, int v) {
    return nnx_from_byte<float>(v == 0 ? r.q.x : v == 1 ? r.q.y : v == 2 ? r.q.z : r.q.w);
}

template <>
__device__ __forceinline__ double nnx_elem<double, unsigned char, 4>(const nnx_raw<unsigned char, 4>& r, int v) {
    return nnx_from_byte<double>(v == 0 ? r.q.x : v == 1 ? r.q.y : v == 2 ? r.q.z : r.q.w);
}

// Adds one example's (loss / m, dz, correct) at logit z to a logreg block's running sums
// (every thread keeps the same ones); returns its dz / m in the compute type, the factor
// of x in dw. Loss and dz are scaled by 1/m before they are summed, as the NumPy backend
// scales them: m terms near the largest float then add up to no more than it.
template <typename T>
__device__ __forceinline__ T nnx_add_example(double z, double y, int loss_code, double inv_m, double* sums) {
    double l, d, ok;
    nnx_example<T>(z, y, loss_code, &l, &d, &ok);
    sums[0] += l * inv_m;
    sums[1] += d;
    sums[2] += ok;
    return (T)(d * inv_m);
}

// Whether X holds raw pixels (scaled by 1/255 in the kernel) rather than floats.
template <typename XT> struct nnx_is_byte { static const bool value = false; };
template <> struct nnx_is_byte<unsigned char> { static const bool value = true; };

// False for inf and NaN (no header needed: x - x is 0 exactly for every finite x).
template <typename T>
__device__ __forceinline__ bool nnx_finite(T x) {
    return x - x == T(0);
}

// Deterministic block sums of EX doubles per thread at once (one pair of barriers for all),
// in two parts: nnx_warp_sums leaves each warp's sums in `scratch` (at least 32 * EX
// doubles), nnx_scratch_total(scratch, k) then gives any thread total k, until the next
// nnx_warp_sums; nnx_block_sums gives every thread all EX totals. With RUN and `live`, v
// is EX / RUN runs of RUN values of which only the first `live` of each are summed (the
// classes softmax_pass has, of the KMAX it is built for): the others are left alone, and
// cost no shuffle.
template <int EX, int RUN = EX>
__device__ __forceinline__ void nnx_warp_sums(double* v, double* scratch, int live = RUN) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int k = 0; k < EX; ++k)
        if (k % RUN < live)  // the same for the whole block
            for (int off = 16; off > 0; off >>= 1) v[k] += __shfl_down_sync(0xffffffffu, v[k], off);
    __syncthreads();  // scratch may still be read from the previous call
    if (lane == 0) {
#pragma unroll
        for (int k = 0; k < EX; ++k)
            if (k % RUN < live) scratch[k * 32 + warp] = v[k];
    }
    __syncthreads();
}

__device__ __forceinline__ double nnx_scratch_total(const double* scratch, int k) {
    int warps = (blockDim.x + 31) >> 5;
    double total = 0.0;
    for (int w = 0; w < warps; ++w) total += scratch[k * 32 + w];
    return total;
}

template <int EX>
__device__ __forceinline__ void nnx_block_sums(double* v, double* scratch) {
    nnx_warp_sums<EX>(v, scratch);
#pragma unroll
    for (int k = 0; k < EX; ++k) v[k] = nnx_scratch_total(scratch, k);
}

// Single-pass logistic-regression epoch, part 1.
// Xt (m, n) row-major = example-contiguous X. Each block takes EX examples per step:
// examples s * gridDim.x * EX + blockIdx.x * EX + k, k < EX. Thread t holds elements
// j = (i * blockDim.x + t) * VEC + v (i < ITEMS) of those examples as raw loaded words
// and of its dw accumulator in registers (w comes through the read-only cache: 48 KB, it
// stays in L1). Each example is read from memory once: the EX dot products (block-reduced
// together to z), then dz, then dw += dz * x from the same registers. Several examples
// per step keep enough bytes in flight when rows are short in bytes (uint8 pixels).
// Per-block dw (G, n) (sums of dz / m * x) and (loss, dz sum, correct) (G, 3) partials
// go to global memory and are summed in a fixed order, in double, by logreg_update. The launch plan bounds
// the examples per block (cuda_launch.MAX_EXAMPLES_PER_BLOCK) so that each block's float
// sum of dz * x stays short.
// At most 512 threads: the compiler keeps <= 128 registers per thread (spilling the largest
// double-precision tiles to local memory rather than failing to launch).
template <typename T, typename XT, int VEC, int ITEMS, int EX>
__global__ void __launch_bounds__(512) logreg_pass(const XT* Xt, const T* w, const T* b, const T* y, long long m,
                            long long n, double scale, int loss_code, T* dw_partial,
                            double* stats_partial) {
    __shared__ double scratch[32 * EX];
    T acc[ITEMS * VEC];
    nnx_raw<XT, VEC> xr[EX][ITEMS];
#pragma unroll
    for (int k = 0; k < ITEMS * VEC; ++k) acc[k] = T(0);
    double sums[3] = {0.0, 0.0, 0.0};  // loss / m, dz, correct predictions
    const double inv_m = 1.0 / (double)m;  // b is read at each step (cached): a register pair less
    for (long long base = (long long)blockIdx.x * EX; base < m; base += (long long)gridDim.x * EX) {
#pragma unroll
        for (int x = 0; x < EX; ++x) {  // issue every load of the step before using any
            bool valid = base + x < m;  // the last step may have fewer than EX examples
            const XT* row = Xt + (valid ? base + x : 0) * n;
#pragma unroll
            for (int i = 0; i < ITEMS; ++i) {
                long long j = ((long long)i * blockDim.x + threadIdx.x) * VEC;
                xr[x][i] = nnx_load_raw<XT, VEC>(row, j, valid ? n : 0);  // zeros when not valid
            }
        }
        double z[EX];
#pragma unroll
        for (int x = 0; x < EX; ++x) {
            T part = T(0);
#pragma unroll
            for (int i = 0; i < ITEMS; ++i) {
                long long j = ((long long)i * blockDim.x + threadIdx.x) * VEC;
#pragma unroll
                for (int v = 0; v < VEC; ++v)
                    if (j + v < n) part += __ldg(w + j + v) * nnx_elem<T, XT, VEC>(xr[x][i], v);
            }
            z[x] = nnx_is_byte<XT>::value ? (double)part * scale : (double)part;  // scale: pixels only
            if (nnx_is_byte<XT>::value && !nnx_finite(part) && base + x < m) {
                // w within 255x of the largest float: w * pixel overflowed where NumPy's
                // w * (pixel / 255) does not. Redo this thread's share as NumPy does, from
                // memory (rare: the registers holding the row stay free for the fast path).
                const T s = (T)scale;
                const XT* row = Xt + (base + x) * n;
                part = T(0);
#pragma unroll 1
                for (int i = 0; i < ITEMS; ++i) {
#pragma unroll 1
                    for (int v = 0; v < VEC; ++v) {
                        long long j = ((long long)i * blockDim.x + threadIdx.x) * VEC + v;
                        if (j < n) part += __ldg(w + j) * ((T)row[j] * s);
                    }
                }
                z[x] = (double)part;
            }
        }
        nnx_block_sums<EX>(z, scratch);
#pragma unroll
        for (int x = 0; x < EX; ++x) {
            if (base + x >= m) break;  // the same for every thread of the block
            T dz = nnx_add_example<T>((double)((T)z[x] + __ldg(b)), (double)y[base + x], loss_code, inv_m,
                                      sums);
#pragma unroll
            for (int i = 0; i < ITEMS; ++i)
#pragma unroll
                for (int v = 0; v < VEC; ++v) acc[i * VEC + v] += dz * nnx_elem<T, XT, VEC>(xr[x][i], v);
        }
    }
    T* out = dw_partial + (long long)blockIdx.x * n;
#pragma unroll
    for (int i = 0; i < ITEMS; ++i) {
        long long j = ((long long)i * blockDim.x + threadIdx.x) * VEC;
#pragma unroll
        for (int v = 0; v < VEC; ++v)
            if (j + v < n) out[j + v] = acc[i * VEC + v];
    }
    if (threadIdx.x == 0) {
        for (int k = 0; k < 3; ++k) stats_partial[3 * blockIdx.x + k] = sums[k];
    }
}

// Asynchronous 16-byte copies from global to shared memory (cp.async, sm_80 and newer):
// copy, close the group of copies issued so far (commit), wait until at most `pending`
// groups are still in flight. The CPU emulation supplies its own versions.
#ifndef NNX_ASYNC_COPY_PROVIDED
#if __CUDA_ARCH__ >= 800
__device__ __forceinline__ void nnx_copy16_async(void* shared_dst, const void* global_src) {
    unsigned dst = (unsigned)__cvta_generic_to_shared(shared_dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(global_src) : "memory");
}
__device__ __forceinline__ void nnx_copy_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int PENDING>
__device__ __forceinline__ void nnx_copy_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(PENDING) : "memory");
}
#else  // older GPUs: a plain copy, complete when issued
__device__ __forceinline__ void nnx_copy16_async(void* shared_dst, const void* global_src) {
    *reinterpret_cast<uint4*>(shared_dst) = *reinterpret_cast<const uint4*>(global_src);
}
__device__ __forceinline__ void nnx_copy_commit() {}
template <int PENDING>
__device__ __forceinline__ void nnx_copy_wait() {}
#endif
#define NNX_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

// wait_group takes an immediate: one branch per pending count the launch plans use (< 8).
__device__ __forceinline__ void nnx_copy_wait_pending(int pending) {
    switch (pending) {
        case 0: nnx_copy_wait<0>(); break;
        case 1: nnx_copy_wait<1>(); break;
        case 2: nnx_copy_wait<2>(); break;
        case 3: nnx_copy_wait<3>(); break;
        case 4: nnx_copy_wait<4>(); break;
        case 5: nnx_copy_wait<5>(); break;
        case 6: nnx_copy_wait<6>(); break;
        default: nnx_copy_wait<7>(); break;
    }
}

// Element e of a 16-byte word holding 16 / sizeof(XT) elements of X, as T.
template <typename T, typename XT>
__device__ __forceinline__ T nnx_word_elem(const uint4& q, int e);

template <>
__device__ __forceinline__ float nnx_word_elem<float, float>(const uint4& q, int e) {
    return __uint_as_float(e == 0 ? q.x : e == 1 ? q.y : e == 2 ? q.z : q.w);
}

template <>
__device__ __forceinline__ double nnx_word_elem<double, double>(const uint4& q, int e) {
    return e == 0 ? __hiloint2double((int)q.y, (int)q.x) : __hiloint2double((int)q.w, (int)q.z);
}

template <>
__device__ __forceinline__ float nnx_word_elem<float, unsigned char>(const uint4& q, int e) {
    unsigned word = (e >> 2) == 0 ? q.x : (e >> 2) == 1 ? q.y : (e >> 2) == 2 ? q.z : q.w;
    return nnx_from_byte<float>((word >> (8 * (e & 3))) & 0xFFu);
}

// Thread t's words c = i * blockDim.x + t (i < WORDS, c < row_words) of `count` consecutive
// rows from example `first` on, copied asynchronously into `stage`, as one commit group
// (an empty group when count is 0, so every thread commits the same number of groups).
template <int WORDS>
__device__ __forceinline__ void nnx_stage_rows(uint4* stage, const uint4* rows, long long first, int count,
                                               long long row_words) {
    for (int x = 0; x < count; ++x) {
        const uint4* src = rows + (first + x) * row_words;
#pragma unroll
        for (int i = 0; i < WORDS; ++i) {
            long long c = (long long)i * blockDim.x + threadIdx.x;
            if (c < row_words) nnx_copy16_async(stage + x * row_words + c, src + c);
        }
    }
    nnx_copy_commit();
}

// Single-pass logistic-regression epoch, part 1, staged through shared memory. Same
// results and outputs as logreg_pass, for rows of n * sizeof(XT) bytes, a multiple of 16.
// Each block takes EX consecutive examples per step (examples base .. base + EX - 1,
// base = (s * gridDim.x + blockIdx.x) * EX). Their rows are copied into one of `stages`
// shared-memory stages by asynchronous copies issued stages - 1 steps ahead, so rows stay
// in flight while the block reduces z and updates dw, and no register holds a load. Thread
// t copies and later reads only its own 16-byte words c = i * blockDim.x + t of each row,
// so the stages need no barrier. dw for those words stays in registers, and w too where it
// fits beside it (float); double w comes through the read-only cache instead, as in
// logreg_pass. Dynamic shared memory: stages * EX * n * sizeof(XT) bytes.
template <typename T, typename XT, int WORDS, int EX>
__global__ void __launch_bounds__(512) logreg_staged(const XT* Xt, const T* w, const T* b, const T* y, long long m,
                                                     long long n, int stages, double scale, int loss_code,
                                                     T* dw_partial, double* stats_partial) {
    constexpr int E = 16 / sizeof(XT);  // elements per word
    constexpr bool w_in_registers = sizeof(T) * WORDS * E <= 128;  // more spills beside dw
    NNX_DYNAMIC_SHARED(uint4, staged);
    __shared__ double scratch[32 * EX];
    const long long row_words = n / E;
    const long long step_words = EX * row_words;
    const uint4* rows = reinterpret_cast<const uint4*>(Xt);
    T wr[WORDS * E], acc[WORDS * E];
#pragma unroll
    for (int i = 0; i < WORDS; ++i) {
        long long c = (long long)i * blockDim.x + threadIdx.x;
#pragma unroll
        for (int e = 0; e < E; ++e) {
            wr[i * E + e] = (w_in_registers && c < row_words) ? w[c * E + e] : T(0);
            acc[i * E + e] = T(0);
        }
    }
    const long long stride = (long long)gridDim.x * EX, first = (long long)blockIdx.x * EX;
    const long long steps = first < m ? (m - first + stride - 1) / stride : 0;
    for (int p = 0; p < stages - 1; ++p) {  // fill all stages but one
        long long base = first + p * stride;
        int count = p < steps ? (int)(m - base < EX ? m - base : EX) : 0;
        nnx_stage_rows<WORDS>(staged + p * step_words, rows, base, count, row_words);
    }
    double sums[3] = {0.0, 0.0, 0.0};  // loss / m, dz, correct predictions
    const double inv_m = 1.0 / (double)m;
    T bias = b[0];
    int reading = 0, filling = stages - 1;  // the stages of steps s and s + stages - 1
    for (long long s = 0; s < steps; ++s) {
        long long ahead = s + stages - 1, ahead_base = first + ahead * stride;
        int ahead_count = ahead < steps ? (int)(m - ahead_base < EX ? m - ahead_base : EX) : 0;
        // the stage refilled here was last read in step s - 1, by this same thread
        nnx_stage_rows<WORDS>(staged + filling * step_words, rows, ahead_base, ahead_count, row_words);
        nnx_copy_wait_pending(stages - 1);  // step s's group has landed
        const uint4* stage = staged + reading * step_words;
        filling = reading;
        reading = reading + 1 == stages ? 0 : reading + 1;
        long long base = first + s * stride;
        double z[EX];
#pragma unroll
        for (int x = 0; x < EX; ++x) {
            T part = T(0);
            if (base + x < m) {  // the same for every thread of the block
#pragma unroll
                for (int i = 0; i < WORDS; ++i) {
                    long long c = (long long)i * blockDim.x + threadIdx.x;
                    if (c < row_words) {
                        uint4 q = stage[x * row_words + c];
#pragma unroll
                        for (int e = 0; e < E; ++e) {
                            T wv = w_in_registers ? wr[i * E + e] : __ldg(w + c * E + e);
                            part += wv * nnx_word_elem<T, XT>(q, e);
                        }
                    }
                }
            }
            z[x] = nnx_is_byte<XT>::value ? (double)part * scale : (double)part;  // scale: pixels only
            if (nnx_is_byte<XT>::value && !nnx_finite(part)) {  // as in logreg_pass (rare)
                const T s = (T)scale;
                part = T(0);
#pragma unroll
                for (int i = 0; i < WORDS; ++i) {
                    long long c = (long long)i * blockDim.x + threadIdx.x;
                    if (c < row_words) {
                        uint4 q = stage[x * row_words + c];
#pragma unroll
                        for (int e = 0; e < E; ++e)
                            part += __ldg(w + c * E + e) * (nnx_word_elem<T, XT>(q, e) * s);
                    }
                }
                z[x] = (double)part;
            }
        }
        nnx_block_sums<EX>(z, scratch);
#pragma unroll
        for (int x = 0; x < EX; ++x) {
            if (base + x >= m) break;  // the same for every thread of the block
            T dz = nnx_add_example<T>((double)((T)z[x] + bias), (double)y[base + x], loss_code, inv_m,
                                      sums);
#pragma unroll
            for (int i = 0; i < WORDS; ++i) {
                long long c = (long long)i * blockDim.x + threadIdx.x;
                if (c < row_words) {
                    uint4 q = stage[x * row_words + c];
#pragma unroll
                    for (int e = 0; e < E; ++e) acc[i * E + e] += dz * nnx_word_elem<T, XT>(q, e);
                }
            }
        }
    }
    nnx_copy_wait<0>();  // no copy may still target shared memory when the block exits
    T* out = dw_partial + (long long)blockIdx.x * n;
#pragma unroll
    for (int i = 0; i < WORDS; ++i) {
        long long c = (long long)i * blockDim.x + threadIdx.x;
#pragma unroll
        for (int e = 0; e < E; ++e)
            if (c < row_words) out[c * E + e] = acc[i * E + e];
    }
    if (threadIdx.x == 0) {
        for (int k = 0; k < 3; ++k) stats_partial[3 * blockIdx.x + k] = sums[k];
    }
}

// Part 2: w[j] -= lr * scale * sum_g dw_partial[g, j] (fixed order over g, in double; the
// partials already hold dz / m * x, and loss / m);
// the first thread also updates b and writes out = (mean loss, correct count).
template <typename T>
__global__ void logreg_update(T* w, T* b, const T* dw_partial, const double* stats_partial,
                              int groups, long long n, long long m, double lr, double scale,
                              double* out) {
    for (long long j = blockIdx.x * (long long)blockDim.x + threadIdx.x; j < n;
         j += (long long)blockDim.x * gridDim.x) {
        double s = 0.0;
        for (int g = 0; g < groups; ++g) s += (double)dw_partial[(long long)g * n + j];
        w[j] = (T)((double)w[j] - lr * scale * s);
    }
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        double loss = 0.0, db = 0.0, correct = 0.0;
        for (int g = 0; g < groups; ++g) {
            loss += stats_partial[3 * g];
            db += stats_partial[3 * g + 1];
            correct += stats_partial[3 * g + 2];
        }
        b[0] = (T)((double)b[0] - lr * db / (double)m);
        out[0] = loss;  // the partials hold loss / m
        out[1] = correct;
    }
}

// A pure read of `count` 16-byte words from bytes + head (head: up to X's first 16-byte
// boundary, so every word load is aligned): the GPU read-bandwidth reference. extern "C":
// an unmangled name, fetched by get_function("read_words") without a name expression.
extern "C" __global__ void read_words(const unsigned char* bytes, long long head, long long count,
                                      unsigned long long* sink) {
    const ulonglong2* words = reinterpret_cast<const ulonglong2*>(bytes + head);
    unsigned long long acc = 0;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < count;
         i += (long long)blockDim.x * gridDim.x) {
        ulonglong2 q = words[i];
        acc ^= q.x ^ q.y;
    }
    if (acc == 0x9e3779b97f4a7c15ull) sink[0] = acc;  // practically never: keeps the loads live
}

// ---------------------------------------------------------------- softmax over K classes
// Z (K, m) is C-contiguous: class k of example i is Z[k * m + i]. One thread per example
// (a column): neighbouring threads read neighbouring examples, so every load of a class
// row is coalesced; a per-example block reduction would read a column strided by m. The
// arithmetic is in double with the column's max subtracted first, so it is finite for any
// finite logits (and float's -ftz=true never applies). NaN spreads as in NumPy: a NaN
// logit makes its column's max NaN, and argmax picks the first maximum or the first NaN.

// NaN-propagating max and first-max/first-NaN argmax of column i.
template <typename T>
__device__ __forceinline__ void nnx_column_max(const T* Z, long long K, long long m, long long i,
                                               double* top, long long* best) {
    double t = (double)Z[i];
    long long arg = 0;
    if (t == t) {
        for (long long k = 1; k < K; ++k) {
            double v = (double)Z[k * m + i];
            if (v != v) { t = v; arg = k; break; }
            if (v > t) { t = v; arg = k; }
        }
    }
    *top = t;
    *best = arg;
}

// Each column of Z (K, m) replaced by its softmax.
template <typename T>
__global__ void softmax_columns(T* Z, long long K, long long m) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < m;
         i += (long long)blockDim.x * gridDim.x) {
        double top;
        long long best;
        nnx_column_max(Z, K, m, i, &top, &best);
        double total = 0.0;
        for (long long k = 0; k < K; ++k) total += exp((double)Z[k * m + i] - top);
        for (long long k = 0; k < K; ++k) Z[k * m + i] = (T)(exp((double)Z[k * m + i] - top) / total);
    }
}

// Softmax cross-entropy from the logits Z (K, m) against class numbers Y (1, m):
// dZ = (softmax(Z) - onehot(Y)) / m, and per-block partial (loss, correct) sums where an
// example's loss is (logsumexp(z) - z_y) / m.
template <typename T>
__global__ void softmax_xent(const T* Z, const T* Y, T* dZ, long long K, long long m, double* partial) {
    __shared__ double scratch[32];
    double loss = 0.0, correct = 0.0, inv_m = 1.0 / (double)m;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < m;
         i += (long long)blockDim.x * gridDim.x) {
        double top;
        long long best;
        nnx_column_max(Z, K, m, i, &top, &best);
        long long label = (long long)Y[i];
        double total = 0.0;
        for (long long k = 0; k < K; ++k) total += exp((double)Z[k * m + i] - top);
        loss += (log(total) - ((double)Z[label * m + i] - top)) * inv_m;
        correct += best == label ? 1.0 : 0.0;
        for (long long k = 0; k < K; ++k) {
            double p = exp((double)Z[k * m + i] - top) / total;
            dZ[k * m + i] = (T)((p - (k == label ? 1.0 : 0.0)) * inv_m);
        }
    }
    loss = nnx_block_sum(loss, scratch);
    correct = nnx_block_sum(correct, scratch);
    if (threadIdx.x == 0) {
        partial[2 * blockIdx.x] = loss;
        partial[2 * blockIdx.x + 1] = correct;
    }
}

// ---------------------------------------------------------------------------------------
// Optimizer steps (nnx.optim): one pass over a parameter, its gradient and its state, in
// torch.optim's order of operations (see nnx/backends/base.py for the reference). The
// double arguments are rounded to T first, as PyTorch rounds its scalars to the tensor's
// dtype. State pointers a variant does not use (flag off) are never dereferenced.

// torch.optim.SGD: d = g + decay p; with momentum buf = d (first step) or
// momentum buf + (1 - dampening) d, then d = d + momentum buf (Nesterov) or buf; p += -lr d.
template <typename T>
__global__ void sgd_step(T* p, const T* g, T* buf, long long size, double neg_lr, double decay, double momentum,
                         double damp1, int momentum_on, int nesterov, int first) {
    const T nlr = (T)neg_lr, dec = (T)decay, mom = (T)momentum, d1 = (T)damp1;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < size;
         i += (long long)blockDim.x * gridDim.x) {
        T pk = p[i], d = g[i];
        if (decay != 0.0) d = nnx_add(d, nnx_mul(dec, pk));
        if (momentum_on) {
            T b = first ? d : nnx_add(nnx_mul(buf[i], mom), nnx_mul(d1, d));
            buf[i] = b;
            d = nesterov ? nnx_add(d, nnx_mul(mom, b)) : b;
        }
        p[i] = nnx_add(pk, nnx_mul(nlr, d));
    }
}

// torch.optim.RMSprop: sq = alpha sq + (1 - alpha) g g; centered: ga = lerp(ga, g, weight),
// avg = sqrt(sq - ga ga) + eps, else sqrt(sq) + eps; momentum: buf = momentum buf + g / avg,
// p += -lr buf; else p += -lr g / avg.
template <typename T>
__global__ void rmsprop_step(T* p, const T* g, T* sq, T* ga, T* buf, long long size, double neg_lr, double decay,
                             double alpha, double one_minus_alpha, double eps, double momentum, double weight,
                             double rest, int centered, int momentum_on) {
    const T nlr = (T)neg_lr, dec = (T)decay, al = (T)alpha, oma = (T)one_minus_alpha, ep = (T)eps;
    const T mom = (T)momentum, w = (T)weight, r = (T)rest;
    const bool small = fabs(weight) < 0.5;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < size;
         i += (long long)blockDim.x * gridDim.x) {
        T pk = p[i], gk = g[i];
        if (decay != 0.0) gk = nnx_add(gk, nnx_mul(dec, pk));
        T s = nnx_add(nnx_mul(sq[i], al), nnx_mul(nnx_mul(oma, gk), gk));
        sq[i] = s;
        T avg;
        if (centered) {
            T a = ga[i];
            a = small ? nnx_add(a, nnx_mul(w, nnx_sub(gk, a))) : nnx_sub(gk, nnx_mul(nnx_sub(gk, a), r));
            ga[i] = a;
            avg = nnx_add(sqrt(nnx_sub(s, nnx_mul(a, a))), ep);
        } else {
            avg = nnx_add(sqrt(s), ep);
        }
        if (momentum_on) {
            T b = nnx_add(nnx_mul(buf[i], mom), gk / avg);
            buf[i] = b;
            p[i] = nnx_add(pk, nnx_mul(nlr, b));
        } else {
            p[i] = nnx_add(pk, nnx_mul(nlr, gk) / avg);
        }
    }
}

// torch.optim.Adam / AdamW: g += decay p; p *= shrink (AdamW); m = lerp(m, g, weight);
// v = beta2 v + (1 - beta2) g g; p += -lr / (1 - beta1^t) m / (sqrt(v) / sqrt(1 - beta2^t) + eps).
template <typename T>
__global__ void adam_step(T* p, const T* g, T* m, T* v, long long size, double decay, double shrink,
                          double weight, double rest, double beta2, double one_minus_beta2, double bc2_sqrt,
                          double eps, double neg_step, int shrink_on) {
    const T dec = (T)decay, shr = (T)shrink, w = (T)weight, r = (T)rest, b2 = (T)beta2;
    const T omb2 = (T)one_minus_beta2, bc2 = (T)bc2_sqrt, ep = (T)eps, nstep = (T)neg_step;
    const bool small = fabs(weight) < 0.5;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < size;
         i += (long long)blockDim.x * gridDim.x) {
        T pk = p[i], gk = g[i];
        if (decay != 0.0) gk = nnx_add(gk, nnx_mul(dec, pk));
        if (shrink_on) pk = nnx_mul(pk, shr);
        T a = m[i];
        a = small ? nnx_add(a, nnx_mul(w, nnx_sub(gk, a))) : nnx_sub(gk, nnx_mul(nnx_sub(gk, a), r));
        m[i] = a;
        T s = nnx_add(nnx_mul(v[i], b2), nnx_mul(nnx_mul(omb2, gk), gk));
        v[i] = s;
        T denom = nnx_add(sqrt(s) / bc2, ep);
        p[i] = nnx_add(pk, nnx_mul(nstep, a) / denom);
    }
}

// ---------------------------------------------------------------------------------------
// Dropout masks from Philox4x32-10 (nnx/backends/philox.py): element (unit i, example j)
// of an (n, m) activation, e = j * n + i, is kept when word e % 4 of
// philox(counter (q, batch, epoch, layer_word | q >> 32), key (k0, k1)), q = e / 4, is at
// least `threshold`. Plain 64-bit products give the high and low words (no intrinsics).
__device__ __forceinline__ void nnx_philox(unsigned c[4], unsigned k0, unsigned k1) {
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        unsigned long long p0 = 0xD2511F53ull * c[0], p1 = 0xCD9E8D57ull * c[2];
        unsigned hi0 = (unsigned)(p0 >> 32), lo0 = (unsigned)p0;
        unsigned hi1 = (unsigned)(p1 >> 32), lo1 = (unsigned)p1;
        unsigned n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
        c[0] = n0;
        c[1] = lo1;
        c[2] = n2;
        c[3] = lo0;
    }
}

// dst <- src * (scale where kept, else 0) for an (n, m) activation stored C-ordered
// (c_order: element (i, j) at i * m + j) or example-contiguous (at j * n + i); dst may be
// src (the backward pass). Example-contiguous: one Philox call per 4 consecutive elements
// e, which are neighbouring addresses. C-ordered, consecutive e run down a column, m
// elements apart in memory: a block of 256 threads takes tiles of 32 units x 32 examples,
// first drawing the Philox words of the tile's columns (those of the at most 9 calls
// covering each column's 32 units) into shared memory, then each warp reads and writes
// rows of 32 neighbouring elements, so each access of a warp is one contiguous segment.
#define NNX_DROPOUT_TILE 32
#define NNX_DROPOUT_CALLS 9  // Philox calls covering 32 consecutive e at any offset
template <typename T>
__global__ void dropout_apply(const T* src, T* dst, long long n, long long m, int c_order, unsigned k0,
                              unsigned k1, unsigned batch, unsigned epoch, unsigned layer_word, unsigned threshold,
                              double scale) {
    const T kept = (T)scale, dropped = T(0);
    const long long total = n * m;
    if (!c_order) {
        const long long groups = (total + 3) / 4;
        for (long long q = blockIdx.x * (long long)blockDim.x + threadIdx.x; q < groups;
             q += (long long)blockDim.x * gridDim.x) {
            unsigned c[4] = {(unsigned)q, batch, epoch, layer_word | (unsigned)(q >> 32)};
            nnx_philox(c, k0, k1);
            for (int lane = 0; lane < 4; ++lane) {
                long long e = 4 * q + lane;
                if (e >= total) break;
                dst[e] = src[e] * (c[lane] >= threshold ? kept : dropped);
            }
        }
        return;
    }
    __shared__ unsigned words[NNX_DROPOUT_TILE][4 * NNX_DROPOUT_CALLS];
    const long long tile_rows = (n + NNX_DROPOUT_TILE - 1) / NNX_DROPOUT_TILE;
    const long long tiles = tile_rows * ((m + NNX_DROPOUT_TILE - 1) / NNX_DROPOUT_TILE);
    const int col = threadIdx.x % NNX_DROPOUT_TILE;
    for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {  // the same for the whole block
        const long long i0 = (tile % tile_rows) * NNX_DROPOUT_TILE, j0 = (tile / tile_rows) * NNX_DROPOUT_TILE;
        __syncthreads();  // words may still be read for the previous tile
        for (int s = threadIdx.x; s < NNX_DROPOUT_TILE * NNX_DROPOUT_CALLS; s += blockDim.x) {
            const int c_at = s / NNX_DROPOUT_CALLS, call = s % NNX_DROPOUT_CALLS;
            const long long j = j0 + c_at, q = (j * n + i0) / 4 + call;
            if (j < m && 4 * q < total) {
                unsigned c[4] = {(unsigned)q, batch, epoch, layer_word | (unsigned)(q >> 32)};
                nnx_philox(c, k0, k1);
                for (int lane = 0; lane < 4; ++lane) words[c_at][4 * call + lane] = c[lane];
            }
        }
        __syncthreads();
        const long long j = j0 + col;
        for (int r = threadIdx.x / NNX_DROPOUT_TILE; r < NNX_DROPOUT_TILE; r += blockDim.x / NNX_DROPOUT_TILE) {
            const long long i = i0 + r;
            if (i < n && j < m) {
                const long long at = i * m + j;
                const unsigned word = words[col][j * n + i - 4 * ((j * n + i0) / 4)];
                dst[at] = src[at] * (word >= threshold ? kept : dropped);
            }
        }
    }
}

// Logistic regression's loss and gradient without the update (for L-BFGS), part 2 after
// logreg_pass or logreg_staged: dw[j] = scale * sum_g dw_partial[g, j], summed in double
// in a fixed order over g (the partials already hold dz / m * x); the first thread writes
// out = (mean loss, correct count, db = sum of dz / m). Nothing is updated.
template <typename T>
__global__ void logreg_grad(const T* dw_partial, const double* stats_partial, int groups, long long n,
                            long long m, double scale, double* dw, double* out) {
    for (long long j = blockIdx.x * (long long)blockDim.x + threadIdx.x; j < n;
         j += (long long)blockDim.x * gridDim.x) {
        double s = 0.0;
        for (int g = 0; g < groups; ++g) s += (double)dw_partial[(long long)g * n + j];
        dw[j] = scale * s;
    }
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        double loss = 0.0, db = 0.0, correct = 0.0;
        for (int g = 0; g < groups; ++g) {
            loss += stats_partial[3 * g];
            db += stats_partial[3 * g + 1];
            correct += stats_partial[3 * g + 2];
        }
        out[0] = loss;  // the partials hold loss / m
        out[1] = correct;
        out[2] = db / (double)m;
    }
}

// ---------------------------------------------------------------------------------------
// Single-pass softmax-regression epoch (the multi-class form of logreg_pass), part 1.
// Xt (m, n) row-major = example-contiguous X; W (K, n) and b (K, 1) C-contiguous; y (1, m)
// class numbers; K <= KMAX <= 32. A block takes EX = 32 / KMAX examples per step: each
// thread adds W x over its features j = t, t + blockDim.x, ... for all K classes of the EX
// examples (each load of W serves EX examples), the K * EX sums are block-reduced together
// in double (each warp's sums wait in shared memory), every thread reads one example's
// logits at a time and takes softmax and loss in double from them with the max
// subtracted, keeping the example's dz / m in T (one example's logits in double at a time
// is what keeps KMAX = 16 from spilling), then adds dz / m * x to dW for its features from
// the rows it has just read (L1/L2), so X crosses the memory bus once. Each logit is rounded to T before b is added
// in T, as NumPy computes Z = W X + b (a float32 logit past the largest float is inf).
// dW of a block lives in dynamic shared memory, `per` classes x n features of T; each
// thread adds to its own features only, so no barrier guards them.
// Grid: groups * slices blocks. Block b = g * slices + s takes the steps at examples
// (g + r * groups) * EX, r = 0, 1, ..., and keeps dW for classes [s * per, s * per + per):
// the launch plan splits the classes into slices only when K rows of dW do not fit in one
// block's shared memory. Blocks of one group are neighbours in launch order, so they read
// each row at about the same time and all but the first find it in L2.
// Outputs: dw_partial (groups, K, n) sums of dz / m * x in T; db_partial (groups, K) and
// stats_partial (groups, 2) = (loss / m, correct) sums in double; softmax_update or
// softmax_grad add them over groups in a fixed order. The plan bounds the examples per
// block (MAX_EXAMPLES_PER_BLOCK), as for logreg_pass, so each block's float sums stay short.
template <int KMAX, int STRIDE = 1>
__device__ __forceinline__ void nnx_softmax_terms(double* z, int K, long long label, double inv_m, double* loss,
                                                  double* correct) {
    // z (K logits, STRIDE apart) -> (softmax(z) - onehot(label)) * inv_m; NaN spreads as in
    // softmax_xent
    double top = z[0];
    int best = 0;
    bool stop = !(top == top);
#pragma unroll
    for (int k = 1; k < KMAX; ++k) {
        if (k < K && !stop) {
            double v = z[k * STRIDE];
            if (v != v) {
                top = v;
                best = k;
                stop = true;
            } else if (v > top) {
                top = v;
                best = k;
            }
        }
    }
    double total = 0.0, picked = top;
#pragma unroll
    for (int k = 0; k < KMAX; ++k) {
        if (k < K) {
            if (k == label) picked = z[k * STRIDE];
            z[k * STRIDE] = exp(z[k * STRIDE] - top);
            total += z[k * STRIDE];
        }
    }
    *loss += (log(total) - (picked - top)) * inv_m;
    *correct += best == label ? 1.0 : 0.0;
#pragma unroll
    for (int k = 0; k < KMAX; ++k)
        if (k < K) z[k * STRIDE] = (z[k * STRIDE] / total - (k == label ? 1.0 : 0.0)) * inv_m;
}

// Element j of an example row as T: a float as is, a pixel unscaled (exactly).
template <typename T, typename XT>
__device__ __forceinline__ T nnx_row_elem(const XT* row, long long j) {
    return (T)__ldg(row + j);
}

template <>
__device__ __forceinline__ float nnx_row_elem<float, unsigned char>(const unsigned char* row, long long j) {
    return nnx_from_byte<float>(__ldg(row + j));
}

template <>
__device__ __forceinline__ double nnx_row_elem<double, unsigned char>(const unsigned char* row, long long j) {
    return nnx_from_byte<double>(__ldg(row + j));
}

template <typename T, typename XT, int KMAX>
__global__ void __launch_bounds__(512) softmax_pass(const XT* Xt, const T* W, const T* b, const T* y, long long m,
                                                    long long n, int K, int slices, int per, double scale,
                                                    T* dw_partial, double* db_partial, double* stats_partial) {
    constexpr int EX = 32 / KMAX;  // examples per step: EX * KMAX = 32 sums per thread
    NNX_DYNAMIC_SHARED(uint4, shared_words);
    T* acc = reinterpret_cast<T*>(shared_words);
    __shared__ double scratch[32 * 32];
    __shared__ double db_sums[KMAX];  // thread 0's, for this block's classes
    const long long groups = gridDim.x / slices;
    const long long g = blockIdx.x / slices;
    const int k0 = (int)(blockIdx.x % slices) * per;
    const int k1 = k0 + per < K ? k0 + per : K;
    const bool pixels = nnx_is_byte<XT>::value;
    const double inv_m = 1.0 / (double)m;
    for (int k = k0; k < k1; ++k)  // each thread zeroes (and later adds to) its own features
        for (long long j = threadIdx.x; j < n; j += blockDim.x) acc[(k - k0) * n + j] = T(0);
    if (threadIdx.x == 0)
        for (int k = 0; k < KMAX; ++k) db_sums[k] = 0.0;
    double loss = 0.0, correct = 0.0;  // every thread keeps the same ones
    for (long long base = g * EX; base < m; base += groups * EX) {  // the same for the whole block
        const XT* rows[EX];
#pragma unroll
        for (int x = 0; x < EX; ++x) rows[x] = Xt + (base + x < m ? base + x : base) * n;
        const int count = m - base < EX ? (int)(m - base) : EX;
        T part[EX * KMAX];
#pragma unroll
        for (int q = 0; q < EX * KMAX; ++q) part[q] = T(0);
        for (long long j = threadIdx.x; j < n; j += blockDim.x) {
            T xs[EX];
#pragma unroll
            for (int x = 0; x < EX; ++x) xs[x] = x < count ? nnx_row_elem<T, XT>(rows[x], j) : T(0);
#pragma unroll
            for (int k = 0; k < KMAX; ++k) {
                if (k < K) {
                    T wk = __ldg(W + k * n + j);
#pragma unroll
                    for (int x = 0; x < EX; ++x) part[x * KMAX + k] += wk * xs[x];
                }
            }
        }
        double z[EX * KMAX];
#pragma unroll
        for (int x = 0; x < EX; ++x) {
            bool overflow = false;
#pragma unroll
            for (int k = 0; k < KMAX; ++k) {
                T p = part[x * KMAX + k];
                z[x * KMAX + k] = pixels ? (double)p * scale : (double)p;
                if (pixels && k < K && !nnx_finite(p)) overflow = true;
            }
            if (overflow && x < count) {
                // W within 255x of the largest float: W * pixel overflowed where NumPy's
                // W * (pixel / 255) does not; redo this thread's share as NumPy does (rare)
                const T s = (T)scale;
#pragma unroll
                for (int k = 0; k < KMAX; ++k) part[x * KMAX + k] = T(0);
                for (long long j = threadIdx.x; j < n; j += blockDim.x) {
                    T xv = nnx_row_elem<T, XT>(rows[x], j) * s;
#pragma unroll
                    for (int k = 0; k < KMAX; ++k)
                        if (k < K) part[x * KMAX + k] += __ldg(W + k * n + j) * xv;
                }
#pragma unroll
                for (int k = 0; k < KMAX; ++k) z[x * KMAX + k] = (double)part[x * KMAX + k];
            }
        }
        nnx_warp_sums<EX * KMAX, KMAX>(z, scratch, K);  // the block's K logits per example wait in scratch
        T dz[EX * KMAX];  // dz / m of each example in T: the factor of x in dW
#pragma unroll
        for (int x = 0; x < EX; ++x) {
            if (x < count) {
                double zx[KMAX];  // one example's logits at a time
#pragma unroll
                for (int k = 0; k < KMAX; ++k)  // the logit in T, as NumPy's Z = W X + b
                    zx[k] = k < K ? (double)((T)nnx_scratch_total(scratch, x * KMAX + k) + __ldg(b + k)) : 0.0;
                // zx becomes dz / m for this example
                nnx_softmax_terms<KMAX>(zx, K, (long long)y[base + x], inv_m, &loss, &correct);
                if (threadIdx.x == 0) {
#pragma unroll
                    for (int k = 0; k < KMAX; ++k)
                        if (k >= k0 && k < k1) db_sums[k] += zx[k];
                }
#pragma unroll
                for (int k = 0; k < KMAX; ++k) dz[x * KMAX + k] = (T)zx[k];
            } else {
#pragma unroll
                for (int k = 0; k < KMAX; ++k) dz[x * KMAX + k] = T(0);  // past m: adds nothing
            }
        }
        for (long long j = threadIdx.x; j < n; j += blockDim.x) {
            T xs[EX];
#pragma unroll
            for (int x = 0; x < EX; ++x) xs[x] = x < count ? nnx_row_elem<T, XT>(rows[x], j) : T(0);
#pragma unroll
            for (int k = 0; k < KMAX; ++k) {
                if (k >= k0 && k < k1) {
                    T add = T(0);
#pragma unroll
                    for (int x = 0; x < EX; ++x) add += dz[x * KMAX + k] * xs[x];
                    acc[(k - k0) * n + j] += add;
                }
            }
        }
    }
    T* out = dw_partial + g * K * n;
    for (int k = k0; k < k1; ++k)
        for (long long j = threadIdx.x; j < n; j += blockDim.x) out[k * n + j] = acc[(k - k0) * n + j];
    if (threadIdx.x == 0) {
        for (int k = k0; k < k1; ++k) db_partial[g * K + k] = db_sums[k];
        if (k0 == 0) {
            stats_partial[2 * g] = loss;
            stats_partial[2 * g + 1] = correct;
        }
    }
}

// ---------------------------------------------------------------------------------------
// The tiled single-pass softmax-regression epoch, part 1 (same arguments, partial sums and
// part 2 as softmax_pass): each load of W serves a tile of 32 examples, as a GEMM tiles.
// A block of 512 threads takes the tiles at examples (g + r * groups) * 32, r = 0, 1, ...
// Logits: the tile's rows are staged through shared memory CHUNK features at a time (as T,
// pixels unscaled; one padding element per row keeps a warp's 32 rows in 32 banks); warp w
// owns classes w and w + 16 (KMAX = 32), lane x example x: each thread adds W[k, j] * x[j]
// over the chunk in order in T (the warp's 32 lanes read the same W[k, j]: one load for
// 32 examples) and adds that partial to the logit in double, scaled by 1/255 on pixels; a
// pixel chunk whose partial overflows (W within 255x of the largest float) is redone as
// NumPy computes it, W * (pixel / 255) in T. Each logit is rounded to T before b is added
// in T, as NumPy's Z = W X + b. The first warp then takes each example's softmax and loss
// in double (lane x, example x; nnx_softmax_terms, as softmax_pass) and keeps its own loss
// and correct count; dz / m waits in shared memory in double (db) and in T (dW). dW: the
// rows are staged again (X is read twice per slice) and the thread owning feature j and
// class k adds sum_x dz[k, x] * x[j] (in T, over x in order) to dW in dynamic shared
// memory, `per` classes x n features of T (class slices as softmax_pass). Everything is
// summed in a fixed order: bitwise repeatable.
// Launch bounds of 2 blocks per SM (at most 64 registers): without them ptxas keeps 40
// and spills 48-52 bytes (NVRTC 13, sm_90); with them nothing spills.
template <typename T, typename XT>
__device__ __forceinline__ void nnx_stage_tile(T* xs, int pitch, const XT* Xt, long long first, int count,
                                               long long n, long long j0, int width, int chunk) {
    // rows first .. first + count - 1, features j0 .. j0 + width - 1 -> xs[x * pitch + j]; zeros elsewhere
    for (int i = threadIdx.x; i < 32 * chunk; i += blockDim.x) {
        const int x = i / chunk, j = i % chunk;
        xs[x * pitch + j] = x < count && j < width ? nnx_row_elem<T, XT>(Xt + (first + x) * n, j0 + j) : T(0);
    }
    __syncthreads();
}

template <typename T, typename XT, int KMAX>
__global__ void __launch_bounds__(512, 2) softmax_tile(const XT* Xt, const T* W, const T* b, const T* y, long long m,
                                                    long long n, int K, int slices, int per, double scale,
                                                    T* dw_partial, double* db_partial, double* stats_partial) {
    constexpr int CHUNK = 512 / sizeof(T);  // features staged at a time: 2 KB a row
    constexpr int PITCH = CHUNK + 1;
    constexpr int KW = KMAX / 16;  // classes per warp
    NNX_DYNAMIC_SHARED(uint4, shared_words);
    T* acc = reinterpret_cast<T*>(shared_words);
    __shared__ T xs[32 * PITCH];
    __shared__ double zs[KMAX * 32];  // [class][example]: logits, then dz / m
    __shared__ T dzs[KMAX * 32];      // dz / m in T
    __shared__ double lane_stats[64];
    const long long groups = gridDim.x / slices;
    const long long g = blockIdx.x / slices;
    const int k0 = (int)(blockIdx.x % slices) * per;
    const int k1 = k0 + per < K ? k0 + per : K;
    const bool pixels = nnx_is_byte<XT>::value;
    const double inv_m = 1.0 / (double)m;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int k = k0; k < k1; ++k)
        for (long long j = threadIdx.x; j < n; j += blockDim.x) acc[(k - k0) * n + j] = T(0);
    double loss = 0.0, correct = 0.0;  // lane x of warp 0: its examples'
    double db = 0.0;                   // thread t < k1 - k0: class k0 + t
    for (long long first = g * 32; first < m; first += groups * 32) {  // the same for the whole block
        const int count = m - first < 32 ? (int)(m - first) : 32;
        double z[KW];
#pragma unroll
        for (int p = 0; p < KW; ++p) z[p] = 0.0;
        for (long long j0 = 0; j0 < n; j0 += CHUNK) {
            const int width = n - j0 < CHUNK ? (int)(n - j0) : CHUNK;
            nnx_stage_tile<T, XT>(xs, PITCH, Xt, first, count, n, j0, width, CHUNK);
#pragma unroll
            for (int p = 0; p < KW; ++p) {
                const int k = warp + 16 * p;
                if (k < K) {  // the same for the whole warp
                    const T* wk = W + k * n + j0;
                    const T* row = xs + lane * PITCH;
                    T part = T(0);
#pragma unroll 4
                    for (int j = 0; j < width; ++j) part += __ldg(wk + j) * row[j];
                    if (pixels && !nnx_finite(part)) {
                        const T s = (T)scale;
                        part = T(0);
                        for (int j = 0; j < width; ++j) part += __ldg(wk + j) * (row[j] * s);
                        z[p] += (double)part;
                    } else {
                        z[p] += pixels ? (double)part * scale : (double)part;
                    }
                }
            }
            __syncthreads();  // the chunk is read: the next may be staged
        }
#pragma unroll
        for (int p = 0; p < KW; ++p) {
            const int k = warp + 16 * p;
            if (k < K) zs[k * 32 + lane] = (double)((T)z[p] + __ldg(b + k));  // the logit in T
        }
        __syncthreads();
        if (warp == 0) {
            if (lane < count) {
                nnx_softmax_terms<KMAX, 32>(zs + lane, K, (long long)y[first + lane], inv_m, &loss, &correct);
                for (int k = 0; k < K; ++k) dzs[k * 32 + lane] = (T)zs[k * 32 + lane];
            } else {
                for (int k = 0; k < K; ++k) dzs[k * 32 + lane] = T(0);  // past m: adds nothing
            }
        }
        __syncthreads();
        if (threadIdx.x < k1 - k0)
            for (int x = 0; x < count; ++x) db += zs[(k0 + threadIdx.x) * 32 + x];
        for (long long j0 = 0; j0 < n; j0 += CHUNK) {
            const int width = n - j0 < CHUNK ? (int)(n - j0) : CHUNK;
            nnx_stage_tile<T, XT>(xs, PITCH, Xt, first, count, n, j0, width, CHUNK);
            const int j = threadIdx.x % CHUNK;
            if (j < width) {
                for (int k = k0 + (int)threadIdx.x / CHUNK; k < k1; k += 512 / CHUNK) {
                    T add = T(0);
#pragma unroll 8
                    for (int x = 0; x < 32; ++x) add += dzs[k * 32 + x] * xs[x * PITCH + j];
                    acc[(k - k0) * n + j0 + j] += add;
                }
            }
            __syncthreads();  // the chunk is read: the next may be staged (and zs, dzs rewritten)
        }
    }
    if (warp == 0) {
        lane_stats[lane] = loss;
        lane_stats[32 + lane] = correct;
    }
    __syncthreads();  // also: each thread writes out features another thread added to
    T* out = dw_partial + g * K * n;
    for (int k = k0; k < k1; ++k)
        for (long long j = threadIdx.x; j < n; j += blockDim.x) out[k * n + j] = acc[(k - k0) * n + j];
    if (threadIdx.x < k1 - k0) db_partial[g * K + k0 + threadIdx.x] = db;
    if (threadIdx.x == 0 && k0 == 0) {
        double l = 0.0, c = 0.0;
        for (int x = 0; x < 32; ++x) {
            l += lane_stats[x];
            c += lane_stats[32 + x];
        }
        stats_partial[2 * g] = l;
        stats_partial[2 * g + 1] = c;
    }
}

// sum_g partial[g * stride + i] over g = 0 .. groups - 1 in that order, in double.
template <typename P>
__device__ __forceinline__ double nnx_sum_groups(const P* partial, int groups, long long stride, long long i) {
    double s = 0.0;
    for (int g = 0; g < groups; ++g) s += (double)partial[(long long)g * stride + i];
    return s;
}

// out = (mean loss, correct count) from softmax_pass's (groups, 2) partials (loss / m sums).
__device__ __forceinline__ void nnx_softmax_totals(const double* stats_partial, int groups, double* out) {
    out[0] = nnx_sum_groups(stats_partial, groups, 2, 0);
    out[1] = nnx_sum_groups(stats_partial, groups, 2, 1);
}

// Part 2: W[k, j] -= lr * scale * sum_g dw_partial[g, k, j] and b[k] -= lr * sum_g
// db_partial[g, k] (fixed order over g, in double; the partials hold dz / m * x and dz / m);
// the first thread writes out = (mean loss, correct count) at the parameters before the step.
template <typename T>
__global__ void softmax_update(T* W, T* b, const T* dw_partial, const double* db_partial,
                               const double* stats_partial, int groups, long long K, long long n, double lr,
                               double scale, double* out) {
    const long long size = K * n;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < size;
         i += (long long)blockDim.x * gridDim.x)
        W[i] = (T)((double)W[i] - lr * scale * nnx_sum_groups(dw_partial, groups, size, i));
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        for (long long k = 0; k < K; ++k) b[k] = (T)((double)b[k] - lr * nnx_sum_groups(db_partial, groups, K, k));
        nnx_softmax_totals(stats_partial, groups, out);
    }
}

// Softmax regression's loss and gradient without the update (L-BFGS), part 2 after
// softmax_pass: dW (K, n) = scale * sum_g dw_partial[g] and db (K) = sum_g db_partial[g],
// in double in a fixed order; out = (mean loss, correct count). Nothing is updated.
template <typename T>
__global__ void softmax_grad(const T* dw_partial, const double* db_partial, const double* stats_partial,
                             int groups, long long K, long long n, double scale, double* dW, double* db,
                             double* out) {
    const long long size = K * n;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < size;
         i += (long long)blockDim.x * gridDim.x)
        dW[i] = scale * nnx_sum_groups(dw_partial, groups, size, i);
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        for (long long k = 0; k < K; ++k) db[k] = nnx_sum_groups(db_partial, groups, K, k);
        nnx_softmax_totals(stats_partial, groups, out);
    }
}
