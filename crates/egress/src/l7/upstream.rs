//! The upstream side of a checked request: a connection to the real host (TLS
//! verified against the system roots with rustls; never downgraded), HTTP/1.1, kept
//! alive for the next request to the same verified name.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio::time::timeout;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The roots upstream certificates are verified against.
#[derive(Debug, Clone)]
pub struct UpstreamRoots {
    config: Arc<ClientConfig>,
    /// How many roots were loaded (for the enforcement report).
    pub count: usize,
}

impl UpstreamRoots {
    /// The system's roots (rustls-native-certs), plus `extra_pem` (a test CA, or a
    /// corporate root the operator configures).
    pub fn load(extra_pem: Option<&[u8]>) -> Result<UpstreamRoots, String> {
        let mut store = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ = store.add(cert);
        }
        if let Some(pem) = extra_pem {
            use rustls::pki_types::pem::PemObject;
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("extra roots: {e}"))?;
                store.add(cert).map_err(|e| format!("extra roots: {e}"))?;
            }
        }
        if store.is_empty() {
            return Err("no trusted roots found on this host (install ca-certificates)".into());
        }
        let count = store.len();
        let mut config = ClientConfig::builder_with_provider(super::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS versions: {e}"))?
            .with_root_certificates(store)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(UpstreamRoots {
            config: Arc::new(config),
            count,
        })
    }
}

/// Upstream connections kept alive between requests, per verified `(name, port,
/// tls)`: a connection is only ever reused for the name its certificate was checked
/// for, and never after an upgrade.
#[derive(Default)]
pub(crate) struct Idle(Mutex<HashMap<HostKey, Vec<(IpAddr, Sender)>>>);

/// `(name, port, tls)`.
type HostKey = (String, u16, bool);

pub(super) type Sender = SendRequest<Full<Bytes>>;

/// Idle connections kept per host.
const IDLE_PER_HOST: usize = 4;

impl Idle {
    fn take(&self, name: &str, port: u16, tls: bool) -> Option<(IpAddr, Sender)> {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let list = all.get_mut(&(name.to_string(), port, tls))?;
        while let Some((addr, s)) = list.pop() {
            if s.is_ready() {
                return Some((addr, s));
            }
        }
        None
    }

    /// Gives back a connection whose last response was read to the end.
    pub(super) fn put(&self, name: &str, port: u16, tls: bool, addr: IpAddr, s: Sender) {
        if s.is_closed() {
            return;
        }
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let list = all.entry((name.to_string(), port, tls)).or_default();
        if list.len() < IDLE_PER_HOST {
            list.push((addr, s));
        }
    }
}

/// A copy of `req` (its body is in memory), to retry on a new connection.
fn copy(req: &Request<Full<Bytes>>) -> Request<Full<Bytes>> {
    let mut r = Request::new(req.body().clone());
    *r.method_mut() = req.method().clone();
    *r.uri_mut() = req.uri().clone();
    *r.headers_mut() = req.headers().clone();
    r
}

/// Sends `req` to `name:port` (over TLS when `tls`): on a kept-alive connection from
/// `idle` unless `fresh`, else at the first reachable address of `addrs`. Returns
/// the address, the response and the connection (for [`Idle::put`] once the
/// response is read), or why it failed (one line).
#[allow(clippy::too_many_arguments)]
pub(super) async fn send(
    req: Request<Full<Bytes>>,
    name: &str,
    port: u16,
    addrs: &[IpAddr],
    tls: bool,
    roots: &UpstreamRoots,
    idle: &Idle,
    fresh: bool,
) -> Result<(IpAddr, Response<Incoming>, Sender), String> {
    if !fresh {
        if let Some((addr, mut s)) = idle.take(name, port, tls) {
            match s.send_request(copy(&req)).await {
                Ok(resp) => return Ok((addr, resp, s)),
                // Closed before the request went out: safe to send it again.
                Err(e) if e.is_canceled() => {}
                Err(e) => return Err(format!("upstream request: {e}")),
            }
        }
    }
    let (addr, mut s) = open(name, port, addrs, tls, roots).await?;
    let resp = s
        .send_request(req)
        .await
        .map_err(|e| format!("upstream request: {e}"))?;
    Ok((addr, resp, s))
}

/// A new connection to `name:port`, verified when `tls`.
async fn open(
    name: &str,
    port: u16,
    addrs: &[IpAddr],
    tls: bool,
    roots: &UpstreamRoots,
) -> Result<(IpAddr, Sender), String> {
    let mut failures = Vec::new();
    let mut stream = None;
    for addr in addrs.iter().take(4) {
        match timeout(CONNECT_TIMEOUT, TcpStream::connect((*addr, port))).await {
            Ok(Ok(s)) => {
                stream = Some((*addr, s));
                break;
            }
            Ok(Err(e)) => failures.push(format!("{addr}: {e}")),
            Err(_) => failures.push(format!("{addr}: no answer within {CONNECT_TIMEOUT:?}")),
        }
    }
    let Some((addr, tcp)) = stream else {
        return Err(format!(
            "connecting to {name}:{port} failed: {}",
            failures.join("; ")
        ));
    };
    let _ = tcp.set_nodelay(true);
    let sender = if tls {
        let server = ServerName::try_from(name.to_string())
            .map_err(|e| format!("{name}: not a TLS server name: {e}"))?;
        let connector = tokio_rustls::TlsConnector::from(roots.config.clone());
        let tls = timeout(CONNECT_TIMEOUT, connector.connect(server, tcp))
            .await
            .map_err(|_| format!("TLS handshake with {name}:{port} timed out"))?
            .map_err(|e| format!("TLS with {name}:{port} failed (the upstream certificate is not trusted or invalid; never downgraded): {e}"))?;
        handshake(TokioIo::new(tls)).await?
    } else {
        handshake(TokioIo::new(tcp)).await?
    };
    Ok((addr, sender))
}

async fn handshake<T>(io: T) -> Result<Sender, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake upstream: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    sender
        .ready()
        .await
        .map_err(|e| format!("HTTP handshake upstream: {e}"))?;
    Ok(sender)
}
