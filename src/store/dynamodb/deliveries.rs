//! The delivery log table (DELIVERY-LOG.md): events once, deliveries with their attempts.
//! The API reads it through [`DeliveryLog`]; the pipeline writes it through the functions
//! below (`src/pipeline/store.rs` puts them in its transactions). Every read is a `GetItem`,
//! a `BatchGetItem` or a `Query` on a key or an index, never a scan. docs/TABLES.md has the
//! key design.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, PutRequest, ReturnValue, ReturnValuesOnConditionCheckFailure, Update,
    WriteRequest,
};
use aws_sdk_dynamodb::Client;
use time::OffsetDateTime;
use uuid::Uuid;

use super::codec::{get_s, n, s};
use super::expression::build;
use super::schema::{
    attempt_attribute, delivery_key, event_key, time_key, time_key_prefix, ATTEMPT, ATTEMPTED_AT,
    ATTEMPT_ATTRIBUTE_PREFIX, ATTEMPT_COUNT, ATTEMPT_WEBHOOK_ID, CLAIM, COMPANY_ID, CREATED_AT,
    CREATED_KEY, DATA, DELIVERIES_BY_WEBHOOK_INDEX, DELIVERY_ID, DELIVERY_STATUS, DURATION_MS,
    EVENT, EVENTS_BY_COMPANY_INDEX, EVENT_ID, EXPIRES_AT, HTTP_STATUS, LAST_ATTEMPT_AT,
    LAST_HTTP_STATUS, LOG_ID, MESSAGE_ID, NEXT_ATTEMPT_AT, OCCURRED_AT, OCCURRED_KEY, OUTCOME,
    REASON, RECEIVED_AT, RECOVERED_BY,
};
use super::Item;
use crate::domain::time_format::{parse_rfc3339, rfc3339};
use crate::domain::EventType;
use crate::store::aws_error::classify;
use crate::store::delivery_log::{
    Attempt, Delivery, DeliveryFilter, DeliveryLog, DeliveryPage, DeliveryStatus, EventHead,
    EventId, LoggedEvent, ResendMark, DELIVERY_TTL_SECONDS, EVENT_TTL_SECONDS,
};
use crate::store::StoreError;

/// The delivery log table.
#[derive(Clone, Debug)]
pub struct DynamoDeliveryLog {
    client: Client,
    table: String,
}

fn epoch_ms(at: OffsetDateTime) -> i128 {
    at.unix_timestamp_nanos() / 1_000_000
}

fn get_n<T: std::str::FromStr>(item: &Item, name: &str) -> Option<T> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn from_unix(seconds: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(seconds).ok()
}

fn malformed(operation: &'static str) -> StoreError {
    StoreError::Failed {
        operation,
        kind: "malformed delivery log item".into(),
    }
}

// ----- Items -----

/// An event's item: kept 30 days from when it was accepted.
pub fn event_item(event: &LoggedEvent) -> Item {
    let mut item = HashMap::from([
        (LOG_ID.to_owned(), s(&event_key(event.id.as_str()))),
        (EVENT_ID.to_owned(), s(event.id.as_str())),
        (EVENT.to_owned(), s(event.event.as_str())),
        (OCCURRED_AT.to_owned(), s(&rfc3339(event.occurred_at))),
        (
            OCCURRED_KEY.to_owned(),
            s(&time_key(epoch_ms(event.occurred_at), event.id.as_str())),
        ),
        (RECEIVED_AT.to_owned(), s(&rfc3339(event.received_at))),
        (DATA.to_owned(), s(&event.data.to_string())),
        (
            EXPIRES_AT.to_owned(),
            n(event.received_at.unix_timestamp() + EVENT_TTL_SECONDS),
        ),
    ]);
    // Without a company (operational events, pings) an event is not in the company index.
    if let Some(company) = event.company_id {
        item.insert(COMPANY_ID.to_owned(), s(&company.to_string()));
    }
    item
}

