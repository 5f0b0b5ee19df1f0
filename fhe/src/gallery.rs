//! The matcher's packed gallery and the packed external-product evaluation.

use rayon::prelude::*;
use tfhe::core_crypto::algorithms::polynomial_algorithms::polynomial_wrapping_monic_monomial_mul_assign;
use tfhe::core_crypto::prelude::*;
use thiserror::Error;

use crate::result::{pack_words, packed_len, GroupResult, ScoreResult};
use crate::{EncryptedTemplate, Params, PreparedProbe};

/// Index of a template in a gallery.
pub type SlotId = u32;

/// Why a gallery operation was refused.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum GalleryError {
    /// A template or probe made for other parameters.
    #[error("ciphertext parameters do not match the gallery's")]
    ParamsMismatch,
    /// The slot does not exist.
    #[error("slot {0} does not exist")]
    UnknownSlot(SlotId),
    /// The gallery has no templates.
    #[error("the gallery is empty")]
    Empty,
    /// The gallery holds the maximum number of templates.
    #[error("the gallery is full ({0} templates)")]
    Full(usize),
    /// A decision threshold the parameters cannot evaluate.
    #[error("{0}")]
    Threshold(String),
}

/// Most templates one gallery holds (memory: about 4.5 KB of precomputation per template).
pub const MAX_TEMPLATES: usize = 1 << 22;

/// One packed GLWE of up to N/d templates and its precomputed decomposition.
pub(crate) struct Group {
    /// Gadget decomposition of the packed GLWE, each digit polynomial in the Fourier domain:
    /// `[level (last first)][polynomial (mask, body)][N/2]`.
    fourier: Vec<c64>,
}

/// Which templates a probe is evaluated against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Every template (1:N).
    All,
    /// One template (1:1).
    Slot(SlotId),
}

/// A venue's encrypted gallery, packed for evaluation. Holds ciphertexts only.
pub struct Gallery {
    params: Params,
    templates: Vec<EncryptedTemplate>,
    groups: Vec<Group>,
}

impl std::fmt::Debug for Gallery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gallery").field("templates", &self.templates.len()).finish_non_exhaustive()
    }
}

/// Scratch space of one thread: the FFT plan, its buffers, the Fourier accumulator and the
/// external product's output GLWE (mask then body, 2N coefficients).
pub(crate) struct Workspace {
    pub(crate) fft: Fft,
    buffers: ComputationBuffers,
    acc: Vec<c64>,
    pub(crate) out: Vec<u64>,
}

impl Workspace {
    pub(crate) fn new(params: &Params) -> Workspace {
        let n = params.polynomial_size;
        let fft = Fft::new(PolynomialSize(n));
        let mut buffers = ComputationBuffers::new();
        let view = fft.as_view();
        buffers.resize(view.forward_scratch().or(view.backward_scratch()).unaligned_bytes_required());
        Workspace { fft, buffers, acc: vec![c64::default(); n], out: vec![0u64; 2 * n] }
    }
}

impl Gallery {
    /// An empty gallery.
    pub fn new(params: Params) -> Gallery {
        Gallery { params, templates: Vec::new(), groups: Vec::new() }
    }

    /// Builds a gallery from stored templates (in slot order), packing groups in parallel.
    ///
    /// # Errors
    /// If a template was made for other parameters or there are too many.
    pub fn from_templates(params: Params, templates: Vec<EncryptedTemplate>) -> Result<Gallery, GalleryError> {
        if templates.iter().any(|t| t.params != params) {
            return Err(GalleryError::ParamsMismatch);
        }
        if templates.len() > MAX_TEMPLATES {
            return Err(GalleryError::Full(MAX_TEMPLATES));
        }
        let per = params.templates_per_glwe();
        let groups = templates
            .par_chunks(per)
            .map_init(|| Workspace::new(&params), |ws, chunk| pack(&params, chunk, ws))
            .collect();
        Ok(Gallery { params, templates, groups })
    }

