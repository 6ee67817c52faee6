#!/usr/bin/env python3
"""Writes the seed corpus of each fuzz target (tests/__fuzz__/<target>/corpus).

Seeds are well-formed inputs of each format, so the random engine starts from
inside the grammar. Re-run after changing a format; the output is committed.
"""
import json, os, ssl, struct, pathlib

ROOT = pathlib.Path(__file__).resolve().parent
REPO = ROOT.parent.parent
OUT = ROOT / "tests" / "__fuzz__"


def put(target, name, data):
    d = OUT / target / "corpus"
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def dns_query(name, qtype=1, edns=False, ident=0x1234):
    q = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
    q += struct.pack(">HH", qtype, 1)
    arcount = 1 if edns else 0
    head = struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, arcount)
    opt = b"\0" + struct.pack(">HHIH", 41, 1232, 0, 0) if edns else b""
    return head + q + opt


def client_hello(sni, alpn=None):
    ctx = ssl.create_default_context()
    if alpn:
        ctx.set_alpn_protocols(alpn)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    s = ctx.wrap_bio(inc, out, server_hostname=sni)
    try:
        s.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


put("dns", "a-declared", dns_query("api.example.com"))
put("dns", "aaaa-wildcard-edns", dns_query("x.allowed.test", 28, True))
put("dns", "a-undeclared", dns_query("exfil.attacker.example"))
put("dns", "txt-tunnel", dns_query("aGVsbG8.t.attacker.example", 16))
put("dns", "any-root", dns_query("", 255))
put("sniff", "tls-sni", client_hello("api.example.com"))
put("sniff", "tls-sni-h2", client_hello("www.allowed.test", ["h2", "http/1.1"]))
put("sniff", "tls-other", client_hello("evil.example"))
put("sniff", "http-host", "GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
put("sniff", "http-pipelined",
    "GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\nGET / HTTP/1.1\r\nHost: evil.example\r\n\r\n")
put("sniff", "http-absolute", "GET http://www.allowed.test/x HTTP/1.1\r\nHost: www.allowed.test\r\n\r\n")
put("sniff", "http-connect", "CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n")
put("sniff", "h2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
for p in sorted((REPO / "examples").glob("*/skillsandbox.yaml")):
    put("manifest", p.parent.name, p.read_bytes())
put("policy", "example", (REPO / "examples" / "policy.yaml").read_bytes())
put("mcp_args", "run-skill", json.dumps({"skill": "weather-lookup", "args": ["Paris"]}))
put("mcp_args", "exec", json.dumps({"command": ["python3", "-c", "print(1)"],
                                    "allow_domains": ["api.example.com:443"],
                                    "read": ["/data"], "env": ["LANG"], "timeout_s": 5}))
put("mcp_args", "usage-tokens", json.dumps({"model": "m", "input_tokens": 10, "output_tokens": 2}))
put("mcp_args", "usage-usd", json.dumps({"usd": 0.25}))
put("mcp_args", "grant", "*.example.com:443,8443")
log = REPO / "crates" / "fuzz" / "seed-audit.jsonl"
if log.exists():
    put("audit_log", "chain", log.read_bytes())
