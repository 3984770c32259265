//! Fault tests against the local AWS emulator: a fault-injecting proxy the tests own
//! (`support::fault_proxy`) sits in front of DynamoDB, of Secrets Manager, or of both, and
//! drops calls, loses their answers after they landed, stalls them past the SDK's attempt
//! timeout, delivers them late, or answers 500 / throttling instead of the emulator.
//!
//! What must hold whatever the faults: every request answers `201` or a clean `503` (or, for a
//! repeated `Idempotency-Key`, `409 REQUEST_IN_PROGRESS`), well inside API Gateway's 29 s; and
//! afterwards every `201` has its record and its secret, and nothing else is left: no secret
//! without a record, no record without a secret, no record the client was not told about, and
//! the per-key counter equals the number of records.
//!
//! The same proxy over header PATCHes and DELETEs (`header_patches_and_deletes_…` and the
//! scripted scenarios after it): every answer leaves the webhook entirely as before or entirely
//! as asked, a DELETE that answered 503 is finished by its retry, and at the end no record is
//! without its secret, no secret without its record, no record's `headerNames` differ from the
//! names in the secret version it points at, and the per-key count equals the records.
//!
//! Run with `cargo test --test aws faults:: -- --nocapture` to see the summary lines. `FAULT_SEED`
//! picks another fault sequence.

use crate::support::{self, requests};

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use instaview_webhooks::config::Settings;
use instaview_webhooks::domain::WRITE_WEBHOOKS;
use instaview_webhooks::http::handle;
use instaview_webhooks::service::App;
use instaview_webhooks::store::dynamodb::{DynamoApiKeys, DynamoWebhooks};
use instaview_webhooks::store::secrets_manager::SecretsManagerStore;
use instaview_webhooks::telemetry;
use serde_json::{json, Value};
use support::fault_proxy::{Fault, FaultCounts, FaultProxy, RandomFaults, XorShift};
use support::moto::{endpoint, sdk_config_for, AwsApp, AwsEnv};
use support::*;

/// No request may take longer than this. The function's timeout is 28 s, API Gateway's 29 s.
const LATENCY_BUDGET: Duration = Duration::from_secs(20);
/// Requests in flight at once (moto serves one call at a time; more only queues there).
const CONCURRENCY: usize = 12;

