//! The one HTTP client that talks to receivers.
//!
//! Why each rule (DELIVERY.md, "One delivery" and "Where a delivery may go"):
//! - **Same stack as the AWS SDK** (hyper 1, rustls with aws-lc-rs, the system's roots): the
//!   binary gains a few hundred lines of glue, not a second HTTP or TLS implementation.
//! - **We resolve the host, vet every address, and connect to a vetted one.** Registration only
//!   sees the name; DNS can later answer 127.0.0.1 or 169.254.169.254 (rebinding). Vetting
//!   every address (not just the first) means a round-robin answer cannot smuggle a private
//!   one in, and handing hyper a socket we opened ourselves means nothing resolves a second
//!   time behind our back. The table is registration's ([`crate::domain::address`]), and the
//!   URL is re-checked under today's [`UrlPolicy`], so switching the localhost exception off
//!   also stops deliveries to URLs registered while it was on.
//! - **TLS with SNI and certificate checks for the hostname, `Host` = the URL's authority**:
//!   we connect to an IP address but talk to the name the customer registered, as any client
//!   that had resolved it would.
//! - **No redirects**: a `Location` could point anywhere, past every check above; Standard
//!   Webhooks treats a 3xx as a failure.
//! - **One budget, `min(timeoutMs, the function's remaining time)`**, for resolving,
//!   connecting, TLS and waiting for the answer: a slow receiver costs a failed attempt, never
//!   a Lambda timeout that loses the outcome.
//! - **At most 64 KiB of the answer is read, then dropped**; a receiver cannot make us buffer
//!   or wait for an endless body. Nothing here logs: bodies and header values (customers'
//!   credentials) never reach a log line; the caller logs the [`Outcome`], which holds neither.
//! - **One connection per attempt**, closed afterwards (HTTP/1.1, no pool): a pooled connection
//!   would skip the address check of the next attempt.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{HOST, RETRY_AFTER};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::RootCertStore;
use time::OffsetDateTime;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use url::{Host, Position, Url};

use super::payload::SignedRequest;
use crate::domain::{address, webhook_url, UrlPolicy, WebhookUrl};

/// The most of an answer's body that is read (and then dropped).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Resolves a host name to addresses. Production uses [`SystemResolver`]; tests inject their own
/// to play DNS rebinding.
pub trait Resolve: Send + Sync + 'static {
    /// Every address `host` resolves to (the port only matters to resolvers that care).
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'a>>;
}

/// The operating system's resolver (`tokio::net::lookup_host`).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'a>> {
        Box::pin(async move {
            let addresses = tokio::net::lookup_host((host, port)).await?;
            Ok(addresses.map(|address| address.ip()).collect())
        })
    }
}

/// Why an attempt failed before any HTTP answer came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionFailure {
    /// The name does not resolve (or resolves to nothing).
    HostNotFound,
    /// The TCP connection failed for another reason than a refusal (reset, unreachable…).
    Connect,
    /// The receiver's certificate is not valid for the host (expired, unknown issuer, name).
    Certificate,
    /// The TLS handshake failed otherwise.
    Tls,
    /// The connection closed, or the answer was not HTTP, before a status line arrived.
    NoAnswer,
}

/// What became of one attempt. Holds no body, header value or secret, so it may be logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver answered 2xx within the time allowed.
    Delivered {
        /// The HTTP status.
        status: u16,
        /// From the start of the attempt to the answer's status line and headers.
        duration: Duration,
    },
    /// The receiver answered, but not 2xx (a 3xx included: redirects are not followed).
    ReceiverError {
        /// The HTTP status.
        status: u16,
        /// From the start of the attempt to the answer's status line and headers.
        duration: Duration,
        /// `Retry-After` in seconds (delta-seconds or an HTTP date), when the answer had one.
        retry_after: Option<u64>,
    },
    /// No answer within `min(timeoutMs, the function's remaining time)`.
    TimedOut,
    /// The URL, or an address its host resolved to, is not allowed: no request was made.
    AddressNotAllowed,
    /// The receiver's host refused the TCP connection.
    ConnectionRefused,
    /// The connection or the TLS handshake failed, or the connection closed without an answer.
    ConnectionFailed(ConnectionFailure),
}

