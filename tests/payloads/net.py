#!/usr/bin/env python3
"""Network attack/usage payload for the egress tests. Each step prints one line
`STEP <name> <result>` where result is `OK <detail>` or `FAIL <errno-or-reason>`.
Never hangs: every socket has a 3 s timeout."""
import json
import socket
import ssl
import struct
import sys
import urllib.request

T = 3.0


def out(name, ok, detail):
    print(f"STEP {name} {'OK' if ok else 'FAIL'} {detail}", flush=True)


def err(e):
    return type(e).__name__ + ":" + str(getattr(e, "errno", "") or e)


def http_get(name, host, port):
    try:
        body = urllib.request.urlopen(f"http://{host}:{port}/", timeout=T).read()
        out(name, True, body[:40].decode(errors="replace").replace(" ", "_"))
    except Exception as e:
        out(name, False, err(e))


def raw_http(name, host, port, host_header=None):
    try:
        addr = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)[0][4]
        fam = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(T)
        s.connect(addr[:2])
        s.sendall(f"GET / HTTP/1.0\r\nHost: {host_header or host}\r\n\r\n".encode())
        data = s.recv(100)
        out(name, bool(data), data[:20].decode(errors="replace").replace(" ", "_") if data else "closed")
    except Exception as e:
        out(name, False, err(e))


def tls_sni(name, connect_host, port, sni):
    try:
        addr = socket.getaddrinfo(connect_host, port, proto=socket.IPPROTO_TCP)[0][4]
        s = socket.create_connection(addr[:2], timeout=T)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        t = ctx.wrap_socket(s, server_hostname=sni)
        t.sendall(b"GET / HTTP/1.0\r\nHost: " + sni.encode() + b"\r\n\r\n")
        data = t.recv(100)
        out(name, bool(data), data[:20].decode(errors="replace").replace(" ", "_"))
    except Exception as e:
        out(name, False, err(e))


def resolve(name, host):
    try:
        addrs = sorted({a[4][0] for a in socket.getaddrinfo(host, 443, proto=socket.IPPROTO_TCP)})
        out(name, True, ",".join(addrs))
    except Exception as e:
        out(name, False, err(e))


def dns_query(qname, qtype=1):
    h = struct.pack(">HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0)
    b = b"".join(bytes([len(p)]) + p.encode() for p in qname.split(".")) + b"\0"
    return h + b + struct.pack(">HH", qtype, 1)


def raw_dns(name, resolver, qname):
    fam = socket.AF_INET6 if ":" in resolver else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.settimeout(T)
    try:
        s.sendto(dns_query(qname), (resolver, 53))
        d, a = s.recvfrom(512)
        rcode = d[3] & 15
        out(name, rcode == 0 and struct.unpack(">H", d[6:8])[0] > 0, f"rcode={rcode}")
    except Exception as e:
        out(name, False, err(e))


def udp(name, host, port):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    try:
        s.sendto(b"\x00" * 32, (host, port))
        d, _ = s.recvfrom(100)
        out(name, True, f"{len(d)}B")
    except Exception as e:
        out(name, False, err(e))


def raw_socket(name):
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        out(name, True, "created")
    except Exception as e:
        out(name, False, err(e))


def main():
    steps = json.loads(sys.argv[1])
    for step in steps:
        kind, args = step[0], step[1:]
        {"http": http_get, "raw_http": raw_http, "tls": tls_sni, "resolve": resolve,
         "raw_dns": raw_dns, "udp": udp, "raw": raw_socket}[kind](*args)
    print("NET_DONE", flush=True)


if __name__ == "__main__":
    main()
