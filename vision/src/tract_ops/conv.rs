//! The parser entry for ONNX `Conv`: tract's own, except for the convolutions this module's
//! operators compute ([`super::pointwise`], [`super::depthwise`], [`super::dense`]), and what
//! they share: the checks that a convolution is a plain one (f32, NCHW with an OIHW kernel,
//! constant kernel and bias, explicit padding narrower than the dilated kernel, no
//! quantisation, concrete shapes), the phase-split layout of a padded plane ([`Layout`]), the
//! per-thread scratch, and folding what follows a convolution into it: a per-channel multiply
//! or add (a batch normalisation) into the kernel and bias, a ReLU into the stores.

use tract_onnx::model::{Onnx, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::cnn::Conv;
use tract_onnx::tract_hir::tract_core::downcast_rs::Downcast;
use tract_onnx::tract_hir::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_hir::tract_core::ops::cnn::conv::KernelFormat;
use tract_onnx::tract_hir::tract_core::ops::cnn::PaddingSpec;
use tract_onnx::tract_hir::tract_core::ops::math::{Add, Max, Min, Mul};
use tract_onnx::tract_hir::tract_core::ops::nn::DataFormat;

use std::sync::OnceLock;

use super::dense::DenseConv;
use super::depthwise::DepthwiseConv;
use super::intercept::{self, Builder, Rewire};
use super::pointwise::PointwiseConv;
use zeroize::Zeroize;

use super::simd::{self, Clamp};

/// tract's own `Conv` parser, kept when [`register`] replaces it.
static STOCK_CONV: OnceLock<Builder> = OnceLock::new();

/// Makes `onnx` parse `Conv` nodes so that the ones this module computes become its ops.
pub(super) fn register(onnx: &mut Onnx) {
    intercept::replace(onnx, "Conv", &STOCK_CONV, parse);
}

fn parse(ctx: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    intercept::parse_with(&STOCK_CONV, ctx, node, || Ok(PlainConvs))
}

/// Plain convolutions wired as this module's operators.
#[derive(Debug, Clone)]
struct PlainConvs;

impl Rewire for PlainConvs {
    fn wire(
        &self,
        inner: &dyn Expansion,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<Option<TVec<OutletId>>> {
        let Some(conv) = Downcast::as_any(inner).downcast_ref::<Conv>() else { return Ok(None) };
        let Some(plain) = Plain::of(conv, model, inputs)? else { return Ok(None) };
        let input = &inputs[..1];
        let wired = if let Some(op) = PointwiseConv::for_plain(&plain) {
            model.wire_node(prefix, op, input)?
        } else if let Some(op) = DepthwiseConv::for_plain(&plain) {
            model.wire_node(prefix, op, input)?
        } else {
            model.wire_node(prefix, DenseConv::for_plain(&plain), input)?
        };
        Ok(Some(wired))
    }
}

/// A convolution of an `[N, C, H, W]` f32 input with a constant `[O, C / group, kh, kw]`
/// kernel, a constant bias, and zero padding narrower than the (dilated) kernel.
#[derive(Debug)]
pub(super) struct Plain {
    /// `[C, H, W]` of the input.
    pub input: [usize; 3],
    /// `[O, C / group, kh, kw]`.
    pub kernel_shape: [usize; 4],
    /// The kernel's values, row-major.
    pub kernel: Vec<f32>,
    /// One per output channel (zeros when the node has none).
    pub bias: Vec<f32>,
    pub group: usize,
    /// `[top, left]` and `[bottom, right]`.
    pub pad_before: [usize; 2],
    pub pad_after: [usize; 2],
    /// `[vertical, horizontal]`.
    pub strides: [usize; 2],
    /// `[vertical, horizontal]`.
    pub dilations: [usize; 2],
}

impl Plain {
    fn of(conv: &Conv, model: &TypedModel, inputs: &[OutletId]) -> TractResult<Option<Plain>> {
        let plain = conv.data_format == DataFormat::NCHW
            && conv.kernel_fmt == KernelFormat::OIHW
            && conv.x_scale_input.is_none()
            && conv.x_zero_point_input.is_none()
            && conv.k_input.is_none_or(|k| k == 1)
            && conv.k_scale_input.is_none()
            && conv.k_zero_point_input.is_none()
            && conv.y_scale_input.is_none()
            && conv.y_zero_point_input.is_none()
            && conv.override_output_datum_type.is_none()
            && conv.bias_input.is_none_or(|b| b == 2)
            && inputs.len() == 2 + usize::from(conv.bias_input.is_some());
        if !plain {
            return Ok(None);
        }
        let (pad_before, pad_after) = match &conv.padding {
            PaddingSpec::Explicit(before, after) if before.len() == 2 && after.len() == 2 => {
                ([before[0], before[1]], [after[0], after[1]])
            }
            PaddingSpec::Valid => ([0, 0], [0, 0]),
            _ => return Ok(None),
        };
        let strides = match conv.strides.as_deref() {
            None => [1, 1],
            Some(&[sh, sw]) if sh >= 1 && sw >= 1 => [sh, sw],
            Some(_) => return Ok(None),
        };
        let dilations = match conv.dilations.as_deref() {
            None => [1, 1],
            Some(&[dh, dw]) if dh >= 1 && dw >= 1 => [dh, dw],
            Some(_) => return Ok(None),
        };
        let x = model.outlet_fact(inputs[0])?;
        let k = model.outlet_fact(inputs[1])?;
        if x.datum_type != DatumType::F32 || x.rank() != 4 {
            return Ok(None);
        }
        let Some(shape) = x.shape.as_concrete() else { return Ok(None) };
        let input = [shape[1], shape[2], shape[3]];
        let Some(kernel) = k.konst.as_ref().filter(|k| k.datum_type() == DatumType::F32 && k.rank() == 4) else {
            return Ok(None);
        };
        let kernel_shape = [kernel.shape()[0], kernel.shape()[1], kernel.shape()[2], kernel.shape()[3]];
        let [outputs, per_group, kh, kw] = kernel_shape;
        let group = conv.group.unwrap_or(1);
        // The kernel's span with dilation.
        let (span_h, span_w) = ((kh.max(1) - 1) * dilations[0] + 1, (kw.max(1) - 1) * dilations[1] + 1);
        if group == 0
            || per_group * group != input[0]
            || outputs % group != 0
            || conv.kernel_shape.as_deref().is_some_and(|s| s != [kh, kw])
            || kh == 0
            || kw == 0
            || pad_before[0] >= span_h
            || pad_before[1] >= span_w
            || pad_after[0] >= span_h
            || pad_after[1] >= span_w
            || input[1] + pad_before[0] + pad_after[0] < span_h
            || input[2] + pad_before[1] + pad_after[1] < span_w
        {
            return Ok(None);
        }
        let bias = match conv.bias_input {
            Some(_) => match &model.outlet_fact(inputs[2])?.konst {
                Some(b) if b.datum_type() == DatumType::F32 && b.len() == outputs => {
                    b.to_plain_array_view::<f32>()?.iter().copied().collect()
                }
                _ => return Ok(None),
            },
            None => vec![0.0; outputs],
        };
        let kernel = kernel.to_plain_array_view::<f32>()?.iter().copied().collect();
        Ok(Some(Plain { input, kernel_shape, kernel, bias, group, pad_before, pad_after, strides, dilations }))
    }

    /// The geometry of one input plane to one output plane.
    pub fn planes(&self) -> Planes {
        let [_, in_h, in_w] = self.input;
        let [_, _, kh, kw] = self.kernel_shape;
        let [dh, dw] = self.dilations;
        let out = |size: usize, before: usize, after: usize, k: usize, d: usize, s: usize| {
            (size + before + after - ((k - 1) * d + 1)) / s + 1
        };
        Planes {
            in_h,
            in_w,
            out_h: out(in_h, self.pad_before[0], self.pad_after[0], kh, dh, self.strides[0]),
            out_w: out(in_w, self.pad_before[1], self.pad_after[1], kw, dw, self.strides[1]),
            kh,
            kw,
            stride_h: self.strides[0],
            stride_w: self.strides[1],
            dil_h: dh,
            dil_w: dw,
            pad_top: self.pad_before[0],
            pad_left: self.pad_before[1],
        }
    }
}

/// How a convolution maps one input plane to one output plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Planes {
    pub in_h: usize,
    pub in_w: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub dil_h: usize,
    pub dil_w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
}

impl std::fmt::Display for Planes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}x{} kernel, stride {}x{}, dilation {}x{}, padding top {} left {}, {}x{} to {}x{}",
            self.kh,
            self.kw,
            self.stride_h,
            self.stride_w,
            self.dil_h,
            self.dil_w,
            self.pad_top,
            self.pad_left,
            self.in_h,
            self.in_w,
            self.out_h,
            self.out_w
        )
    }
}

