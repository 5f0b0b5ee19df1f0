//! Loading ONNX models into tract: pin check, the one rewrite some shipped files need, fixed
//! input shapes, and running a plan so that the input tensor is wiped afterwards.
//!
//! The rewrite ([`fold_block_dequantize`]) is part of loading, not a file conversion: SFace
//! `int8bq` ships its weights as int8 with one scale per block of 64 (or 9) values
//! (`DequantizeLinear` with `block_size`, opset 21), and tract's `DequantizeLinear` reads only
//! the first scale. Folding each constant `DequantizeLinear` into a float initializer gives the
//! float weights the quantiser started from (within its rounding), in memory, every time the
//! model is loaded from the pinned file.

use std::path::Path;
use std::sync::Arc;

use tract_onnx::pb::{tensor_proto::DataType, ModelProto, TensorProto};
use tract_onnx::prelude::*;
use zeroize::Zeroize;

use crate::inventory::ModelSpec;
use crate::VisionError;

/// Parses ONNX bytes.
///
/// # Errors
/// [`VisionError::Runtime`] when the bytes are not an ONNX model.
pub fn parse(bytes: &[u8]) -> Result<ModelProto, VisionError> {
    tract_onnx::onnx().proto_model_for_read(&mut &*bytes).map_err(VisionError::runtime)
}

/// Replaces every `DequantizeLinear` whose three inputs are initializers by a float
/// initializer holding `(x - zero_point) * scale`, with per-axis or per-block scales. Returns
/// how many nodes were folded.
///
/// # Errors
/// [`VisionError::Runtime`] for a node whose tensors are inconsistent.
pub fn fold_block_dequantize(model: &mut ModelProto) -> Result<usize, VisionError> {
    let graph = model.graph.as_mut().ok_or_else(|| VisionError::Runtime("the model has no graph".into()))?;
    let mut folded = Vec::new();
    let mut kept = Vec::with_capacity(graph.node.len());
    for node in std::mem::take(&mut graph.node) {
        let constant = |name: &String| graph.initializer.iter().find(|t| &t.name == name);
        let inputs: Option<Vec<&TensorProto>> =
            if node.op_type == "DequantizeLinear" && node.input.len() == 3 && node.output.len() == 1 {
                node.input.iter().map(constant).collect()
            } else {
                None
            };
        match inputs {
            Some(inputs) => {
                let attribute = |name: &str| node.attribute.iter().find(|a| a.name == name).map(|a| a.i);
                let axis = attribute("axis").unwrap_or(1);
                let block = attribute("block_size").unwrap_or(0);
                let mut tensor = dequantize(inputs[0], inputs[1], inputs[2], axis, block)
                    .map_err(|e| VisionError::Runtime(format!("cannot fold {}: {e}", node.output[0])))?;
                tensor.name.clone_from(&node.output[0]);
                folded.push(tensor);
            }
            None => kept.push(node),
        }
    }
    graph.node = kept;
    let count = folded.len();
    graph.initializer.extend(folded);
    // Drop initializers no node reads any more (the int8 weights, scales, zero points).
    let used: std::collections::HashSet<&str> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .chain(graph.output.iter().map(|o| o.name.as_str()))
        .collect();
    let used: std::collections::HashSet<String> = used.into_iter().map(str::to_owned).collect();
    graph.initializer.retain(|t| used.contains(&t.name));
    // `DequantizeLinear` with `block_size` was the only reason for opset 21; every operator
    // left has the same meaning in opset 18, the newest tract is tested against.
    if count > 0 && graph.node.iter().all(|n| n.op_type != "DequantizeLinear") {
        for import in &mut model.opset_import {
            if (import.domain.is_empty() || import.domain == "ai.onnx") && import.version > 18 {
                import.version = 18;
            }
        }
    }
    Ok(count)
}

/// Keeps only the graph inputs named in `names` (some exporters list weights as inputs).
pub fn keep_inputs(model: &mut ModelProto, names: &[&str]) {
    if let Some(graph) = model.graph.as_mut() {
        graph.input.retain(|i| names.contains(&i.name.as_str()));
    }
}

