//! Pointwise convolution (`Conv` with a 1x1 kernel, one group, stride 1, no padding) as a
//! matrix product straight over the NCHW planes.
//!
//! Two thirds of UltraFace's multiply-adds (and most of CenterFace's) are 1x1 convolutions.
//! tract computes them as a packed matrix product: every run packs the activations into
//! panels first (0.4 ms of UltraFace's 8.3 on one core, per-node timer) and its kernels run
//! the thin products of these models (16 to 64 input channels) at half of onnxruntime's
//! speed. [`PointwiseConv`] reads the input planes where they are: each tile of outputs (up
//! to four output channels by 64 pixels, sixteen vector accumulators) walks the input
//! channels once, loading four vectors of pixels and one weight per output channel per step
//! ([`super::simd::product`]). A following per-channel multiply or add (a batch
//! normalisation) is folded into the kernel and bias, a following ReLU into the tile's
//! stores.

use tract_onnx::tract_hir::internal::*;

use super::conv::{Plain, Weights};
use super::simd;

/// `y[n][o][p] = clamp(bias[o] + Σ_c kernel[o][c] · x[n][c][p])` over the pixels `p` of
/// `[N, C, H, W]` f32 planes.
#[derive(Debug, Clone)]
pub struct PointwiseConv {
    inputs: usize,
    outputs: usize,
    /// `[H, W]`.
    plane: [usize; 2],
    /// The kernel is `[O, C]`.
    weights: Weights,
}

impl PartialEq for PointwiseConv {
    fn eq(&self, other: &Self) -> bool {
        (self.inputs, self.outputs, self.plane) == (other.inputs, other.outputs, other.plane)
            && self.weights == other.weights
    }
}

impl Eq for PointwiseConv {}

impl PointwiseConv {
    /// The op for `conv` when it is a 1x1 convolution over every pixel (one group, stride 1,
    /// no padding).
    pub(super) fn for_plain(conv: &Plain) -> Option<PointwiseConv> {
        let [inputs, h, w] = conv.input;
        let [outputs, per_group, kh, kw] = conv.kernel_shape;
        let unit = conv.group == 1
            && per_group == inputs
            && (kh, kw) == (1, 1)
            && conv.strides == [1, 1]
            && conv.pad_before == [0, 0]
            && conv.pad_after == [0, 0];
        unit.then(|| PointwiseConv { inputs, outputs, plane: [h, w], weights: Weights::of(conv) })
    }
}

impl Op for PointwiseConv {
    fn name(&self) -> StaticName {
        "PointwiseConv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} to {} channels, output within [{}, {}]",
            self.inputs, self.outputs, self.weights.clamp.lo, self.weights.clamp.hi
        )])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for PointwiseConv {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let [h, w] = self.plane;
        let shape = x.shape();
        ensure!(
            shape.len() == 4 && shape[1..] == [self.inputs, h, w],
            "pointwise input {:?} for {} channels of {}x{}",
            shape,
            self.inputs,
            h,
            w
        );
        let batch = shape[0];
        let x = x.to_plain_array_view::<f32>()?;
        let x = x.as_slice().context("pointwise input is not contiguous")?;
        // SAFETY: `simd::product` writes every output value before anything reads `y`.
        let mut y = unsafe { Tensor::uninitialized::<f32>(&[batch, self.outputs, h, w])? };
        {
            let mut view = y.try_as_plain_ram_mut()?;
            let y = view.as_slice_mut::<f32>()?;
            let pixels = h * w;
            let rows: Vec<usize> = (0..self.inputs).map(|c| c * pixels).collect();
            for (x, y) in x.chunks_exact(self.inputs * pixels).zip(y.chunks_exact_mut(self.outputs * pixels)) {
                let Weights { kernel, bias, clamp } = &self.weights;
                simd::product(y, pixels, x, &rows, kernel, bias, pixels, *clamp);
            }
        }
        Ok(tvec!(y.into_tvalue()))
    }
}

