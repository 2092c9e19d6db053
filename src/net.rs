//! Listeners: the accept loop of the two HTTP listeners (OTLP/HTTP and the
//! query API), optional TLS on all three, and the time limits that keep a
//! slow or silent client from holding a connection: a TLS handshake, the
//! first bytes and every request's headers must arrive within the header
//! timeout. (axum's own `serve` has none of these.)

use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The HTTP/2 connection preface; a plain-text client that starts with it
/// speaks HTTP/2 with prior knowledge.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Loads a PEM certificate chain and private key into server configs: one
/// offering HTTP/2 and HTTP/1.1 (ALPN) for the HTTP listeners, one HTTP/2
/// only for gRPC.
pub(crate) struct Tls {
    pub(crate) http: TlsAcceptor,
    pub(crate) grpc: TlsAcceptor,
}

impl Tls {
    pub(crate) fn load(cert: &Path, key: &Path) -> Result<Tls> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .with_context(|| format!("reading TLS certificate {}", cert.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("parsing TLS certificate {}", cert.display()))?;
        if certs.is_empty() {
            bail!("no certificate in {}", cert.display());
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .with_context(|| format!("reading TLS private key {}", key.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = |alpn: &[&[u8]]| -> Result<TlsAcceptor> {
            let mut c = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_single_cert(certs.clone(), key.clone_key())
                .context("the TLS certificate and key do not form a valid pair")?;
            c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok(TlsAcceptor::from(Arc::new(c)))
        };
        Ok(Tls {
            http: config(&[b"h2", b"http/1.1"])?,
            grpc: config(&[b"h2"])?,
        })
    }
}

/// Accepts until `shutdown`, then waits for open requests to finish (the
/// caller bounds that wait). WebSocket upgrades leave hyper's hands and are
/// not waited for.
pub(crate) async fn serve_http(
    listener: TcpListener,
    app: axum::Router,
    tls: Option<TlsAcceptor>,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut h1 = auto::Builder::new(TokioExecutor::new()).http1_only();
    h1.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let mut h2 = auto::Builder::new(TokioExecutor::new()).http2_only();
    h2.http2()
        .timer(TokioTimer::new())
        .enable_connect_protocol()
        .keep_alive_interval(Duration::from_secs(30));
    let builders = Arc::new((h1, h2));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_error(&e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let builders = Arc::clone(&builders);
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let (h1, h2) = &*builders;
            match tls {
                Some(acceptor) => {
                    let Some(stream) = handshake(&acceptor, stream, header_timeout).await else {
                        return; // a failed or stalled handshake: nothing to answer
                    };
                    let is_h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                    let conn = if is_h2 { h2 } else { h1 }
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    let _ = watcher.watch(conn).await;
                }
                None => {
                    let Ok(Ok(is_h2)) = tokio::time::timeout(header_timeout, sniff(&stream)).await
                    else {
                        return;
                    };
                    let conn = if is_h2 { h2 } else { h1 }
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    let _ = watcher.watch(conn).await;
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// A TLS handshake within `limit`; `None` when it fails or stalls.
async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    limit: Duration,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    tokio::time::timeout(limit, acceptor.accept(stream))
        .await
        .ok()?
        .ok()
}

/// Whether a plain-text client opens with the HTTP/2 preface, read without
/// consuming it. Returns as soon as the bytes so far rule it in or out.
async fn sniff(stream: &TcpStream) -> io::Result<bool> {
    let mut buf = [0u8; H2_PREFACE.len()];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if buf[..n] != H2_PREFACE[..n] {
            return Ok(false);
        }
        if n == H2_PREFACE.len() {
            return Ok(true);
        }
        // A partial preface: wait for more rather than spin on the same bytes.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// TLS connections for tonic, which takes any stream of connected I/O: the
/// handshakes run on their own tasks under the header timeout, so a stalled
/// client holds neither the accept loop nor a task for long.
pub(crate) fn tls_incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    header_timeout: Duration,
) -> impl futures::Stream<Item = io::Result<tokio_rustls::server::TlsStream<TcpStream>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = tx.closed() => break, // the server stopped: let the port go
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_error(&e).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let acceptor = acceptor.clone();
            let handed = tx.clone();
            tokio::spawn(async move {
                if let Some(tls) = handshake(&acceptor, stream, header_timeout).await {
                    let _ = handed.send(tls).await;
                }
            });
        }
    });
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|tls| (Ok(tls), rx))
    })
}

/// Accept errors are per connection (reset before accept) or resource
/// exhaustion (EMFILE); neither may end the server. Back off on the latter.
async fn accept_error(e: &io::Error) {
    match e.kind() {
        io::ErrorKind::ConnectionAborted
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::Interrupted => {}
        _ => {
            tracing::warn!(error = %e, "accepting a connection failed; backing off");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
