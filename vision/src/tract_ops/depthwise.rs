//! Depthwise convolution (`Conv` with one group per channel, one output per group), straight
//! from the input planes for the models' 3x3 layers and as runs over phase-split padded
//! copies otherwise.
//!
//! CenterFace, UltraFace and the liveness network are MobileNet-style: a third of their
//! convolutions are depthwise 3x3. tract computed them at a few multiply-adds per cycle (44 of
//! CenterFace's 127 ms at 640x480 on one core; UltraFace's 18 layers took 2.9 ms against
//! onnxruntime's 0.45, per-node timers). A 3x3 kernel at stride 1 or 2 (the same both ways)
//! with no dilation
//! ([`simd::Direct3x3`], where the CPU has AVX-512) reads each input row once per four output
//! rows with masked loads that read the padding as zero, and writes the output rows in place:
//! no copy in or out (UltraFace's depthwise layers 0.89 -> 0.63 ms). Every other depthwise
//! convolution, and every one on a CPU without AVX-512, copies each input plane once into a
//! zero-padded scratch split by stride phase ([`super::conv::Layout`]), after which every
//! kernel tap is the scratch at a fixed offset ([`simd::taps`]). A following per-channel
//! multiply or add (a batch normalisation) is folded into the kernel and bias, a following
//! ReLU into the stores.

use tract_onnx::tract_hir::internal::*;

use super::conv::{with_scratch, Layout, Plain, Planes, Weights};
use super::simd;

/// `(to, from, count)`: a copy of one row (see [`simd::copy_runs`]).
type Run = (usize, usize, usize);

/// A depthwise convolution of an `[N, C, H, W]` f32 input with zero padding.
#[derive(Debug, Clone)]
pub struct DepthwiseConv {
    channels: usize,
    planes: Planes,
    /// Where a plane goes in the scratch, and where its output rows sit in a whole-plane run.
    layout: Arc<(Layout, Vec<Run>)>,
    /// For 3x3 kernels at stride 1 or 2 (the models' layers): the planes computed straight
    /// from the input where the CPU has AVX-512.
    direct: Option<Arc<simd::Direct3x3>>,
    /// The kernel is `[C, kh, kw]`.
    weights: Weights,
}

impl PartialEq for DepthwiseConv {
    fn eq(&self, other: &Self) -> bool {
        (self.channels, self.planes) == (other.channels, other.planes) && self.weights == other.weights
    }
}

impl Eq for DepthwiseConv {}

impl DepthwiseConv {
    /// The op for `conv` when it is depthwise (one group per input channel, one output channel
    /// per group).
    pub(super) fn for_plain(conv: &Plain) -> Option<DepthwiseConv> {
        let [channels, _, _] = conv.input;
        let [outputs, per_group, _, _] = conv.kernel_shape;
        if conv.group != channels || outputs != channels || per_group != 1 {
            return None;
        }
        let planes = conv.planes();
        let layout = Layout::new(&planes);
        let rows = layout.rows_of_runs(&planes, 1);
        let g = &planes;
        let direct = (g.kh == 3 && g.kw == 3 && g.dil_h == 1 && g.dil_w == 1 && g.stride_h == g.stride_w)
            .then(|| simd::Direct3x3::new([g.in_h, g.in_w], [g.out_h, g.out_w], g.stride_h, [g.pad_top, g.pad_left]))
            .flatten()
            .map(Arc::new);
        Some(DepthwiseConv { channels, planes, layout: Arc::new((layout, rows)), direct, weights: Weights::of(conv) })
    }

    /// `y = clamp(bias + Σ kernel[ky][kx] · x[oy·sh + ky·dh − pt][ox·sw + kx·dw − pl])` per
    /// plane, out-of-range input values being zero.
    fn run(&self, x: &[f32], y: &mut [f32]) {
        if !self.run_direct(x, y) {
            self.run_padded(x, y);
        }
    }

    /// [`Self::run`] straight from the input planes, where the geometry and the CPU allow
    /// (`false`, having written nothing, otherwise).
    fn run_direct(&self, x: &[f32], y: &mut [f32]) -> bool {
        let Some(direct) = &self.direct else { return false };
        let g = &self.planes;
        let (in_plane, out_plane) = (g.in_h * g.in_w, g.out_h * g.out_w);
        for (n, (input, output)) in x.chunks_exact(in_plane).zip(y.chunks_exact_mut(out_plane)).enumerate() {
            let c = n % self.channels;
            let Weights { kernel, bias, clamp } = &self.weights;
            let weights: &[f32; 9] = kernel[c * 9..][..9].try_into().expect("nine weights per channel");
            if !direct.run(output, input, weights, bias[c], *clamp) {
                return false;
            }
        }
        true
    }

