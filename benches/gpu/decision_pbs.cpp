// Decision mode's expensive step on a GPU: for every template, one key switch (venue key, LWE
// dimension 2048 -> 918, base 2^4 x 4 levels) and one programmable bootstrap (n = 918, GLWE
// k = 1, N = 2048, base 2^23 x 1 level) that writes the template's bit of an 8-bit block mask,
// the parameters of fhe/src/decision.rs. It calls tfhe's CUDA backend (the C API under tfhe
// 1.8.2's `gpu` feature) and times each stage over a batch of templates.
//
// The keys are made under all-zero secret keys with random masks: the GPU does exactly the
// work it does for real keys (the same FFTs over the same sizes) and the outputs are exact.
// Under zero keys a body passes through the key switch and the bootstrap whatever the keys'
// contents, so the check of every block mask (`blocks_wrong`) proves the plumbing (indexes,
// the choice of test polynomial per template, sample extraction, the host sum), not the keys'
// layout. The noise and security of the real keys are the CPU engine's (docs/fhe.md); this
// measures time.
//
// Usage: decision_pbs [templates=1000] [runs=5]; prints one JSON line.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include <cuda_runtime.h>

#include "device.h"
#include "keyswitch/keyswitch.h"
#include "pbs/pbs_enums.h"
#include "pbs/programmable_bootstrap.h"

