//! Encrypted templates: one seeded GLWE ciphertext per enrolled face.

use tfhe::core_crypto::commons::math::random::{CompressionSeed, Seed};
use tfhe::core_crypto::prelude::*;

use crate::codec::{self, CodecError};
use crate::{FheRng, Params, QuantizedVector, SecretKey};

const TAG: &[u8; 4] = b"PTP1";

/// An encrypted template: the quantised embedding in coefficients `0..d` of a GLWE plaintext,
/// scaled by Δ, encrypted under the venue key with the mask compressed to a seed. The matcher
/// stores it and packs it; it never sees the plaintext.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptedTemplate {
    pub(crate) params: Params,
    pub(crate) seed: u128,
    pub(crate) body: Vec<u64>,
}

impl std::fmt::Debug for EncryptedTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EncryptedTemplate")
    }
}

impl SecretKey {
    /// Encrypts a quantised template for enrolment.
    ///
    /// # Errors
    /// If the vector's dimension is not the scheme's.
    pub fn encrypt_template(&self, template: &QuantizedVector, rng: &mut FheRng) -> Result<EncryptedTemplate, String> {
        let p = self.params;
        if template.as_slice().len() != p.dim {
            return Err(format!("template has dimension {}, the scheme expects {}", template.as_slice().len(), p.dim));
        }
        let mut plain = vec![0u64; p.polynomial_size];
        for (slot, &t) in plain.iter_mut().zip(template.as_slice()) {
            *slot = (i64::from(t) as u64).wrapping_shl(p.delta_log);
        }
        let seed = rng.seed();
        let mut ct = SeededGlweCiphertext::new(
            0u64,
            GlweSize(2),
            PolynomialSize(p.polynomial_size),
            CompressionSeed::from(seed),
            CiphertextModulus::new_native(),
        );
        encrypt_seeded_glwe_ciphertext(
            &self.glwe,
            &mut ct,
            &PlaintextList::from_container(plain.as_slice()),
            self.noise(),
            rng.seeder(),
        );
        zeroize::Zeroize::zeroize(&mut plain);
        Ok(EncryptedTemplate { params: p, seed: seed.0, body: ct.get_body().as_ref().to_vec() })
    }
}

impl EncryptedTemplate {
    /// Size of the encoding for `params`.
    pub fn encoded_len(params: &Params) -> usize {
        codec::HEADER_LEN + 16 + 8 * params.polynomial_size
    }

    /// Encodes for the wire or the gallery file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = codec::header(TAG, self.params.id(), 16 + 8 * self.body.len());
        out.extend_from_slice(&self.seed.to_le_bytes());
        codec::put_u64s(&mut out, &self.body);
        out
    }

    /// Decodes, refusing anything that is not a template for `params` of the exact size.
    ///
    /// # Errors
    /// On a wrong tag, version, parameter set or length.
    pub fn from_bytes(params: Params, bytes: &[u8]) -> Result<EncryptedTemplate, CodecError> {
        let body = codec::open(bytes, TAG, "encrypted template", params.id(), 16 + 8 * params.polynomial_size)?;
        let mut seed = [0u8; 16];
        seed.copy_from_slice(&body[..16]);
        Ok(EncryptedTemplate { params, seed: u128::from_le_bytes(seed), body: codec::get_u64s(&body[16..]) })
    }

    /// Expands the mask from its seed: the full GLWE ciphertext.
    pub(crate) fn decompress(&self) -> GlweCiphertextOwned<u64> {
        let seeded = SeededGlweCiphertext::from_container(
            self.body.clone(),
            GlweSize(2),
            CompressionSeed::from(Seed(self.seed)),
            CiphertextModulus::new_native(),
        );
        seeded.decompress_into_glwe_ciphertext()
    }
}
