//! Exact samplers: Bernoulli(exp(-γ)), discrete Laplace and discrete Gaussian, with rational
//! parameters and integer arithmetic only (Canonne, Kamath and Steinke, "The Discrete Gaussian
//! for Differential Privacy", NeurIPS 2020, Algorithms 1, 2 and 3).
//!
//! Every random decision is a uniform integer drawn from the caller's generator: services pass
//! a CSPRNG ([`crate::Csprng`]). Arithmetic is in `u128`; where a product would overflow (only
//! for samples hundreds of scales out in the tail, probability below 2^-200) the candidate is
//! rejected and drawn again.

use rand::{Rng, RngCore};

/// Exact Bernoulli(num/den) for integers 0 <= num <= den, den > 0.
fn bernoulli_rational<R: RngCore>(rng: &mut R, num: u128, den: u128) -> bool {
    debug_assert!(den > 0 && num <= den);
    rng.random_range(0..den) < num
}

/// Exact Bernoulli(exp(-num/den)) (CKS20, Algorithm 1).
pub(crate) fn bernoulli_exp_neg<R: RngCore>(rng: &mut R, num: u128, den: u128) -> bool {
    debug_assert!(den > 0);
    if num <= den {
        // gamma in [0, 1]: K <- 1; while Bernoulli(gamma / K) K += 1; return K odd.
        let mut k: u128 = 1;
        loop {
            let Some(kden) = den.checked_mul(k) else { return k % 2 == 1 };
            if !bernoulli_rational(rng, num, kden) {
                break;
            }
            k += 1;
        }
        k % 2 == 1
    } else {
        for _ in 0..num / den {
            if !bernoulli_exp_neg(rng, 1, 1) {
                return false;
            }
        }
        bernoulli_exp_neg(rng, num % den, den)
    }
}

/// Discrete Laplace sample with P(x) proportional to exp(-|x| * s / t) (CKS20, Algorithm 2):
/// the scale is t/s. Requires s, t > 0.
pub(crate) fn discrete_laplace<R: RngCore>(rng: &mut R, s: u128, t: u128) -> i64 {
    debug_assert!(s > 0 && t > 0);
    loop {
        let u = rng.random_range(0..t);
        if !bernoulli_exp_neg(rng, u, t) {
            continue;
        }
        let mut v: u128 = 0;
        while bernoulli_exp_neg(rng, 1, 1) {
            v += 1;
        }
        let Some(x) = t.checked_mul(v).and_then(|tv| tv.checked_add(u)) else { continue };
        let Ok(y) = i64::try_from(x / s) else { continue };
        let negative = rng.random::<bool>();
        if negative && y == 0 {
            continue;
        }
        return if negative { -y } else { y };
    }
}

/// Integer square root (floor).
fn isqrt(n: u128) -> u128 {
    if n < 2 {
        return n;
    }
    // Newton's method from an upper bound.
    let mut x = 1u128 << (n.ilog2() / 2 + 1);
    loop {
        let y = (x + n / x) / 2;
        if y >= x {
            return x;
        }
        x = y;
    }
}

/// Discrete Gaussian sample with P(x) proportional to exp(-x^2 / (2 sigma^2)), where
/// sigma^2 = num/den exactly (CKS20, Algorithm 3). Requires num, den > 0.
pub(crate) fn discrete_gaussian<R: RngCore>(rng: &mut R, num: u128, den: u128) -> i64 {
    debug_assert!(num > 0 && den > 0);
    // t = floor(sigma) + 1; floor(sqrt(x)) == floor(sqrt(floor(x))) for real x >= 0.
    let t = isqrt(num / den) + 1;
    loop {
        let y = discrete_laplace(rng, 1, t);
        // Accept with probability exp(-(|y| - sigma^2/t)^2 / (2 sigma^2))
        //   = exp(-(|y| d t - n)^2 / (2 n d t^2)).
        let Some(ydt) = u128::from(y.unsigned_abs()).checked_mul(den).and_then(|v| v.checked_mul(t)) else {
            continue;
        };
        let diff = ydt.abs_diff(num);
        let Some(numerator) = diff.checked_mul(diff) else { continue };
        let Some(denominator) = num
            .checked_mul(2)
            .and_then(|v| v.checked_mul(den))
            .and_then(|v| v.checked_mul(t))
            .and_then(|v| v.checked_mul(t))
        else {
            continue;
        };
        if bernoulli_exp_neg(rng, numerator, denominator) {
            return y;
        }
    }
}

