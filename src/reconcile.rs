//! The reconciler: an offline sweeper for what a create, delete or undo left behind when AWS was
//! slow rather than down (calls timing out, the undo timing out too).
//!
//! One run, in this order:
//! 1. **Scan** the webhooks table (strongly consistent, paginated, a projection of only the
//!    attributes below). The request path never scans (it reads by key and queries the
//!    `byApiKey` index); a scheduled sweeper that reads the whole table every 15 minutes is the
//!    one place where a Scan is the right tool, and the IAM statement allows it only with
//!    exactly this projection.
//! 2. **List** the secrets under the webhook secret prefix (`ListSecrets` with a `name` filter,
//!    then filtered again here: the name must be the prefix and a webhook id, nothing else).
//! 3. **Orphan secrets**: a secret whose webhook has no record (or only a fence or tombstone)
//!    and that is older than [`Options::min_secret_age`] is deleted at once, without a recovery
//!    window (it was never handed out, or its webhook is deleted). The age rule keeps every
//!    create in flight safe: a create writes its secret before its record and gives up within
//!    seconds (`time_budget::WRITE_BUDGET` + `UNDO_BUDGET`), so a secret without a record
//!    that is younger than the safe age may still be about to get its record. The table is read
//!    before the secrets are listed, so a record written after the scan always belongs to a
//!    secret that is younger than the scan.
//! 4. **Records whose secret is missing** (or whose pinned `secretVersion` is gone) cannot sign
//!    a delivery. Each is confirmed with `DescribeSecret` (and, for a version that carries no
//!    staging label any more, `ListSecretVersionIds` with deprecated versions), because
//!    `ListSecrets` is eventually consistent; then it is deactivated (`isActive` false,
//!    `version` + 1, `updatedAt`), on the condition that it is still the record that was read
//!    (same `version`, not a tombstone), and reported with its API key for a person to follow
//!    up. It is not deleted: the owner still sees it, inactive.
//! 5. **Expired idempotency claims and fences/tombstones**: DynamoDB's TTL removes them within
//!    days, not at `expiresAt`; those whose `expiresAt` has passed are deleted on the condition
//!    that it still has (a claim taken again in between has a new `expiresAt` and stays).
//!
//! Every action is one JSON log line (`action`, the id, `dryRun`); the [`Report`] holds counts and
//! ids, never a secret value (the reconciler never reads one: it needs no `GetSecretValue`).
//! A failure on one item is reported and the run goes on; only failing to read the table or
//! the secret list fails the run.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, Select};
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::time_format::rfc3339;
use crate::store::dynamodb::schema::{
    API_KEY_ID, CLAIM_PREFIX, EXPIRES_AT, FENCE, IS_ACTIVE, SECRET_ARN, SECRET_VERSION, UPDATED_AT,
    VERSION, WEBHOOK_ID,
};
use crate::store::dynamodb::Item;

/// Default for [`Options::min_secret_age`]: far longer than any create can take (about 24 s),
/// and than `ListSecrets`' documented lag.
pub const DEFAULT_MIN_SECRET_AGE: Duration = Duration::from_secs(15 * 60);

/// The attributes the scan reads (and the only ones its IAM statement allows).
pub const SCANNED_ATTRIBUTES: [&str; 8] = [
    WEBHOOK_ID,
    API_KEY_ID,
    SECRET_ARN,
    SECRET_VERSION,
    IS_ACTIVE,
    VERSION,
    FENCE,
    EXPIRES_AT,
];

/// What one run may do.
#[derive(Clone, Debug)]
pub struct Options {
    /// A secret without a record is deleted only once it is at least this old.
    pub min_secret_age: Duration,
    /// Find and report, change nothing.
    pub dry_run: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            min_secret_age: DEFAULT_MIN_SECRET_AGE,
            dry_run: false,
        }
    }
}

/// A record that cannot sign: its secret (or the secret version it pins) is gone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Unsignable {
    pub webhook_id: String,
    pub api_key_id: Option<String>,
    pub reason: &'static str,
    /// True when this run deactivated it (or would have, in a dry run); false when it was
    /// inactive already or changed meanwhile.
    pub deactivated: bool,
}