fn values_f32(t: &TensorProto) -> Result<Vec<f32>, String> {
    if t.data_type != DataType::Float as i32 {
        return Err(format!("{} is not float", t.name));
    }
    if !t.float_data.is_empty() {
        return Ok(t.float_data.clone());
    }
    if !t.raw_data.len().is_multiple_of(4) {
        return Err(format!("{} has {} raw bytes", t.name, t.raw_data.len()));
    }
    Ok(t.raw_data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

fn values_int(t: &TensorProto) -> Result<Vec<f32>, String> {
    let signed = if t.data_type == DataType::Int8 as i32 {
        true
    } else if t.data_type == DataType::Uint8 as i32 {
        false
    } else {
        return Err(format!("{} is neither int8 nor uint8", t.name));
    };
    if !t.int32_data.is_empty() {
        return Ok(t.int32_data.iter().map(|&v| v as f32).collect());
    }
    Ok(t.raw_data.iter().map(|&b| if signed { f32::from(b as i8) } else { f32::from(b) }).collect())
}

fn dequantize(
    x: &TensorProto,
    scale: &TensorProto,
    zero: &TensorProto,
    axis: i64,
    block: i64,
) -> Result<TensorProto, String> {
    let dims: Vec<usize> = x
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("negative dim {d}")))
        .collect::<Result<_, _>>()?;
    let values = values_int(x)?;
    let scales = values_f32(scale)?;
    let zeros = values_int(zero)?;
    let total: usize = dims.iter().product();
    if values.len() != total || zeros.len() != scales.len() {
        return Err(format!(
            "{} values for shape {dims:?}, {} scales, {} zero points",
            values.len(),
            scales.len(),
            zeros.len()
        ));
    }
    let rank = dims.len() as i64;
    let axis = if axis < 0 { axis + rank } else { axis };
    let out: Vec<f32> = if scales.len() == 1 {
        values.iter().map(|v| (v - zeros[0]) * scales[0]).collect()
    } else {
        let axis = usize::try_from(axis)
            .ok()
            .filter(|&a| a < dims.len())
            .ok_or_else(|| format!("axis {axis} out of range"))?;
        let inner: usize = dims[axis + 1..].iter().product();
        let along = dims[axis];
        let per_block = block > 0;
        let block = if per_block { usize::try_from(block).map_err(|e| e.to_string())? } else { 1 };
        let blocks = along.div_ceil(block);
        let outer: usize = dims[..axis].iter().product();
        let expected = if per_block { outer * blocks * inner } else { along };
        if scales.len() != expected {
            return Err(format!("{} scales for shape {dims:?}, axis {axis}, block size {block}", scales.len()));
        }
        let mut out = Vec::with_capacity(total);
        for o in 0..outer {
            for a in 0..along {
                for i in 0..inner {
                    let s = if per_block { (o * blocks + a / block) * inner + i } else { a };
                    out.push((values[(o * along + a) * inner + i] - zeros[s]) * scales[s]);
                }
            }
        }
        out
    };
    Ok(TensorProto {
        dims: x.dims.clone(),
        data_type: DataType::Float as i32,
        raw_data: out.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..TensorProto::default()
    })
}

/// An optimised, runnable tract model (ONNX or TensorFlow) with one fixed input shape. Cheap
/// to clone.
#[derive(Clone)]
pub struct Plan {
    plan: Arc<TypedRunnableModel>,
    input_shape: Vec<usize>,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan").field("input_shape", &self.input_shape).finish_non_exhaustive()
    }
}

impl Plan {
    /// Builds a plan from a parsed model with input 0 fixed to `input_shape` (f32). When
    /// `clear_outputs` is set, the declared output shapes are dropped so that tract infers
    /// them from the new input shape.
    ///
    /// # Errors
    /// [`VisionError::Runtime`] when tract cannot type or optimise the model.
    pub fn new(model: &ModelProto, input_shape: &[usize], clear_outputs: bool) -> Result<Plan, VisionError> {
        let mut onnx = tract_onnx::onnx();
        crate::tract_ops::register(&mut onnx);
        let mut inference = onnx.model_for_proto_model(model).map_err(VisionError::runtime)?;
        inference.set_input_fact(0, f32::fact(input_shape).into()).map_err(VisionError::runtime)?;
        if clear_outputs {
            for i in 0..inference.output_outlets().map_err(VisionError::runtime)?.len() {
                inference.set_output_fact(i, InferenceFact::default()).map_err(VisionError::runtime)?;
            }
        }
        let plan = inference.into_optimized().and_then(|m| m.into_runnable()).map_err(VisionError::runtime)?;
        Ok(Plan { plan, input_shape: input_shape.to_vec() })
    }

