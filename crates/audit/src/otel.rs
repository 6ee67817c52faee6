//! Optional OpenTelemetry export: each run as one span (`skillsandbox.run`) with a
//! span event per violation and per runtime event, sent as OTLP/HTTP JSON to
//! `/v1/traces`.
//!
//! Configured only by the standard `OTEL_*` variables and off when no endpoint is
//! set. Plain HTTP only (no TLS in this build). Never retries and never blocks a
//! run for longer than the timeout; the caller decides what a failed export means.

use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::error::AuditError;
use crate::event::Violation;
use crate::trace::Trace;

/// Default export timeout. Shorter than the OTLP spec's 10 s so an unreachable
/// collector cannot hold up the end of a run for long.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where and how to export, resolved from the `OTEL_*` variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpConfig {
    /// Full URL the request is POSTed to (`…/v1/traces`).
    pub endpoint: String,
    /// Extra request headers (e.g. authentication), in order.
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    /// `service.name` of the resource.
    pub service_name: String,
    /// Other resource attributes (`OTEL_RESOURCE_ATTRIBUTES`).
    pub resource_attributes: Vec<(String, String)>,
}

impl OtlpConfig {
    /// Resolves the configuration from the process environment; `Ok(None)` when
    /// export is off.
    pub fn from_env() -> Result<Option<Self>, AuditError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Resolves the configuration from `var` (a lookup of environment variables):
    ///
    /// - endpoint: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as is, else
    ///   `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`; neither set → off.
    ///   `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` → off.
    /// - headers: `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, else `OTEL_EXPORTER_OTLP_HEADERS`
    ///   (`key=value,key2=value2`, values percent-decoded).
    /// - timeout: `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, else `OTEL_EXPORTER_OTLP_TIMEOUT`
    ///   (milliseconds), else [`DEFAULT_TIMEOUT`].
    /// - protocol: `grpc` is refused (this exporter speaks OTLP/HTTP JSON);
    ///   `http/protobuf` and `http/json` both get JSON, which collectors accept on
    ///   the same path.
    /// - resource: `OTEL_SERVICE_NAME` (default `skillsandbox`),
    ///   `OTEL_RESOURCE_ATTRIBUTES`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, AuditError> {
        let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let either = |specific: &str, general: &str| get(specific).or_else(|| get(general));
        if get("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
            || get("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim() == "none")
        {
            return Ok(None);
        }
        let endpoint = match get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            Some(e) => e.trim().to_owned(),
            None => match get("OTEL_EXPORTER_OTLP_ENDPOINT") {
                Some(base) => format!("{}/v1/traces", base.trim().trim_end_matches('/')),
                None => return Ok(None),
            },
        };
        let bad = |reason: String| AuditError::OtlpExport {
            endpoint: endpoint.clone(),
            reason,
        };
        if let Some(p) = either(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ) {
            if p.trim() == "grpc" {
                return Err(bad("OTLP over gRPC is not supported: point the endpoint at the collector's OTLP/HTTP port (usually 4318) and set OTEL_EXPORTER_OTLP_PROTOCOL=http/json".to_owned()));
            }
        }
        if !endpoint.starts_with("http://") {
            return Err(bad(
                "only plain http:// endpoints are supported by this build (no TLS); use a local collector or sidecar that forwards over TLS".to_owned(),
            ));
        }
        let headers = match either(
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            "OTEL_EXPORTER_OTLP_HEADERS",
        ) {
            Some(h) => {
                parse_key_values(&h).map_err(|r| bad(format!("OTEL_EXPORTER_OTLP_HEADERS: {r}")))?
            }
            None => Vec::new(),
        };
        let timeout = match either(
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ) {
            Some(ms) => Duration::from_millis(ms.trim().parse::<u64>().map_err(|_| {
                bad(format!(
                    "OTEL_EXPORTER_OTLP_TIMEOUT must be milliseconds, got {ms:?}"
                ))
            })?),
            None => DEFAULT_TIMEOUT,
        };
        let resource_attributes = match get("OTEL_RESOURCE_ATTRIBUTES") {
            Some(a) => {
                parse_key_values(&a).map_err(|r| bad(format!("OTEL_RESOURCE_ATTRIBUTES: {r}")))?
            }
            None => Vec::new(),
        };
        let service_name = get("OTEL_SERVICE_NAME")
            .map(|s| s.trim().to_owned())
            .or_else(|| {
                resource_attributes
                    .iter()
                    .find(|(k, _)| k == "service.name")
                    .map(|(_, v)| v.clone())
            })
            .unwrap_or_else(|| "skillsandbox".to_owned());
        Ok(Some(Self {
            endpoint,
            headers,
            timeout,
            service_name,
            resource_attributes,
        }))
    }
}

/// `k=v,k2=v2` (W3C baggage-like, as the OTLP spec uses), values percent-decoded.
fn parse_key_values(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(',')
        .filter(|item| !item.trim().is_empty())
        .map(|item| {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?} is not key=value"))?;
            let k = k.trim();
            if k.is_empty() {
                return Err(format!("{item:?} has an empty key"));
            }
            Ok((k.to_owned(), percent_decode(v.trim())?))
        })
        .collect()
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape in {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
}

