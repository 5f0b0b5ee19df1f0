//! The vector loops under this module's operators, each with one entry point that checks its
//! bounds and then runs AVX-512 code where the CPU has it (detected at run time) or a portable
//! loop. Both paths are tested against each other. [`Direct3x3`] is AVX-512 only: without it
//! `run` returns `false` and the caller takes the padded path; it is tested against the
//! definition.

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
/// [`product`] with one output, and for nine taps (a 3x3 kernel: the depthwise layers
/// [`Direct3x3`] does not take, e.g. dilated ones, and every 3x3 depthwise layer on a CPU
/// without AVX-512) a loop that keeps the weights in registers (measured: the depthwise
/// layers 15% slower through the general product).
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

/// A 3x3 depthwise plane (stride 1 or 2, dilation 1, padding up to 2 before) computed
/// straight from the input plane: no padded copy in, no copy out. An output row is vectors of
/// 16 columns; each vector's loads are masked so that a lane outside the input reads zero
/// (the padding), and the masks, which depend only on the column, are worked out once per
/// geometry. Rows outside the input are skipped.
#[derive(Debug, Clone)]
pub struct Direct3x3 {
    in_h: usize,
    in_w: usize,
    out_h: usize,
    out_w: usize,
    stride: usize,
    pad_top: usize,
    blocks: Vec<Block>,
}

/// One vector of output columns.
#[derive(Debug, Clone, Copy)]
struct Block {
    /// Its first output column.
    ox: usize,
    /// The input column of its first load (negative inside the left padding).
    first: isize,
    /// Stride 1: the loads of taps `kx = 0, 1, 2` (16 values at `first + kx`). Stride 2: 32
    /// values at `first` (taps 0 and 1, split by parity) and 32 at `first + 2` (tap 2), two
    /// vectors each.
    loads: [u16; 4],
    /// The lanes below the row's width.
    store: u16,
}

/// Lanes `lo..hi` of a vector (none when `hi <= lo`), from signed bounds.
fn lanes(lo: isize, hi: isize) -> u16 {
    let (lo, hi) = (lo.clamp(0, 16) as u32, hi.clamp(0, 16) as u32);
    let below = |n: u32| if n >= 16 { u16::MAX } else { (1u16 << n) - 1 };
    if hi <= lo {
        0
    } else {
        below(hi) & !below(lo)
    }
}

impl Direct3x3 {
    /// The plan for an `in_h x in_w` plane to `out_h x out_w`, or `None` outside what it
    /// computes (stride other than 1 or 2, padding over 2, an empty plane, or an output that
    /// a 3x3 kernel at that stride and padding cannot give).
    pub fn new(
        [in_h, in_w]: [usize; 2],
        [out_h, out_w]: [usize; 2],
        stride: usize,
        [pad_top, pad_left]: [usize; 2],
    ) -> Option<Direct3x3> {
        let fits = |input: usize, output: usize, pad: usize| {
            // The last output's window starts inside the padded input and ends at most two
            // values past the input (padding after narrower than the kernel).
            output > 0 && input > 0 && pad <= 2 && (output - 1) * stride + 3 <= input + pad + 2
        };
        if !(stride == 1 || stride == 2) || !fits(in_h, out_h, pad_top) || !fits(in_w, out_w, pad_left) {
            return None;
        }
        let width = in_w as isize;
        let blocks = (0..out_w)
            .step_by(16)
            .map(|ox| {
                let count = (out_w - ox).min(16) as isize;
                let first = (ox * stride) as isize - pad_left as isize;
                // Lanes of a load at column `base` that are inside the row and used.
                let load = |base: isize, used: isize| lanes(-base, (width - base).min(used));
                let loads = if stride == 1 {
                    [load(first, count), load(first + 1, count), load(first + 2, count), 0]
                } else {
                    let used = 2 * count;
                    [load(first, used), load(first + 16, used - 16), load(first + 2, used), load(first + 18, used - 16)]
                };
                Block { ox, first, loads, store: lanes(0, count) }
            })
            .collect();
        Some(Direct3x3 { in_h, in_w, out_h, out_w, stride, pad_top, blocks })
    }

    /// `out[oy][ox] = clamp(bias + Σ weights[ky · 3 + kx] · x[oy · s + ky − pt][ox · s + kx −
    /// pl])` for one plane, values outside `x` being zero. Returns `false`, having written
    /// nothing, where the CPU lacks AVX-512 (the caller then uses [`taps`] over a padded copy).
    ///
    /// # Panics
    /// When `x` or `out` is not one plane of the geometry.
    pub fn run(&self, out: &mut [f32], x: &[f32], weights: &[f32; 9], bias: f32, clamp: Clamp) -> bool {
        assert_eq!(x.len(), product_of(self.in_h, self.in_w), "input plane of {}x{}", self.in_h, self.in_w);
        assert_eq!(out.len(), product_of(self.out_h, self.out_w), "output plane of {}x{}", self.out_h, self.out_w);
        #[cfg(target_arch = "x86_64")]
        if avx512() {
            // SAFETY: the CPU has AVX-512F; `x` and `out` are whole planes of the geometry
            // (checked above), from which every mask was built.
            unsafe { x86::direct3x3(self, out, x, weights, bias, clamp) };
            return true;
        }
        false
    }
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