    /// Wraps a model already optimised by tract (a TensorFlow graph, say).
    pub fn from_runnable(plan: Arc<TypedRunnableModel>, input_shape: &[usize]) -> Plan {
        Plan { plan, input_shape: input_shape.to_vec() }
    }

    /// The input shape.
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// Fills a zeroed input tensor with `fill`, runs the model, wipes the input (it holds
    /// pixels) and returns the outputs as `f32` vectors.
    ///
    /// # Errors
    /// [`VisionError::Runtime`] when the model fails or an output is not `f32`.
    pub fn run(&self, fill: impl FnOnce(&mut [f32]) -> Result<(), VisionError>) -> Result<Vec<Output>, VisionError> {
        let mut tensor = Arc::new(self.input(fill)?);
        let outputs = self.plan.run(tvec!(TValue::from_const(tensor.clone())));
        wipe(&mut tensor);
        outputs
            .map_err(VisionError::runtime)?
            .iter()
            .map(|o| {
                let shape = o.shape().to_vec();
                let data = o
                    .try_as_plain_ram()
                    .and_then(|v| v.as_slice::<f32>().map(<[f32]>::to_vec))
                    .map_err(VisionError::runtime)?;
                Ok(Output { shape, data })
            })
            .collect()
    }

    /// A zeroed input tensor that `fill` has written; wiped again if `fill` fails.
    fn input(&self, fill: impl FnOnce(&mut [f32]) -> Result<(), VisionError>) -> Result<Tensor, VisionError> {
        let mut tensor = Tensor::zero::<f32>(&self.input_shape).map_err(VisionError::runtime)?;
        let filled = match tensor.try_as_plain_ram_mut() {
            Ok(mut view) => match view.as_slice_mut::<f32>() {
                Ok(values) => {
                    let filled = fill(values);
                    if filled.is_err() {
                        values.zeroize();
                    }
                    filled
                }
                Err(e) => Err(VisionError::runtime(e)),
            },
            Err(e) => Err(VisionError::runtime(e)),
        };
        filled.map(|()| tensor)
    }
}

/// Wipes an input tensor (it holds pixels) once the plan no longer holds it.
fn wipe(tensor: &mut Arc<Tensor>) {
    if let Some(tensor) = Arc::get_mut(tensor) {
        if let Ok(mut view) = tensor.try_as_plain_ram_mut() {
            if let Ok(pixels) = view.as_slice_mut::<f32>() {
                pixels.zeroize();
            }
        }
    }
}

/// Where a plan's time goes: one operator kind (tract's or `crate::tract_ops`'), how many
/// nodes of the plan run it, and their wall time per run of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct OpTime {
    /// The operator's name, as tract reports it.
    pub op: String,
    /// Nodes of the plan running it.
    pub nodes: usize,
    /// Milliseconds per run of the plan, summed over those nodes.
    pub ms: f64,
}

impl Plan {
    /// Runs the plan `runs` times on the input `fill` writes (wiped after each run, as in
    /// [`Plan::run`]), timing every node, and returns the time per operator kind, most first.
    /// For finding where a model's time goes (`passage bench edge --per-op`); the timer adds a
    /// little per node.
    ///
    /// # Errors
    /// [`VisionError::Runtime`] when the model fails, or as `fill` fails.
    pub fn profile(
        &self,
        runs: usize,
        mut fill: impl FnMut(&mut [f32]) -> Result<(), VisionError>,
    ) -> Result<Vec<OpTime>, VisionError> {
        use tract_onnx::tract_core::plan::{eval, SimpleState};
        let mut totals: std::collections::HashMap<String, (std::collections::HashSet<usize>, f64)> =
            std::collections::HashMap::new();
        for _ in 0..runs {
            let mut tensor = Arc::new(self.input(&mut fill)?);
            // A state per run, dropped before the wipe: a failed run leaves the input in it.
            let mut state = SimpleState::new(&self.plan).map_err(VisionError::runtime)?;
            let outputs =
                state.run_plan_with_eval(tvec!(TValue::from_const(tensor.clone())), |ctx, op_state, node, inputs| {
                    let started = std::time::Instant::now();
                    let result = eval(ctx, op_state, node, inputs);
                    let elapsed = started.elapsed().as_secs_f64() * 1e3;
                    let entry = totals.entry(node.op().name().to_string()).or_default();
                    entry.0.insert(node.id);
                    entry.1 += elapsed;
                    result
                });
            drop(state);
            wipe(&mut tensor);
            drop(outputs.map_err(VisionError::runtime)?);
        }
        let runs = runs.max(1) as f64;
        let mut times: Vec<OpTime> =
            totals.into_iter().map(|(op, (nodes, ms))| OpTime { op, nodes: nodes.len(), ms: ms / runs }).collect();
        times.sort_by(|a, b| b.ms.total_cmp(&a.ms).then_with(|| a.op.cmp(&b.op)));
        Ok(times)
    }
}

