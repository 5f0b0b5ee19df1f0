//! ONNX `PRelu` as one in-place pass per channel.
//!
//! tract expands `PRelu(x, slope)` into three graph nodes: `x * slope` (a broadcast multiply
//! that copies `x`, since `x` is still needed), `0 < x`, and a select between the two. On
//! SFace and the liveness network, where every convolution is followed by a per-channel
//! PReLU, those three nodes took more than half of each run (SFace: 31.6 of 55 ms on one
//! core, measured with a per-node timer). [`register`] replaces tract's parser entry for
//! `PRelu` with one whose typed form, when the slope is a constant with one value per channel
//! (or one value for all), is [`ChannelPrelu`]: it takes the input tensor (the convolution's
//! output, not shared) and rewrites its negative values in place. Any other slope (computed,
//! or broadcast along other axes) is wired as `max(x, 0) + slope * min(x, 0)` with tract's own
//! broadcasting operators, which is the ONNX definition.

use tract_onnx::model::{Onnx, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::tract_ndarray::Axis;

/// Makes `onnx` parse `PRelu` nodes into [`ChannelPrelu`] where the slope allows it.
pub(super) fn register(onnx: &mut Onnx) {
    onnx.op_register.insert("PRelu", parse);
}

fn parse(_ctx: &ParsingContext, _node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    Ok((expand(PreluExpansion), vec![]))
}

#[derive(Debug, Clone)]
struct PreluExpansion;

impl Expansion for PreluExpansion {
    fn name(&self) -> StaticName {
        "PRelu".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 2)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        Ok(())
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        let (x, slope) = (inputs[0], inputs[1]);
        let x_fact = model.outlet_fact(x)?.clone();
        let slope_fact = model.outlet_fact(slope)?.clone();
        if let Some(slopes) = channel_slopes(&x_fact, &slope_fact)? {
            return model.wire_node(prefix, ChannelPrelu { slopes }, &[x]);
        }
        // The definition, for slopes ChannelPrelu does not take.
        let rank = x_fact.rank();
        let mut slope = slope;
        while model.outlet_fact(slope)?.rank() < rank {
            slope = model.wire_node(
                format!("{prefix}.slope-axis-{}", model.outlet_fact(slope)?.rank()),
                AxisOp::Add(0),
                &[slope],
            )?[0];
        }
        let zero = tensor0(0.0f32).cast_to_dt(x_fact.datum_type)?.into_owned().broadcast_into_rank(rank)?;
        let zero = model.add_const(format!("{prefix}.zero"), zero)?;
        let positive = model.wire_node(format!("{prefix}.positive"), tract_core::ops::math::max(), &[x, zero])?[0];
        let negative = model.wire_node(format!("{prefix}.negative"), tract_core::ops::math::min(), &[x, zero])?[0];
        let scaled = model.wire_node(format!("{prefix}.scaled"), tract_core::ops::math::mul(), &[negative, slope])?[0];
        model.wire_node(prefix, tract_core::ops::math::add(), &[positive, scaled])
    }
}

/// The slope as one `f32` per channel (axis 1 of `x`) when it is a constant that ONNX's
/// unidirectional broadcasting spreads along axis 1 only (shape `[C, 1, .., 1]`, `[1, C, 1, ..]`,
/// or a single value); `None` otherwise.
fn channel_slopes(x: &TypedFact, slope: &TypedFact) -> TractResult<Option<Vec<f32>>> {
    let (Some(konst), DatumType::F32) = (&slope.konst, x.datum_type) else {
        return Ok(None);
    };
    if x.rank() < 2 {
        return Ok(None);
    }
    let Some(channels) = x.shape[1].as_i64().and_then(|c| usize::try_from(c).ok()) else {
        return Ok(None);
    };
    Ok(super::conv::channel_values(konst, x.rank(), channels))
}

/// `x` where `x >= 0`, `slope[c] * x` elsewhere, `c` being the index along axis 1.
#[derive(Debug, Clone)]
pub struct ChannelPrelu {
    slopes: Vec<f32>,
}

impl PartialEq for ChannelPrelu {
    fn eq(&self, other: &Self) -> bool {
        super::conv::same_values(&self.slopes, &other.slopes)
    }
}

impl Eq for ChannelPrelu {}

impl Op for ChannelPrelu {
    fn name(&self) -> StaticName {
        "ChannelPrelu".into()
    }

    op_as_typed_op!();
}

