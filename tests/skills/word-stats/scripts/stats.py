"""Word statistics of a text file bundled with the skill (or named on the command line)."""
import collections
import pathlib
import sys

path = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "data/sample.txt")
text = path.read_text()
words = text.split()
top, n = collections.Counter(w.lower().strip(".,") for w in words).most_common(1)[0]
print(f"lines={len(text.splitlines())} words={len(words)} top={top}:{n}")
