//! The control channel between the supervisor and the child stages: a
//! `SOCK_SEQPACKET` socketpair carrying one JSON message per packet, with file
//! descriptors attached by `SCM_RIGHTS` where a message hands sockets over.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::sys::socket::{self, ControlMessage, ControlMessageOwned, MsgFlags};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::plan::LaunchPlan;

/// The child's end of the channel is always this fd in the stage process.
pub const CHILD_CONTROL_FD: RawFd = 3;
/// Largest message we accept (the plan is the biggest: a few KiB).
const MAX_MSG: usize = 1 << 20;
const MAX_FDS: usize = 64;

/// Supervisor → child.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub enum ToChild {
    Plan(Box<LaunchPlan>),
    /// uid/gid maps are written; the stage may continue.
    Mapped,
    /// The supervisor accepts the layers the skill reported: `execve` now.
    Go,
}

/// What one confinement layer in the skill process ended up as.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayerNote {
    pub layer: String,
    /// "enforced" | "partial" | "unavailable"
    pub status: String,
    pub detail: String,
}

/// Child → supervisor.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub enum FromChild {
    /// The stage has unshared its namespaces and waits for uid/gid maps.
    Unshared { pid: i32 },
    /// Egress listening sockets (fds attached, in the order: dns_udp4, dns_udp6,
    /// dns_tcp, then one per port).
    EgressSockets { ports: Vec<u16> },
    /// The seccomp user-notification fd (attached).
    SeccompNotify,
    /// [`crate::plan::LaunchPlan::terminal`]: the master end of the skill's terminal
    /// (attached), and the terminal's path inside.
    Terminal { name: String },
    /// The skill process applied every layer and is about to `execve`; `marks` are
    /// the stage-side launch phases ([`crate::timing`]).
    Ready {
        layers: Vec<LayerNote>,
        #[serde(default)]
        marks: Vec<crate::timing::Mark>,
    },
    /// A setup step failed; the skill never ran.
    Failed {
        step: String,
        message: String,
        hint: Option<String>,
        exit_code: i32,
    },
    /// The skill process ended: its exit code, or the signal that killed it.
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("control channel: {call} => {source}")]
    Sys {
        call: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("control channel: malformed message: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("control channel: closed by the other side")]
    Closed,
}

/// A connected `SOCK_SEQPACKET` pair, both ends close-on-exec.
pub fn control_pair() -> Result<(OwnedFd, OwnedFd), ProtoError> {
    socket::socketpair(
        socket::AddressFamily::Unix,
        socket::SockType::SeqPacket,
        None,
        socket::SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|source| ProtoError::Sys {
        call: "socketpair(AF_UNIX, SOCK_SEQPACKET)",
        source,
    })
}

/// Send one message with optional attached fds.
pub fn send<T: Serialize>(fd: BorrowedFd<'_>, msg: &T, fds: &[RawFd]) -> Result<(), ProtoError> {
    let bytes = serde_json::to_vec(msg)?;
    let iov = [IoSlice::new(&bytes)];
    let cmsgs: Vec<ControlMessage<'_>> = if fds.is_empty() {
        vec![]
    } else {
        vec![ControlMessage::ScmRights(fds)]
    };
    loop {
        match socket::sendmsg::<()>(fd.as_raw_fd(), &iov, &cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(_) => return Ok(()),
            Err(nix::Error::EINTR) => continue,
            Err(nix::Error::EPIPE) | Err(nix::Error::ECONNRESET) => return Err(ProtoError::Closed),
            Err(source) => {
                return Err(ProtoError::Sys {
                    call: "sendmsg",
                    source,
                })
            }
        }
    }
}

/// Receive one message and the fds attached to it (owned, close-on-exec).
pub fn recv<T: DeserializeOwned>(fd: BorrowedFd<'_>) -> Result<(T, Vec<OwnedFd>), ProtoError> {
    let mut buf = vec![0u8; MAX_MSG];
    let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (len, fds) = loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        match socket::recvmsg::<()>(
            fd.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(m) => {
                let mut fds = Vec::new();
                if let Ok(iter) = m.cmsgs() {
                    for c in iter {
                        if let ControlMessageOwned::ScmRights(raw) = c {
                            for r in raw {
                                fds.push(crate::sys::adopt_received_fd(r));
                            }
                        }
                    }
                }
                break (m.bytes, fds);
            }
            Err(nix::Error::EINTR) => continue,
            Err(source) => {
                return Err(ProtoError::Sys {
                    call: "recvmsg",
                    source,
                })
            }
        }
    };
    if len == 0 {
        return Err(ProtoError::Closed);
    }
    let msg = serde_json::from_slice(&buf[..len])?;
    Ok((msg, fds))
}