pub fn event_from_item(item: &Item) -> Option<LoggedEvent> {
    Some(LoggedEvent {
        id: EventId::parse(get_s(item, EVENT_ID)?)?,
        event: EventType::parse(get_s(item, EVENT)?)?,
        company_id: match get_s(item, COMPANY_ID) {
            Some(text) => Some(Uuid::try_parse(text).ok()?),
            None => None,
        },
        occurred_at: parse_rfc3339(get_s(item, OCCURRED_AT)?)?,
        received_at: parse_rfc3339(get_s(item, RECEIVED_AT)?)?,
        data: serde_json::from_str(get_s(item, DATA)?).ok()?,
    })
}

/// A new delivery's item (no attempt yet, or the test ping's one): kept a day longer than
/// its event.
pub fn delivery_item(delivery: &Delivery) -> Item {
    let mut item = HashMap::from([
        (LOG_ID.to_owned(), s(&delivery_key(delivery.id))),
        (DELIVERY_ID.to_owned(), s(&delivery.id.to_string())),
        (
            ATTEMPT_WEBHOOK_ID.to_owned(),
            s(&delivery.webhook_id.to_string()),
        ),
        (EVENT_ID.to_owned(), s(delivery.event_id.as_str())),
        (EVENT.to_owned(), s(delivery.event.as_str())),
        (DELIVERY_STATUS.to_owned(), s(delivery.status.as_str())),
        (CREATED_AT.to_owned(), s(&rfc3339(delivery.created_at))),
        (
            CREATED_KEY.to_owned(),
            s(&time_key(
                epoch_ms(delivery.created_at),
                &delivery.id.to_string(),
            )),
        ),
        (ATTEMPT_COUNT.to_owned(), n(delivery.attempt_count())),
        (
            EXPIRES_AT.to_owned(),
            n(delivery.created_at.unix_timestamp() + DELIVERY_TTL_SECONDS),
        ),
    ]);
    if let Some(at) = delivery.last_attempt_at {
        item.insert(LAST_ATTEMPT_AT.to_owned(), s(&rfc3339(at)));
    }
    if let Some(status) = delivery.last_http_status {
        item.insert(LAST_HTTP_STATUS.to_owned(), n(status));
    }
    if let Some(at) = delivery.next_attempt_at {
        item.insert(NEXT_ATTEMPT_AT.to_owned(), n(at.unix_timestamp()));
    }
    for attempt in &delivery.attempts {
        let entry = AttemptEntry {
            attempt: attempt.clone(),
            message_id: None,
            claim: None,
            next_attempt_at: None,
        };
        item.insert(attempt_attribute(attempt.attempt), entry.value());
    }
    item
}

pub fn delivery_from_item(item: &Item) -> Option<Delivery> {
    let mut attempts: Vec<Attempt> = item
        .iter()
        .filter(|(name, _)| name.starts_with(ATTEMPT_ATTRIBUTE_PREFIX))
        .filter_map(|(_, value)| AttemptEntry::of(value).map(|entry| entry.attempt))
        .collect();
    attempts.sort_by_key(|a| a.attempt);
    Some(Delivery {
        id: Uuid::try_parse(get_s(item, DELIVERY_ID)?).ok()?,
        webhook_id: Uuid::try_parse(get_s(item, ATTEMPT_WEBHOOK_ID)?).ok()?,
        event_id: EventId::parse(get_s(item, EVENT_ID)?)?,
        event: EventType::parse(get_s(item, EVENT)?)?,
        status: DeliveryStatus::parse(get_s(item, DELIVERY_STATUS)?)?,
        created_at: parse_rfc3339(get_s(item, CREATED_AT)?)?,
        last_attempt_at: get_s(item, LAST_ATTEMPT_AT).and_then(parse_rfc3339),
        last_http_status: get_n(item, LAST_HTTP_STATUS),
        next_attempt_at: get_n(item, NEXT_ATTEMPT_AT).and_then(from_unix),
        attempts,
    })
}

/// One attempt as its delivery's attribute holds it: what is listed, and what the pipeline
/// needs to make each attempt once (the message and run that wrote it, the next attempt's
/// time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptEntry {
    pub attempt: Attempt,
    pub message_id: Option<String>,
    pub claim: Option<String>,
    /// Epoch seconds of the next attempt planned after this one (failures).
    pub next_attempt_at: Option<i64>,
}

