//! The vector loops under this module's operators, each with one entry point that checks its
//! bounds and then runs AVX-512 code where the CPU has it (detected at run time) or a portable
//! loop. Both paths are tested against each other.

/// Bounds applied to every output value: a fused ReLU is `[0, +inf)`, nothing is
/// `(-inf, +inf)`.
#[derive(Debug, Clone, Copy)]
pub struct Clamp {
    /// Values below become this.
    pub lo: f32,
    /// Values above become this.
    pub hi: f32,
}

impl Clamp {
    /// No bounds.
    pub const NONE: Clamp = Clamp { lo: f32::NEG_INFINITY, hi: f32::INFINITY };

    /// `v` within the bounds; NaN stays NaN.
    #[inline(always)]
    fn apply(self, v: f32) -> f32 {
        if v < self.lo {
            self.lo
        } else if v > self.hi {
            self.hi
        } else {
            v
        }
    }
}

impl PartialEq for Clamp {
    fn eq(&self, other: &Clamp) -> bool {
        self.lo.to_bits() == other.lo.to_bits() && self.hi.to_bits() == other.hi.to_bits()
    }
}

impl Eq for Clamp {}

/// `a + b`, or a panic: the bounds checks before the vector code must not wrap around.
fn sum(a: usize, b: usize) -> usize {
    a.checked_add(b).expect("index arithmetic overflows")
}

/// `a · b`, or a panic (see [`sum`]).
fn product_of(a: usize, b: usize) -> usize {
    a.checked_mul(b).expect("index arithmetic overflows")
}

fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `out[j] = clamp(bias + Σ_t weights[t] · src[offsets[t] + j])` for every `j` of `out`: a
/// [`product`] with one output, and for nine taps (a 3x3 kernel, the models' depthwise
/// layers) a loop that keeps the weights in registers (measured: the depthwise layers 15%
/// slower through the general product).
///
/// # Panics
/// When `offsets` and `weights` differ in length or a tap would read past `src`.
pub fn taps(out: &mut [f32], src: &[f32], offsets: &[usize], weights: &[f32], bias: f32, clamp: Clamp) {
    assert_eq!(offsets.len(), weights.len(), "one weight per tap");
    if out.is_empty() {
        return;
    }
    let reach = offsets.iter().max().map_or(0, |&o| sum(o, out.len()));
    assert!(reach <= src.len(), "a tap reads {reach} values of {}", src.len());
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        if let (Ok(offsets), Ok(weights)) = (<&[usize; 9]>::try_from(offsets), <&[f32; 9]>::try_from(weights)) {
            // SAFETY: the CPU has AVX-512F; every tap's reads are inside `src` (checked above).
            return unsafe { x86::taps9(out, src, offsets, weights, bias, clamp) };
        }
    }
    let len = out.len();
    product(out, len, src, offsets, weights, &[bias], len, clamp);
}

/// `out[o · out_stride + j] = clamp(bias[o] + Σ_t w[o][t] · src[rows[t] + j])` for
/// `j < len`, `O = bias.len()` outputs and `T = rows.len()` source rows (`w` is `O x T`,
/// row-major): a matrix product whose right-hand rows are read in place, at any offsets of
/// `src`. A 1x1 convolution reads the input planes; a wider one reads shifted views of a
/// padded copy.
///
/// # Panics
/// When a read or a write would fall outside `src` or `out`, or `w` is not `O x T`.
#[allow(clippy::too_many_arguments)] // One product: the operands, their geometry, the bound.
pub fn product(
    out: &mut [f32],
    out_stride: usize,
    src: &[f32],
    rows: &[usize],
    w: &[f32],
    bias: &[f32],
    len: usize,
    clamp: Clamp,
) {
    let outputs = bias.len();
    assert_eq!(w.len(), product_of(outputs, rows.len()), "weights for {outputs} x {}", rows.len());
    if outputs == 0 || len == 0 {
        return;
    }
    assert!(len <= out_stride || outputs == 1, "rows of {len} overlap at stride {out_stride}");
    let written = sum(product_of(outputs - 1, out_stride), len);
    assert!(written <= out.len(), "{written} outputs into {}", out.len());
    let reach = rows.iter().max().map_or(0, |&r| sum(r, len));
    assert!(reach <= src.len(), "a row reads {reach} values of {}", src.len());
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: the CPU has AVX-512F; every read and write is inside the buffers (checked above).
        return unsafe { x86::product(out, out_stride, src, rows, w, bias, len, clamp) };
    }
    portable_product(out, out_stride, src, rows, w, bias, len, clamp);
}

