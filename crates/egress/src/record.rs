//! Everything the egress service decided, kept until [`crate::EgressHandle::finish`]:
//! DNS records, connection records (live relays carry byte counters that are read at
//! the end), and violations with severity and MITRE ATT&CK technique where one
//! clearly fits. Bounded: past [`MAX_RECORDS`] per list, records are counted as
//! dropped instead of kept.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use skillsandbox_audit::{
    now, violation, ConnectionDecision, ConnectionRecord, DnsRecord, Mitre, Severity, Violation,
    ViolationKind,
};

use crate::EgressReport;

/// Upper bound per list, so a skill that loops on lookups cannot exhaust memory.
pub(crate) const MAX_RECORDS: usize = 10_000;

/// Byte counters of one relay, updated while it runs.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) bytes_out: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
}

#[derive(Debug)]
enum Slot {
    Done(ConnectionRecord),
    Live(ConnectionRecord, Arc<Counters>),
}

#[derive(Debug, Default)]
struct Inner {
    dns: Vec<DnsRecord>,
    connections: Vec<Slot>,
    violations: Vec<Violation>,
    /// (name, qtype) pairs already reported: resolvers retry and ask A and AAAA, one
    /// violation per distinct question is enough (every query still gets a DnsRecord).
    dns_reported: HashSet<(String, String)>,
    dropped: u64,
    finished: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Recorder {
    inner: Mutex<Inner>,
}

/// Index of a live relay's slot.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LiveId(Option<usize>);

pub(crate) fn mitre(tactic: &str, id: &str, technique: &str) -> Mitre {
    Mitre {
        tactic: tactic.into(),
        technique_id: id.into(),
        technique: technique.into(),
    }
}

/// Whether a looked-up name looks like it carries data (long or many labels): DNS
/// tunnelling / exfiltration rather than an ordinary lookup.
pub(crate) fn looks_like_dns_exfiltration(name: &str, qtype: &str) -> bool {
    let longest = name.split('.').map(str::len).max().unwrap_or(0);
    longest >= 32 || name.len() >= 100 || matches!(qtype, "TXT" | "NULL")
}

impl Recorder {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the lists inconsistent (every
        // update is a single push or assignment), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn dns(&self, record: DnsRecord) {
        let mut inner = self.lock();
        if inner.finished {
            return;
        }
        if inner.dns.len() >= MAX_RECORDS {
            inner.dropped += 1;
        } else {
            inner.dns.push(record);
        }
    }

    fn push_violation(inner: &mut Inner, v: Violation) {
        if inner.violations.len() >= MAX_RECORDS {
            inner.dropped += 1;
        } else {
            inner.violations.push(v);
        }
    }

    /// A violation with no connection record of its own.
    pub(crate) fn violation(&self, kind: ViolationKind, detail: String) {
        let mut inner = self.lock();
        if !inner.finished {
            Self::push_violation(
                &mut inner,
                violation(kind, Severity::Critical, detail, None),
            );
        }
    }

    /// A query for an undeclared name (or one we could not answer), once per
    /// distinct (name, qtype).
    pub(crate) fn dns_blocked(&self, name: &str, qtype: &str, why: &str) {
        let mut inner = self.lock();
        if inner.finished
            || !inner
                .dns_reported
                .insert((name.to_owned(), qtype.to_owned()))
        {
            return;
        }
        let (severity, mitre) = if looks_like_dns_exfiltration(name, qtype) {
            (
                Severity::High,
                Some(mitre(
                    "Exfiltration",
                    "T1048.003",
                    "Exfiltration Over Alternative Protocol: Exfiltration Over Unencrypted Non-C2 Protocol",
                )),
            )
        } else {
            (Severity::Medium, None)
        };
        let detail = format!("DNS {qtype} query for {name}: {why}");
        Self::push_violation(
            &mut inner,
            violation(ViolationKind::DnsBlocked, severity, detail, mitre),
        );
    }