impl AttemptEntry {
    pub fn value(&self) -> AttributeValue {
        let a = &self.attempt;
        let mut map = HashMap::from([
            (ATTEMPT.to_owned(), n(a.attempt)),
            (ATTEMPTED_AT.to_owned(), s(&rfc3339(a.at))),
            (OUTCOME.to_owned(), s(&a.outcome)),
        ]);
        if let Some(reason) = &a.reason {
            map.insert(REASON.to_owned(), s(reason));
        }
        if let Some(status) = a.http_status {
            map.insert(HTTP_STATUS.to_owned(), n(status));
        }
        if let Some(ms) = a.duration_ms {
            map.insert(DURATION_MS.to_owned(), n(ms));
        }
        if let Some(id) = &self.message_id {
            map.insert(MESSAGE_ID.to_owned(), s(id));
        }
        if let Some(claim) = &self.claim {
            map.insert(CLAIM.to_owned(), s(claim));
        }
        if let Some(at) = self.next_attempt_at {
            map.insert(NEXT_ATTEMPT_AT.to_owned(), n(at));
        }
        AttributeValue::M(map)
    }

    pub fn of(value: &AttributeValue) -> Option<Self> {
        let map = value.as_m().ok()?;
        Some(Self {
            attempt: Attempt {
                attempt: get_n(map, ATTEMPT)?,
                at: parse_rfc3339(get_s(map, ATTEMPTED_AT)?)?,
                outcome: get_s(map, OUTCOME)?.to_owned(),
                http_status: get_n(map, HTTP_STATUS),
                duration_ms: get_n(map, DURATION_MS),
                reason: get_s(map, REASON).map(str::to_owned),
            },
            message_id: get_s(map, MESSAGE_ID).map(str::to_owned),
            claim: get_s(map, CLAIM).map(str::to_owned),
            next_attempt_at: get_n(map, NEXT_ATTEMPT_AT),
        })
    }

    /// Attempt `attempt`'s entry in a delivery's item, if it was made.
    pub fn in_item(item: &Item, attempt: u32) -> Option<Self> {
        item.get(&attempt_attribute(attempt)).and_then(Self::of)
    }
}

/// What the recording of one attempt sets on its delivery.
#[derive(Clone, Debug)]
pub struct AttemptWrite {
    pub delivery_id: Uuid,
    pub webhook_id: Uuid,
    pub event_id: Option<EventId>,
    pub event: String,
    pub entry: AttemptEntry,
    /// The delivery's status after it: `delivered`, `pending` (a retry follows) or `failed`.
    pub status: DeliveryStatus,
}

