"""
Turn trial's closing line into ``trial: N passed, M failed[, K skipped]``.

trial ends a run with ``PASSED (successes=12, skips=1)`` or
``FAILED (failures=1, errors=2, successes=9)``.  Usage:
``python scripts/trial-summary.py LOGFILE TRIAL_EXIT_CODE``; exits 0 only
when trial passed and its counts show no failure.
"""

import re
import sys

FAILING = ("failures", "errors", "unexpectedSuccesses")


def main(path: str, trial_rc: int) -> int:
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    counts = None
    for line in reversed(lines):
        match = re.match(r"^(PASSED|FAILED) \((.*)\)\s*$", line.strip())
        if match:
            counts = {k.strip(): int(v) for k, v in (p.split("=") for p in match.group(2).split(","))}
            break
    if counts is None:
        print("trial: 0 passed, 1 failed (trial printed no result; exit code %d)" % trial_rc)
        return 1
    passed = counts.get("successes", 0) + counts.get("expectedFailures", 0)
    failed = sum(counts.get(k, 0) for k in FAILING)
    skipped = counts.get("skips", 0)
    line = "trial: %d passed, %d failed" % (passed, failed)
    if skipped:
        line += ", %d skipped" % skipped
    print(line)
    return 0 if (failed == 0 and trial_rc == 0) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
