//! A fault-injecting TCP proxy for the integration tests: it sits between an SDK client and the
//! local emulator and, per connection, drops, stalls, delays or answers an error instead of
//! the emulator.
//!
//! moto answers HTTP/1.0 and closes the connection after each answer, and the proxy closes
//! after relaying one answer too, so one connection carries exactly one AWS call and a decision
//! per connection is a decision per call. The proxy reads each request in full first, so it
//! knows the operation (`X-Amz-Target`): tests can script faults for one operation
//! ([`FaultProxy::script`], [`FaultProxy::always`]) or let a seeded RNG pick faults at random
//! ([`FaultProxy::set_random`]). Everything injected is counted.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How long [`Fault::LateForward`] holds a request by default: half a second past the
/// function's attempt timeout, so the client has given up (and retries) before the call
/// reaches the emulator, but the operation is usually still running when it lands.
pub fn late_forward_delay() -> Duration {
    instaview_webhooks::aws::ATTEMPT_TIMEOUT + Duration::from_millis(500)
}
/// The longest [`Fault::Stall`] holds a connection when the client does not give up first.
pub const STALL_LIMIT: Duration = Duration::from_secs(60);
/// Largest request or answer the proxy reads (the tests' calls are a few KiB).
const MAX_MESSAGE: usize = 4 << 20;

/// What the proxy does to one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// Reads the request and closes the connection without forwarding it: nothing landed.
    Drop,
    /// Forwards the request, waits for the emulator's answer, then closes without relaying
    /// it: the call landed and the client cannot know. The ambiguous case.
    LoseAnswer,
    /// Holds the request until the client gives up (its attempt timeout), never forwarding it:
    /// a hung service.
    Stall,
    /// Holds the request for [`late_forward_delay`] (past the attempt timeout) or what
    /// [`FaultProxy::set_late_delay`] says, then forwards it: the call lands late, after the
    /// client has given up on it.
    LateForward,
    /// Answers `500` with the service's internal-error code, without forwarding.
    ServerError,
    /// Answers `400 ThrottlingException`, without forwarding.
    Throttle,
}

impl Fault {
    pub const ALL: [Fault; 6] = [
        Fault::Drop,
        Fault::LoseAnswer,
        Fault::Stall,
        Fault::LateForward,
        Fault::ServerError,
        Fault::Throttle,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Fault::Drop => "drop",
            Fault::LoseAnswer => "lost-answer",
            Fault::Stall => "stall",
            Fault::LateForward => "late-forward",
            Fault::ServerError => "500",
            Fault::Throttle => "throttle",
        }
    }
}

/// What the proxy injected so far.
#[derive(Clone, Debug, Default)]
pub struct FaultCounts {
    /// Connections accepted (one AWS call each).
    pub calls: u64,
    /// Calls per operation, faulted or not (`"CreateSecret"`, `"TransactWriteItems"`, ...).
    pub calls_by_operation: BTreeMap<String, u64>,
    /// Faults per kind and operation.
    pub faults: BTreeMap<(Fault, String), u64>,
}

impl FaultCounts {
    pub fn total(&self) -> u64 {
        self.faults.values().sum()
    }

    pub fn of(&self, fault: Fault) -> u64 {
        self.faults
            .iter()
            .filter(|((f, _), _)| *f == fault)
            .map(|(_, n)| n)
            .sum()
    }

