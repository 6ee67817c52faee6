//! Entry points for the fuzz targets (`crates/fuzz`): the egress parsers that read
//! bytes a sandboxed skill controls, behind a narrow public surface. Not an API for
//! anything else; it owns no state and decides nothing the service does not.

use std::sync::Mutex;

use skillsandbox_manifest::NetworkPolicy;

use crate::dns::{answer, DnsContext};
use crate::record::Recorder;
use crate::sniff::{check_name, normalize_authority, sniff, Sniff};
use crate::synthetic::SyntheticPool;
use crate::{DEFAULT_SYNTHETIC_V4, DEFAULT_SYNTHETIC_V6};

/// The DNS responder's reply to one query packet under `network` (a fresh pool and
/// recorder each call), or `None` when it drops the packet.
pub fn dns_reply(packet: &[u8], network: &NetworkPolicy) -> Option<Vec<u8>> {
    let pool = Mutex::new(SyntheticPool::new(
        DEFAULT_SYNTHETIC_V4,
        DEFAULT_SYNTHETIC_V6,
    ));
    let recorder = Recorder::default();
    answer(
        packet,
        &DnsContext {
            secrets: &[],
            network,
            pool: &pool,
            recorder: &recorder,
        },
    )
}

/// What the first bytes of a connection name, as the relay's check sees them: the
/// names found (TLS SNI, HTTP authorities) and whether `name` on `port` passes.
pub fn sniff_names(buf: &[u8], name: &str, port: u16) -> (Vec<String>, bool) {
    let s = sniff(buf);
    let names = match &s {
        Sniff::Tls { sni } => sni.iter().cloned().collect(),
        Sniff::Http { names, .. } => names.clone(),
        _ => Vec::new(),
    };
    let passes = matches!(
        check_name(&s, name, port, false),
        crate::sniff::NameCheck::Allow(_)
    );
    (names, passes)
}

/// The authority normaliser the checks compare with.
pub fn normalize(host: &str) -> String {
    normalize_authority(host)
}