/// A fully convolutional model with one optimised plan per input shape, built on first use
/// and cached (at most `limit`; the cache starts over when full). Cheap to clone.
#[derive(Clone)]
pub struct PlanCache {
    model: Arc<ModelProto>,
    plans: Arc<std::sync::Mutex<std::collections::HashMap<Vec<usize>, Plan>>>,
    limit: usize,
}

impl std::fmt::Debug for PlanCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlanCache").field("limit", &self.limit).finish_non_exhaustive()
    }
}

impl PlanCache {
    /// A cache over `model` holding at most `limit` plans.
    pub fn new(model: ModelProto, limit: usize) -> PlanCache {
        PlanCache { model: Arc::new(model), plans: Arc::default(), limit: limit.max(1) }
    }

    /// The plan for input shape `shape` (declared output shapes dropped, so that tract
    /// infers them).
    ///
    /// # Errors
    /// [`VisionError::Runtime`] when tract cannot build it.
    pub fn get(&self, shape: &[usize]) -> Result<Plan, VisionError> {
        let mut plans = self.plans.lock().map_err(|_| VisionError::Runtime("plan cache poisoned".into()))?;
        if let Some(plan) = plans.get(shape) {
            return Ok(plan.clone());
        }
        let plan = Plan::new(&self.model, shape, true)?;
        if plans.len() >= self.limit {
            plans.clear();
        }
        plans.insert(shape.to_vec(), plan.clone());
        Ok(plan)
    }
}

/// One model output.
pub struct Output {
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its values, row-major.
    pub data: Vec<f32>,
}

impl Drop for Output {
    fn drop(&mut self) {
        // Outputs are embeddings and landmarks of faces: wiped like the inputs.
        self.data.zeroize();
    }
}

/// The output at `index`, or a runtime error naming the model.
///
/// # Errors
/// [`VisionError::Runtime`] when there are fewer outputs or the size differs.
pub fn output<'a>(outputs: &'a [Output], index: usize, len: usize, model: &str) -> Result<&'a [f32], VisionError> {
    match outputs.get(index) {
        Some(o) if o.data.len() == len => Ok(&o.data),
        Some(o) => {
            Err(VisionError::Runtime(format!("{model}: output {index} has shape {:?}, expected {len} values", o.shape)))
        }
        None => Err(VisionError::Runtime(format!("{model}: fewer than {} outputs", index + 1))),
    }
}