/// What one run found and did. In a dry run, the "deleted" and "deactivated" entries are what
/// it would have done.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub dry_run: bool,
    pub min_secret_age_seconds: u64,
    /// Webhook records read (fences, tombstones, claims and counters not included).
    pub records: usize,
    /// Secrets listed under the prefix.
    pub secrets: usize,
    /// Webhook ids whose secret had no record and was deleted.
    pub orphan_secrets_deleted: Vec<String>,
    /// Webhook ids whose secret has no record but is younger than the safe age (kept).
    pub orphan_secrets_kept: Vec<String>,
    /// Records whose secret or pinned secret version is missing.
    pub records_without_secret: Vec<Unsignable>,
    /// Expired idempotency claims deleted.
    pub expired_claims_deleted: usize,
    /// Webhook ids whose expired fence or tombstone was deleted.
    pub expired_fences_deleted: Vec<String>,
    /// Items left alone because they changed between the read and the write (`id: why`).
    pub skipped: Vec<String>,
    /// Items that could not be handled (`id: operation failed: code`); the next run retries.
    pub errors: Vec<String>,
}

impl Report {
    /// Records without a secret that are still active after this run (0 unless a
    /// deactivation failed or was skipped, or the run was dry).
    pub fn active_records_without_secret(&self) -> usize {
        self.records_without_secret
            .iter()
            .filter(|u| !u.deactivated && u.reason != ALREADY_INACTIVE)
            .count()
    }
}

const ALREADY_INACTIVE: &str = "secret missing (record already inactive)";

/// Reading the table or the secret list failed: nothing was judged.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("{operation} failed: {code}")]
    Aws { operation: String, code: String },
    #[error("{0}")]
    Invalid(String),
}

fn code_of<E: ProvideErrorMetadata>(error: &E) -> String {
    error
        .code()
        .unwrap_or("connection or timeout error")
        .to_owned()
}

fn aws_error<E: ProvideErrorMetadata>(operation: &str, error: &E) -> ReconcileError {
    ReconcileError::Aws {
        operation: operation.to_owned(),
        code: code_of(error),
    }
}

/// The clients and names the reconciler works on.
#[derive(Clone, Debug)]
pub struct Reconciler {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub secretsmanager: aws_sdk_secretsmanager::Client,
    pub webhooks_table: String,
    /// `WEBHOOK_SECRET_PREFIX`: secret names are this and a webhook id.
    pub secret_prefix: String,
}

/// A webhook record as the scan reads it.
#[derive(Clone, Debug)]
struct Record {
    id: Uuid,
    api_key_id: Option<String>,
    secret_arn: String,
    secret_version: Option<String>,
    active: bool,
    version: String,
}

/// A secret under the prefix as `ListSecrets` shows it.
#[derive(Clone, Debug)]
struct Listed {
    id: Uuid,
    arn: String,
    created: Option<i64>,
    /// Versions that carry a staging label (AWS lists no others here).
    versions: HashSet<String>,
}

/// An item that expires by TTL: a claim or a fence/tombstone.
#[derive(Clone, Debug)]
struct Expiring {
    id: String,
    expires_at: i64,
}

#[derive(Default)]
struct Table {
    records: HashMap<Uuid, Record>,
    claims: Vec<Expiring>,
    fences: Vec<Expiring>,
}

/// What the secret store says about a record's secret.
enum SecretState {
    Present,
    Missing(&'static str),
}

fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)?.as_s().ok().map(String::as_str)
}

fn get_n(item: &Item, name: &str) -> Option<String> {
    item.get(name)?.as_n().ok().cloned()
}

fn expires_at(item: &Item) -> Option<i64> {
    get_n(item, EXPIRES_AT)?.parse().ok()
}

