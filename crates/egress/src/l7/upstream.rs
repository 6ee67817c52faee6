//! The upstream side of a checked request: a new connection to the real host (TLS
//! verified against the system roots with rustls; never downgraded), HTTP/1.1.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
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

/// Sends `req` to `name:port` at the first reachable address of `addrs`; over TLS
/// when `tls`. Returns the response, or why it failed (one line).
pub(super) async fn send(
    req: Request<Full<Bytes>>,
    name: &str,
    port: u16,
    addrs: &[IpAddr],
    tls: bool,
    roots: &UpstreamRoots,
) -> Result<(IpAddr, Response<Incoming>), String> {
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
    let resp = if tls {
        let server = ServerName::try_from(name.to_string())
            .map_err(|e| format!("{name}: not a TLS server name: {e}"))?;
        let connector = tokio_rustls::TlsConnector::from(roots.config.clone());
        let tls = timeout(CONNECT_TIMEOUT, connector.connect(server, tcp))
            .await
            .map_err(|_| format!("TLS handshake with {name}:{port} timed out"))?
            .map_err(|e| format!("TLS with {name}:{port} failed (the upstream certificate is not trusted or invalid; never downgraded): {e}"))?;
        exchange(TokioIo::new(tls), req).await?
    } else {
        exchange(TokioIo::new(tcp), req).await?
    };
    Ok((addr, resp))
}

async fn exchange<T>(io: T, req: Request<Full<Bytes>>) -> Result<Response<Incoming>, String>
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
        .send_request(req)
        .await
        .map_err(|e| format!("upstream request: {e}"))
}
