//! Depthwise convolution (`Conv` with one group per channel) as row passes over each plane.
//!
//! CenterFace and UltraFace are MobileNet-style: a third of their convolutions are depthwise
//! 3x3, and in tract those took 35% of CenterFace's run (44 of 127 ms at 640x480 on one core,
//! per-node timer). [`DepthwiseConv`] zero-pads each input row of a plane once, then computes
//! each output row as a sum of scaled input rows with no edge cases inside the loop: for a 3x3
//! kernel one pass per output row over its nine taps (stride 1 or 2), other sizes one pass per
//! tap. The passes run in code compiled for AVX-512 or AVX2 with FMA when the CPU has them
//! (detected at run time), which is what lets the compiler vectorise them.
//!
//! The parser entry wraps tract's own `Conv`: a convolution that is not depthwise, or whose
//! geometry this op does not take (dilation, quantisation, a non-constant kernel, padding
//! wider than the kernel, a symbolic shape), is wired by tract as before.

use tract_onnx::model::{Onnx, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::cnn::Conv;
use tract_onnx::tract_hir::tract_core::downcast_rs::Downcast;
use tract_onnx::tract_hir::tract_core::ops::cnn::conv::KernelFormat;
use tract_onnx::tract_hir::tract_core::ops::cnn::PaddingSpec;
use tract_onnx::tract_hir::tract_core::ops::nn::DataFormat;

type Builder = fn(&ParsingContext, &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

/// tract's own `Conv` parser, kept when [`register`] replaces it.
static STOCK_CONV: std::sync::OnceLock<Builder> = std::sync::OnceLock::new();

/// Makes `onnx` parse `Conv` nodes so that depthwise ones become [`DepthwiseConv`].
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
            if let Some(op) = DepthwiseConv::for_conv(conv, model, inputs)? {
                return model.wire_node(prefix, op, &inputs[..1]);
            }
        }
        self.inner.wire(prefix, model, inputs)
    }
}

