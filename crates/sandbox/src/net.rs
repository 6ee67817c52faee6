//! Network setup inside the sandbox's own network namespace (DESIGN.md §3 step 3, §4).
//!
//! Owns: bringing `lo` up, the two "everything is local" routes (`local 0.0.0.0/0 dev lo`
//! and `local ::/0 dev lo` in table `local`), and the listening sockets the egress
//! service later serves from the host side (DNS on UDP/TCP 53, one TCP listener per
//! declared port). With those routes every IPv4/IPv6 destination is an address of the
//! namespace itself: nothing can leave it, a listener on `[::]:PORT` accepts connections
//! to *any* address on that port (`getsockname` on the accepted socket is the
//! destination the skill asked for), and a port nobody listens on answers with an
//! immediate `ECONNREFUSED`.
//!
//! Runs in the forked child: blocking code only, no tokio, and never an `ip` binary —
//! routes and link state are set with rtnetlink messages whose ACKs are checked.
//! Never call it in a process whose network namespace is shared with the host: it would
//! take over the host's routing.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::link::{LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::{Socket, SocketAddr};
use nix::sys::socket::{
    bind, listen, setsockopt, socket, sockopt, AddressFamily as SockFamily, Backlog, SockFlag,
    SockType, SockaddrIn, SockaddrIn6,
};

/// The kernel's `local` routing table (`RT_TABLE_LOCAL`).
const RT_TABLE_LOCAL: u8 = 255;
/// DNS, served by the egress service on UDP and TCP.
pub const DNS_PORT: u16 = 53;
/// Accept queue for each listener: a burst of parallel connects must not be dropped.
const LISTEN_BACKLOG: i32 = 1024;

/// A failed network setup step. Every variant names the operation; netlink refusals
/// carry the kernel's errno.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("opening a NETLINK_ROUTE socket failed: {source}; the sandbox needs its own network namespace with CAP_NET_ADMIN in it (user namespaces enabled)")]
    NetlinkSocket { source: io::Error },
    #[error("sending the netlink request to {what} failed: {source}")]
    NetlinkSend {
        what: &'static str,
        source: io::Error,
    },
    #[error("reading the kernel's answer to {what} failed: {source}")]
    NetlinkReceive {
        what: &'static str,
        source: io::Error,
    },
    #[error("the kernel refused to {what}: {source}; is this a fresh network namespace owned by the sandbox's user namespace?")]
    NetlinkRefused {
        what: &'static str,
        source: io::Error,
    },
    #[error("the kernel's answer to {what} could not be decoded: {detail}")]
    NetlinkDecode { what: &'static str, detail: String },
    #[error("looking up the index of interface lo failed: {source}")]
    LoopbackIndex { source: nix::Error },
    #[error("port 0 cannot be declared for egress: every listener needs a fixed port")]
    InvalidPort,
    #[error("socket({what}) failed: {source}")]
    Socket {
        what: &'static str,
        source: nix::Error,
    },
    #[error("setsockopt({option}) on the {what} socket failed: {source}")]
    SetSockOpt {
        what: &'static str,
        option: &'static str,
        source: nix::Error,
    },
    #[error("bind({addr}) failed: {source}; something else in the sandbox's network namespace already uses this port")]
    Bind { addr: String, source: nix::Error },
    #[error("listen() on {addr} failed: {source}")]
    Listen { addr: String, source: nix::Error },
}

/// Brings `lo` up and installs `local 0.0.0.0/0 dev lo` and `local ::/0 dev lo` (table
/// `local`, scope host): afterwards every address is local to this namespace.
pub fn setup_loopback_and_local_routes() -> Result<(), NetError> {
    let mut nl = Netlink::open()?;
    let lo = loopback_index()?;
    nl.request(link_up(lo), "bring interface lo up")?;
    nl.request(
        local_route(AddressFamily::Inet, lo),
        "add the route local 0.0.0.0/0 dev lo",
    )?;
    nl.request(
        local_route(AddressFamily::Inet6, lo),
        "add the route local ::/0 dev lo",
    )?;
    Ok(())
}

/// Brings `lo` up and nothing else: no route leads anywhere, so every connect to a
/// non-loopback address fails at once with `ENETUNREACH` (no egress declared).
pub fn setup_loopback_only() -> Result<(), NetError> {
    let mut nl = Netlink::open()?;
    let lo = loopback_index()?;
    nl.request(link_up(lo), "bring interface lo up")
}