namespace {

constexpr uint32_t kPoly = 2048;       // N
constexpr uint32_t kGlwe = 1;          // k
constexpr uint32_t kBig = kGlwe * kPoly;  // LWE dimension of an extracted score
constexpr uint32_t kSmall = 918;       // LWE dimension after the key switch
constexpr uint32_t kKsBase = 4, kKsLevels = 4;
constexpr uint32_t kPbsBase = 23, kPbsLevels = 1;
constexpr uint32_t kBlock = 8;         // templates per response mask

double ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void check(cudaError_t e, const char *what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

}  // namespace

int main(int argc, char **argv) {
  const uint32_t n = argc > 1 ? static_cast<uint32_t>(std::atoi(argv[1])) : 1000;
  const int runs = argc > 2 ? std::atoi(argv[2]) : 5;
  if (n == 0 || runs <= 0) {
    std::fprintf(stderr, "usage: decision_pbs [templates > 0] [runs > 0]\n");
    return 2;
  }
  const uint32_t gpu = 0;
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, gpu), "device properties");
  void *stream = cuda_create_stream_ffi(gpu);
  std::mt19937_64 rng(42);

  // Key material: random masks, zero bodies (encryptions of zero under zero keys).
  std::vector<uint64_t> ksk(static_cast<size_t>(kBig) * kKsLevels * (kSmall + 1));
  for (size_t i = 0; i < ksk.size(); ++i) ksk[i] = (i % (kSmall + 1) == kSmall) ? 0 : rng();
  const size_t ggsw_words = static_cast<size_t>(kPbsLevels) * (kGlwe + 1) * (kGlwe + 1) * kPoly;
  std::vector<uint64_t> bsk(static_cast<size_t>(kSmall) * ggsw_words);
  for (size_t i = 0; i < bsk.size(); ++i) {
    // Each GLWE row: k mask polynomials then the body polynomial.
    const size_t in_row = i % ((kGlwe + 1) * kPoly);
    bsk[i] = in_row >= kGlwe * kPoly ? 0 : rng();
  }
  auto t0 = std::chrono::steady_clock::now();
  void *d_ksk = cuda_malloc_async(ksk.size() * 8, stream, gpu);
  cuda_memcpy_async_to_gpu(d_ksk, ksk.data(), ksk.size() * 8, stream, gpu);
  const size_t fourier_bsk_doubles = static_cast<size_t>(kSmall) * ggsw_words;  // N/2 complex per polynomial
  void *d_bsk = cuda_malloc_async(fourier_bsk_doubles * 8, stream, gpu);
  cuda_convert_lwe_programmable_bootstrap_key_64_async(stream, gpu, d_bsk, bsk.data(), kSmall, kGlwe,
                                                       kPbsLevels, kPoly);
  cuda_synchronize_stream(stream, gpu);
  const double key_upload_ms = ms_since(t0);

  // Test polynomials: for bit b of a block, every body coefficient is 2^(63 - 8 + b).
  std::vector<uint64_t> luts(static_cast<size_t>(kBlock) * (kGlwe + 1) * kPoly, 0);
  for (uint32_t b = 0; b < kBlock; ++b) {
    uint64_t *body = &luts[(static_cast<size_t>(b) * (kGlwe + 1) + kGlwe) * kPoly];
    std::fill(body, body + kPoly, uint64_t{1} << (63 - kBlock + b));
  }
  std::vector<uint64_t> index(n), lut_index(n);
  for (uint32_t i = 0; i < n; ++i) {
    index[i] = i;
    lut_index[i] = i % kBlock;
  }
  // Scores: random masks; the phase is 1/8 (at or above the threshold) or 5/8 (below) of the
  // torus, chosen at random per template.
  std::vector<uint64_t> scores(static_cast<size_t>(n) * (kBig + 1));
  std::vector<bool> above(n);
  for (uint32_t i = 0; i < n; ++i) {
    uint64_t *lwe = &scores[static_cast<size_t>(i) * (kBig + 1)];
    for (uint32_t j = 0; j < kBig; ++j) lwe[j] = rng();
    above[i] = rng() & 1;
    lwe[kBig] = above[i] ? (uint64_t{1} << 61) : (uint64_t{1} << 63) + (uint64_t{1} << 61);
  }

  void *d_lut = cuda_malloc_async(luts.size() * 8, stream, gpu);
  void *d_lut_index = cuda_malloc_async(n * 8, stream, gpu);
  void *d_index = cuda_malloc_async(n * 8, stream, gpu);
  void *d_big = cuda_malloc_async(scores.size() * 8, stream, gpu);
  void *d_small = cuda_malloc_async(static_cast<size_t>(n) * (kSmall + 1) * 8, stream, gpu);
  void *d_out = cuda_malloc_async(scores.size() * 8, stream, gpu);
  cuda_memcpy_async_to_gpu(d_lut, luts.data(), luts.size() * 8, stream, gpu);
  cuda_memcpy_async_to_gpu(d_lut_index, lut_index.data(), n * 8, stream, gpu);
  cuda_memcpy_async_to_gpu(d_index, index.data(), n * 8, stream, gpu);
  int8_t *pbs_buffer = nullptr;
  scratch_cuda_programmable_bootstrap_64_async(stream, gpu, &pbs_buffer, kSmall, kGlwe, kPoly, kPbsLevels, n,
                                               true, NO_REDUCTION);
  cuda_synchronize_stream(stream, gpu);

  std::vector<double> upload, keyswitch, bootstrap, download, sum, total;
  std::vector<uint64_t> out(scores.size());
  uint64_t wrong = 0;
  for (int run = 0; run <= runs; ++run) {  // run 0 warms up
    auto start = std::chrono::steady_clock::now();
    cuda_memcpy_async_to_gpu(d_big, scores.data(), scores.size() * 8, stream, gpu);
    cuda_synchronize_stream(stream, gpu);
    const double up = ms_since(start);
    auto t = std::chrono::steady_clock::now();
    cuda_keyswitch_lwe_ciphertext_vector_64_64_async(stream, gpu, d_small, d_index, d_big, d_index, d_ksk, kBig,
                                                     kSmall, kKsBase, kKsLevels, n);
    cuda_synchronize_stream(stream, gpu);
    const double ks = ms_since(t);
    t = std::chrono::steady_clock::now();
    cuda_programmable_bootstrap_64_async(stream, gpu, d_out, d_index, d_lut, d_lut_index, d_small, d_index, d_bsk,
                                         pbs_buffer, kSmall, kGlwe, kPoly, kPbsBase, kPbsLevels, n, 1, 0);
    cuda_synchronize_stream(stream, gpu);
    const double pbs = ms_since(t);
    t = std::chrono::steady_clock::now();
    cuda_memcpy_async_to_cpu(out.data(), d_out, out.size() * 8, stream, gpu);
    cuda_synchronize_stream(stream, gpu);
    const double down = ms_since(t);
    // The block masks, summed on the host as the CPU engine does (plus c per template: 2c when
    // the score reached the threshold, 0 when not).
    t = std::chrono::steady_clock::now();
    std::vector<uint64_t> masks((n + kBlock - 1) / kBlock * (kBig + 1), 0);
    for (uint32_t i = 0; i < n; ++i) {
      uint64_t *acc = &masks[static_cast<size_t>(i / kBlock) * (kBig + 1)];
      const uint64_t *lwe = &out[static_cast<size_t>(i) * (kBig + 1)];
      for (uint32_t j = 0; j <= kBig; ++j) acc[j] += lwe[j];
      acc[kBig] += uint64_t{1} << (63 - kBlock + i % kBlock);
    }
    const double summed = ms_since(t);
    check(cudaGetLastError(), "kernels");
    if (run == 0) continue;
    // Under zero keys each block's body is its bit mask times 2^(64 - 8).
    for (uint32_t blk = 0; blk * kBlock < n; ++blk) {
      const uint64_t body = masks[static_cast<size_t>(blk) * (kBig + 1) + kBig];
      uint64_t expected = 0;
      for (uint32_t b = 0; b < kBlock && blk * kBlock + b < n; ++b)
        if (above[blk * kBlock + b]) expected |= uint64_t{1} << b;
      if (body != expected << (64 - kBlock)) ++wrong;
    }
    upload.push_back(up);
    keyswitch.push_back(ks);
    bootstrap.push_back(pbs);
    download.push_back(down);
    sum.push_back(summed);
    total.push_back(ms_since(start));
  }

  std::printf(
      "{\"device\":\"%s\",\"templates\":%u,\"runs\":%d,\"key_upload_ms\":%.1f,\"upload_ms\":%.2f,"
      "\"keyswitch_ms\":%.2f,\"bootstrap_ms\":%.2f,\"download_ms\":%.2f,\"sum_ms\":%.2f,\"total_ms\":%.2f,"
      "\"per_template_us\":%.2f,\"blocks_wrong\":%llu}\n",
      prop.name, n, runs, key_upload_ms, median(upload), median(keyswitch), median(bootstrap), median(download),
      median(sum), median(total), median(total) * 1000.0 / n, static_cast<unsigned long long>(wrong));
  cleanup_cuda_programmable_bootstrap_64(stream, gpu, &pbs_buffer);
  for (void *p : {d_ksk, d_bsk, d_lut, d_lut_index, d_index, d_big, d_small, d_out}) cuda_drop(p, gpu);
  cuda_destroy_stream(stream, gpu);
  return wrong == 0 ? 0 : 1;
}
