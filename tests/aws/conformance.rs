//! The store's twins agree: every case runs against the in-memory store (in-process) and
//! against DynamoDB (moto), through the same traits, so that a test on memory proves what it
//! would on DynamoDB. Each case is one rule of `src/store/mod.rs`'s traits.

use instaview_webhooks::domain::{
    ClaimOutcome, EventType, IdempotencyClaim, IdempotencyKey, Webhook,
};
use instaview_webhooks::store::dynamodb::DynamoWebhooks;
use instaview_webhooks::store::memory::MemoryWebhooks;
use instaview_webhooks::store::{
    Caller, ChangeError, Deleted, InsertError, SecretRef, StoreError, StoredWebhook, WebhookChange,
    WebhookStore,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::support::moto::AwsEnv;

const OWNER: &str = "conformance-key";
const STRANGER: &str = "another-key";
const LIMIT: u32 = 10;

fn webhook_of(api_key_id: &str, company_id: Option<Uuid>) -> StoredWebhook {
    let id = Uuid::new_v4();
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    StoredWebhook {
        webhook: Webhook {
            id,
            api_key_id: api_key_id.to_owned(),
            company_id,
            url: "https://api.example.com/webhooks/instaview".to_owned(),
            name: Some("Conformance".to_owned()),
            description: None,
            header_names: vec!["Authorization".to_owned()],
            events: vec![EventType::InterviewCompleted],
            is_active: true,
            max_retries: 3,
            timeout_ms: 30_000,
            consecutive_failures: 0,
            circuit_opened_at: None,
            created_at: now,
            updated_at: now,
            version: 1,
        },
        secret: SecretRef {
            arn: format!("arn:conformance:{id}"),
            version: Some("v1".to_owned()),
        },
    }
}

fn webhook() -> StoredWebhook {
    webhook_of(OWNER, None)
}

fn caller(api_key_id: &str) -> Caller<'_> {
    Caller {
        api_key_id,
        company_ids: &[],
        if_match: None,
    }
}

fn renamed(name: &str) -> WebhookChange {
    WebhookChange {
        name: Some(Some(name.to_owned())),
        ..WebhookChange::default()
    }
}