/// The random mix, per mille of AWS calls through a proxy: 10 % in all. Delays (stall, late
/// forward) cost 2.5–3 s of a worker each, so they are a minority.
fn ten_percent() -> RandomFaults {
    RandomFaults {
        mix: vec![
            (Fault::Throttle, 30),
            (Fault::ServerError, 20),
            (Fault::Drop, 15),
            (Fault::LoseAnswer, 15),
            (Fault::Stall, 10),
            (Fault::LateForward, 10),
        ],
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proxied {
    DynamoDb,
    SecretsManager,
    Both,
}

/// One test's emulator slice, an API key, and an app whose clients go through fault proxies.
struct Rig {
    env: AwsEnv,
    key_id: String,
    token: String,
    app: Arc<AwsApp>,
    dynamodb_proxy: Option<FaultProxy>,
    secrets_proxy: Option<FaultProxy>,
}

impl Rig {
    async fn new(proxied: Proxied, seed: u64) -> Self {
        let env = AwsEnv::new().await;
        let (key, token) = env.create_key(&[WRITE_WEBHOOKS]).await;
        let moto = endpoint();
        let dynamodb_proxy = match proxied {
            Proxied::DynamoDb | Proxied::Both => Some(FaultProxy::start(moto, seed).await),
            Proxied::SecretsManager => None,
        };
        let secrets_proxy = match proxied {
            Proxied::SecretsManager | Proxied::Both => {
                Some(FaultProxy::start(moto, seed.rotate_left(17) ^ 0x5eed).await)
            }
            Proxied::DynamoDb => None,
        };
        let through = |proxy: &Option<FaultProxy>| {
            proxy
                .as_ref()
                .map_or(moto.to_owned(), |p| p.endpoint().to_owned())
        };
        let dynamodb =
            aws_sdk_dynamodb::Client::new(&sdk_config_for(&through(&dynamodb_proxy)).await);
        let secrets =
            aws_sdk_secretsmanager::Client::new(&sdk_config_for(&through(&secrets_proxy)).await);
        let app = App::new(
            DynamoApiKeys::new(dynamodb.clone(), &env.resources.api_keys_table),
            DynamoWebhooks::new(dynamodb.clone(), &env.resources.webhooks_table),
            SecretsManagerStore::new(
                secrets,
                &env.secret_prefix,
                None,
                &env.resources.pepper_secret_id,
            ),
            Settings {
                // The limit must never be what refuses a request here.
                max_webhooks_per_key: 1_000_000,
                ..Settings::default()
            },
        )
        .with_delivery_log(
            instaview_webhooks::store::dynamodb::DynamoDeliveryLog::new(
                dynamodb,
                &env.resources.delivery_log_table,
            ),
            instaview_webhooks::store::memory_log::MemoryPipelineQueue::default(),
        );
        Self {
            env,
            key_id: key.id,
            token: token.expose().to_owned(),
            app: Arc::new(app),
            dynamodb_proxy,
            secrets_proxy,
        }
    }

    fn proxies(&self) -> impl Iterator<Item = &FaultProxy> {
        self.dynamodb_proxy.iter().chain(self.secrets_proxy.iter())
    }

    fn dynamodb(&self) -> &FaultProxy {
        self.dynamodb_proxy.as_ref().expect("DynamoDB is proxied")
    }

    fn secrets(&self) -> &FaultProxy {
        self.secrets_proxy
            .as_ref()
            .expect("Secrets Manager is proxied")
    }

    fn counts(&self) -> FaultCounts {
        let mut counts = FaultCounts::default();
        for proxy in self.proxies() {
            counts.add(&proxy.counts());
        }
        counts
    }

    /// Sends one request, timed.
    async fn send(&self, body: &str, idempotency_key: Option<&str>) -> Sent {
        send(&self.app, &self.token, body, idempotency_key).await
    }

    /// Stops injecting and waits for late calls to land, so that the check sees the end state.
    async fn quiesce(&self) {
        for proxy in self.proxies() {
            proxy.clear();
        }
        for proxy in self.proxies() {
            proxy.settle(Duration::from_secs(30)).await;
        }
    }

    /// Every call any proxy saw that mentions `needle`, for explaining a violation.
    fn story_of(&self, needle: &str) -> String {
        let mut calls: Vec<_> = self
            .proxies()
            .flat_map(|p| p.calls_mentioning(needle))
            .collect();
        calls.sort_by_key(|c| c.at);
        calls
            .iter()
            .map(|c| format!("\n      {c}"))
            .collect::<String>()
    }
}

/// A request's answer and how long it took.
struct Sent {
    answer: Answer,
    latency: Duration,
}

async fn send(app: &AwsApp, token: &str, body: &str, idempotency_key: Option<&str>) -> Sent {
    let mut request = post(body).token(token);
    if let Some(key) = idempotency_key {
        request = request.header("idempotency-key", key);
    }
    let started = Instant::now();
    let response = handle(app, request.build()).await;
    Sent {
        latency: started.elapsed(),
        answer: parse(response),
    }
}

// ---------------------------------------------------------------------------------------------
// The mixed run: 500+ requests, faults in about one AWS call in ten.
// ---------------------------------------------------------------------------------------------

/// A request body of the API's whole range: optional fields, a company, custom headers.
fn random_body(rng: &mut XorShift, n: usize) -> String {
    const EVENTS: [&str; 6] = [
        "analysis.completed",
        "analysis.failed",
        "ping",
        "interview.completed",
        "interview.failed",
        "interview.started",
    ];
    let mut events: Vec<&str> = EVENTS
        .iter()
        .copied()
        .filter(|_| rng.below(2) == 0)
        .collect();
    if events.is_empty() {
        events.push(EVENTS[n % EVENTS.len()]);
    }
    let mut body = json!({
        "url": format!("https://hooks{}.example.com/instaview/{n}", rng.below(50)),
        "events": events,
    });
    if rng.below(2) == 0 {
        body["name"] = json!(format!("Fault test webhook {n}"));
    }
    if rng.below(3) == 0 {
        body["description"] = json!("Created under injected AWS faults\nsecond line");
    }
    if rng.below(3) == 0 {
        body["companyId"] = json!(COMPANY);
    }
    let headers = rng.below(4);
    if headers > 0 {
        body["headers"] = (0..headers)
            .map(|i| json!({"name": format!("X-Custom-{i}"), "value": format!("value {n}-{i} {}", rng.next_u64())}))
            .collect();
    }
    body.to_string()
}

/// Requests sent one after another by one worker: one plain request, or one idempotency key
/// sent 1–3 times with the same body (so that a repeat never races its own first send).
struct Job {
    body: String,
    idempotency_key: Option<String>,
    sends: usize,
}

fn jobs(rng: &mut XorShift, phase: &str, requests: usize) -> VecDeque<Job> {
    let mut jobs = VecDeque::new();
    let mut planned = 0;
    while planned < requests {
        let n = jobs.len();
        let job = if rng.below(10) < 3 {
            Job {
                body: random_body(rng, n),
                idempotency_key: Some(format!("{phase}-order-{n}")),
                sends: (1 + rng.below(3) as usize).min(requests - planned),
            }
        } else {
            Job {
                body: random_body(rng, n),
                idempotency_key: None,
                sends: 1,
            }
        };
        planned += job.sends;
        jobs.push_back(job);
    }
    jobs
}

/// One request of the run, as the client saw it.
#[derive(Clone, Debug)]
struct Outcome {
    idempotency_key: Option<String>,
    status: u16,
    code: String,
    id: Option<String>,
    signing_secret: Option<String>,
    replayed: bool,
    latency: Duration,
    /// A 503 that shows no internals and carries `Retry-After`, or any other answer.
    clean: bool,
}

/// Words that must not appear in an answer: SDK and service names, ARNs, this test's names.
fn internals(env: &AwsEnv) -> Vec<String> {
    let mut words: Vec<String> = [
        "arn:",
        "Exception",
        "dynamodb",
        "secretsmanager",
        "Transact",
    ]
    .map(str::to_owned)
    .to_vec();
    words.push(env.resources.webhooks_table.clone());
    words.push(env.resources.api_keys_table.clone());
    words.push(env.resources.pepper_secret_id.clone());
    words.push(env.secret_prefix.clone());
    words
}

fn outcome(sent: &Sent, idempotency_key: Option<String>, internals: &[String]) -> Outcome {
    let answer = &sent.answer;
    let data = &answer.json["data"];
    let clean = answer.status != 503
        || (answer.header("retry-after").is_some()
            && !internals
                .iter()
                .any(|word| answer.raw.contains(word.as_str())));
    Outcome {
        idempotency_key,
        status: answer.status,
        code: answer.code().to_owned(),
        id: data["id"].as_str().map(str::to_owned),
        signing_secret: data["signingSecret"].as_str().map(str::to_owned),
        replayed: answer.header("idempotent-replayed") == Some("true"),
        latency: sent.latency,
        clean,
    }
}

/// Runs `requests` requests, `CONCURRENCY` at a time, with random faults on the rig's proxies.
async fn run_mixed(rig: &Rig, phase: &str, requests: usize, seed: u64) -> Vec<Outcome> {
    // A warm container first (pepper and key cached), so that most faults hit the create path;
    // the warm-up request counts like any other.
    let warm = rig.send(SEED_BODY, None).await;
    assert_eq!(warm.answer.status, 201, "warm-up: {}", warm.answer.raw);
    let internals = Arc::new(internals(&rig.env));
    let outcomes = Arc::new(Mutex::new(vec![outcome(&warm, None, &internals)]));
    for proxy in rig.proxies() {
        proxy.set_random(ten_percent());
    }
    let queue = Arc::new(Mutex::new(jobs(
        &mut XorShift::new(seed),
        phase,
        requests - 1,
    )));
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (queue, outcomes) = (queue.clone(), outcomes.clone());
            let (app, token) = (rig.app.clone(), rig.token.clone());
            let internals = internals.clone();
            tokio::spawn(async move {
                loop {
                    let Some(job) = queue.lock().unwrap().pop_front() else {
                        return;
                    };
                    for _ in 0..job.sends {
                        let sent =
                            send(&app, &token, &job.body, job.idempotency_key.as_deref()).await;
                        let done = outcome(&sent, job.idempotency_key.clone(), &internals);
                        outcomes.lock().unwrap().push(done);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker");
    }
    rig.quiesce().await;
    let outcomes = outcomes.lock().unwrap().clone();
    outcomes
}

/// What the invariant check found.
#[derive(Default, Debug)]
struct Findings {
    records: usize,
    secrets: usize,
    orphan_secrets: Vec<String>,
    records_without_secret: Vec<String>,
    /// Records the client never got a 201 for ("a failed request leaves nothing behind").
    unreported_records: Vec<String>,
    /// Idempotency claims still `in_progress` (a failed release; they lapse after 120 s).
    stuck_claims: usize,
    /// Claims completed with a webhook that does not exist: the key answers 409 for a day.
    dangling_claims: Vec<String>,
    violations: Vec<String>,
    /// Things worth a look that break no invariant.
    notes: Vec<String>,
}

impl Findings {
    fn violation(&mut self, text: String) {
        self.violations.push(text);
    }
}

fn s_attr<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a str> {
    item.get(name)?.as_s().ok().map(String::as_str)
}

/// Reads everything back with the test's own (patient, unproxied) clients and checks the
/// storage invariants against what the clients were told.
async fn check_invariants(rig: &Rig, outcomes: &[Outcome]) -> Findings {
    let env = &rig.env;
    let mut found = Findings::default();
    let items = env.webhook_items().await;
    let records: HashMap<String, String> = env
        .webhook_records()
        .await
        .iter()
        .map(|r| {
            (
                s_attr(r, "id").unwrap().to_owned(),
                s_attr(r, "secretArn").unwrap_or("").to_owned(),
            )
        })
        .collect();
    let secret_names: HashSet<String> = env.secret_names().await.into_iter().collect();
    found.records = records.len();
    found.secrets = secret_names.len();

    // The signing secret stored in each record's secret (None: the secret does not exist).
    let mut stored_secret: HashMap<String, Option<String>> = HashMap::new();
    for (id, arn) in &records {
        let value = env
            .secretsmanager
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await;
        let signing = match value {
            Ok(value) => {
                if value.name() != Some(&format!("{}{id}", env.secret_prefix)) {
                    found.violation(format!("record {id} names another webhook's secret"));
                }
                value
                    .secret_string()
                    .and_then(|s| serde_json::from_str::<Value>(s).ok())
                    .and_then(|v| v["signingSecret"].as_str().map(str::to_owned))
            }
            Err(error) => {
                let service = error.as_service_error();
                assert!(
                    service.is_some_and(|e| e.is_resource_not_found_exception()),
                    "reading the secret of {id}: {error:?}"
                );
                None
            }
        };
        if signing.is_none() {
            found.records_without_secret.push(id.clone());
            found.violation(format!(
                "record {id} without its secret{}",
                rig.story_of(id)
            ));
        }
        stored_secret.insert(id.clone(), signing);
    }
    for name in &secret_names {
        let id = name.strip_prefix(&env.secret_prefix).unwrap();
        if !records.contains_key(id) {
            found.orphan_secrets.push(id.to_owned());
            found.violation(format!("orphan secret {name}{}", rig.story_of(id)));
        }
    }

    // Every 201: its record and its secret, with the signing secret it answered.
    let mut answered: HashSet<&str> = HashSet::new();
    for o in outcomes.iter().filter(|o| o.status == 201) {
        let (id, secret) = (o.id.as_deref().unwrap(), o.signing_secret.as_deref());
        answered.insert(id);
        match stored_secret.get(id) {
            None => found.violation(format!("201 for {id}, but no record{}", rig.story_of(id))),
            Some(stored) if stored.as_deref() != secret => found.violation(format!(
                "201 for {id}, but its stored signing secret differs{}",
                rig.story_of(id)
            )),
            Some(_) => {}
        }
    }
    for id in records.keys() {
        if !answered.contains(id.as_str()) {
            found.unreported_records.push(id.clone());
            found.violation(format!(
                "record {id} though no request got a 201 for it{}",
                rig.story_of(id)
            ));
        }
    }

    // The per-key counter.
    let counted = items
        .iter()
        .find(|i| s_attr(i, "id") == Some(&format!("quota#{}", rig.key_id)))
        .and_then(|i| i.get("webhookCount")?.as_n().ok()?.parse::<i64>().ok())
        .unwrap_or(0);
    if counted != records.len() as i64 {
        found.violation(format!(
            "per-key counter says {counted}, {} records exist",
            records.len()
        ));
    }

    // Idempotency: one webhook per key, repeats answer the same id and secret.
    let mut by_key: BTreeMap<&str, HashSet<(&str, &str)>> = BTreeMap::new();
    for o in outcomes.iter().filter(|o| o.status == 201) {
        if let Some(key) = &o.idempotency_key {
            by_key.entry(key).or_default().insert((
                o.id.as_deref().unwrap(),
                o.signing_secret.as_deref().unwrap(),
            ));
        }
    }
    for (key, answers) in by_key {
        if answers.len() > 1 {
            found.violation(format!(
                "idempotency key {key} answered {} different webhooks",
                answers.len()
            ));
        }
    }
    for claim in items
        .iter()
        .filter(|i| s_attr(i, "id").is_some_and(|id| id.starts_with("idempotency#")))
    {
        match (s_attr(claim, "status"), s_attr(claim, "webhookId")) {
            (Some("completed"), Some(id)) if !records.contains_key(id) => {
                found.dangling_claims.push(id.to_owned());
                found.violation(format!(
                    "idempotency claim completed with {id}, which does not exist{}",
                    rig.story_of(id)
                ));
            }
            (Some("in_progress"), _) => {
                found.stuck_claims += 1;
                let id = s_attr(claim, "id").unwrap();
                found
                    .notes
                    .push(format!("claim {id} still in progress{}", rig.story_of(id)));
            }
            _ => {}
        }
    }

    // Every answer: 201, a clean 503, or (repeated idempotency key) 409 REQUEST_IN_PROGRESS.
    for o in outcomes {
        let allowed = match (o.status, o.code.as_str()) {
            (201, _) => o.id.is_some() && o.signing_secret.is_some(),
            (503, "SERVICE_UNAVAILABLE") => o.clean,
            (409, "REQUEST_IN_PROGRESS") => o.idempotency_key.is_some(),
            _ => false,
        };
        if !allowed {
            found.violation(format!(
                "answer {} {} (clean: {}, idempotency key: {:?})",
                o.status, o.code, o.clean, o.idempotency_key
            ));
        }
    }
    found
}

fn tally(outcomes: &[Outcome]) -> BTreeMap<String, usize> {
    let mut tally = BTreeMap::new();
    for o in outcomes {
        let label = match (o.status, o.replayed) {
            (201, true) => "201 replayed".to_owned(),
            (201, false) => "201".to_owned(),
            (status, _) => format!("{status} {}", o.code),
        };
        *tally.entry(label).or_default() += 1;
    }
    tally
}

fn seed() -> u64 {
    std::env::var("FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_260_529)
}

struct Phase {
    name: &'static str,
    proxied: Proxied,
    requests: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_requests_under_injected_faults_answer_201_or_503_and_leave_nothing_behind() {
    let started = Instant::now();
    let seed = seed();
    let phases = [
        Phase {
            name: "dynamodb",
            proxied: Proxied::DynamoDb,
            requests: 300,
        },
        Phase {
            name: "secretsmanager",
            proxied: Proxied::SecretsManager,
            requests: 300,
        },
        Phase {
            name: "both",
            proxied: Proxied::Both,
            requests: 200,
        },
    ];
    let mut all_counts = FaultCounts::default();
    let mut all_outcomes = Vec::new();
    let mut violations = Vec::new();
    let mut totals = Findings::default();
    for (i, phase) in phases.iter().enumerate() {
        let phase_started = Instant::now();
        let phase_seed = seed.wrapping_add(i as u64 * 7_919);
        let rig = Rig::new(phase.proxied, phase_seed).await;
        let outcomes = run_mixed(&rig, phase.name, phase.requests, phase_seed).await;
        let counts = rig.counts();
        let found = check_invariants(&rig, &outcomes).await;
        let max = outcomes.iter().map(|o| o.latency).max().unwrap_or_default();
        println!(
            "faults[{}]: {} requests in {:.1}s, {counts}; answers {:?}; {} records, {} secrets, \
             {} orphan secrets, {} records without secret, {} unreported records, \
             {} stuck claims, {} dangling claims; max latency {:.2}s",
            phase.name,
            outcomes.len(),
            phase_started.elapsed().as_secs_f64(),
            tally(&outcomes),
            found.records,
            found.secrets,
            found.orphan_secrets.len(),
            found.records_without_secret.len(),
            found.unreported_records.len(),
            found.stuck_claims,
            found.dangling_claims.len(),
            max.as_secs_f64(),
        );
        for note in &found.notes {
            println!("faults[{}]: note: {note}", phase.name);
        }
        for (operation, n) in &counts.calls_by_operation {
            let faults: Vec<String> = Fault::ALL
                .iter()
                .filter(|f| counts.on(**f, operation) > 0)
                .map(|f| format!("{} {}", f.label(), counts.on(*f, operation)))
                .collect();
            println!(
                "faults[{}]:   {operation}: {n} calls; {}",
                phase.name,
                faults.join(", ")
            );
        }
        assert!(
            counts.total() >= 10,
            "phase {} injected only {counts}",
            phase.name
        );
        all_counts.add(&counts);
        violations.extend(
            found
                .violations
                .iter()
                .map(|v| format!("[{}] {v}", phase.name)),
        );
        totals.orphan_secrets.extend(found.orphan_secrets);
        totals
            .records_without_secret
            .extend(found.records_without_secret);
        totals.unreported_records.extend(found.unreported_records);
        all_outcomes.extend(outcomes);
    }
    let max = all_outcomes
        .iter()
        .map(|o| o.latency)
        .max()
        .unwrap_or_default();
    println!(
        "faults: seed {seed}; {} requests, {all_counts}; answers {:?}; orphan secrets {}, \
         records without secret {}, unreported records {}; max latency {:.2}s; {:.1}s in all",
        all_outcomes.len(),
        tally(&all_outcomes),
        totals.orphan_secrets.len(),
        totals.records_without_secret.len(),
        totals.unreported_records.len(),
        max.as_secs_f64(),
        started.elapsed().as_secs_f64(),
    );
    for violation in &violations {
        println!("faults: VIOLATION {violation}");
    }

    assert!(all_outcomes.len() >= 500, "{} requests", all_outcomes.len());
    assert!(all_counts.total() >= 40, "only {all_counts}");
    for fault in Fault::ALL {
        assert!(
            all_counts.of(fault) > 0,
            "no {} injected: {all_counts}",
            fault.label()
        );
    }
    assert!(
        violations.is_empty(),
        "{} violations:\n{}",
        violations.len(),
        violations.join("\n")
    );
    assert!(
        max < LATENCY_BUDGET,
        "a request took {max:?}, over the {LATENCY_BUDGET:?} budget"
    );
}

// ---------------------------------------------------------------------------------------------
// Scripted scenarios: one fault sequence each, at the exact call where it hurts.
// ---------------------------------------------------------------------------------------------

/// A rig whose container is warm (pepper and key cached), with the warm-up's outcome.
async fn warm_rig(proxied: Proxied) -> (Rig, Vec<Outcome>) {
    let rig = Rig::new(proxied, seed()).await;
    let warm = rig.send(SEED_BODY, None).await;
    assert_eq!(warm.answer.status, 201, "warm-up: {}", warm.answer.raw);
    let outcomes = vec![outcome(&warm, None, &internals(&rig.env))];
    (rig, outcomes)
}

/// Sends one request and records its outcome.
async fn send_recorded(
    rig: &Rig,
    outcomes: &mut Vec<Outcome>,
    body: &str,
    idempotency_key: Option<&str>,
) -> Outcome {
    let sent = rig.send(body, idempotency_key).await;
    let done = outcome(
        &sent,
        idempotency_key.map(str::to_owned),
        &internals(&rig.env),
    );
    outcomes.push(done.clone());
    done
}

/// Waits for late calls, checks that the script ran as written, and returns the findings.
async fn findings_after(rig: &Rig, outcomes: &[Outcome]) -> Findings {
    for proxy in rig.proxies() {
        assert_eq!(proxy.unused_script_steps(), 0, "the scenario ran otherwise");
    }
    rig.quiesce().await;
    check_invariants(rig, outcomes).await
}

fn assert_no_violations(found: &Findings) {
    assert!(
        found.violations.is_empty(),
        "{}",
        found.violations.join("\n")
    );
}

/// The transaction lands but its answer is lost; the SDK's retry then finds the record. It is
/// ours (same secret ARN), so the request succeeds.
#[tokio::test]
async fn a_record_written_whose_answer_was_lost_is_recognised_on_retry() {
    let (rig, mut outcomes) = warm_rig(Proxied::DynamoDb).await;
    rig.dynamodb()
        .script("TransactWriteItems", [Some(Fault::LoseAnswer)]);
    let answer = send_recorded(&rig, &mut outcomes, SEED_BODY, None).await;
    let found = findings_after(&rig, &outcomes).await;
    assert_eq!((answer.status, answer.code.as_str()), (201, ""));
    assert_no_violations(&found);
}

/// The transaction lands, its answer is lost, and the retries are throttled: the outcome is
/// unknown, so the record is removed (if it is ours) before the secret is deleted.
#[tokio::test]
async fn a_record_that_may_have_landed_is_removed_before_its_secret_is_deleted() {
    let (rig, mut outcomes) = warm_rig(Proxied::DynamoDb).await;
    rig.dynamodb().script(
        "TransactWriteItems",
        [
            Some(Fault::LoseAnswer),
            Some(Fault::Throttle),
            Some(Fault::Throttle),
        ],
    );
    let answer = send_recorded(&rig, &mut outcomes, SEED_BODY, None).await;
    let found = findings_after(&rig, &outcomes).await;
    assert_eq!(
        (answer.status, answer.code.as_str()),
        (503, "SERVICE_UNAVAILABLE")
    );
    assert_no_violations(&found);
}

/// As above, and the undo cannot reach DynamoDB either: whether the record exists is then
/// unknowable from inside the request. This is the one window the design accepts: the secret is
/// still deleted (in an outage nothing landed, far more often than not), so a record may be
/// left without its secret, never announced to the client (it got a 503), and its id is logged
/// at error level for reconciliation. Anything beyond that one record is a bug.
#[test]
fn when_the_undo_cannot_reach_dynamodb_the_only_leftover_is_a_logged_record() {
    let captured = CapturedLogs::default();
    let subscriber = telemetry::subscriber(telemetry::filter("info"), captured.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (rig, mut outcomes) = warm_rig(Proxied::DynamoDb).await;
        rig.dynamodb().script(
            "TransactWriteItems",
            [Some(Fault::LoseAnswer)]
                .into_iter()
                .chain([Some(Fault::Throttle); 5]),
        );
        let answer = send_recorded(&rig, &mut outcomes, SEED_BODY, None).await;
        let found = findings_after(&rig, &outcomes).await;
        assert_eq!(
            (answer.status, answer.code.as_str()),
            (503, "SERVICE_UNAVAILABLE")
        );
        assert!(found.orphan_secrets.is_empty(), "{:?}", found.violations);
        assert!(
            found.unreported_records.len() <= 1,
            "{:?}",
            found.violations
        );
        let logs = captured.text();
        for id in &found.unreported_records {
            assert!(
                logs.lines().any(|line| line.contains(id.as_str())
                    && line.contains("\"ERROR\"")
                    && line.contains("reconcile")),
                "record {id} was left without an error log line naming it:\n{logs}"
            );
        }
        println!(
            "faults[undo unreachable]: {} record(s) left for reconciliation, {} without secret",
            found.unreported_records.len(),
            found.records_without_secret.len()
        );
    });
}

/// CreateSecret lands but its answer is lost, and the retries fail: the secret may exist, so
/// it is deleted before the 503 (its name is known: prefix + webhook id).
#[tokio::test]
async fn a_secret_that_may_have_been_created_is_deleted_before_answering() {
    let (rig, mut outcomes) = warm_rig(Proxied::SecretsManager).await;
    rig.secrets().script(
        "CreateSecret",
        [
            Some(Fault::LoseAnswer),
            Some(Fault::Throttle),
            Some(Fault::Throttle),
        ],
    );
    let answer = send_recorded(&rig, &mut outcomes, SEED_BODY, None).await;
    let found = findings_after(&rig, &outcomes).await;
    assert_eq!(
        (answer.status, answer.code.as_str()),
        (503, "SERVICE_UNAVAILABLE")
    );
    assert_no_violations(&found);
}

/// The idempotency claim lands but its answer is lost; the SDK's retry then finds the claim.
/// It is this request's own, so the request goes on, and a retry of it replays the webhook.
#[tokio::test]
async fn a_claim_written_whose_answer_was_lost_is_recognised_on_retry() {
    let (rig, mut outcomes) = warm_rig(Proxied::DynamoDb).await;
    rig.dynamodb().script("PutItem", [Some(Fault::LoseAnswer)]);
    let first = send_recorded(&rig, &mut outcomes, SEED_BODY, Some("lost-claim")).await;
    let again = send_recorded(&rig, &mut outcomes, SEED_BODY, Some("lost-claim")).await;
    let found = findings_after(&rig, &outcomes).await;
    assert_eq!((first.status, first.code.as_str()), (201, ""), "first send");
    assert_eq!((again.status, again.id), (201, first.id), "retry");
    assert_no_violations(&found);
}

/// The transaction is held in the network past the whole operation (the SDK gives up on it,
/// the request is undone, the client gets its 503) and only then reaches DynamoDB. It must
/// not bring back a record whose secret is gone: the undo has to leave the id unusable.
#[tokio::test]
async fn a_transaction_delivered_after_the_undo_does_not_bring_the_record_back() {
    let (rig, mut outcomes) = warm_rig(Proxied::DynamoDb).await;
    let late = Duration::from_secs(8);
    rig.dynamodb().set_late_delay(late);
    rig.dynamodb().script(
        "TransactWriteItems",
        [
            Some(Fault::LateForward),
            Some(Fault::Throttle),
            Some(Fault::Throttle),
        ],
    );
    let answer = send_recorded(&rig, &mut outcomes, SEED_BODY, None).await;
    assert!(
        outcomes.last().unwrap().latency < late,
        "answered before the late call landed"
    );
    let found = findings_after(&rig, &outcomes).await;
    assert_eq!(
        (answer.status, answer.code.as_str()),
        (503, "SERVICE_UNAVAILABLE")
    );
    assert_no_violations(&found);
}

/// Everything after CreateSecret hangs: the transaction, its undo, the secret's deletion and
/// the claim's release each run into the SDK's operation timeout. The client must still get
/// its 503 well inside API Gateway's 29 s (and the function's 28 s).
#[tokio::test]
async fn when_aws_hangs_after_the_secret_is_created_the_answer_still_comes_in_time() {
    let (rig, _) = warm_rig(Proxied::Both).await;
    rig.dynamodb().always("TransactWriteItems", Fault::Stall);
    rig.dynamodb().always("DeleteItem", Fault::Stall);
    rig.secrets().always("DeleteSecret", Fault::Stall);
    let sent = rig.send(SEED_BODY, Some("hung")).await;
    rig.quiesce().await;
    println!(
        "faults[hang]: 503 after {:.2}s; {}",
        sent.latency.as_secs_f64(),
        rig.counts()
    );
    assert_eq!(sent.answer.status, 503, "{}", sent.answer.raw);
    assert!(
        sent.latency < LATENCY_BUDGET,
        "answered after {:?}, over the {LATENCY_BUDGET:?} budget",
        sent.latency
    );
}

// ---------------------------------------------------------------------------------------------
// PATCH (headers) and DELETE under faults: a mixed run, then scripted scenarios.
// ---------------------------------------------------------------------------------------------

/// A heavier mix than the create run's (a quarter of all calls): a PATCH of headers makes five
/// calls and a DELETE three, so that 503s, and not only retried successes, are common.
fn a_quarter() -> RandomFaults {
    RandomFaults {
        mix: vec![
            (Fault::Throttle, 80),
            (Fault::ServerError, 50),
            (Fault::Drop, 35),
            (Fault::LoseAnswer, 55),
            (Fault::Stall, 15),
            (Fault::LateForward, 15),
        ],
    }
}

/// A webhook as stored, in the terms the contract speaks of: its fields, the header names of
/// its record, and the headers (name, value) of the secret version the record points at.
#[derive(Clone, Debug, PartialEq)]
struct Stored {
    fields: Vec<String>,
    names: Vec<String>,
    /// `None`: the record's secret version cannot be read.
    headers: Option<Vec<(String, String)>>,
}

/// Record attributes a header PATCH must not touch.
const KEPT_FIELDS: [&str; 9] = [
    "apiKeyId",
    "companyId",
    "url",
    "name",
    "description",
    "events",
    "isActive",
    "secretArn",
    "createdAt",
];

/// The live webhook `id` as stored (`None`: no record, or only its tombstone).
async fn stored(env: &AwsEnv, id: &str) -> Option<Stored> {
    let record = requests::record(env, id).await?;
    let document = requests::document_of(env, &record).await;
    Some(Stored {
        fields: KEPT_FIELDS
            .iter()
            .map(|f| format!("{f}={:?}", record.get(*f)))
            .collect(),
        names: requests::strings(&record, "headerNames"),
        headers: document.as_ref().map(requests::document_headers),
    })
}

/// Whether the secret of webhook `id` exists in any form (scheduled for deletion included).
async fn secret_exists(env: &AwsEnv, id: &str) -> bool {
    let described = env
        .secretsmanager
        .describe_secret()
        .secret_id(format!("{}{id}", env.secret_prefix))
        .send()
        .await;
    match described {
        Ok(_) => true,
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            false
        }
        Err(e) => panic!("describe secret of {id}: {e:?}"),
    }
}

/// What one worker does, one request after the other.
enum Lane {
    /// PATCH the headers of a seeded webhook with each list in turn, then maybe DELETE it.
    Manage {
        id: String,
        patches: Vec<Vec<(String, String)>>,
        delete: bool,
    },
    /// One create.
    Create { body: String },
}

/// What the run's requests led to, as checked right after each answer.
#[derive(Default)]
struct ManageRun {
    tally: BTreeMap<String, usize>,
    violations: Vec<String>,
    /// Webhooks whose DELETE answered 503: retried without faults at the end.
    delete_503: Vec<String>,
    /// Webhooks the client was told are deleted (204, or 404 on a first DELETE, see below).
    deleted: HashSet<String>,
    /// Webhooks a create answered 201 for.
    created: HashSet<String>,
    /// 503s after which the webhook was as before / as asked.
    as_before: usize,
    as_asked: usize,
}

impl ManageRun {
    fn count(&mut self, what: &str, status: u16, code: &str) {
        *self
            .tally
            .entry(format!("{what} {status} {code}").trim().to_owned())
            .or_default() += 1;
    }
}

/// How long a call the proxy holds can still land after its request answered.
fn late_landing() -> Duration {
    support::fault_proxy::late_forward_delay() + Duration::from_millis(1_500)
}

async fn run_lane(rig: &Rig, lane: Lane, run: &Mutex<ManageRun>) {
    let env = &rig.env;
    let internals = internals(env);
    let leaks = |answer: &Answer| {
        answer.status == 503
            && (answer.header("retry-after").is_none()
                || internals.iter().any(|w| answer.raw.contains(w.as_str())))
    };
    match lane {
        Lane::Create { body } => {
            let answer = rig.send(&body, None).await.answer;
            let mut run = run.lock().unwrap();
            run.count("create", answer.status, answer.code());
            match answer.status {
                201 => {
                    let id = answer.json["data"]["id"].as_str().unwrap().to_owned();
                    run.created.insert(id);
                }
                503 if !leaks(&answer) => {}
                _ => run
                    .violations
                    .push(format!("create answered {}: {}", answer.status, answer.raw)),
            }
        }
        Lane::Manage {
            id,
            patches,
            delete,
        } => {
            for headers in patches {
                let before = stored(env, &id).await;
                let request =
                    requests::patch_webhook(&rig.token, &id, &requests::headers_body(&headers));
                let answer = requests::send(&*rig.app, request).await;
                if answer.status == 503 {
                    // Let a call the proxy held land before judging.
                    tokio::time::sleep(late_landing()).await;
                }
                let after = stored(env, &id).await;
                let names: Vec<String> = headers.iter().map(|(n, _)| n.clone()).collect();
                let as_asked = after.as_ref().is_some_and(|a| {
                    a.names == names
                        && a.headers.as_ref() == Some(&headers)
                        && before.as_ref().is_some_and(|b| b.fields == a.fields)
                });
                let unchanged = after.is_some() && after == before;
                let mut run = run.lock().unwrap();
                run.count("patch", answer.status, answer.code());
                match answer.status {
                    200 if as_asked => {}
                    503 if !leaks(&answer) && (as_asked || unchanged) => {
                        if as_asked {
                            run.as_asked += 1;
                        } else {
                            run.as_before += 1;
                        }
                    }
                    status => run.violations.push(format!(
                        "PATCH {id} answered {status} {}; before {before:?}, asked {headers:?}, \
                         after {after:?}{}",
                        answer.code(),
                        rig.story_of(&id)
                    )),
                }
            }
            if !delete {
                return;
            }
            let before = stored(env, &id).await;
            let answer = requests::send(&*rig.app, requests::delete_webhook(&rig.token, &id)).await;
            if answer.status == 503 {
                tokio::time::sleep(late_landing()).await;
            }
            let after = stored(env, &id).await;
            let secret = secret_exists(env, &id).await;
            // moto ignores the transaction's ClientRequestToken, so when the first attempt
            // landed and its answer was lost (or it landed late), the SDK's retry meets the
            // tombstone and the DELETE answers 404, where DynamoDB would answer the retry as
            // the first attempt (204). Allowed only when that happened to this transaction.
            let transaction_repeated = rig.proxies().any(|p| {
                p.calls_mentioning(&id).iter().any(|c| {
                    c.operation == "TransactWriteItems"
                        && matches!(c.fault, Some(Fault::LoseAnswer | Fault::LateForward))
                })
            });
            let mut run = run.lock().unwrap();
            run.count("delete", answer.status, answer.code());
            match answer.status {
                204 if after.is_none() && !secret => {
                    run.deleted.insert(id);
                }
                404 if after.is_none() && !secret && transaction_repeated => {
                    run.deleted.insert(id);
                }
                503 if !leaks(&answer) && (after.is_none() || after == before) => {
                    if after.is_none() {
                        run.as_asked += 1;
                    } else {
                        run.as_before += 1;
                    }
                    run.delete_503.push(id);
                }
                status => run.violations.push(format!(
                    "DELETE {id} answered {status} {}; before {before:?}, after {after:?}, \
                     secret exists: {secret}{}",
                    answer.code(),
                    rig.story_of(&id)
                )),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_patches_and_deletes_under_injected_faults_keep_records_and_secrets_in_step() {
    let started = Instant::now();
    let seed = seed().wrapping_add(104_729);
    let rig = Arc::new(Rig::new(Proxied::Both, seed).await);
    let env = &rig.env;
    let mut rng = XorShift::new(seed);

    // Twenty-four webhooks with headers, created while nothing fails.
    let mut seeded = Vec::new();
    for n in 0..24 {
        let body = json!({
            "url": format!("https://hooks.example.com/seed/{n}"),
            "events": ["ping"],
            "headers": [{"name": "X-Seed", "value": format!("seed value {n}")}],
        });
        let sent = rig.send(&body.to_string(), None).await;
        assert_eq!(sent.answer.status, 201, "seed: {}", sent.answer.raw);
        seeded.push(sent.answer.json["data"]["id"].as_str().unwrap().to_owned());
    }

    // Each seeded webhook: two header PATCHes (1 to 3 headers each), then a DELETE for two in
    // three; and sixteen creates, all shuffled into one queue for six workers.
    let mut lanes: Vec<Lane> = seeded
        .iter()
        .enumerate()
        .map(|(n, id)| Lane::Manage {
            id: id.clone(),
            patches: (0..2)
                .map(|round| {
                    (0..1 + rng.below(3))
                        .map(|i| {
                            (
                                format!("X-Round-{round}-{i}"),
                                format!("value {n}/{round}/{i} {}", rng.next_u64()),
                            )
                        })
                        .collect()
                })
                .collect(),
            delete: n % 3 != 0,
        })
        .collect();
    for n in 0..16 {
        lanes.push(Lane::Create {
            body: random_body(&mut rng, 1_000 + n),
        });
    }
    for i in (1..lanes.len()).rev() {
        lanes.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let queue = Arc::new(Mutex::new(VecDeque::from(lanes)));
    let run = Arc::new(Mutex::new(ManageRun::default()));
    for proxy in rig.proxies() {
        proxy.set_random(a_quarter());
    }
    let workers: Vec<_> = (0..6)
        .map(|_| {
            let (rig, queue, run) = (rig.clone(), queue.clone(), run.clone());
            tokio::spawn(async move {
                loop {
                    let Some(lane) = queue.lock().unwrap().pop_front() else {
                        return;
                    };
                    run_lane(&rig, lane, &run).await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker");
    }
    let counts = rig.counts();
    rig.quiesce().await;

    // A client retries a DELETE that answered 503; without faults it must finish it.
    let mut run = std::mem::take(&mut *run.lock().unwrap());
    for id in std::mem::take(&mut run.delete_503) {
        let answer = requests::send(&*rig.app, requests::delete_webhook(&rig.token, &id)).await;
        run.count("retried delete", answer.status, answer.code());
        if !matches!(answer.status, 204 | 404) {
            run.violations
                .push(format!("retried DELETE {id} answered {}", answer.status));
        }
        run.deleted.insert(id);
    }

    // The end state: every record with its secret and in step with it, no secret without a
    // record, the count exact, and exactly the webhooks the client was told exist.
    let records: HashMap<String, requests::Item> = env
        .webhook_records()
        .await
        .into_iter()
        .map(|r| (requests::s(&r, "id").unwrap().to_owned(), r))
        .collect();
    let secrets: HashSet<String> = env
        .secret_names()
        .await
        .into_iter()
        .map(|name| name.strip_prefix(&env.secret_prefix).unwrap().to_owned())
        .collect();
    let (mut without_secret, mut out_of_step) = (0, 0);
    for (id, record) in &records {
        match requests::document_of(env, record).await {
            None => {
                without_secret += 1;
                run.violations.push(format!(
                    "record {id} without its secret{}",
                    rig.story_of(id)
                ));
            }
            Some(document) => {
                let names = requests::strings(record, "headerNames");
                if requests::document_names(&document) != names {
                    out_of_step += 1;
                    run.violations.push(format!(
                        "record {id} names {names:?}, its secret version holds {:?}{}",
                        requests::document_names(&document),
                        rig.story_of(id)
                    ));
                }
            }
        }
    }
    let orphans: Vec<&String> = secrets
        .iter()
        .filter(|id| !records.contains_key(*id))
        .collect();
    for id in &orphans {
        run.violations.push(format!(
            "secret of {id} without its record{}",
            rig.story_of(id)
        ));
    }
    let counted = requests::quota(env, &rig.key_id).await;
    if counted != records.len() as i64 {
        run.violations.push(format!(
            "per-key count {counted}, {} records",
            records.len()
        ));
    }
    let expected: HashSet<String> = seeded
        .iter()
        .filter(|id| !run.deleted.contains(*id))
        .chain(run.created.iter())
        .cloned()
        .collect();
    let live: HashSet<String> = records.keys().cloned().collect();
    for id in live.difference(&expected) {
        run.violations.push(format!(
            "record {id} the client was not told of{}",
            rig.story_of(id)
        ));
    }
    for id in expected.difference(&live) {
        run.violations.push(format!(
            "webhook {id} the client was told exists is gone{}",
            rig.story_of(id)
        ));
    }
    println!(
        "faults[patch+delete]: seed {seed}; {counts}; answers {:?}; 503s as before {}, as \
         asked {}; {} records, {} secrets, count {counted}; {without_secret} records without \
         secret, {} secrets without record, {out_of_step} out of step; {:.1}s",
        run.tally,
        run.as_before,
        run.as_asked,
        records.len(),
        secrets.len(),
        orphans.len(),
        started.elapsed().as_secs_f64(),
    );
    for operation in [
        "UpdateItem",
        "GetItem",
        "TransactWriteItems",
        "PutSecretValue",
        "GetSecretValue",
        "DeleteSecret",
    ] {
        let faults: Vec<String> = Fault::ALL
            .iter()
            .filter(|f| counts.on(**f, operation) > 0)
            .map(|f| format!("{} {}", f.label(), counts.on(*f, operation)))
            .collect();
        println!("faults[patch+delete]:   {operation}: {}", faults.join(", "));
    }
    assert!(counts.total() >= 40, "only {counts}");
    assert!(
        run.violations.is_empty(),
        "{} violations:\n{}",
        run.violations.len(),
        run.violations.join("\n")
    );
}

/// The PATCH's conditional write lands but its answer is lost: the SDK's retry meets the moved
/// secret pointer, and the PATCH goes round again and answers 200 with names and secret in step.
#[tokio::test]
async fn a_header_patch_whose_record_write_lost_its_answer_ends_as_asked() {
    let (rig, _) = warm_rig(Proxied::DynamoDb).await;
    let id = only_record(&rig).await;
    let headers = vec![("X-After".to_owned(), "after value".to_owned())];
    // The first UpdateItem is the request's rate count; the second is the PATCH's write.
    rig.dynamodb()
        .script("UpdateItem", [None, Some(Fault::LoseAnswer)]);
    let request = requests::patch_webhook(&rig.token, &id, &requests::headers_body(&headers));
    let answer = requests::send(&*rig.app, request).await;
    rig.quiesce().await;
    assert_eq!(rig.dynamodb().unused_script_steps(), 0);
    assert_eq!(answer.status, 200, "{}", answer.raw);
    let after = stored(&rig.env, &id).await.unwrap();
    assert_eq!(after.names, ["X-After"]);
    assert_eq!(after.headers, Some(headers));
}

/// The record is deleted but the secret's deletion keeps failing: 503, the record is gone (the
/// webhook is "entirely as asked" for the client), and the client's retry of the DELETE
/// finishes the secret and answers 404.
#[tokio::test]
async fn a_delete_whose_secret_deletion_failed_is_finished_by_its_retry() {
    let (rig, _) = warm_rig(Proxied::SecretsManager).await;
    let id = only_record(&rig).await;
    rig.secrets()
        .script("DeleteSecret", [Some(Fault::Throttle); 3]);
    let first = requests::send(&*rig.app, requests::delete_webhook(&rig.token, &id)).await;
    assert_eq!((first.status, first.code()), (503, "SERVICE_UNAVAILABLE"));
    assert_eq!(stored(&rig.env, &id).await, None, "the record is gone");
    assert!(
        secret_exists(&rig.env, &id).await,
        "the secret waits for a retry"
    );
    assert_eq!(requests::quota(&rig.env, &rig.key_id).await, 0);

    let retried = requests::send(&*rig.app, requests::delete_webhook(&rig.token, &id)).await;
    assert_eq!(retried.status, 404, "{}", retried.raw);
    assert!(!secret_exists(&rig.env, &id).await, "the retry deleted it");
    assert_eq!(
        requests::quota(&rig.env, &rig.key_id).await,
        0,
        "counted down once"
    );
}

/// The DELETE's transaction fails for good, once before it lands (throttled thrice) and once
/// after (its answer lost, then throttled): 503 both times, the webhook whole in the first
/// case and gone in the second; the client's retry finishes both, and the count goes down once
/// per webhook.
#[tokio::test]
async fn a_delete_whose_transaction_failed_answers_503_whole_or_gone_and_its_retry_finishes_it() {
    let (rig, _) = warm_rig(Proxied::DynamoDb).await;
    let first = only_record(&rig).await;
    let second = rig.send(SEED_BODY, None).await.answer.json["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let whole = stored(&rig.env, &first).await;
    rig.dynamodb()
        .script("TransactWriteItems", [Some(Fault::Throttle); 3]);
    let answer = requests::send(&*rig.app, requests::delete_webhook(&rig.token, &first)).await;
    assert_eq!((answer.status, answer.code()), (503, "SERVICE_UNAVAILABLE"));
    assert_eq!(stored(&rig.env, &first).await, whole, "whole");
    assert!(secret_exists(&rig.env, &first).await);
    assert_eq!(requests::quota(&rig.env, &rig.key_id).await, 2);

    rig.dynamodb().script(
        "TransactWriteItems",
        [
            Some(Fault::LoseAnswer),
            Some(Fault::Throttle),
            Some(Fault::Throttle),
        ],
    );
    let answer = requests::send(&*rig.app, requests::delete_webhook(&rig.token, &second)).await;
    assert_eq!((answer.status, answer.code()), (503, "SERVICE_UNAVAILABLE"));
    assert_eq!(stored(&rig.env, &second).await, None, "gone");
    assert_eq!(requests::quota(&rig.env, &rig.key_id).await, 1);

    assert_eq!(rig.dynamodb().unused_script_steps(), 0);
    let retried = requests::send(&*rig.app, requests::delete_webhook(&rig.token, &first)).await;
    assert_eq!(retried.status, 204, "{}", retried.raw);
    let retried = requests::send(&*rig.app, requests::delete_webhook(&rig.token, &second)).await;
    assert_eq!(retried.status, 404, "{}", retried.raw);
    for id in [&first, &second] {
        assert_eq!(stored(&rig.env, id).await, None);
        assert!(!secret_exists(&rig.env, id).await, "secret of {id} left");
    }
    assert_eq!(requests::quota(&rig.env, &rig.key_id).await, 0);
}

/// A PATCH with `If-Match` whose conditional write lands but loses its answer: the SDK's
/// retry meets the request's own change (the version moved on), and the request must not
/// answer `412` ("changes nothing") for a change it made. UpdateItem has no idempotency token,
/// so this happens against DynamoDB as it does here.
#[tokio::test]
async fn a_conditional_patch_whose_write_lost_its_answer_does_not_answer_412_for_its_own_change() {
    let (rig, _) = warm_rig(Proxied::DynamoDb).await;
    let id = only_record(&rig).await;
    // The first UpdateItem is the request's rate count; the second is the PATCH's write.
    rig.dynamodb()
        .script("UpdateItem", [None, Some(Fault::LoseAnswer)]);
    let request = requests::patch_webhook(&rig.token, &id, &json!({"name": "Renamed"}))
        .header("if-match", "\"1\"");
    let answer = requests::send(&*rig.app, request).await;
    rig.quiesce().await;
    assert_eq!(rig.dynamodb().unused_script_steps(), 0);
    let record = requests::record(&rig.env, &id).await.unwrap();
    let landed = (
        requests::s(&record, "name").map(str::to_owned),
        requests::n(&record, "version"),
    );
    assert_eq!(
        landed,
        (Some("Renamed".to_owned()), Some(2)),
        "the write landed"
    );
    assert_eq!(
        (answer.status, answer.code()),
        (200, ""),
        "the PATCH's own change is stored (version 2), but it answered {}",
        answer.raw
    );
}

/// A header PATCH that has read the record when a DELETE of the same webhook completes: its
/// read of the (now deleted) secret finds nothing. The webhook no longer exists, so the answer
/// is the contract's 404, not a 500 ("a bug"). The proxy only holds the PATCH's read of the
/// secret (0.8 s, inside the attempt timeout) while the DELETE runs on another container.
#[tokio::test]
async fn a_header_patch_that_loses_a_race_with_a_delete_answers_404_not_500() {
    let (rig, _) = warm_rig(Proxied::SecretsManager).await;
    let rig = Arc::new(rig);
    let id = only_record(&rig).await;
    let reads_before = secret_reads(&rig);
    rig.secrets().set_late_delay(Duration::from_millis(800));
    rig.secrets()
        .script("GetSecretValue", [Some(Fault::LateForward)]);
    let patching = tokio::spawn({
        let (rig, id) = (rig.clone(), id.clone());
        async move {
            let headers = [("X-Late".to_owned(), "late value".to_owned())];
            let request =
                requests::patch_webhook(&rig.token, &id, &requests::headers_body(&headers));
            requests::send(&*rig.app, request).await
        }
    });
    let waiting = Instant::now();
    while secret_reads(&rig) == reads_before {
        assert!(
            waiting.elapsed() < Duration::from_secs(10),
            "the PATCH never read"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let other_container = rig.env.app(Settings::default());
    let deleted = requests::send(&other_container, requests::delete_webhook(&rig.token, &id)).await;
    assert_eq!(deleted.status, 204, "{}", deleted.raw);
    let patched = patching.await.expect("PATCH task");
    rig.quiesce().await;
    assert_eq!(stored(&rig.env, &id).await, None);
    assert!(!secret_exists(&rig.env, &id).await);
    assert_eq!(
        (patched.status, patched.code()),
        (404, "RESOURCE_NOT_FOUND"),
        "{}",
        patched.raw
    );
}

/// GetSecretValue calls the rig's Secrets Manager proxy has seen.
fn secret_reads(rig: &Rig) -> u64 {
    rig.secrets()
        .counts()
        .calls_by_operation
        .get("GetSecretValue")
        .copied()
        .unwrap_or(0)
}

/// The id of the rig's one webhook (the warm-up's).
async fn only_record(rig: &Rig) -> String {
    let records = rig.env.webhook_records().await;
    assert_eq!(records.len(), 1);
    requests::s(&records[0], "id").unwrap().to_owned()
}

#[test]
fn the_fault_rng_is_reproducible_and_spread() {
    let mut a = XorShift::new(7);
    let mut b = XorShift::new(7);
    let rolls: Vec<u64> = (0..10_000).map(|_| a.below(10)).collect();
    assert_eq!(rolls, (0..10_000).map(|_| b.below(10)).collect::<Vec<_>>());
    for digit in 0..10 {
        let n = rolls.iter().filter(|r| **r == digit).count();
        assert!((800..1200).contains(&n), "{digit}: {n}");
    }
}