    /// [`Self::run`] over padded copies of the planes.
    fn run_padded(&self, x: &[f32], y: &mut [f32]) {
        let g = &self.planes;
        let (layout, rows) = &*self.layout;
        let (in_plane, out_plane, taps) = (g.in_h * g.in_w, g.out_h * g.out_w, g.kh * g.kw);
        let flat_len = if layout.per_row { 0 } else { g.out_h * layout.wq };
        with_scratch(layout.len, flat_len, |scratch, flat| {
            for (n, (input, output)) in x.chunks_exact(in_plane).zip(y.chunks_exact_mut(out_plane)).enumerate() {
                let c = n % self.channels;
                let Weights { kernel, bias, clamp } = &self.weights;
                let (weights, bias, clamp) = (&kernel[c * taps..][..taps], bias[c], *clamp);
                layout.fill(scratch, input);
                if layout.per_row {
                    for (oy, row) in output.chunks_exact_mut(g.out_w).enumerate() {
                        simd::taps(row, &scratch[oy * layout.wq..], &layout.offsets, weights, bias, clamp);
                    }
                } else {
                    simd::taps(flat, scratch, &layout.offsets, weights, bias, clamp);
                    simd::copy_runs(output, flat, rows);
                }
            }
        });
    }
}

impl Op for DepthwiseConv {
    fn name(&self) -> StaticName {
        "DepthwiseConvPlanes".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{}, {} channels, output within [{}, {}]",
            self.planes, self.channels, self.weights.clamp.lo, self.weights.clamp.hi
        )])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for DepthwiseConv {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let (g, channels) = (self.planes, self.channels);
        let shape = x.shape();
        ensure!(
            shape.len() == 4 && shape[1..] == [channels, g.in_h, g.in_w],
            "depthwise input {:?} for {} channels of {}x{}",
            shape,
            channels,
            g.in_h,
            g.in_w
        );
        let batch = shape[0];
        let x = x.to_plain_array_view::<f32>()?;
        let x = x.as_slice().context("depthwise input is not contiguous")?;
        // SAFETY: `run` writes every value of every output plane (each row in full, in
        // any of its three modes: direct, or padded per plane or per row) before anything
        // reads `y`.
        let mut y = unsafe { Tensor::uninitialized::<f32>(&[batch, channels, g.out_h, g.out_w])? };
        {
            let mut view = y.try_as_plain_ram_mut()?;
            self.run(x, view.as_slice_mut::<f32>()?);
        }
        Ok(tvec!(y.into_tvalue()))
    }
}

impl TypedOp for DepthwiseConv {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let g = &self.planes;
        let n = inputs[0].shape[0].clone();
        Ok(tvec!(f32::fact([n, self.channels.into(), g.out_h.into(), g.out_w.into()])))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let g = &self.planes;
        let macs = self.channels * g.out_h * g.out_w * g.kh * g.kw;
        Ok(tvec!((Cost::FMA(DatumType::F32), inputs[0].shape[0].clone() * macs)))
    }

    fn declutter(&self, model: &TypedModel, node: &TypedNode) -> TractResult<Option<TypedModelPatch>> {
        let Some(weights) = self.weights.followed(model, node)? else { return Ok(None) };
        TypedModelPatch::fuse_with_next(model, node, DepthwiseConv { weights, ..self.clone() }).map(Some)
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tract_ops::tests::values;

    /// The direct planes and the padded copies (whole-plane runs, and one run per row from
    /// 128 columns) agree on 3x3 layers (a CPU without AVX-512 takes the padded path for them).
    #[test]
    fn direct_and_padded_planes_agree() {
        let cases = [
            (30, 40, 1, [1, 1], [1, 1]),
            (15, 20, 2, [1, 1], [1, 1]),
            (8, 10, 1, [1, 1], [1, 1]),
            (7, 33, 2, [0, 0], [0, 0]),
            (5, 5, 1, [2, 2], [2, 2]),
            (6, 130, 1, [1, 1], [1, 1]),
            (5, 259, 2, [2, 2], [2, 2]),
            (9, 140, 1, [0, 2], [2, 0]),
            (7, 37, 2, [2, 0], [1, 2]),
        ];
        for (h, w, stride, pad_before, pad_after) in cases {
            let channels = 3;
            let conv = Plain {
                input: [channels, h, w],
                kernel_shape: [channels, 1, 3, 3],
                kernel: values(channels * 9, h as u64),
                bias: values(channels, w as u64),
                group: channels,
                pad_before,
                pad_after,
                strides: [stride, stride],
                dilations: [1, 1],
            };
            let op = DepthwiseConv::for_plain(&conv).expect("depthwise");
            assert!(op.direct.is_some(), "{h}x{w} stride {stride} padding {pad_before:?} {pad_after:?}");
            let g = op.planes;
            let x = values(2 * channels * h * w, 7);
            let len = 2 * channels * g.out_h * g.out_w;
            let (mut direct, mut padded) = (vec![f32::NAN; len], vec![f32::NAN; len]);
            if !op.run_direct(&x, &mut direct) {
                return; // No AVX-512 on this CPU.
            }
            op.run_padded(&x, &mut padded);
            for (a, b) in direct.iter().zip(&padded) {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "{a} vs {b} for {h}x{w} stride {stride} padding {pad_before:?} {pad_after:?}"
                );
            }
        }
    }
}