impl DynamoDeliveryLog {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// The update that records an attempt on its delivery, only if that attempt has no entry
    /// yet (`attribute_not_exists`): each attempt is written once however often its message
    /// comes back. The fields a delivery is listed by are set if absent, so that a delivery
    /// queued before the log existed gets a complete item. On refusal DynamoDB hands the old
    /// item back, whose entry tells who made the attempt.
    pub fn attempt_update(&self, write: &AttemptWrite) -> Result<Update, StoreError> {
        let a = &write.entry.attempt;
        let created_key = time_key(epoch_ms(a.at), &write.delivery_id.to_string());
        let mut set = vec![
            "#a = :entry",
            "#status = :status",
            "#last = :at",
            "#count = if_not_exists(#count, :zero) + :one",
            "#did = if_not_exists(#did, :did)",
            "#wid = if_not_exists(#wid, :wid)",
            "#event = if_not_exists(#event, :event)",
            "#created = if_not_exists(#created, :at)",
            "#ckey = if_not_exists(#ckey, :ckey)",
            "#ttl = if_not_exists(#ttl, :ttl)",
        ];
        let mut remove = Vec::new();
        let mut update = Update::builder()
            .table_name(&self.table)
            .key(LOG_ID, s(&delivery_key(write.delivery_id)))
            .condition_expression("attribute_not_exists(#a)")
            .expression_attribute_names("#a", attempt_attribute(a.attempt))
            .expression_attribute_names("#status", DELIVERY_STATUS)
            .expression_attribute_names("#last", LAST_ATTEMPT_AT)
            .expression_attribute_names("#count", ATTEMPT_COUNT)
            .expression_attribute_names("#did", DELIVERY_ID)
            .expression_attribute_names("#wid", ATTEMPT_WEBHOOK_ID)
            .expression_attribute_names("#event", EVENT)
            .expression_attribute_names("#created", CREATED_AT)
            .expression_attribute_names("#ckey", CREATED_KEY)
            .expression_attribute_names("#ttl", EXPIRES_AT)
            .expression_attribute_names("#http", LAST_HTTP_STATUS)
            .expression_attribute_names("#next", NEXT_ATTEMPT_AT)
            .expression_attribute_values(":entry", write.entry.value())
            .expression_attribute_values(":status", s(write.status.as_str()))
            .expression_attribute_values(":at", s(&rfc3339(a.at)))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":did", s(&write.delivery_id.to_string()))
            .expression_attribute_values(":wid", s(&write.webhook_id.to_string()))
            .expression_attribute_values(":event", s(&write.event))
            .expression_attribute_values(":ckey", s(&created_key))
            .expression_attribute_values(":ttl", n(a.at.unix_timestamp() + DELIVERY_TTL_SECONDS))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        match a.http_status {
            Some(status) => {
                set.push("#http = :http");
                update = update.expression_attribute_values(":http", n(status));
            }
            None => remove.push("#http"),
        }
        match (write.status, write.entry.next_attempt_at) {
            (DeliveryStatus::Pending, Some(at)) => {
                set.push("#next = :next");
                update = update.expression_attribute_values(":next", n(at));
            }
            _ => remove.push("#next"),
        }
        if let Some(event_id) = &write.event_id {
            set.push("#eid = if_not_exists(#eid, :eid)");
            update = update
                .expression_attribute_names("#eid", EVENT_ID)
                .expression_attribute_values(":eid", s(event_id.as_str()));
        }
        let mut expression = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        build(update.update_expression(expression).build())
    }

    /// Stores an event once: a second publish, a redrive or a recover finds it there and
    /// leaves it as first stored.
    pub async fn put_event_once(&self, event: &LoggedEvent) -> Result<(), StoreError> {
        const OPERATION: &str = "dynamodb.PutItem(event)";
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(event_item(event)))
            .condition_expression("attribute_not_exists(#id)")
            .expression_attribute_names("#id", LOG_ID)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) => match error.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(_)) => Ok(()),
                _ => Err(classify(OPERATION, &error)),
            },
        }
    }

    /// Creates a delivery if it has no item yet, and answers the status it has now: the new
    /// one, or the one a fan-out that ran before (a redrive, a second publish) left.
    pub async fn create_delivery(&self, delivery: &Delivery) -> Result<DeliveryStatus, StoreError> {
        const OPERATION: &str = "dynamodb.PutItem(delivery)";
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(delivery_item(delivery)))
            .condition_expression("attribute_not_exists(#id)")
            .expression_attribute_names("#id", LOG_ID)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(delivery.status),
            Err(error) => match error.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(failed)) => Ok(failed
                    .item()
                    .and_then(|item| get_s(item, DELIVERY_STATUS))
                    .and_then(DeliveryStatus::parse)
                    // Not handed back: take it as on its way, which queues it once more (the
                    // attempt's own record keeps it from being made twice).
                    .unwrap_or(DeliveryStatus::Pending)),
                _ => Err(classify(OPERATION, &error)),
            },
        }
    }

    /// Moves a delivery from one of `from` to `to` (`skipped` when its next attempt meets an
    /// inactive webhook or an open circuit; `pending` when recover queues it). Answers
    /// whether it moved; an absent delivery is created only when `create` is given.
    pub async fn move_status(
        &self,
        delivery_id: Uuid,
        from: &[DeliveryStatus],
        to: DeliveryStatus,
        create: Option<&Delivery>,
    ) -> Result<bool, StoreError> {
        self.move_status_by(delivery_id, from, to, create, None)
            .await
    }

    /// Records a `pending` delivery as `skipped`: not attempted (again), recoverable. Answers
    /// whether it moved (a delivery in another status, or none, is left as it is).
    pub async fn skip_pending(&self, delivery_id: Uuid) -> Result<bool, StoreError> {
        self.move_status(
            delivery_id,
            &[DeliveryStatus::Pending],
            DeliveryStatus::Skipped,
            None,
        )
        .await
    }

    /// [`Self::move_status`], marking the move with `by` (recover: its step's SQS message id,
    /// [`RECOVERED_BY`]). A move refused because the delivery is at `to` already under the
    /// same mark is this caller's own (a retried write whose first try landed, or the same
    /// message come back): it answers moved, so that the caller queues it. Without that, a
    /// lost answer left the delivery `pending` with no message on its way, never sent.
    pub async fn move_status_by(
        &self,
        delivery_id: Uuid,
        from: &[DeliveryStatus],
        to: DeliveryStatus,
        create: Option<&Delivery>,
        by: Option<&str>,
    ) -> Result<bool, StoreError> {
        const OPERATION: &str = "dynamodb.UpdateItem(delivery status)";
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(LOG_ID, s(&delivery_key(delivery_id)))
            .expression_attribute_names("#status", DELIVERY_STATUS)
            .expression_attribute_names("#next", NEXT_ATTEMPT_AT)
            .expression_attribute_values(":to", s(to.as_str()));
        let mut allowed: Vec<String> = Vec::new();
        for (i, status) in from.iter().enumerate() {
            let placeholder = format!(":from{i}");
            request = request.expression_attribute_values(&placeholder, s(status.as_str()));
            allowed.push(placeholder);
        }
        let mut condition = format!("#status IN ({})", allowed.join(", "));
        let mut set = vec!["#status = :to".to_owned()];
        if let Some(by) = by {
            set.push("#by = :by".to_owned());
            request = request
                .expression_attribute_names("#by", RECOVERED_BY)
                .expression_attribute_values(":by", s(by))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                );
        }
        match create {
            None => {
                condition = format!("attribute_exists(#id) AND {condition}");
                request = request.expression_attribute_names("#id", LOG_ID);
            }
            Some(new) => {
                condition = format!("attribute_not_exists(#id) OR {condition}");
                request = request.expression_attribute_names("#id", LOG_ID);
                for (name, value) in delivery_item(new) {
                    if name == LOG_ID || name == DELIVERY_STATUS || name == NEXT_ATTEMPT_AT {
                        continue;
                    }
                    let (pn, pv) = (format!("#c_{name}"), format!(":c_{name}"));
                    set.push(format!("{pn} = if_not_exists({pn}, {pv})"));
                    request = request
                        .expression_attribute_names(&pn, &name)
                        .expression_attribute_values(&pv, value);
                }
            }
        }
        let result = request
            .condition_expression(condition)
            .update_expression(format!("SET {} REMOVE #next", set.join(", ")))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error) => match error.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => Ok(by
                    .is_some_and(|by| {
                        failed.item().is_some_and(|item| {
                            get_s(item, DELIVERY_STATUS) == Some(to.as_str())
                                && get_s(item, RECOVERED_BY) == Some(by)
                        })
                    })),
                _ => Err(classify(OPERATION, &error)),
            },
        }
    }

    /// Events of `company` that occurred in `[since, until)`, oldest first, from the index by
    /// company (recover's walk): without their `data` (read later, for those queued). One
    /// page; `after` is the previous page's last [`OCCURRED_KEY`].
    pub async fn events_of_company(
        &self,
        company: Uuid,
        since: OffsetDateTime,
        until: OffsetDateTime,
        after: Option<&str>,
    ) -> Result<(Vec<EventHead>, Option<String>), StoreError> {
        const OPERATION: &str = "dynamodb.Query(events by company)";
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(EVENTS_BY_COMPANY_INDEX)
            .key_condition_expression("#company = :company AND #key BETWEEN :lo AND :hi")
            .projection_expression("#id, #company, #key, #eid, #event, #received")
            .expression_attribute_names("#id", LOG_ID)
            .expression_attribute_names("#company", COMPANY_ID)
            .expression_attribute_names("#key", OCCURRED_KEY)
            .expression_attribute_names("#eid", EVENT_ID)
            .expression_attribute_names("#event", EVENT)
            .expression_attribute_names("#received", RECEIVED_AT)
            .expression_attribute_values(":company", s(&company.to_string()))
            .expression_attribute_values(":lo", s(&time_key_prefix(epoch_ms(since))))
            // Keys of `until`'s millisecond sort after the bare prefix: excluded.
            .expression_attribute_values(":hi", s(&time_key_prefix(epoch_ms(until))));
        if let Some(after) = after {
            let id = after.split_once('#').map(|(_, id)| id).unwrap_or_default();
            query = query.set_exclusive_start_key(Some(HashMap::from([
                (LOG_ID.to_owned(), s(&event_key(id))),
                (COMPANY_ID.to_owned(), s(&company.to_string())),
                (OCCURRED_KEY.to_owned(), s(after)),
            ])));
        }
        let output = query.send().await.map_err(|e| classify(OPERATION, &e))?;
        let heads = output
            .items()
            .iter()
            .map(|item| event_head_from_item(item).ok_or_else(|| malformed(OPERATION)))
            .collect::<Result<Vec<_>, _>>()?;
        let next = output
            .last_evaluated_key()
            .and_then(|key| get_s(key, OCCURRED_KEY))
            .map(str::to_owned);
        Ok((heads, next))
    }

    /// Items by key, in one `BatchGetItem` per 100 (consistent), unprocessed keys asked again.
    pub async fn get_items(&self, keys: &[String]) -> Result<HashMap<String, Item>, StoreError> {
        const OPERATION: &str = "dynamodb.BatchGetItem(delivery log)";
        let mut found = HashMap::new();
        for chunk in keys.chunks(100) {
            let mut request: Vec<Item> = chunk
                .iter()
                .map(|key| HashMap::from([(LOG_ID.to_owned(), s(key))]))
                .collect();
            for _ in 0..5 {
                if request.is_empty() {
                    break;
                }
                let keys_and = build(
                    aws_sdk_dynamodb::types::KeysAndAttributes::builder()
                        .set_keys(Some(request.clone()))
                        .consistent_read(true)
                        .build(),
                )?;
                let output = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, keys_and)
                    .send()
                    .await
                    .map_err(|e| classify(OPERATION, &e))?;
                for item in output
                    .responses()
                    .and_then(|r| r.get(&self.table))
                    .cloned()
                    .unwrap_or_default()
                {
                    if let Some(key) = get_s(&item, LOG_ID) {
                        found.insert(key.to_owned(), item);
                    }
                }
                request = output
                    .unprocessed_keys()
                    .and_then(|u| u.get(&self.table))
                    .map(|k| k.keys().to_vec())
                    .unwrap_or_default();
            }
            if !request.is_empty() {
                return Err(StoreError::Unavailable {
                    operation: OPERATION,
                    kind: "keys left unprocessed".into(),
                });
            }
        }
        Ok(found)
    }

    async fn get_item(
        &self,
        key: &str,
        operation: &'static str,
    ) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(LOG_ID, s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify(operation, &e))?;
        Ok(output.item)
    }
}

