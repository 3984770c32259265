//! API keys: the bearer token a client presents, how we find its record, and what it may do.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::Sha256;
use time::OffsetDateTime;
use uuid::Uuid;

/// The scope that allows creating, changing and deleting webhooks.
pub const WRITE_WEBHOOKS: &str = "write:webhooks";
/// The scope that allows reading webhooks.
pub const READ_WEBHOOKS: &str = "read:webhooks";

/// What a route needs the key to hold. Scopes are independent: `write` does not imply `read`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    ReadWebhooks,
    WriteWebhooks,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ReadWebhooks => READ_WEBHOOKS,
            Scope::WriteWebhooks => WRITE_WEBHOOKS,
        }
    }
}

/// How many requests a key may make per fixed UTC minute and hour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimits {
    pub per_minute: u32,
    pub per_hour: u32,
}

impl Default for RateLimits {
    /// InstaView's documented defaults: 60 a minute, 2,000 an hour.
    fn default() -> Self {
        Self {
            per_minute: 60,
            per_hour: 2_000,
        }
    }
}

/// Token shape: `sk_` followed by base62 characters.
const TOKEN_PREFIX: &str = "sk_";
const MIN_TOKEN_BODY: usize = 16;
const MAX_TOKEN_BODY: usize = 128;

/// A bearer token as presented by a client. Redacted in `Debug`; never stored or logged.
#[derive(Clone, Debug)]
pub struct ApiToken(SecretString);

impl ApiToken {
    /// Extracts the token from an `Authorization` header value (`Bearer <token>`), checking its
    /// shape. `None` means the header is unusable; the caller answers 401 either way.
    pub fn from_authorization(header: &str) -> Option<Self> {
        let (scheme, token) = header.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        Self::parse(token.trim_start_matches(' '))
    }

    /// Checks the `sk_` + base62 shape.
    pub fn parse(token: &str) -> Option<Self> {
        let body = token.strip_prefix(TOKEN_PREFIX)?;
        let well_formed = (MIN_TOKEN_BODY..=MAX_TOKEN_BODY).contains(&body.len())
            && body.bytes().all(|b| b.is_ascii_alphanumeric());
        well_formed.then(|| Self(SecretString::from(token)))
    }

    /// Draws a new token of 40 base62 characters (about 238 bits) from the OS CSPRNG.
    pub fn generate() -> Result<Self, getrandom::Error> {
        const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut token = String::from(TOKEN_PREFIX);
        while token.len() < TOKEN_PREFIX.len() + 40 {
            let mut byte = [0u8; 1];
            getrandom::fill(&mut byte)?;
            // Rejection sampling keeps every character equally likely (248 = 4 * 62).
            if byte[0] < 248 {
                token.push(ALPHABET[usize::from(byte[0] % 62)] as char);
            }
        }
        Ok(Self(SecretString::from(token)))
    }

    /// The token; call only to show it once to the operator who created it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// The server-side key of the token hash. Kept in Secrets Manager, read once per container.
pub struct Pepper(SecretBox<[u8]>);

impl Pepper {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(SecretBox::new(bytes.into_boxed_slice()))
    }

    /// HMAC-SHA256(pepper, token), hex-encoded: the key under which a key record is stored.
    pub fn hash(&self, token: &ApiToken) -> TokenHash {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.expose_secret())
            .expect("HMAC accepts keys of any length");
        mac.update(token.expose().as_bytes());
        TokenHash(hex::encode(mac.finalize().into_bytes()))
    }

    /// A MAC of `purpose`'s own: HMAC-SHA256 keyed with HMAC-SHA256(pepper, purpose), so that
    /// no tag it makes is ever a token hash or another purpose's tag (the delivery list's
    /// cursors). Cloned per message; it never shows its key.
    pub fn keyed_mac(&self, purpose: &str) -> Hmac<Sha256> {
        let mut derive = Hmac::<Sha256>::new_from_slice(self.0.expose_secret())
            .expect("HMAC accepts keys of any length");
        derive.update(purpose.as_bytes());
        Hmac::<Sha256>::new_from_slice(&derive.finalize().into_bytes())
            .expect("HMAC accepts keys of any length")
    }
}

impl std::fmt::Debug for Pepper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pepper([REDACTED])")
    }
}

/// The stored form of a token: safe to keep, useless without the pepper.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TokenHash(pub String);