/// Where a plane's input goes in a scratch buffer, and where each kernel tap reads it.
///
/// The zero-padded plane is split into `stride_h x stride_w` phase planes (phase `(ry, rx)`
/// holds padded values `[r · sh + ry][c · sw + rx]`), each `hq` rows of `wq` values. Tap
/// `(ky, kx)` of output `(oy, ox)` reads padded `[oy · sh + ey][ox · sw + ex]` (`ey = ky · dh`,
/// `ex = kx · dw`), which is phase `(ey % sh, ex % sw)` at `[oy + ey / sh][ox + ex / sw]`. With
/// `j = oy · wq + ox`, every tap reads the scratch at a fixed offset plus `j`: a whole output
/// plane is one run over `j` (the last `wq - out_w` values of each run of `wq` are discarded)
/// or, for wide rows, one run per output row. No edge cases inside the runs.
#[derive(Debug)]
pub(super) struct Layout {
    /// Values per phase-plane row: the pitch of `j`.
    pub wq: usize,
    /// The scratch one plane needs: every phase plane, each with one spare row (never
    /// written, so zero) for the reads past the last output row of a whole-plane run.
    pub len: usize,
    /// Per tap, row-major over the kernel: where it reads output 0.
    pub offsets: Vec<usize>,
    /// `(scratch start, input start, count)`: the input runs (every `stride_w`-th value) the
    /// scratch takes from each plane; everything else in the scratch stays zero.
    copies: Vec<(usize, usize, usize)>,
    /// With a horizontal stride of 2, the same runs as one split per input row.
    splits: Vec<simd::Split>,
    stride_w: usize,
    /// One run per output row straight into the output, rather than one run per plane into
    /// a scratch and a copy of each row.
    pub per_row: bool,
}

