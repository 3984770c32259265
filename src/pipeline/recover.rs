//! `POST /webhooks/{id}/recover`, worked off by the delivery function (DELIVERY-LOG.md,
//! "Recover"). The API queues a [`RecoverMessage`] on the deliveries queue and answers at once;
//! here:
//! 1. the webhook, its key and its companies are read as fan-out would read them now (gone,
//!    inactive or circuit open: nothing is queued);
//! 2. the window's events are walked on the log's index by company (`Query`, paged; never a
//!    scan), keeping those of the types the webhook subscribes to, in `occurredAt` order;
//! 3. their deliveries to this webhook are read in `BatchGetItem`s of 100: a `delivered` or
//!    `pending` one is left alone; a `failed` or `skipped` one, or none at all for an event
//!    accepted after the webhook was created, is moved to `pending` by one conditional write
//!    each (so two recovers of one window queue each delivery once), marked with this
//!    message's id (so that a write retried after a lost answer, or this message come back,
//!    queues what it moved: none is left `pending` with no message on its way);
//! 4. each is queued under its one delivery id, paced at the webhook's rate (`notBefore` and
//!    a message delay: `RECOVER_RATE_PER_SECOND`, default 10), so that an endpoint just back
//!    is not flooded into opening its circuit again;
//! 5. when the function's time runs short, the message is queued again with where it stopped.

use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::task::JoinSet;

use super::deliver::{DeliverError, Deliverer, Handled};
use super::keys;
use super::messages::{DeliveryMessage, RecoverMessage};
use super::ports::{PipelineStorage, Queue, Transport};
use crate::delivery::DeliveryBody;
use crate::store::delivery_log::{delivery_id, Delivery, DeliveryStatus, EventHead, EventId};
use crate::store::SecretStore;

/// Events handled per step: one `BatchGetItem` of their deliveries.
const CHUNK: usize = 100;
/// Time a step needs at most (reads, up to 100 writes, sends): none is begun with less left.
const STEP_TIME: Duration = Duration::from_secs(15);

