//! Geometry on packed RGB frames: affine sampling into planar (NCHW) model inputs, and the
//! 5-point similarity alignment of a face to the 112x112 ArcFace template. Pure functions.
//!
//! Coordinates are pixel indices (pixel `(x, y)` has its centre at `(x, y)`), the convention
//! of OpenCV's `warpAffine`, in which the template was defined.

use crate::image::check_rgb;
use crate::VisionError;

/// An affine map `(x, y) -> (a x + b y + c, d x + e y + f)`, stored as `[a, b, c, d, e, f]`.
pub type Affine = [f64; 6];

/// The standard 5-point template of 112x112 aligned faces (ArcFace / insightface): left eye,
/// right eye, nose tip, left mouth corner, right mouth corner, as seen in the image.
pub const ARCFACE_112: [[f64; 2]; 5] =
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]];

/// The inverse of an affine map, or `None` when it is singular.
pub fn invert(m: &Affine) -> Option<Affine> {
    let det = m[0] * m[4] - m[1] * m[3];
    if !det.is_finite() || det.abs() < 1e-12 {
        return None;
    }
    let (a, b, d, e) = (m[4] / det, -m[1] / det, -m[3] / det, m[0] / det);
    Some([a, b, -(a * m[2] + b * m[5]), d, e, -(d * m[2] + e * m[5])])
}

/// Applies `m` to a point.
pub fn apply(m: &Affine, p: [f64; 2]) -> [f64; 2] {
    [m[0] * p[0] + m[1] * p[1] + m[2], m[3] * p[0] + m[4] * p[1] + m[5]]
}

/// The least-squares similarity transform (rotation, uniform scale, translation; no
/// reflection) taking `src` to `dst` (Umeyama, 1991), or `None` for degenerate points.
pub fn similarity(src: &[[f64; 2]], dst: &[[f64; 2]]) -> Option<Affine> {
    let n = src.len();
    if n < 2 || n != dst.len() || src.iter().chain(dst).any(|p| !p[0].is_finite() || !p[1].is_finite()) {
        return None;
    }
    let mean = |ps: &[[f64; 2]]| {
        let (sx, sy) = ps.iter().fold((0.0, 0.0), |(x, y), p| (x + p[0], y + p[1]));
        [sx / n as f64, sy / n as f64]
    };
    let (ms, md) = (mean(src), mean(dst));
    // For a similarity in 2-D the closed form reduces to two sums over centred points.
    let (mut dot, mut cross, mut var) = (0.0, 0.0, 0.0);
    for (s, d) in src.iter().zip(dst) {
        let (sx, sy, dx, dy) = (s[0] - ms[0], s[1] - ms[1], d[0] - md[0], d[1] - md[1]);
        dot += sx * dx + sy * dy;
        cross += sx * dy - sy * dx;
        var += sx * sx + sy * sy;
    }
    if var < 1e-9 {
        return None;
    }
    // scale * cos(theta), scale * sin(theta)
    let (a, b) = (dot / var, cross / var);
    Some([a, -b, md[0] - (a * ms[0] - b * ms[1]), b, a, md[1] - (b * ms[0] + a * ms[1])])
}

/// Samples a `w` x `h` packed RGB image through `dst_to_src` into `out`, a planar
/// `3 x out_h x out_w` buffer (channel planes R, G, B), bilinearly, with black outside the
/// image; every sample goes through `map`. Only the region `region_w` x `region_h` at the
/// top left of each plane is written (the rest keeps its value: padding).
///
/// # Errors
/// [`VisionError::BadImage`] when `rgb` or `out` has the wrong size.
#[allow(clippy::too_many_arguments)]
pub fn warp_planar(
    rgb: &[u8],
    w: u32,
    h: u32,
    dst_to_src: &Affine,
    out: &mut [f32],
    out_w: u32,
    out_h: u32,
    region: (u32, u32),
    map: impl Fn(f32) -> f32,
) -> Result<(), VisionError> {
    check_rgb(rgb, w, h)?;
    let plane = out_w as usize * out_h as usize;
    if out_w == 0 || out_h == 0 || out.len() != plane * 3 || region.0 > out_w || region.1 > out_h {
        return Err(VisionError::BadImage { got: out.len() / 3, w: out_w, h: out_h });
    }
    let m = dst_to_src;
    for oy in 0..region.1 as usize {
        for ox in 0..region.0 as usize {
            let [sx, sy] = apply(m, [ox as f64, oy as f64]);
            let px = bilinear(rgb, w, h, sx, sy);
            for (c, v) in px.into_iter().enumerate() {
                out[c * plane + oy * out_w as usize + ox] = map(v);
            }
        }
    }
    Ok(())
}

