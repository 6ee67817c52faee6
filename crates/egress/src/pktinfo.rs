//! UDP with the original destination: `recvmsg` reads `IP_PKTINFO` /
//! `IPV6_PKTINFO` (the resolver address the client asked), `sendmsg` answers from
//! that same address, so clients that check the reply's source accept it. Safe
//! wrappers over nix; the sockets are non-blocking.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
    SockaddrIn, SockaddrIn6, SockaddrStorage,
};

/// Turns on delivery of the original destination on a DNS socket (idempotent: the
/// sandbox side sets it too).
pub(crate) fn enable(sock: &UdpSocket) -> nix::Result<()> {
    match sock.local_addr().map_err(|_| nix::errno::Errno::EBADF)? {
        SocketAddr::V4(_) => setsockopt(sock, sockopt::Ipv4PacketInfo, &true),
        SocketAddr::V6(_) => setsockopt(sock, sockopt::Ipv6RecvPacketInfo, &true),
    }
}

/// One datagram: its length, its sender, and the address it was sent to.
pub(crate) fn recv_with_dst(
    sock: &impl AsRawFd,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<IpAddr>)> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo);
    let msg = recvmsg::<SockaddrStorage>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)?;
    let len = msg.bytes;
    let src = msg
        .address
        .and_then(|a| {
            a.as_sockaddr_in()
                .map(|v4| SocketAddr::from((v4.ip(), v4.port())))
                .or_else(|| {
                    a.as_sockaddr_in6()
                        .map(|v6| SocketAddr::from((v6.ip(), v6.port())))
                })
        })
        .ok_or_else(|| io::Error::other("datagram without a sender address"))?;
    let mut dst = None;
    for c in msg.cmsgs().map_err(io::Error::from)? {
        match c {
            ControlMessageOwned::Ipv4PacketInfo(info) => {
                dst = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    info.ipi_addr.s_addr,
                ))));
            }
            ControlMessageOwned::Ipv6PacketInfo(info) => {
                dst = Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
            }
            _ => {}
        }
    }
    Ok((len, src, dst))
}

/// Sends `data` to `to`, from `from` when known.
pub(crate) fn send_from(
    sock: &impl AsRawFd,
    data: &[u8],
    to: SocketAddr,
    from: Option<IpAddr>,
) -> io::Result<()> {
    let iov = [IoSlice::new(data)];
    let fd = sock.as_raw_fd();
    let flags = MsgFlags::MSG_DONTWAIT;
    let sent = match (to, from) {
        (SocketAddr::V4(to), Some(IpAddr::V4(src))) => {
            let info = libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from(src).to_be(),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            let cmsg = [ControlMessage::Ipv4PacketInfo(&info)];
            sendmsg(fd, &iov, &cmsg, flags, Some(&SockaddrIn::from(to)))
        }
        (SocketAddr::V6(to), Some(IpAddr::V6(src))) => {
            let info = libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: src.octets(),
                },
                ipi6_ifindex: 0,
            };
            let cmsg = [ControlMessage::Ipv6PacketInfo(&info)];
            sendmsg(fd, &iov, &cmsg, flags, Some(&SockaddrIn6::from(to)))
        }
        (SocketAddr::V4(to), _) => sendmsg(fd, &iov, &[], flags, Some(&SockaddrIn::from(to))),
        (SocketAddr::V6(to), _) => sendmsg(fd, &iov, &[], flags, Some(&SockaddrIn6::from(to))),
    };
    sent.map(|_| ()).map_err(io::Error::from)
}
