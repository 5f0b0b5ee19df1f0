//! ONNX `Softmax` over a short last axis, as one in-place pass.
//!
//! UltraFace ends in a softmax over the two class scores of each of its 4,420 priors. tract
//! runs its vector softmax kernel once per row, and for rows of two values the calls cost
//! more than the arithmetic: 0.43 ms of the model's 8.3 (onnxruntime: 0.06 ms), measured with
//! a per-node timer on one core. [`register`] wraps tract's parser entry: a softmax over the
//! last axis of at most [`SHORT`] values (a concrete length, `f32`) is [`ShortSoftmax`], every
//! other one stays tract's.

use tract_onnx::model::{Onnx, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use std::sync::OnceLock;

use super::intercept::{self, Builder, Rewire};

/// The longest last axis [`ShortSoftmax`] takes.
pub const SHORT: usize = 16;

/// tract's own `Softmax` parser, kept when [`register`] replaces it.
static STOCK_SOFTMAX: OnceLock<Builder> = OnceLock::new();

/// Makes `onnx` parse `Softmax` nodes over a short last axis into [`ShortSoftmax`].
pub(super) fn register(onnx: &mut Onnx) {
    intercept::replace(onnx, "Softmax", &STOCK_SOFTMAX, parse);
}

fn parse(ctx: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    intercept::parse_with(&STOCK_SOFTMAX, ctx, node, || {
        // Before opset 13 the default axis is 1 and the input is seen as 2-D around it; for
        // the last axis both readings are the same softmax.
        let default = if ctx.onnx_operator_set_version < 13 { 1 } else { -1 };
        Ok(ShortRows { axis: node.get_attr_opt::<i64>("axis")?.unwrap_or(default) })
    })
}

/// Softmax nodes over a short last axis wired as [`ShortSoftmax`].
#[derive(Debug, Clone)]
struct ShortRows {
    axis: i64,
}

impl Rewire for ShortRows {
    fn wire(
        &self,
        _inner: &dyn Expansion,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<Option<TVec<OutletId>>> {
        let fact = model.outlet_fact(inputs[0])?;
        let rank = fact.rank() as i64;
        let axis = if self.axis < 0 { self.axis + rank } else { self.axis };
        let len = fact.shape.last().and_then(|d| d.as_i64()).and_then(|d| usize::try_from(d).ok());
        match len {
            Some(len) if fact.datum_type == DatumType::F32 && axis == rank - 1 && (1..=SHORT).contains(&len) => {
                model.wire_node(prefix, ShortSoftmax { len }, &inputs[..1]).map(Some)
            }
            _ => Ok(None),
        }
    }
}

/// Softmax over a last axis of `len` values: `exp(x_i - max) / Σ_j exp(x_j - max)` per row.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ShortSoftmax {
    len: usize,
}

impl Op for ShortSoftmax {
    fn name(&self) -> StaticName {
        "ShortSoftmax".into()
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for ShortSoftmax {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let mut x = x.into_tensor();
        ensure!(x.shape().last() == Some(&self.len), "softmax input {:?} for rows of {}", x.shape(), self.len);
        {
            let mut view = x.try_as_plain_ram_mut()?;
            let values = view.as_slice_mut::<f32>()?;
            if self.len == 2 {
                values.chunks_exact_mut(2).for_each(pair);
            } else {
                values.chunks_exact_mut(self.len).for_each(row);
            }
        }
        Ok(tvec!(x.into_tvalue()))
    }
}

impl TypedOp for ShortSoftmax {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].datum_type.fact(inputs[0].shape.clone())))
    }

    as_op!();
}

/// A row of two: with `e = exp(-|a - b|)`, the larger value gets `1 / (1 + e)` and the smaller
/// `e / (1 + e)`, one exponential per row and no cancellation in the smaller one.
fn pair(row: &mut [f32]) {
    let (a, b) = (row[0], row[1]);
    let e = (-(a - b).abs()).exp();
    let (big, small) = (1.0 / (1.0 + e), e / (1.0 + e));
    if a >= b {
        row[0] = big;
        row[1] = small;
    } else if b > a {
        row[0] = small;
        row[1] = big;
    } else {
        // A NaN in the row: NaN out, as the definition gives.
        row[0] = f32::NAN;
        row[1] = f32::NAN;
    }
}