/// The bilinear sample of a packed RGB image at `(x, y)`, black outside the image. The
/// caller has checked the buffer's size.
pub fn bilinear(rgb: &[u8], w: u32, h: u32, x: f64, y: f64) -> [f32; 3] {
    let (wi, hi) = (i64::from(w), i64::from(h));
    let pixel = |px: i64, py: i64, c: usize| -> f32 {
        if px < 0 || py < 0 || px >= wi || py >= hi {
            0.0
        } else {
            rgb.get((py as usize * w as usize + px as usize) * 3 + c).map_or(0.0, |v| f32::from(*v))
        }
    };
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = ((x - x0) as f32, (y - y0) as f32);
    let (x0, y0) = (x0 as i64, y0 as i64);
    std::array::from_fn(|c| {
        let top = pixel(x0, y0, c) * (1.0 - fx) + pixel(x0 + 1, y0, c) * fx;
        let bottom = pixel(x0, y0 + 1, c) * (1.0 - fx) + pixel(x0 + 1, y0 + 1, c) * fx;
        top * (1.0 - fy) + bottom * fy
    })
}

/// The map from an output pixel of an `out_w` x `out_h` resize of the rectangle `[x1, y1,
/// x2, y2]` back to the source, sampling at pixel centres (like OpenCV's `resize`).
pub fn resize_map(rect: [f64; 4], out_w: u32, out_h: u32) -> Affine {
    let sx = (rect[2] - rect[0]) / f64::from(out_w);
    let sy = (rect[3] - rect[1]) / f64::from(out_h);
    [sx, 0.0, rect[0] + 0.5 * sx - 0.5, 0.0, sy, rect[1] + 0.5 * sy - 0.5]
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_template_aligns_to_itself() {
        let m = similarity(&ARCFACE_112, &ARCFACE_112).expect("non-degenerate");
        for (i, v) in [1.0, 0.0, 0.0, 0.0, 1.0, 0.0].iter().enumerate() {
            assert!((m[i] - v).abs() < 1e-9, "{m:?}");
        }
    }

    #[test]
    fn degenerate_points_have_no_alignment() {
        assert!(similarity(&[[1.0, 1.0]; 5], &ARCFACE_112).is_none());
        assert!(similarity(&[[f64::NAN, 1.0]; 5], &ARCFACE_112).is_none());
        assert!(invert(&[0.0; 6]).is_none());
    }

    #[test]
    fn identity_warp_copies_pixels_into_planes() {
        let rgb: Vec<u8> = (0..2 * 2 * 3).map(|i| i as u8).collect();
        let mut out = vec![0.0; 12];
        warp_planar(&rgb, 2, 2, &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0], &mut out, 2, 2, (2, 2), |x| x).expect("valid");
        assert_eq!(out, vec![0.0, 3.0, 6.0, 9.0, 1.0, 4.0, 7.0, 10.0, 2.0, 5.0, 8.0, 11.0]);
    }

    #[test]
    fn samples_outside_the_image_are_black_and_padding_is_kept() {
        let rgb = vec![200u8; 3];
        let mut out = vec![-1.0; 3 * 4];
        warp_planar(&rgb, 1, 1, &[1.0, 0.0, 5.0, 0.0, 1.0, 0.0], &mut out, 2, 2, (1, 1), |x| x).expect("valid");
        assert_eq!(out[0], 0.0);
        assert_eq!(out[1], -1.0);
        assert!(warp_planar(&rgb, 1, 1, &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0], &mut out, 2, 2, (3, 1), |x| x).is_err());
    }

    proptest! {
        #[test]
        fn a_known_similarity_is_recovered_and_inverted(
            angle in -3.1f64..3.1, scale in 0.2f64..5.0, tx in -300.0f64..300.0, ty in -300.0f64..300.0,
        ) {
            let (c, s) = (scale * angle.cos(), scale * angle.sin());
            let truth: Affine = [c, -s, tx, s, c, ty];
            let moved: Vec<[f64; 2]> = ARCFACE_112.iter().map(|&p| apply(&truth, p)).collect();
            let m = similarity(&ARCFACE_112, &moved).expect("non-degenerate");
            for i in 0..6 {
                prop_assert!((m[i] - truth[i]).abs() < 1e-6 * (1.0 + truth[i].abs()));
            }
            let back = invert(&m).expect("invertible");
            for p in ARCFACE_112 {
                let q = apply(&back, apply(&m, p));
                prop_assert!((q[0] - p[0]).abs() < 1e-6 && (q[1] - p[1]).abs() < 1e-6);
            }
        }
    }
}
