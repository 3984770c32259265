//! The sender against real local receivers (HTTP and TLS servers on loopback that this file
//! starts), with signatures checked on the receiving side by libraries we did not write: the
//! Standard Webhooks crate (as a receiver configures it, from `whsec_…`) and RustCrypto HMAC.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support;
use base64::Engine as _;
use hmac::{Hmac, Mac};

use instaview_webhooks::delivery::{
    ConnectionFailure, DeliveryBody, Outcome, Resolve, Sender, SignedRequest, Signer, SigningKey,
};
use instaview_webhooks::domain::custom_header::{HeaderName, HeaderValue};
use instaview_webhooks::domain::{CustomHeader, SigningSecret, UrlPolicy, WebhookUrl};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::RootCertStore;
use secrecy::ExposeSecret;
use serde_json::Value;
use sha2::Sha256;
use support::receiver::{FixedResolver, Received, Receiver, Reply as Answer};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use uuid::Uuid;

const LOCAL: UrlPolicy = UrlPolicy {
    allow_localhost: true,
};
const PRODUCTION: UrlPolicy = UrlPolicy {
    allow_localhost: false,
};
const TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Receivers (tests/support/receiver.rs)

/// A TCP listener that counts connections and does nothing else.
async fn silent_listener(at: &str) -> Option<(SocketAddr, Arc<AtomicUsize>)> {
    let listener = TcpListener::bind(at).await.ok()?;
    let address = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            open.push(stream); // Held open, never answered.
        }
    });
    Some((address, connections))
}

/// A self-signed certificate for `localhost` and a TLS acceptor serving it.
fn localhost_tls() -> (tokio_rustls::TlsAcceptor, CertificateDer<'static>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    (tokio_rustls::TlsAcceptor::from(Arc::new(config)), cert)
}

// ---------------------------------------------------------------------------------------------
// Resolvers and senders

fn sender(policy: UrlPolicy) -> Sender {
    Sender::with_parts(
        policy,
        FixedResolver::with("localhost", &["127.0.0.1"]),
        RootCertStore::empty(),
    )
}

fn sender_with(
    policy: UrlPolicy,
    resolver: Arc<dyn Resolve>,
    roots: &[CertificateDer<'static>],
) -> Sender {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).unwrap();
    }
    Sender::with_parts(policy, resolver, store)
}

fn url(text: &str) -> WebhookUrl {
    WebhookUrl::parse(text, LOCAL).unwrap()
}

fn far_deadline() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

// ---------------------------------------------------------------------------------------------
// Deliveries

const WEBHOOK_ID: &str = "0d9f0e43-8f6f-4a57-9a8e-9d1f2b0b1c11";

struct Ping {
    delivery_id: Uuid,
    body: DeliveryBody,
    secret: SigningSecret,
    request: SignedRequest,
}

fn ping(custom: &[(&str, &str)]) -> Ping {
    let secret = SigningSecret::try_generate().unwrap();
    let signer = Signer::new(&secret).unwrap();
    ping_signed_by(secret, &signer, custom)
}

fn ping_signed_by(secret: SigningSecret, signer: &Signer, custom: &[(&str, &str)]) -> Ping {
    let delivery_id = Uuid::new_v4();
    let now = OffsetDateTime::now_utc();
    let body = DeliveryBody::ping(WEBHOOK_ID, now, delivery_id);
    let custom: Vec<CustomHeader> = custom
        .iter()
        .map(|(n, v)| {
            CustomHeader::new(
                HeaderName::parse(n).unwrap(),
                HeaderValue::parse(v).unwrap(),
            )
        })
        .collect();
    let request = SignedRequest::new(&body, now, signer, &custom).unwrap();
    Ping {
        delivery_id,
        body,
        secret,
        request,
    }
}

/// Verifies as a receiver following our README would, with the Standard Webhooks crate.
fn library_verifies(secret: &SigningSecret, received: &Received) -> bool {
    let whsec = SigningKey::from_secret(secret).unwrap().to_whsec();
    standardwebhooks::Webhook::new(whsec.expose_secret())
        .unwrap()
        .verify(&received.body, &received.headers)
        .is_ok()
}