    pub fn on(&self, fault: Fault, operation: &str) -> u64 {
        self.faults
            .get(&(fault, operation.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Adds another proxy's counts (for a summary over several proxies).
    pub fn add(&mut self, other: &FaultCounts) {
        self.calls += other.calls;
        for (operation, n) in &other.calls_by_operation {
            *self
                .calls_by_operation
                .entry(operation.clone())
                .or_default() += n;
        }
        for (key, n) in &other.faults {
            *self.faults.entry(key.clone()).or_default() += n;
        }
    }
}

impl fmt::Display for FaultCounts {
    /// `183 faults in 1840 calls (throttle 55, 500 36, ...)`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} faults in {} calls (", self.total(), self.calls)?;
        for (i, fault) in Fault::ALL.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{} {}", fault.label(), self.of(*fault))?;
        }
        write!(f, ")")
    }
}

/// The random fault mix: for each call, `fault` with probability `per_mille / 1000`.
#[derive(Clone, Debug, Default)]
pub struct RandomFaults {
    pub mix: Vec<(Fault, u32)>,
}

/// A small seeded PRNG (xorshift64*): reproducible fault choices without a dependency.
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        // Zero is xorshift's one fixed point.
        Self((seed ^ 0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// One call through the proxy, for explaining a failed invariant afterwards.
#[derive(Clone, Debug)]
pub struct CallRecord {
    /// When the call arrived, since the proxy started.
    pub at: Duration,
    pub operation: String,
    pub fault: Option<Fault>,
    /// The emulator's status when the call was forwarded (`None`: it never reached it).
    pub upstream_status: Option<u16>,
    /// The request body (JSON; holds webhook ids and secret names, never anything real).
    pub body: String,
}

impl fmt::Display for CallRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fault = self.fault.map_or("passed", Fault::label);
        let landed = match self.upstream_status {
            Some(status) => format!("emulator answered {status}"),
            None => "never reached the emulator".into(),
        };
        write!(
            f,
            "+{:.3}s {} {fault}, {landed}",
            self.at.as_secs_f64(),
            self.operation
        )
    }
}

#[derive(Debug)]
struct Rules {
    rng: XorShift,
    random: RandomFaults,
    /// Per operation: the next calls' fate, in order (`None` = pass through). Takes precedence.
    scripts: HashMap<String, VecDeque<Option<Fault>>>,
    /// Per operation: every call gets this fault (after any script ran out).
    always: HashMap<String, Fault>,
    late_delay: Duration,
    counts: FaultCounts,
    journal: Vec<CallRecord>,
}

impl Rules {
    fn decide(&mut self, operation: &str) -> Option<Fault> {
        self.counts.calls += 1;
        *self
            .counts
            .calls_by_operation
            .entry(operation.to_owned())
            .or_default() += 1;
        let fault = if let Some(step) = self.scripts.get_mut(operation).and_then(|s| s.pop_front())
        {
            step
        } else if let Some(fault) = self.always.get(operation) {
            Some(*fault)
        } else {
            let roll = self.rng.below(1000) as u32;
            let mut bound = 0;
            self.random.mix.iter().find_map(|(fault, weight)| {
                bound += weight;
                (roll < bound).then_some(*fault)
            })
        };
        if let Some(fault) = fault {
            *self
                .counts
                .faults
                .entry((fault, operation.to_owned()))
                .or_default() += 1;
        }
        fault
    }
}

/// A running proxy. Dropping it stops accepting connections; calls in flight finish.
pub struct FaultProxy {
    endpoint: String,
    rules: Arc<Mutex<Rules>>,
    in_flight: Arc<AtomicU64>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy on a free port of 127.0.0.1 in front of `upstream` (`http://host:port`),
    /// passing everything through until told otherwise.
    pub async fn start(upstream: &str, seed: u64) -> Self {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("upstream is http://ip:port");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let rules = Arc::new(Mutex::new(Rules {
            rng: XorShift::new(seed),
            random: RandomFaults::default(),
            scripts: HashMap::new(),
            always: HashMap::new(),
            late_delay: late_forward_delay(),
            counts: FaultCounts::default(),
            journal: Vec::new(),
        }));
        let in_flight = Arc::new(AtomicU64::new(0));
        let started = tokio::time::Instant::now();
        let accept = tokio::spawn({
            let (rules, in_flight) = (rules.clone(), in_flight.clone());
            async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    let (rules, in_flight) = (rules.clone(), in_flight.clone());
                    in_flight.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(async move {
                        let at = started.elapsed();
                        if let Some(mut record) = serve(client, upstream, &rules).await {
                            record.at = at;
                            lock(&rules).journal.push(record);
                        }
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            }
        });
        Self {
            endpoint,
            rules,
            in_flight,
            accept,
        }
    }

    /// `http://127.0.0.1:<port>`, for an SDK client's endpoint URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn rules(&self) -> std::sync::MutexGuard<'_, Rules> {
        lock(&self.rules)
    }