/// An event's head, as recover's walk reads it from the index by company.
fn event_head_from_item(item: &Item) -> Option<EventHead> {
    Some(EventHead {
        id: EventId::parse(get_s(item, EVENT_ID)?)?,
        event: EventType::parse(get_s(item, EVENT)?)?,
        occurred_key: get_s(item, OCCURRED_KEY)?.to_owned(),
        received_at: parse_rfc3339(get_s(item, RECEIVED_AT)?)?,
    })
}

/// The recover step (its SQS message id) that last moved a delivery's item to `pending`.
pub fn recovered_by(item: &Item) -> Option<&str> {
    get_s(item, RECOVERED_BY)
}

/// The key of `event_id`'s item (for [`DynamoDeliveryLog::get_items`]).
pub fn event_item_key(event_id: &EventId) -> String {
    event_key(event_id.as_str())
}

/// The key of a delivery's item.
pub fn delivery_item_key(delivery_id: Uuid) -> String {
    delivery_key(delivery_id)
}

impl DeliveryLog for DynamoDeliveryLog {
    async fn list(
        &self,
        webhook_id: Uuid,
        filter: &DeliveryFilter,
        limit: u32,
        after: Option<&str>,
    ) -> Result<DeliveryPage, StoreError> {
        const OPERATION: &str = "dynamodb.Query(deliveries by webhook)";
        let mut deliveries = Vec::new();
        let mut start = after.map(str::to_owned);
        // Filters apply after the key range, so a page may come back short: a few more reads
        // fill it, each asking only for what is missing (so none overshoots the page).
        for _ in 0..4 {
            let mut range = vec!["#wid = :wid".to_owned()];
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(DELIVERIES_BY_WEBHOOK_INDEX)
                .scan_index_forward(false)
                .limit((limit as usize - deliveries.len()) as i32)
                .expression_attribute_names("#wid", ATTEMPT_WEBHOOK_ID)
                .expression_attribute_values(":wid", s(&webhook_id.to_string()));
            match (filter.since, filter.until) {
                (Some(since), Some(until)) => {
                    range.push("#ckey BETWEEN :lo AND :hi".into());
                    query = query
                        .expression_attribute_values(":lo", s(&time_key_prefix(epoch_ms(since))))
                        .expression_attribute_values(":hi", s(&time_key_prefix(epoch_ms(until))));
                }
                (Some(since), None) => {
                    range.push("#ckey >= :lo".into());
                    query = query
                        .expression_attribute_values(":lo", s(&time_key_prefix(epoch_ms(since))));
                }
                (None, Some(until)) => {
                    range.push("#ckey < :hi".into());
                    query = query
                        .expression_attribute_values(":hi", s(&time_key_prefix(epoch_ms(until))));
                }
                (None, None) => {}
            }
            if range.len() > 1 {
                query = query.expression_attribute_names("#ckey", CREATED_KEY);
            }
            let mut filters = Vec::new();
            if let Some(status) = filter.status {
                filters.push("#status = :status");
                query = query
                    .expression_attribute_names("#status", DELIVERY_STATUS)
                    .expression_attribute_values(":status", s(status.as_str()));
            }
            if let Some(event) = filter.event {
                filters.push("#event = :event");
                query = query
                    .expression_attribute_names("#event", EVENT)
                    .expression_attribute_values(":event", s(event.as_str()));
            }
            if !filters.is_empty() {
                query = query.filter_expression(filters.join(" AND "));
            }
            if let Some(position) = &start {
                let id = position
                    .split_once('#')
                    .and_then(|(_, id)| Uuid::try_parse(id).ok())
                    .ok_or_else(|| malformed(OPERATION))?;
                query = query.set_exclusive_start_key(Some(HashMap::from([
                    (LOG_ID.to_owned(), s(&delivery_key(id))),
                    (ATTEMPT_WEBHOOK_ID.to_owned(), s(&webhook_id.to_string())),
                    (CREATED_KEY.to_owned(), s(position)),
                ])));
            }
            let output = query
                .key_condition_expression(range.join(" AND "))
                .send()
                .await
                .map_err(|e| classify(OPERATION, &e))?;
            for item in output.items() {
                deliveries.push(delivery_from_item(item).ok_or_else(|| malformed(OPERATION))?);
            }
            start = output
                .last_evaluated_key()
                .and_then(|key| get_s(key, CREATED_KEY))
                .map(str::to_owned);
            if start.is_none() || deliveries.len() >= limit as usize {
                break;
            }
        }
        Ok(DeliveryPage {
            deliveries,
            next: start,
        })
    }