impl Outcome {
    /// True when the receiver answered 2xx.
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Delivered { .. })
    }

    /// The HTTP status, when an answer came.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Outcome::Delivered { status, .. } | Outcome::ReceiverError { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }

    /// The time to the answer, when an answer came.
    pub fn duration(&self) -> Option<Duration> {
        match self {
            Outcome::Delivered { duration, .. } | Outcome::ReceiverError { duration, .. } => {
                Some(*duration)
            }
            _ => None,
        }
    }

    /// `Retry-After` in seconds, when the receiver sent one with a non-2xx answer.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Outcome::ReceiverError { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// One lowercase clause for messages such as `Webhook test failed: <reason>`.
    pub fn reason(&self) -> String {
        match self {
            Outcome::Delivered { status, .. } => format!("the endpoint answered {status}"),
            Outcome::ReceiverError { status, .. } if (300..400).contains(status) => {
                format!("the endpoint answered {status} (redirects are not followed)")
            }
            Outcome::ReceiverError { status, .. } => format!("the endpoint answered {status}"),
            Outcome::TimedOut => "connection timed out".into(),
            Outcome::AddressNotAllowed => "address not allowed".into(),
            Outcome::ConnectionRefused => "connection refused".into(),
            Outcome::ConnectionFailed(failure) => match failure {
                ConnectionFailure::HostNotFound => "the host name could not be resolved",
                ConnectionFailure::Connect => "the connection failed",
                ConnectionFailure::Certificate => "the endpoint's TLS certificate was not accepted",
                ConnectionFailure::Tls => "the TLS handshake failed",
                ConnectionFailure::NoAnswer => "the connection closed without a valid HTTP answer",
            }
            .into(),
        }
    }
}

/// The system's trust store could not be read (no certificate at all).
#[derive(Debug, thiserror::Error)]
#[error("no trusted root certificates could be loaded from the system")]
pub struct NoRootCertificates;

/// Sends signed deliveries. Build one per process and share it (cloning is cheap).
#[derive(Clone)]
pub struct Sender {
    policy: UrlPolicy,
    resolver: Arc<dyn Resolve>,
    tls: TlsConnector,
    /// Deliver only to loopback addresses (local stacks and CI: nothing leaves the machine).
    loopback_only: bool,
}

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Sender {
    /// The production sender: the system resolver and the system's root certificates (the same
    /// source the AWS SDK's client trusts). Reading and parsing the system bundle is start-up
    /// work: build the sender once, when the first delivery needs it or at start-up.
    pub fn new(policy: UrlPolicy) -> Result<Self, NoRootCertificates> {
        let mut roots = RootCertStore::empty();
        let loaded = rustls_native_certs::load_native_certs();
        let (added, _ignored) = roots.add_parsable_certificates(loaded.certs);
        if added == 0 {
            return Err(NoRootCertificates);
        }
        Ok(Self::with_parts(policy, Arc::new(SystemResolver), roots))
    }

    /// A sender with an injected resolver and trust store (tests: a rebinding resolver, a
    /// self-signed receiver).
    pub fn with_parts(policy: UrlPolicy, resolver: Arc<dyn Resolve>, roots: RootCertStore) -> Self {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("aws-lc-rs supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self {
            policy,
            resolver,
            tls: TlsConnector::from(Arc::new(config)),
            loopback_only: false,
        }
    }

    /// Refuses every address but loopback ("address not allowed"): for local stacks and test
    /// runs, whose generated webhook URLs must never make this machine call out.
    pub fn loopback_only(mut self, loopback_only: bool) -> Self {
        self.loopback_only = loopback_only;
        self
    }

    /// Makes one attempt: `POST url` with `request`, within `min(timeout, deadline - now)`
    /// (`timeout` is the webhook's `timeoutMs`, `deadline` the instant the function must have
    /// answered by, less whatever the caller keeps for itself).
    pub async fn send(
        &self,
        url: &WebhookUrl,
        request: &SignedRequest,
        timeout: Duration,
        deadline: Instant,
    ) -> Outcome {
        let start = Instant::now();
        let budget = timeout.min(deadline.saturating_duration_since(start));
        let end = tokio::time::Instant::from_std(start + budget);
        let Some(target) = Target::vet(url, self.policy) else {
            return Outcome::AddressNotAllowed;
        };
        let answer = match tokio::time::timeout_at(end, self.exchange(&target, request)).await {
            Err(_elapsed) => return Outcome::TimedOut,
            Ok(Err(failure)) => return failure,
            Ok(Ok(answer)) => answer,
        };
        let duration = start.elapsed();
        let (parts, body) = answer.response.into_parts();
        // The answer is decided by its status; the body is read (bounded in size and time) only
        // so that the receiver sees its answer taken, then dropped with the connection.
        let _ = tokio::time::timeout_at(end, drain(body, MAX_ANSWER_BYTES)).await;
        drop(answer.connection);
        let status = parts.status;
        if status.is_success() {
            Outcome::Delivered {
                status: status.as_u16(),
                duration,
            }
        } else {
            Outcome::ReceiverError {
                status: status.as_u16(),
                duration,
                retry_after: retry_after(&parts.headers, status, OffsetDateTime::now_utc()),
            }
        }
    }

    /// Resolve, vet, connect, handshake, send, and wait for the answer's head.
    async fn exchange(
        &self,
        target: &Target,
        request: &SignedRequest,
    ) -> Result<ReceiverAnswer, Outcome> {
        let addresses = self.vetted_addresses(target).await?;
        let tcp = connect_any(&addresses, target.port).await?;
        let _ = tcp.set_nodelay(true);
        if target.https {
            let tls = self
                .tls
                .connect(target.server_name.clone(), tcp)
                .await
                .map_err(tls_failure)?;
            send_over(TokioIo::new(tls), target, request).await
        } else {
            send_over(TokioIo::new(tcp), target, request).await
        }
    }

    /// The addresses to connect to: every one must be allowed, or none is used.
    async fn vetted_addresses(&self, target: &Target) -> Result<Vec<IpAddr>, Outcome> {
        let addresses = match &target.host {
            Host::Ipv4(ip) => vec![IpAddr::V4(*ip)],
            Host::Ipv6(ip) => vec![IpAddr::V6(*ip)],
            Host::Domain(name) => self
                .resolver
                .resolve(name, target.port)
                .await
                .map_err(|_| Outcome::ConnectionFailed(ConnectionFailure::HostNotFound))?,
        };
        if addresses.is_empty() {
            return Err(Outcome::ConnectionFailed(ConnectionFailure::HostNotFound));
        }
        let allowed = |ip: &IpAddr| {
            if self.loopback_only {
                return ip.is_loopback();
            }
            address::is_public(*ip) || (target.local && ip.is_loopback())
        };
        if addresses.iter().all(allowed) {
            Ok(addresses)
        } else {
            Err(Outcome::AddressNotAllowed)
        }
    }
}

