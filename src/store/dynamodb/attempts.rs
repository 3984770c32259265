//! Delivery attempt records (`attempt#<deliveryId>#<attempt>`, see
//! [`super::schema::attempt_id`] and the attempt attributes there): one item per attempt in
//! the webhooks table, no body, no secret, no header value. The pipeline writes them
//! (`src/pipeline/store.rs`); what is theirs at the schema level is here.

/// How long an attempt record is kept (DynamoDB TTL on [`super::schema::EXPIRES_AT`]), in
/// seconds: 30 days.
pub const ATTEMPT_TTL_SECONDS: i64 = 30 * 24 * 60 * 60;
