// Runs the CUDA C kernels of kernels/ on the CPU, for tests on machines without a GPU.
//
// Each CUDA thread of a block is a ucontext fiber; blocks run one after another on one OS
// thread. __syncthreads() waits for the whole block, __shfl_down_sync() for its warp. The
// scheduler runs one warp at a time as far as it can go (its lanes in order, released
// again at each shuffle) before the next warp, in increasing or, on request, decreasing
// warp order. Warps therefore run far apart between block barriers, as they may on a GPU:
// a missing __syncthreads() around shared memory shows up as different results in the two
// orders. Dynamic shared memory starts each block as 0xFF bytes (NaN), as undefined as on a
// GPU. An asynchronous copy (the kernels' cp.async wrappers) fills its destination with
// 0xFF when issued and lands only when its thread waits for its group, so reading a stage
// before the wait, or refilling one still being read, shows up as NaN in the results; a
// thread that exits with copies in flight is reported. A barrier that only some threads reach (divergent code), a shuffle with a
// partial mask or warp, or a block of more than 1024 threads is reported as an error
// instead of hanging or silently giving a number. Because blocks never overlap,
// `__shared__` becomes a function-local `static`: one copy, shared by the running block.
//
// tests/cuda_emulation.py passes each array between 64 KiB guard zones of 0xFF bytes, at
// the same address modulo 64 as the caller's array: a read past an argument reads NaN into
// the results, a write past it is reported. It compiles the kernels with GCC/Clang's
// alignment sanitizer (-fsanitize=alignment) and handles its reports here: a load or store
// through a pointer its type's alignment does not fit (a uchar4 at an odd address, a
// 16-byte word off a 16-byte boundary), which a GPU faults on, is reported as an error.
// With `ftz`, a launch runs with denormal floats flushed to zero (x86 MXCSR FTZ and DAZ),
// as float kernels compiled by CuPy (-ftz=true) run on a GPU; on a CPU the flag flushes
// double denormals of such a launch too (CUDA keeps those), which no nnx kernel depends on.
//
// This checks the kernels' logic (indexing, tiling, reductions, barrier placement) in
// IEEE arithmetic. It is not a GPU: timing, memory coalescing, accesses far outside the
// arguments (they crash the process) and the exact rounding of the device math library
// are not modelled.
#pragma once

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define NNX_EMULATE_FTZ 1
#else
#define NNX_EMULATE_FTZ 0
#endif

#include <algorithm>
#include <cstdint>
#include <cstddef>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct dim3 {
    unsigned x, y, z;
};
struct alignas(4) uchar4 {
    unsigned char x, y, z, w;
};
struct alignas(16) ulonglong2 {
    unsigned long long x, y;
};
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};

