//! Request-level egress benchmark: HTTPS through the egress service as a sandboxed
//! client sees it, against a direct connection to the same upstream, in one run:
//!
//! - **direct**: client → upstream (TLS with a test CA);
//! - **pass-through**: client → egress service (SNI checked, bytes relayed) → upstream;
//! - **intercepted**: client → egress service (TLS terminated with the run's CA, every
//!   request checked against `methods`) → a fresh verified TLS connection → upstream.
//!
//! Printed: the median time per request on a kept-alive connection (and what
//! interception adds), the median for a new connection's first request, and
//! download throughput of a large body; each as a ratio to direct.
//!
//! Run: `cargo run -p skillsandbox-egress --example egress_l7_bench --profile bench`
//! (optional arguments: requests for the latency test, default 300; MiB per body for
//! the throughput test, default 16; bodies, default 8). Results: bench/egress.md.

#[path = "common.rs"]
mod common;

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use skillsandbox_egress::{EgressHandle, InterceptCa, UpstreamRoots};
use skillsandbox_manifest::HttpRules;
use tokio::net::TcpStream;

type Error = Box<dyn std::error::Error + Send + Sync>;

const NAME: &str = "bench.example";
const SYNTHETIC: Ipv4Addr = Ipv4Addr::new(127, 77, 0, 1);

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let requests: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(300);
    let mib: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(16);
    let bodies: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(8);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(requests, mib, bodies))
}

#[allow(deprecated)] // ring: see skillsandbox_egress's provider(); the same here
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A test CA and a leaf for NAME: (CA PEM, leaf chain, leaf key).
fn test_pki() -> Result<(String, Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Error> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate()?;
    let leaf = CertificateParams::new(vec![NAME.to_string()])?.signed_by(&key, &issuer)?;
    let key = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes())?;
    Ok((ca_cert.pem(), vec![leaf.der().clone()], key))
}

/// The upstream: HTTPS (HTTP/1.1) on `listener`; `/big` answers `big`, else `ok`.
fn serve_upstream(
    listener: std::net::TcpListener,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    big: Bytes,
) -> Result<(), Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let (acceptor, big) = (acceptor.clone(), big.clone());
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let tls = match acceptor.accept(s).await {
                    Ok(t) => t,
                    Err(e) => return eprintln!("upstream TLS: {e}"),
                };
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let body = if req.uri().path() == "/big" {
                        big.clone()
                    } else {
                        Bytes::from_static(b"ok")
                    };
                    async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
                });
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await
                {
                    eprintln!("upstream connection: {e}");
                }
            });
        }
    });
    Ok(())
}

struct Path_ {
    addr: SocketAddr,
    _handle: Option<EgressHandle>,
}

/// An upstream, and (unless `direct`) an egress service in front of it.
async fn setup(
    pki: &(String, Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
    big: &Bytes,
    mode: Mode,
    ca: &Arc<InterceptCa>,
) -> Result<Path_, Error> {
    let (front, upstream) = common::port_pair(SYNTHETIC)?;
    let port = front.local_addr()?.port();
    let up_addr = upstream.local_addr()?;
    serve_upstream(upstream, pki.1.clone(), pki.2.clone_key(), big.clone())?;
    if mode == Mode::Direct {
        return Ok(Path_ {
            addr: up_addr,
            _handle: None,
        });
    }
    let http = match mode {
        Mode::Intercepted => HttpRules {
            methods: vec!["GET".into()],
            ..HttpRules::default()
        },
        _ => HttpRules::default(),
    };
    let mut config = common::config(NAME, port, http);
    config.ca = Some(ca.clone());
    config.upstream_roots = Some(UpstreamRoots::load(Some(pki.0.as_bytes()))?);
    let (handle, addr) = common::serve(config, front, NAME, SYNTHETIC).await?;
    Ok(Path_ {
        addr,
        _handle: Some(handle),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Direct,
    PassThrough,
    Intercepted,
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// A kept-alive HTTPS connection to `addr`, trusting `roots`.
async fn connect(addr: SocketAddr, roots: &Arc<rustls::ClientConfig>) -> Result<Sender, Error> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let tls = tokio_rustls::TlsConnector::from(roots.clone())
        .connect(ServerName::try_from(NAME)?, tcp)
        .await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            eprintln!("client connection: {e}");
        }
    });
    Ok(sender)
}

/// GET `path`; the body's length.
async fn get(s: &mut Sender, path: &str) -> Result<usize, Error> {
    let req = Request::builder()
        .uri(path)
        .header("host", NAME)
        .body(Empty::new())?;
    s.ready().await?;
    let resp = s.send_request(req).await?;
    if !resp.status().is_success() {
        return Err(format!("{path}: {}", resp.status()).into());
    }
    Ok(resp.into_body().collect().await?.to_bytes().len())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

async fn run(requests: usize, mib: usize, bodies: usize) -> Result<(), Error> {
    let pki = test_pki()?;
    let big = Bytes::from(vec![0x5au8; mib * 1024 * 1024]);
    let ca = Arc::new(InterceptCa::new()?);
    let mut store = rustls::RootCertStore::empty();
    for pem in [pki.0.as_str(), ca.cert_pem()] {
        for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            store.add(c?)?;
        }
    }
    let mut client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(store)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let client = Arc::new(client);

    println!(
        "request-level egress benchmark (HTTPS, loopback): {requests} requests, {bodies} × {mib} MiB bodies"
    );
    let mut rows = Vec::new();
    for mode in [Mode::Direct, Mode::PassThrough, Mode::Intercepted] {
        let path = setup(&pki, &big, mode, &ca).await?;
        // Per request on one kept-alive connection.
        let mut s = connect(path.addr, &client).await?;
        get(&mut s, "/small").await?;
        let mut per = Vec::with_capacity(requests);
        for _ in 0..requests {
            let t = Instant::now();
            get(&mut s, "/small").await?;
            per.push(t.elapsed());
        }
        // A new connection's first request (TCP + TLS + request).
        let mut first = Vec::with_capacity(requests / 3);
        for _ in 0..(requests / 3).max(1) {
            let t = Instant::now();
            let mut s = connect(path.addr, &client).await?;
            get(&mut s, "/small").await?;
            first.push(t.elapsed());
        }
        // Download throughput on a kept-alive connection.
        let t = Instant::now();
        let mut total = 0usize;
        for _ in 0..bodies {
            total += get(&mut s, "/big").await?;
        }
        let mibs = total as f64 / (1024.0 * 1024.0) / t.elapsed().as_secs_f64();
        rows.push((mode, median(per), median(first), mibs));
    }
    let (_, d_req, d_first, d_mibs) = rows[0];
    println!("| path | request (kept alive), median | new connection + request, median | download MiB/s | throughput ratio |");
    println!("|---|---|---|---|---|");
    for (mode, req, first, mibs) in &rows {
        println!(
            "| {mode:?} | {:.1} µs (+{:.1}) | {:.1} µs (+{:.1}) | {mibs:.0} | **{:.2}** |",
            us(*req),
            us(*req) - us(d_req),
            us(*first),
            us(*first) - us(d_first),
            mibs / d_mibs
        );
    }
    Ok(())
}