/// Exports `trace` as one span when an OTLP endpoint is configured in the
/// environment; does nothing (Ok) when none is.
pub fn export_run_span(trace: &Trace) -> Result<(), AuditError> {
    match OtlpConfig::from_env()? {
        Some(config) => export_run_span_to(trace, &config),
        None => Ok(()),
    }
}

/// POSTs `trace` as one span to `config.endpoint` and checks for a 2xx answer.
pub fn export_run_span_to(trace: &Trace, config: &OtlpConfig) -> Result<(), AuditError> {
    let fail = |reason: String| AuditError::OtlpExport {
        endpoint: config.endpoint.clone(),
        reason,
    };
    let body = serde_json::to_vec(&otlp_request(trace, config))
        .map_err(|e| fail(format!("cannot serialize the request: {e}")))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(config.timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let mut request = agent
        .post(&config.endpoint)
        .header("content-type", "application/json");
    for (k, v) in &config.headers {
        request = request.header(k.as_str(), v.as_str());
    }
    let mut response = request.send(&body[..]).map_err(|e| fail(e.to_string()))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let detail = response
        .body_mut()
        .with_config()
        .limit(512)
        .read_to_string()
        .unwrap_or_default();
    Err(fail(format!(
        "collector answered {status}: {}",
        detail.trim()
    )))
}

/// 16-byte trace id (32 hex): the trace id's UUID bits, or a hash of it.
fn otel_trace_id(trace: &Trace) -> String {
    let hex: String = trace.trace_id.chars().filter(|c| *c != '-').collect();
    let is_id = hex.len() == 32
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
        && hex.bytes().any(|b| b != b'0');
    if is_id {
        hex.to_ascii_lowercase()
    } else {
        hex::encode(&Sha256::digest(trace.trace_id.as_bytes())[..16])
    }
}

/// 8-byte span id (16 hex) derived from the run id, so a re-export is the same span.
fn otel_span_id(trace: &Trace) -> String {
    let digest = Sha256::digest(format!("skillsandbox.run:{}", trace.run_id).as_bytes());
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    if id == [0u8; 8] {
        id[7] = 1;
    }
    hex::encode(id)
}

/// Nanoseconds since the Unix epoch of an RFC 3339 time, as the decimal string
/// OTLP/JSON uses for 64-bit integers.
fn unix_nanos(time: &str) -> Option<String> {
    let t =
        time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339).ok()?;
    let nanos = t.unix_timestamp_nanos();
    (nanos >= 0).then(|| nanos.to_string())
}

fn attr(key: &str, value: Value) -> Value {
    json!({ "key": key, "value": value })
}

fn s(v: &str) -> Value {
    json!({ "stringValue": v })
}

fn int(v: i64) -> Value {
    json!({ "intValue": v.to_string() })
}

fn violation_event(v: &Violation, fallback_time: &str) -> Value {
    let mut attributes = vec![
        attr("violation.kind", s(v.kind.as_str())),
        attr("violation.severity", s(severity_str(v))),
        attr("violation.detail", s(&v.detail)),
    ];
    if let Some(m) = &v.mitre {
        attributes.push(attr("mitre.tactic", s(&m.tactic)));
        attributes.push(attr("mitre.technique_id", s(&m.technique_id)));
        attributes.push(attr("mitre.technique", s(&m.technique)));
    }
    json!({
        "timeUnixNano": unix_nanos(&v.time).unwrap_or_else(|| fallback_time.to_owned()),
        "name": "skillsandbox.violation",
        "attributes": attributes,
    })
}

fn severity_str(v: &Violation) -> &'static str {
    match v.severity {
        crate::event::Severity::Low => "low",
        crate::event::Severity::Medium => "medium",
        crate::event::Severity::High => "high",
        crate::event::Severity::Critical => "critical",
    }
}