impl TypedOp for PointwiseConv {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let [h, w] = self.plane;
        let n = inputs[0].shape[0].clone();
        Ok(tvec!(f32::fact([n, self.outputs.into(), h.into(), w.into()])))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let macs = self.inputs * self.outputs * self.plane[0] * self.plane[1];
        Ok(tvec!((Cost::FMA(DatumType::F32), inputs[0].shape[0].clone() * macs)))
    }

    fn declutter(&self, model: &TypedModel, node: &TypedNode) -> TractResult<Option<TypedModelPatch>> {
        let Some(weights) = self.weights.followed(model, node)? else { return Ok(None) };
        TypedModelPatch::fuse_with_next(model, node, PointwiseConv { weights, ..self.clone() }).map(Some)
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::super::tests::{run, value_info, values};
    use super::*;
    use proptest::prelude::*;

    /// `Conv` (1x1 unless `kernel` says otherwise) then optionally `Relu`.
    fn model(
        x: [i64; 4],
        outputs: i64,
        kernel: &[f32],
        bias: Option<&[f32]>,
        relu: bool,
    ) -> tract_onnx::pb::ModelProto {
        use tract_onnx::pb::{
            tensor_proto::DataType, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
        };
        let tensor = |name: &str, dims: &[i64], values: &[f32]| TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: DataType::Float as i32,
            float_data: values.to_vec(),
            ..Default::default()
        };
        let mut initializer = vec![tensor("k", &[outputs, x[1], 1, 1], kernel)];
        let mut input = vec!["x".into(), "k".into()];
        if let Some(bias) = bias {
            initializer.push(tensor("b", &[outputs], bias));
            input.push("b".into());
        }
        let mut node = vec![NodeProto {
            op_type: "Conv".into(),
            input,
            output: vec![if relu { "z" } else { "y" }.into()],
            ..Default::default()
        }];
        if relu {
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
                input: vec![value_info("x", Some(&x))],
                output: vec![value_info("y", None)],
                initializer,
                ..Default::default()
            }),
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }],
            ..Default::default()
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Through the parser, against the definition in f64: output channel counts around
        /// the tile's four, plane sizes around its 64 pixels, with and without bias and ReLU.
        #[test]
        fn pointwise_convolutions_match_the_definition(
            batch in 1usize..3,
            inputs in 1usize..40,
            outputs in 1usize..11,
            h in 1usize..9,
            w in 1usize..40,
            with_bias in any::<bool>(),
            relu in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let pixels = h * w;
            let x = values(batch * inputs * pixels, seed);
            let kernel = values(outputs * inputs, seed ^ 1);
            let bias = values(outputs, seed ^ 2);
            let shape = [batch as i64, inputs as i64, h as i64, w as i64];
            let m = model(shape, outputs as i64, &kernel, with_bias.then_some(&bias[..]), relu);
            let input = Tensor::from_shape(&[batch, inputs, h, w], &x).expect("tensor");
            let (y, ops) = run(&m, tvec!(input.into_tvalue()));
            prop_assert!(ops.iter().any(|o| o == "PointwiseConv"), "{:?}", ops);
            prop_assert!(!relu || ops.len() == 2, "{:?}", ops);
            prop_assert_eq!(y.len(), batch * outputs * pixels);
            for n in 0..batch {
                for o in 0..outputs {
                    for p in 0..pixels {
                        let mut acc = if with_bias { f64::from(bias[o]) } else { 0.0 };
                        for c in 0..inputs {
                            acc += f64::from(kernel[o * inputs + c]) * f64::from(x[(n * inputs + c) * pixels + p]);
                        }
                        if relu {
                            acc = acc.max(0.0);
                        }
                        let got = y[(n * outputs + o) * pixels + p];
                        prop_assert!((f64::from(got) - acc).abs() <= 1e-5 * (1.0 + acc.abs()), "{} vs {}", got, acc);
                    }
                }
            }
        }
    }
}