fn row(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in row.iter_mut() {
        *v /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{run, value_info, values};
    use super::*;
    use proptest::prelude::*;

    fn model(shape: &[i64], axis: Option<i64>, opset: i64) -> tract_onnx::pb::ModelProto {
        use tract_onnx::pb::{
            attribute_proto::AttributeType, AttributeProto, GraphProto, ModelProto, OperatorSetIdProto,
        };
        let attribute = axis
            .map(|a| AttributeProto {
                name: "axis".into(),
                i: a,
                r#type: AttributeType::Int as i32,
                ..Default::default()
            })
            .into_iter()
            .collect();
        ModelProto {
            graph: Some(GraphProto {
                node: vec![NodeProto {
                    op_type: "Softmax".into(),
                    input: vec!["x".into()],
                    output: vec!["y".into()],
                    attribute,
                    ..Default::default()
                }],
                input: vec![value_info("x", Some(shape))],
                output: vec![value_info("y", None)],
                ..Default::default()
            }),
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: opset }],
            ..Default::default()
        }
    }

    /// The definition over the last axis, in f64.
    fn reference(x: &[f32], len: usize) -> Vec<f32> {
        x.chunks(len)
            .flat_map(|r| {
                let max = r.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
                let e: Vec<f64> = r.iter().map(|&v| (f64::from(v) - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                e.into_iter().map(move |v| (v / sum) as f32)
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Last-axis softmaxes of short rows (rank 2 or 3, opsets before and after 13, axis
        /// given as last or as -1) run as one node and match the definition.
        #[test]
        fn short_last_axis_softmax_matches_the_definition(
            rows in 1usize..50,
            len in 1usize..=SHORT,
            rank3 in any::<bool>(),
            opset in prop::sample::select(vec![9i64, 11, 13]),
            negative in any::<bool>(),
            scale in prop::sample::select(vec![1.0f32, 30.0]),
            seed in any::<u64>(),
        ) {
            let shape: Vec<i64> = if rank3 { vec![1, rows as i64, len as i64] } else { vec![rows as i64, len as i64] };
            let axis = if negative { -1 } else { shape.len() as i64 - 1 };
            let x: Vec<f32> = values(rows * len, seed).into_iter().map(|v| v * scale).collect();
            let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
            let input = Tensor::from_shape(&dims, &x).expect("tensor");
            let (y, ops) = run(&model(&shape, Some(axis), opset), tvec!(input.into_tvalue()));
            prop_assert!(ops.iter().any(|o| o == "ShortSoftmax"), "{:?}", ops);
            for (a, b) in y.iter().zip(reference(&x, len)) {
                prop_assert!((a - b).abs() <= 1e-6 + 1e-5 * b.abs(), "{} vs {}", a, b);
            }
        }
    }

    #[test]
    fn other_softmaxes_stay_tracts() {
        // Over the middle axis, and over a last axis longer than SHORT.
        let x = values(3 * 4 * 2, 5);
        let input = Tensor::from_shape(&[3, 4, 2], &x).expect("tensor");
        let (_, ops) = run(&model(&[3, 4, 2], Some(1), 13), tvec!(input.into_tvalue()));
        assert!(!ops.iter().any(|o| o == "ShortSoftmax"), "{ops:?}");
        let long = values(2 * (SHORT + 1), 6);
        let input = Tensor::from_shape(&[2, SHORT + 1], &long).expect("tensor");
        let (y, ops) = run(&model(&[2, SHORT as i64 + 1], None, 13), tvec!(input.into_tvalue()));
        assert!(!ops.iter().any(|o| o == "ShortSoftmax"), "{ops:?}");
        for (a, b) in y.iter().zip(reference(&long, SHORT + 1)) {
            assert!((a - b).abs() <= 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn pairs_keep_the_smaller_probability_exact_and_nan_stays_nan() {
        let mut row = [0.0f32, 40.0];
        pair(&mut row);
        assert_eq!(row[1], 1.0);
        assert!((row[0] - (-40.0f64).exp() as f32).abs() <= 1e-6 * row[0], "{}", row[0]);
        let mut nan = [f32::NAN, 1.0];
        pair(&mut nan);
        assert!(nan[0].is_nan() && nan[1].is_nan());
    }
}
