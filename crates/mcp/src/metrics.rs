//! `serve --metrics ADDR`: Prometheus text exposition of what this server's runs
//! did — runs by outcome, violations by kind, launch latency, egress bytes — and
//! of its session as the store sees it (usage, budget limits, run states, kill
//! state; from every host sharing the store).
//!
//! Counters are fed by [`Metrics::observe_run`] / [`Metrics::observe_refusal`] from
//! the run path; session gauges are read from the store at each scrape. The HTTP
//! side ([`serve`]) answers `GET /metrics` only; it never changes anything.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry,
    TextEncoder,
};
use skillsandbox_audit::Trace;
use skillsandbox_policy::SessionStatus;

/// Launch latency buckets, in seconds (0.5 ms to 1 s).
const LAUNCH_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// How long a scraper may take to send its request head (and, three times that,
/// the whole exchange).
const SCRAPE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The server's metrics registry.
pub struct Metrics {
    registry: Registry,
    runs: IntCounterVec,
    violations: IntCounterVec,
    launch: Histogram,
    egress: IntCounter,
    session_usage: GaugeVec,
    session_limit: GaugeVec,
    session_runs: GaugeVec,
    session_killed: GaugeVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let runs = IntCounterVec::new(
            Opts::new(
                "skillsandbox_runs_total",
                "Runs by outcome: the trace's termination, or refused by the session policy.",
            ),
            &["outcome"],
        )?;
        let violations = IntCounterVec::new(
            Opts::new(
                "skillsandbox_violations_total",
                "Policy violations recorded in run traces, by kind.",
            ),
            &["kind"],
        )?;
        let launch = Histogram::with_opts(
            HistogramOpts::new(
                "skillsandbox_launch_seconds",
                "Time from the start of a run to its entrypoint starting (the trace's timings before `skill`).",
            )
            .buckets(LAUNCH_BUCKETS.to_vec()),
        )?;
        let egress = IntCounter::new(
            "skillsandbox_egress_bytes_total",
            "Bytes in plus out over allowed network connections of this server's runs.",
        )?;
        let session_usage = GaugeVec::new(
            Opts::new(
                "skillsandbox_session_usage",
                "What the session has used in its current epoch, on every host (cpu_seconds, wall_seconds, egress_bytes, cost_usd).",
            ),
            &["session", "budget"],
        )?;
        let session_limit = GaugeVec::new(
            Opts::new(
                "skillsandbox_session_budget_limit",
                "The session policy's budget limits (only those set).",
            ),
            &["session", "budget"],
        )?;
        let session_runs = GaugeVec::new(
            Opts::new(
                "skillsandbox_session_runs",
                "The session's runs in its current epoch by state (started, finished, running, lost).",
            ),
            &["session", "state"],
        )?;
        let session_killed = GaugeVec::new(
            Opts::new(
                "skillsandbox_session_killed",
                "1 when the session's kill switch has tripped.",
            ),
            &["session"],
        )?;
        registry.register(Box::new(runs.clone()))?;
        registry.register(Box::new(violations.clone()))?;
        registry.register(Box::new(launch.clone()))?;
        registry.register(Box::new(egress.clone()))?;
        registry.register(Box::new(session_usage.clone()))?;
        registry.register(Box::new(session_limit.clone()))?;
        registry.register(Box::new(session_runs.clone()))?;
        registry.register(Box::new(session_killed.clone()))?;
        Ok(Metrics {
            registry,
            runs,
            violations,
            launch,
            egress,
            session_usage,
            session_limit,
            session_runs,
            session_killed,
        })
    }

    /// Counts a finished run from its trace.
    pub fn observe_run(&self, trace: &Trace) {
        let outcome = serde_json::to_value(trace.termination)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "unknown".into());
        self.runs.with_label_values(&[outcome.as_str()]).inc();
        for (kind, n) in trace.violation_counts() {
            self.violations
                .with_label_values(&[kind.as_str()])
                .inc_by(n);
        }
        if let Some(skill_at) = trace.timings.iter().position(|t| t.phase == "skill") {
            let us: u64 = trace.timings[..skill_at].iter().map(|t| t.us).sum();
            self.launch.observe(us as f64 / 1e6);
        }
        let bytes = trace.network.connections.iter().fold(0u64, |acc, c| {
            acc.saturating_add(c.bytes_in).saturating_add(c.bytes_out)
        });
        self.egress.inc_by(bytes);
    }

    /// Counts a run the session policy refused.
    pub fn observe_refusal(&self) {
        self.runs.with_label_values(&["refused"]).inc();
    }

    /// The exposition text, with the session gauges set from `status` (`None`: the
    /// store has not seen the session yet, or could not be read).
    pub fn render(&self, status: Option<&SessionStatus>) -> String {
        self.session_usage.reset();
        self.session_limit.reset();
        self.session_runs.reset();
        self.session_killed.reset();
        if let Some(st) = status {
            let id = st.id.as_str();
            let u = &st.usage;
            for (name, v) in [
                ("cpu_seconds", u.cpu_seconds),
                ("wall_seconds", u.wall_seconds),
                ("egress_bytes", u.egress_bytes as f64),
                ("cost_usd", u.cost_usd),
            ] {
                self.session_usage.with_label_values(&[id, name]).set(v);
            }
            for b in &st.budgets {
                self.session_limit
                    .with_label_values(&[id, b.name.as_str()])
                    .set(b.limit);
            }
            let r = &st.runs;
            for (state, n) in [
                ("started", r.started),
                ("finished", r.finished),
                ("running", r.running),
                ("lost", r.lost),
            ] {
                self.session_runs
                    .with_label_values(&[id, state])
                    .set(n as f64);
            }
            let killed = st.state == skillsandbox_policy::SessionState::Killed;
            self.session_killed
                .with_label_values(&[id])
                .set(if killed { 1.0 } else { 0.0 });
        }
        let mut out = Vec::new();
        // Encoding into a Vec only fails on a metric family the registry itself
        // rejected at registration; nothing to show then.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Answers `GET /metrics` on `listener` until the process ends; `scrape` produces
/// the text (it may block: it runs on a blocking thread).
pub async fn serve(
    listener: tokio::net::TcpListener,
    scrape: Arc<dyn Fn() -> String + Send + Sync>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let scrape = Arc::clone(&scrape);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let scrape = Arc::clone(&scrape);
                async move { Ok::<_, Infallible>(answer(&req, scrape).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            // A client that goes away mid-request is its own problem; one that
            // trickles its request is cut off (no idle connection is held for ever).
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(SCRAPE_TIMEOUT)
                .keep_alive(false)
                .serve_connection(io, service);
            let _ = tokio::time::timeout(SCRAPE_TIMEOUT * 3, conn).await;
        });
    }
}

async fn answer(
    req: &Request<hyper::body::Incoming>,
    scrape: Arc<dyn Fn() -> String + Send + Sync>,
) -> Response<Full<Bytes>> {
    let reply = |code: StatusCode, ctype: &'static str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = code;
        if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
            r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
        }
        r
    };
    if req.uri().path() != "/metrics" {
        return reply(StatusCode::NOT_FOUND, "text/plain", "try /metrics\n".into());
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match tokio::task::spawn_blocking(move || scrape()).await {
        Ok(text) => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            text,
        ),
        Err(_) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            "scrape failed\n".into(),
        ),
    }
}