/// The README's plain check: base64(HMAC-SHA256(hex-decoded secret, "id.ts.body")).
fn plain_hmac(secret: &SigningSecret, received: &Received) -> String {
    let header = |name: &str| received.headers[name].to_str().unwrap().to_owned();
    let mut mac = Hmac::<Sha256>::new_from_slice(&hex::decode(secret.expose()).unwrap()).unwrap();
    mac.update(format!("{}.{}.", header("webhook-id"), header("webhook-timestamp")).as_bytes());
    mac.update(&received.body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

fn signatures(received: &Received) -> Vec<String> {
    received.headers["webhook-signature"]
        .to_str()
        .unwrap()
        .split(' ')
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn delivers_a_ping_whose_payload_headers_and_signature_the_receiver_verifies() {
    let mut receiver = Receiver::start(Answer::status(200)).await;
    let ping = ping(&[
        ("X-Customer-Auth", "Bearer cust-token-1"),
        ("X-Tenant", "acme"),
    ]);
    let target = url(&format!(
        "http://127.0.0.1:{}/hooks/in?src=iv",
        receiver.address.port()
    ));

    let outcome = sender(LOCAL)
        .send(&target, &ping.request, TIMEOUT, far_deadline())
        .await;

    assert!(outcome.is_success(), "{outcome:?}");
    assert_eq!(outcome.http_status(), Some(200));
    assert!(outcome.duration().is_some());
    let got = receiver.next().await;
    // Payload: exactly the bytes built, fields in the documented order.
    assert_eq!(got.body.as_ref(), ping.body.as_str().as_bytes());
    let json: serde_json::Map<String, Value> = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(
        json.keys().collect::<Vec<_>>(),
        ["event", "timestamp", "deliveryId", "data"]
    );
    assert_eq!(json["event"], "ping");
    assert_eq!(json["deliveryId"], ping.delivery_id.to_string());
    assert_eq!(json["data"], serde_json::json!({ "webhookId": WEBHOOK_ID }));
    // Standard Webhooks headers.
    let h = &got.headers;
    assert_eq!(h["webhook-id"], ping.delivery_id.to_string().as_str());
    let sent_at: i64 = h["webhook-timestamp"].to_str().unwrap().parse().unwrap();
    assert!((OffsetDateTime::now_utc().unix_timestamp() - sent_at).abs() <= 5);
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(
        h["user-agent"],
        concat!("InstaView-Webhooks/", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        h["host"],
        format!("127.0.0.1:{}", receiver.address.port()).as_str()
    );
    assert_eq!(
        h["content-length"],
        ping.body.as_str().len().to_string().as_str()
    );
    // Custom headers, values as stored.
    assert_eq!(h["x-customer-auth"], "Bearer cust-token-1");
    assert_eq!(h["x-tenant"], "acme");
    // Signature: one, verified by the library and by plain HMAC.
    assert_eq!(signatures(&got), [plain_hmac(&ping.secret, &got)]);
    assert!(library_verifies(&ping.secret, &got));
    assert!(!library_verifies(
        &SigningSecret::try_generate().unwrap(),
        &got
    ));
}

#[tokio::test]
async fn during_a_rotation_the_receiver_can_verify_with_the_new_or_the_old_secret() {
    let mut receiver = Receiver::start(Answer::status(204)).await;
    let new = SigningSecret::try_generate().unwrap();
    let old = SigningSecret::try_generate().unwrap();
    let now = OffsetDateTime::now_utc();
    let signer = Signer::new(&new)
        .unwrap()
        .with_previous(&old, now + time::Duration::days(1), now)
        .unwrap();
    let ping = ping_signed_by(new.clone(), &signer, &[]);
    let target = url(&format!("http://127.0.0.1:{}/", receiver.address.port()));

    let outcome = sender(LOCAL)
        .send(&target, &ping.request, TIMEOUT, far_deadline())
        .await;

    assert_eq!(outcome.http_status(), Some(204));
    let got = receiver.next().await;
    assert_eq!(
        signatures(&got),
        [plain_hmac(&new, &got), plain_hmac(&old, &got)],
        "two signatures, the new secret's first"
    );
    assert!(library_verifies(&new, &got));
    assert!(library_verifies(&old, &got));
}

#[tokio::test]
async fn a_500_is_a_receiver_error_naming_the_status() {
    let mut receiver = Receiver::start(Answer::status(500)).await;
    let ping = ping(&[]);
    let target = url(&format!("http://127.0.0.1:{}/", receiver.address.port()));

    let outcome = sender(LOCAL)
        .send(&target, &ping.request, TIMEOUT, far_deadline())
        .await;

    assert!(matches!(
        outcome,
        Outcome::ReceiverError {
            status: 500,
            retry_after: None,
            ..
        }
    ));
    assert_eq!(outcome.reason(), "the endpoint answered 500");
    receiver.next().await;
}

#[tokio::test]
async fn retry_after_of_a_503_is_reported_in_seconds() {
    let receiver = Receiver::start(Answer::status(503).with("retry-after", "120")).await;
    let ping = ping(&[]);
    let target = url(&format!("http://127.0.0.1:{}/", receiver.address.port()));

    let outcome = sender(LOCAL)
        .send(&target, &ping.request, TIMEOUT, far_deadline())
        .await;

    assert_eq!(outcome.http_status(), Some(503));
    assert_eq!(outcome.retry_after(), Some(120));
}

#[tokio::test]
async fn a_redirect_is_a_failure_and_is_not_followed() {
    let mut elsewhere = Receiver::start(Answer::status(200)).await;
    let location = format!("http://127.0.0.1:{}/stolen", elsewhere.address.port());
    let mut receiver = Receiver::start(Answer::status(307).with("location", location)).await;
    let ping = ping(&[]);
    let target = url(&format!("http://127.0.0.1:{}/", receiver.address.port()));

    let outcome = sender(LOCAL)
        .send(&target, &ping.request, TIMEOUT, far_deadline())
        .await;

    assert!(!outcome.is_success());
    assert_eq!(outcome.http_status(), Some(307));
    assert_eq!(
        outcome.reason(),
        "the endpoint answered 307 (redirects are not followed)"
    );
    receiver.next().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(elsewhere.connections.load(Ordering::SeqCst), 0);
    assert!(elsewhere.requests.try_recv().is_err());
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out_at_the_webhooks_timeout() {
    let (address, connections) = silent_listener("127.0.0.1:0").await.unwrap();
    let ping = ping(&[]);
    let target = url(&format!("http://127.0.0.1:{}/", address.port()));

    let started = Instant::now();
    let outcome = sender(LOCAL)
        .send(
            &target,
            &ping.request,
            Duration::from_millis(300),
            far_deadline(),
        )
        .await;

    assert_eq!(outcome, Outcome::TimedOut);
    assert_eq!(outcome.reason(), "connection timed out");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_functions_remaining_time_caps_the_webhooks_timeout() {
    let (address, _) = silent_listener("127.0.0.1:0").await.unwrap();
    let ping = ping(&[]);
    let target = url(&format!("http://127.0.0.1:{}/", address.port()));

    let started = Instant::now();
    let deadline = started + Duration::from_millis(300);
    let outcome = sender(LOCAL)
        .send(&target, &ping.request, Duration::from_secs(30), deadline)
        .await;

    assert_eq!(outcome, Outcome::TimedOut);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_closed_port_is_connection_refused() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let ping = ping(&[]);
    let target = url(&format!("http://127.0.0.1:{port}/"));

    let outcome = sender(LOCAL)
        .send(&target, &ping.request, TIMEOUT, far_deadline())
        .await;

    assert_eq!(outcome, Outcome::ConnectionRefused);
    assert_eq!(outcome.reason(), "connection refused");
}

#[tokio::test]
async fn an_endless_answer_body_is_read_to_64_kib_and_dropped_without_waiting() {
    // A raw receiver: answers 200 with a chunked body that never ends, until the socket closes.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let written = Arc::new(AtomicUsize::new(0));
    let counter = written.clone();
    let (closed_tx, closed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = vec![0u8; 16 * 1024];
        let _ = stream.read(&mut head).await;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        let chunk = format!("4000\r\n{}\r\n", "x".repeat(0x4000));
        while stream.write_all(chunk.as_bytes()).await.is_ok() {
            counter.fetch_add(0x4000, Ordering::SeqCst);
        }
        let _ = closed_tx.send(());
    });
    let ping = ping(&[]);
    let target = url(&format!("http://127.0.0.1:{port}/"));

    let started = Instant::now();
    let outcome = sender(LOCAL)
        .send(&target, &ping.request, TIMEOUT, far_deadline())
        .await;

    assert_eq!(outcome.http_status(), Some(200));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stopped reading instead of waiting for the timeout: {:?}",
        started.elapsed()
    );
    // The sender closed the connection: the receiver's writes fail soon after.
    tokio::time::timeout(Duration::from_secs(5), closed)
        .await
        .expect("the connection was closed")
        .unwrap();
    // What the receiver managed to write is our 64 KiB plus socket buffers, not the stream.
    assert!(written.load(Ordering::SeqCst) < 32 * 1024 * 1024);
}

/// A name that passes registration (a public-looking FQDN) and resolves, at delivery, to an
/// address that is not public: loopback, private, link-local metadata, IPv6 loopback and an
/// IPv4-mapped loopback. Each is refused before any connection.
#[tokio::test]
async fn dns_rebinding_to_a_private_address_is_refused_without_connecting() {
    let (v4, v4_connections) = silent_listener("127.0.0.1:0").await.unwrap();
    let port = v4.port();
    // An IPv6 loopback listener on the same port when the machine has IPv6.
    let v6 = silent_listener(&format!("[::1]:{port}")).await;
    let name = "hooks.acme-receiver.com";
    let registered = format!("https://{name}:{port}/webhooks");
    // Registration accepts it, even with the localhost exception switched off.
    let registered = WebhookUrl::parse(&registered, PRODUCTION).unwrap();

    for rebound in [
        "127.0.0.1",
        "10.0.0.7",
        "169.254.169.254",
        "::1",
        "::ffff:127.0.0.1",
        "100.64.0.1",
        "fd00::1",
    ] {
        for policy in [PRODUCTION, LOCAL] {
            let resolver = FixedResolver::with(name, &[rebound]);
            let outcome = sender_with(policy, resolver.clone(), &[])
                .send(&registered, &ping(&[]).request, TIMEOUT, far_deadline())
                .await;
            assert_eq!(outcome, Outcome::AddressNotAllowed, "{rebound}");
            assert_eq!(outcome.reason(), "address not allowed");
            assert_eq!(resolver.calls.load(Ordering::SeqCst), 1);
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(v4_connections.load(Ordering::SeqCst), 0);
    if let Some((_, v6_connections)) = v6 {
        assert_eq!(v6_connections.load(Ordering::SeqCst), 0);
    }
}

#[tokio::test]
async fn one_private_address_among_public_ones_refuses_the_delivery() {
    let name = "hooks.acme-receiver.com";
    let resolver = FixedResolver::with(name, &["93.184.215.14", "10.1.2.3", "2606:4700::1"]);
    let outcome = sender_with(PRODUCTION, resolver, &[])
        .send(
            &url(&format!("https://{name}/in")),
            &ping(&[]).request,
            TIMEOUT,
            far_deadline(),
        )
        .await;
    assert_eq!(outcome, Outcome::AddressNotAllowed);
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_a_connection_failure() {
    let resolver = FixedResolver::with("other.example.com", &["93.184.215.14"]);
    let outcome = sender_with(PRODUCTION, resolver, &[])
        .send(
            &url("https://hooks.acme-receiver.com/in"),
            &ping(&[]).request,
            TIMEOUT,
            far_deadline(),
        )
        .await;
    assert_eq!(
        outcome,
        Outcome::ConnectionFailed(ConnectionFailure::HostNotFound)
    );
}

#[tokio::test]
async fn localhost_is_resolved_once_and_the_vetted_address_is_the_one_connected_to() {
    let mut receiver = Receiver::start(Answer::status(200)).await;
    let resolver = FixedResolver::with("localhost", &["127.0.0.1"]);
    let target = url(&format!(
        "http://localhost:{}/hook",
        receiver.address.port()
    ));

    let outcome = sender_with(LOCAL, resolver.clone(), &[])
        .send(&target, &ping(&[]).request, TIMEOUT, far_deadline())
        .await;

    assert!(outcome.is_success(), "{outcome:?}");
    assert_eq!(resolver.calls.load(Ordering::SeqCst), 1);
    let got = receiver.next().await;
    assert_eq!(
        got.headers["host"],
        format!("localhost:{}", receiver.address.port()).as_str()
    );
}

#[tokio::test]
async fn localhost_resolving_to_a_private_non_loopback_address_is_refused() {
    let resolver = FixedResolver::with("localhost", &["10.0.0.5"]);
    let outcome = sender_with(LOCAL, resolver, &[])
        .send(
            &url("http://localhost:8080/hook"),
            &ping(&[]).request,
            TIMEOUT,
            far_deadline(),
        )
        .await;
    assert_eq!(outcome, Outcome::AddressNotAllowed);
}

#[tokio::test]
async fn with_the_localhost_exception_off_a_localhost_url_is_refused_without_connecting() {
    let receiver = Receiver::start(Answer::status(200)).await;
    let port = receiver.address.port();
    for registered in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://localhost:{port}/"),
        format!("https://localhost:{port}/"),
    ] {
        let outcome = sender(PRODUCTION)
            .send(
                &url(&registered),
                &ping(&[]).request,
                TIMEOUT,
                far_deadline(),
            )
            .await;
        assert_eq!(outcome, Outcome::AddressNotAllowed, "{registered}");
    }
    assert_eq!(receiver.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn tls_uses_the_registered_name_for_sni_certificate_and_host() {
    let (acceptor, cert) = localhost_tls();
    let mut receiver = Receiver::start_with_tls(Answer::status(200), Some(acceptor)).await;
    let port = receiver.address.port();
    let resolver = FixedResolver::with("localhost", &["127.0.0.1"]);
    let ping = ping(&[("X-Customer-Auth", "Bearer over-tls")]);

    let outcome = sender_with(LOCAL, resolver, &[cert])
        .send(
            &url(&format!("https://localhost:{port}/secure")),
            &ping.request,
            TIMEOUT,
            far_deadline(),
        )
        .await;

    assert!(outcome.is_success(), "{outcome:?}");
    let got = receiver.next().await;
    assert_eq!(got.sni.as_deref(), Some("localhost"));
    assert_eq!(got.headers["host"], format!("localhost:{port}").as_str());
    assert_eq!(got.headers["x-customer-auth"], "Bearer over-tls");
    assert!(library_verifies(&ping.secret, &got));
}

#[tokio::test]
async fn tls_to_a_certificate_nobody_vouches_for_is_refused() {
    let (acceptor, _cert) = localhost_tls();
    let receiver = Receiver::start_with_tls(Answer::status(200), Some(acceptor)).await;
    let resolver = FixedResolver::with("localhost", &["127.0.0.1"]);

    // The production roots (or none at all) do not include the receiver's self-signed cert.
    let outcome = sender_with(LOCAL, resolver, &[])
        .send(
            &url(&format!("https://localhost:{}/", receiver.address.port())),
            &ping(&[]).request,
            TIMEOUT,
            far_deadline(),
        )
        .await;

    assert_eq!(
        outcome,
        Outcome::ConnectionFailed(ConnectionFailure::Certificate)
    );
}

#[tokio::test]
async fn tls_to_a_certificate_for_another_name_is_refused() {
    let (acceptor, cert) = localhost_tls();
    let receiver = Receiver::start_with_tls(Answer::status(200), Some(acceptor)).await;

    // The certificate names `localhost`; the URL names 127.0.0.1.
    let outcome = sender_with(LOCAL, FixedResolver::with("localhost", &[]), &[cert])
        .send(
            &url(&format!("https://127.0.0.1:{}/", receiver.address.port())),
            &ping(&[]).request,
            TIMEOUT,
            far_deadline(),
        )
        .await;

    assert_eq!(
        outcome,
        Outcome::ConnectionFailed(ConnectionFailure::Certificate)
    );
}

#[tokio::test]
async fn a_plain_http_receiver_behind_an_https_url_is_a_tls_failure() {
    let receiver = Receiver::start(Answer::status(200)).await;
    let resolver = FixedResolver::with("localhost", &["127.0.0.1"]);
    let outcome = sender_with(LOCAL, resolver, &[])
        .send(
            &url(&format!("https://localhost:{}/", receiver.address.port())),
            &ping(&[]).request,
            TIMEOUT,
            far_deadline(),
        )
        .await;
    assert_eq!(outcome, Outcome::ConnectionFailed(ConnectionFailure::Tls));
}

#[tokio::test]
async fn the_production_sender_loads_the_system_roots() {
    let sender = Sender::new(PRODUCTION).expect("system roots");
    assert!(format!("{sender:?}").contains("allow_localhost: false"));
}

#[tokio::test]
async fn a_loopback_only_sender_refuses_a_public_address_without_connecting() {
    let resolver = FixedResolver::with("hooks.example.com", &["93.184.216.34"]);
    let sender = Sender::with_parts(PRODUCTION, resolver.clone(), RootCertStore::empty())
        .loopback_only(true);
    let ping = ping(&[]);

    let outcome = sender
        .send(
            &url("https://hooks.example.com/in"),
            &ping.request,
            TIMEOUT,
            far_deadline(),
        )
        .await;

    assert!(matches!(outcome, Outcome::AddressNotAllowed), "{outcome:?}");
    let literal = sender
        .send(
            &url("https://8.8.8.8/in"),
            &ping.request,
            TIMEOUT,
            far_deadline(),
        )
        .await;
    assert!(matches!(literal, Outcome::AddressNotAllowed), "{literal:?}");
}