/// Where one attempt goes, taken apart once from the registered URL.
struct Target {
    https: bool,
    host: Host<String>,
    port: u16,
    /// `Host` header: the host as the URL names it (IPv6 in brackets), with a non-default port.
    authority: String,
    path_and_query: String,
    server_name: ServerName<'static>,
    /// Under the localhost exception: loopback addresses are allowed, and http.
    local: bool,
}

impl Target {
    /// Re-checks the URL under today's policy and takes it apart; `None` when not allowed.
    fn vet(url: &WebhookUrl, policy: UrlPolicy) -> Option<Self> {
        let text = url.as_str();
        WebhookUrl::parse(text, policy).ok()?;
        let parsed = Url::parse(text).ok()?;
        let host = parsed.host()?;
        let local = policy.allow_localhost && webhook_url::is_allowed_localhost(&host, text);
        let https = parsed.scheme() == "https";
        if !https && !local {
            return None; // `parse` already refuses this; kept so this function stands alone.
        }
        let host_text = parsed.host_str()?.to_owned();
        let port = parsed.port_or_known_default()?;
        let authority = match parsed.port() {
            Some(port) => format!("{host_text}:{port}"),
            None => host_text,
        };
        let server_name = match &host {
            Host::Domain(name) => ServerName::try_from(name.to_string()).ok()?,
            Host::Ipv4(ip) => ServerName::IpAddress(IpAddr::V4(*ip).into()),
            Host::Ipv6(ip) => ServerName::IpAddress(IpAddr::V6(*ip).into()),
        };
        Some(Self {
            https,
            host: host.to_owned(),
            port,
            authority,
            path_and_query: parsed[Position::BeforePath..Position::AfterQuery].to_owned(),
            server_name,
            local,
        })
    }
}

/// The answer's head, and the task driving its connection (aborted when dropped).
struct ReceiverAnswer {
    response: http::Response<Incoming>,
    connection: ConnectionTask,
}

/// Aborts the connection task when dropped, so that a timed-out or finished attempt leaves no
/// socket or task behind in the function.
struct ConnectionTask(JoinHandle<()>);

impl Drop for ConnectionTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Connects to the first address that accepts. All of them were vetted.
async fn connect_any(addresses: &[IpAddr], port: u16) -> Result<TcpStream, Outcome> {
    let mut refused = true;
    for ip in addresses {
        match TcpStream::connect(SocketAddr::new(*ip, port)).await {
            Ok(stream) => return Ok(stream),
            Err(error) => refused &= error.kind() == io::ErrorKind::ConnectionRefused,
        }
    }
    Err(if refused {
        Outcome::ConnectionRefused
    } else {
        Outcome::ConnectionFailed(ConnectionFailure::Connect)
    })
}

fn tls_failure(error: io::Error) -> Outcome {
    let certificate = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|tls| {
            matches!(
                tls,
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
            )
        });
    Outcome::ConnectionFailed(if certificate {
        ConnectionFailure::Certificate
    } else {
        ConnectionFailure::Tls
    })
}