    /// A finished decision (blocked, or allowed without a relay).
    pub(crate) fn connection(&self, record: ConnectionRecord) {
        let mut inner = self.lock();
        if inner.finished {
            return;
        }
        if inner.connections.len() >= MAX_RECORDS {
            inner.dropped += 1;
        } else {
            inner.connections.push(Slot::Done(record));
        }
    }

    /// A blocked connection and its violation. `mitre` overrides the default
    /// technique for `kind`, when the producer knows better.
    pub(crate) fn blocked(
        &self,
        record: ConnectionRecord,
        kind: ViolationKind,
        detail: String,
        mitre: Option<Mitre>,
    ) {
        let severity = match kind {
            ViolationKind::DomainMismatch => Severity::Critical,
            _ => Severity::High,
        };
        self.connection(record);
        let mut inner = self.lock();
        if !inner.finished {
            Self::push_violation(&mut inner, violation(kind, severity, detail, mitre));
        }
    }

    /// Registers a relay about to start; its bytes are read from `counters` when it
    /// ends or when the service finishes, whichever comes first.
    pub(crate) fn begin_relay(&self, record: ConnectionRecord, counters: Arc<Counters>) -> LiveId {
        let mut inner = self.lock();
        if inner.finished {
            return LiveId(None);
        }
        if inner.connections.len() >= MAX_RECORDS {
            inner.dropped += 1;
            return LiveId(None);
        }
        inner.connections.push(Slot::Live(record, counters));
        LiveId(Some(inner.connections.len() - 1))
    }

    pub(crate) fn end_relay(&self, id: LiveId) {
        let Some(index) = id.0 else { return };
        let mut inner = self.lock();
        if let Some(slot) = inner.connections.get_mut(index) {
            if let Slot::Live(record, counters) = slot {
                let record = settle(record, counters);
                *slot = Slot::Done(record);
            }
        }
    }

    pub(crate) fn bytes(&self) -> (u64, u64) {
        let inner = self.lock();
        inner
            .connections
            .iter()
            .map(|slot| match slot {
                Slot::Done(r) => (r.bytes_out, r.bytes_in),
                Slot::Live(_, c) => (
                    c.bytes_out.load(Ordering::Relaxed),
                    c.bytes_in.load(Ordering::Relaxed),
                ),
            })
            .fold((0, 0), |(o, i), (a, b)| (o + a, i + b))
    }

    /// Freezes the record and returns it; later updates are ignored.
    pub(crate) fn finish(&self) -> EgressReport {
        let mut inner = self.lock();
        inner.finished = true;
        let connections = std::mem::take(&mut inner.connections)
            .into_iter()
            .map(|slot| match slot {
                Slot::Done(r) => r,
                Slot::Live(r, c) => settle(&r, &c),
            })
            .collect();
        EgressReport {
            dns: std::mem::take(&mut inner.dns),
            connections,
            violations: std::mem::take(&mut inner.violations),
            records_dropped: inner.dropped,
        }
    }
}

fn settle(record: &ConnectionRecord, counters: &Counters) -> ConnectionRecord {
    ConnectionRecord {
        bytes_out: counters.bytes_out.load(Ordering::Relaxed),
        bytes_in: counters.bytes_in.load(Ordering::Relaxed),
        ..record.clone()
    }
}

/// A connection record stamped now, with no bytes yet.
pub(crate) fn connection_record(
    name: Option<&str>,
    dest: std::net::IpAddr,
    port: u16,
    real_addr: Option<String>,
    decision: ConnectionDecision,
    reason: impl Into<String>,
) -> ConnectionRecord {
    ConnectionRecord {
        time: now(),
        name: name.map(str::to_owned),
        dest: dest.to_string(),
        port,
        real_addr,
        decision,
        reason: reason.into(),
        bytes_out: 0,
        bytes_in: 0,
    }
}
