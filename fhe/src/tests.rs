//! Scheme-level tests: the encrypted result equals the plaintext integer computation.

use proptest::prelude::*;
use rand::{Rng, SeedableRng};

use crate::gallery::Target;
use crate::*;

fn rng(seed: u8) -> FheRng {
    FheRng::from_seed([seed; 16])
}

fn random_vector(r: &mut impl Rng, dim: usize) -> QuantizedVector {
    QuantizedVector::from_coefficients((0..dim).map(|_| r.random_range(-8i8..=7)).collect())
}

fn check_gallery(params: Params, templates: &[QuantizedVector], probe: &QuantizedVector, seed: u8) -> f64 {
    let mut fhe_rng = rng(seed);
    let key = SecretKey::generate(params, &mut fhe_rng).expect("valid params");
    let encrypted: Vec<EncryptedTemplate> =
        templates.iter().map(|t| key.encrypt_template(t, &mut fhe_rng).expect("dim matches")).collect();
    let gallery = Gallery::from_templates(params, encrypted).expect("same params");
    let prepared = key.encrypt_probe(probe, &mut fhe_rng).expect("dim matches").prepare();
    let result = gallery.evaluate(&prepared, Target::All).expect("non-empty");
    let decrypted = key.decrypt_scores(&result).expect("same params");
    assert_eq!(decrypted.scores.len(), templates.len());
    for (slot, score) in &decrypted.scores {
        assert_eq!(*score, plain_score(&templates[*slot as usize], probe), "slot {slot}");
    }
    // Half of the decoding margin (0.5). Random probes measure about 0.02; a constant probe
    // (impossible for a normalised embedding) adds the key's mean coherently, up to ~0.12.
    // docs/fhe.md explains both.
    assert!(decrypted.max_noise_fraction < 0.25, "noise {}", decrypted.max_noise_fraction);
    decrypted.max_noise_fraction
}

#[test]
fn scores_equal_the_plaintext_computation() {
    let params = Params::DEFAULT;
    let mut r = rand::rngs::StdRng::seed_from_u64(1);
    let templates: Vec<_> = (0..40).map(|_| random_vector(&mut r, params.dim)).collect();
    let probe = random_vector(&mut r, params.dim);
    check_gallery(params, &templates, &probe, 3);
}

#[test]
fn extreme_scores_do_not_wrap() {
    let params = Params::DEFAULT;
    let d = params.dim;
    let all = |v: i8| QuantizedVector::from_coefficients(vec![v; d]);
    let alternating = QuantizedVector::from_coefficients((0..d).map(|i| if i % 2 == 0 { -8 } else { 7 }).collect());
    let templates = vec![all(-8), all(7), alternating.clone(), all(0)];
    check_gallery(params, &templates, &all(-8), 4);
    check_gallery(params, &templates, &alternating, 5);
}

#[test]
fn other_dimensions_work() {
    for dim in [64, 256, 512] {
        let params = Params::with_dim(dim);
        let mut r = rand::rngs::StdRng::seed_from_u64(dim as u64);
        let templates: Vec<_> = (0..params.templates_per_glwe() + 3).map(|_| random_vector(&mut r, dim)).collect();
        let probe = random_vector(&mut r, dim);
        check_gallery(params, &templates, &probe, 6);
    }
}

#[test]
fn one_to_one_and_removal() {
    let params = Params::DEFAULT;
    let mut r = rand::rngs::StdRng::seed_from_u64(9);
    let mut fhe_rng = rng(9);
    let key = SecretKey::generate(params, &mut fhe_rng).expect("valid");
    let plain: Vec<_> = (0..35).map(|_| random_vector(&mut r, params.dim)).collect();
    let mut gallery = Gallery::new(params);
    for t in &plain {
        gallery.push(key.encrypt_template(t, &mut fhe_rng).expect("dim")).expect("fits");
    }
    let probe = random_vector(&mut r, params.dim);
    let prepared = key.encrypt_probe(&probe, &mut fhe_rng).expect("dim").prepare();

    let one = key.decrypt_scores(&gallery.evaluate(&prepared, Target::Slot(20)).expect("slot exists")).expect("params");
    assert_eq!(one.scores, vec![(20, plain_score(&plain[20], &probe))]);
    assert_eq!(gallery.evaluate(&prepared, Target::Slot(35)).err(), Some(GalleryError::UnknownSlot(35)));

    // Remove slot 3: the last template (34) moves into slot 3.
    assert_eq!(gallery.remove(3), Ok(Some(34)));
    let mut expected: Vec<_> = plain.clone();
    expected.swap_remove(3);
    let all = key.decrypt_scores(&gallery.evaluate(&prepared, Target::All).expect("non-empty")).expect("params");
    let want: Vec<_> = expected.iter().enumerate().map(|(i, t)| (i as SlotId, plain_score(t, &probe))).collect();
    assert_eq!(all.scores, want);
    // Removing down to empty leaves an empty gallery that says so.
    while !gallery.is_empty() {
        gallery.remove(0).expect("exists");
    }
    assert_eq!(gallery.evaluate(&prepared, Target::All).err(), Some(GalleryError::Empty));
}

