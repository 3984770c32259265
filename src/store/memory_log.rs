//! In-memory twins of the delivery log ([`MemoryDeliveryLog`]) and of the deliveries queue
//! ([`MemoryPipelineQueue`]), for handler tests, the sample events and benchmarks. They keep
//! the DynamoDB adapter's rules where the API can see them: the list is newest first by
//! (`createdAt`, id) within the `since`/`until` range, `status` and `event` filter the page
//! after it is read from the range (so a page may hold fewer than `limit` while more follow),
//! the position after a page is plain text of the store's own, and `mark_resend` refuses a
//! delivery that is `pending` already.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use uuid::Uuid;

use super::delivery_log::{
    Delivery, DeliveryFilter, DeliveryLog, DeliveryPage, DeliveryStatus, EventId, LoggedEvent,
    PipelineQueue, RecoverJob, ResendJob, ResendMark,
};
use super::StoreError;

fn injected(slot: &Mutex<Option<StoreError>>) -> Result<(), StoreError> {
    slot.lock().unwrap().clone().map_or(Ok(()), Err)
}

#[derive(Default)]
struct Log {
    events: HashMap<EventId, LoggedEvent>,
    deliveries: HashMap<Uuid, Delivery>,
}

/// Events and deliveries held in maps.
#[derive(Default)]
pub struct MemoryDeliveryLog {
    log: Mutex<Log>,
    calls: AtomicUsize,
    fail_with: Mutex<Option<StoreError>>,
    fail_record_with: Mutex<Option<StoreError>>,
}

/// The position after `delivery` in a newest-first list: its `createdAt` (Unix nanoseconds)
/// and id, the list's order.
fn position_of(delivery: &Delivery) -> String {
    format!(
        "{}:{}",
        delivery.created_at.unix_timestamp_nanos(),
        delivery.id
    )
}

fn parse_position(text: &str) -> Option<(i128, Uuid)> {
    let (at, id) = text.split_once(':')?;
    Some((at.parse().ok()?, Uuid::try_parse(id).ok()?))
}

impl MemoryDeliveryLog {
    /// Stores `event` (as the pipeline does when it accepts one).
    pub fn insert_event(&self, event: LoggedEvent) {
        self.log
            .lock()
            .unwrap()
            .events
            .insert(event.id.clone(), event);
    }

    /// Stores `delivery`, replacing any of the same id.
    pub fn insert_delivery(&self, delivery: Delivery) {
        self.log
            .lock()
            .unwrap()
            .deliveries
            .insert(delivery.id, delivery);
    }

    /// Forgets an event, as its TTL would (its deliveries stay a day longer).
    pub fn expire_event(&self, id: &EventId) {
        self.log.lock().unwrap().events.remove(id);
    }

    pub fn delivery(&self, id: Uuid) -> Option<Delivery> {
        self.log.lock().unwrap().deliveries.get(&id).cloned()
    }

    pub fn event(&self, id: &EventId) -> Option<LoggedEvent> {
        self.log.lock().unwrap().events.get(id).cloned()
    }

    /// Every delivery to `webhook_id`, in no set order.
    pub fn deliveries_of(&self, webhook_id: Uuid) -> Vec<Delivery> {
        let log = self.log.lock().unwrap();
        log.deliveries
            .values()
            .filter(|d| d.webhook_id == webhook_id)
            .cloned()
            .collect()
    }

    /// Runs `f` on the events and deliveries under the log's lock (the pipeline's twin,
    /// `pipeline::memory`, writes through it).
    pub fn with_maps<R>(
        &self,
        f: impl FnOnce(&mut HashMap<EventId, LoggedEvent>, &mut HashMap<Uuid, Delivery>) -> R,
    ) -> R {
        let mut log = self.log.lock().unwrap();
        let Log { events, deliveries } = &mut *log;
        f(events, deliveries)
    }

    /// How many calls reached the log.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Makes every later call fail with `error`.
    pub fn fail_with(&self, error: StoreError) {
        *self.fail_with.lock().unwrap() = Some(error);
    }

    /// Makes every later `record_ping` fail with `error`.
    pub fn fail_record_with(&self, error: StoreError) {
        *self.fail_record_with.lock().unwrap() = Some(error);
    }

    /// Ends the injected failures.
    pub fn recover(&self) {
        *self.fail_with.lock().unwrap() = None;
        *self.fail_record_with.lock().unwrap() = None;
    }

    fn call(&self) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        injected(&self.fail_with)
    }
}