/// The listening sockets created inside the sandbox namespace and served from the
/// host side. All are non-blocking and close-on-exec.
#[derive(Debug)]
pub struct EgressSockets {
    /// UDP `0.0.0.0:53` with `IP_PKTINFO` (the original destination of each query).
    pub dns_udp4: OwnedFd,
    /// UDP `[::]:53`, `IPV6_V6ONLY`, with `IPV6_RECVPKTINFO`.
    pub dns_udp6: OwnedFd,
    /// TCP `[::]:53`, dual-stack.
    pub dns_tcp: OwnedFd,
    /// TCP `[::]:PORT`, dual-stack, one per declared port (sorted, de-duplicated; port
    /// 53 is served by `dns_tcp` and never appears here).
    pub tcp: Vec<(u16, OwnedFd)>,
}

/// Creates the DNS sockets and one dual-stack TCP listener per port in `ports`.
/// Call after [`setup_loopback_and_local_routes`], in the sandbox's namespace: the
/// sockets stay in that namespace wherever their descriptors are passed.
pub fn create_egress_sockets(ports: &[u16]) -> Result<EgressSockets, NetError> {
    if ports.contains(&0) {
        return Err(NetError::InvalidPort);
    }
    let mut ports: Vec<u16> = ports.iter().copied().filter(|p| *p != DNS_PORT).collect();
    ports.sort_unstable();
    ports.dedup();

    let dns_udp4 = dns_udp4_socket()?;
    let dns_udp6 = dns_udp6_socket()?;
    let dns_tcp = tcp_listener(DNS_PORT)?;
    let tcp = ports
        .into_iter()
        .map(|port| Ok((port, tcp_listener(port)?)))
        .collect::<Result<Vec<_>, NetError>>()?;
    Ok(EgressSockets {
        dns_udp4,
        dns_udp6,
        dns_tcp,
        tcp,
    })
}

fn loopback_index() -> Result<u32, NetError> {
    nix::net::if_::if_nametoindex("lo").map_err(|source| NetError::LoopbackIndex { source })
}

/// `ip link set lo up`.
fn link_up(index: u32) -> (RouteNetlinkMessage, u16) {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.header.flags = LinkFlags::Up;
    msg.header.change_mask = LinkFlags::Up;
    (RouteNetlinkMessage::SetLink(msg), 0)
}

/// `ip [-6] route add local <any>/0 dev lo table local`.
fn local_route(family: AddressFamily, lo: u32) -> (RouteNetlinkMessage, u16) {
    let mut msg = RouteMessage::default();
    msg.header.address_family = family;
    msg.header.destination_prefix_length = 0;
    msg.header.table = RT_TABLE_LOCAL;
    msg.header.protocol = RouteProtocol::Boot;
    msg.header.scope = RouteScope::Host;
    msg.header.kind = RouteType::Local;
    msg.attributes = vec![
        RouteAttribute::Table(u32::from(RT_TABLE_LOCAL)),
        RouteAttribute::Oif(lo),
    ];
    (
        RouteNetlinkMessage::NewRoute(msg),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}

/// A NETLINK_ROUTE socket connected to the kernel; every request waits for its ACK.
struct Netlink {
    socket: Socket,
    seq: u32,
}

impl Netlink {
    fn open() -> Result<Self, NetError> {
        let mut socket =
            Socket::new(NETLINK_ROUTE).map_err(|source| NetError::NetlinkSocket { source })?;
        socket
            .bind_auto()
            .map_err(|source| NetError::NetlinkSocket { source })?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|source| NetError::NetlinkSocket { source })?;
        Ok(Netlink { socket, seq: 0 })
    }

    /// Sends one request with `NLM_F_ACK` and returns once the kernel acknowledged it;
    /// a negative ACK becomes [`NetError::NetlinkRefused`] with the kernel's errno.
    fn request(
        &mut self,
        (msg, extra_flags): (RouteNetlinkMessage, u16),
        what: &'static str,
    ) -> Result<(), NetError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | extra_flags;
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket
            .send(&buf, 0)
            .map_err(|source| NetError::NetlinkSend { what, source })?;

        // rtnetlink answers synchronously: the ACK is queued before send() returns.
        // Loop anyway in case unrelated messages arrive first.
        loop {
            let mut reply: Vec<u8> = Vec::with_capacity(8192);
            self.socket
                .recv(&mut reply, 0)
                .map_err(|source| NetError::NetlinkReceive { what, source })?;
            let mut offset = 0;
            while offset < reply.len() {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply[offset..])
                    .map_err(|e| NetError::NetlinkDecode {
                        what,
                        detail: e.to_string(),
                    })?;
                let len = msg.header.length as usize;
                if len == 0 {
                    return Err(NetError::NetlinkDecode {
                        what,
                        detail: "zero-length message".into(),
                    });
                }
                if msg.header.sequence_number == seq {
                    if let NetlinkPayload::Error(err) = msg.payload {
                        return match err.code {
                            None => Ok(()),
                            Some(code) => Err(NetError::NetlinkRefused {
                                what,
                                source: io::Error::from_raw_os_error(-code.get()),
                            }),
                        };
                    }
                }
                // Messages are 4-byte aligned inside one datagram.
                offset += (len + 3) & !3;
            }
        }
    }
}