/// HTTP/1.1 over an open connection: one request, no redirects followed (hyper's connection
/// API has none to follow).
async fn send_over<I>(
    io: I,
    target: &Target,
    request: &SignedRequest,
) -> Result<ReceiverAnswer, Outcome>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let no_answer = |_| Outcome::ConnectionFailed(ConnectionFailure::NoAnswer);
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        // Bounds the answer's head and the read buffer; the body is bounded by `drain`.
        .max_buf_size(MAX_ANSWER_BYTES)
        .handshake(io)
        .await
        .map_err(no_answer)?;
    let connection = ConnectionTask(tokio::spawn(async move {
        let _ = connection.await;
    }));
    // The path and authority come from a parsed URL and are always valid in a request; should
    // one ever not be, the URL is refused like any other URL we will not send to.
    let mut http_request = Request::post(target.path_and_query.as_str())
        .body(Full::new(request.body().clone()))
        .map_err(|_| Outcome::AddressNotAllowed)?;
    let headers = http_request.headers_mut();
    headers.insert(
        HOST,
        target
            .authority
            .parse()
            .map_err(|_| Outcome::AddressNotAllowed)?,
    );
    for (name, value) in request.headers() {
        headers.append(name, value.clone());
    }
    let response = sender.send_request(http_request).await.map_err(no_answer)?;
    Ok(ReceiverAnswer {
        response,
        connection,
    })
}

/// Reads and drops at most `limit` bytes of an answer's body.
async fn drain(mut body: Incoming, limit: usize) -> usize {
    let mut read = 0;
    while read < limit {
        match body.frame().await {
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
            _ => break,
        }
    }
    read
}

/// `Retry-After` as seconds from now: delta-seconds, or an HTTP date (RFC 9110 IMF-fixdate).
fn retry_after(headers: &HeaderMap, status: StatusCode, now: OffsetDateTime) -> Option<u64> {
    if status.is_success() {
        return None;
    }
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds);
    }
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(value, format)
        .ok()?
        .assume_utc();
    Some(u64::try_from((at - now).whole_seconds()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn retry(value: &str) -> Option<u64> {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, value.parse().unwrap());
        retry_after(
            &headers,
            StatusCode::SERVICE_UNAVAILABLE,
            datetime!(2026-11-27 12:00 UTC),
        )
    }

    #[test]
    fn reads_retry_after_as_seconds_or_http_date() {
        assert_eq!(retry("120"), Some(120));
        assert_eq!(retry("Fri, 27 Nov 2026 12:05:00 GMT"), Some(300));
        assert_eq!(retry("Fri, 27 Nov 2026 11:00:00 GMT"), Some(0));
        assert_eq!(retry("soon"), None);
        assert_eq!(retry("-5"), None);
    }

    #[test]
    fn reasons_read_as_the_test_messages_of_delivery_md() {
        let d = Duration::from_millis(5);
        assert_eq!(Outcome::TimedOut.reason(), "connection timed out");
        assert_eq!(Outcome::AddressNotAllowed.reason(), "address not allowed");
        assert_eq!(Outcome::ConnectionRefused.reason(), "connection refused");
        let error = Outcome::ReceiverError {
            status: 500,
            duration: d,
            retry_after: None,
        };
        assert_eq!(error.reason(), "the endpoint answered 500");
        let redirect = Outcome::ReceiverError {
            status: 301,
            duration: d,
            retry_after: None,
        };
        assert_eq!(
            redirect.reason(),
            "the endpoint answered 301 (redirects are not followed)"
        );
    }

    fn target(url: &str, allow_localhost: bool) -> Option<Target> {
        let policy = UrlPolicy { allow_localhost };
        Target::vet(
            &WebhookUrl::parse(url, UrlPolicy::default()).unwrap(),
            policy,
        )
    }

    #[test]
    fn host_header_is_the_urls_authority_and_path_keeps_the_query() {
        let t = target("https://Hooks.Acme-Corp.com:8443/in/hook?x=1&y=2", true).unwrap();
        assert_eq!(t.authority, "hooks.acme-corp.com:8443");
        assert_eq!(t.path_and_query, "/in/hook?x=1&y=2");
        assert_eq!(t.port, 8443);
        assert!(!t.local);
        let t = target("https://hooks.acme-corp.com/", true).unwrap();
        assert_eq!((t.authority.as_str(), t.port), ("hooks.acme-corp.com", 443));
        let t = target("http://[::1]:8080/h", true).unwrap();
        assert_eq!(t.authority, "[::1]:8080");
        assert!(t.local);
    }

    #[test]
    fn switching_the_localhost_exception_off_stops_deliveries_to_localhost() {
        assert!(target("http://localhost:3000/h", true).is_some());
        assert!(target("http://localhost:3000/h", false).is_none());
        assert!(target("https://127.0.0.1/h", false).is_none());
    }
}
