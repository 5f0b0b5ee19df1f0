//! Resizing packed 8-bit RGB frames into `f32` model inputs. Pure functions.

use crate::VisionError;

/// Checks that `rgb` holds exactly `w * h` packed RGB pixels.
pub fn check_rgb(rgb: &[u8], w: u32, h: u32) -> Result<(), VisionError> {
    let expected = (w as usize).checked_mul(h as usize).and_then(|n| n.checked_mul(3));
    if w == 0 || h == 0 || expected != Some(rgb.len()) {
        return Err(VisionError::BadImage { got: rgb.len(), w, h });
    }
    Ok(())
}

/// Bilinear resize of a `w` x `h` packed RGB image to `out_w` x `out_h`, written as NHWC `f32`
/// into `out` (length `out_w * out_h * 3`) after mapping every sample through `map`.
///
/// Sampling uses pixel centres (`src = (dst + 0.5) * scale - 0.5`, clamped at the borders),
/// the convention of OpenCV's `INTER_LINEAR` that the detector was trained with.
///
/// # Errors
/// [`VisionError::BadImage`] when `rgb` is not `w * h * 3` bytes or `out` has the wrong length.
pub fn resize_into(
    rgb: &[u8],
    w: u32,
    h: u32,
    out_w: u32,
    out_h: u32,
    out: &mut [f32],
    map: impl Fn(f32) -> f32,
) -> Result<(), VisionError> {
    check_rgb(rgb, w, h)?;
    if out_w == 0 || out_h == 0 || out.len() != out_w as usize * out_h as usize * 3 {
        return Err(VisionError::BadImage { got: out.len() / 3, w: out_w, h: out_h });
    }
    let (w, h) = (w as usize, h as usize);
    let taps = |n_out: u32, n_in: usize| -> Vec<(usize, usize, f32)> {
        let scale = n_in as f32 / n_out as f32;
        (0..n_out)
            .map(|d| {
                let s = ((d as f32 + 0.5) * scale - 0.5).max(0.0);
                let i0 = (s.floor() as usize).min(n_in - 1);
                let i1 = (i0 + 1).min(n_in - 1);
                (i0, i1, s - i0 as f32)
            })
            .collect()
    };
    let xs = taps(out_w, w);
    let ys = taps(out_h, h);
    let mut o = 0;
    for &(y0, y1, fy) in &ys {
        let row0 = &rgb[y0 * w * 3..(y0 + 1) * w * 3];
        let row1 = &rgb[y1 * w * 3..(y1 + 1) * w * 3];
        for &(x0, x1, fx) in &xs {
            for c in 0..3 {
                let p00 = f32::from(row0[x0 * 3 + c]);
                let p01 = f32::from(row0[x1 * 3 + c]);
                let p10 = f32::from(row1[x0 * 3 + c]);
                let p11 = f32::from(row1[x1 * 3 + c]);
                let top = p00 + (p01 - p00) * fx;
                let bottom = p10 + (p11 - p10) * fx;
                out[o] = map(top + (bottom - top) * fy);
                o += 1;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn identity_size_keeps_pixels() {
        let rgb: Vec<u8> = (0..2 * 2 * 3).map(|i| i as u8 * 10).collect();
        let mut out = vec![0.0; 12];
        resize_into(&rgb, 2, 2, 2, 2, &mut out, |x| x).expect("valid");
        let back: Vec<u8> = out.iter().map(|&x| x as u8).collect();
        assert_eq!(back, rgb);
    }

    #[test]
    fn downscaling_by_two_averages_pairs() {
        // One row of four grey pixels 0, 100, 200, 250 -> two pixels at 50 and 225.
        let rgb: Vec<u8> = [0u8, 100, 200, 250].iter().flat_map(|&v| [v, v, v]).collect();
        let mut out = vec![0.0; 6];
        resize_into(&rgb, 4, 1, 2, 1, &mut out, |x| x).expect("valid");
        assert_eq!(out, vec![50.0, 50.0, 50.0, 225.0, 225.0, 225.0]);
    }

    #[test]
    fn bad_buffers_are_refused() {
        let mut out = vec![0.0; 3];
        assert!(resize_into(&[0; 5], 1, 2, 1, 1, &mut out, |x| x).is_err());
        assert!(resize_into(&[0; 3], 1, 1, 1, 2, &mut out, |x| x).is_err());
        assert!(resize_into(&[], 0, 0, 1, 1, &mut out, |x| x).is_err());
    }

    proptest! {
        #[test]
        fn resized_values_stay_within_the_input_range(
            w in 1u32..20, h in 1u32..20, ow in 1u32..20, oh in 1u32..20, seed in any::<u64>(),
        ) {
            let mut state = seed;
            let rgb: Vec<u8> = (0..w * h * 3).map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (state >> 56) as u8
            }).collect();
            let (lo, hi) = (f32::from(*rgb.iter().min().unwrap_or(&0)), f32::from(*rgb.iter().max().unwrap_or(&0)));
            let mut out = vec![0.0; (ow * oh * 3) as usize];
            resize_into(&rgb, w, h, ow, oh, &mut out, |x| x).expect("valid sizes");
            prop_assert!(out.iter().all(|&v| v >= lo - 1e-3 && v <= hi + 1e-3));
        }
    }
}
