//! The process tier's socket filter: a second seccomp filter that leaves the skill
//! only the socket kinds Landlock can police.
//!
//! Landlock (ABI 4+) restricts TCP `connect`/`bind` by port; it has no say over UDP,
//! raw or SCTP sockets, or other address families, and before ABI 9 none over
//! `connect` to pathname unix sockets (the invoker's D-Bus session or ssh-agent, a
//! root-owned docker socket). Without a network namespace those would leave the
//! sandbox, so `socket(2)` refuses them here: allowed are IPv4/IPv6 TCP (protocol 0
//! or 6), netlink (read-only for an unprivileged process), unix sockets only when
//! Landlock controls their connects, and UDP only in a degraded run with declared
//! egress. `socketpair(2)` is untouched (anonymous unix pairs reach nobody). While
//! unix sockets are refused, so is `listen(2)`: Landlock polices `bind`, but `listen`
//! on an unbound TCP socket binds an ephemeral port without asking it.
//!
//! The filter answers with `EPERM` itself (its refusals are not observed in the trace;
//! the main profile's are). It is separate from the main profile so that the main
//! filter's tables stay the same on both tiers.

use libseccomp::{ScmpAction, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};

use crate::proto::LayerNote;
use crate::stage::StageError;

const AF_UNIX: u64 = 1;
const AF_INET: u64 = 2;
const AF_INET6: u64 = 10;
const AF_NETLINK: u64 = 16;
const SOCK_STREAM: u64 = 1;
const SOCK_DGRAM: u64 = 2;
/// Every other socket type the kernel knows (raw, rdm, seqpacket, dccp, packet).
const OTHER_TYPES: &[u64] = &[3, 4, 5, 6, 10];
const LOW32: u64 = 0xffff_ffff;

/// One refusal of `socket(2)`: all comparisons must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketRule {
    /// `(argument, comparison)`.
    pub when: Vec<(u32, SocketCmp)>,
}

/// A comparison of one `socket(2)` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketCmp {
    /// `arg & mask == value`.
    MaskedEq { mask: u64, value: u64 },
    /// `arg > value` on all 64 bits: garbage in the upper half (which the kernel
    /// ignores for an `int`) only makes a call more likely to be refused.
    Greater(u64),
}

fn eq32(arg: u32, value: u64) -> (u32, SocketCmp) {
    (arg, SocketCmp::MaskedEq { mask: LOW32, value })
}

/// The refusals for a run: pure, so the exact list is tested.
pub fn socket_filter_rules(allow_unix: bool, allow_udp: bool) -> Vec<SocketRule> {
    let mut allowed = vec![AF_INET, AF_INET6, AF_NETLINK];
    if allow_unix {
        allowed.push(AF_UNIX);
    }
    let mut rules: Vec<SocketRule> = (0..=AF_NETLINK)
        .filter(|f| !allowed.contains(f))
        .map(|f| SocketRule {
            when: vec![eq32(0, f)],
        })
        .collect();
    rules.push(SocketRule {
        when: vec![(0, SocketCmp::Greater(AF_NETLINK))],
    });
    for family in [AF_INET, AF_INET6] {
        let mut types: Vec<u64> = OTHER_TYPES.to_vec();
        if !allow_udp {
            types.insert(0, SOCK_DGRAM);
        }
        for t in types {
            rules.push(SocketRule {
                when: vec![
                    eq32(0, family),
                    (
                        1,
                        SocketCmp::MaskedEq {
                            mask: 0xf,
                            value: t,
                        },
                    ),
                ],
            });
        }
        // TCP only as protocol 0 or IPPROTO_TCP (6): not SCTP, MPTCP or others.
        let stream = (
            1,
            SocketCmp::MaskedEq {
                mask: 0xf,
                value: SOCK_STREAM,
            },
        );
        rules.push(SocketRule {
            when: vec![eq32(0, family), stream, (2, SocketCmp::Greater(6))],
        });
        for proto in 1..=5 {
            rules.push(SocketRule {
                when: vec![eq32(0, family), stream, eq32(2, proto)],
            });
        }
    }
    rules
}