#[allow(clippy::too_many_arguments)]
fn portable_product(
    out: &mut [f32],
    out_stride: usize,
    src: &[f32],
    rows: &[usize],
    w: &[f32],
    bias: &[f32],
    len: usize,
    clamp: Clamp,
) {
    for (o, &b) in bias.iter().enumerate() {
        let weights = &w[o * rows.len()..(o + 1) * rows.len()];
        let row = &mut out[o * out_stride..][..len];
        row.fill(b);
        for (&weight, &start) in weights.iter().zip(rows) {
            for (y, &v) in row.iter_mut().zip(&src[start..start + len]) {
                *y += v * weight;
            }
        }
        for y in row {
            *y = clamp.apply(*y);
        }
    }
}

/// `dst[to + i] = src[from + i]` for `i < count`, for every `(to, from, count)` of `runs`:
/// the rows of a plane copied in one call.
///
/// # Panics
/// When a run falls outside `dst` or `src`.
pub fn copy_runs(dst: &mut [f32], src: &[f32], runs: &[(usize, usize, usize)]) {
    for &(to, from, count) in runs {
        assert!(
            sum(to, count) <= dst.len() && sum(from, count) <= src.len(),
            "run {to}, {from}, {count} out of bounds"
        );
    }
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: the CPU has AVX-512F; every run is inside both buffers (checked above).
        return unsafe { x86::copy_runs(dst, src, runs) };
    }
    for &(to, from, count) in runs {
        dst[to..to + count].copy_from_slice(&src[from..from + count]);
    }
}

/// One input row split by column parity: `dst[evens.0 + i] = src[from + 2i]` for
/// `i < evens.1`, and `dst[odds.0 + i] = src[from + 1 + 2i]` for `i < odds.1`.
#[derive(Debug, Clone, Copy)]
pub struct Split {
    pub from: usize,
    pub evens: (usize, usize),
    pub odds: (usize, usize),
}

/// Every [`Split`] of `runs`, in one call (the stride-2 phase split of a plane: each input row
/// is read once).
///
/// # Panics
/// When a run falls outside `dst` or `src`.
pub fn split_runs(dst: &mut [f32], src: &[f32], runs: &[Split]) {
    for r in runs {
        let reach = product_of(2, r.evens.1).max(sum(product_of(2, r.odds.1), 1)) - 1;
        assert!(
            sum(r.from, reach) <= src.len()
                && sum(r.evens.0, r.evens.1) <= dst.len()
                && sum(r.odds.0, r.odds.1) <= dst.len(),
            "split {r:?} out of bounds"
        );
    }
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: the CPU has AVX-512F; every run is inside both buffers (checked above).
        return unsafe { x86::split_runs(dst, src, runs) };
    }
    for r in runs {
        for i in 0..r.evens.1 {
            dst[r.evens.0 + i] = src[r.from + 2 * i];
        }
        for i in 0..r.odds.1 {
            dst[r.odds.0 + i] = src[r.from + 1 + 2 * i];
        }
    }
}