impl DeliveryLog for MemoryDeliveryLog {
    async fn list(
        &self,
        webhook_id: Uuid,
        filter: &DeliveryFilter,
        limit: u32,
        after: Option<&str>,
    ) -> Result<DeliveryPage, StoreError> {
        self.call()?;
        if !(1..=100).contains(&limit) {
            return Err(StoreError::Failed {
                operation: "list deliveries",
                kind: "limit out of range".into(),
            });
        }
        let after = match after {
            None => None,
            Some(text) => Some(parse_position(text).ok_or_else(|| StoreError::Failed {
                operation: "list deliveries",
                kind: "malformed position".into(),
            })?),
        };
        let log = self.log.lock().unwrap();
        // The key range: this webhook, `since` <= createdAt < `until`, newest first.
        let mut range: Vec<&Delivery> = log
            .deliveries
            .values()
            .filter(|d| d.webhook_id == webhook_id)
            .filter(|d| filter.since.is_none_or(|since| d.created_at >= since))
            .filter(|d| filter.until.is_none_or(|until| d.created_at < until))
            .filter(|d| {
                after.is_none_or(|(at, id)| (d.created_at.unix_timestamp_nanos(), d.id) < (at, id))
            })
            .collect();
        range.sort_by_key(|d| std::cmp::Reverse((d.created_at, d.id)));
        let read: Vec<&Delivery> = range.iter().take(limit as usize).copied().collect();
        let next = (range.len() > read.len())
            .then(|| read.last().map(|d| position_of(d)))
            .flatten();
        // The filters, after the range (DynamoDB's FilterExpression).
        let deliveries = read
            .into_iter()
            .filter(|d| filter.status.is_none_or(|s| d.status == s))
            .filter(|d| filter.event.is_none_or(|e| d.event == e))
            .cloned()
            .collect();
        Ok(DeliveryPage { deliveries, next })
    }

    async fn get(
        &self,
        delivery_id: Uuid,
    ) -> Result<Option<(Delivery, Option<LoggedEvent>)>, StoreError> {
        self.call()?;
        let log = self.log.lock().unwrap();
        Ok(log.deliveries.get(&delivery_id).map(|delivery| {
            let event = log.events.get(&delivery.event_id).cloned();
            (delivery.clone(), event)
        }))
    }

    async fn mark_resend(&self, delivery_id: Uuid) -> Result<ResendMark, StoreError> {
        self.call()?;
        let mut log = self.log.lock().unwrap();
        let Some(delivery) = log.deliveries.get_mut(&delivery_id) else {
            return Ok(ResendMark::NotFound);
        };
        if delivery.status == DeliveryStatus::Pending {
            return Ok(ResendMark::AlreadyPending);
        }
        // As the DynamoDB adapter does: a resend is due now, no retry is planned.
        delivery.status = DeliveryStatus::Pending;
        delivery.next_attempt_at = None;
        Ok(ResendMark::Marked {
            attempt: delivery.next_attempt_number(),
        })
    }

    async fn unmark_resend(
        &self,
        delivery_id: Uuid,
        status: DeliveryStatus,
    ) -> Result<(), StoreError> {
        self.call()?;
        let mut log = self.log.lock().unwrap();
        // Only a mark is given back: a delivery the pipeline has moved on meanwhile stays.
        if let Some(delivery) = log.deliveries.get_mut(&delivery_id) {
            if delivery.status == DeliveryStatus::Pending {
                delivery.status = status;
            }
        }
        Ok(())
    }

    async fn record_ping(
        &self,
        event: &LoggedEvent,
        delivery: &Delivery,
    ) -> Result<(), StoreError> {
        self.call()?;
        injected(&self.fail_record_with)?;
        let mut log = self.log.lock().unwrap();
        log.events.insert(event.id.clone(), event.clone());
        log.deliveries.insert(delivery.id, delivery.clone());
        Ok(())
    }
}

/// A job the API queued.
#[derive(Clone, Debug, PartialEq)]
pub enum QueuedJob {
    Resend(Box<ResendJob>),
    Recover(RecoverJob),
}

/// The deliveries queue as a list of the jobs queued.
#[derive(Default)]
pub struct MemoryPipelineQueue {
    jobs: Mutex<Vec<QueuedJob>>,
    fail_with: Mutex<Option<StoreError>>,
}

impl MemoryPipelineQueue {
    /// Every job queued, oldest first.
    pub fn jobs(&self) -> Vec<QueuedJob> {
        self.jobs.lock().unwrap().clone()
    }

    pub fn resends(&self) -> Vec<ResendJob> {
        self.jobs()
            .into_iter()
            .filter_map(|job| match job {
                QueuedJob::Resend(job) => Some(*job),
                QueuedJob::Recover(_) => None,
            })
            .collect()
    }

    pub fn recovers(&self) -> Vec<RecoverJob> {
        self.jobs()
            .into_iter()
            .filter_map(|job| match job {
                QueuedJob::Recover(job) => Some(job),
                QueuedJob::Resend(_) => None,
            })
            .collect()
    }

    /// Makes every later job fail to queue with `error`.
    pub fn fail_with(&self, error: StoreError) {
        *self.fail_with.lock().unwrap() = Some(error);
    }

    pub fn recover(&self) {
        *self.fail_with.lock().unwrap() = None;
    }
}

impl PipelineQueue for MemoryPipelineQueue {
    async fn queue_resend(&self, job: &ResendJob) -> Result<(), StoreError> {
        injected(&self.fail_with)?;
        self.jobs
            .lock()
            .unwrap()
            .push(QueuedJob::Resend(Box::new(job.clone())));
        Ok(())
    }