#[test]
fn encodings_round_trip_and_refuse_foreign_bytes() {
    let params = Params::DEFAULT;
    let mut fhe_rng = rng(11);
    let key = SecretKey::generate(params, &mut fhe_rng).expect("valid");
    let v = QuantizedVector::from_coefficients(vec![3; params.dim]);
    let t = key.encrypt_template(&v, &mut fhe_rng).expect("dim");
    let p = key.encrypt_probe(&v, &mut fhe_rng).expect("dim");
    assert_eq!(EncryptedTemplate::from_bytes(params, &t.to_bytes()), Ok(t.clone()));
    assert_eq!(EncryptedProbe::from_bytes(params, &p.to_bytes()), Ok(p.clone()));
    assert_eq!(t.to_bytes().len(), EncryptedTemplate::encoded_len(&params));
    assert_eq!(p.to_bytes().len(), EncryptedProbe::encoded_len(&params));

    let key_bytes = key.to_bytes();
    let key2 = SecretKey::from_bytes(params, &key_bytes).expect("round trip");
    assert_eq!(key2.glwe.as_ref(), key.glwe.as_ref());

    let gallery = Gallery::from_templates(params, vec![t.clone()]).expect("params");
    let result = gallery.evaluate(&p.prepare(), Target::All).expect("non-empty");
    let bytes = result.to_bytes();
    assert_eq!(bytes.len(), result.encoded_len());
    assert_eq!(ScoreResult::from_bytes(params, &bytes), Ok(result));

    // Truncated, extended, wrong kind, wrong parameters.
    let tb = t.to_bytes();
    assert!(EncryptedTemplate::from_bytes(params, &tb[..tb.len() - 1]).is_err());
    let mut longer = tb.clone();
    longer.push(0);
    assert!(EncryptedTemplate::from_bytes(params, &longer).is_err());
    assert_eq!(
        EncryptedProbe::from_bytes(params, &tb).err(),
        Some(CodecError::WrongKind { expected: "encrypted probe" })
    );
    assert_eq!(
        EncryptedTemplate::from_bytes(Params::with_dim(64), &tb).err(),
        Some(CodecError::WrongParams { what: "encrypted template" })
    );
    for cut in [0, 5, 13, 17, bytes.len() / 2, bytes.len() - 1] {
        assert!(ScoreResult::from_bytes(params, &bytes[..cut]).is_err(), "cut {cut}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Encrypted result == plaintext result, for any vectors and gallery sizes.
    #[test]
    fn encrypted_equals_plaintext(seed in any::<u64>(), n in 1usize..50) {
        let params = Params::DEFAULT;
        let mut r = rand::rngs::StdRng::seed_from_u64(seed);
        let templates: Vec<_> = (0..n).map(|_| random_vector(&mut r, params.dim)).collect();
        let probe = random_vector(&mut r, params.dim);
        check_gallery(params, &templates, &probe, (seed % 251) as u8);
    }

    /// Arbitrary bytes never panic a decoder.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let params = Params::DEFAULT;
        let _ = EncryptedTemplate::from_bytes(params, &bytes);
        let _ = EncryptedProbe::from_bytes(params, &bytes);
        let _ = ScoreResult::from_bytes(params, &bytes);
        let _ = SecretKey::from_bytes(params, &bytes);
        let _ = DecisionResult::from_bytes(params, &bytes);
    }
}

/// A unit vector with cosine `c` to the unit vector `u`.
fn at_cosine(r: &mut impl Rng, u: &[f32], c: f32) -> Vec<f32> {
    let mut w: Vec<f32> = (0..u.len()).map(|_| r.random_range(-1.0f32..1.0)).collect();
    let along: f32 = w.iter().zip(u).map(|(a, b)| a * b).sum();
    w.iter_mut().zip(u).for_each(|(a, b)| *a -= along * b);
    let norm = w.iter().map(|x| x * x).sum::<f32>().sqrt();
    let s = (1.0 - c * c).max(0.0).sqrt();
    u.iter().zip(&w).map(|(a, b)| c * a + s * b / norm).collect()
}

/// Decision mode: every decision equals `[score ≥ threshold]` on the plaintext quantised
/// vectors, for templates spread from cosine −0.3 to 0.95 around the threshold.
#[test]
fn decisions_equal_the_plaintext_comparison() {
    let params = Params::DEFAULT;
    let quantizer = Quantizer::new(&params);
    let mut r = rand::rngs::StdRng::seed_from_u64(21);
    let mut fhe_rng = rng(21);
    let key = SecretKey::generate(params, &mut fhe_rng).expect("valid");
    let decision_key = key.generate_decision_key(&mut fhe_rng);
    let bytes = decision_key.to_bytes();
    assert_eq!(bytes.len(), DecisionKey::encoded_len_for(&params));
    let decision_key = DecisionKey::from_bytes(params, &bytes).expect("round trip");
    let prepared_key = decision_key.prepare();

    let mut u: Vec<f32> = (0..params.dim).map(|_| r.random_range(-1.0f32..1.0)).collect();
    let norm = u.iter().map(|x| x * x).sum::<f32>().sqrt();
    u.iter_mut().for_each(|x| *x /= norm);
    let probe = quantizer.quantize(&u).expect("valid");
    let plain: Vec<QuantizedVector> = (0..37)
        .map(|i| {
            let c = -0.3 + 1.25 * i as f32 / 36.0;
            quantizer.quantize(&at_cosine(&mut r, &u, c)).expect("valid")
        })
        .collect();
    let encrypted = plain.iter().map(|t| key.encrypt_template(t, &mut fhe_rng).expect("dim")).collect();
    let gallery = Gallery::from_templates(params, encrypted).expect("same params");
    let prepared = key.encrypt_probe(&probe, &mut fhe_rng).expect("dim").prepare();
    let threshold = quantizer.score_threshold(0.4);

    let result = gallery.evaluate_decisions(&prepared, Target::All, &prepared_key, threshold).expect("evaluated");
    assert_eq!(result.n_templates(), plain.len());
    let bytes = result.to_bytes();
    assert_eq!(bytes.len(), result.encoded_len());
    let result = DecisionResult::from_bytes(params, &bytes).expect("round trip");
    let decrypted = key.decrypt_decisions(&result).expect("same params");
    assert_eq!(decrypted.evaluated, plain.len());
    assert!(decrypted.max_noise_fraction < 0.25, "noise {}", decrypted.max_noise_fraction);
    let scores: Vec<i32> = plain.iter().map(|t| plain_score(t, &probe)).collect();
    let expected: Vec<SlotId> = (0..plain.len() as SlotId).filter(|&s| scores[s as usize] >= threshold).collect();
    assert!(!expected.is_empty() && expected.len() < plain.len(), "the spread straddles the threshold");
    assert_eq!(decrypted.matches, expected, "scores {scores:?}, threshold {threshold}");

    // 1:1 verification of one matching and one refused template.
    for &slot in &[expected[0], 0] {
        let one = gallery.evaluate_decisions(&prepared, Target::Slot(slot), &prepared_key, threshold).expect("1:1");
        let got = key.decrypt_decisions(&one).expect("same params");
        assert_eq!(got.evaluated, 1);
        assert_eq!(got.matches.contains(&slot), scores[slot as usize] >= threshold, "slot {slot}");
    }
    // A threshold outside the score range is refused before any evaluation.
    assert!(matches!(
        gallery.evaluate_decisions(&prepared, Target::All, &prepared_key, 1 << 20),
        Err(GalleryError::Threshold(_))
    ));
}

#[test]
fn decision_codecs_refuse_bad_input() {
    let params = Params::DEFAULT;
    assert!(DecisionKey::from_bytes(params, b"PDK1").is_err());
    assert!(DecisionKey::from_bytes(params, &vec![0u8; DecisionKey::encoded_len_for(&params)]).is_err());
    assert!(DecisionResult::from_bytes(params, b"").is_err());
    let mut forged = b"PDR1\x01".to_vec();
    forged.extend_from_slice(&params.id().to_le_bytes());
    forged.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(DecisionResult::from_bytes(params, &forged), Err(CodecError::Invalid { .. })));
}
