//! Tests for `net`: each scenario re-executes this test binary as a single-threaded
//! child (the harness itself is multi-threaded, and `unshare(CLONE_NEWUSER)` refuses
//! multi-threaded callers), which enters fresh user + network namespaces, runs the
//! setup and reports through its exit code. The harness process never changes
//! namespaces.

use std::io::ErrorKind;
use std::io::IoSliceMut;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sched::{unshare, CloneFlags};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrStorage};

use super::sys_net::run_in_forked_child;
use super::*;

/// Set in the re-executed child; names the scenario to run.
const CHILD_ENV: &str = "SKILLSANDBOX_NET_TEST_CHILD";
/// Exit code of a child that could not create the namespaces (feature missing).
const EXIT_UNSUPPORTED: i32 = 77;

/// Runs `scenario` in a re-executed child inside new user + network namespaces.
/// Called by the test named `test_name`, which the child re-enters.
fn run_in_netns_child(test_name: &str, scenario: fn() -> Result<(), String>) {
    if std::env::var(CHILD_ENV).as_deref() == Ok(test_name) {
        let code = run_in_forked_child(|| {
            match unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET) {
                Ok(()) => {}
                // Disabled or exhausted user namespaces: the feature is missing here.
                Err(e @ (Errno::EPERM | Errno::EACCES | Errno::ENOSPC | Errno::EUSERS)) => {
                    eprintln!("unshare(CLONE_NEWUSER|CLONE_NEWNET) => {e}");
                    return EXIT_UNSUPPORTED;
                }
                Err(e) => {
                    eprintln!("unshare(CLONE_NEWUSER|CLONE_NEWNET) => {e}");
                    return 1;
                }
            }
            match scenario() {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("netns scenario {test_name} failed: {e}");
                    1
                }
            }
        })
        .unwrap();
        std::process::exit(code);
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([test_name, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD_ENV, test_name)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {}
        Some(EXIT_UNSUPPORTED) => {
            assert!(
                std::env::var("SKILLSANDBOX_TEST_REQUIRE").as_deref() != Ok("full"),
                "user/network namespaces unavailable but SKILLSANDBOX_TEST_REQUIRE=full: {stderr}"
            );
            eprintln!("skipped: user/network namespaces unavailable: {stderr}");
        }
        other => panic!("child exited with {other:?}: {stderr}"),
    }
}

fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(what())
    }
}

fn listener(sockets: &EgressSockets, port: u16) -> Result<TcpListener, String> {
    let fd = sockets
        .tcp
        .iter()
        .find(|(p, _)| *p == port)
        .ok_or(format!("no listener for port {port}"))?
        .1
        .try_clone()
        .map_err(|e| e.to_string())?;
    Ok(TcpListener::from(fd))
}

/// Accepts one connection (the listener is non-blocking) within a second.
fn accept_one(l: &TcpListener) -> Result<TcpStream, String> {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match l.accept() {
            Ok((s, _)) => return Ok(s),
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(format!("accept: {e}")),
        }
    }
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Connects to `dest` and checks the listener saw `dest` as the local address.
fn intercepted(l: &TcpListener, dest: SocketAddr) -> Result<(), String> {
    let _client = TcpStream::connect_timeout(&dest, Duration::from_secs(1))
        .map_err(|e| format!("connect {dest}: {e}"))?;
    let accepted = accept_one(l)?;
    let local = canonical(accepted.local_addr().map_err(|e| e.to_string())?);
    check(local == dest, || {
        format!("getsockname {local}, expected {dest}")
    })
}

