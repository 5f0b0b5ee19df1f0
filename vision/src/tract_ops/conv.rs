//! The parser entry for ONNX `Conv`: tract's own, except for the convolutions this module's
//! operators compute ([`super::depthwise`], [`super::pointwise`]), and what they share: the
//! checks that a convolution is a plain one (f32, NCHW, constant kernel and bias, no
//! dilation or quantisation, concrete shapes) and folding a following ReLU into its output.

use tract_onnx::model::{Onnx, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::cnn::Conv;
use tract_onnx::tract_hir::tract_core::downcast_rs::Downcast;
use tract_onnx::tract_hir::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_hir::tract_core::ops::cnn::conv::KernelFormat;
use tract_onnx::tract_hir::tract_core::ops::cnn::PaddingSpec;
use tract_onnx::tract_hir::tract_core::ops::math::{Max, Min};
use tract_onnx::tract_hir::tract_core::ops::nn::DataFormat;

use super::depthwise::DepthwiseConv;
use super::pointwise::PointwiseConv;
use super::simd::Clamp;

type Builder = fn(&ParsingContext, &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

/// tract's own `Conv` parser, kept when [`register`] replaces it.
static STOCK_CONV: std::sync::OnceLock<Builder> = std::sync::OnceLock::new();

/// Makes `onnx` parse `Conv` nodes so that the ones this module computes become its ops.
pub(super) fn register(onnx: &mut Onnx) {
    if let Some(stock) = onnx.op_register.0.get("Conv") {
        let _ = STOCK_CONV.set(*stock);
        onnx.op_register.insert("Conv", parse);
    }
}

fn parse(ctx: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let stock = STOCK_CONV.get().context("tract's Conv parser was not registered")?;
    let (op, outputs) = stock(ctx, node)?;
    let Some(inner) = op.as_op().downcast_ref::<Box<dyn Expansion>>() else {
        return Ok((op, outputs));
    };
    Ok((expand(ConvExpansion { inner: inner.clone() }), outputs))
}

#[derive(Debug, Clone)]
struct ConvExpansion {
    inner: Box<dyn Expansion>,
}

impl Expansion for ConvExpansion {
    fn name(&self) -> StaticName {
        self.inner.name()
    }

    fn validation(&self) -> Validation {
        self.inner.validation()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        self.inner.rules(s, inputs, outputs)
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        if let Some(conv) = Downcast::as_any(self.inner.as_ref()).downcast_ref::<Conv>() {
            if let Some(plain) = Plain::of(conv, model, inputs)? {
                if let Some(op) = DepthwiseConv::for_plain(&plain) {
                    return model.wire_node(prefix, op, &inputs[..1]);
                }
                if let Some(op) = PointwiseConv::for_plain(&plain) {
                    return model.wire_node(prefix, op, &inputs[..1]);
                }
            }
        }
        self.inner.wire(prefix, model, inputs)
    }
}

/// A convolution of an `[N, C, H, W]` f32 input with a constant `[O, C / group, kh, kw]`
/// kernel, a constant bias, zero padding narrower than the kernel and no dilation.
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
}

impl Plain {
    fn of(conv: &Conv, model: &TypedModel, inputs: &[OutletId]) -> TractResult<Option<Plain>> {
        let plain = conv.data_format == DataFormat::NCHW
            && conv.kernel_fmt == KernelFormat::OIHW
            && conv.dilations.as_ref().is_none_or(|d| d.iter().all(|&d| d == 1))
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
        if group == 0
            || per_group * group != input[0]
            || outputs % group != 0
            || conv.kernel_shape.as_deref().is_some_and(|s| s != [kh, kw])
            || kh == 0
            || kw == 0
            || pad_before[0] >= kh
            || pad_before[1] >= kw
            || pad_after[0] >= kh
            || pad_after[1] >= kw
            || input[1] + pad_before[0] + pad_after[0] < kh
            || input[2] + pad_before[1] + pad_after[1] < kw
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
        Ok(Some(Plain { input, kernel_shape, kernel, bias, group, pad_before, pad_after, strides }))
    }

    /// `[out_h, out_w]`.
    pub fn output(&self) -> [usize; 2] {
        let [_, h, w] = self.input;
        let [_, _, kh, kw] = self.kernel_shape;
        [
            (h + self.pad_before[0] + self.pad_after[0] - kh) / self.strides[0] + 1,
            (w + self.pad_before[1] + self.pad_after[1] - kw) / self.strides[1] + 1,
        ]
    }
}

/// `clamp` narrowed by the node after `node` when that node is a `max` or `min` of `node`'s
/// output (and nothing else reads that output) against one constant value, with the same
/// shape out: a ReLU is `max(x, 0)`. `None` when there is no such node.
pub(super) fn following_bound(model: &TypedModel, node: &TypedNode, clamp: Clamp) -> TractResult<Option<Clamp>> {
    let Some(succ) = model.single_succ(node.id)? else { return Ok(None) };
    let Some(bin) = succ.op_as::<TypedBinOp>() else { return Ok(None) };
    let is_max = bin.0.is::<Max>();
    if !(is_max || bin.0.is::<Min>()) || succ.inputs.len() != 2 || bin.1.is_some_and(|d| d != DatumType::F32) {
        return Ok(None);
    }
    let (ours, theirs) = (model.outlet_fact(node.id.into())?, model.outlet_fact(succ.id.into())?);
    if theirs.datum_type != DatumType::F32 || theirs.shape != ours.shape {
        return Ok(None);
    }
    let Some(bound) = succ
        .inputs
        .iter()
        .filter(|i| i.node != node.id)
        .filter_map(|i| model.outlet_fact(*i).ok()?.konst.clone())
        .find(|k| k.datum_type() == DatumType::F32 && k.len() >= 1 && k.is_uniform())
    else {
        return Ok(None);
    };
    let v = *bound.try_as_plain_ram()?.as_slice::<f32>()?.first().context("empty bound")?;
    // clamp(x, lo, hi) then max(., v) is clamp(x, max(lo, v), max(hi, v)); min alike.
    Ok(Some(if is_max {
        Clamp { lo: clamp.lo.max(v), hi: clamp.hi.max(v) }
    } else {
        Clamp { lo: clamp.lo.min(v), hi: clamp.hi.min(v) }
    }))
}