impl EvalOp for ChannelPrelu {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        // The producer's tensor itself when nothing else reads it (a copy otherwise).
        let mut x = x.into_tensor();
        {
            let mut view = x.to_plain_array_view_mut::<f32>()?;
            ensure!(
                view.ndim() >= 2 && view.shape()[1] == self.slopes.len(),
                "PRelu input {:?} for {} slopes",
                view.shape(),
                self.slopes.len()
            );
            for (mut channel, &slope) in view.axis_iter_mut(Axis(1)).zip(&self.slopes) {
                // A select, not a conditional store, so that the loop vectorises.
                channel.map_inplace(|v| *v = if *v < 0.0 { *v * slope } else { *v });
            }
        }
        Ok(tvec!(x.into_tvalue()))
    }
}

impl TypedOp for ChannelPrelu {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].datum_type.fact(inputs[0].shape.clone())))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::super::tests::run;
    use super::*;

    /// A one-node ONNX graph: `y = PRelu(x, slope)` with `slope` an initializer of the given
    /// shape and values, or a second graph input of `x`'s shape when `None`.
    fn model(x_shape: &[i64], slope: Option<(&[i64], &[f32])>) -> tract_onnx::pb::ModelProto {
        use super::super::tests::value_info;
        use tract_onnx::pb::{tensor_proto::DataType, GraphProto, ModelProto, OperatorSetIdProto, TensorProto};
        let mut graph = GraphProto {
            node: vec![NodeProto {
                op_type: "PRelu".into(),
                input: vec!["x".into(), "slope".into()],
                output: vec!["y".into()],
                ..Default::default()
            }],
            input: vec![value_info("x", Some(x_shape))],
            output: vec![value_info("y", Some(x_shape))],
            ..Default::default()
        };
        match slope {
            Some((shape, values)) => graph.initializer.push(TensorProto {
                name: "slope".into(),
                dims: shape.to_vec(),
                data_type: DataType::Float as i32,
                float_data: values.to_vec(),
                ..Default::default()
            }),
            None => graph.input.push(value_info("slope", Some(x_shape))),
        }
        ModelProto {
            graph: Some(graph),
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }],
            ..Default::default()
        }
    }

    fn reference(x: &[f32], slope_of: impl Fn(usize) -> f32) -> Vec<f32> {
        x.iter().enumerate().map(|(i, &v)| if v < 0.0 { v * slope_of(i) } else { v }).collect()
    }

    #[test]
    fn per_channel_constant_slopes_run_as_one_node() {
        let x: Vec<f32> = (0..2 * 3 * 4).map(|i| (i as f32 - 11.5) * 0.7).collect();
        let slopes = [0.25f32, -0.5, 2.0];
        let input = Tensor::from_shape(&[2, 3, 2, 2], &x).expect("tensor");
        for shape in [&[3, 1, 1][..], &[1, 3, 1, 1]] {
            let (y, ops) = run(&model(&[2, 3, 2, 2], Some((shape, &slopes))), tvec!(input.clone().into_tvalue()));
            assert_eq!(y, reference(&x, |i| slopes[(i / 4) % 3]), "slope shape {shape:?}");
            assert!(ops.iter().any(|o| o == "ChannelPrelu"), "slope shape {shape:?}: {ops:?}");
        }
        let (y, ops) = run(&model(&[2, 3, 2, 2], Some((&[1], &[0.1]))), tvec!(input.into_tvalue()));
        assert_eq!(y, reference(&x, |_| 0.1));
        assert!(ops.iter().any(|o| o == "ChannelPrelu"), "{ops:?}");
    }

    #[test]
    fn other_slopes_follow_the_definition() {
        // Along the last axis: not per channel.
        let x: Vec<f32> = (0..2 * 3 * 4).map(|i| (i as f32 - 11.5) * 0.7).collect();
        let input = Tensor::from_shape(&[2, 3, 4], &x).expect("tensor");
        let slopes = [0.5f32, -1.0, 3.0, 0.0];
        let (y, ops) = run(&model(&[2, 3, 4], Some((&[4], &slopes))), tvec!(input.clone().into_tvalue()));
        assert_eq!(y, reference(&x, |i| slopes[i % 4]));
        assert!(!ops.iter().any(|o| o == "ChannelPrelu"), "{ops:?}");
        // A slope that is an input.
        let slope: Vec<f32> = (0..x.len()).map(|i| i as f32 / 10.0).collect();
        let slope_tensor = Tensor::from_shape(&[2, 3, 4], &slope).expect("tensor");
        let (y, _) = run(&model(&[2, 3, 4], None), tvec!(input.into_tvalue(), slope_tensor.into_tvalue()));
        assert_eq!(y, reference(&x, |i| slope[i]));
    }
}
