//! SSD post-processing (TensorFlow Object Detection API conventions): anchor generation,
//! box decoding and non-maximum suppression. Pure functions.
//!
//! The detector graph is cut before its post-processor, so the raw box codes and class logits
//! come out of the network and are decoded here against the anchors the TF API's
//! `ssd_anchor_generator` would build: `num_layers` square feature maps, scales spaced
//! linearly from `min_scale` to `max_scale`, aspect ratios {1, 2, 1/2, 3, 1/3} plus one
//! interpolated scale at ratio 1, and only three boxes in the lowest layer.

/// A box in normalised image coordinates `[ymin, xmin, ymax, xmax]` (TF order), 0..1.
pub type NormBox = [f32; 4];

/// An anchor as centre and size, normalised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Anchor {
    /// Centre y.
    pub cy: f32,
    /// Centre x.
    pub cx: f32,
    /// Height.
    pub h: f32,
    /// Width.
    pub w: f32,
}

/// Parameters of `ssd_anchor_generator`.
#[derive(Debug, Clone, PartialEq)]
pub struct AnchorConfig {
    /// Side of each layer's square feature map, lowest layer first.
    pub feature_maps: Vec<u32>,
    /// Scale of the lowest layer.
    pub min_scale: f32,
    /// Scale of the highest layer.
    pub max_scale: f32,
    /// Aspect ratios (width / height) of every layer but the lowest.
    pub aspect_ratios: Vec<f32>,
}

impl AnchorConfig {
    /// SSDLite MobileNet at 300x300 (six layers: 19, 10, 5, 3, 2, 1): 1,917 anchors.
    pub fn ssdlite_300() -> AnchorConfig {
        AnchorConfig {
            feature_maps: vec![19, 10, 5, 3, 2, 1],
            min_scale: 0.2,
            max_scale: 0.95,
            aspect_ratios: vec![1.0, 2.0, 0.5, 3.0, 1.0 / 3.0],
        }
    }
}

/// The anchors, in the order the network emits its box codes: layer by layer, then row,
/// column and box spec.
pub fn anchors(config: &AnchorConfig) -> Vec<Anchor> {
    let layers = config.feature_maps.len();
    let mut scales: Vec<f32> = (0..layers)
        .map(|i| {
            if layers == 1 {
                config.min_scale
            } else {
                config.min_scale + (config.max_scale - config.min_scale) * i as f32 / (layers - 1) as f32
            }
        })
        .collect();
    scales.push(1.0);
    let mut out = Vec::new();
    for (layer, &side) in config.feature_maps.iter().enumerate() {
        let (scale, next) = (scales[layer], scales[layer + 1]);
        let specs: Vec<(f32, f32)> = if layer == 0 {
            vec![(0.1, 1.0), (scale, 2.0), (scale, 0.5)]
        } else {
            let mut specs: Vec<(f32, f32)> = config.aspect_ratios.iter().map(|&ar| (scale, ar)).collect();
            specs.push(((scale * next).sqrt(), 1.0));
            specs
        };
        let stride = 1.0 / side as f32;
        for row in 0..side {
            for col in 0..side {
                for &(s, ar) in &specs {
                    let root = ar.sqrt();
                    out.push(Anchor {
                        cy: (row as f32 + 0.5) * stride,
                        cx: (col as f32 + 0.5) * stride,
                        h: s / root,
                        w: s * root,
                    });
                }
            }
        }
    }
    out
}

/// Scale factors of the Faster R-CNN box coder (y, x, h, w).
pub const BOX_CODER_SCALES: [f32; 4] = [10.0, 10.0, 5.0, 5.0];

/// Decodes one box code `[ty, tx, th, tw]` against its anchor.
pub fn decode_box(code: [f32; 4], anchor: &Anchor) -> NormBox {
    let [sy, sx, sh, sw] = BOX_CODER_SCALES;
    let cy = code[0] / sy * anchor.h + anchor.cy;
    let cx = code[1] / sx * anchor.w + anchor.cx;
    // Clamp the exponent so a wild code cannot overflow to infinity.
    let h = (code[2] / sh).clamp(-10.0, 10.0).exp() * anchor.h;
    let w = (code[3] / sw).clamp(-10.0, 10.0).exp() * anchor.w;
    [cy - h / 2.0, cx - w / 2.0, cy + h / 2.0, cx + w / 2.0]
}

/// The logistic function.
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Intersection over union of two boxes (any consistent corner order `[a0, b0, a1, b1]`).
pub fn iou(a: &NormBox, b: &NormBox) -> f32 {
    let inter_h = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let inter_w = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = inter_h * inter_w;
    let area = |r: &NormBox| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

/// Greedy non-maximum suppression: keeps the highest-scoring boxes, dropping any box whose
/// IoU with a kept one exceeds `max_iou`; at most `max_out` are kept. Input in any order.
pub fn nms(mut boxes: Vec<(NormBox, f32)>, max_iou: f32, max_out: usize) -> Vec<(NormBox, f32)> {
    boxes.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut kept: Vec<(NormBox, f32)> = Vec::new();
    for candidate in boxes {
        if kept.len() >= max_out {
            break;
        }
        if kept.iter().all(|k| iou(&k.0, &candidate.0) <= max_iou) {
            kept.push(candidate);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssdlite_300_has_1917_anchors_in_tf_order() {
        let a = anchors(&AnchorConfig::ssdlite_300());
        assert_eq!(a.len(), 1917);
        // Lowest layer, first cell: the small square box, then 2:1 and 1:2 at scale 0.2.
        let c = 0.5 / 19.0;
        assert_eq!(a[0], Anchor { cy: c, cx: c, h: 0.1, w: 0.1 });
        assert!((a[1].w / a[1].h - 2.0).abs() < 1e-5 && (a[1].w * a[1].h - 0.04).abs() < 1e-6);
        assert!((a[2].h / a[2].w - 2.0).abs() < 1e-5);
        // Second cell of the lowest layer moves right.
        assert!((a[3].cx - 1.5 / 19.0).abs() < 1e-6 && a[3].cy == c);
        // The last anchor is the top layer's interpolated box, centred, scale sqrt(0.95 * 1).
        let last = a[1916];
        assert_eq!((last.cx, last.cy), (0.5, 0.5));
        assert!((last.h - 0.95f32.sqrt()).abs() < 1e-6);
    }

    #[test]
    fn a_zero_code_decodes_to_its_anchor() {
        let anchor = Anchor { cy: 0.5, cx: 0.25, h: 0.2, w: 0.1 };
        let b = decode_box([0.0; 4], &anchor);
        let expected = [0.4, 0.2, 0.6, 0.3];
        for (x, y) in b.iter().zip(expected) {
            assert!((x - y).abs() < 1e-6);
        }
        // Shifting ty by 10 moves the centre by one anchor height.
        let moved = decode_box([10.0, 0.0, 0.0, 0.0], &anchor);
        assert!((moved[0] - 0.6).abs() < 1e-6);
        // Absurd size codes stay finite.
        assert!(decode_box([0.0, 0.0, 1e9, -1e9], &anchor).iter().all(|v| v.is_finite()));
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes() {
        let boxes = vec![([0.0, 0.0, 1.0, 1.0], 0.6), ([0.0, 0.0, 1.0, 0.95], 0.9), ([2.0, 2.0, 3.0, 3.0], 0.5)];
        let kept = nms(boxes, 0.5, 10);
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].1, 0.9);
        assert_eq!(kept[1].1, 0.5);
        assert_eq!(nms(vec![([0.0, 0.0, 1.0, 1.0], 0.1); 5], 0.5, 1).len(), 1);
    }
}