    async fn get(
        &self,
        delivery_id: Uuid,
    ) -> Result<Option<(Delivery, Option<LoggedEvent>)>, StoreError> {
        const OPERATION: &str = "dynamodb.GetItem(delivery)";
        let Some(item) = self.get_item(&delivery_key(delivery_id), OPERATION).await? else {
            return Ok(None);
        };
        let delivery = delivery_from_item(&item).ok_or_else(|| malformed(OPERATION))?;
        let event = self
            .get_item(
                &event_key(delivery.event_id.as_str()),
                "dynamodb.GetItem(event)",
            )
            .await?
            .and_then(|item| event_from_item(&item));
        Ok(Some((delivery, event)))
    }

    async fn mark_resend(&self, delivery_id: Uuid) -> Result<ResendMark, StoreError> {
        const OPERATION: &str = "dynamodb.UpdateItem(mark resend)";
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(LOG_ID, s(&delivery_key(delivery_id)))
            .update_expression("SET #status = :pending REMOVE #next")
            .condition_expression("attribute_exists(#id) AND #status <> :pending")
            .expression_attribute_names("#id", LOG_ID)
            .expression_attribute_names("#status", DELIVERY_STATUS)
            .expression_attribute_names("#next", NEXT_ATTEMPT_AT)
            .expression_attribute_values(":pending", s(DeliveryStatus::Pending.as_str()))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(output) => {
                let delivery = output
                    .attributes()
                    .and_then(delivery_from_item)
                    .ok_or_else(|| malformed(OPERATION))?;
                Ok(ResendMark::Marked {
                    attempt: delivery.next_attempt_number(),
                })
            }
            Err(error) => match error.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                    Ok(match failed.item() {
                        Some(_) => ResendMark::AlreadyPending,
                        None => ResendMark::NotFound,
                    })
                }
                _ => Err(classify(OPERATION, &error)),
            },
        }
    }

    async fn unmark_resend(
        &self,
        delivery_id: Uuid,
        status: DeliveryStatus,
    ) -> Result<(), StoreError> {
        self.move_status(delivery_id, &[DeliveryStatus::Pending], status, None)
            .await
            .map(|_| ())
    }

    async fn record_ping(
        &self,
        event: &LoggedEvent,
        delivery: &Delivery,
    ) -> Result<(), StoreError> {
        const OPERATION: &str = "dynamodb.BatchWriteItem(ping)";
        let put = |item: Item| {
            build(PutRequest::builder().set_item(Some(item)).build())
                .map(|put| WriteRequest::builder().put_request(put).build())
        };
        let mut requests = vec![put(event_item(event))?, put(delivery_item(delivery))?];
        for _ in 0..5 {
            let output = self
                .client
                .batch_write_item()
                .request_items(&self.table, requests)
                .send()
                .await
                .map_err(|e| classify(OPERATION, &e))?;
            requests = output
                .unprocessed_items()
                .and_then(|u| u.get(&self.table))
                .cloned()
                .unwrap_or_default();
            if requests.is_empty() {
                return Ok(());
            }
        }
        Err(StoreError::Unavailable {
            operation: OPERATION,
            kind: "items left unprocessed".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::delivery_log::delivery_id;

    fn at(text: &str) -> OffsetDateTime {
        parse_rfc3339(text).unwrap()
    }

    #[test]
    fn events_and_deliveries_read_back_as_written() {
        let event = LoggedEvent {
            id: EventId::parse("evt-1").unwrap(),
            event: EventType::InterviewCompleted,
            company_id: Some(Uuid::from_u128(9)),
            occurred_at: at("2026-12-04T10:00:00Z"),
            received_at: at("2026-12-04T10:00:01Z"),
            data: serde_json::json!({"interviewId": "i-1", "n": [1, 2]}),
        };
        let item = event_item(&event);
        assert_eq!(event_from_item(&item).unwrap(), event);
        assert_eq!(get_s(&item, OCCURRED_KEY).unwrap(), "1796378400000#evt-1");
        let webhook = Uuid::from_u128(5);
        let delivery = Delivery {
            id: delivery_id(&event.id, webhook),
            webhook_id: webhook,
            event_id: event.id.clone(),
            event: event.event,
            status: DeliveryStatus::Delivered,
            created_at: at("2026-12-04T10:00:01Z"),
            last_attempt_at: Some(at("2026-12-04T10:00:02Z")),
            last_http_status: Some(200),
            next_attempt_at: None,
            attempts: vec![Attempt {
                attempt: 1,
                at: at("2026-12-04T10:00:02Z"),
                outcome: "delivered".into(),
                http_status: Some(200),
                duration_ms: Some(12),
                reason: None,
            }],
        };
        let item = delivery_item(&delivery);
        assert_eq!(delivery_from_item(&item).unwrap(), delivery);
        assert_eq!(
            get_n::<i64>(&item, EXPIRES_AT).unwrap() - delivery.created_at.unix_timestamp(),
            DELIVERY_TTL_SECONDS
        );
        assert!(item.keys().all(|k| k != "body" && k != "secret"));
    }
}