impl Layout {
    pub fn new(g: &Planes) -> Layout {
        let (sh, sw) = (g.stride_h, g.stride_w);
        // How far the last tap lies past the first.
        let (reach_h, reach_w) = ((g.kh - 1) * g.dil_h, (g.kw - 1) * g.dil_w);
        let wq = g.out_w + reach_w / sw;
        let hq = g.out_h + reach_h / sh + 1;
        let phase = hq * wq;
        let offsets = (0..g.kh * g.kw)
            .map(|t| {
                let (ey, ex) = ((t / g.kw) * g.dil_h, (t % g.kw) * g.dil_w);
                ((ey % sh) * sw + ex % sw) * phase + (ey / sh) * wq + ex / sw
            })
            .collect();
        // Runs of every `stride_w`-th value; a horizontal stride of 2 uses `splits` instead.
        let mut copies = Vec::new();
        for ry in 0..sh {
            for rx in (0..sw).filter(|_| sw != 2) {
                // First phase column inside the input, and the input column it holds.
                let c0 = g.pad_left.saturating_sub(rx).div_ceil(sw);
                let ix0 = c0 * sw + rx - g.pad_left;
                if c0 >= wq || ix0 >= g.in_w {
                    continue;
                }
                let count = (wq - c0).min((g.in_w - ix0 - 1) / sw + 1);
                for r in 0..hq - 1 {
                    if let Some(iy) = (r * sh + ry).checked_sub(g.pad_top).filter(|&iy| iy < g.in_h) {
                        copies.push(((ry * sw + rx) * phase + r * wq + c0, iy * g.in_w + ix0, count));
                    }
                }
            }
        }
        let mut splits = Vec::new();
        if sw == 2 {
            for iy in 0..g.in_h {
                let (r, ry) = ((iy + g.pad_top) / sh, (iy + g.pad_top) % sh);
                if r >= hq - 1 {
                    continue;
                }
                // Input columns of one parity land in one phase, on consecutive columns.
                let run = |parity: usize| -> (usize, usize) {
                    let (c, rx) = ((parity + g.pad_left) / 2, (parity + g.pad_left) % 2);
                    if parity >= g.in_w || c >= wq {
                        return (0, 0);
                    }
                    ((ry * sw + rx) * phase + r * wq + c, (wq - c).min((g.in_w - parity).div_ceil(2)))
                };
                splits.push(simd::Split { from: iy * g.in_w, evens: run(0), odds: run(1) });
            }
        }
        // Rows of 128 or more lose little to a partial last vector, and save the copy out of
        // a whole-plane run (CenterFace at 640 px, UltraFace's first layers).
        let per_row = g.out_w >= 128;
        Layout { wq, len: sh * sw * phase, offsets, copies, splits, stride_w: sw, per_row }
    }

    /// Copies `plane` into `scratch` (`len` values, zero wherever no input value goes: the
    /// same positions for every plane, so a scratch zeroed once stays right).
    pub fn fill(&self, scratch: &mut [f32], plane: &[f32]) {
        match self.stride_w {
            1 => simd::copy_runs(scratch, plane, &self.copies),
            2 => simd::split_runs(scratch, plane, &self.splits),
            _ => {
                for &(to, from, count) in &self.copies {
                    simd::strided_copy(&mut scratch[to..to + count], &plane[from..], self.stride_w);
                }
            }
        }
    }

    /// Where each output row of a plane sits in a run over the whole plane (`j = oy · wq`),
    /// as copies into the plane's rows, `planes` planes `run` values apart.
    pub fn rows_of_runs(&self, g: &Planes, planes: usize) -> Vec<(usize, usize, usize)> {
        let run = g.out_h * self.wq;
        (0..planes)
            .flat_map(|p| (0..g.out_h).map(move |oy| ((p * g.out_h + oy) * g.out_w, p * run + oy * self.wq, g.out_w)))
            .collect()
    }
}

thread_local! {
    /// Per-thread scratch for the convolutions, all zeros between uses.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on two zeroed scratch buffers of `a` and `b` values and zeroes what it used
/// afterwards, also when `f` panics (the first layer's copies are pixels, and the padding
/// must read zero next time). The buffers are kept per thread, so a run of a model does not
/// allocate and clear them for every node.
pub(super) fn with_scratch<R>(a: usize, b: usize, f: impl FnOnce(&mut [f32], &mut [f32]) -> R) -> R {
    /// Zeroes the buffer's first `len` values when dropped.
    struct Wipe<'a> {
        buffer: &'a mut Vec<f32>,
        len: usize,
    }
    impl Drop for Wipe<'_> {
        fn drop(&mut self) {
            self.buffer[..self.len].zeroize();
        }
    }
    SCRATCH.with(|cell| {
        let mut own = Vec::new();
        let mut kept = cell.try_borrow_mut().ok();
        // Re-entered on this thread (no operator does): a buffer of its own.
        let buffer: &mut Vec<f32> = kept.as_deref_mut().unwrap_or(&mut own);
        let len = a.checked_add(b).expect("scratch size overflows");
        if buffer.len() < len {
            buffer.resize(len, 0.0);
        }
        let wipe = Wipe { buffer, len };
        let (first, second) = wipe.buffer[..len].split_at_mut(a);
        f(first, second)
    })
}