    /// The parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Number of templates.
    pub fn len(&self) -> usize {
        self.templates.len()
    }

    /// Whether the gallery is empty.
    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    pub(crate) fn group(&self, index: usize) -> &Group {
        &self.groups[index]
    }

    /// The templates in slot order (for persistence).
    pub fn templates(&self) -> &[EncryptedTemplate] {
        &self.templates
    }

    /// Appends a template and returns its slot.
    ///
    /// # Errors
    /// If the template was made for other parameters or the gallery is full.
    pub fn push(&mut self, template: EncryptedTemplate) -> Result<SlotId, GalleryError> {
        if template.params != self.params {
            return Err(GalleryError::ParamsMismatch);
        }
        if self.templates.len() >= MAX_TEMPLATES {
            return Err(GalleryError::Full(MAX_TEMPLATES));
        }
        let slot = self.templates.len();
        self.templates.push(template);
        self.repack(slot / self.params.templates_per_glwe());
        Ok(slot as SlotId)
    }

    /// Removes the template in `slot`: the last template moves into its place (its slot
    /// changes to `slot`, which the caller records) and the affected groups are re-packed, so
    /// no trace of the removed ciphertext stays in memory. Returns the old slot of the moved
    /// template, if one moved.
    ///
    /// # Errors
    /// If the slot does not exist.
    pub fn remove(&mut self, slot: SlotId) -> Result<Option<SlotId>, GalleryError> {
        let index = slot as usize;
        if index >= self.templates.len() {
            return Err(GalleryError::UnknownSlot(slot));
        }
        let last = self.templates.len() - 1;
        let mut removed = self.templates.swap_remove(index);
        zeroize::Zeroize::zeroize(&mut removed.body);
        let per = self.params.templates_per_glwe();
        if index != last {
            self.repack(index / per);
        }
        let groups_needed = self.templates.len().div_ceil(per);
        self.groups.truncate(groups_needed);
        if groups_needed > 0 && last / per < groups_needed {
            self.repack(last / per);
        }
        Ok((index != last).then_some(last as SlotId))
    }

    fn repack(&mut self, group: usize) {
        let per = self.params.templates_per_glwe();
        let start = group * per;
        let end = (start + per).min(self.templates.len());
        let mut ws = Workspace::new(&self.params);
        let packed = pack(&self.params, &self.templates[start..end], &mut ws);
        if group < self.groups.len() {
            self.groups[group] = packed;
        } else {
            self.groups.push(packed);
        }
    }

    /// Evaluates `probe` against `target` on the current rayon pool: one packed external
    /// product per group of N/d templates. The result holds ciphertexts only.
    ///
    /// # Errors
    /// On a parameter mismatch, an empty gallery or an unknown slot.
    pub fn evaluate(&self, probe: &PreparedProbe, target: Target) -> Result<ScoreResult, GalleryError> {
        if probe.params != self.params {
            return Err(GalleryError::ParamsMismatch);
        }
        if self.templates.is_empty() {
            return Err(GalleryError::Empty);
        }
        let per = self.params.templates_per_glwe();
        let n_templates = self.templates.len();
        let groups = match target {
            Target::All => self
                .groups
                .par_iter()
                .enumerate()
                .map_init(
                    || Workspace::new(&self.params),
                    |ws, (g, group)| {
                        let count = (n_templates - g * per).min(per);
                        evaluate_group(&self.params, group, probe, ws, (g * per) as SlotId, 0, count)
                    },
                )
                .collect(),
            Target::Slot(slot) => {
                let index = slot as usize;
                if index >= n_templates {
                    return Err(GalleryError::UnknownSlot(slot));
                }
                let mut ws = Workspace::new(&self.params);
                vec![evaluate_group(&self.params, &self.groups[index / per], probe, &mut ws, slot, index % per, 1)]
            }
        };
        Ok(ScoreResult { params: self.params, groups })
    }
}

