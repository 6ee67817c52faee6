"""The CI gate shared by bench/launch.py and bench/serve.py: fail only on a gross
regression, a ratio more than twice the one recorded in bench/baseline.json, since
shared hosts are too noisy for a finer bound."""
import json
import sys


def check(baseline_path: str, section: str, ratios: dict) -> None:
    """Exit 1 naming each ratio above twice `baseline[section]`'s (or not measured)."""
    with open(baseline_path) as f:
        recorded = json.load(f)[section]
    bad = []
    for k, limit in recorded.items():
        if k not in ratios:
            bad.append(f"{k}: not measured (bwrap missing?)")
        elif ratios[k] > 2 * limit:
            bad.append(f"{k}: {ratios[k]:.2f}x, recorded {limit:.2f}x (limit {2 * limit:.2f}x)")
    for b in bad:
        print(f"gross {section} regression: {b}", file=sys.stderr)
    if bad:
        sys.exit(1)
    print(f"{section} gate: every ratio within 2x of {baseline_path}", file=sys.stderr)