impl Table {
    fn add(&mut self, item: &Item) {
        let Some(id) = get_s(item, WEBHOOK_ID) else {
            return;
        };
        if item.contains_key(FENCE) {
            if let Some(at) = expires_at(item) {
                self.fences.push(Expiring {
                    id: id.to_owned(),
                    expires_at: at,
                });
            }
            return;
        }
        if id.starts_with(CLAIM_PREFIX) {
            if let Some(at) = expires_at(item) {
                self.claims.push(Expiring {
                    id: id.to_owned(),
                    expires_at: at,
                });
            }
            return;
        }
        // Quota and rate items have no secretArn; a webhook record always has one.
        let (Ok(uuid), Some(arn), Some(version)) = (
            Uuid::try_parse(id),
            get_s(item, SECRET_ARN),
            get_n(item, VERSION),
        ) else {
            return;
        };
        self.records.insert(
            uuid,
            Record {
                id: uuid,
                api_key_id: get_s(item, API_KEY_ID).map(str::to_owned),
                secret_arn: arn.to_owned(),
                secret_version: get_s(item, SECRET_VERSION).map(str::to_owned),
                active: item
                    .get(IS_ACTIVE)
                    .and_then(|v| v.as_bool().ok())
                    .copied()
                    .unwrap_or(false),
                version,
            },
        );
    }
}

impl Reconciler {
    /// One run now.
    pub async fn run(&self, options: &Options) -> Result<Report, ReconcileError> {
        self.run_at(options, OffsetDateTime::now_utc()).await
    }

    /// One run as if at `now` (ages and expiry are judged against it).
    pub async fn run_at(
        &self,
        options: &Options,
        now: OffsetDateTime,
    ) -> Result<Report, ReconcileError> {
        if self.secret_prefix.is_empty() {
            return Err(ReconcileError::Invalid(
                "the webhook secret prefix is empty: refusing to judge every secret".into(),
            ));
        }
        let mut report = Report {
            dry_run: options.dry_run,
            min_secret_age_seconds: options.min_secret_age.as_secs(),
            ..Report::default()
        };
        // The table first, then the secrets: see the module documentation.
        let table = self.scan().await?;
        let secrets = self.list_secrets().await?;
        report.records = table.records.len();
        report.secrets = secrets.len();
        let now_seconds = now.unix_timestamp();

        self.sweep_orphan_secrets(&table, &secrets, options, now_seconds, &mut report)
            .await;
        self.deactivate_unsignable(&table, &secrets, options, now, &mut report)
            .await;
        for claim in &table.claims {
            if claim.expires_at < now_seconds
                && self
                    .delete_expired(claim, false, options, now_seconds, &mut report)
                    .await
            {
                report.expired_claims_deleted += 1;
            }
        }
        for fence in &table.fences {
            if fence.expires_at < now_seconds
                && self
                    .delete_expired(fence, true, options, now_seconds, &mut report)
                    .await
            {
                report.expired_fences_deleted.push(fence.id.clone());
            }
        }
        tracing::info!(
            action = "reconcile_summary",
            dryRun = options.dry_run,
            records = report.records,
            secrets = report.secrets,
            orphanSecretsDeleted = report.orphan_secrets_deleted.len(),
            orphanSecretsKept = report.orphan_secrets_kept.len(),
            recordsWithoutSecret = report.records_without_secret.len(),
            expiredClaimsDeleted = report.expired_claims_deleted,
            expiredFencesDeleted = report.expired_fences_deleted.len(),
            skipped = report.skipped.len(),
            errors = report.errors.len(),
            "reconcile run finished"
        );
        Ok(report)
    }

