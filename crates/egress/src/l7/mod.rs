//! Request-level egress (DESIGN.md §9.3): a connection to a host whose rule has
//! methods, paths or caps is terminated here (TLS with the run's CA, or plain HTTP),
//! and every request on it, HTTP/1.1 keep-alive and pipelined or HTTP/2 stream by
//! stream, is checked for its authority, method and path and counted against the
//! host's caps before it goes upstream on a fresh, verified connection.
//!
//! One entry: [`serve`]. A request naming another host than the connection was made
//! for (domain fronting) gets 403, a `domain_mismatch` violation and the end of the
//! connection; a method or path the rule does not allow gets 403 and a
//! `network_blocked` violation; crossing a cap gets 429/413/502, a `network_cap`
//! violation and the end of the connection.

mod ca;
mod metered;
mod prefixed;
mod upstream;

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, CONNECTION, HOST, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use skillsandbox_audit::{ConnectionDecision, ViolationKind};
use skillsandbox_manifest::HttpRules;
use tokio::net::TcpStream;
use tokio::sync::Notify;

pub use ca::InterceptCa;
pub(crate) use upstream::Idle;
pub use upstream::UpstreamRoots;

use crate::record::connection_record;
use crate::secrets::{placeholder_in, replace};
use crate::sniff::Sniff;
use crate::Shared;
use prefixed::Prefixed;

/// The TLS crypto provider: ring, which builds with the C compiler alone (aws-lc-rs
/// would add cmake and NASM to every build). rustls marks it deprecated because it
/// lacks post-quantum key exchange; both ends here are ours or verified upstreams.
#[allow(deprecated)]
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// What the sandbox gets back: a whole body (refusals, checked responses that may
/// carry a secret) or one streamed from the upstream ([`metered::Metered`]).
pub(crate) type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

fn whole(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Usage of one host in this run, across connections.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct HostUsage {
    pub requests: u64,
    pub bytes_out: u64,
    pub bytes_in: u64,
}

/// One terminated connection.
struct Conn {
    name: String,
    dest: IpAddr,
    port: u16,
    addrs: Vec<IpAddr>,
    rules: HttpRules,
    tls: bool,
    shared: Arc<Shared>,
    closing: AtomicBool,
    close: Notify,
}

/// Hop-by-hop headers, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
];

/// Terminates `stream` (whose first bytes, `head`, were already read and named
/// `name`) and serves every request on it under `rules`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve(
    stream: TcpStream,
    head: Vec<u8>,
    sniffed: &Sniff,
    name: &str,
    dest: IpAddr,
    port: u16,
    addrs: Vec<IpAddr>,
    rules: HttpRules,
    shared: &Arc<Shared>,
) {
    let tls = matches!(sniffed, Sniff::Tls { .. });
    let _ = stream.set_nodelay(true);
    let conn = Arc::new(Conn {
        name: name.to_string(),
        dest,
        port,
        addrs,
        rules,
        tls,
        shared: shared.clone(),
        closing: AtomicBool::new(false),
        close: Notify::new(),
    });
    let io = Prefixed::new(head, stream);
    if tls {
        let Some(ca) = shared.ca.clone() else {
            conn.refuse_connection("no interception CA in this run (refused: fail closed)");
            return;
        };
        let config = match ca.server_config(name) {
            Ok(c) => c,
            Err(e) => {
                conn.refuse_connection(&e);
                return;
            }
        };
        match tokio_rustls::TlsAcceptor::from(config).accept(io).await {
            Ok(tls) => run(TokioIo::new(tls), conn).await,
            Err(e) => conn.refuse_connection(&format!(
                "TLS handshake with the sandbox failed (does the client trust the run's CA?): {e}"
            )),
        }
    } else if matches!(sniffed, Sniff::Http { .. } | Sniff::Http2Preface) {
        run(TokioIo::new(io), conn).await;
    } else {
        conn.refuse_connection("the rule checks HTTP requests; this connection is not HTTP");
    }
}