/// Packs up to N/d templates into one GLWE (template j rotated by X^(d·j), summed) and
/// precomputes its decomposition in the Fourier domain.
fn pack(params: &Params, templates: &[EncryptedTemplate], ws: &mut Workspace) -> Group {
    let n = params.polynomial_size;
    let mut packed = GlweCiphertext::new(0u64, GlweSize(2), PolynomialSize(n), CiphertextModulus::new_native());
    for (j, template) in templates.iter().enumerate() {
        let mut ct = template.decompress();
        for mut poly in ct.as_mut_polynomial_list().iter_mut() {
            polynomial_wrapping_monic_monomial_mul_assign(&mut poly, MonomialDegree(params.dim * j));
        }
        for (acc, x) in packed.as_mut().iter_mut().zip(ct.as_ref()) {
            *acc = acc.wrapping_add(*x);
        }
    }
    let half = n / 2;
    let levels = params.decomp_levels;
    let mut fourier = vec![c64::default(); levels * 2 * half];
    let decomposer =
        SignedDecomposer::<u64>::new(DecompositionBaseLog(params.decomp_base_log), DecompositionLevelCount(levels));
    let fft = ws.fft.as_view();
    let mut terms = decomposer.decompose_slice(packed.as_ref());
    let mut level_index = 0;
    while let Some(term) = terms.next_term() {
        for r in 0..2 {
            let dst = &mut fourier[(level_index * 2 + r) * half..][..half];
            fft.forward_as_integer(
                FourierPolynomial { data: dst },
                Polynomial::from_container(&term.as_slice()[r * n..(r + 1) * n]),
                ws.buffers.stack(),
            );
        }
        level_index += 1;
    }
    Group { fourier }
}

/// The packed external product `GGSW(probe) ⊡ group`, left in `ws.out` (mask, then body):
/// `acc[c] = Σ_{level, r} gallery_digit[level][r] ⊙ probe[level][r][c]`, then inverse FFTs.
pub(crate) fn external_product(params: &Params, group: &Group, probe: &PreparedProbe, ws: &mut Workspace) {
    let n = params.polynomial_size;
    let half = n / 2;
    let q = probe.data();
    ws.acc.fill(c64::default());
    for level in 0..params.decomp_levels {
        for r in 0..2 {
            let digit = &group.fourier[(level * 2 + r) * half..][..half];
            for c in 0..2 {
                let row = &q[((level * 2 + r) * 2 + c) * half..][..half];
                let acc = &mut ws.acc[c * half..][..half];
                for ((a, d), m) in acc.iter_mut().zip(digit).zip(row) {
                    *a += d * m;
                }
            }
        }
    }
    let fft = ws.fft.as_view();
    for c in 0..2 {
        fft.backward_as_torus(
            Polynomial::from_container(&mut ws.out[c * n..(c + 1) * n]),
            FourierPolynomial { data: &ws.acc[c * half..][..half] },
            ws.buffers.stack(),
        );
    }
}

/// The external product, then the modulus switch of the mask and of the `count` body
/// coefficients from position `first`.
fn evaluate_group(
    params: &Params,
    group: &Group,
    probe: &PreparedProbe,
    ws: &mut Workspace,
    first_slot: SlotId,
    first: usize,
    count: usize,
) -> GroupResult {
    let n = params.polynomial_size;
    external_product(params, group, probe, ws);
    let shift = 64 - params.response_bits;
    let switch = |x: u64| (x.wrapping_add(1u64 << (shift - 1)) >> shift) as u32;
    let words = n + count;
    let mut packed = vec![0u8; packed_len(words, params.response_bits)];
    let mask = ws.out[..n].iter().map(|&x| switch(x));
    let bodies = (first..first + count).map(|j| switch(ws.out[n + params.dim * j]));
    pack_words(&mut packed, mask.chain(bodies), params.response_bits);
    GroupResult { first_slot, first_position: first as u16, count: count as u16, packed }
}