    async fn queue_recover(&self, job: &RecoverJob) -> Result<(), StoreError> {
        injected(&self.fail_with)?;
        self.jobs
            .lock()
            .unwrap()
            .push(QueuedJob::Recover(job.clone()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::macros::datetime;
    use time::Duration;

    use super::*;
    use crate::domain::EventType;

    const WEBHOOK: Uuid = Uuid::from_u128(7);

    fn delivery(n: u128, status: DeliveryStatus, event: EventType) -> Delivery {
        Delivery {
            id: Uuid::from_u128(n),
            webhook_id: WEBHOOK,
            event_id: EventId::parse(&format!("e{n}")).unwrap(),
            event,
            status,
            created_at: datetime!(2026-12-01 0:00 UTC) + Duration::minutes(n as i64),
            last_attempt_at: None,
            last_http_status: None,
            next_attempt_at: None,
            attempts: Vec::new(),
        }
    }

    async fn all_pages(log: &MemoryDeliveryLog, filter: &DeliveryFilter, limit: u32) -> Vec<u128> {
        let mut ids = Vec::new();
        let mut after = None;
        loop {
            let page = log
                .list(WEBHOOK, filter, limit, after.as_deref())
                .await
                .unwrap();
            ids.extend(page.deliveries.iter().map(|d| d.id.as_u128()));
            match page.next {
                Some(next) => after = Some(next),
                None => return ids,
            }
        }
    }

    #[tokio::test]
    async fn lists_newest_first_in_pages_and_filters_after_the_range() {
        let log = MemoryDeliveryLog::default();
        for n in 1..=7 {
            let status = if n % 2 == 0 {
                DeliveryStatus::Failed
            } else {
                DeliveryStatus::Delivered
            };
            log.insert_delivery(delivery(n, status, EventType::InterviewCompleted));
        }
        log.insert_delivery(Delivery {
            webhook_id: Uuid::from_u128(8),
            ..delivery(100, DeliveryStatus::Failed, EventType::Ping)
        });
        let all = DeliveryFilter::default();
        assert_eq!(all_pages(&log, &all, 3).await, [7, 6, 5, 4, 3, 2, 1]);
        let failed = DeliveryFilter {
            status: Some(DeliveryStatus::Failed),
            ..all.clone()
        };
        let first = log.list(WEBHOOK, &failed, 3, None).await.unwrap();
        // Read 7, 6, 5 from the range; the filter keeps 6 only, and more follow.
        assert_eq!(first.deliveries.len(), 1);
        assert!(first.next.is_some());
        assert_eq!(all_pages(&log, &failed, 3).await, [6, 4, 2]);
        let window = DeliveryFilter {
            since: Some(datetime!(2026-12-01 0:02 UTC)),
            until: Some(datetime!(2026-12-01 0:05 UTC)),
            ..all
        };
        assert_eq!(all_pages(&log, &window, 100).await, [4, 3, 2]);
    }

    #[tokio::test]
    async fn a_resend_mark_refuses_a_pending_delivery_and_is_given_back() {
        let log = MemoryDeliveryLog::default();
        log.insert_delivery(delivery(1, DeliveryStatus::Failed, EventType::Ping));
        let id = Uuid::from_u128(1);
        assert_eq!(
            log.mark_resend(id).await.unwrap(),
            ResendMark::Marked { attempt: 1 }
        );
        assert_eq!(
            log.mark_resend(id).await.unwrap(),
            ResendMark::AlreadyPending
        );
        log.unmark_resend(id, DeliveryStatus::Failed).await.unwrap();
        assert_eq!(log.delivery(id).unwrap().status, DeliveryStatus::Failed);
        assert_eq!(
            log.mark_resend(Uuid::from_u128(2)).await.unwrap(),
            ResendMark::NotFound
        );
    }

    #[tokio::test]
    async fn a_ping_is_recorded_with_its_event() {
        let log = MemoryDeliveryLog::default();
        let event = LoggedEvent {
            id: EventId::random(),
            event: EventType::Ping,
            company_id: None,
            occurred_at: datetime!(2026-12-01 0:00 UTC),
            received_at: datetime!(2026-12-01 0:00 UTC),
            data: json!({"webhookId": WEBHOOK.to_string()}),
        };
        let ping = Delivery {
            event_id: event.id.clone(),
            ..delivery(1, DeliveryStatus::Delivered, EventType::Ping)
        };
        log.record_ping(&event, &ping).await.unwrap();
        assert_eq!(
            log.get(ping.id).await.unwrap(),
            Some((ping.clone(), Some(event)))
        );
        let queue = MemoryPipelineQueue::default();
        queue.fail_with(StoreError::Unavailable {
            operation: "queue",
            kind: "throttled".into(),
        });
        let job = RecoverJob {
            webhook_id: WEBHOOK,
            since: datetime!(2026-12-01 0:00 UTC),
            until: datetime!(2026-12-02 0:00 UTC),
        };
        assert!(queue.queue_recover(&job).await.is_err());
        queue.recover();
        queue.queue_recover(&job).await.unwrap();
        assert_eq!(queue.recovers(), [job]);
    }
}