/// A depthwise convolution of an `[N, C, H, W]` f32 input with zero padding.
#[derive(Debug, Clone)]
pub struct DepthwiseConv {
    geometry: Geometry,
    /// `[C, kh, kw]`.
    kernel: Vec<f32>,
    /// `[C]`.
    bias: Vec<f32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Geometry {
    channels: usize,
    in_h: usize,
    in_w: usize,
    out_h: usize,
    out_w: usize,
    kh: usize,
    kw: usize,
    stride_h: usize,
    stride_w: usize,
    pad_top: usize,
    pad_left: usize,
}

impl PartialEq for DepthwiseConv {
    fn eq(&self, other: &Self) -> bool {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        self.geometry == other.geometry
            && bits(&self.kernel) == bits(&other.kernel)
            && bits(&self.bias) == bits(&other.bias)
    }
}

impl Eq for DepthwiseConv {}

impl DepthwiseConv {
    /// The op for `conv` applied to `inputs` in `model`, or `None` when `conv` is not a
    /// depthwise convolution this op computes.
    fn for_conv(conv: &Conv, model: &TypedModel, inputs: &[OutletId]) -> TractResult<Option<DepthwiseConv>> {
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
        let (channels, in_h, in_w) = (shape[1], shape[2], shape[3]);
        let Some(kernel) = k.konst.as_ref().filter(|k| k.datum_type() == DatumType::F32 && k.rank() == 4) else {
            return Ok(None);
        };
        let (kh, kw) = (kernel.shape()[2], kernel.shape()[3]);
        if kernel.shape()[0] != channels
            || kernel.shape()[1] != 1
            || conv.group != Some(channels)
            || conv.kernel_shape.as_deref().is_some_and(|s| s != [kh, kw])
            || kh == 0
            || kw == 0
            || pad_before[0] >= kh
            || pad_before[1] >= kw
            || pad_after[0] >= kh
            || pad_after[1] >= kw
            || in_h + pad_before[0] + pad_after[0] < kh
            || in_w + pad_before[1] + pad_after[1] < kw
        {
            return Ok(None);
        }
        let bias = match conv.bias_input {
            Some(_) => {
                let b = model.outlet_fact(inputs[2])?;
                match &b.konst {
                    Some(b) if b.datum_type() == DatumType::F32 && b.len() == channels => {
                        b.to_plain_array_view::<f32>()?.iter().copied().collect()
                    }
                    _ => return Ok(None),
                }
            }
            None => vec![0.0; channels],
        };
        let geometry = Geometry {
            channels,
            in_h,
            in_w,
            out_h: (in_h + pad_before[0] + pad_after[0] - kh) / strides[0] + 1,
            out_w: (in_w + pad_before[1] + pad_after[1] - kw) / strides[1] + 1,
            kh,
            kw,
            stride_h: strides[0],
            stride_w: strides[1],
            pad_top: pad_before[0],
            pad_left: pad_before[1],
        };
        let kernel = kernel.to_plain_array_view::<f32>()?.iter().copied().collect();
        Ok(Some(DepthwiseConv { geometry, kernel, bias }))
    }
}

impl Op for DepthwiseConv {
    fn name(&self) -> StaticName {
        "DepthwiseConvRows".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let g = &self.geometry;
        Ok(vec![format!(
            "{}x{} kernel, stride {}x{}, padding {}x{}, {} channels",
            g.kh, g.kw, g.stride_h, g.stride_w, g.pad_top, g.pad_left, g.channels
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
        let g = self.geometry;
        let shape = x.shape();
        ensure!(
            shape.len() == 4 && shape[1..] == [g.channels, g.in_h, g.in_w],
            "depthwise input {:?} for {} channels of {}x{}",
            shape,
            g.channels,
            g.in_h,
            g.in_w
        );
        let batch = shape[0];
        let x = x.to_plain_array_view::<f32>()?;
        let x = x.as_slice().context("depthwise input is not contiguous")?;
        let mut y = Tensor::zero::<f32>(&[batch, g.channels, g.out_h, g.out_w])?;
        {
            let mut view = y.try_as_plain_ram_mut()?;
            let y = view.as_slice_mut::<f32>()?;
            let (in_plane, out_plane, taps) = (g.in_h * g.in_w, g.out_h * g.out_w, g.kh * g.kw);
            let mut scratch = Scratch::new(&g);
            for (n, (input, output)) in x.chunks_exact(in_plane).zip(y.chunks_exact_mut(out_plane)).enumerate() {
                let c = n % g.channels;
                planes(&g, input, output, &self.kernel[c * taps..][..taps], self.bias[c], &mut scratch);
            }
        }
        Ok(tvec!(y.into_tvalue()))
    }
}

impl TypedOp for DepthwiseConv {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let g = &self.geometry;
        let n = inputs[0].shape[0].clone();
        Ok(tvec!(f32::fact([n, g.channels.into(), g.out_h.into(), g.out_w.into()])))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let g = &self.geometry;
        let macs = g.channels * g.out_h * g.out_w * g.kh * g.kw;
        Ok(tvec!((Cost::FMA(DatumType::F32), inputs[0].shape[0].clone() * macs)))
    }

    as_op!();
}

/// A plane's input rows laid out for the row passes: each row zero-padded on the left by the
/// padding and on the right far enough for every tap. Output column `ox` of tap `kx` then
/// reads padded value `ox * stride + kx`, with no edge cases inside the passes.
struct Scratch {
    /// Values in a padded row: `(out_w - 1) * stride_w + kw`, every value a tap can read.
    row_w: usize,
    /// `in_h` padded rows.
    rows: Vec<f32>,
    /// A row of zeros, read by taps that fall in the top or bottom padding.
    zeros: Vec<f32>,
}

impl Scratch {
    fn new(g: &Geometry) -> Scratch {
        let row_w = (g.out_w - 1) * g.stride_w + g.kw;
        Scratch { row_w, rows: vec![0.0; g.in_h * row_w], zeros: vec![0.0; row_w] }
    }

    fn fill(&mut self, g: &Geometry, input: &[f32]) {
        for (row, padded) in input.chunks_exact(g.in_w).zip(self.rows.chunks_exact_mut(self.row_w)) {
            padded[..g.pad_left].fill(0.0);
            let copied = g.in_w.min(self.row_w - g.pad_left);
            padded[g.pad_left..g.pad_left + copied].copy_from_slice(&row[..copied]);
            padded[g.pad_left + copied..].fill(0.0);
        }
    }

    /// The values tap `(ky, kx)` reads for output row `oy` (every `stride_w`-th one, from the
    /// first), or zeros when the tap's input row is padding.
    fn tap(&self, g: &Geometry, oy: usize, ky: usize, kx: usize) -> &[f32] {
        let len = (g.out_w - 1) * g.stride_w + 1;
        match (oy * g.stride_h + ky).checked_sub(g.pad_top).filter(|&iy| iy < g.in_h) {
            Some(iy) => {
                let start = iy * self.row_w + kx;
                &self.rows[start..start + len]
            }
            None => &self.zeros[..len],
        }
    }
}

/// One plane, through the widest vector code the CPU runs.
fn planes(g: &Geometry, input: &[f32], output: &mut [f32], kernel: &[f32], bias: f32, scratch: &mut Scratch) {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { plane_avx512(g, input, output, kernel, bias, scratch) };
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: as above.
            return unsafe { plane_avx2(g, input, output, kernel, bias, scratch) };
        }
    }
    plane::<false>(g, input, output, kernel, bias, scratch);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
fn plane_avx512(g: &Geometry, input: &[f32], output: &mut [f32], kernel: &[f32], bias: f32, scratch: &mut Scratch) {
    plane::<true>(g, input, output, kernel, bias, scratch);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn plane_avx2(g: &Geometry, input: &[f32], output: &mut [f32], kernel: &[f32], bias: f32, scratch: &mut Scratch) {
    plane::<true>(g, input, output, kernel, bias, scratch);
}

/// `output = bias + Σ kernel[ky][kx] · input[oy·sh + ky − pt][ox·sw + kx − pl]`, out-of-range
/// input values being zero. `FMA` selects fused multiply-adds (only where the CPU has them:
/// elsewhere `mul_add` is a library call). A 3x3 kernel runs as one pass per output row over
/// its nine taps; other sizes as one pass per tap.
#[inline(always)]
fn plane<const FMA: bool>(
    g: &Geometry,
    input: &[f32],
    output: &mut [f32],
    kernel: &[f32],
    bias: f32,
    scratch: &mut Scratch,
) {
    scratch.fill(g, input);
    let scratch = &*scratch;
    for (oy, out_row) in output.chunks_exact_mut(g.out_w).enumerate() {
        if g.kh == 3 && g.kw == 3 && g.stride_w <= 2 {
            let taps: [&[f32]; 9] = std::array::from_fn(|t| scratch.tap(g, oy, t / 3, t % 3));
            let weights: [f32; 9] = std::array::from_fn(|t| kernel[t]);
            if g.stride_w == 1 {
                nine_taps::<FMA, 1>(out_row, taps, weights, bias);
            } else {
                nine_taps::<FMA, 2>(out_row, taps, weights, bias);
            }
            continue;
        }
        out_row.fill(bias);
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let weight = kernel[ky * g.kw + kx];
                for (o, &i) in out_row.iter_mut().zip(scratch.tap(g, oy, ky, kx).iter().step_by(g.stride_w)) {
                    *o = if FMA { i.mul_add(weight, *o) } else { *o + i * weight };
                }
            }
        }
    }
}

/// `out[i] = bias + Σ_t weights[t] · taps[t][i · S]`, every tap `(out.len() - 1) · S + 1` long.
#[inline(always)]
fn nine_taps<const FMA: bool, const S: usize>(out: &mut [f32], taps: [&[f32]; 9], weights: [f32; 9], bias: f32) {
    let n = out.len();
    if n == 0 {
        return;
    }
    let [t0, t1, t2, t3, t4, t5, t6, t7, t8] = taps.map(|t| &t[..(n - 1) * S + 1]);
    let [w0, w1, w2, w3, w4, w5, w6, w7, w8] = weights;
    let step = |acc: f32, v: f32, w: f32| if FMA { v.mul_add(w, acc) } else { acc + v * w };
    for i in 0..n {
        let mut acc = bias;
        acc = step(acc, t0[i * S], w0);
        acc = step(acc, t1[i * S], w1);
        acc = step(acc, t2[i * S], w2);
        acc = step(acc, t3[i * S], w3);
        acc = step(acc, t4[i * S], w4);
        acc = step(acc, t5[i * S], w5);
        acc = step(acc, t6[i * S], w6);
        acc = step(acc, t7[i * S], w7);
        acc = step(acc, t8[i * S], w8);
        out[i] = acc;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition, in f64.
    fn reference(g: &Geometry, batch: usize, x: &[f32], kernel: &[f32], bias: &[f32]) -> Vec<f32> {
        let mut y = Vec::with_capacity(batch * g.channels * g.out_h * g.out_w);
        for n in 0..batch {
            for c in 0..g.channels {
                for oy in 0..g.out_h {
                    for ox in 0..g.out_w {
                        let mut acc = f64::from(bias[c]);
                        for ky in 0..g.kh {
                            for kx in 0..g.kw {
                                let iy = (oy * g.stride_h + ky) as isize - g.pad_top as isize;
                                let ix = (ox * g.stride_w + kx) as isize - g.pad_left as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < g.in_h && (ix as usize) < g.in_w {
                                    let xi = ((n * g.channels + c) * g.in_h + iy as usize) * g.in_w + ix as usize;
                                    acc += f64::from(x[xi]) * f64::from(kernel[(c * g.kh + ky) * g.kw + kx]);
                                }
                            }
                        }
                        y.push(acc as f32);
                    }
                }
            }
        }
        y
    }

    /// An ONNX graph of one `Conv` node with an initializer kernel and bias.
    fn model(
        x_shape: [i64; 4],
        kernel: (&[i64], &[f32]),
        bias: &[f32],
        attributes: Vec<tract_onnx::pb::AttributeProto>,
    ) -> tract_onnx::pb::ModelProto {
        use tract_onnx::pb::{tensor_proto::DataType, GraphProto, ModelProto, OperatorSetIdProto, TensorProto};
        let tensor = |name: &str, dims: &[i64], values: &[f32]| TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: DataType::Float as i32,
            float_data: values.to_vec(),
            ..Default::default()
        };
        let graph = GraphProto {
            node: vec![NodeProto {
                op_type: "Conv".into(),
                input: vec!["x".into(), "k".into(), "b".into()],
                output: vec!["y".into()],
                attribute: attributes,
                ..Default::default()
            }],
            input: vec![super::super::tests::value_info("x", Some(&x_shape))],
            output: vec![super::super::tests::value_info("y", None)],
            initializer: vec![tensor("k", kernel.0, kernel.1), tensor("b", &[bias.len() as i64], bias)],
            ..Default::default()
        };
        ModelProto {
            graph: Some(graph),
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }],
            ..Default::default()
        }
    }

    fn ints(name: &str, values: &[i64]) -> tract_onnx::pb::AttributeProto {
        tract_onnx::pb::AttributeProto {
            name: name.into(),
            ints: values.to_vec(),
            r#type: tract_onnx::pb::attribute_proto::AttributeType::Ints as i32,
            ..Default::default()
        }
    }

    fn int(name: &str, value: i64) -> tract_onnx::pb::AttributeProto {
        tract_onnx::pb::AttributeProto {
            name: name.into(),
            i: value,
            r#type: tract_onnx::pb::attribute_proto::AttributeType::Int as i32,
            ..Default::default()
        }
    }

    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Through the parser, against the definition, for the geometries the op takes: the
        /// graph is planned with [`DepthwiseConv`], and the same convolution with two groups
        /// fewer than channels (not depthwise) stays tract's.
        #[test]
        fn depthwise_convolutions_match_the_definition(
            batch in 1usize..3,
            channels in 1usize..5,
            in_h in 1usize..12,
            in_w in 1usize..40,
            kh in 1usize..4,
            kw in 1usize..4,
            stride_h in 1usize..4,
            stride_w in 1usize..4,
            pads in prop::array::uniform4(0usize..3),
            seed in any::<u64>(),
        ) {
            let [pt, pl, pb, pr] = pads;
            prop_assume!(pt < kh && pb < kh && pl < kw && pr < kw);
            prop_assume!(in_h + pt + pb >= kh && in_w + pl + pr >= kw);
            let g = Geometry {
                channels, in_h, in_w,
                out_h: (in_h + pt + pb - kh) / stride_h + 1,
                out_w: (in_w + pl + pr - kw) / stride_w + 1,
                kh, kw, stride_h, stride_w, pad_top: pt, pad_left: pl,
            };
            let x = values(batch * channels * in_h * in_w, seed);
            let kernel = values(channels * kh * kw, seed ^ 1);
            let bias = values(channels, seed ^ 2);
            let attributes = vec![
                int("group", channels as i64),
                ints("kernel_shape", &[kh as i64, kw as i64]),
                ints("strides", &[stride_h as i64, stride_w as i64]),
                ints("pads", &[pt as i64, pl as i64, pb as i64, pr as i64]),
            ];
            let model = model([batch as i64, channels as i64, in_h as i64, in_w as i64], (&[channels as i64, 1, kh as i64, kw as i64], &kernel), &bias, attributes);
            let input = Tensor::from_shape(&[batch, channels, in_h, in_w], &x).expect("tensor");
            let (y, ops) = super::super::tests::run(&model, tvec!(input.into_tvalue()));
            prop_assert!(ops.iter().any(|o| o == "DepthwiseConvRows"), "{:?}", ops);
            let expected = reference(&g, batch, &x, &kernel, &bias);
            prop_assert_eq!(y.len(), expected.len());
            for (i, (a, b)) in y.iter().zip(&expected).enumerate() {
                prop_assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "at {}: {} vs {}", i, a, b);
            }
        }
    }

    #[test]
    fn other_convolutions_stay_tracts() {
        // Two channels in one group: an ordinary convolution.
        let kernel = values(2 * 2 * 3 * 3, 7);
        let grouped = model([1, 2, 5, 6], (&[2, 2, 3, 3], &kernel), &[0.5, -0.5], vec![ints("pads", &[1, 1, 1, 1])]);
        let x = values(2 * 5 * 6, 8);
        let input = Tensor::from_shape(&[1, 2, 5, 6], &x).expect("tensor");
        let (y, ops) = super::super::tests::run(&grouped, tvec!(input.into_tvalue()));
        assert!(!ops.iter().any(|o| o == "DepthwiseConvRows"), "{ops:?}");
        assert_eq!(y.len(), 2 * 5 * 6);
        // Dilated depthwise: tract's.
        let kernel = values(2 * 3 * 3, 9);
        let dilated = model(
            [1, 2, 7, 7],
            (&[2, 1, 3, 3], &kernel),
            &[0.0, 0.0],
            vec![int("group", 2), ints("dilations", &[2, 2]), ints("pads", &[2, 2, 2, 2])],
        );
        let input = Tensor::from_shape(&[1, 2, 7, 7], &values(2 * 7 * 7, 10)).expect("tensor");
        let (_, ops) = super::super::tests::run(&dilated, tvec!(input.into_tvalue()));
        assert!(!ops.iter().any(|o| o == "DepthwiseConvRows"), "{ops:?}");
    }
}