/// Lifecycle state of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiKeyStatus {
    Active,
    Suspended,
    Revoked,
}

impl ApiKeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiKeyStatus::Active => "active",
            ApiKeyStatus::Suspended => "suspended",
            ApiKeyStatus::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(ApiKeyStatus::Active),
            "suspended" => Some(ApiKeyStatus::Suspended),
            "revoked" => Some(ApiKeyStatus::Revoked),
            _ => None,
        }
    }
}

/// An API key record (without its hash, which is only the lookup key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub company_ids: Vec<Uuid>,
    pub status: ApiKeyStatus,
    pub suspended_at: Option<OffsetDateTime>,
    pub suspend_reason: Option<String>,
    pub expires_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub rate_limits: RateLimits,
}

/// Why a key may not do what it asked. Mapped to 401/403 at the HTTP edge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denied {
    /// Missing, malformed, unknown, revoked or expired: indistinguishable to the client.
    InvalidKey,
    Suspended {
        at: Option<OffsetDateTime>,
        reason: Option<String>,
    },
    MissingScope(Scope),
    CompanyNotAllowed,
}

impl ApiKey {
    /// Checks that the key may be used at all at `now`: active and not expired.
    pub fn check_usable(&self, now: OffsetDateTime) -> Result<(), Denied> {
        match self.status {
            ApiKeyStatus::Revoked => return Err(Denied::InvalidKey),
            ApiKeyStatus::Suspended => {
                return Err(Denied::Suspended {
                    at: self.suspended_at,
                    reason: self.suspend_reason.clone(),
                })
            }
            ApiKeyStatus::Active => {}
        }
        if self.expires_at.is_some_and(|expiry| expiry <= now) {
            return Err(Denied::InvalidKey);
        }
        Ok(())
    }

    /// Checks that the key holds `scope` (exactly; scopes do not imply each other).
    pub fn require(&self, scope: Scope) -> Result<(), Denied> {
        if self.scopes.iter().any(|held| held == scope.as_str()) {
            Ok(())
        } else {
            Err(Denied::MissingScope(scope))
        }
    }