    /// [`super::Direct3x3::run`]: four output rows at a time, so that each input row's
    /// three tap vectors (three masked loads at stride 1; four loads and three parity
    /// permutes at stride 2) feed every output row it is in, and four accumulators are in
    /// flight.
    ///
    /// # Safety
    /// The CPU has AVX-512F; `x` and `out` are whole planes of `plan`'s geometry.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn direct3x3(
        plan: &super::Direct3x3,
        out: &mut [f32],
        x: &[f32],
        weights: &[f32; 9],
        bias: f32,
        clamp: Clamp,
    ) {
        let k = Direct {
            plan,
            x: x.as_ptr(),
            out: out.as_mut_ptr(),
            w: weights.map(|v| _mm512_set1_ps(v)),
            b: _mm512_set1_ps(bias),
            lo: _mm512_set1_ps(clamp.lo),
            hi: _mm512_set1_ps(clamp.hi),
        };
        let mut oy = 0;
        // SAFETY: output rows below out_h, of a plane of the geometry (the caller's guarantee).
        unsafe {
            if plan.stride == 1 {
                while oy + 4 <= plan.out_h {
                    k.rows::<4, 1>(oy);
                    oy += 4;
                }
                while oy < plan.out_h {
                    k.rows::<1, 1>(oy);
                    oy += 1;
                }
            } else {
                while oy + 4 <= plan.out_h {
                    k.rows::<4, 2>(oy);
                    oy += 4;
                }
                while oy < plan.out_h {
                    k.rows::<1, 2>(oy);
                    oy += 1;
                }
            }
        }
    }

    /// The operands of one [`direct3x3`] plane.
    struct Direct<'a> {
        plan: &'a super::Direct3x3,
        x: *const f32,
        out: *mut f32,
        w: [__m512; 9],
        b: __m512,
        lo: __m512,
        hi: __m512,
    }

    impl Direct<'_> {
        /// Output rows `oy..oy + R` at stride `S`.
        ///
        /// # Safety
        /// As [`direct3x3`], with `oy + R <= out_h`.
        #[target_feature(enable = "avx512f")]
        #[inline]
        unsafe fn rows<const R: usize, const S: usize>(&self, oy: usize) {
            let plan = self.plan;
            let (in_h, width) = (plan.in_h as isize, plan.in_w as isize);
            // The input row of kernel row 0 of output row oy.
            let top = (oy * S) as isize - plan.pad_top as isize;
            for block in &plan.blocks {
                let mut acc = [self.b; R];
                for k in 0..(R - 1) * S + 3 {
                    let iy = top + k as isize;
                    if iy < 0 || iy >= in_h {
                        continue;
                    }
                    // SAFETY: row iy is inside the plane; each load's mask keeps only lanes
                    // whose column is inside the row.
                    let t = unsafe { self.taps::<S>(self.x.wrapping_offset(iy * width + block.first), block.loads) };
                    for (i, acc) in acc.iter_mut().enumerate() {
                        let ky = k.wrapping_sub(i * S);
                        if ky < 3 {
                            for (kx, &t) in t.iter().enumerate() {
                                *acc = _mm512_fmadd_ps(t, self.w[ky * 3 + kx], *acc);
                            }
                        }
                    }
                }
                for (i, &acc) in acc.iter().enumerate() {
                    let p = self.out.wrapping_add((oy + i) * plan.out_w + block.ox);
                    // SAFETY: the lanes below the row's width of output row oy + i < out_h.
                    unsafe { _mm512_mask_storeu_ps(p, block.store, bound(acc, self.lo, self.hi)) };
                }
            }
        }

        /// The three tap vectors (`kx = 0, 1, 2`) of one input row for one output vector,
        /// from `p`, the row at the block's first column.
        ///
        /// # Safety
        /// Every lane `masks` keep is inside the input.
        #[target_feature(enable = "avx512f")]
        #[inline]
        unsafe fn taps<const S: usize>(&self, p: *const f32, masks: [u16; 4]) -> [__m512; 3] {
            let [m0, m1, m2, m3] = masks;
            // SAFETY: masked lanes are not read (the caller's guarantee for the others).
            unsafe {
                if S == 1 {
                    [
                        _mm512_maskz_loadu_ps(m0, p),
                        _mm512_maskz_loadu_ps(m1, p.wrapping_add(1)),
                        _mm512_maskz_loadu_ps(m2, p.wrapping_add(2)),
                    ]
                } else {
                    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
                    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
                    let (a, c) = (_mm512_maskz_loadu_ps(m0, p), _mm512_maskz_loadu_ps(m1, p.wrapping_add(16)));
                    let (d, e) =
                        (_mm512_maskz_loadu_ps(m2, p.wrapping_add(2)), _mm512_maskz_loadu_ps(m3, p.wrapping_add(18)));
                    [
                        _mm512_permutex2var_ps(a, even, c),
                        _mm512_permutex2var_ps(a, odd, c),
                        _mm512_permutex2var_ps(d, even, e),
                    ]
                }
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

    /// A 3x3 plane by the definition, in f64.
    #[allow(clippy::too_many_arguments)]
    fn plane_3x3(
        x: &[f32],
        [h, w]: [usize; 2],
        [oh, ow]: [usize; 2],
        stride: usize,
        [pt, pl]: [usize; 2],
        k: &[f32],
        bias: f32,
        clamp: Clamp,
    ) -> Vec<f32> {
        let mut y = Vec::with_capacity(oh * ow);
        for oy in 0..oh {
            for ox in 0..ow {
                let mut acc = f64::from(bias);
                for (t, &weight) in k.iter().enumerate() {
                    let iy = (oy * stride + t / 3) as isize - pt as isize;
                    let ix = (ox * stride + t % 3) as isize - pl as isize;
                    if (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix) {
                        acc += f64::from(x[iy as usize * w + ix as usize]) * f64::from(weight);
                    }
                }
                y.push(clamp.apply(acc as f32));
            }
        }
        y
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        /// The direct 3x3 planes against the definition, across widths around the vector
        /// lanes, heights around the four-row groups, both strides and every padding; with
        /// NaN canaries around both planes, a read or a write outside them shows.
        #[test]
        fn direct_3x3_planes_match_the_definition(
            h in 1usize..11,
            w in prop::sample::select(vec![1usize, 2, 3, 5, 15, 16, 17, 31, 32, 33, 40, 47, 80, 161]),
            stride in 1usize..3,
            pads in prop::array::uniform4(0usize..3),
            relu in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let [pt, pl, pb, pr] = pads;
            prop_assume!(h + pt + pb >= 3 && w + pl + pr >= 3);
            let (oh, ow) = ((h + pt + pb - 3) / stride + 1, (w + pl + pr - 3) / stride + 1);
            let plan = Direct3x3::new([h, w], [oh, ow], stride, [pt, pl]).expect("a 3x3 geometry");
            let canary = 40;
            let mut x = vec![f32::NAN; h * w + 2 * canary];
            x[canary..canary + h * w].copy_from_slice(&crate::tract_ops::tests::values(h * w, seed));
            let k = crate::tract_ops::tests::values(9, seed ^ 5);
            let weights: [f32; 9] = k.clone().try_into().expect("nine");
            let clamp = if relu { Clamp { lo: 0.0, hi: f32::INFINITY } } else { Clamp::NONE };
            let mut out = vec![f32::NAN; oh * ow + 2 * canary];
            if !plan.run(&mut out[canary..canary + oh * ow], &x[canary..canary + h * w], &weights, 0.5, clamp) {
                return Ok(()); // No AVX-512: the padded path (tested through the operator).
            }
            let expected = plane_3x3(&x[canary..canary + h * w], [h, w], [oh, ow], stride, [pt, pl], &k, 0.5, clamp);
            for (i, (a, b)) in out[canary..canary + oh * ow].iter().zip(&expected).enumerate() {
                prop_assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "at {}: {} vs {}", i, a, b);
            }
            prop_assert!(out[..canary].iter().chain(&out[canary + oh * ow..]).all(|v| v.is_nan()));
        }
    }

    #[test]
    fn direct_3x3_refuses_what_it_does_not_compute() {
        assert!(Direct3x3::new([8, 8], [8, 8], 1, [1, 1]).is_some());
        assert!(Direct3x3::new([8, 8], [4, 4], 2, [1, 1]).is_some());
        // Stride 3, padding 3, an output a 3x3 kernel cannot give, an empty plane.
        assert!(Direct3x3::new([9, 9], [3, 3], 3, [0, 0]).is_none());
        assert!(Direct3x3::new([8, 8], [12, 12], 1, [3, 3]).is_none());
        assert!(Direct3x3::new([8, 8], [11, 8], 1, [1, 1]).is_none());
        assert!(Direct3x3::new([0, 8], [1, 8], 1, [1, 1]).is_none());
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
