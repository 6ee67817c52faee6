//! Egress relay benchmark: bulk throughput and connection-setup latency through the
//! egress service vs a direct loopback connection, printed as ratios.
//!
//! Run: `cargo run -p skillsandbox-egress --example egress_bench --profile bench`
//! (optional arguments: MiB per bulk round, default 256; connections for the latency
//! test, default 500).
//!
//! Loopback only and no namespaces: the service's synthetic range is 127.77.0.0/24, so
//! a listener bound to 127.77.0.1 sees the destination a sandboxed client would; the
//! name resolves (test override) to the upstream on 127.0.0.1, allowed by a cidr rule.

#[path = "common.rs"]
mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const NAME: &str = "bench.example";
const SYNTHETIC: Ipv4Addr = Ipv4Addr::new(127, 77, 0, 1);
const CHUNK: usize = 256 * 1024;
/// Bulk rounds, each direct and relayed in alternating order; medians are compared.
const ROUNDS: usize = 11;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mib: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(256);
    let conns: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(500);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(mib, conns))
}

async fn run(mib: u64, conns: usize) -> Result<(), Box<dyn std::error::Error>> {
    let (front, upstream) = common::port_pair(SYNTHETIC)?;
    let port = front.local_addr()?.port();
    let upstream_addr = upstream.local_addr()?;
    upstream.set_nonblocking(true)?;
    let upstream = tokio::net::TcpListener::from_std(upstream)?;
    // Upstream: answers one byte per byte of a 1-byte ping, and for bulk reads to
    // the end, then sends back an 8-byte count.
    tokio::spawn(async move {
        while let Ok((mut s, _)) = upstream.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; CHUNK];
                let mut total: u64 = 0;
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            total += n as u64;
                            if total == 1 {
                                let _ = s.write_all(b"!").await;
                            }
                        }
                    }
                }
                let _ = s.write_all(&total.to_be_bytes()).await;
            });
        }
    });

    let (handle, relayed) = common::serve(
        common::config(NAME, port, Default::default()),
        front,
        NAME,
        SYNTHETIC,
    )
    .await
    .map_err(|e| e.to_string())?;

    println!(
        "egress relay benchmark: {ROUNDS} alternating rounds of {mib} MiB bulk, \
         {conns} connections (loopback)"
    );
    let (mut direct, mut relay) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // Alternate which goes first, so neither always runs on a warmer machine.
        if round % 2 == 0 {
            direct.push(bulk(upstream_addr, mib).await?);
            relay.push(bulk(relayed, mib).await?);
        } else {
            relay.push(bulk(relayed, mib).await?);
            direct.push(bulk(upstream_addr, mib).await?);
        }
    }
    let (direct_bulk, relay_bulk) = (median(&mut direct), median(&mut relay));
    println!(
        "bulk throughput, medians   direct {:>8.0} MiB/s   relay {:>8.0} MiB/s   ratio {:.2}",
        direct_bulk,
        relay_bulk,
        relay_bulk / direct_bulk
    );
    let direct_lat = setup_latency(upstream_addr, conns).await?;
    let relay_lat = setup_latency(relayed, conns).await?;
    println!(
        "connect+first byte median   direct {:>7.1} us   relay {:>7.1} us   added {:.1} us",
        micros(direct_lat),
        micros(relay_lat),
        micros(relay_lat) - micros(direct_lat)
    );
    let report = handle.finish();
    let blocked = report
        .connections
        .iter()
        .filter(|c| c.decision != skillsandbox_audit::ConnectionDecision::Allowed)
        .count();
    println!(
        "records: {} connections ({blocked} not allowed), {} violations",
        report.connections.len(),
        report.violations.len()
    );
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_unstable_by(f64::total_cmp);
    v[v.len() / 2]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// MiB/s for sending `mib` MiB and getting the upstream's count back.
async fn bulk(to: SocketAddr, mib: u64) -> Result<f64, Box<dyn std::error::Error>> {
    let total = mib * 1024 * 1024;
    let chunk = vec![0x5au8; CHUNK];
    let start = Instant::now();
    let mut s = TcpStream::connect(to).await?;
    let mut sent = 0u64;
    while sent < total {
        s.write_all(&chunk).await?;
        sent += CHUNK as u64;
    }
    s.shutdown().await?;
    let mut tail = Vec::new();
    s.read_to_end(&mut tail).await?;
    let elapsed = start.elapsed();
    let got = tail
        .get(tail.len().saturating_sub(8)..)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes);
    if got != Some(sent) {
        return Err(format!("upstream counted {got:?} of {sent} bytes").into());
    }
    Ok(sent as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64())
}

/// Median time from connect() to the first byte of the upstream's answer.
async fn setup_latency(to: SocketAddr, n: usize) -> Result<Duration, Box<dyn std::error::Error>> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let mut s = TcpStream::connect(to).await?;
        s.set_nodelay(true)?;
        s.write_all(b"x").await?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await?;
        times.push(start.elapsed());
    }
    times.sort_unstable();
    Ok(times[times.len() / 2])
}