/// Whether two constant tensors' values are the same bit for bit (the operators' `PartialEq`:
/// tract compares ops to deduplicate them).
pub(super) fn same_values(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// The values of the constant `konst` per channel (axis 1 of a tensor of rank `rank` with
/// `channels` channels) when broadcasting spreads it along that axis only: its shape, aligned
/// on the last axes, is ones but for `channels` on axis 1, or it is a single value. `None`
/// otherwise, or when it is not f32 in plain memory.
pub(super) fn channel_values(konst: &Tensor, rank: usize, channels: usize) -> Option<Vec<f32>> {
    if konst.datum_type() != DatumType::F32 || rank < 2 || konst.rank() > rank {
        return None;
    }
    let padded: Vec<usize> = std::iter::repeat_n(1, rank - konst.rank()).chain(konst.shape().iter().copied()).collect();
    let per_channel = padded[1] == channels && padded.iter().enumerate().all(|(axis, &d)| axis == 1 || d == 1);
    let values = konst.try_as_plain_ram().ok()?;
    let values = values.as_slice::<f32>().ok()?;
    if per_channel {
        Some(values.to_vec())
    } else if values.len() == 1 {
        Some(vec![values[0]; channels])
    } else {
        None
    }
}

/// A convolution operator's constants and output bound, and what the node after it can fold
/// into them (the three operators share this).
#[derive(Debug, Clone)]
pub(super) struct Weights {
    /// `[O, ...]`: one contiguous block per output channel.
    pub kernel: Vec<f32>,
    /// `[O]`.
    pub bias: Vec<f32>,
    /// A ReLU (or other bound) folded in from a following node.
    pub clamp: Clamp,
}

impl PartialEq for Weights {
    fn eq(&self, other: &Self) -> bool {
        self.clamp == other.clamp && same_values(&self.kernel, &other.kernel) && same_values(&self.bias, &other.bias)
    }
}

impl Eq for Weights {}

impl Weights {
    /// `conv`'s kernel and bias, unbounded.
    pub fn of(conv: &Plain) -> Weights {
        Weights { kernel: conv.kernel.clone(), bias: conv.bias.clone(), clamp: Clamp::NONE }
    }

    /// These weights with the node after `node` (the operator's node) folded in, when nothing
    /// else reads `node`'s output and it is not a result of the model:
    ///
    /// * a multiply or an add by a constant per output channel (a batch normalisation becomes
    ///   one of each; SFace has 27) goes into the kernel and bias, as long as no bound is
    ///   folded in yet (the arithmetic would come after it);
    /// * a `max` or `min` against one constant value (a ReLU is `max(x, 0)`) narrows `clamp`.
    ///
    /// `None` when the next node is neither.
    pub fn followed(&self, model: &TypedModel, node: &TypedNode) -> TractResult<Option<Weights>> {
        let Some((bin, konst)) = following_binary(model, node)? else { return Ok(None) };
        let (is_mul, is_max) = (bin.0.is::<Mul>(), bin.0.is::<Max>());
        if is_mul || bin.0.is::<Add>() {
            if self.clamp != Clamp::NONE || model.outlet_fact(node.id.into())?.rank() != 4 {
                return Ok(None);
            }
            let Some(values) = channel_values(&konst, 4, self.bias.len()) else { return Ok(None) };
            let (scale, shift) =
                if is_mul { (values, vec![0.0; self.bias.len()]) } else { (vec![1.0; self.bias.len()], values) };
            let per_output = (self.kernel.len() / scale.len().max(1)).max(1);
            let kernel = self
                .kernel
                .chunks_exact(per_output)
                .zip(&scale)
                .flat_map(|(weights, &s)| weights.iter().map(move |w| w * s))
                .collect();
            let bias = self.bias.iter().zip(&scale).zip(&shift).map(|((b, s), t)| b * s + t).collect();
            return Ok(Some(Weights { kernel, bias, clamp: self.clamp }));
        }
        if !(is_max || bin.0.is::<Min>()) || konst.len() == 0 || !konst.is_uniform() {
            return Ok(None);
        }
        // A constant in storage other than plain memory stays tract's node.
        let Ok(values) = konst.try_as_plain_ram() else { return Ok(None) };
        let Some(&v) = values.as_slice::<f32>().ok().and_then(|v| v.first()) else { return Ok(None) };
        // clamp(x, lo, hi) then max(., v) is clamp(x, max(lo, v), max(hi, v)); min alike.
        let clamp = if is_max {
            Clamp { lo: self.clamp.lo.max(v), hi: self.clamp.hi.max(v) }
        } else {
            Clamp { lo: self.clamp.lo.min(v), hi: self.clamp.hi.min(v) }
        };
        Ok(Some(Weights { clamp, ..self.clone() }))
    }
}

/// The node after `node` when it is an f32 binary operation of `node`'s output (read by nothing
/// else, and not a result of the model) and a constant, with the same shape out: the operation
/// and the constant.
fn following_binary<'m>(model: &'m TypedModel, node: &TypedNode) -> TractResult<Option<(&'m TypedBinOp, Arc<Tensor>)>> {
    if model.outputs.contains(&node.id.into()) {
        // The values before the next node are a result of the model too.
        return Ok(None);
    }
    let Some(succ) = model.single_succ(node.id)? else { return Ok(None) };
    let Some(bin) = succ.op_as::<TypedBinOp>() else { return Ok(None) };
    if succ.inputs.len() != 2 || bin.1.is_some_and(|d| d != DatumType::F32) {
        return Ok(None);
    }
    let (ours, theirs) = (model.outlet_fact(node.id.into())?, model.outlet_fact(succ.id.into())?);
    if theirs.datum_type != DatumType::F32 || theirs.shape != ours.shape {
        return Ok(None);
    }
    // The other operand, a constant (`x · x` has none).
    let Some(other) = succ.inputs.iter().find(|i| i.node != node.id) else { return Ok(None) };
    Ok(model.outlet_fact(*other)?.konst.clone().filter(|k| k.datum_type() == DatumType::F32).map(|k| (bin, k)))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{run, value_info, values};
    use super::*;
    use proptest::prelude::*;
    use tract_onnx::pb::{attribute_proto::AttributeType, AttributeProto};

    /// One convolution: `[N, C, H, W]` in, `[O, C / group, kh, kw]` kernel.
    #[derive(Debug, Clone)]
    struct Case {
        x: [usize; 4],
        outputs: usize,
        group: usize,
        kernel: [usize; 2],
        strides: [usize; 2],
        dilations: [usize; 2],
        /// Top, left, bottom, right.
        pads: [usize; 4],
        relu: bool,
    }

    impl Case {
        fn reach(&self) -> [usize; 2] {
            [(self.kernel[0] - 1) * self.dilations[0] + 1, (self.kernel[1] - 1) * self.dilations[1] + 1]
        }

        fn out(&self) -> [usize; 2] {
            let [_, _, h, w] = self.x;
            let [rh, rw] = self.reach();
            let [pt, pl, pb, pr] = self.pads;
            [(h + pt + pb - rh) / self.strides[0] + 1, (w + pl + pr - rw) / self.strides[1] + 1]
        }

        /// The ONNX definition, in f64.
        fn reference(&self, x: &[f32], kernel: &[f32], bias: &[f32]) -> Vec<f32> {
            let [n, c, h, w] = self.x;
            let [kh, kw] = self.kernel;
            let [oh, ow] = self.out();
            let (per_group_in, per_group_out) = (c / self.group, self.outputs / self.group);
            let mut y = Vec::with_capacity(n * self.outputs * oh * ow);
            for b in 0..n {
                for (o, &b0) in bias.iter().enumerate() {
                    let g = o / per_group_out;
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let mut acc = f64::from(b0);
                            for ci in 0..per_group_in {
                                for ky in 0..kh {
                                    for kx in 0..kw {
                                        let iy = (oy * self.strides[0] + ky * self.dilations[0]) as isize
                                            - self.pads[0] as isize;
                                        let ix = (ox * self.strides[1] + kx * self.dilations[1]) as isize
                                            - self.pads[1] as isize;
                                        if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= w {
                                            continue;
                                        }
                                        let xi = ((b * c + g * per_group_in + ci) * h + iy as usize) * w + ix as usize;
                                        let ki = ((o * per_group_in + ci) * kh + ky) * kw + kx;
                                        acc += f64::from(x[xi]) * f64::from(kernel[ki]);
                                    }
                                }
                            }
                            y.push(if self.relu { acc.max(0.0) } else { acc } as f32);
                        }
                    }
                }
            }
            y
        }

        /// `Conv` with initializer kernel and bias, then `Relu` when asked.
        fn model(&self, kernel: &[f32], bias: &[f32]) -> tract_onnx::pb::ModelProto {
            use tract_onnx::pb::{tensor_proto::DataType, GraphProto, ModelProto, OperatorSetIdProto, TensorProto};
            let i64s = |v: &[usize]| v.iter().map(|&d| d as i64).collect::<Vec<_>>();
            let tensor = |name: &str, dims: Vec<i64>, values: &[f32]| TensorProto {
                name: name.into(),
                dims,
                data_type: DataType::Float as i32,
                float_data: values.to_vec(),
                ..Default::default()
            };
            let ints = |name: &str, v: &[usize]| AttributeProto {
                name: name.into(),
                ints: i64s(v),
                r#type: AttributeType::Ints as i32,
                ..Default::default()
            };
            let attribute = vec![
                AttributeProto {
                    name: "group".into(),
                    i: self.group as i64,
                    r#type: AttributeType::Int as i32,
                    ..Default::default()
                },
                ints("kernel_shape", &self.kernel),
                ints("strides", &self.strides),
                ints("dilations", &self.dilations),
                ints("pads", &self.pads),
            ];
            let kernel_dims = i64s(&[self.outputs, self.x[1] / self.group, self.kernel[0], self.kernel[1]]);
            let mut node = vec![NodeProto {
                op_type: "Conv".into(),
                input: vec!["x".into(), "k".into(), "b".into()],
                output: vec![if self.relu { "z" } else { "y" }.into()],
                attribute,
                ..Default::default()
            }];
            if self.relu {
                node.push(NodeProto {
                    op_type: "Relu".into(),
                    input: vec!["z".into()],
                    output: vec!["y".into()],
                    ..Default::default()
                });
            }
            ModelProto {
                graph: Some(GraphProto {
                    node,
                    input: vec![value_info("x", Some(&i64s(&self.x)))],
                    output: vec![value_info("y", None)],
                    initializer: vec![tensor("k", kernel_dims, kernel), tensor("b", vec![self.outputs as i64], bias)],
                    ..Default::default()
                }),
                opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }],
                ..Default::default()
            }
        }

        /// Runs the case through the parser: the output against the definition, and the
        /// planned operators.
        fn check(&self, seed: u64) -> Result<Vec<String>, TestCaseError> {
            let [n, c, h, w] = self.x;
            let x = values(n * c * h * w, seed);
            let kernel = values(self.outputs * (c / self.group) * self.kernel[0] * self.kernel[1], seed ^ 1);
            let bias = values(self.outputs, seed ^ 2);
            let input = Tensor::from_shape(&self.x, &x).expect("tensor");
            let (y, ops) = run(&self.model(&kernel, &bias), tvec!(input.into_tvalue()));
            let expected = self.reference(&x, &kernel, &bias);
            prop_assert_eq!(y.len(), expected.len());
            for (i, (a, b)) in y.iter().zip(&expected).enumerate() {
                prop_assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "at {}: {} vs {}", i, a, b);
            }
            // A ReLU after the convolution is folded into it: the input and one node.
            prop_assert!(!self.relu || ops.len() == 2, "{:?}", ops);
            Ok(ops)
        }
    }

    fn case() -> impl Strategy<Value = Case> {
        (
            (1usize..3, 1usize..5, 1usize..3, 1usize..3),
            (1usize..12, 1usize..40),
            (1usize..4, 1usize..4, 1usize..4, 1usize..4, 1usize..3, 1usize..3),
            (prop::array::uniform4(0usize..5), any::<bool>(), 0usize..3),
        )
            .prop_map(|((n, groups, per_in, per_out), (h, w), (kh, kw, sh, sw, dh, dw), (pads, relu, shape))| {
                // shape 0: depthwise; 1: grouped; 2: one group.
                let (c, outputs, group) = match shape {
                    0 => (groups * 2, groups * 2, groups * 2),
                    1 => (groups * per_in, groups * per_out, groups),
                    _ => (per_in + groups, per_out + 1, 1),
                };
                Case {
                    x: [n, c, h, w],
                    outputs,
                    group,
                    kernel: [kh, kw],
                    strides: [sh, sw],
                    dilations: [dh, dw],
                    pads,
                    relu,
                }
            })
            .prop_filter("padding narrower than the kernel, input at least the kernel", |c| {
                let [rh, rw] = c.reach();
                let [pt, pl, pb, pr] = c.pads;
                pt < rh && pb < rh && pl < rw && pr < rw && c.x[2] + pt + pb >= rh && c.x[3] + pl + pr >= rw
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        /// Every plain convolution (depthwise, grouped, one group; any kernel up to 3x3,
        /// strides and dilations up to 3 and 2, padding up to 4) runs as one of this module's
        /// operators and matches the ONNX definition.
        #[test]
        fn convolutions_match_the_definition(case in case(), seed in any::<u64>()) {
            let ops = case.check(seed)?;
            let [_, c, _, _] = case.x;
            let depthwise = case.group == c && case.outputs == c;
            let pointwise = case.group == 1 && case.kernel == [1, 1] && case.strides == [1, 1] && case.pads == [0; 4];
            let expected = if pointwise { "PointwiseConv" } else if depthwise { "DepthwiseConvPlanes" } else { "DenseConvProduct" };
            prop_assert!(ops.iter().any(|o| o == expected), "{:?} for {:?}", ops, case);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The 3x3 depthwise layers of the face models: stride 1 or 2, padding 0 to 2 on each
        /// side, widths across the 16-lane vectors and the whole-plane and per-row modes.
        #[test]
        fn depthwise_3x3_layers_match_the_definition(
            n in 1usize..3,
            channels in 1usize..4,
            h in 1usize..9,
            w in prop::sample::select(vec![1usize, 2, 5, 15, 16, 17, 31, 40, 63, 64, 65, 130, 257]),
            stride in 1usize..3,
            pads in prop::array::uniform4(0usize..3),
            relu in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let [pt, pl, pb, pr] = pads;
            prop_assume!(h + pt + pb >= 3 && w + pl + pr >= 3);
            let case = Case {
                x: [n, channels * 2, h, w],
                outputs: channels * 2,
                group: channels * 2,
                kernel: [3, 3],
                strides: [stride, stride],
                dilations: [1, 1],
                pads,
                relu,
            };
            let ops = case.check(seed)?;
            prop_assert!(ops.iter().any(|o| o == "DepthwiseConvPlanes"), "{:?}", ops);
        }
    }

    #[test]
    fn the_models_first_layers_and_dilated_layers_match_the_definition() {
        // UltraFace's first layer (3 to 16, 3x3, stride 2, ReLU) and its dilated 3x3 layers.
        let first = Case {
            x: [1, 3, 24, 32],
            outputs: 16,
            group: 1,
            kernel: [3, 3],
            strides: [2, 2],
            dilations: [1, 1],
            pads: [1; 4],
            relu: true,
        };
        assert!(first.check(1).expect("first layer").iter().any(|o| o == "DenseConvProduct"));
        for d in [2, 3, 5] {
            let dilated = Case {
                x: [1, 16, 12, 14],
                dilations: [d, d],
                pads: [d; 4],
                strides: [1, 1],
                relu: false,
                ..first.clone()
            };
            assert!(dilated.check(d as u64).expect("dilated layer").iter().any(|o| o == "DenseConvProduct"));
        }
    }

    /// `case` (without its ReLU) followed by a batch normalisation, then a ReLU when
    /// `relu`: the model, and the expected output by the definition.
    fn with_batch_norm(case: &Case, relu: bool, seed: u64) -> (tract_onnx::pb::ModelProto, Vec<f32>, Vec<f32>) {
        use tract_onnx::pb::{tensor_proto::DataType, TensorProto};
        let plain = Case { relu: false, ..case.clone() };
        let [n, c, h, w] = plain.x;
        let o = plain.outputs;
        let x = values(n * c * h * w, seed);
        let kernel = values(o * (c / plain.group) * plain.kernel[0] * plain.kernel[1], seed ^ 1);
        let bias = values(o, seed ^ 2);
        let (scale, shift, mean) = (values(o, seed ^ 3), values(o, seed ^ 4), values(o, seed ^ 5));
        let var: Vec<f32> = values(o, seed ^ 6).iter().map(|v| v.abs() + 0.1).collect();
        let mut model = plain.model(&kernel, &bias);
        let graph = model.graph.as_mut().expect("graph");
        graph.node[0].output = vec!["c".into()];
        let bn_out = if relu { "bn" } else { "y" };
        graph.node.push(NodeProto {
            op_type: "BatchNormalization".into(),
            input: ["c", "scale", "shift", "mean", "var"].map(String::from).to_vec(),
            output: vec![bn_out.into()],
            ..Default::default()
        });
        if relu {
            graph.node.push(NodeProto {
                op_type: "Relu".into(),
                input: vec!["bn".into()],
                output: vec!["y".into()],
                ..Default::default()
            });
        }
        for (name, v) in [("scale", &scale), ("shift", &shift), ("mean", &mean), ("var", &var)] {
            graph.initializer.push(TensorProto {
                name: name.into(),
                dims: vec![o as i64],
                data_type: DataType::Float as i32,
                float_data: v.clone(),
                ..Default::default()
            });
        }
        let [oh, ow] = plain.out();
        let expected = plain
            .reference(&x, &kernel, &bias)
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let ch = (i / (oh * ow)) % o;
                let y = (f64::from(v) - f64::from(mean[ch])) / (f64::from(var[ch]) + 1e-5).sqrt()
                    * f64::from(scale[ch])
                    + f64::from(shift[ch]);
                (if relu { y.max(0.0) } else { y }) as f32
            })
            .collect();
        (model, x, expected)
    }

    /// A batch normalisation after any of the three operators is folded into its kernel and
    /// bias (one node left), with or without a ReLU after it.
    #[test]
    fn batch_norm_after_a_convolution_is_folded_in() {
        let depthwise = depthwise_3x3([2, 6, 9, 21]);
        let pointwise = Case { outputs: 5, group: 1, kernel: [1, 1], pads: [0; 4], ..depthwise.clone() };
        let dense = Case { outputs: 4, group: 2, strides: [2, 2], ..depthwise.clone() };
        for (case, op) in
            [(depthwise, "DepthwiseConvPlanes"), (pointwise, "PointwiseConv"), (dense, "DenseConvProduct")]
        {
            for relu in [false, true] {
                let (model, x, expected) = with_batch_norm(&case, relu, 11);
                let input = Tensor::from_shape(&case.x, &x).expect("tensor");
                let (y, ops) = run(&model, tvec!(input.into_tvalue()));
                assert_eq!(ops.len(), 2, "{ops:?}");
                assert_eq!(ops[1], op);
                assert_eq!(y.len(), expected.len());
                for (a, b) in y.iter().zip(&expected) {
                    assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{op}: {a} vs {b}");
                }
            }
        }
    }

    /// `case`'s convolution (output `c`) followed by `nodes`, with the extra initializers and
    /// graph inputs given; the planned operators and the output.
    fn after_conv(
        case: &Case,
        nodes: Vec<NodeProto>,
        initializers: &[(&str, Vec<i64>, Vec<f32>)],
        extra_input: Option<(&str, Vec<i64>, Vec<f32>)>,
        conv_is_output: bool,
    ) -> (Vec<f32>, Vec<String>) {
        use tract_onnx::pb::{tensor_proto::DataType, TensorProto};
        let [n, c, h, w] = case.x;
        let kernel = values(case.outputs * (c / case.group) * case.kernel[0] * case.kernel[1], 1);
        let bias = values(case.outputs, 2);
        let mut model = Case { relu: false, ..case.clone() }.model(&kernel, &bias);
        let graph = model.graph.as_mut().expect("graph");
        graph.node[0].output = vec!["c".into()];
        graph.node.extend(nodes);
        for (name, dims, v) in initializers {
            graph.initializer.push(TensorProto {
                name: (*name).into(),
                dims: dims.clone(),
                data_type: DataType::Float as i32,
                float_data: v.clone(),
                ..Default::default()
            });
        }
        if conv_is_output {
            graph.output.push(value_info("c", None));
        }
        let mut inputs = tvec!(Tensor::from_shape(&case.x, &values(n * c * h * w, 4)).expect("tensor").into_tvalue());
        if let Some((name, dims, v)) = extra_input {
            graph.input.push(value_info(name, Some(&dims)));
            let shape: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
            inputs.push(Tensor::from_shape(&shape, &v).expect("tensor").into_tvalue());
        }
        run(&model, inputs)
    }

    fn node(op: &str, inputs: [&str; 2], output: &str) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            input: inputs.map(String::from).to_vec(),
            output: vec![output.into()],
            ..Default::default()
        }
    }

    /// A 3x3 depthwise convolution of `x` at stride 1, padding 1, no ReLU.
    fn depthwise_3x3(x: [usize; 4]) -> Case {
        Case {
            x,
            outputs: x[1],
            group: x[1],
            kernel: [3, 3],
            strides: [1, 1],
            dilations: [1, 1],
            pads: [1; 4],
            relu: false,
        }
    }

    fn small_depthwise() -> Case {
        depthwise_3x3([1, 4, 5, 6])
    }

    /// A per-channel constant folds in whichever slot it is, and a single value too.
    #[test]
    fn per_channel_constants_fold_in_either_slot() {
        let case = small_depthwise();
        let plain = values(4 * 5 * 6, 4);
        let kernel = values(36, 1);
        let conv = case.reference(&plain, &kernel, &values(4, 2));
        let (scale, shift) = (values(4, 8), values(1, 9));
        let nodes = vec![node("Mul", ["c", "scale"], "m"), node("Add", ["shift", "m"], "y")];
        let (y, ops) = after_conv(
            &case,
            nodes,
            &[("scale", vec![1, 4, 1, 1], scale.clone()), ("shift", vec![1], shift.clone())],
            None,
            false,
        );
        assert_eq!(ops, ["Source", "DepthwiseConvPlanes"]);
        for (i, (a, v)) in y.iter().zip(&conv).enumerate() {
            let b = v * scale[i / 30] + shift[0];
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    /// What does not fold stays a node of its own: an operand varying along the width,
    /// arithmetic on a convolution whose output is also a result, an operand that is not a
    /// constant, and a multiply after a ReLU (the bound would have to move past it).
    #[test]
    fn other_arithmetic_is_not_folded() {
        let case = small_depthwise();
        let mul = |operand: &str| vec![node("Mul", ["c", operand], "y")];
        let (_, ops) = after_conv(&case, mul("per_column"), &[("per_column", vec![6], values(6, 3))], None, false);
        assert!(ops.iter().any(|o| o.contains("Mul")), "{ops:?}");
        let (_, ops) =
            after_conv(&case, mul("per_channel"), &[("per_channel", vec![1, 4, 1, 1], values(4, 3))], None, true);
        assert!(ops.iter().any(|o| o.contains("Mul")), "{ops:?}");
        let (_, ops) = after_conv(&case, mul("other"), &[], Some(("other", vec![1, 4, 5, 6], values(120, 5))), false);
        assert!(ops.iter().any(|o| o.contains("Mul")), "{ops:?}");
        // Conv, ReLU, then a multiply by a negative scale: the ReLU folds, the multiply stays,
        // and the result is the definition's.
        let scale = vec![-2.0, 0.5, -1.0, 3.0];
        let relu = NodeProto {
            op_type: "Relu".into(),
            input: vec!["c".into()],
            output: vec!["r".into()],
            ..Default::default()
        };
        let (y, ops) = after_conv(
            &case,
            vec![relu, node("Mul", ["r", "scale"], "y")],
            &[("scale", vec![1, 4, 1, 1], scale.clone())],
            None,
            false,
        );
        assert!(ops.iter().any(|o| o.contains("Mul")), "{ops:?}");
        let conv = case.reference(&values(120, 4), &values(36, 1), &values(4, 2));
        for (i, (a, v)) in y.iter().zip(&conv).enumerate() {
            let b = v.max(0.0) * scale[i / 30];
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn the_scratch_is_zero_after_use_and_after_a_panic() {
        let panicked = std::panic::catch_unwind(|| {
            with_scratch(8, 4, |a, b| {
                a.fill(7.0);
                b.fill(9.0);
                panic!("a node fails half way");
            })
        });
        assert!(panicked.is_err());
        with_scratch(8, 4, |a, b| assert!(a.iter().chain(b.iter()).all(|&v| v == 0.0)));
        with_scratch(3, 2, |a, b| {
            a.fill(1.0);
            b.fill(1.0);
        });
        with_scratch(16, 0, |a, b| assert!(a.iter().all(|&v| v == 0.0) && b.is_empty()));
    }

    #[test]
    fn computed_kernels_stay_tracts() {
        // A kernel that is a graph input, not a constant.
        let case = Case {
            x: [1, 2, 5, 6],
            outputs: 2,
            group: 1,
            kernel: [3, 3],
            strides: [1, 1],
            dilations: [1, 1],
            pads: [1; 4],
            relu: false,
        };
        let mut model = case.model(&values(2 * 2 * 9, 3), &[0.5, -0.5]);
        let graph = model.graph.as_mut().expect("graph");
        graph.initializer.retain(|t| t.name != "k");
        graph.input.push(value_info("k", Some(&[2, 2, 3, 3])));
        let x = Tensor::from_shape(&[1, 2, 5, 6], &values(60, 4)).expect("tensor");
        let k = Tensor::from_shape(&[2, 2, 3, 3], &values(36, 5)).expect("tensor");
        let (y, ops) = run(&model, tvec!(x.into_tvalue(), k.into_tvalue()));
        assert_eq!(y.len(), 2 * 5 * 6);
        assert!(!ops.iter().any(|o| o == "DenseConvProduct" || o == "DepthwiseConvPlanes"), "{ops:?}");
    }
}