/// Loads a pinned ONNX file with input 0 fixed to `input_shape`.
///
/// # Errors
/// See [`crate::read_pinned`] and [`Plan::new`].
pub fn load(path: &Path, spec: &ModelSpec, input_shape: &[usize]) -> Result<Plan, VisionError> {
    let model = parse(&crate::read_pinned(path, spec)?)?;
    Plan::new(&model, input_shape, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int8(name: &str, dims: &[i64], v: &[i8]) -> TensorProto {
        TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: DataType::Int8 as i32,
            raw_data: v.iter().map(|&b| b as u8).collect(),
            ..TensorProto::default()
        }
    }

    fn float(name: &str, dims: &[i64], v: &[f32]) -> TensorProto {
        TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: DataType::Float as i32,
            float_data: v.to_vec(),
            ..TensorProto::default()
        }
    }

    #[test]
    fn block_dequantisation_uses_one_scale_per_block_along_the_axis() {
        // 2 x 4 weights, blocks of 2 along axis 1: scales [[1, 10], [100, 1000]].
        let x = int8("x", &[2, 4], &[1, 2, 3, 4, 5, 6, 7, 8]);
        let s = float("s", &[2, 2], &[1.0, 10.0, 100.0, 1000.0]);
        let z = int8("z", &[2, 2], &[0, 1, 0, -1]);
        let t = dequantize(&x, &s, &z, 1, 2).expect("valid");
        let got: Vec<f32> = t.raw_data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        assert_eq!(got, vec![1.0, 2.0, 20.0, 30.0, 500.0, 600.0, 8000.0, 9000.0]);
    }

    #[test]
    fn per_axis_and_per_tensor_scales_work_too() {
        let x = int8("x", &[2, 2], &[1, 2, 3, 4]);
        let per_tensor = dequantize(&x, &float("s", &[], &[0.5]), &int8("z", &[], &[1]), 1, 0).expect("valid");
        assert_eq!(per_tensor.raw_data.len(), 16);
        let per_axis = dequantize(&x, &float("s", &[2], &[1.0, 2.0]), &int8("z", &[2], &[0, 0]), 0, 0).expect("valid");
        let got: Vec<f32> =
            per_axis.raw_data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        assert_eq!(got, vec![1.0, 2.0, 6.0, 8.0]);
    }

    #[test]
    fn inconsistent_tensors_are_refused() {
        let x = int8("x", &[2, 4], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(dequantize(&x, &float("s", &[3], &[1.0, 1.0, 1.0]), &int8("z", &[3], &[0, 0, 0]), 1, 2).is_err());
        assert!(dequantize(&x, &float("s", &[2, 2], &[1.0; 4]), &int8("z", &[1], &[0]), 1, 2).is_err());
        assert!(dequantize(&int8("x", &[3], &[1, 2]), &float("s", &[], &[1.0]), &int8("z", &[], &[0]), 0, 0).is_err());
    }

    #[test]
    fn a_profile_names_every_node_of_the_plan_once() {
        use crate::tract_ops::tests::value_info;
        use tract_onnx::pb::{GraphProto, NodeProto, OperatorSetIdProto};
        let node = |op: &str, input: &str, output: &str| NodeProto {
            op_type: op.into(),
            input: vec![input.into()],
            output: vec![output.into()],
            ..NodeProto::default()
        };
        let model = ModelProto {
            graph: Some(GraphProto {
                node: vec![node("Softmax", "x", "s"), node("Exp", "s", "y")],
                input: vec![value_info("x", Some(&[4, 2]))],
                output: vec![value_info("y", None)],
                ..GraphProto::default()
            }),
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }],
            ..ModelProto::default()
        };
        let plan = Plan::new(&model, &[4, 2], true).expect("plan");
        let mut fills = 0;
        let times = plan
            .profile(3, |input| {
                fills += 1;
                input.iter_mut().enumerate().for_each(|(i, v)| *v = i as f32);
                Ok(())
            })
            .expect("profile");
        assert_eq!(fills, 3);
        assert_eq!(times.iter().map(|t| t.nodes).sum::<usize>(), plan.plan.model().nodes().len(), "{times:?}");
        assert!(times.iter().any(|t| t.op == "ShortSoftmax"), "{times:?}");
        assert!(times.windows(2).all(|w| w[0].ms >= w[1].ms) && times.iter().all(|t| t.ms >= 0.0));
        // A failing fill is the error returned.
        assert!(
            matches!(plan.profile(1, |_| Err(VisionError::Runtime("no frame".into()))), Err(VisionError::Runtime(m)) if m == "no frame")
        );
    }

    #[test]
    fn garbage_and_empty_models_are_refused() {
        assert!(matches!(parse(&[0xff; 64]), Err(VisionError::Runtime(_))));
        assert!(matches!(Plan::new(&ModelProto::default(), &[1, 3, 8, 8], false), Err(VisionError::Runtime(_))));
        assert!(matches!(fold_block_dequantize(&mut ModelProto::default()), Err(VisionError::Runtime(_))));
    }
}