    /// Random faults from now on (an empty mix turns them off).
    pub fn set_random(&self, random: RandomFaults) {
        self.rules().random = random;
    }

    /// The next calls of `operation` (e.g. `"CreateSecret"`) meet `steps` in order; `None`
    /// passes a call through. Appends to an existing script.
    pub fn script(&self, operation: &str, steps: impl IntoIterator<Item = Option<Fault>>) {
        self.rules()
            .scripts
            .entry(operation.to_owned())
            .or_default()
            .extend(steps);
    }

    /// Every later call of `operation` meets `fault` (until [`Self::clear`]).
    pub fn always(&self, operation: &str, fault: Fault) {
        self.rules().always.insert(operation.to_owned(), fault);
    }

    /// How long [`Fault::LateForward`] holds a call from now on.
    pub fn set_late_delay(&self, delay: Duration) {
        self.rules().late_delay = delay;
    }

    /// No more scripted, permanent or random faults.
    pub fn clear(&self) {
        let mut rules = self.rules();
        rules.scripts.clear();
        rules.always.clear();
        rules.random = RandomFaults::default();
    }

    /// Scripted steps not yet used, per operation (to check a scenario ran as written).
    pub fn unused_script_steps(&self) -> usize {
        self.rules().scripts.values().map(VecDeque::len).sum()
    }

    pub fn counts(&self) -> FaultCounts {
        self.rules().counts.clone()
    }

    /// The calls whose request body mentions `needle` (a webhook id, a secret ARN), in the
    /// order they arrived.
    pub fn calls_mentioning(&self, needle: &str) -> Vec<CallRecord> {
        let mut calls: Vec<CallRecord> = self
            .rules()
            .journal
            .iter()
            .filter(|call| call.body.contains(needle))
            .cloned()
            .collect();
        calls.sort_by_key(|call| call.at);
        calls
    }

