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

use tract_onnx::tract_hir::internal::*;
use zeroize::Zeroize;

use super::conv::{following_bound, Plain};
use super::simd::{self, Clamp};

/// A depthwise convolution of an `[N, C, H, W]` f32 input with zero padding.
#[derive(Debug, Clone)]
pub struct DepthwiseConv {
    geometry: Geometry,
    /// `[C, kh, kw]`.
    kernel: Vec<f32>,
    /// `[C]`.
    bias: Vec<f32>,
    /// A ReLU (or other bound) folded in from the next node.
    clamp: Clamp,
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
            && self.clamp == other.clamp
    }
}

impl Eq for DepthwiseConv {}

impl DepthwiseConv {
    /// The op for `conv` when it is depthwise (one group per input channel, one output channel
    /// per group).
    pub(super) fn for_plain(conv: &Plain) -> Option<DepthwiseConv> {
        let [channels, in_h, in_w] = conv.input;
        let [outputs, per_group, kh, kw] = conv.kernel_shape;
        if conv.group != channels || outputs != channels || per_group != 1 {
            return None;
        }
        let [out_h, out_w] = conv.output();
        let geometry = Geometry {
            channels,
            in_h,
            in_w,
            out_h,
            out_w,
            kh,
            kw,
            stride_h: conv.strides[0],
            stride_w: conv.strides[1],
            pad_top: conv.pad_before[0],
            pad_left: conv.pad_before[1],
        };
        Some(DepthwiseConv { geometry, kernel: conv.kernel.clone(), bias: conv.bias.clone(), clamp: Clamp::NONE })
    }
}