inline float __uint_as_float(unsigned u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

inline double __hiloint2double(int hi, int lo) {
    unsigned long long bits = ((unsigned long long)(unsigned)hi << 32) | (unsigned)lo;
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

// Separately rounded multiply, add and subtract (CUDA's __fmul_rn, ... are never contracted
// into an fma): plain IEEE operations here, built without contraction.
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }

namespace cuda_on_cpu {

enum Wait : int { kRunnable = 0, kSyncthreads = 1, kShuffle = 2, kDone = 3 };

struct AsyncCopy {
    void* dst;
    const void* src;
};

struct Fiber {
    ucontext_t context;
    dim3 thread_index;
    Wait wait;
    std::vector<AsyncCopy> open_copies;                 // issued, not yet committed
    std::vector<std::vector<AsyncCopy>> copy_groups;  // committed, not yet waited for
};

constexpr std::size_t kMaxThreads = 1024;
constexpr std::size_t kStackBytes = 128 * 1024;

struct Launch {
    dim3 block_index, block_dim, grid_dim;
    std::vector<Fiber> fibers;
    Fiber* current = nullptr;
    ucontext_t scheduler;
    std::function<void()> body;
    alignas(16) unsigned char exchange[kMaxThreads * 16];  // one shuffle slot per thread
    std::vector<ulonglong2> dynamic_shared;                // the launch's extern __shared__ bytes
    std::string error;
};

inline Launch* active = nullptr;

inline unsigned linear_thread() {
    const dim3& t = active->current->thread_index;
    const dim3& b = active->block_dim;
    return t.x + b.x * (t.y + b.y * t.z);
}

inline void fail(const std::string& message) {
    if (active->error.empty()) active->error = message;
}

inline void wait_at(Wait kind) {
    Fiber* fiber = active->current;
    fiber->wait = kind;
    swapcontext(&fiber->context, &active->scheduler);
}

inline void fiber_main() {
    active->body();
    active->current->wait = kDone;  // returning switches to uc_link, the scheduler
}

inline std::string block_name(const dim3& b) {
    return "(" + std::to_string(b.x) + "," + std::to_string(b.y) + "," + std::to_string(b.z) + ")";
}

// Runs every runnable lane of warp `first / 32` until none can go on; a warp whose lanes
// all wait at a shuffle is released and run again.
inline void run_warp(Launch& state, std::size_t first, std::size_t last) {
    for (;;) {
        for (std::size_t t = first; t < last; ++t) {
            Fiber& f = state.fibers[t];
            if (f.wait != kRunnable) continue;
            state.current = &f;
            swapcontext(&state.scheduler, &f.context);
        }
        if (!state.error.empty()) return;
        std::size_t shuffling = 0;
        for (std::size_t t = first; t < last; ++t) shuffling += state.fibers[t].wait == kShuffle;
        if (shuffling == 0) return;
        if (shuffling != last - first) {
            fail("block " + block_name(state.block_index) + ", warp " + std::to_string(first / 32) + ": a shuffle reached by " +
                 std::to_string(shuffling) + " of its " + std::to_string(last - first) + " lanes");
            return;
        }
        for (std::size_t t = first; t < last; ++t) state.fibers[t].wait = kRunnable;
    }
}

// Flushes float denormals to zero (inputs and results: MXCSR DAZ and FTZ) while it lives,
// when asked and where the CPU supports it; the fibers of a launch inherit the setting (their
// contexts are made inside its scope, and swapcontext keeps MXCSR per context).
class FlushDenormals {
   public:
    explicit FlushDenormals(bool on) {
#if NNX_EMULATE_FTZ
        saved_ = _mm_getcsr();
        if (on) _mm_setcsr(saved_ | 0x8040u);
#else
        (void)on;
#endif
    }
    ~FlushDenormals() {
#if NNX_EMULATE_FTZ
        _mm_setcsr(saved_);
#endif
    }
    FlushDenormals(const FlushDenormals&) = delete;
    FlushDenormals& operator=(const FlushDenormals&) = delete;

   private:
    unsigned saved_ = 0;
};

// Runs body once per CUDA thread of a grid x block launch with shared_bytes of dynamic
// shared memory, warps in increasing order (or decreasing with reverse_warps), denormals
// flushed with ftz; returns "" or what went wrong.
inline std::string launch(dim3 grid_dim, dim3 block_dim, std::function<void()> body, bool reverse_warps = false,
                          std::size_t shared_bytes = 0, bool ftz = false) {
    FlushDenormals flush(ftz);
    const std::size_t threads = (std::size_t)block_dim.x * block_dim.y * block_dim.z;
    if (threads == 0 || threads > kMaxThreads)
        return "a block of " + std::to_string(threads) + " threads (CUDA allows 1 to 1024)";
    if ((std::size_t)grid_dim.x * grid_dim.y * grid_dim.z == 0) return "an empty grid";
    const std::size_t warps = (threads + 31) / 32;
    Launch state;
    state.grid_dim = grid_dim;
    state.block_dim = block_dim;
    state.body = std::move(body);
    state.dynamic_shared.resize((shared_bytes + 15) / 16);
    active = &state;
    std::vector<char*> stacks(threads);
    for (auto& s : stacks) s = static_cast<char*>(malloc(kStackBytes));
    for (unsigned bz = 0; bz < grid_dim.z && state.error.empty(); ++bz)
        for (unsigned by = 0; by < grid_dim.y && state.error.empty(); ++by)
            for (unsigned bx = 0; bx < grid_dim.x && state.error.empty(); ++bx) {
                state.block_index = {bx, by, bz};
                memset(state.dynamic_shared.data(), 0xFF, state.dynamic_shared.size() * 16);
                state.fibers.assign(threads, Fiber{});
                for (std::size_t t = 0; t < threads; ++t) {
                    Fiber& f = state.fibers[t];
                    getcontext(&f.context);
                    f.context.uc_stack.ss_sp = stacks[t];
                    f.context.uc_stack.ss_size = kStackBytes;
                    f.context.uc_link = &state.scheduler;
                    makecontext(&f.context, fiber_main, 0);
                    f.thread_index = {unsigned(t % block_dim.x), unsigned(t / block_dim.x % block_dim.y),
                                      unsigned(t / (block_dim.x * block_dim.y))};
                    f.wait = kRunnable;
                }
                for (;;) {
                    for (std::size_t k = 0; k < warps && state.error.empty(); ++k) {
                        std::size_t w = reverse_warps ? warps - 1 - k : k;
                        run_warp(state, 32 * w, std::min(threads, 32 * w + 32));
                    }
                    if (!state.error.empty()) break;
                    std::size_t counts[4] = {0, 0, 0, 0};
                    for (const Fiber& f : state.fibers) ++counts[f.wait];
                    if (counts[kDone] == threads) {
                        for (const Fiber& f : state.fibers) {
                            std::size_t in_flight = f.open_copies.size();
                            for (const auto& group : f.copy_groups) in_flight += group.size();
                            if (in_flight != 0 && state.error.empty())
                                state.error = "block " + block_name(state.block_index) +
                                              ": a thread exited with " + std::to_string(in_flight) +
                                              " asynchronous copies not waited for";
                        }
                        break;
                    }
                    if (counts[kSyncthreads] != threads) {
                        state.error = "block " + block_name(state.block_index) + ": a __syncthreads reached by " +
                                      std::to_string(counts[kSyncthreads]) + " of " + std::to_string(threads) +
                                      " threads (only some threads: the others finished)";
                        break;
                    }
                    for (Fiber& f : state.fibers) f.wait = kRunnable;
                }
            }
    for (auto s : stacks) free(s);
    active = nullptr;
    return state.error;
}

}  // namespace cuda_on_cpu

#define threadIdx (cuda_on_cpu::active->current->thread_index)
#define blockIdx (cuda_on_cpu::active->block_index)
#define blockDim (cuda_on_cpu::active->block_dim)
#define gridDim (cuda_on_cpu::active->grid_dim)

inline void __syncthreads() { cuda_on_cpu::wait_at(cuda_on_cpu::kSyncthreads); }

template <typename T>
inline T __ldg(const T* p) {
    return *p;
}

template <typename T>
inline T __shfl_down_sync(unsigned mask, T value, unsigned delta) {
    static_assert(sizeof(T) <= 16, "shuffle slots hold 16 bytes");
    using cuda_on_cpu::active;
    const std::size_t threads = (std::size_t)blockDim.x * blockDim.y * blockDim.z;
    if (mask != 0xffffffffu) cuda_on_cpu::fail("__shfl_down_sync with a partial mask is not emulated");
    if (threads % 32 != 0) cuda_on_cpu::fail("__shfl_down_sync with a full mask in a partial warp");
    const unsigned t = cuda_on_cpu::linear_thread();
    memcpy(active->exchange + 16 * t, &value, sizeof(T));
    cuda_on_cpu::wait_at(cuda_on_cpu::kShuffle);
    T out = value;
    if ((t & 31u) + delta < 32u) memcpy(&out, active->exchange + 16 * (t + delta), sizeof(T));
    cuda_on_cpu::wait_at(cuda_on_cpu::kShuffle);  // every lane has read before slots are reused
    return out;
}

namespace cuda_on_cpu {

// Calls kernel k with CUDA-style kernelParams: args[i] points at the i-th argument's value.
template <typename... A, std::size_t... I>
void call_with(void (*k)(A...), void** args, std::index_sequence<I...>) {
    k(*static_cast<std::remove_cv_t<A>*>(args[I])...);
}

template <typename... A>
void call(void (*k)(A...), void** args) {
    call_with(k, args, std::index_sequence_for<A...>{});
}

// The kernel's parameter list as codes: p (pointer), iN (N-byte integer), fN (N-byte float).
template <typename A>
std::string param_code() {
    if (std::is_pointer_v<A>) return "p";
    if (std::is_floating_point_v<A>) return "f" + std::to_string(sizeof(A));
    return "i" + std::to_string(sizeof(A));
}

template <typename... A>
std::string signature(void (*)(A...)) {
    std::string s;
    ((s += (s.empty() ? "" : ",") + param_code<A>()), ...);
    return s;
}

}  // namespace cuda_on_cpu

// Dynamic shared memory and the asynchronous copies of kernels/nnx_kernels.cu (cp.async on
// a GPU), with the deferred landing described at the top of this file.
#define NNX_ASYNC_COPY_PROVIDED
#define NNX_DYNAMIC_SHARED(type, name) type* name = reinterpret_cast<type*>(cuda_on_cpu::dynamic_shared())

namespace cuda_on_cpu {

inline unsigned char* dynamic_shared() { return reinterpret_cast<unsigned char*>(active->dynamic_shared.data()); }

}  // namespace cuda_on_cpu

inline void nnx_copy16_async(void* shared_dst, const void* global_src) {
    using cuda_on_cpu::active;
    unsigned char* dst = static_cast<unsigned char*>(shared_dst);
    unsigned char* begin = cuda_on_cpu::dynamic_shared();
    if (dst < begin || dst + 16 > begin + active->dynamic_shared.size() * 16)
        cuda_on_cpu::fail("an asynchronous copy to outside the launch's dynamic shared memory");
    else if ((reinterpret_cast<std::size_t>(dst) | reinterpret_cast<std::size_t>(global_src)) % 16 != 0)
        cuda_on_cpu::fail("a 16-byte asynchronous copy between addresses not 16-byte aligned");
    else {
        memset(dst, 0xFF, 16);
        active->current->open_copies.push_back({dst, global_src});
    }
}

inline void nnx_copy_commit() {
    cuda_on_cpu::Fiber& f = *cuda_on_cpu::active->current;
    f.copy_groups.push_back(std::move(f.open_copies));
    f.open_copies.clear();
}

template <int PENDING>
inline void nnx_copy_wait() {
    cuda_on_cpu::Fiber& f = *cuda_on_cpu::active->current;
    while (f.copy_groups.size() > (std::size_t)PENDING) {
        for (const cuda_on_cpu::AsyncCopy& c : f.copy_groups.front()) memcpy(c.dst, c.src, 16);
        f.copy_groups.erase(f.copy_groups.begin());
    }
}

// The alignment sanitizer's reports (GCC and Clang call these for -fsanitize=alignment; the
// emulation defines them itself, so no sanitizer runtime is linked). The layouts are the
// sanitizers' ABI: a source location, a type descriptor, log2 of the alignment required and
// the kind of access.
namespace cuda_on_cpu {

struct SanitizerLocation {
    const char* file;
    unsigned line, column;
};
struct SanitizerType {
    unsigned short kind, info;
    char name[1];
};
struct SanitizerTypeMismatch {
    SanitizerLocation location;
    const SanitizerType* type;
    unsigned char log_alignment;
    unsigned char access_kind;
};

inline void report_type_mismatch(const SanitizerTypeMismatch* data, std::uintptr_t pointer) {
    static const char* const kinds[] = {"load of", "store to", "reference to", "member access in",
                                        "member call on"};
    const std::uintptr_t alignment = std::uintptr_t(1) << data->log_alignment;
    std::string what = data->access_kind < 5 ? kinds[data->access_kind] : "access to";
    std::string message;
    if (pointer == 0)
        message = what + " a null pointer of type " + data->type->name;
    else if (pointer % alignment != 0)
        message = "misaligned " + what + " " + data->type->name + " at an address " +
                  std::to_string(pointer % alignment) + " bytes past a " + std::to_string(alignment) +
                  "-byte boundary (a GPU faults: misaligned address)";
    else
        message = what + " " + data->type->name + ": a type mismatch";
    const char* file = data->location.file ? strrchr(data->location.file, '/') : nullptr;
    message += std::string(" at ") + (file ? file + 1 : (data->location.file ? data->location.file : "?")) + ":" +
               std::to_string(data->location.line);
    if (active != nullptr) {
        std::string where = active->current ? "block " + block_name(active->block_index) + ", thread " +
                                                  block_name(active->current->thread_index) + ": "
                                            : "";
        fail(where + message);
    }
}

}  // namespace cuda_on_cpu

extern "C" void __ubsan_handle_type_mismatch_v1(cuda_on_cpu::SanitizerTypeMismatch* data, std::uintptr_t pointer) {
    cuda_on_cpu::report_type_mismatch(data, pointer);
}

extern "C" void __ubsan_handle_type_mismatch_v1_abort(cuda_on_cpu::SanitizerTypeMismatch* data,
                                                      std::uintptr_t pointer) {
    cuda_on_cpu::report_type_mismatch(data, pointer);
}
