//! Operators the edge's models spend their time in, computed our way inside tract's plans.
//!
//! Measured per node on one core (the `passage bench edge` models against onnxruntime's own
//! per-node profile), tract lost its time in a few operator forms: the three-node expansion of
//! `PRelu` (over half of SFace and of the liveness network), depthwise convolution (a third of
//! CenterFace), the packing and small products of 1x1 convolutions, the padding and im2col of
//! small dense ones, and a softmax called once per two-value row (UltraFace's last node).
//! [`register`] points tract's ONNX parser at this module for those:
//!
//! * `conv`: the `Conv` entry. Every plain convolution (f32, NCHW, constant kernel and bias,
//!   explicit padding narrower than the dilated kernel, concrete shapes) becomes
//!   [`pointwise::PointwiseConv`], [`depthwise::DepthwiseConv`] or [`dense::DenseConv`], with a
//!   following per-channel multiply or add (a batch normalisation) and a following ReLU folded
//!   in; the rest (quantised or computed kernels, `auto_pad`, symbolic shapes) stays tract's.
//! * [`prelu`]: `PRelu` with a per-channel constant slope as one in-place pass.
//! * [`softmax`]: softmax over a last axis of at most 16 values as one pass.
//! * `intercept`: how `conv` and `softmax` take over some nodes of an operator while tract's
//!   own parser keeps the rest.
//! * `simd`: the vector loops under them (AVX-512 where the CPU has it, detected at run time;
//!   portable loops elsewhere, tested against each other; the direct 3x3 depthwise planes have
//!   no portable twin: without AVX-512 those layers take the padded path, and both are tested
//!   against the definition).
//!
//! Each operator is checked against the ONNX definition by property tests; whole models agree
//! with onnxruntime as closely as tract's own operators do.

mod conv;
pub mod dense;
pub mod depthwise;
mod intercept;
pub mod pointwise;
pub mod prelu;
mod simd;
pub mod softmax;

use tract_onnx::model::Onnx;

/// Registers this module's operators in `onnx`'s parser.
pub(crate) fn register(onnx: &mut Onnx) {
    prelu::register(onnx);
    conv::register(onnx);
    softmax::register(onnx);
}

#[cfg(test)]
pub(crate) mod tests {
    use tract_onnx::pb::{
        tensor_proto::DataType, tensor_shape_proto, type_proto, ModelProto, TensorShapeProto, TypeProto, ValueInfoProto,
    };
    use tract_onnx::tract_hir::internal::*;

    /// A float tensor's value info, with its shape when known.
    pub(crate) fn value_info(name: &str, shape: Option<&[i64]>) -> ValueInfoProto {
        let dim = |d: i64| tensor_shape_proto::Dimension {
            value: Some(tensor_shape_proto::dimension::Value::DimValue(d)),
            ..Default::default()
        };
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: DataType::Float as i32,
                    shape: shape.map(|s| TensorShapeProto { dim: s.iter().map(|&d| dim(d)).collect() }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Deterministic values in [-1, 1).
    pub(crate) fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Plans `model` with this module's operators registered and runs it: the first output and
    /// the names of the planned nodes' operators.
    pub(crate) fn run(model: &ModelProto, inputs: TVec<TValue>) -> (Vec<f32>, Vec<String>) {
        let mut onnx = tract_onnx::onnx();
        super::register(&mut onnx);
        let plan = onnx
            .model_for_proto_model(model)
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .expect("plan");
        let ops = plan.model().nodes().iter().map(|n| n.op().name().to_string()).collect();
        let out = plan.run(inputs).expect("run");
        (out[0].to_plain_array_view::<f32>().expect("f32").iter().copied().collect(), ops)
    }
}