/// `dst[i] = src[i · stride]` for every `i` of `dst`.
///
/// # Panics
/// When `src` is too short or `stride` is zero.
pub fn strided_copy(dst: &mut [f32], src: &[f32], stride: usize) {
    assert!(stride > 0, "stride 0");
    if dst.is_empty() {
        return;
    }
    let reach = sum(product_of(dst.len() - 1, stride), 1);
    assert!(reach <= src.len(), "a strided copy reads {reach} values of {}", src.len());
    // Strides 1 and 2 have their own vector paths ([`copy_runs`], [`split_runs`]).
    dst.iter_mut().zip(src.iter().step_by(stride)).for_each(|(d, &s)| *d = s);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Clamp;
    use std::arch::x86_64::*;

    /// `v` within `[lo, hi]`; NaN stays NaN (`max` and `min` return their second operand
    /// when either is NaN).
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn bound(v: __m512, lo: __m512, hi: __m512) -> __m512 {
        _mm512_min_ps(hi, _mm512_max_ps(lo, v))
    }

    /// The lanes of the last, partial vector of `left` values.
    #[inline(always)]
    fn mask(left: usize) -> __mmask16 {
        if left >= 16 {
            u16::MAX
        } else {
            (1u16 << left) - 1
        }
    }

    /// [`super::taps`] for nine taps (a 3x3 kernel): the weights stay in registers and four
    /// vectors of outputs are in flight.
    ///
    /// # Safety
    /// The CPU has AVX-512F; `offsets[t] + out.len() <= src.len()` for every tap.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn taps9(
        out: &mut [f32],
        src: &[f32],
        offsets: &[usize; 9],
        weights: &[f32; 9],
        bias: f32,
        clamp: Clamp,
    ) {
        let n = out.len();
        let (s, o) = (src.as_ptr(), out.as_mut_ptr());
        let w = [
            _mm512_set1_ps(weights[0]),
            _mm512_set1_ps(weights[1]),
            _mm512_set1_ps(weights[2]),
            _mm512_set1_ps(weights[3]),
            _mm512_set1_ps(weights[4]),
            _mm512_set1_ps(weights[5]),
            _mm512_set1_ps(weights[6]),
            _mm512_set1_ps(weights[7]),
            _mm512_set1_ps(weights[8]),
        ];
        let (b, lo, hi) = (_mm512_set1_ps(bias), _mm512_set1_ps(clamp.lo), _mm512_set1_ps(clamp.hi));
        let mut j = 0;
        // SAFETY (all pointer arithmetic below): every read is at `offsets[t] + j + k` with
        // `j + k < n`, inside `src` by the caller's guarantee; masked lanes are not read.
        unsafe {
            while j + 64 <= n {
                let (mut a0, mut a1, mut a2, mut a3) = (b, b, b, b);
                for t in 0..9 {
                    let p = s.add(offsets[t] + j);
                    a0 = _mm512_fmadd_ps(_mm512_loadu_ps(p), w[t], a0);
                    a1 = _mm512_fmadd_ps(_mm512_loadu_ps(p.add(16)), w[t], a1);
                    a2 = _mm512_fmadd_ps(_mm512_loadu_ps(p.add(32)), w[t], a2);
                    a3 = _mm512_fmadd_ps(_mm512_loadu_ps(p.add(48)), w[t], a3);
                }
                _mm512_storeu_ps(o.add(j), bound(a0, lo, hi));
                _mm512_storeu_ps(o.add(j + 16), bound(a1, lo, hi));
                _mm512_storeu_ps(o.add(j + 32), bound(a2, lo, hi));
                _mm512_storeu_ps(o.add(j + 48), bound(a3, lo, hi));
                j += 64;
            }
            while j < n {
                let m = mask(n - j);
                let mut a = b;
                for t in 0..9 {
                    a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, s.add(offsets[t] + j)), w[t], a);
                }
                _mm512_mask_storeu_ps(o.add(j), m, bound(a, lo, hi));
                j += 16;
            }
        }
    }

    /// [`super::product`]: tiles of up to four outputs by up to 64 values (four vectors),
    /// each accumulated over every source row in sixteen registers: per row, four vector
    /// loads and one broadcast weight per output.
    ///
    /// # Safety
    /// The CPU has AVX-512F; the reads and writes [`super::product`] checks are inside the
    /// buffers.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn product(
        out: &mut [f32],
        out_stride: usize,
        src: &[f32],
        rows: &[usize],
        w: &[f32],
        bias: &[f32],
        len: usize,
        clamp: Clamp,
    ) {
        let outputs = bias.len();
        let (lo, hi) = (_mm512_set1_ps(clamp.lo), _mm512_set1_ps(clamp.hi));
        let operands = Operands { src: src.as_ptr(), rows, w: w.as_ptr(), out: out.as_mut_ptr(), out_stride, lo, hi };
        let mut j = 0;
        while j < len {
            let left = len - j;
            let masks = [
                mask(left),
                mask(left.saturating_sub(16)),
                mask(left.saturating_sub(32)),
                mask(left.saturating_sub(48)),
            ];
            let mut o = 0;
            // SAFETY: every tile reads weights of outputs o..o + MR, source values rows[t] + j..
            // and writes outputs o..o + MR at j.., all under `masks` (lanes below `len`).
            unsafe {
                macro_rules! tiles {
                    ($nv:literal) => {{
                        while o + 4 <= outputs {
                            operands.tile::<4, $nv>(o, j, &bias[o..], masks);
                            o += 4;
                        }
                        match outputs - o {
                            3 => operands.tile::<3, $nv>(o, j, &bias[o..], masks),
                            2 => operands.tile::<2, $nv>(o, j, &bias[o..], masks),
                            1 => operands.tile::<1, $nv>(o, j, &bias[o..], masks),
                            _ => {}
                        }
                    }};
                }
                match left.min(64).div_ceil(16) {
                    4 => tiles!(4),
                    3 => tiles!(3),
                    2 => tiles!(2),
                    _ => tiles!(1),
                }
            }
            j += 64;
        }
    }

    /// The operands of one [`product`] call.
    struct Operands<'a> {
        src: *const f32,
        rows: &'a [usize],
        w: *const f32,
        out: *mut f32,
        out_stride: usize,
        lo: __m512,
        hi: __m512,
    }

    impl Operands<'_> {
        /// Outputs `o..o + MR`, values `j..j + 16 · NV` (the lanes of `masks`).
        ///
        /// # Safety
        /// As [`product`], with `o + MR` outputs at most, `bias.len() >= MR`, and `masks`
        /// covering only values below the product's length.
        #[target_feature(enable = "avx512f")]
        #[inline]
        unsafe fn tile<const MR: usize, const NV: usize>(
            &self,
            o: usize,
            j: usize,
            bias: &[f32],
            masks: [__mmask16; 4],
        ) {
            let count = self.rows.len();
            let mut acc = [[_mm512_setzero_ps(); NV]; MR];
            for (r, row) in acc.iter_mut().enumerate() {
                *row = [_mm512_set1_ps(bias[r]); NV];
            }
            // SAFETY: reads of `src` at rows[t] + j + 16v under masks[v], of `w` at (o + r, t),
            // and writes of `out` at (o + r) · out_stride + j + 16v under masks[v]: inside the
            // buffers (see above). Pointers are formed with wrapping arithmetic since a
            // masked-off vector may start past the end.
            unsafe {
                for (t, &start) in self.rows.iter().enumerate() {
                    let sp = self.src.wrapping_add(start + j);
                    let mut xv = [_mm512_setzero_ps(); NV];
                    for (v, xv) in xv.iter_mut().enumerate() {
                        *xv = _mm512_maskz_loadu_ps(masks[v], sp.wrapping_add(16 * v));
                    }
                    for (r, row) in acc.iter_mut().enumerate() {
                        let wv = _mm512_set1_ps(*self.w.add((o + r) * count + t));
                        for (a, &xv) in row.iter_mut().zip(&xv) {
                            *a = _mm512_fmadd_ps(xv, wv, *a);
                        }
                    }
                }
                for (r, row) in acc.iter().enumerate() {
                    let op = self.out.wrapping_add((o + r) * self.out_stride + j);
                    for (v, &a) in row.iter().enumerate() {
                        _mm512_mask_storeu_ps(op.wrapping_add(16 * v), masks[v], bound(a, self.lo, self.hi));
                    }
                }
            }
        }
    }

    /// [`super::copy_runs`]: whole vectors, the last one of a run masked.
    ///
    /// # Safety
    /// The CPU has AVX-512F; every run is inside both buffers.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn copy_runs(dst: &mut [f32], src: &[f32], runs: &[(usize, usize, usize)]) {
        let (d, s) = (dst.as_mut_ptr(), src.as_ptr());
        for &(to, from, count) in runs {
            let mut i = 0;
            // SAFETY: lanes below `count` of the run only, inside both buffers.
            unsafe {
                while i + 16 <= count {
                    _mm512_storeu_ps(d.add(to + i), _mm512_loadu_ps(s.add(from + i)));
                    i += 16;
                }
                if i < count {
                    let m = mask(count - i);
                    _mm512_mask_storeu_ps(d.add(to + i), m, _mm512_maskz_loadu_ps(m, s.add(from + i)));
                }
            }
        }
    }

    /// [`super::split_runs`]: 32 input values to 16 evens and 16 odds per step.
    ///
    /// # Safety
    /// The CPU has AVX-512F; every run is inside both buffers.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn split_runs(dst: &mut [f32], src: &[f32], runs: &[super::Split]) {
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        let (d, s) = (dst.as_mut_ptr(), src.as_ptr());
        for r in runs {
            let ((to_even, evens), (to_odd, odds)) = (r.evens, r.odds);
            // Input values the run reads, from `from`.
            let reach = (2 * evens).max(2 * odds + 1).saturating_sub(1);
            let mut i = 0;
            // SAFETY: reads of src[from + 2i ..] below `reach`, writes below `evens` and
            // `odds` values of each destination, under masks.
            unsafe {
                while i < evens.max(odds) {
                    let left = reach - 2 * i;
                    let (a, b) = if left >= 32 {
                        (_mm512_loadu_ps(s.add(r.from + 2 * i)), _mm512_loadu_ps(s.add(r.from + 2 * i + 16)))
                    } else {
                        (
                            _mm512_maskz_loadu_ps(mask(left), s.add(r.from + 2 * i)),
                            _mm512_maskz_loadu_ps(mask(left.saturating_sub(16)), s.wrapping_add(r.from + 2 * i + 16)),
                        )
                    };
                    if i < evens {
                        let v = _mm512_permutex2var_ps(a, even, b);
                        if evens - i >= 16 {
                            _mm512_storeu_ps(d.add(to_even + i), v);
                        } else {
                            _mm512_mask_storeu_ps(d.add(to_even + i), mask(evens - i), v);
                        }
                    }
                    if i < odds {
                        let v = _mm512_permutex2var_ps(a, odd, b);
                        if odds - i >= 16 {
                            _mm512_storeu_ps(d.add(to_odd + i), v);
                        } else {
                            _mm512_mask_storeu_ps(d.add(to_odd + i), mask(odds - i), v);
                        }
                    }
                    i += 16;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// [`taps`] by the definition: the portable product with one output.
    fn portable_taps(out: &mut [f32], src: &[f32], offsets: &[usize], weights: &[f32], bias: f32, clamp: Clamp) {
        let n = out.len();
        portable_product(out, n, src, offsets, weights, &[bias], n, clamp);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The dispatched loop (AVX-512 on CPUs that have it) against the portable one, for
        /// nine taps and for other counts, lengths across the vector steps and partial lanes.
        #[test]
        fn taps_agree_with_the_portable_loop(
            n in 1usize..150,
            count in prop::sample::select(vec![1usize, 2, 9, 25]),
            spread in 0usize..40,
            seed in any::<u64>(),
            relu in any::<bool>(),
        ) {
            let src = crate::tract_ops::tests::values(n + spread + 1, seed);
            let offsets: Vec<usize> = (0..count).map(|t| (t * 7 + seed as usize) % (spread + 1)).collect();
            let weights = crate::tract_ops::tests::values(count, seed ^ 3);
            let clamp = if relu { Clamp { lo: 0.0, hi: f32::INFINITY } } else { Clamp::NONE };
            let (mut fast, mut plain) = (vec![f32::NAN; n], vec![f32::NAN; n]);
            taps(&mut fast, &src, &offsets, &weights, 0.25, clamp);
            portable_taps(&mut plain, &src, &offsets, &weights, 0.25, clamp);
            for (a, b) in fast.iter().zip(&plain) {
                prop_assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{} vs {}", a, b);
            }
        }

        /// The dispatched product (AVX-512 on CPUs that have it) against the portable one,
        /// across the tile's four outputs and 64 values, with source rows at any offsets and
        /// output rows apart.
        #[test]
        fn products_agree_with_the_portable_loop(
            count in 1usize..20,
            outputs in 1usize..10,
            len in 1usize..140,
            gap in 0usize..5,
            spread in 0usize..30,
            seed in any::<u64>(),
            relu in any::<bool>(),
        ) {
            let src = crate::tract_ops::tests::values(len + spread, seed);
            let rows: Vec<usize> = (0..count).map(|t| (t * 13 + seed as usize) % (spread + 1)).collect();
            let w = crate::tract_ops::tests::values(outputs * count, seed ^ 1);
            let bias = crate::tract_ops::tests::values(outputs, seed ^ 2);
            let clamp = if relu { Clamp { lo: 0.0, hi: f32::INFINITY } } else { Clamp::NONE };
            let stride = len + gap;
            let (mut fast, mut plain) = (vec![f32::NAN; outputs * stride], vec![f32::NAN; outputs * stride]);
            product(&mut fast, stride, &src, &rows, &w, &bias, len, clamp);
            portable_product(&mut plain, stride, &src, &rows, &w, &bias, len, clamp);
            for (i, (a, b)) in fast.iter().zip(&plain).enumerate() {
                if i % stride < len {
                    prop_assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{} vs {}", a, b);
                } else {
                    // The gap between output rows is not written.
                    prop_assert!(a.is_nan() && b.is_nan());
                }
            }
        }

        /// Row copies and parity splits against plain indexing, rows across the vector
        /// steps and partial lanes.
        #[test]
        fn runs_copy_and_split_like_plain_indexing(
            runs in prop::collection::vec((0usize..70, 0usize..70), 1..5),
            seed in any::<u64>(),
        ) {
            let src = crate::tract_ops::tests::values(400, seed);
            let copies: Vec<(usize, usize, usize)> =
                runs.iter().enumerate().map(|(k, &(from, count))| (k * 80, from, count)).collect();
            let mut dst = vec![f32::NAN; 80 * runs.len()];
            copy_runs(&mut dst, &src, &copies);
            for &(to, from, count) in &copies {
                prop_assert_eq!(&dst[to..to + count], &src[from..from + count]);
            }
            let splits: Vec<Split> = runs
                .iter()
                .enumerate()
                .map(|(k, &(from, count))| Split { from, evens: (k * 160, count.div_ceil(2)), odds: (k * 160 + 80, count / 2) })
                .collect();
            let mut dst = vec![f32::NAN; 160 * runs.len()];
            split_runs(&mut dst, &src, &splits);
            for r in &splits {
                for i in 0..r.evens.1 {
                    prop_assert_eq!(dst[r.evens.0 + i], src[r.from + 2 * i]);
                }
                for i in 0..r.odds.1 {
                    prop_assert_eq!(dst[r.odds.0 + i], src[r.from + 1 + 2 * i]);
                }
                // Nothing past the runs is written.
                prop_assert!(dst[r.evens.0 + r.evens.1..r.odds.0].iter().all(|v| v.is_nan()));
            }
        }

        #[test]
        fn strided_copies_pick_every_strideth_value(n in 0usize..100, stride in 1usize..4, extra in 0usize..3) {
            let len = if n == 0 { extra } else { (n - 1) * stride + 1 + extra };
            let src: Vec<f32> = (0..len).map(|i| i as f32).collect();
            let mut dst = vec![-1.0; n];
            strided_copy(&mut dst, &src, stride);
            prop_assert!(dst.iter().enumerate().all(|(i, &v)| v == (i * stride) as f32));
        }
    }

    #[test]
    fn nan_passes_through_the_bounds() {
        let relu = Clamp { lo: 0.0, hi: f32::INFINITY };
        let mut src = vec![1.0f32; 40];
        src[5] = f32::NAN;
        for clamp in [Clamp::NONE, relu] {
            let (mut fast, mut plain) = (vec![0.0; 20], vec![0.0; 20]);
            taps(&mut fast, &src, &[0, 1], &[1.0, -3.0], 0.0, clamp);
            portable_taps(&mut plain, &src, &[0, 1], &[1.0, -3.0], 0.0, clamp);
            for out in [&fast, &plain] {
                assert!(out[4].is_nan() && out[5].is_nan(), "{out:?}");
                assert_eq!(out[0], clamp.apply(-2.0));
            }
            // Nine taps (the loop with the weights in registers): the six outputs that read
            // the NaN are NaN.
            let (mut fast, mut plain) = (vec![0.0; 20], vec![0.0; 20]);
            let offsets: Vec<usize> = (0..9).collect();
            taps(&mut fast, &src, &offsets, &[1.0; 9], -20.0, clamp);
            portable_taps(&mut plain, &src, &offsets, &[1.0; 9], -20.0, clamp);
            for out in [&fast, &plain] {
                assert!(out[..6].iter().all(|v| v.is_nan()), "{out:?}");
                assert_eq!(out[6], clamp.apply(-11.0));
            }
        }
    }

    #[test]
    #[should_panic(expected = "a tap reads")]
    fn a_tap_past_the_source_is_refused() {
        let mut out = [0.0; 4];
        taps(&mut out, &[1.0; 6], &[0, 3], &[1.0, 1.0], 0.0, Clamp::NONE);
    }
}
