"""Today's quote from the quotes API (a fixture shaped like published API skills)."""
import sys
import urllib.request

url = sys.argv[1] if len(sys.argv) > 1 else "https://api.quotes.example/today"
try:
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = resp.read().decode()
except OSError as e:
    print(f"fetch failed: {e}", file=sys.stderr)
    sys.exit(1)
print(f"quote: {body.strip()}")