/// A request's claim on `key` for a create with body `body`; each call is another request
/// (another owner).
fn claim(key: &str, body: &str) -> IdempotencyClaim {
    IdempotencyClaim::new(
        OWNER,
        "POST /webhooks",
        &IdempotencyKey::parse(key).unwrap(),
        body.as_bytes(),
    )
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

async fn claimed(store: &impl WebhookStore, claim: &IdempotencyClaim) -> ClaimOutcome {
    store.claim(claim, now()).await.unwrap()
}

async fn version_of(store: &impl WebhookStore, id: Uuid) -> u64 {
    store.get(id).await.unwrap().unwrap().webhook.version
}

// ----- Idempotency claims -----

async fn a_claim_is_completed_only_by_its_owner(store: impl WebhookStore) {
    let first = claim("complete", "{}");
    assert_eq!(claimed(&store, &first).await, ClaimOutcome::Claimed);
    // Another request with the same key and body, say after the first one's claim was taken
    // for abandoned: it may not complete the first one's claim.
    let stranger = claim("complete", "{}");
    assert_eq!(claimed(&store, &stranger).await, ClaimOutcome::InProgress);
    assert!(
        store
            .complete(&stranger, "stranger's result")
            .await
            .is_err(),
        "a stranger completed the claim"
    );
    assert_eq!(claimed(&store, &stranger).await, ClaimOutcome::InProgress);

    store.complete(&first, "first's result").await.unwrap();
    assert_eq!(
        claimed(&store, &claim("complete", "{}")).await,
        ClaimOutcome::Completed("first's result".into())
    );
    assert_eq!(
        claimed(&store, &claim("complete", "{\"other\":1}")).await,
        ClaimOutcome::Reused
    );
    // Completed once: not again, not even by its owner.
    assert!(store.complete(&first, "again").await.is_err());
}

async fn a_claim_is_released_only_by_its_owner(store: impl WebhookStore) {
    let first = claim("release", "{}");
    assert_eq!(claimed(&store, &first).await, ClaimOutcome::Claimed);
    let stranger = claim("release", "{}");
    store.release(&stranger).await.unwrap();
    assert_eq!(
        claimed(&store, &claim("release", "{}")).await,
        ClaimOutcome::InProgress,
        "a stranger's release freed the claim"
    );

    store.release(&first).await.unwrap();
    assert_eq!(
        claimed(&store, &claim("release", "{}")).await,
        ClaimOutcome::Claimed
    );
    // Releasing what is gone (or someone else's now) is no error.
    store.release(&first).await.unwrap();
}

async fn a_claim_taken_again_by_its_own_request_is_still_its_own(store: impl WebhookStore) {
    let first = claim("retried", "{}");
    assert_eq!(claimed(&store, &first).await, ClaimOutcome::Claimed);
    // The same request's retried claim (its first answer lost) finds its own claim.
    assert_eq!(claimed(&store, &first).await, ClaimOutcome::Claimed);
    store.complete(&first, "done").await.unwrap();
    assert_eq!(
        claimed(&store, &first).await,
        ClaimOutcome::Completed("done".into())
    );
}

async fn an_insert_completes_only_its_owners_claim(store: impl WebhookStore) {
    let first = claim("insert", "{}");
    assert_eq!(claimed(&store, &first).await, ClaimOutcome::Claimed);
    let stranger = claim("insert", "{}");
    let stored = webhook();
    assert_eq!(
        store.insert(&stored, 1, Some(&stranger)).await,
        Err(InsertError::ClaimLost)
    );
    assert_eq!(store.get(stored.webhook.id).await.unwrap(), None);
    assert_eq!(claimed(&store, &stranger).await, ClaimOutcome::InProgress);

    // Nothing of the refused insert stayed: not its record, not its place in the limit.
    store.insert(&stored, 1, Some(&first)).await.unwrap();
    assert_eq!(
        claimed(&store, &claim("insert", "{}")).await,
        ClaimOutcome::Completed(stored.webhook.id.to_string())
    );
}

async fn an_update_completes_only_its_owners_claim(store: impl WebhookStore) {
    let stored = webhook();
    let id = stored.webhook.id;
    store.insert(&stored, LIMIT, None).await.unwrap();
    let first = claim("update", "{}");
    assert_eq!(claimed(&store, &first).await, ClaimOutcome::Claimed);
    let stranger = claim("update", "{}");
    let refused = store
        .update(
            id,
            &caller(OWNER),
            &renamed("stranger"),
            Some((&stranger, "r")),
            now(),
        )
        .await;
    assert!(
        matches!(refused, Err(ChangeError::Store(StoreError::Failed { .. }))),
        "{refused:?}"
    );
    assert_eq!(version_of(&store, id).await, 1, "the change landed anyway");

    let changed = store
        .update(
            id,
            &caller(OWNER),
            &renamed("owner"),
            Some((&first, "r")),
            now(),
        )
        .await
        .unwrap();
    assert_eq!(changed.webhook.version, 2);
    assert_eq!(changed.webhook.name.as_deref(), Some("owner"));
    assert_eq!(
        claimed(&store, &claim("update", "{}")).await,
        ClaimOutcome::Completed("r".into())
    );
}

// ----- Records, tombstones, limits, versions -----

async fn a_tombstone_blocks_reinsert_and_update(store: impl WebhookStore) {
    let stored = webhook();
    let id = stored.webhook.id;
    store.insert(&stored, LIMIT, None).await.unwrap();
    assert_eq!(store.delete(id, &caller(OWNER)).await, Ok(Deleted::Now));

    let again = store.insert(&stored, LIMIT, None).await;
    assert!(
        matches!(again, Err(InsertError::Store(StoreError::Failed { .. }))),
        "{again:?}"
    );
    assert_eq!(
        store
            .update(id, &caller(OWNER), &renamed("back"), None, now())
            .await
            .err(),
        Some(ChangeError::NotFound)
    );
    assert_eq!(store.get(id).await.unwrap(), None);
    assert!(store.list_by_owner(OWNER).await.unwrap().is_empty());
}

async fn an_undone_insert_that_never_landed_fences_its_id(store: impl WebhookStore) {
    let stored = webhook();
    let id = stored.webhook.id;
    store.undo_insert(id, OWNER).await.unwrap();
    // A late copy of the insert must not bring the record back.
    let late = store.insert(&stored, LIMIT, None).await;
    assert!(
        matches!(late, Err(InsertError::Store(StoreError::Failed { .. }))),
        "{late:?}"
    );
    assert_eq!(store.get(id).await.unwrap(), None);
    assert_eq!(
        store.delete(id, &caller(OWNER)).await,
        Err(ChangeError::NotFound)
    );
}

async fn an_undone_insert_that_landed_leaves_nothing(store: impl WebhookStore) {
    let stored = webhook();
    let id = stored.webhook.id;
    store.insert(&stored, 1, None).await.unwrap();
    store.undo_insert(id, OWNER).await.unwrap();
    assert_eq!(store.get(id).await.unwrap(), None);
    // Its place in the limit is back.
    store.insert(&webhook(), 1, None).await.unwrap();
    // No fence either: the record that landed was removed, so no copy of it is still on its
    // way (a fence is for an id whose record may still land).
    store.insert(&stored, 2, None).await.unwrap();
    assert_eq!(version_of(&store, id).await, 1);
}

async fn a_retried_insert_of_the_same_record_lands_once(store: impl WebhookStore) {
    let stored = webhook();
    store.insert(&stored, 2, None).await.unwrap();
    // The retry of an insert whose first answer was lost: a success, counted once.
    store.insert(&stored, 2, None).await.unwrap();
    store.insert(&webhook(), 2, None).await.unwrap();
    assert_eq!(
        store.insert(&webhook(), 2, None).await,
        Err(InsertError::LimitReached)
    );
    // Another record under a taken id is refused.
    let mut other = webhook();
    other.webhook.id = stored.webhook.id;
    let taken = store.insert(&other, LIMIT, None).await;
    assert!(
        matches!(taken, Err(InsertError::Store(StoreError::Failed { .. }))),
        "{taken:?}"
    );
    assert_eq!(
        store.get(stored.webhook.id).await.unwrap().unwrap().secret,
        stored.secret
    );
}

async fn the_limit_refuses_one_more_until_a_delete_gives_a_place_back(store: impl WebhookStore) {
    let first = webhook();
    store.insert(&first, 2, None).await.unwrap();
    store.insert(&webhook(), 2, None).await.unwrap();
    let third = webhook();
    assert_eq!(
        store.insert(&third, 2, None).await,
        Err(InsertError::LimitReached)
    );
    assert_eq!(store.get(third.webhook.id).await.unwrap(), None);
    // Another key's limit is its own.
    store
        .insert(&webhook_of(STRANGER, None), 1, None)
        .await
        .unwrap();

    store
        .delete(first.webhook.id, &caller(OWNER))
        .await
        .unwrap();
    store.insert(&third, 2, None).await.unwrap();
    assert_eq!(store.list_by_owner(OWNER).await.unwrap().len(), 2);
}

async fn a_stale_version_is_refused(store: impl WebhookStore) {
    let stored = webhook();
    let id = stored.webhook.id;
    store.insert(&stored, LIMIT, None).await.unwrap();
    let at = |version| Caller {
        if_match: Some(version),
        ..caller(OWNER)
    };
    let changed = store
        .update(id, &at(1), &renamed("seen 1"), None, now())
        .await
        .unwrap();
    assert_eq!(changed.webhook.version, 2);
    assert_eq!(
        store
            .update(id, &at(1), &renamed("stale"), None, now())
            .await
            .err(),
        Some(ChangeError::PreconditionFailed)
    );
    assert_eq!(
        store.delete(id, &at(1)).await,
        Err(ChangeError::PreconditionFailed)
    );
    assert_eq!(version_of(&store, id).await, 2);
    assert_eq!(store.delete(id, &at(2)).await, Ok(Deleted::Now));
}

async fn a_secret_swap_lands_only_on_the_version_it_was_built_on(store: impl WebhookStore) {
    use instaview_webhooks::store::SecretSwap;
    let stored = webhook();
    let id = stored.webhook.id;
    store.insert(&stored, LIMIT, None).await.unwrap();
    let swap = |from: &str, to: &str| WebhookChange {
        secret: Some(SecretSwap {
            from: SecretRef {
                arn: stored.secret.arn.clone(),
                version: Some(from.to_owned()),
            },
            to: SecretRef {
                arn: stored.secret.arn.clone(),
                version: Some(to.to_owned()),
            },
            header_names: None,
        }),
        ..WebhookChange::default()
    };
    let changed = store
        .update(id, &caller(OWNER), &swap("v1", "v2"), None, now())
        .await
        .unwrap();
    assert_eq!(changed.secret.version.as_deref(), Some("v2"));
    assert_eq!(
        store
            .update(id, &caller(OWNER), &swap("v1", "v3"), None, now())
            .await
            .err(),
        Some(ChangeError::SecretMoved)
    );
}

async fn another_keys_webhook_is_not_found_and_a_lost_company_is_denied(store: impl WebhookStore) {
    let company = Uuid::new_v4();
    let stored = webhook_of(OWNER, Some(company));
    let id = stored.webhook.id;
    store.insert(&stored, LIMIT, None).await.unwrap();
    assert_eq!(
        store
            .update(id, &caller(STRANGER), &renamed("x"), None, now())
            .await
            .err(),
        Some(ChangeError::NotFound)
    );
    assert_eq!(
        store.delete(id, &caller(STRANGER)).await,
        Err(ChangeError::NotFound)
    );
    // The owner whose key no longer holds the company.
    assert_eq!(
        store
            .update(id, &caller(OWNER), &renamed("x"), None, now())
            .await
            .err(),
        Some(ChangeError::CompanyDenied)
    );
    let holding = [company];
    let allowed = Caller {
        company_ids: &holding,
        ..caller(OWNER)
    };
    assert_eq!(store.delete(id, &allowed).await, Ok(Deleted::Now));
}

async fn a_delete_twice_is_done_earlier_for_its_owner_and_not_found_for_others(
    store: impl WebhookStore,
) {
    let stored = webhook();
    let id = stored.webhook.id;
    store.insert(&stored, LIMIT, None).await.unwrap();
    assert_eq!(store.delete(id, &caller(OWNER)).await, Ok(Deleted::Now));
    assert_eq!(store.delete(id, &caller(OWNER)).await, Ok(Deleted::Earlier));
    assert_eq!(
        store.delete(id, &caller(STRANGER)).await,
        Err(ChangeError::NotFound)
    );
    assert_eq!(
        store.delete(Uuid::new_v4(), &caller(OWNER)).await,
        Err(ChangeError::NotFound)
    );
}

/// One `#[tokio::test]` per case and store: `memory::<case>` and `dynamodb::<case>`.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod memory {
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(MemoryWebhooks::default()).await;
                }
            )*
        }

        mod dynamodb {
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    let env = AwsEnv::new().await;
                    let store =
                        DynamoWebhooks::new(env.dynamodb.clone(), &env.resources.webhooks_table);
                    super::$case(store).await;
                }
            )*
        }
    };
}

conformance!(
    a_claim_is_completed_only_by_its_owner,
    a_claim_is_released_only_by_its_owner,
    a_claim_taken_again_by_its_own_request_is_still_its_own,
    an_insert_completes_only_its_owners_claim,
    an_update_completes_only_its_owners_claim,
    a_tombstone_blocks_reinsert_and_update,
    an_undone_insert_that_never_landed_fences_its_id,
    an_undone_insert_that_landed_leaves_nothing,
    a_retried_insert_of_the_same_record_lands_once,
    the_limit_refuses_one_more_until_a_delete_gives_a_place_back,
    a_stale_version_is_refused,
    a_secret_swap_lands_only_on_the_version_it_was_built_on,
    another_keys_webhook_is_not_found_and_a_lost_company_is_denied,
    a_delete_twice_is_done_earlier_for_its_owner_and_not_found_for_others,
);
