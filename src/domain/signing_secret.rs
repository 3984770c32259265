//! The HMAC signing secret a customer verifies our webhook signatures with.

use secrecy::{ExposeSecret, SecretString};

/// 32 bytes from the operating system's CSPRNG, hex-encoded (64 lowercase characters).
/// `Debug` is redacted by `secrecy`, so the secret cannot reach a log line by accident.
#[derive(Clone, Debug)]
pub struct SigningSecret(SecretString);

impl SigningSecret {
    /// Draws a new secret from the OS CSPRNG.
    ///
    /// # Panics
    /// Only if the operating system cannot supply randomness, in which case no secret may be
    /// issued at all; the caller turns the panic-free error path into a 500 instead (see
    /// [`SigningSecret::try_generate`]).
    pub fn try_generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        let secret = Self(SecretString::from(hex::encode(bytes)));
        // Wipe the raw bytes; the hex form is what lives on (inside a zeroizing SecretString).
        bytes.fill(0);
        Ok(secret)
    }

    /// Wraps a secret read back from the secret store.
    pub fn from_stored(hex: String) -> Self {
        Self(SecretString::from(hex))
    }

    /// The hex string; call only where the secret must leave the process (response, secret store).
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_secret_is_64_lowercase_hex_characters() {
        let secret = SigningSecret::try_generate().unwrap();
        assert_eq!(secret.expose().len(), 64);
        assert!(secret
            .expose()
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
    }

    #[test]
    fn signing_secrets_differ_between_draws() {
        let a = SigningSecret::try_generate().unwrap();
        let b = SigningSecret::try_generate().unwrap();
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn signing_secret_debug_is_redacted() {
        let secret = SigningSecret::try_generate().unwrap();
        let shown = format!("{secret:?}");
        assert!(!shown.contains(secret.expose()));
        assert!(shown.contains("REDACTED"));
    }
}