/// `sigma^2` as a rational num/den, rounded *up* (more noise, never less privacy), with the
/// numerator kept small enough for [`discrete_gaussian`]'s products.
pub(crate) fn variance_rational(sigma: f64) -> (u128, u128) {
    // next_up: the f64 product may have rounded down.
    let var = (sigma * sigma).next_up();
    // den = 2^k, as large as keeps num below 2^48.
    let mut den: u128 = 1 << 40;
    while den > 1 && var * den as f64 > (1u64 << 48) as f64 {
        den >>= 1;
    }
    let num = (var * den as f64).ceil() as u128;
    (num.max(1), den)
}

/// The exact variance of the discrete Gaussian with parameter `sigma`, summed over its
/// support (below sigma^2 for small sigma, within 1e-12 of it once sigma > 10).
pub(crate) fn discrete_gaussian_variance(sigma: f64) -> f64 {
    if sigma > 10.0 {
        return sigma * sigma;
    }
    let r = (14.0 * sigma).ceil() as i64 + 2;
    let (mut z, mut m2) = (0.0, 0.0);
    for x in -r..=r {
        let w = (-((x * x) as f64) / (2.0 * sigma * sigma)).exp();
        z += w;
        m2 += (x * x) as f64 * w;
    }
    m2 / z
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::Csprng;

    fn seeded() -> Csprng {
        Csprng::seed_from_u64(7)
    }

    #[test]
    fn bernoulli_exp_matches_its_probability() {
        let mut rng = seeded();
        for (num, den) in [(1u128, 2u128), (1, 1), (3, 2), (5, 1)] {
            let n = 200_000;
            let hits = (0..n).filter(|_| bernoulli_exp_neg(&mut rng, num, den)).count() as f64;
            let p = (-(num as f64) / den as f64).exp();
            let sd = (p * (1.0 - p) / n as f64).sqrt();
            assert!((hits / n as f64 - p).abs() < 5.0 * sd, "exp(-{num}/{den}): {} vs {p}", hits / n as f64);
        }
    }

    #[test]
    fn isqrt_is_the_floor() {
        for n in [0u128, 1, 2, 3, 4, 15, 16, 17, 99, 100, 101, 1 << 40, (1 << 62) + 12345] {
            let r = isqrt(n);
            assert!(r * r <= n && (r + 1) * (r + 1) > n, "{n}");
        }
    }

    #[test]
    fn discrete_gaussian_has_the_claimed_variance_and_shape() {
        let mut rng = seeded();
        for sigma in [0.5f64, 1.0, 3.0, 20.0, 2000.0] {
            let (num, den) = variance_rational(sigma);
            let n = 100_000;
            let samples: Vec<i64> = (0..n).map(|_| discrete_gaussian(&mut rng, num, den)).collect();
            let mean = samples.iter().sum::<i64>() as f64 / n as f64;
            let var = samples.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n as f64;
            // The discrete Gaussian's variance is below sigma^2, and within 1% of it once
            // sigma >= 1 (CKS20, Prop. 19 and 21).
            let var_exact = discrete_gaussian_variance(sigma);
            assert!(mean.abs() < 5.0 * var_exact.sqrt() / (n as f64).sqrt(), "sigma {sigma}: mean {mean}");
            assert!((var / var_exact - 1.0).abs() < 0.03, "sigma {sigma}: var {var} vs {var_exact}");
            if sigma < 4.0 {
                let z: f64 = (-50i64..=50).map(|x| (-(x * x) as f64 / (2.0 * sigma * sigma)).exp()).sum();
                let p0 = 1.0 / z;
                let f0 = samples.iter().filter(|&&x| x == 0).count() as f64 / n as f64;
                assert!(
                    (f0 - p0).abs() < 5.0 * (p0 * (1.0 - p0) / n as f64).sqrt(),
                    "sigma {sigma}: P(0) {f0} vs {p0}"
                );
            }
        }
    }

    #[test]
    fn variance_is_rounded_up() {
        for sigma in [0.1, 1.0, 7.3, 1e4, 6.5e5] {
            let (num, den) = variance_rational(sigma);
            assert!(num as f64 / den as f64 >= sigma * sigma, "{sigma}");
            assert!((num as f64 / den as f64) / (sigma * sigma) < 1.0 + 1e-6, "{sigma}");
        }
    }
}