    /// Every item of the table, with only [`SCANNED_ATTRIBUTES`].
    async fn scan(&self) -> Result<Table, ReconcileError> {
        let mut request = self
            .dynamodb
            .scan()
            .table_name(&self.webhooks_table)
            .consistent_read(true)
            .select(Select::SpecificAttributes);
        let mut placeholders = Vec::new();
        for (i, name) in SCANNED_ATTRIBUTES.iter().enumerate() {
            let placeholder = format!("#a{i}");
            request = request.expression_attribute_names(&placeholder, *name);
            placeholders.push(placeholder);
        }
        let mut pages = request
            .projection_expression(placeholders.join(", "))
            .into_paginator()
            .send();
        let mut table = Table::default();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| aws_error("dynamodb.Scan(webhooks)", &e))?;
            for item in page.items() {
                table.add(item);
            }
        }
        Ok(table)
    }

    /// The secrets whose name is the prefix and a webhook id.
    async fn list_secrets(&self) -> Result<Vec<Listed>, ReconcileError> {
        let filter = Filter::builder()
            .key(FilterNameStringType::Name)
            .values(&self.secret_prefix)
            .build();
        let mut pages = self
            .secretsmanager
            .list_secrets()
            .filters(filter)
            .into_paginator()
            .send();
        let mut listed = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| aws_error("secretsmanager.ListSecrets", &e))?;
            for secret in page.secret_list() {
                let (Some(name), Some(arn)) = (secret.name(), secret.arn()) else {
                    continue;
                };
                // The name filter is a prefix match and, on AWS, not case-sensitive: check
                // again, and only take names that are exactly the prefix and a webhook id.
                let Some(id) = name
                    .strip_prefix(&self.secret_prefix)
                    .and_then(|rest| Uuid::try_parse(rest).ok().filter(|u| u.to_string() == rest))
                else {
                    continue;
                };
                listed.push(Listed {
                    id,
                    arn: arn.to_owned(),
                    created: secret
                        .created_date()
                        .or(secret.last_changed_date())
                        .map(|d| d.secs()),
                    versions: secret
                        .secret_versions_to_stages()
                        .map(|m| m.keys().cloned().collect())
                        .unwrap_or_default(),
                });
            }
        }
        Ok(listed)
    }

    async fn sweep_orphan_secrets(
        &self,
        table: &Table,
        secrets: &[Listed],
        options: &Options,
        now: i64,
        report: &mut Report,
    ) {
        let min_age = i64::try_from(options.min_secret_age.as_secs()).unwrap_or(i64::MAX);
        for secret in secrets {
            if table.records.contains_key(&secret.id) {
                continue;
            }
            let id = secret.id.to_string();
            let Some(created) = secret.created else {
                report
                    .skipped
                    .push(format!("{id}: secret without a creation date"));
                continue;
            };
            let age = now - created;
            if age < min_age {
                tracing::info!(
                    action = "keep_young_orphan_secret",
                    webhookId = %id,
                    ageSeconds = age,
                    dryRun = options.dry_run,
                    "secret without a record kept: a create may still be writing its record"
                );
                report.orphan_secrets_kept.push(id);
                continue;
            }
            if !options.dry_run {
                let deleted = self
                    .secretsmanager
                    .delete_secret()
                    .secret_id(&secret.arn)
                    .force_delete_without_recovery(true)
                    .send()
                    .await;
                match deleted {
                    Ok(_) => {}
                    // Gone already (ListSecrets lags): nothing left to do.
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|e| e.is_resource_not_found_exception()) =>
                    {
                        report.skipped.push(format!("{id}: secret gone already"));
                        continue;
                    }
                    Err(e) => {
                        report.errors.push(format!(
                            "{id}: secretsmanager.DeleteSecret failed: {}",
                            code_of(&e)
                        ));
                        continue;
                    }
                }
            }
            tracing::info!(
                action = "delete_orphan_secret",
                webhookId = %id,
                ageSeconds = age,
                dryRun = options.dry_run,
                "secret without a webhook record deleted without a recovery window"
            );
            report.orphan_secrets_deleted.push(id);
        }
    }

    async fn deactivate_unsignable(
        &self,
        table: &Table,
        secrets: &[Listed],
        options: &Options,
        now: OffsetDateTime,
        report: &mut Report,
    ) {
        let by_arn: HashMap<&str, &Listed> = secrets.iter().map(|s| (s.arn.as_str(), s)).collect();
        let mut records: Vec<&Record> = table.records.values().collect();
        records.sort_by_key(|r| r.id);
        for record in records {
            let id = record.id.to_string();
            let listed = by_arn.get(record.secret_arn.as_str());
            let pinned_listed = match (&record.secret_version, listed) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(version), Some(listed)) => listed.versions.contains(version),
            };
            if pinned_listed {
                continue;
            }
            let reason = match self.confirm_secret(record).await {
                Ok(SecretState::Present) => continue,
                Ok(SecretState::Missing(reason)) => reason,
                Err(error) => {
                    report.errors.push(format!("{id}: {error}"));
                    continue;
                }
            };
            let mut unsignable = Unsignable {
                webhook_id: id.clone(),
                api_key_id: record.api_key_id.clone(),
                reason,
                deactivated: false,
            };
            if !record.active {
                unsignable.reason = ALREADY_INACTIVE;
                tracing::info!(
                    action = "report_unsignable_record",
                    webhookId = %id,
                    apiKeyId = record.api_key_id.as_deref().unwrap_or(""),
                    reason,
                    dryRun = options.dry_run,
                    "inactive webhook record without its secret"
                );
                report.records_without_secret.push(unsignable);
                continue;
            }
            if !options.dry_run {
                match self.deactivate(record, now).await {
                    Ok(true) => {}
                    Ok(false) => {
                        report
                            .skipped
                            .push(format!("{id}: record changed since it was read"));
                        report.records_without_secret.push(unsignable);
                        continue;
                    }
                    Err(error) => {
                        report.errors.push(format!("{id}: {error}"));
                        report.records_without_secret.push(unsignable);
                        continue;
                    }
                }
            }
            unsignable.deactivated = true;
            tracing::warn!(
                action = "deactivate_unsignable_record",
                webhookId = %id,
                apiKeyId = record.api_key_id.as_deref().unwrap_or(""),
                reason,
                dryRun = options.dry_run,
                "webhook record without its secret deactivated: it cannot sign deliveries"
            );
            report.records_without_secret.push(unsignable);
        }
    }

    /// Asks Secrets Manager itself (strongly, unlike `ListSecrets`) whether the record's
    /// secret and pinned version exist.
    async fn confirm_secret(&self, record: &Record) -> Result<SecretState, ReconcileError> {
        let described = self
            .secretsmanager
            .describe_secret()
            .secret_id(&record.secret_arn)
            .send()
            .await;
        let described = match described {
            Ok(described) => described,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                return Ok(SecretState::Missing("secret missing"));
            }
            Err(e) => return Err(aws_error("secretsmanager.DescribeSecret", &e)),
        };
        if described.deleted_date().is_some() {
            return Ok(SecretState::Missing("secret scheduled for deletion"));
        }
        let Some(version) = &record.secret_version else {
            return Ok(SecretState::Present);
        };
        if described
            .version_ids_to_stages()
            .is_some_and(|m| m.contains_key(version))
        {
            return Ok(SecretState::Present);
        }
        // A version without a staging label is deprecated but still readable until AWS
        // removes it; only this call lists those.
        let mut pages = self
            .secretsmanager
            .list_secret_version_ids()
            .secret_id(&record.secret_arn)
            .include_deprecated(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(page) => page,
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_resource_not_found_exception()) =>
                {
                    return Ok(SecretState::Missing("secret missing"));
                }
                Err(e) => return Err(aws_error("secretsmanager.ListSecretVersionIds", &e)),
            };
            if page
                .versions()
                .iter()
                .any(|v| v.version_id() == Some(version.as_str()))
            {
                return Ok(SecretState::Present);
            }
        }
        Ok(SecretState::Missing("pinned secret version missing"))
    }

    /// Deactivates the record if it is still the one that was read. `Ok(false)`: it changed.
    async fn deactivate(
        &self,
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<bool, ReconcileError> {
        let result = self
            .dynamodb
            .update_item()
            .table_name(&self.webhooks_table)
            .key(WEBHOOK_ID, AttributeValue::S(record.id.to_string()))
            .update_expression("SET #active = :false, #updated = :now ADD #version :one")
            .condition_expression(
                "attribute_exists(#id) AND attribute_not_exists(#fence) AND #version = :seen",
            )
            .expression_attribute_names("#active", IS_ACTIVE)
            .expression_attribute_names("#updated", UPDATED_AT)
            .expression_attribute_names("#version", VERSION)
            .expression_attribute_names("#id", WEBHOOK_ID)
            .expression_attribute_names("#fence", FENCE)
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .expression_attribute_values(":now", AttributeValue::S(rfc3339(now)))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":seen", AttributeValue::N(record.version.clone()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(aws_error("dynamodb.UpdateItem(deactivate webhook)", &e)),
        }
    }

    /// Deletes an expired claim or fence if it is still expired; true when deleted (or, in a
    /// dry run, when it would be).
    async fn delete_expired(
        &self,
        item: &Expiring,
        fence: bool,
        options: &Options,
        now: i64,
        report: &mut Report,
    ) -> bool {
        let (action, what) = if fence {
            ("delete_expired_fence", "expired fence or tombstone deleted")
        } else {
            ("delete_expired_claim", "expired idempotency claim deleted")
        };
        if !options.dry_run {
            let mut request = self
                .dynamodb
                .delete_item()
                .table_name(&self.webhooks_table)
                .key(WEBHOOK_ID, AttributeValue::S(item.id.clone()))
                .expression_attribute_names("#expires", EXPIRES_AT)
                .expression_attribute_values(":now", AttributeValue::N(now.to_string()));
            request = if fence {
                request
                    .condition_expression("attribute_exists(#fence) AND #expires < :now")
                    .expression_attribute_names("#fence", FENCE)
            } else {
                request.condition_expression("#expires < :now")
            };
            match request.send().await {
                Ok(_) => {}
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                {
                    report
                        .skipped
                        .push(format!("{}: renewed or gone since it was read", item.id));
                    return false;
                }
                Err(e) => {
                    report.errors.push(format!(
                        "{}: dynamodb.DeleteItem failed: {}",
                        item.id,
                        code_of(&e)
                    ));
                    return false;
                }
            }
        }
        tracing::info!(
            action,
            id = %item.id,
            expiredSeconds = now - item.expires_at,
            dryRun = options.dry_run,
            "{what}"
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::dynamodb::schema::{quota_id, rate_window_id};

    fn item(pairs: &[(&str, AttributeValue)]) -> Item {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    fn s(text: &str) -> AttributeValue {
        AttributeValue::S(text.to_owned())
    }

    fn n(number: i64) -> AttributeValue {
        AttributeValue::N(number.to_string())
    }

    #[test]
    fn the_scan_sorts_records_fences_and_claims_and_ignores_counters() {
        let id = Uuid::new_v4();
        let fenced = Uuid::new_v4();
        let mut table = Table::default();
        for item in [
            item(&[
                (WEBHOOK_ID, s(&id.to_string())),
                (SECRET_ARN, s("arn:x")),
                (VERSION, n(3)),
                (IS_ACTIVE, AttributeValue::Bool(true)),
            ]),
            item(&[
                (WEBHOOK_ID, s(&fenced.to_string())),
                (FENCE, AttributeValue::Bool(true)),
                (EXPIRES_AT, n(10)),
            ]),
            item(&[
                (WEBHOOK_ID, s(&format!("{CLAIM_PREFIX}k#abc"))),
                (EXPIRES_AT, n(20)),
            ]),
            item(&[(WEBHOOK_ID, s(&quota_id("k")))]),
            item(&[(WEBHOOK_ID, s(&rate_window_id("k", 0))), (EXPIRES_AT, n(5))]),
        ] {
            table.add(&item);
        }
        assert_eq!(table.records.len(), 1);
        assert!(table.records[&id].active);
        assert_eq!(table.records[&id].version, "3");
        assert_eq!(table.fences.len(), 1);
        assert_eq!(table.fences[0].id, fenced.to_string());
        assert_eq!(table.claims.len(), 1);
        assert_eq!(table.claims[0].expires_at, 20);
    }

    #[test]
    fn the_default_safe_age_outlasts_any_create() {
        let create = crate::time_budget::WRITE_BUDGET + crate::time_budget::UNDO_BUDGET;
        assert!(DEFAULT_MIN_SECRET_AGE > create * 10);
    }
}