/// One line for the enforcement report.
pub fn describe(allow_unix: bool, allow_udp: bool) -> String {
    let mut kinds = vec!["IPv4/IPv6 TCP", "netlink"];
    if allow_unix {
        kinds.push("unix (connects policed by Landlock)");
    }
    if allow_udp {
        kinds.push("UDP (unfiltered: degraded run)");
    }
    let mut s = format!("socket() allows only {}", kinds.join(", "));
    if !allow_unix {
        s.push_str(
            "; unix sockets refused (Landlock ABI < 9 cannot police pathname connects); \
             listen() refused (an unbound TCP socket would autobind past Landlock)",
        );
    }
    s
}

/// Installs the socket filter on the calling thread. `no_new_privs` must be set.
pub(crate) fn apply_socket_filter(
    allow_unix: bool,
    allow_udp: bool,
) -> Result<LayerNote, StageError> {
    let err = |what: &str, e: libseccomp::error::SeccompError| {
        StageError::new("socket filter", format!("{what}: {e}"))
    };
    let mut ctx = ScmpFilterContext::new(ScmpAction::Allow).map_err(|e| err("seccomp_init", e))?;
    let socket = ScmpSyscall::from_name("socket").map_err(|e| err("resolve socket", e))?;
    let rules = socket_filter_rules(allow_unix, allow_udp);
    for r in &rules {
        let cmps: Vec<ScmpArgCompare> = r
            .when
            .iter()
            .map(|(arg, c)| match *c {
                SocketCmp::MaskedEq { mask, value } => {
                    ScmpArgCompare::new(*arg, ScmpCompareOp::MaskedEqual(mask), value)
                }
                SocketCmp::Greater(v) => ScmpArgCompare::new(*arg, ScmpCompareOp::Greater, v),
            })
            .collect();
        ctx.add_rule_conditional(ScmpAction::Errno(libc::EPERM), socket, &cmps)
            .map_err(|e| err("add rule", e))?;
    }
    if !allow_unix {
        // Only TCP and netlink sockets exist then; neither needs to listen.
        let listen = ScmpSyscall::from_name("listen").map_err(|e| err("resolve listen", e))?;
        ctx.add_rule(ScmpAction::Errno(libc::EPERM), listen)
            .map_err(|e| err("add rule", e))?;
    }
    ctx.load().map_err(|e| err("load", e))?;
    Ok(LayerNote {
        layer: "sockets".into(),
        status: "enforced".into(),
        detail: format!(
            "{}; {} filter rules",
            describe(allow_unix, allow_udp),
            rules.len()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the filter does with `socket(a0, a1, a2)`: true = refused.
    fn refused(rules: &[SocketRule], args: [u64; 3]) -> bool {
        rules.iter().any(|r| {
            r.when.iter().all(|(arg, c)| {
                let x = args[*arg as usize];
                match *c {
                    SocketCmp::MaskedEq { mask, value } => x & mask == value,
                    SocketCmp::Greater(v) => x > v,
                }
            })
        })
    }

    #[test]
    fn only_tcp_netlink_and_optionally_unix_udp_pass() {
        let strict = socket_filter_rules(false, false);
        const NONBLOCK_CLOEXEC: u64 = 0x800 | 0x80000;
        for ok in [
            [AF_INET, SOCK_STREAM, 0],
            [AF_INET6, SOCK_STREAM | NONBLOCK_CLOEXEC, 6],
            [AF_NETLINK, 3, 0],
        ] {
            assert!(!refused(&strict, ok), "{ok:?}");
        }
        for bad in [
            [AF_UNIX, SOCK_STREAM, 0],
            [AF_INET, SOCK_DGRAM, 0],
            [AF_INET6, SOCK_DGRAM | NONBLOCK_CLOEXEC, 17],
            [AF_INET, 3, 1],                 // raw ICMP
            [AF_INET, SOCK_STREAM, 132],     // SCTP
            [AF_INET, SOCK_STREAM, 262],     // MPTCP
            [AF_INET, 5, 0],                 // seqpacket
            [17, 3, 0],                      // AF_PACKET
            [40, 1, 0],                      // AF_VSOCK
            [0x1_0000_0002, SOCK_STREAM, 0], // upper-half garbage: refused, not waved through
        ] {
            assert!(refused(&strict, bad), "{bad:?}");
        }
        let open = socket_filter_rules(true, true);
        assert!(!refused(&open, [AF_UNIX, SOCK_STREAM, 0]));
        assert!(!refused(&open, [AF_INET, SOCK_DGRAM, 0]));
        assert!(refused(&open, [AF_INET, 3, 1]));
        assert_eq!(strict.len(), open.len() + 3);
    }
}
