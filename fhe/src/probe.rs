//! Encrypted probes: a GGSW ciphertext of the probe polynomial.

use tfhe::core_crypto::algorithms::polynomial_algorithms::polynomial_wrapping_mul;
use tfhe::core_crypto::prelude::*;

use crate::codec::{self, CodecError};
use crate::{FheRng, Params, QuantizedVector, SecretKey};

const TAG: &[u8; 4] = b"PPB1";

/// An encrypted probe as sent by the gate: a GGSW ciphertext (standard domain) of
/// `P(X) = p_0 - Σ_{i≥1} p_i X^(N-i)`.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptedProbe {
    pub(crate) params: Params,
    pub(crate) words: Vec<u64>,
}

impl std::fmt::Debug for EncryptedProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EncryptedProbe")
    }
}

fn ggsw_words(params: &Params) -> usize {
    params.decomp_levels * 2 * 2 * params.polynomial_size
}

impl SecretKey {
    /// Encrypts a quantised probe.
    ///
    /// The GGSW is built row by row because tfhe only encrypts constant GGSWs: for level `j`
    /// (stored last level first) with factor `q / B^j`, the mask row holds `-P·S·factor` and
    /// the body row `P·factor`, each then encrypted in place.
    ///
    /// # Errors
    /// If the vector's dimension is not the scheme's.
    pub fn encrypt_probe(&self, probe: &QuantizedVector, rng: &mut FheRng) -> Result<EncryptedProbe, String> {
        let p = self.params;
        let n = p.polynomial_size;
        if probe.as_slice().len() != p.dim {
            return Err(format!("probe has dimension {}, the scheme expects {}", probe.as_slice().len(), p.dim));
        }
        let mut poly = vec![0u64; n];
        for (i, &x) in probe.as_slice().iter().enumerate() {
            let x = i64::from(x) as u64;
            if i == 0 {
                poly[0] = x;
            } else {
                poly[n - i] = x.wrapping_neg();
            }
        }
        let p_poly = Polynomial::from_container(poly.as_slice());
        let mut p_times_s = Polynomial::new(0u64, PolynomialSize(n));
        polynomial_wrapping_mul(&mut p_times_s, &p_poly, &self.glwe.as_polynomial_list().get(0));

        let mut ggsw = GgswCiphertext::new(
            0u64,
            GlweSize(2),
            PolynomialSize(n),
            DecompositionBaseLog(p.decomp_base_log),
            DecompositionLevelCount(p.decomp_levels),
            CiphertextModulus::new_native(),
        );
        let mut generator = rng.encryption();
        let noise = self.noise();
        let levels = p.decomp_levels;
        for (index, mut matrix) in ggsw.iter_mut().enumerate() {
            // Memory index 0 holds the last (least significant) level.
            let level = levels - index;
            let shift = 64 - p.decomp_base_log * level;
            for (row_index, mut row) in matrix.as_mut_glwe_list().iter_mut().enumerate() {
                {
                    let mut body = row.get_mut_body();
                    let body = body.as_mut();
                    if row_index == 0 {
                        for (b, &ps) in body.iter_mut().zip(p_times_s.as_ref()) {
                            *b = ps.wrapping_shl(shift as u32).wrapping_neg();
                        }
                    } else {
                        for (b, &c) in body.iter_mut().zip(poly.iter()) {
                            *b = c.wrapping_shl(shift as u32);
                        }
                    }
                }
                encrypt_glwe_ciphertext_assign(&self.glwe, &mut row, noise, &mut generator);
            }
        }
        zeroize::Zeroize::zeroize(&mut poly);
        zeroize::Zeroize::zeroize(p_times_s.as_mut());
        Ok(EncryptedProbe { params: p, words: ggsw.into_container() })
    }
}

impl EncryptedProbe {
    /// Size of the encoding for `params`.
    pub fn encoded_len(params: &Params) -> usize {
        codec::HEADER_LEN + 8 * ggsw_words(params)
    }

    /// Encodes for the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = codec::header(TAG, self.params.id(), 8 * self.words.len());
        codec::put_u64s(&mut out, &self.words);
        out
    }

    /// Decodes, refusing anything that is not a probe for `params` of the exact size.
    ///
    /// # Errors
    /// On a wrong tag, version, parameter set or length.
    pub fn from_bytes(params: Params, bytes: &[u8]) -> Result<EncryptedProbe, CodecError> {
        let body = codec::open(bytes, TAG, "encrypted probe", params.id(), 8 * ggsw_words(&params))?;
        Ok(EncryptedProbe { params, words: codec::get_u64s(body) })
    }

    /// Converts to the Fourier domain once, for evaluation against a whole gallery.
    pub fn prepare(&self) -> PreparedProbe {
        let p = self.params;
        let ggsw = GgswCiphertext::from_container(
            self.words.as_slice(),
            GlweSize(2),
            PolynomialSize(p.polynomial_size),
            DecompositionBaseLog(p.decomp_base_log),
            CiphertextModulus::new_native(),
        );
        let mut fourier = FourierGgswCiphertext::new(
            GlweSize(2),
            PolynomialSize(p.polynomial_size),
            DecompositionBaseLog(p.decomp_base_log),
            DecompositionLevelCount(p.decomp_levels),
        );
        convert_standard_ggsw_ciphertext_to_fourier(&ggsw, &mut fourier);
        PreparedProbe { params: p, fourier }
    }
}

/// A probe in the Fourier domain, ready for evaluation (matcher side, RAM only).
pub struct PreparedProbe {
    pub(crate) params: Params,
    pub(crate) fourier: FourierGgswCiphertext<tfhe::core_crypto::fft_impl::fft64::ABox<[c64]>>,
}

impl std::fmt::Debug for PreparedProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PreparedProbe")
    }
}

impl PreparedProbe {
    pub(crate) fn data(&self) -> &[c64] {
        self.fourier.as_view().data()
    }
}