impl Op for DepthwiseConv {
    fn name(&self) -> StaticName {
        "DepthwiseConvPlanes".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let g = &self.geometry;
        Ok(vec![format!(
            "{}x{} kernel, stride {}x{}, padding {}x{}, {} channels, output within [{}, {}]",
            g.kh, g.kw, g.stride_h, g.stride_w, g.pad_top, g.pad_left, g.channels, self.clamp.lo, self.clamp.hi
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
        // SAFETY: `planes` writes every value of every output plane (each row in full, in
        // either of its two modes) before anything reads `y`.
        let mut y = unsafe { Tensor::uninitialized::<f32>(&[batch, g.channels, g.out_h, g.out_w])? };
        {
            let mut view = y.try_as_plain_ram_mut()?;
            self.planes(x, view.as_slice_mut::<f32>()?);
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

    fn declutter(&self, model: &TypedModel, node: &TypedNode) -> TractResult<Option<TypedModelPatch>> {
        match following_bound(model, node, self.clamp)? {
            Some(clamp) => {
                TypedModelPatch::fuse_with_next(model, node, DepthwiseConv { clamp, ..self.clone() }).map(Some)
            }
            None => Ok(None),
        }
    }

    as_op!();
}

/// Where a plane's input goes in the scratch buffer, and where each tap reads it.
///
/// The padded plane is split into `stride_h x stride_w` phase planes (phase `(ry, rx)` holds
/// padded values `[r * stride_h + ry][c * stride_w + rx]`), each `hq` rows of `wq` values. Tap
/// `(ky, kx)` of output `(oy, ox)` is then phase `(ky % sh, kx % sw)` at
/// `[oy + ky / sh][ox + kx / sw]`: with `j = oy * wq + ox`, every tap reads the scratch at a
/// fixed offset plus `j`, so a whole plane is one run over `j` (the last `wq - out_w` values of
/// each run of `wq` are discarded) or, for wide rows, one run per output row.
#[derive(Debug)]
struct Layout {
    /// Values per phase-plane row.
    wq: usize,
    /// The scratch's length: every phase plane, plus one zero row each for the tail reads.
    len: usize,
    /// Per tap, row-major over the kernel: where it reads output 0.
    offsets: Vec<usize>,
    /// `(scratch start, input start, count)`: the input runs (every `stride_w`-th value) the
    /// scratch takes from each plane; everything else in the scratch stays zero.
    copies: Vec<(usize, usize, usize)>,
    /// One run per output row straight into the output, rather than one run per plane into
    /// `flat` and a copy of each row.
    per_row: bool,
}

impl Layout {
    fn new(g: &Geometry) -> Layout {
        let (sh, sw) = (g.stride_h, g.stride_w);
        let wq = g.out_w + (g.kw - 1) / sw;
        let hq = g.out_h + (g.kh - 1) / sh + 1;
        let phase = hq * wq;
        let offsets = (0..g.kh * g.kw)
            .map(|t| {
                let (ky, kx) = (t / g.kw, t % g.kw);
                ((ky % sh) * sw + kx % sw) * phase + (ky / sh) * wq + kx / sw
            })
            .collect();
        let mut copies = Vec::new();
        for ry in 0..sh {
            for rx in 0..sw {
                // First phase column inside the input, and the input column it holds.
                let c0 = g.pad_left.saturating_sub(rx).div_ceil(sw);
                let ix0 = c0 * sw + rx - g.pad_left;
                if c0 >= wq || ix0 >= g.in_w {
                    continue;
                }
                let count = (wq - c0).min((g.in_w - ix0 - 1) / sw + 1);
                for r in 0..hq {
                    if let Some(iy) = (r * sh + ry).checked_sub(g.pad_top).filter(|&iy| iy < g.in_h) {
                        copies.push(((ry * sw + rx) * phase + r * wq + c0, iy * g.in_w + ix0, count));
                    }
                }
            }
        }
        Layout { wq, len: sh * sw * phase, offsets, copies, per_row: g.out_w >= 128 }
    }
}

impl DepthwiseConv {
    /// `y = clamp(bias + Σ kernel[ky][kx] · x[oy·sh + ky − pt][ox·sw + kx − pl])` per plane,
    /// out-of-range input values being zero.
    fn planes(&self, x: &[f32], y: &mut [f32]) {
        let g = &self.geometry;
        let layout = Layout::new(g);
        let mut scratch = vec![0.0f32; layout.len];
        let mut flat = vec![0.0f32; if layout.per_row { 0 } else { g.out_h * layout.wq }];
        let (in_plane, out_plane, taps) = (g.in_h * g.in_w, g.out_h * g.out_w, g.kh * g.kw);
        for (n, (input, output)) in x.chunks_exact(in_plane).zip(y.chunks_exact_mut(out_plane)).enumerate() {
            let c = n % g.channels;
            let (weights, bias) = (&self.kernel[c * taps..][..taps], self.bias[c]);
            for &(to, from, count) in &layout.copies {
                simd::strided_copy(&mut scratch[to..to + count], &input[from..], g.stride_w);
            }
            if layout.per_row {
                for (oy, row) in output.chunks_exact_mut(g.out_w).enumerate() {
                    simd::taps(row, &scratch[oy * layout.wq..], &layout.offsets, weights, bias, self.clamp);
                }
            } else {
                simd::taps(&mut flat, &scratch, &layout.offsets, weights, bias, self.clamp);
                for (row, run) in output.chunks_exact_mut(g.out_w).zip(flat.chunks_exact(layout.wq)) {
                    row.copy_from_slice(&run[..g.out_w]);
                }
            }
        }
        scratch.zeroize();
        flat.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::values;
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
        let mut node = vec![NodeProto {
            op_type: "Conv".into(),
            input: vec!["x".into(), "k".into(), "b".into()],
            output: vec!["y".into()],
            attribute: attributes,
            ..Default::default()
        }];
        if relu {
            node[0].output = vec!["z".into()];
            node.push(NodeProto {
                op_type: "Relu".into(),
                input: vec!["z".into()],
                output: vec!["y".into()],
                ..Default::default()
            });
        }
        let graph = GraphProto {
            node,
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
            relu in any::<bool>(),
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
            let model = model([batch as i64, channels as i64, in_h as i64, in_w as i64], (&[channels as i64, 1, kh as i64, kw as i64], &kernel), &bias, attributes, relu);
            let input = Tensor::from_shape(&[batch, channels, in_h, in_w], &x).expect("tensor");
            let (y, ops) = super::super::tests::run(&model, tvec!(input.into_tvalue()));
            prop_assert!(ops.iter().any(|o| o == "DepthwiseConvPlanes"), "{:?}", ops);
            // A ReLU after the convolution is folded into it: the input and one node.
            prop_assert!(!relu || ops.len() == 2, "{:?}", ops);
            let mut expected = reference(&g, batch, &x, &kernel, &bias);
            if relu {
                expected.iter_mut().for_each(|v| *v = v.max(0.0));
            }
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
        let grouped =
            model([1, 2, 5, 6], (&[2, 2, 3, 3], &kernel), &[0.5, -0.5], vec![ints("pads", &[1, 1, 1, 1])], false);
        let x = values(2 * 5 * 6, 8);
        let input = Tensor::from_shape(&[1, 2, 5, 6], &x).expect("tensor");
        let (y, ops) = super::super::tests::run(&grouped, tvec!(input.into_tvalue()));
        assert!(!ops.iter().any(|o| o == "DepthwiseConvPlanes"), "{ops:?}");
        assert_eq!(y.len(), 2 * 5 * 6);
        // Dilated depthwise: tract's.
        let kernel = values(2 * 3 * 3, 9);
        let dilated = model(
            [1, 2, 7, 7],
            (&[2, 1, 3, 3], &kernel),
            &[0.0, 0.0],
            vec![int("group", 2), ints("dilations", &[2, 2]), ints("pads", &[2, 2, 2, 2])],
            false,
        );
        let input = Tensor::from_shape(&[1, 2, 7, 7], &values(2 * 7 * 7, 10)).expect("tensor");
        let (_, ops) = super::super::tests::run(&dilated, tvec!(input.into_tvalue()));
        assert!(!ops.iter().any(|o| o == "DepthwiseConvPlanes"), "{ops:?}");
    }
}