/// The OTLP/JSON `ExportTraceServiceRequest` for one run.
pub fn otlp_request(trace: &Trace, config: &OtlpConfig) -> Value {
    let end = unix_nanos(&trace.finished_at).unwrap_or_else(|| "0".to_owned());
    let start = unix_nanos(&trace.started_at).unwrap_or_else(|| end.clone());
    let termination = serde_json::to_value(trace.termination)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let mut attributes = vec![
        attr("skill.name", s(&trace.skill.name)),
        attr("skill.version", s(&trace.skill.version)),
        attr("skillsandbox.trace_id", s(&trace.trace_id)),
        attr("skillsandbox.run_id", s(&trace.run_id)),
        attr("skillsandbox.tier", s(&trace.tier)),
        attr("skillsandbox.exit_code", int(i64::from(trace.exit_code))),
        attr("skillsandbox.termination", s(&termination)),
        attr(
            "skillsandbox.duration_ms",
            int(i64::try_from(trace.duration_ms).unwrap_or(i64::MAX)),
        ),
        attr(
            "skillsandbox.violations",
            int(i64::try_from(trace.policy_violations.len()).unwrap_or(i64::MAX)),
        ),
        attr(
            "skillsandbox.command",
            json!({ "arrayValue": { "values": trace.command.iter().map(|a| s(a)).collect::<Vec<_>>() } }),
        ),
    ];
    if let Some(id) = &trace.session_id {
        attributes.push(attr("skillsandbox.session_id", s(id)));
    }
    if let Some(err) = &trace.setup_error {
        attributes.push(attr("skillsandbox.setup_error", s(err)));
    }
    let mut events: Vec<Value> = trace
        .policy_violations
        .iter()
        .map(|v| violation_event(v, &end))
        .collect();
    events.extend(trace.events.iter().map(|e| {
        json!({
            "timeUnixNano": unix_nanos(&e.time).unwrap_or_else(|| end.clone()),
            "name": format!("skillsandbox.{}", e.kind),
            "attributes": [attr("detail", s(&e.detail))],
        })
    }));
    let failed = trace.termination != crate::event::Termination::Exited || trace.exit_code != 0;
    // STATUS_CODE_ERROR = 2; UNSET = 0 (the spec leaves OK to the application).
    let status = if failed {
        json!({ "code": 2, "message": format!("{termination}, exit code {}", trace.exit_code) })
    } else {
        json!({ "code": 0 })
    };
    let mut resource = vec![attr("service.name", s(&config.service_name))];
    resource.extend(
        config
            .resource_attributes
            .iter()
            .filter(|(k, _)| k != "service.name")
            .map(|(k, v)| attr(k, s(v))),
    );
    json!({
        "resourceSpans": [{
            "resource": { "attributes": resource },
            "scopeSpans": [{
                "scope": { "name": "skillsandbox", "version": env!("CARGO_PKG_VERSION") },
                "spans": [{
                    "traceId": otel_trace_id(trace),
                    "spanId": otel_span_id(trace),
                    "name": "skillsandbox.run",
                    // SPAN_KIND_INTERNAL
                    "kind": 1,
                    "startTimeUnixNano": start,
                    "endTimeUnixNano": end,
                    "attributes": attributes,
                    "events": events,
                    "status": status,
                }]
            }]
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn off_without_endpoint_or_when_disabled() {
        assert_eq!(OtlpConfig::from_vars(vars(&[])).unwrap(), None);
        let on = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")];
        assert!(OtlpConfig::from_vars(vars(&on)).unwrap().is_some());
        let off = [on[0], ("OTEL_SDK_DISABLED", "true")];
        assert_eq!(OtlpConfig::from_vars(vars(&off)).unwrap(), None);
        let off = [on[0], ("OTEL_TRACES_EXPORTER", "none")];
        assert_eq!(OtlpConfig::from_vars(vars(&off)).unwrap(), None);
    }

    #[test]
    fn endpoint_headers_timeout_resolution() {
        let c = OtlpConfig::from_vars(vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=a%20b, x-tenant=t1"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "750"),
            ("OTEL_SERVICE_NAME", "agent-1"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(c.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(
            c.headers,
            vec![
                ("api-key".to_owned(), "a b".to_owned()),
                ("x-tenant".to_owned(), "t1".to_owned())
            ]
        );
        assert_eq!(c.timeout, Duration::from_millis(750));
        assert_eq!(c.service_name, "agent-1");
        // The signal-specific endpoint is used as is and wins.
        let c = OtlpConfig::from_vars(vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:9999/custom"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(c.endpoint, "http://b:9999/custom");
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
    }

    #[test]
    fn refuses_what_it_cannot_do() {
        for bad in [
            vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318")],
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ],
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "novalue"),
            ],
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "2s"),
            ],
        ] {
            assert!(OtlpConfig::from_vars(vars(&bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ids_are_valid_otlp_ids() {
        let mut t: Trace = serde_json::from_value(json!({
            "schema_version": 1, "trace_id": "3f6c9a54-2d0e-4b8e-9a51-8f0c1d2e3b4a",
            "run_id": "r1", "skill": {"name": "s", "version": "1.0.0"}, "command": [],
            "tier": "container", "started_at": "2026-01-01T00:00:00.000Z",
            "finished_at": "2026-01-01T00:00:01.500Z", "duration_ms": 1500, "exit_code": 0,
            "termination": "exited", "enforcement": [], "usage": {"cpu_user_ms": 0,
            "cpu_system_ms": 0, "stdout_bytes": 0, "stderr_bytes": 0,
            "stdout_truncated": false, "stderr_truncated": false}, "network": {}
        }))
        .unwrap();
        assert_eq!(otel_trace_id(&t), "3f6c9a542d0e4b8e9a518f0c1d2e3b4a");
        assert_eq!(otel_span_id(&t).len(), 16);
        t.trace_id = "not-a-uuid".into();
        assert_eq!(otel_trace_id(&t).len(), 32);
        assert_eq!(
            unix_nanos("2026-01-01T00:00:01.500Z").as_deref(),
            Some("1767225601500000000")
        );
    }
}