async fn run<T>(io: T, conn: Arc<Conn>)
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let c = conn.clone();
    let svc = hyper::service::service_fn(move |req| {
        let c = c.clone();
        async move { Ok::<_, Infallible>(c.request(req).await) }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let served = builder.serve_connection_with_upgrades(io, svc);
    tokio::pin!(served);
    let mut shutting = false;
    loop {
        tokio::select! {
            _ = served.as_mut() => break,
            _ = conn.close.notified(), if !shutting => {
                shutting = true;
                served.as_mut().graceful_shutdown();
            }
        }
    }
}

/// How reading a body ended.
enum Collected {
    Whole(Bytes),
    /// It passed the bytes left under the host's cap.
    OverCap,
    Failed,
}

/// A whole body, stopped once it passes `left` bytes (when set).
async fn collect_limited(body: Incoming, left: Option<u64>) -> Collected {
    let got = match left {
        Some(left) => Limited::new(body, usize::try_from(left).unwrap_or(usize::MAX))
            .collect()
            .await
            .map(|b| b.to_bytes()),
        None => body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(Into::into),
    };
    match got {
        Ok(b) => Collected::Whole(b),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Collected::OverCap,
        Err(_) => Collected::Failed,
    }
}

fn status(code: StatusCode, text: &str, close: bool) -> Response<Body> {
    let mut r = Response::new(whole(format!("skillsandbox: {text}\n")));
    *r.status_mut() = code;
    if close {
        r.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// The host a request names: `:authority` (HTTP/2, absolute form), else `Host`;
/// lower-cased, port and trailing dot stripped.
fn authority(req: &Request<Incoming>) -> Option<String> {
    let raw = req
        .uri()
        .authority()
        .map(|a| a.host().to_string())
        .or_else(|| {
            req.headers()
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .map(|h| strip_port(h).to_string())
        })?;
    Some(raw.trim_end_matches('.').to_ascii_lowercase())
}

/// The protocol an HTTP/1.1 request asks to switch to (`Connection: upgrade` with
/// `Upgrade: websocket`, say); `None` for every other request.
fn upgrade_protocol(req: &Request<Incoming>) -> Option<HeaderValue> {
    let asks = req
        .headers()
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    (req.version() == hyper::Version::HTTP_11 && asks)
        .then(|| req.headers().get(UPGRADE).cloned())
        .flatten()
}

fn strip_port(h: &str) -> &str {
    if h.starts_with('[') {
        return h.split(']').next().map_or(h, |s| s.trim_start_matches('['));
    }
    match h.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => h,
    }
}

impl Conn {
    fn refuse_connection(&self, why: &str) {
        let record = connection_record(
            Some(&self.name),
            self.dest,
            self.port,
            None,
            ConnectionDecision::Blocked,
            why,
        );
        self.shared.recorder.blocked(
            record,
            ViolationKind::NetworkBlocked,
            format!("TCP connection to {}:{}: {why}", self.name, self.port),
            None,
        );
    }

    fn violation(&self, kind: ViolationKind, reason: &str, detail: String) {
        let record = connection_record(
            Some(&self.name),
            self.dest,
            self.port,
            None,
            ConnectionDecision::Blocked,
            reason,
        );
        self.shared.recorder.blocked(record, kind, detail, None);
    }

    /// The record of a request that went upstream to `addr`, with the body bytes
    /// moved (out, in).
    fn allowed(&self, addr: IpAddr, reason: String, (out, inn): (u64, u64)) {
        let mut record = connection_record(
            Some(&self.name),
            self.dest,
            self.port,
            Some(addr.to_string()),
            ConnectionDecision::Allowed,
            reason,
        );
        (record.bytes_out, record.bytes_in) = (out, inn);
        self.shared.recorder.connection(record);
    }

    /// A byte cap crossed: the violation, then the end of the connection.
    fn cap_cut(&self, what: &str, how: &str, cap: Option<u64>) {
        self.violation(
            ViolationKind::NetworkCap,
            "byte cap reached",
            format!("{what}: {how} ({} bytes per run); cut", cap.unwrap_or(0)),
        );
        self.end();
    }

    /// Ends the connection after the current response.
    fn end(&self) {
        self.closing.store(true, Ordering::Release);
        self.close.notify_one();
    }

    fn usage(&self, f: impl FnOnce(&mut HostUsage)) -> HostUsage {
        let mut all = self
            .shared
            .http_usage
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let u = all.entry(self.name.clone()).or_default();
        f(u);
        *u
    }

    async fn request(self: &Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        if self.closing.load(Ordering::Acquire) {
            return status(StatusCode::FORBIDDEN, "connection closed by policy", true);
        }
        let method = req.method().as_str().to_string();
        let path = req.uri().path().to_string();
        let what = format!("HTTP {method} {path} to {}", self.name);
        match authority(&req) {
            Some(a) if a == self.name => {}
            other => {
                let named = other.unwrap_or_else(|| "no host".into());
                self.violation(
                    ViolationKind::DomainMismatch,
                    "request names another host than the connection (domain fronting)",
                    format!("{what}: the request names {named} on a connection made for {}; refused and the connection closed", self.name),
                );
                self.end();
                return status(StatusCode::FORBIDDEN, "request names another host", true);
            }
        }
        let r = &self.rules;
        if !r.method_allowed(&method) || !r.path_allowed(&path) {
            self.violation(
                ViolationKind::NetworkBlocked,
                "method or path not allowed by the rule",
                format!(
                    "{what}: not allowed (methods [{}], paths [{}])",
                    r.methods.join(", "),
                    r.paths.join(", ")
                ),
            );
            return status(StatusCode::FORBIDDEN, "method or path not allowed", false);
        }
        let used = self.usage(|u| u.requests += 1);
        if let Some(max) = r.max_requests.filter(|m| used.requests > *m) {
            self.violation(
                ViolationKind::NetworkCap,
                "request cap reached",
                format!(
                    "{what}: request {} of at most {max} to this host",
                    used.requests
                ),
            );
            self.end();
            return status(StatusCode::TOO_MANY_REQUESTS, "request cap reached", true);
        }
        self.forward(req, &what).await
    }

    /// Swaps each secret's placeholder for its value where the secret is bound to this
    /// host (only in its header, when it names one); refuses the request when a
    /// placeholder goes to a host its secret is not bound to.
    fn secrets(
        &self,
        what: &str,
        uri: &mut Vec<u8>,
        headers: &mut [(HeaderName, Vec<u8>)],
        body: &mut Vec<u8>,
    ) -> Result<(), Box<Response<Body>>> {
        for sec in self.shared.secrets.iter() {
            let p = sec.placeholder.as_bytes();
            let in_uri = placeholder_in(std::slice::from_ref(sec), uri).is_some();
            let in_body = placeholder_in(std::slice::from_ref(sec), body).is_some();
            let in_headers = headers
                .iter()
                .any(|(_, v)| placeholder_in(std::slice::from_ref(sec), v).is_some());
            if !(in_uri || in_body || in_headers) {
                continue;
            }
            if !sec.bound_to(&self.name) {
                self.violation(
                    ViolationKind::SecretExfiltration,
                    "carries a secret's placeholder to a host the secret is not bound to",
                    format!(
                        "{what}: carries the placeholder of secret {} (in the {}), which may only go to {}; refused and the connection closed",
                        sec.name,
                        [(in_uri, "path or query"), (in_headers, "headers"), (in_body, "body")]
                            .iter()
                            .filter(|(hit, _)| *hit)
                            .map(|(_, w)| *w)
                            .collect::<Vec<_>>()
                            .join(", "),
                        sec.hosts.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                    ),
                );
                self.end();
                return Err(Box::new(status(
                    StatusCode::FORBIDDEN,
                    "secret placeholder refused",
                    true,
                )));
            }
            let v = sec.value().as_bytes();
            match &sec.header {
                Some(h) => {
                    for (k, val) in headers.iter_mut() {
                        if k.as_str().eq_ignore_ascii_case(h) {
                            *val = replace(val, p, v);
                        }
                    }
                }
                None => {
                    *uri = replace(uri, p, v);
                    *body = replace(body, p, v);
                    for (_, val) in headers.iter_mut() {
                        *val = replace(val, p, v);
                    }
                }
            }
            self.shared.recorder.connection(connection_record(
                Some(&self.name),
                self.dest,
                self.port,
                None,
                ConnectionDecision::Allowed,
                format!("{what}: secret {} swapped in for {}", sec.name, self.name),
            ));
        }
        Ok(())
    }

    async fn forward(self: &Arc<Self>, mut req: Request<Incoming>, what: &str) -> Response<Body> {
        let r = &self.rules;
        // An upgrade (websocket) was checked like any request; once both ends switch,
        // the bytes are relayed and counted against the caps (`tunnel`).
        // Only websockets are switched: another protocol (h2c, say) would carry
        // requests the checks never see. Its upgrade headers are hop-by-hop, so
        // without them the request goes on as plain HTTP/1.1, as to a server that
        // does not offer the upgrade.
        let upgrade =
            upgrade_protocol(&req).filter(|p| p.as_bytes().eq_ignore_ascii_case(b"websocket"));
        let client_up = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let (parts, body) = req.into_parts();
        let left_out = r
            .max_bytes_out
            .map(|m| m.saturating_sub(self.usage(|_| {}).bytes_out));
        let body = match collect_limited(body, left_out).await {
            Collected::Whole(b) => b,
            Collected::OverCap => {
                self.cap_cut(
                    what,
                    "the request body passes max_bytes_out",
                    r.max_bytes_out,
                );
                return status(StatusCode::PAYLOAD_TOO_LARGE, "upload cap reached", true);
            }
            Collected::Failed => {
                return status(StatusCode::BAD_REQUEST, "reading the request failed", true)
            }
        };
        let body_out = body.len() as u64;
        self.usage(|u| u.bytes_out += body_out);

        let mut uri = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .as_bytes()
            .to_vec();
        let mut headers: Vec<(HeaderName, Vec<u8>)> = parts
            .headers
            .iter()
            .filter(|(k, _)| {
                !HOP_BY_HOP.contains(&k.as_str()) && *k != HOST && k.as_str() != "content-length"
            })
            .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
            .collect();
        let mut body = body.to_vec();
        if let Err(resp) = self.secrets(what, &mut uri, &mut headers, &mut body) {
            return *resp;
        }
        let mut up = Request::builder()
            .method(parts.method.clone())
            .uri(String::from_utf8_lossy(&uri).into_owned());
        for (k, v) in &headers {
            up = up.header(k, v.as_slice());
        }
        let default_port = if self.tls { 443 } else { 80 };
        let host = if self.port == default_port {
            self.name.clone()
        } else {
            format!("{}:{}", self.name, self.port)
        };
        up = up.header(HOST, host);
        if let Some(proto) = &upgrade {
            up = up
                .header(CONNECTION, HeaderValue::from_static("upgrade"))
                .header(UPGRADE, proto.clone());
        }
        let Ok(up) = up.body(Full::new(Bytes::from(body))) else {
            return status(StatusCode::BAD_REQUEST, "malformed request", true);
        };
        let roots = &self.shared.upstream_roots;
        let sent = match roots {
            Some(roots) => {
                upstream::send(
                    up,
                    &self.name,
                    self.port,
                    &self.addrs,
                    self.tls,
                    roots,
                    &self.shared.upstream_idle,
                    upgrade.is_some(),
                )
                .await
            }
            None => Err("no upstream trust roots in this run".to_string()),
        };
        let (addr, resp, sender) = match sent {
            Ok(x) => x,
            Err(e) => {
                self.shared.recorder.connection(connection_record(
                    Some(&self.name),
                    self.dest,
                    self.port,
                    None,
                    ConnectionDecision::Blocked,
                    format!("{what}: {e}"),
                ));
                return status(StatusCode::BAD_GATEWAY, &e, false);
            }
        };
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            return self.switch(what, addr, client_up, resp);
        }
        let (rparts, rbody) = resp.into_parts();
        let left_in = r
            .max_bytes_in
            .map(|m| m.saturating_sub(self.usage(|_| {}).bytes_in));
        let mut out = Response::new(whole(Bytes::new()));
        *out.status_mut() = rparts.status;
        let headers = rparts
            .headers
            .iter()
            .filter(|(k, _)| !HOP_BY_HOP.contains(&k.as_str()) && k.as_str() != "content-length");
        if !self.shared.secrets.iter().any(|s| s.bound_to(&self.name)) {
            // No secret's value ever reaches this host, so none can come back:
            // stream the body, counted against the cap.
            for (k, v) in headers {
                out.headers_mut().append(k, v.clone());
            }
            *out.body_mut() = metered::Metered {
                inner: rbody,
                conn: self.clone(),
                what: what.to_string(),
                status: rparts.status.as_u16(),
                addr,
                left: left_in,
                sender: Some(sender),
                sent: body_out,
                seen: 0,
                cut: false,
            }
            .boxed_unsync();
            return out;
        }
        // A host a secret is bound to may echo its value: read the whole body and
        // scrub the value from it before the sandbox sees any of it.
        let rbody = match collect_limited(rbody, left_in).await {
            Collected::Whole(b) => b,
            Collected::OverCap => {
                self.cap_cut(what, "the response passes max_bytes_in", r.max_bytes_in);
                return status(StatusCode::BAD_GATEWAY, "download cap reached", true);
            }
            Collected::Failed => {
                return status(
                    StatusCode::BAD_GATEWAY,
                    "reading the response failed",
                    false,
                )
            }
        };
        self.usage(|u| u.bytes_in += rbody.len() as u64);
        // Read to the end: the upstream connection can carry the next request.
        self.shared
            .upstream_idle
            .put(&self.name, self.port, self.tls, addr, sender);
        let mut rbody = rbody.to_vec();
        let mut rheaders: Vec<(HeaderName, Vec<u8>)> = headers
            .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
            .collect();
        for sec in self.shared.secrets.iter() {
            let (v, p) = (sec.value().as_bytes(), sec.placeholder.as_bytes());
            rbody = replace(&rbody, v, p);
            for (_, h) in &mut rheaders {
                *h = replace(h, v, p);
            }
        }
        self.allowed(
            addr,
            format!("{what}: {} (request checked)", rparts.status.as_u16()),
            (body_out, rbody.len() as u64),
        );
        *out.body_mut() = whole(rbody);
        for (k, v) in rheaders {
            if let Ok(v) = HeaderValue::from_bytes(&v) {
                out.headers_mut().append(k, v);
            }
        }
        out
    }

    /// The upstream agreed to switch protocols: the sandbox gets the 101, and both
    /// upgraded ends are joined by [`Conn::tunnel`].
    fn switch(
        self: &Arc<Self>,
        what: &str,
        addr: IpAddr,
        client_up: Option<hyper::upgrade::OnUpgrade>,
        mut resp: Response<Incoming>,
    ) -> Response<Body> {
        let Some(client_up) = client_up else {
            return status(
                StatusCode::BAD_GATEWAY,
                "the upstream switched protocols unasked",
                true,
            );
        };
        let server_up = hyper::upgrade::on(&mut resp);
        let mut out = Response::new(whole(Bytes::new()));
        *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        for (k, v) in resp.headers() {
            if k != "content-length" && k != "transfer-encoding" {
                out.headers_mut().append(k, v.clone());
            }
        }
        let conn = self.clone();
        let what = what.to_string();
        tokio::spawn(async move { conn.tunnel(what, addr, client_up, server_up).await });
        out
    }

    /// Relays an upgraded connection's bytes both ways, counting them against the
    /// host's byte caps; crossing one cuts it. Frames are relayed as they are: the
    /// secrets' values are only ever swapped into request heads and bodies, so none
    /// is inside them.
    async fn tunnel(
        self: Arc<Self>,
        what: String,
        addr: IpAddr,
        client: hyper::upgrade::OnUpgrade,
        server: hyper::upgrade::OnUpgrade,
    ) {
        let (Ok(client), Ok(server)) = (client.await, server.await) else {
            return;
        };
        let (mut cr, mut cw) = tokio::io::split(TokioIo::new(client));
        let (mut sr, mut sw) = tokio::io::split(TokioIo::new(server));
        let (out, inn) = (AtomicU64::new(0), AtomicU64::new(0));
        let cut = tokio::select! {
            c = self.pump(&mut cr, &mut sw, &out, true) => c,
            c = self.pump(&mut sr, &mut cw, &inn, false) => c,
        };
        let (o, i) = (out.load(Ordering::Relaxed), inn.load(Ordering::Relaxed));
        if let Some((how, cap)) = cut {
            self.cap_cut(&what, how, cap);
        }
        self.allowed(
            addr,
            format!("{what}: upgraded connection relayed ({o} bytes out, {i} in)"),
            (o, i),
        );
    }

    /// Copies `from` to `to` until either ends, or the cap for this direction is
    /// crossed (then returns which cap).
    async fn pump<R, W>(
        &self,
        from: &mut R,
        to: &mut W,
        moved: &AtomicU64,
        upload: bool,
    ) -> Option<(&'static str, Option<u64>)>
    where
        R: tokio::io::AsyncRead + Unpin,
        W: tokio::io::AsyncWrite + Unpin,
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => n,
            };
            let used = self.usage(|u| {
                if upload {
                    u.bytes_out += n as u64;
                } else {
                    u.bytes_in += n as u64;
                }
            });
            let (cap, total, how) = if upload {
                (
                    self.rules.max_bytes_out,
                    used.bytes_out,
                    "the upgraded connection passes max_bytes_out",
                )
            } else {
                (
                    self.rules.max_bytes_in,
                    used.bytes_in,
                    "the upgraded connection passes max_bytes_in",
                )
            };
            if cap.is_some_and(|c| total > c) {
                return Some((how, cap));
            }
            moved.fetch_add(n as u64, Ordering::Relaxed);
            if to.write_all(&buf[..n]).await.is_err() || to.flush().await.is_err() {
                return None;
            }
        }
    }
}
