//! Every other plain convolution (a kernel wider than 1x1, a stride, padding, dilation,
//! groups of several channels, grouped 1x1, depthwise with a channel multiplier) as a matrix
//! product over shifted views of the padded input.
//!
//! The face models' first layers (3 to 16 channels, 3x3, stride 2) and UltraFace's receptive
//! field blocks (3x3 over 8 to 16 channels, dilated 2, 3 and 5) ran in tract as an explicit
//! padding node, an im2col and a packed product: 1.4 of UltraFace's 5 ms on one core, against
//! 0.55 in onnxruntime (per-node timers). [`DenseConv`] copies a group's input planes once
//! into a zero-padded scratch split by stride phase ([`super::conv::Layout`]); each (input
//! channel, kernel tap) is then that scratch at a fixed offset, a row of the product's
//! right-hand side read in place, and the product's tiles ([`simd::product`]) accumulate
//! four output channels by 64 outputs in registers. A following per-channel multiply or add
//! (a batch normalisation) is folded into the kernel and bias, a following ReLU into the
//! stores.

use tract_onnx::tract_hir::internal::*;

use super::conv::{with_scratch, Layout, Plain, Planes, Weights};
use super::simd;

/// A convolution of an `[N, C, H, W]` f32 input with an `[O, C / group, kh, kw]` kernel.
#[derive(Debug, Clone)]
pub struct DenseConv {
    inputs: usize,
    outputs: usize,
    group: usize,
    planes: Planes,
    /// Where a plane goes in the scratch; the product's source rows (input channel, tap) in
    /// it; where the output rows of a group's planes sit in a whole-plane run.
    layout: Arc<Prepared>,
    /// The kernel is `[O, C / group, kh, kw]`.
    weights: Weights,
}

/// What [`DenseConv`] computes once from its geometry.
#[derive(Debug)]
struct Prepared {
    layout: Layout,
    /// The product's source rows: input channel `c`, tap `t` is the scratch of plane `c` at
    /// tap `t`'s offset.
    rows: Vec<usize>,
    /// Where the output rows of a group's planes sit in a whole-plane run (when not per row).
    out_rows: Vec<(usize, usize, usize)>,
}

impl PartialEq for DenseConv {
    fn eq(&self, other: &Self) -> bool {
        (self.inputs, self.outputs, self.group, self.planes) == (other.inputs, other.outputs, other.group, other.planes)
            && self.weights == other.weights
    }
}

impl Eq for DenseConv {}

impl DenseConv {
    /// The op for any plain convolution.
    pub(super) fn for_plain(conv: &Plain) -> DenseConv {
        let planes = conv.planes();
        let layout = Layout::new(&planes);
        let (per_in, per_out) = (conv.input[0] / conv.group, conv.kernel_shape[0] / conv.group);
        // Source row (input channel c, tap t) of the product: plane c's copy at tap t's offset.
        let rows =
            (0..per_in).flat_map(|c| layout.offsets.iter().map(move |&offset| c * layout.len + offset)).collect();
        let out_rows = if layout.per_row { Vec::new() } else { layout.rows_of_runs(&planes, per_out) };
        DenseConv {
            inputs: conv.input[0],
            outputs: conv.kernel_shape[0],
            group: conv.group,
            planes,
            layout: Arc::new(Prepared { layout, rows, out_rows }),
            weights: Weights::of(conv),
        }
    }

    /// One batch item: `x` is `[C, H, W]`, `y` is `[O, out_h, out_w]`.
    fn run(&self, x: &[f32], y: &mut [f32], scratch: &mut [f32], flat: &mut [f32]) {
        let g = &self.planes;
        let Prepared { layout, rows, out_rows } = &*self.layout;
        let (in_plane, out_plane) = (g.in_h * g.in_w, g.out_h * g.out_w);
        let (per_in, per_out) = (self.inputs / self.group, self.outputs / self.group);
        let weights_per_output = rows.len();
        for (group, (x, y)) in
            x.chunks_exact(per_in * in_plane).zip(y.chunks_exact_mut(per_out * out_plane)).enumerate()
        {
            for (plane, copy) in x.chunks_exact(in_plane).zip(scratch.chunks_exact_mut(layout.len)) {
                layout.fill(copy, plane);
            }
            let outputs = group * per_out..(group + 1) * per_out;
            let Weights { kernel, bias, clamp } = &self.weights;
            let (weights, bias, clamp) =
                (&kernel[outputs.start * weights_per_output..outputs.end * weights_per_output], &bias[outputs], *clamp);
            if layout.per_row {
                for oy in 0..g.out_h {
                    let (src, out) = (&scratch[oy * layout.wq..], &mut y[oy * g.out_w..]);
                    simd::product(out, out_plane, src, rows, weights, bias, g.out_w, clamp);
                }
            } else {
                let run = g.out_h * layout.wq;
                simd::product(flat, run, scratch, rows, weights, bias, run, clamp);
                simd::copy_runs(y, flat, out_rows);
            }
        }
    }
}

impl Op for DenseConv {
    fn name(&self) -> StaticName {
        "DenseConvProduct".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{}, {} to {} channels in {} groups, output within [{}, {}]",
            self.planes, self.inputs, self.outputs, self.group, self.weights.clamp.lo, self.weights.clamp.hi
        )])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for DenseConv {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let g = self.planes;
        let shape = x.shape();
        ensure!(
            shape.len() == 4 && shape[1..] == [self.inputs, g.in_h, g.in_w],
            "convolution input {:?} for {} channels of {}x{}",
            shape,
            self.inputs,
            g.in_h,
            g.in_w
        );
        let batch = shape[0];
        let x = x.to_plain_array_view::<f32>()?;
        let x = x.as_slice().context("convolution input is not contiguous")?;
        let layout = &self.layout.layout;
        let (per_in, per_out) = (self.inputs / self.group, self.outputs / self.group);
        let flat_len = if layout.per_row { 0 } else { per_out * g.out_h * layout.wq };
        // SAFETY: `run` writes every value of every output plane (each row in full, in either
        // of its two modes) before anything reads `y`.
        let mut y = unsafe { Tensor::uninitialized::<f32>(&[batch, self.outputs, g.out_h, g.out_w])? };
        {
            let mut view = y.try_as_plain_ram_mut()?;
            let y = view.as_slice_mut::<f32>()?;
            let (in_item, out_item) = (self.inputs * g.in_h * g.in_w, self.outputs * g.out_h * g.out_w);
            with_scratch(per_in * layout.len, flat_len, |scratch, flat| {
                for (x, y) in x.chunks_exact(in_item).zip(y.chunks_exact_mut(out_item)) {
                    self.run(x, y, scratch, flat);
                }
            });
        }
        Ok(tvec!(y.into_tvalue()))
    }
}

impl TypedOp for DenseConv {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let g = &self.planes;
        let n = inputs[0].shape[0].clone();
        Ok(tvec!(f32::fact([n, self.outputs.into(), g.out_h.into(), g.out_w.into()])))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let g = &self.planes;
        let macs = self.outputs * (self.inputs / self.group) * g.out_h * g.out_w * g.kh * g.kw;
        Ok(tvec!((Cost::FMA(DatumType::F32), inputs[0].shape[0].clone() * macs)))
    }

    fn declutter(&self, model: &TypedModel, node: &TypedNode) -> TractResult<Option<TypedModelPatch>> {
        let Some(weights) = self.weights.followed(model, node)? else { return Ok(None) };
        TypedModelPatch::fuse_with_next(model, node, DenseConv { weights, ..self.clone() }).map(Some)
    }

    as_op!();
}