    /// Checks that the key may act for `company`.
    pub fn authorise_company(&self, company: Uuid) -> Result<(), Denied> {
        if self.company_ids.contains(&company) {
            Ok(())
        } else {
            Err(Denied::CompanyNotAllowed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const TOKEN: &str = "sk_live0123456789abcdefXYZ";

    fn key() -> ApiKey {
        ApiKey {
            id: "key-1".into(),
            name: "test".into(),
            scopes: vec![WRITE_WEBHOOKS.into()],
            company_ids: vec![Uuid::nil()],
            status: ApiKeyStatus::Active,
            suspended_at: None,
            suspend_reason: None,
            expires_at: None,
            created_at: datetime!(2024-01-01 0:00 UTC),
            rate_limits: RateLimits::default(),
        }
    }

    fn authorise_write(key: &ApiKey, now: OffsetDateTime) -> Result<(), Denied> {
        key.check_usable(now)?;
        key.require(Scope::WriteWebhooks)
    }

    #[test]
    fn parses_bearer_token_case_insensitively() {
        assert!(ApiToken::from_authorization(&format!("Bearer {TOKEN}")).is_some());
        assert!(ApiToken::from_authorization(&format!("bearer {TOKEN}")).is_some());
        assert!(ApiToken::from_authorization(&format!("BEARER  {TOKEN}")).is_some());
    }

    #[test]
    fn rejects_authorization_without_bearer_scheme() {
        assert!(ApiToken::from_authorization(TOKEN).is_none());
        assert!(ApiToken::from_authorization(&format!("Basic {TOKEN}")).is_none());
        assert!(ApiToken::from_authorization("Bearer").is_none());
        assert!(ApiToken::from_authorization("Bearer ").is_none());
    }

    #[test]
    fn rejects_token_of_wrong_shape() {
        for token in [
            "sk_your_key_here",
            "pk_live0123456789abcdefXYZ",
            "sk_short",
            "sk_live0123456789abcdef XYZ",
            "sk_live0123456789abcdef-XYZ",
            "SK_live0123456789abcdefXYZ",
            &format!("sk_{}", "a".repeat(129)),
        ] {
            assert!(ApiToken::parse(token).is_none(), "{token}");
        }
        assert!(ApiToken::parse(&format!("sk_{}", "a".repeat(128))).is_some());
    }

    #[test]
    fn generated_tokens_have_the_accepted_shape_and_differ() {
        let a = ApiToken::generate().unwrap();
        let b = ApiToken::generate().unwrap();
        assert!(ApiToken::parse(a.expose()).is_some());
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn token_hash_is_hmac_sha256_of_the_whole_token_keyed_with_the_pepper() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        let expected = hex::encode(
            mac.chain_update(b"what do ya want for nothing?")
                .finalize()
                .into_bytes(),
        );
        assert_eq!(
            expected,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let token = ApiToken::parse(TOKEN).unwrap();
        let hash = Pepper::new(b"pepper".to_vec()).hash(&token);
        let mac = Hmac::<Sha256>::new_from_slice(b"pepper").unwrap();
        assert_eq!(
            hash.0,
            hex::encode(mac.chain_update(TOKEN.as_bytes()).finalize().into_bytes())
        );
        assert_ne!(hash, Pepper::new(b"other".to_vec()).hash(&token));
    }

    #[test]
    fn token_and_pepper_debug_are_redacted() {
        let token = ApiToken::parse(TOKEN).unwrap();
        assert!(!format!("{token:?}").contains(TOKEN));
        assert!(!format!("{:?}", Pepper::new(b"pepper".to_vec())).contains("pepper\""));
    }

    #[test]
    fn active_key_with_scope_may_write() {
        assert_eq!(
            authorise_write(&key(), datetime!(2025-01-01 0:00 UTC)),
            Ok(())
        );
    }

    #[test]
    fn revoked_key_is_invalid() {
        let key = ApiKey {
            status: ApiKeyStatus::Revoked,
            ..key()
        };
        assert_eq!(
            authorise_write(&key, datetime!(2025-01-01 0:00 UTC)),
            Err(Denied::InvalidKey)
        );
    }

    #[test]
    fn expired_key_is_invalid() {
        let key = ApiKey {
            expires_at: Some(datetime!(2025-01-01 0:00 UTC)),
            ..key()
        };
        assert_eq!(
            authorise_write(&key, datetime!(2025-01-01 0:00 UTC)),
            Err(Denied::InvalidKey)
        );
        assert_eq!(
            authorise_write(&key, datetime!(2024-12-31 23:59 UTC)),
            Ok(())
        );
    }

    #[test]
    fn suspended_key_reports_when_and_why() {
        let key = ApiKey {
            status: ApiKeyStatus::Suspended,
            suspended_at: Some(datetime!(2024-06-01 12:00 UTC)),
            suspend_reason: Some("billing".into()),
            ..key()
        };
        assert_eq!(
            authorise_write(&key, datetime!(2025-01-01 0:00 UTC)),
            Err(Denied::Suspended {
                at: Some(datetime!(2024-06-01 12:00 UTC)),
                reason: Some("billing".into())
            })
        );
    }

    #[test]
    fn key_without_write_webhooks_scope_is_refused() {
        let key = ApiKey {
            scopes: vec!["read:webhooks".into(), "write:webhooks:extra".into()],
            ..key()
        };
        assert_eq!(
            authorise_write(&key, datetime!(2025-01-01 0:00 UTC)),
            Err(Denied::MissingScope(Scope::WriteWebhooks))
        );
    }

    #[test]
    fn scopes_are_independent() {
        let writer = ApiKey {
            scopes: vec![WRITE_WEBHOOKS.into()],
            ..key()
        };
        assert_eq!(
            writer.require(Scope::ReadWebhooks),
            Err(Denied::MissingScope(Scope::ReadWebhooks))
        );
        let reader = ApiKey {
            scopes: vec![READ_WEBHOOKS.into()],
            ..key()
        };
        assert_eq!(reader.require(Scope::ReadWebhooks), Ok(()));
        assert_eq!(
            reader.require(Scope::WriteWebhooks),
            Err(Denied::MissingScope(Scope::WriteWebhooks))
        );
    }

    #[test]
    fn key_may_act_only_for_its_companies() {
        assert_eq!(key().authorise_company(Uuid::nil()), Ok(()));
        assert_eq!(
            key().authorise_company(Uuid::from_u128(1)),
            Err(Denied::CompanyNotAllowed)
        );
    }
}
