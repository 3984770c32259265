//! Standard Webhooks v1 signatures (HMAC-SHA256), as DELIVERY.md pins them down.
//!
//! The MAC itself comes from the `standardwebhooks` crate, the specification's own Rust library:
//! it brings no HTTP or TLS stack (only `http`, `time`, `thiserror`, which we already build, plus
//! `base64` 0.21 and `hmac-sha256`), and signing with the receivers' library keeps us and them
//! on one definition of the signed content. What is ours: turning the stored 64-hex secret into
//! the 32-byte key, keeping that key in a redacted, zeroizing type, and the rotation header.

use std::fmt;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use time::OffsetDateTime;

use crate::domain::SigningSecret;

/// The only signature version we send: symmetric HMAC-SHA256.
const VERSION_PREFIX: &str = "v1,";

/// The stored secret is not 64 hex characters (a broken secret document; never shown to anyone).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the signing secret is not 64 hexadecimal characters")]
pub struct InvalidSigningSecret;

/// The HMAC key a signing secret encodes: the 32 bytes behind its 64 hex characters.
///
/// Zeroized on drop; `Debug` shows `SigningKey([REDACTED])`.
pub struct SigningKey(SecretBox<[u8; 32]>);

impl SigningKey {
    /// Decodes the hex of a stored signing secret.
    pub fn from_secret(secret: &SigningSecret) -> Result<Self, InvalidSigningSecret> {
        let mut key = Box::new([0u8; 32]);
        hex::decode_to_slice(secret.expose(), &mut key[..]).map_err(|_| InvalidSigningSecret)?;
        Ok(Self(SecretBox::new(key)))
    }

    /// The key as a Standard Webhooks library takes it: `whsec_` + base64 of the 32 bytes.
    /// What a receiver configures; for the README and tests, never for a log line.
    pub fn to_whsec(&self) -> SecretString {
        let encoded = base64::engine::general_purpose::STANDARD.encode(self.0.expose_secret());
        SecretString::from(format!("whsec_{encoded}"))
    }

    fn bytes(&self) -> &[u8] {
        &self.0.expose_secret()[..]
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey([REDACTED])")
    }
}

/// The keys that sign a delivery: the webhook's current secret and, during a rotation's grace
/// period, the previous one. At most two, the current one first (DELIVERY.md).
#[derive(Debug)]
pub struct Signer {
    current: SigningKey,
    previous: Option<SigningKey>,
}

impl Signer {
    /// A signer for a webhook that is not inside a rotation's grace period.
    pub fn new(current: &SigningSecret) -> Result<Self, InvalidSigningSecret> {
        Ok(Self {
            current: SigningKey::from_secret(current)?,
            previous: None,
        })
    }

