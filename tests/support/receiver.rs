//! A real HTTP/1.1 receiver on 127.0.0.1 (optionally TLS) for delivery tests: it records every
//! request it gets and answers as told.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response};
use hyper_util::rt::TokioIo;
use instaview_webhooks::delivery::Resolve;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// What a receiver saw of one request.
#[derive(Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The TLS server name the client sent (TLS receivers only).
    pub sni: Option<String>,
}

/// How a receiver answers.
#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: vec![],
        }
    }
    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// An HTTP/1.1 receiver on 127.0.0.1 (optionally TLS) that reports every request it gets.
pub struct Receiver {
    pub address: SocketAddr,
    pub requests: mpsc::UnboundedReceiver<Received>,
    pub connections: Arc<AtomicUsize>,
}

impl Receiver {
    pub async fn start(answer: Reply) -> Self {
        Self::start_with_tls(answer, None).await
    }

    pub async fn start_with_tls(answer: Reply, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (report, requests) = mpsc::unbounded_channel();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let (answer, report, tls) = (answer.clone(), report.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        None => serve(TokioIo::new(stream), None, answer, report).await,
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(stream).await else {
                                return;
                            };
                            let sni = stream.get_ref().1.server_name().map(str::to_owned);
                            serve(TokioIo::new(stream), sni, answer, report).await;
                        }
                    }
                });
            }
        });
        Self {
            address,
            requests,
            connections,
        }
    }

    pub async fn next(&mut self) -> Received {
        tokio::time::timeout(Duration::from_secs(5), self.requests.recv())
            .await
            .expect("the receiver got a request")
            .unwrap()
    }
}

pub async fn serve<I>(
    io: I,
    sni: Option<String>,
    answer: Reply,
    report: mpsc::UnboundedSender<Received>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = service_fn(move |request: Request<Incoming>| {
        let (answer, report, sni) = (answer.clone(), report.clone(), sni.clone());
        async move {
            let (parts, body) = request.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            let _ = report.send(Received {
                headers: parts.headers,
                body,
                sni,
            });
            let mut response = Response::builder().status(answer.status);
            for (name, value) in &answer.headers {
                response = response.header(*name, value);
            }
            Ok::<_, Infallible>(response.body(Full::new(Bytes::from_static(b"ok"))).unwrap())
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .await;
}

/// A resolver with a fixed answer per name, counting its calls.
#[derive(Default)]
pub struct FixedResolver {
    answers: HashMap<String, Vec<IpAddr>>,
    pub calls: AtomicUsize,
}

impl FixedResolver {
    pub fn with(name: &str, addresses: &[&str]) -> Arc<Self> {
        let mut answers = HashMap::new();
        answers.insert(
            name.to_owned(),
            addresses.iter().map(|a| a.parse().unwrap()).collect(),
        );
        Arc::new(Self {
            answers,
            calls: AtomicUsize::new(0),
        })
    }
}

impl Resolve for FixedResolver {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        _port: u16,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'a>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let answer = self
            .answers
            .get(host)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such host"));
        Box::pin(async move { answer })
    }
}