/// Sends a datagram to `dest` and returns the destination IP_PKTINFO/IPV6_PKTINFO reports.
fn udp_original_destination(dns: &OwnedFd, dest: SocketAddr) -> Result<IpAddr, String> {
    let bind: SocketAddr = match dest {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let client = UdpSocket::bind(bind).map_err(|e| e.to_string())?;
    client
        .send_to(b"query", dest)
        .map_err(|e| format!("send_to {dest}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let mut buf = [0u8; 64];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo);
        match recvmsg::<SockaddrStorage>(
            dns.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::empty(),
        ) {
            Ok(msg) => {
                for c in msg.cmsgs().map_err(|e| e.to_string())? {
                    match c {
                        ControlMessageOwned::Ipv4PacketInfo(i) => {
                            return Ok(Ipv4Addr::from(u32::from_be(i.ipi_addr.s_addr)).into())
                        }
                        ControlMessageOwned::Ipv6PacketInfo(i) => {
                            return Ok(Ipv6Addr::from(i.ipi6_addr.s6_addr).into())
                        }
                        _ => {}
                    }
                }
                return Err("datagram without packet info".into());
            }
            Err(nix::errno::Errno::EAGAIN) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(format!("recvmsg: {e}")),
        }
    }
}

fn local_routes_scenario() -> Result<(), String> {
    setup_loopback_and_local_routes().map_err(|e| e.to_string())?;
    let sockets = create_egress_sockets(&[443, 8080, 443, 53]).map_err(|e| e.to_string())?;
    let ports: Vec<u16> = sockets.tcp.iter().map(|(p, _)| *p).collect();
    check(ports == [443, 8080], || format!("listener ports {ports:?}"))?;

    let l443 = listener(&sockets, 443)?;
    intercepted(&l443, "203.0.113.7:443".parse().unwrap())?;
    intercepted(&l443, "[2001:db8::1]:443".parse().unwrap())?;
    intercepted(
        &listener(&sockets, 8080)?,
        "198.51.100.1:8080".parse().unwrap(),
    )?;
    let dns_tcp = TcpListener::from(sockets.dns_tcp.try_clone().map_err(|e| e.to_string())?);
    intercepted(&dns_tcp, "8.8.8.8:53".parse().unwrap())?;
    intercepted(&dns_tcp, "[2001:4860:4860::8888]:53".parse().unwrap())?;

    // No listener: refused at once, not a timeout.
    for dest in ["203.0.113.7:444", "[2001:db8::1]:80"] {
        let dest: SocketAddr = dest.parse().unwrap();
        let start = Instant::now();
        let err = TcpStream::connect_timeout(&dest, Duration::from_secs(3))
            .err()
            .ok_or(format!("connect {dest} succeeded without a listener"))?;
        check(err.kind() == ErrorKind::ConnectionRefused, || {
            format!("connect {dest}: {err}, expected ECONNREFUSED")
        })?;
        check(start.elapsed() < Duration::from_millis(500), || {
            format!("connect {dest} took {:?}", start.elapsed())
        })?;
    }

    // DNS to any resolver address lands on port 53 with its original destination.
    let got = udp_original_destination(&sockets.dns_udp4, "8.8.8.8:53".parse().unwrap())?;
    check(got == IpAddr::from([8, 8, 8, 8]), || {
        format!("pktinfo {got}")
    })?;
    let v6: IpAddr = "2606:4700:4700::1111".parse().unwrap();
    let got = udp_original_destination(&sockets.dns_udp6, SocketAddr::new(v6, 53))?;
    check(got == v6, || format!("pktinfo {got}"))?;
    Ok(())
}

#[test]
fn local_routes_send_every_destination_to_the_listener() {
    run_in_netns_child(
        "net::tests::local_routes_send_every_destination_to_the_listener",
        local_routes_scenario,
    );
}

fn loopback_only_scenario() -> Result<(), String> {
    setup_loopback_only().map_err(|e| e.to_string())?;
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind lo: {e}"))?;
    let addr = l.local_addr().map_err(|e| e.to_string())?;
    TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        .map_err(|e| format!("loopback connect: {e}"))?;
    let start = Instant::now();
    let err =
        TcpStream::connect_timeout(&"203.0.113.7:443".parse().unwrap(), Duration::from_secs(3))
            .err()
            .ok_or("connect to 203.0.113.7 succeeded with no route")?;
    check(err.raw_os_error() == Some(libc::ENETUNREACH), || {
        format!("expected ENETUNREACH, got {err}")
    })?;
    check(start.elapsed() < Duration::from_millis(500), || {
        format!("took {:?}", start.elapsed())
    })
}

#[test]
fn loopback_only_has_no_route_out() {
    run_in_netns_child(
        "net::tests::loopback_only_has_no_route_out",
        loopback_only_scenario,
    );
}

fn netlink_error_scenario() -> Result<(), String> {
    setup_loopback_and_local_routes().map_err(|e| e.to_string())?;
    // The routes exist now (NLM_F_EXCL): the second attempt must surface EEXIST.
    match setup_loopback_and_local_routes() {
        Err(NetError::NetlinkRefused { source, .. })
            if source.raw_os_error() == Some(libc::EEXIST) =>
        {
            Ok(())
        }
        other => Err(format!("expected EEXIST from the kernel, got {other:?}")),
    }
}

#[test]
fn kernel_refusals_carry_the_errno() {
    run_in_netns_child(
        "net::tests::kernel_refusals_carry_the_errno",
        netlink_error_scenario,
    );
}

#[test]
fn port_zero_is_rejected() {
    assert!(matches!(
        create_egress_sockets(&[0]),
        Err(NetError::InvalidPort)
    ));
}