    /// Adds the previous secret while its grace period runs (`now < expires_at`); an expired
    /// one is ignored, so the caller can pass the secret document's fields as they are.
    pub fn with_previous(
        mut self,
        previous: &SigningSecret,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Self, InvalidSigningSecret> {
        let key = SigningKey::from_secret(previous)?;
        if now < expires_at {
            self.previous = Some(key);
        }
        Ok(self)
    }

    /// True when deliveries carry two signatures.
    pub fn is_rotating(&self) -> bool {
        self.previous.is_some()
    }

    /// The `webhook-signature` header value for one attempt: `v1,<base64>`, or during a
    /// rotation `v1,<new> v1,<old>`. `webhook_id` is the delivery id (a UUID: no `.` in it),
    /// `timestamp` the attempt's Unix seconds, `body` the exact bytes sent.
    pub fn signature_header(&self, webhook_id: &str, timestamp: i64, body: &str) -> String {
        let mut header = sign_v1(self.current.bytes(), webhook_id, timestamp, body);
        if let Some(previous) = &self.previous {
            header.push(' ');
            header.push_str(&sign_v1(previous.bytes(), webhook_id, timestamp, body));
        }
        header
    }
}

/// `v1,` + base64(HMAC-SHA256(key, "{webhook_id}.{timestamp}.{body}")).
fn sign_v1(key: &[u8], webhook_id: &str, timestamp: i64, body: &str) -> String {
    let signature = standardwebhooks::Webhook::from_bytes(key.to_vec())
        .and_then(|webhook| webhook.sign(webhook_id, timestamp, body.as_bytes()))
        // The crate fails only on a payload that is not UTF-8, which a `&str` cannot be.
        .expect("a &str payload is valid UTF-8");
    debug_assert!(signature.starts_with(VERSION_PREFIX));
    signature
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;
    use time::macros::datetime;

    fn whsec_key(whsec: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(whsec.strip_prefix("whsec_").unwrap())
            .unwrap()
    }

    const SECRET: &str = "5f0c2a7e9d1b3c4a8e6f0d2b4a6c8e0f1a3b5c7d9e1f3a5b7c9d1e3f5a7b9c1d";
    const OTHER: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn secret(hex: &str) -> SigningSecret {
        SigningSecret::from_stored(hex.to_owned())
    }

    /// The published vector of the Python and JavaScript Standard Webhooks libraries
    /// (`test_sign_function` in standard-webhooks/libraries).
    #[test]
    fn matches_the_standard_webhooks_python_and_javascript_test_vector() {
        let key = whsec_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        assert_eq!(
            sign_v1(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                r#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    /// The published vector of the Rust Standard Webhooks library (`test_sign`).
    #[test]
    fn matches_the_standard_webhooks_rust_test_vector() {
        let key = whsec_key("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD");
        assert_eq!(
            sign_v1(
                &key,
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1649367553,
                r#"{"email":"test@example.com","username":"test_user"}"#
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn key_is_the_32_bytes_the_hex_secret_encodes_not_its_text() {
        let signer = Signer::new(&secret(SECRET)).unwrap();
        let body = r#"{"event":"ping"}"#;
        let header =
            signer.signature_header("d2f1c0de-0000-4000-8000-000000000001", 1700000000, body);

        // The README's plain-HMAC check, written against RustCrypto rather than the crate.
        let mut mac = Hmac::<Sha256>::new_from_slice(&hex::decode(SECRET).unwrap()).unwrap();
        mac.update(b"d2f1c0de-0000-4000-8000-000000000001.1700000000.");
        mac.update(body.as_bytes());
        let expected =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(header, format!("v1,{expected}"));
    }

    #[test]
    fn whsec_form_is_base64_of_the_key_bytes() {
        let key = SigningKey::from_secret(&secret(SECRET)).unwrap();
        let whsec = key.to_whsec();
        assert_eq!(
            whsec_key(whsec.expose_secret()),
            hex::decode(SECRET).unwrap()
        );
    }

    #[test]
    fn rotation_sends_both_signatures_new_first_space_separated() {
        let now = datetime!(2026-11-27 12:00 UTC);
        let signer = Signer::new(&secret(SECRET))
            .unwrap()
            .with_previous(&secret(OTHER), datetime!(2026-11-28 12:00 UTC), now)
            .unwrap();
        assert!(signer.is_rotating());
        let header = signer.signature_header("id", 1, "{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            parts[0],
            Signer::new(&secret(SECRET))
                .unwrap()
                .signature_header("id", 1, "{}")
        );
        assert_eq!(
            parts[1],
            Signer::new(&secret(OTHER))
                .unwrap()
                .signature_header("id", 1, "{}")
        );
    }

    #[test]
    fn expired_previous_secret_no_longer_signs() {
        let now = datetime!(2026-11-27 12:00 UTC);
        let signer = Signer::new(&secret(SECRET))
            .unwrap()
            .with_previous(&secret(OTHER), now, now)
            .unwrap();
        assert!(!signer.is_rotating());
        assert!(!signer.signature_header("id", 1, "{}").contains(' '));
    }

    #[test]
    fn rejects_a_secret_that_is_not_64_hex_characters() {
        for bad in [
            "",
            "abc",
            &SECRET[..62],
            &format!("{}zz", &SECRET[..62]),
            &format!("{SECRET}00"),
        ] {
            assert_eq!(
                SigningKey::from_secret(&secret(bad)).unwrap_err(),
                InvalidSigningSecret,
                "{bad}"
            );
        }
    }

    #[test]
    fn debug_of_keys_and_signer_is_redacted() {
        let now = datetime!(2026-11-27 12:00 UTC);
        let signer = Signer::new(&secret(SECRET))
            .unwrap()
            .with_previous(&secret(OTHER), datetime!(2026-11-28 12:00 UTC), now)
            .unwrap();
        let shown = format!("{signer:?}");
        assert!(shown.contains("REDACTED"));
        for hex in [SECRET, OTHER] {
            assert!(!shown.contains(hex));
            assert!(!shown.contains(&format!("{:?}", hex::decode(hex).unwrap())));
        }
    }
}
