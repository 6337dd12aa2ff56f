//! Checks the identity code against keys and signatures computed by TweetNaCl 1.0.3 and
//! ed2curve 0.3.0 (`scripts/identity-vectors/gen.mjs` writes `vectors/identity.json`), so an app
//! that hands its existing Peers keys to peerlink gets the same `publicKey`, `publicBoxKey` and
//! signatures its JavaScript code computes.

use base64::Engine as _;
use peerlink_core::identity::Signature;
use peerlink_core::{Identity, PublicBoxKey, PublicKey};
use serde::Deserialize;

const VECTORS: &str = include_str!("vectors/identity.json");

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Case {
    name: String,
    seed: String,
    secret_key: String,
    public_key: String,
    box_secret_key: String,
    public_box_key: String,
    convert_public_key: String,
    signatures: Vec<SignatureCase>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignatureCase {
    message: String,
    message_base64: String,
    signature: String,
}

fn b64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("vector file holds standard base64")
}

fn cases() -> Vec<Case> {
    let doc: Document = serde_json::from_str(VECTORS).expect("vector file parses");
    assert!(doc.cases.len() >= 8, "expected at least 8 vector cases");
    doc.cases
}

#[test]
fn secret_key_loads_and_yields_tweetnacl_public_keys() {
    for case in cases() {
        let id = Identity::from_secret_key_base64(&case.secret_key)
            .unwrap_or_else(|e| panic!("{}: secret key rejected: {e}", case.name));
        assert_eq!(
            id.public_key().to_base64(),
            case.public_key,
            "{}: publicKey",
            case.name
        );
        assert_eq!(
            id.public_box_key().to_base64(),
            case.public_box_key,
            "{}: publicBoxKey",
            case.name
        );
        assert_eq!(
            &id.box_secret().as_bytes()[..],
            &b64(&case.box_secret_key)[..],
            "{}: ed2curve.convertSecretKey",
            case.name
        );
        assert_eq!(
            &id.secret_key_bytes()[..],
            &b64(&case.secret_key)[..],
            "{}: secretKey round trip",
            case.name
        );
    }
}

#[test]
fn seed_gives_the_same_identity_as_the_secret_key() {
    for case in cases() {
        let seed: [u8; 32] = b64(&case.seed).try_into().expect("32-byte seed");
        let id = Identity::from_seed(&seed);
        assert_eq!(
            id.public_key().to_base64(),
            case.public_key,
            "{}",
            case.name
        );
        assert_eq!(
            id.secret_key_base64().as_str(),
            case.secret_key,
            "{}: secretKey as TweetNaCl prints it",
            case.name
        );
    }
}

#[test]
fn public_key_converts_like_ed2curve() {
    for case in cases() {
        let pk = PublicKey::from_base64(&case.public_key).expect("valid public key");
        let converted = pk.to_box_key().expect("convertible");
        assert_eq!(
            converted,
            PublicBoxKey::from_base64(&case.convert_public_key).expect("32 bytes"),
            "{}: ed2curve.convertPublicKey",
            case.name
        );
        // Both derivations must meet: a verifier relies on this to tie publicBoxKey to publicKey.
        assert_eq!(converted.to_base64(), case.public_box_key, "{}", case.name);
    }
}

#[test]
fn detached_signatures_are_byte_identical_and_verify() {
    for case in cases() {
        let id = Identity::from_secret_key_base64(&case.secret_key).expect("valid secret key");
        let pk = PublicKey::from_base64(&case.public_key).expect("valid public key");
        assert_eq!(case.signatures.len(), 3, "{}", case.name);
        for sig_case in &case.signatures {
            let message = b64(&sig_case.message_base64);
            let ours = id.sign(&message);
            assert_eq!(
                ours.to_base64(),
                sig_case.signature,
                "{} / {}: nacl.sign.detached",
                case.name,
                sig_case.message
            );
            let theirs = Signature::from_base64(&sig_case.signature).expect("64 bytes");
            pk.verify(&message, &theirs)
                .unwrap_or_else(|e| panic!("{} / {}: {e}", case.name, sig_case.message));

            let mut altered = message.clone();
            altered.push(0);
            assert!(
                pk.verify(&altered, &theirs).is_err(),
                "{} / {}: signature must not cover other bytes",
                case.name,
                sig_case.message
            );
        }
    }
}
