//! The key holder's secret key and the randomness every encryption draws from.

use tfhe::core_crypto::commons::generators::DeterministicSeeder;
use tfhe::core_crypto::commons::math::random::Seed;
use tfhe::core_crypto::prelude::*;
use zeroize::{Zeroize, Zeroizing};

use crate::codec::{self, CodecError};
use crate::Params;

/// A cryptographically secure generator for keys, masks and noise: AES-CTR (tfhe's
/// `DeterministicSeeder`) keyed by 128 bits the caller draws from the operating system.
/// The library never reads entropy itself.
pub struct FheRng {
    seeder: DeterministicSeeder<DefaultRandomGenerator>,
}

impl std::fmt::Debug for FheRng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FheRng")
    }
}

impl FheRng {
    /// A generator keyed by `seed`. Pass 16 bytes from the OS CSPRNG; a fixed seed is for
    /// reproducible tests only.
    pub fn from_seed(seed: [u8; 16]) -> FheRng {
        FheRng { seeder: DeterministicSeeder::<DefaultRandomGenerator>::new(Seed(u128::from_le_bytes(seed))) }
    }

    pub(crate) fn seed(&mut self) -> Seed {
        self.seeder.seed()
    }

    pub(crate) fn encryption(&mut self) -> EncryptionRandomGenerator<DefaultRandomGenerator> {
        let mask_seed = self.seeder.seed();
        EncryptionRandomGenerator::<DefaultRandomGenerator>::new(mask_seed, &mut self.seeder)
    }

    pub(crate) fn seeder(&mut self) -> &mut DeterministicSeeder<DefaultRandomGenerator> {
        &mut self.seeder
    }
}

/// The venue's secret key (a binary GLWE key). Only the key holder has it; it is zeroized when
/// dropped and its encoding is for the key holder's encrypted key store only.
pub struct SecretKey {
    pub(crate) params: Params,
    pub(crate) glwe: GlweSecretKeyOwned<u64>,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKey").field("params", &self.params.id()).finish_non_exhaustive()
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.glwe.as_mut().zeroize();
    }
}

const KEY_TAG: &[u8; 4] = b"PSK1";

impl SecretKey {
    /// Generates a fresh key.
    ///
    /// # Errors
    /// If the parameters are inconsistent.
    pub fn generate(params: Params, rng: &mut FheRng) -> Result<SecretKey, String> {
        params.validate()?;
        let mut secret = SecretRandomGenerator::<DefaultRandomGenerator>::new(rng.seed());
        let glwe = allocate_and_generate_new_binary_glwe_secret_key(
            GlweDimension(1),
            PolynomialSize(params.polynomial_size),
            &mut secret,
        );
        Ok(SecretKey { params, glwe })
    }

    /// The parameters the key was made for.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Encodes the key (one bit per coefficient). The bytes are secret: the caller encrypts
    /// them at rest and they are zeroized when dropped.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let n = self.params.polynomial_size;
        let mut out = codec::header(KEY_TAG, self.params.id(), n / 8);
        let mut bits = vec![0u8; n / 8];
        for (i, &s) in self.glwe.as_ref().iter().enumerate() {
            bits[i / 8] |= ((s & 1) as u8) << (i % 8);
        }
        out.extend_from_slice(&bits);
        bits.zeroize();
        Zeroizing::new(out)
    }

    /// Decodes a key encoded by [`SecretKey::to_bytes`].
    ///
    /// # Errors
    /// If the bytes are not a key for `params`.
    pub fn from_bytes(params: Params, bytes: &[u8]) -> Result<SecretKey, CodecError> {
        params.validate().map_err(|reason| CodecError::Invalid { what: "parameters", reason })?;
        let n = params.polynomial_size;
        let body = codec::open(bytes, KEY_TAG, "secret key", params.id(), n / 8)?;
        let coefficients: Vec<u64> = (0..n).map(|i| u64::from((body[i / 8] >> (i % 8)) & 1)).collect();
        let glwe = GlweSecretKey::from_container(coefficients, PolynomialSize(n));
        Ok(SecretKey { params, glwe })
    }

    pub(crate) fn noise(&self) -> DynamicDistribution<u64> {
        DynamicDistribution::new_t_uniform(self.params.glwe_noise_bound_log2)
    }

    /// Key coefficient `i` (0 or 1).
    pub(crate) fn bit(&self, i: usize) -> u64 {
        self.glwe.as_ref()[i]
    }
}