/// Works off (a step of) a recover.
pub(super) async fn work<S, Q, X, T>(
    deliverer: &Deliverer<S, Q, X, T>,
    mut message: RecoverMessage,
    message_id: &str,
    deadline: Instant,
) -> Result<Handled, DeliverError>
where
    S: PipelineStorage,
    Q: Queue,
    X: SecretStore + 'static,
    T: Transport,
{
    let job = message.job.clone();
    let now = OffsetDateTime::now_utc();
    let stopped = |why: &'static str| {
        tracing::info!(
            webhook_id = %job.webhook_id,
            reason = why,
            queued = message.queued,
            "recover stopped"
        );
        Ok(Handled::Dropped(why))
    };
    let Some(stored) = deliverer.store.webhook(job.webhook_id).await? else {
        return stopped("webhook deleted");
    };
    let webhook = &stored.webhook;
    if !webhook.is_active {
        return stopped("webhook inactive");
    }
    if webhook.circuit_opened_at.is_some() {
        return stopped("circuit open");
    }
    // Today's subscription, company and key decide, as fan-out would decide now.
    let key = deliverer.store.api_key(&webhook.api_key_id).await?;
    let companies: Vec<_> = match webhook.company_id {
        Some(company) => vec![company],
        None => key
            .as_ref()
            .map(|key| key.company_ids.clone())
            .unwrap_or_default(),
    }
    .into_iter()
    .filter(|company| keys::refusal(key.as_ref(), Some(*company), now).is_none())
    .collect();

    // A next step walks on from the millisecond where the last one stopped (the filter below
    // drops what it did there), not from `since` again: re-reading the whole window at every
    // step made a recover of n events read about n^2/200 index entries.
    let walk_since = message
        .after
        .as_deref()
        .and_then(|after| after.split_once('#'))
        .and_then(|(ms, _)| ms.parse::<i128>().ok())
        .and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000).ok())
        .map_or(job.since, |at| at.max(job.since));
    let mut heads: Vec<EventHead> = Vec::new();
    for company in companies {
        let mut page: Option<String> = None;
        loop {
            let (found, next) = deliverer
                .store
                .events_of_company(company, walk_since, job.until, page.as_deref())
                .await?;
            heads.extend(found.into_iter().filter(|head| {
                webhook.events.contains(&head.event)
                    && message
                        .after
                        .as_deref()
                        .is_none_or(|after| head.occurred_key.as_str() > after)
            }));
            match next {
                Some(next) => page = Some(next),
                None => break,
            }
        }
    }
    heads.sort_by(|a, b| a.occurred_key.cmp(&b.occurred_key));
    heads.dedup_by(|a, b| a.id == b.id);

    let rate = deliverer.recover_rate.max(1) as u64;
    let start = message.paced_until.unwrap_or(0).max(now.unix_timestamp());
    let mut paced = 0u64;
    let mut queued_now = 0u64;
    for chunk in heads.chunks(CHUNK) {
        if Instant::now() + STEP_TIME > deadline {
            // Where this step stopped; the next one starts there and paces after this one's.
            // Rounded up: the next step must not add sends to a second this one began
            // (rounded down, that second could get up to twice the rate).
            message.paced_until = Some(start + paced.div_ceil(rate) as i64);
            message.queued += queued_now;
            deliverer
                .queues
                .send(
                    &deliverer.deliveries_queue_url,
                    &message.to_json(),
                    Duration::ZERO,
                )
                .await?;
            tracing::info!(
                webhook_id = %job.webhook_id,
                queued = message.queued,
                after = message.after.as_deref(),
                "recover continues in a next step"
            );
            return Ok(Handled::Recovering {
                queued: message.queued,
                done: false,
            });
        }
        let ids: Vec<_> = chunk
            .iter()
            .map(|head| delivery_id(&head.id, webhook.id))
            .collect();
        let found = deliverer.store.deliveries(&ids).await?;
        let mut moves = JoinSet::new();
        for (head, id) in chunk.iter().zip(&ids) {
            let existing = found.get(id).map(|found| &found.delivery);
            // A `pending` one this very message moved is its own (it came back before queuing
            // it, or after): queued again, under the same id and attempt number.
            let ours = found
                .get(id)
                .and_then(|found| found.recovered_by.as_deref())
                .is_some_and(|by| by == message_id);
            let next_attempt = match existing {
                Some(d) if d.status == DeliveryStatus::Delivered => continue,
                Some(d) if d.status == DeliveryStatus::Pending && !ours => continue,
                Some(d) => d.next_attempt_number(),
                // Never delivered to it: only events accepted after the webhook was created.
                None if head.received_at < webhook.created_at => continue,
                None => 1,
            };
            let new = Delivery {
                id: *id,
                webhook_id: webhook.id,
                event_id: head.id.clone(),
                event: head.event,
                status: DeliveryStatus::Pending,
                created_at: now,
                last_attempt_at: None,
                last_http_status: None,
                next_attempt_at: None,
                attempts: Vec::new(),
            };
            let log = deliverer.store.clone();
            let head = head.clone();
            let by = message_id.to_owned();
            moves.spawn(async move {
                // Marked with this step's message id: a retried write whose first try landed,
                // or this message come back, finds its own move and queues it (a `pending`
                // moved by another recover is left to that one).
                let moved = log.move_to_pending(&new, &by).await;
                (head, next_attempt, moved)
            });
        }
        let mut chosen = Vec::new();
        let mut failure = None;
        while let Some(joined) = moves.join_next().await {
            match joined {
                Ok((head, attempt, Ok(true))) => chosen.push((head, attempt)),
                Ok((_, _, Ok(false))) => {}
                Ok((_, _, Err(error))) => failure = Some(error),
                Err(_) => {
                    failure = Some(crate::store::StoreError::Failed {
                        operation: "recover task",
                        kind: "panicked".into(),
                    })
                }
            }
        }
        // In the window's order again (the writes ran at once).
        chosen.sort_by(|a, b| a.0.occurred_key.cmp(&b.0.occurred_key));
        let event_ids: Vec<EventId> = chosen.iter().map(|(h, _)| h.id.clone()).collect();
        let events = deliverer.store.events(&event_ids).await?;
        let mut sends = Vec::new();
        for (head, attempt) in &chosen {
            let Some(event) = events.get(&head.id) else {
                continue;
            };
            let id = delivery_id(&head.id, webhook.id);
            let offset = (paced / rate) as i64;
            paced += 1;
            let pending = DeliveryMessage {
                delivery_id: id,
                webhook_id: webhook.id,
                company_id: event.company_id,
                event: event.event.as_str().to_owned(),
                body: DeliveryBody::new(event.event, event.occurred_at, id, &event.data)
                    .as_str()
                    .to_owned(),
                attempt: *attempt,
                not_before: Some(start + offset),
                single: false,
                retry_base: attempt - 1,
            };
            let delay = (start + offset - now.unix_timestamp()).max(0) as u64;
            sends.push((pending.to_json(), Duration::from_secs(delay)));
        }
        if let Err(error) = deliverer
            .queues
            .send_all_delayed(&deliverer.deliveries_queue_url, &sends)
            .await
        {
            // Not queued: back to `skipped`, where a next recover finds them. One whose move
            // back fails stays `pending` under this step's mark: this message comes back and
            // queues it (none is left `pending` with no message on its way).
            for (head, _) in &chosen {
                let id = delivery_id(&head.id, webhook.id);
                let _ = deliverer.store.skip_pending(id).await;
            }
            return Err(error.into());
        }
        queued_now += sends.len() as u64;
        if let Some(last) = chunk.last() {
            message.after = Some(last.occurred_key.clone());
        }
        if let Some(error) = failure {
            // What was moved is queued; the message comes back and goes on from the start
            // (the moved ones are `pending` now, so none is queued twice).
            return Err(error.into());
        }
    }
    let queued = message.queued + queued_now;
    tracing::info!(
        webhook_id = %job.webhook_id,
        since = %crate::domain::time_format::rfc3339(job.since),
        until = %crate::domain::time_format::rfc3339(job.until),
        queued,
        rate_per_second = rate,
        "recover queued the window's undelivered events"
    );
    Ok(Handled::Recovering { queued, done: true })
}
