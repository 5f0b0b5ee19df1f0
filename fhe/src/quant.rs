//! Quantisation of L2-normalised embeddings to small signed integers.

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::Params;

/// A quantised embedding. Zeroized when dropped: it is biometric data.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct QuantizedVector(Vec<i8>);

impl std::fmt::Debug for QuantizedVector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the values (invariant 1).
        write!(f, "QuantizedVector(dim={})", self.0.len())
    }
}

impl QuantizedVector {
    /// The coefficients.
    pub fn as_slice(&self) -> &[i8] {
        &self.0
    }

    /// Builds a vector from coefficients already in range (for tests and benchmarks).
    pub fn from_coefficients(coefficients: Vec<i8>) -> QuantizedVector {
        QuantizedVector(coefficients)
    }
}

/// The plaintext reference: the integer inner product the encrypted computation must equal.
pub fn plain_score(a: &QuantizedVector, b: &QuantizedVector) -> i32 {
    a.0.iter().zip(&b.0).map(|(&x, &y)| i32::from(x) * i32::from(y)).sum()
}

/// Maps an embedding `v` (normalised here) to `clamp(round(scale * v_i), -2^(b-1), 2^(b-1)-1)`.
/// One fixed scale for every vector keeps scores comparable: `score ≈ scale² · cos`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantizer {
    dim: usize,
    bits: u32,
    scale: f32,
}

impl Quantizer {
    /// The default quantiser for `params`: scale `2.2·sqrt(d)`, which puts the largest of d
    /// roughly Gaussian coordinates of a unit vector near the top of the int4 range.
    pub fn new(params: &Params) -> Quantizer {
        Quantizer::with_scale(params, 2.2 * (params.dim as f32).sqrt())
    }

    /// A quantiser with an explicit scale.
    pub fn with_scale(params: &Params, scale: f32) -> Quantizer {
        Quantizer { dim: params.dim, bits: params.quant_bits, scale }
    }

    /// The scale.
    pub fn scale(&self) -> f32 {
        self.scale
    }

    /// An upper bound on |score| between two vectors this quantiser makes: each quantised
    /// vector has norm at most `scale + ½·sqrt(d)` (rounding moves each coordinate by at most
    /// ½), and no more than the int4 worst case `d·64`.
    pub fn score_bound(&self) -> i64 {
        let half = 1i64 << (self.bits - 1);
        let norm = f64::from(self.scale) + 0.5 * (self.dim as f64).sqrt();
        ((norm * norm).ceil() as i64).min(self.dim as i64 * half * half)
    }

    /// The integer score threshold equivalent to a cosine threshold.
    pub fn score_threshold(&self, cosine: f64) -> i32 {
        (cosine * f64::from(self.scale) * f64::from(self.scale)).round() as i32
    }

    /// Quantises `embedding` (any scale; it is L2-normalised first).
    ///
    /// # Errors
    /// A message if the length is wrong, a value is not finite, or the vector is zero.
    pub fn quantize(&self, embedding: &[f32]) -> Result<QuantizedVector, String> {
        if embedding.len() != self.dim {
            return Err(format!("embedding has {} values, the scheme expects {}", embedding.len(), self.dim));
        }
        if embedding.iter().any(|x| !x.is_finite()) {
            return Err("embedding has a non-finite value".into());
        }
        let norm = embedding.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt();
        if norm < 1e-12 {
            return Err("embedding is the zero vector".into());
        }
        let hi = (1i32 << (self.bits - 1)) - 1;
        let lo = -(1i32 << (self.bits - 1));
        let factor = f64::from(self.scale) / norm;
        let q = embedding.iter().map(|x| ((f64::from(*x) * factor).round() as i32).clamp(lo, hi) as i8).collect();
        Ok(QuantizedVector(q))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantisation_is_bounded_and_keeps_the_angle() {
        let params = Params::DEFAULT;
        let q = Quantizer::new(&params);
        let a: Vec<f32> = (0..128).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
        let b: Vec<f32> = a.iter().enumerate().map(|(i, x)| if i % 3 == 0 { -x } else { *x }).collect();
        let (qa, qb) = (q.quantize(&a).expect("valid"), q.quantize(&b).expect("valid"));
        assert!(qa.as_slice().iter().all(|&x| (-8..=7).contains(&x)));
        let cos = |u: &[f32], v: &[f32]| {
            let dot: f32 = u.iter().zip(v).map(|(x, y)| x * y).sum();
            let n = |w: &[f32]| w.iter().map(|x| x * x).sum::<f32>().sqrt();
            dot / (n(u) * n(v))
        };
        let estimate = f64::from(plain_score(&qa, &qb)) / f64::from(plain_score(&qa, &qa));
        assert!((estimate - f64::from(cos(&a, &b))).abs() < 0.1, "{estimate} vs {}", cos(&a, &b));
    }

    #[test]
    fn bad_embeddings_are_refused() {
        let q = Quantizer::new(&Params::DEFAULT);
        assert!(q.quantize(&[0.0; 128]).is_err());
        assert!(q.quantize(&[1.0; 127]).is_err());
        let mut v = vec![1.0; 128];
        v[3] = f32::NAN;
        assert!(q.quantize(&v).is_err());
    }
}