    /// Waits until no call is in flight (late forwards landed, stalls ended), at most `limit`.
    pub async fn settle(&self, limit: Duration) {
        let started = tokio::time::Instant::now();
        while self.in_flight.load(Ordering::SeqCst) > 0 && started.elapsed() < limit {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn lock(rules: &Mutex<Rules>) -> std::sync::MutexGuard<'_, Rules> {
    rules.lock().unwrap_or_else(|e| e.into_inner())
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// One HTTP message as read off the wire: head (with the blank line) and body.
struct Message {
    bytes: Vec<u8>,
    head_len: usize,
}

impl Message {
    fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.bytes[..self.head_len], name)
    }

    /// The status of an answer (`HTTP/1.0 200 OK` → 200).
    fn status(&self) -> Option<u16> {
        let line = self.bytes.split(|b| *b == b'\r').next()?;
        std::str::from_utf8(line)
            .ok()?
            .split(' ')
            .nth(1)?
            .parse()
            .ok()
    }
}

fn header_in<'a>(head: &'a [u8], name: &str) -> Option<&'a str> {
    let head = std::str::from_utf8(head).ok()?;
    head.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Reads one message with a `Content-Length` body (or, without one, everything up to EOF when
/// `to_eof_without_length`, as an HTTP/1.0 answer is delimited). `None` if the peer went away.
async fn read_message(stream: &mut TcpStream, to_eof_without_length: bool) -> Option<Message> {
    let mut bytes = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    let head_len = loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || bytes.len() > MAX_MESSAGE {
            return None;
        }
        bytes.extend_from_slice(&chunk[..n]);
    };
    let length =
        header_in(&bytes[..head_len], "content-length").and_then(|v| v.parse::<usize>().ok());
    match length {
        Some(length) => {
            while bytes.len() < head_len + length {
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                bytes.extend_from_slice(&chunk[..n]);
            }
        }
        None if to_eof_without_length => loop {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 || bytes.len() > MAX_MESSAGE {
                break;
            }
            bytes.extend_from_slice(&chunk[..n]);
        },
        None => {}
    }
    Some(Message { bytes, head_len })
}

/// `DynamoDB_20120810.TransactWriteItems` → (`dynamodb`, `TransactWriteItems`).
fn operation_of(request: &Message) -> (Service, String) {
    let target = request.header("x-amz-target").unwrap_or("unknown.Unknown");
    let (prefix, operation) = target.split_once('.').unwrap_or(("unknown", target));
    let service = if prefix.starts_with("DynamoDB") {
        Service::DynamoDb
    } else {
        Service::SecretsManager
    };
    (service, operation.to_owned())
}

#[derive(Clone, Copy, Debug)]
enum Service {
    DynamoDb,
    SecretsManager,
}

/// An error answer as the service sends it (awsJson protocols: the code in `__type` and in
/// `x-amzn-ErrorType`).
fn error_answer(service: Service, fault: Fault) -> Vec<u8> {
    let (status, reason, code) = match (service, fault) {
        (Service::DynamoDb, Fault::ServerError) => {
            (500, "Internal Server Error", "InternalServerError")
        }
        (Service::SecretsManager, Fault::ServerError) => {
            (500, "Internal Server Error", "InternalServiceError")
        }
        (_, _) => (400, "Bad Request", "ThrottlingException"),
    };
    let (content_type, type_name) = match service {
        Service::DynamoDb => (
            "application/x-amz-json-1.0",
            format!("com.amazonaws.dynamodb.v20120810#{code}"),
        ),
        Service::SecretsManager => ("application/x-amz-json-1.1", code.to_owned()),
    };
    let message = if fault == Fault::Throttle {
        "Rate exceeded"
    } else {
        "The service encountered an internal error. Try again."
    };
    let body = format!(r#"{{"__type":"{type_name}","message":"{message}"}}"#);
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\n\
         x-amzn-errortype: {code}\r\nx-amzn-requestid: fault-proxy\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Sends the request to the emulator and returns its answer.
async fn forward(upstream: SocketAddr, request: &Message) -> Option<Message> {
    let mut server = TcpStream::connect(upstream).await.ok()?;
    server.write_all(&request.bytes).await.ok()?;
    read_message(&mut server, true).await
}

/// Waits until the client closes its side (it gave up) or `limit` passes.
async fn wait_for_client_to_give_up(client: &mut TcpStream, limit: Duration) {
    let mut byte = [0u8; 1];
    let _ = tokio::time::timeout(limit, async {
        while matches!(client.read(&mut byte).await, Ok(n) if n > 0) {}
    })
    .await;
}

async fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    rules: &Mutex<Rules>,
) -> Option<CallRecord> {
    let request = read_message(&mut client, false).await?;
    let (service, operation) = operation_of(&request);
    let (fault, late_delay) = {
        let mut rules = lock(rules);
        (rules.decide(&operation), rules.late_delay)
    };
    let answer = match fault {
        None => forward(upstream, &request).await,
        Some(Fault::Drop) => None,
        Some(Fault::LoseAnswer) => {
            let landed = forward(upstream, &request).await;
            let status = landed.as_ref().and_then(Message::status);
            return Some(record(operation, fault, status, &request));
        }
        Some(Fault::Stall) => {
            wait_for_client_to_give_up(&mut client, STALL_LIMIT).await;
            None
        }
        Some(Fault::LateForward) => {
            tokio::time::sleep(late_delay).await;
            forward(upstream, &request).await
        }
        Some(fault @ (Fault::ServerError | Fault::Throttle)) => {
            let _ = client.write_all(&error_answer(service, fault)).await;
            let _ = client.shutdown().await;
            return Some(record(operation, Some(fault), None, &request));
        }
    };
    let status = answer.as_ref().and_then(Message::status);
    if let Some(answer) = answer {
        let _ = client.write_all(&answer.bytes).await;
    }
    let _ = client.shutdown().await;
    Some(record(operation, fault, status, &request))
}

fn record(
    operation: String,
    fault: Option<Fault>,
    upstream_status: Option<u16>,
    request: &Message,
) -> CallRecord {
    CallRecord {
        at: Duration::ZERO,
        operation,
        fault,
        upstream_status,
        body: String::from_utf8_lossy(&request.bytes[request.head_len..]).into_owned(),
    }
}