fn dns_udp4_socket() -> Result<OwnedFd, NetError> {
    const WHAT: &str = "DNS UDP/IPv4";
    let fd = new_socket(SockFamily::Inet, SockType::Datagram, WHAT)?;
    setsockopt(&fd, sockopt::Ipv4PacketInfo, &true).map_err(|source| NetError::SetSockOpt {
        what: WHAT,
        option: "IP_PKTINFO",
        source,
    })?;
    let addr = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, DNS_PORT);
    bind(fd.as_raw_fd(), &SockaddrIn::from(addr)).map_err(|source| NetError::Bind {
        addr: addr.to_string(),
        source,
    })?;
    Ok(fd)
}

fn dns_udp6_socket() -> Result<OwnedFd, NetError> {
    const WHAT: &str = "DNS UDP/IPv6";
    let fd = new_socket(SockFamily::Inet6, SockType::Datagram, WHAT)?;
    setsockopt(&fd, sockopt::Ipv6V6Only, &true).map_err(|source| NetError::SetSockOpt {
        what: WHAT,
        option: "IPV6_V6ONLY",
        source,
    })?;
    setsockopt(&fd, sockopt::Ipv6RecvPacketInfo, &true).map_err(|source| NetError::SetSockOpt {
        what: WHAT,
        option: "IPV6_RECVPKTINFO",
        source,
    })?;
    // Replies go out from the resolver address the skill asked (IPV6_PKTINFO); IPv6
    // accepts that source only with freebind, even though `local ::/0` routes it here.
    crate::sys::set_ipv6_freebind(fd.as_fd()).map_err(|e| NetError::SetSockOpt {
        what: WHAT,
        option: "IPV6_FREEBIND",
        source: e
            .source
            .raw_os_error()
            .map_or(nix::Error::UnknownErrno, nix::Error::from_raw),
    })?;
    let addr = SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, DNS_PORT, 0, 0);
    bind(fd.as_raw_fd(), &SockaddrIn6::from(addr)).map_err(|source| NetError::Bind {
        addr: addr.to_string(),
        source,
    })?;
    Ok(fd)
}

/// A dual-stack listener on `[::]:port`: IPv4 clients arrive as `::ffff:a.b.c.d`.
fn tcp_listener(port: u16) -> Result<OwnedFd, NetError> {
    const WHAT: &str = "TCP listener";
    let fd = new_socket(SockFamily::Inet6, SockType::Stream, WHAT)?;
    setsockopt(&fd, sockopt::Ipv6V6Only, &false).map_err(|source| NetError::SetSockOpt {
        what: WHAT,
        option: "IPV6_V6ONLY=0",
        source,
    })?;
    let addr = SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0);
    bind(fd.as_raw_fd(), &SockaddrIn6::from(addr)).map_err(|source| NetError::Bind {
        addr: addr.to_string(),
        source,
    })?;
    let backlog = Backlog::new(LISTEN_BACKLOG).unwrap_or(Backlog::MAXCONN);
    listen(&fd, backlog).map_err(|source| NetError::Listen {
        addr: addr.to_string(),
        source,
    })?;
    Ok(fd)
}

fn new_socket(family: SockFamily, kind: SockType, what: &'static str) -> Result<OwnedFd, NetError> {
    socket(
        family,
        kind,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|source| NetError::Socket { what, source })
}

#[cfg(test)]
#[path = "sys_net.rs"]
mod sys_net;
#[cfg(test)]
#[path = "net_tests.rs"]
mod tests;
