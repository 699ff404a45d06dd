"""
The mutation score per module, from the results of the last ``mutmut run``
(``tox -e mutation`` prints it after the run; ``python tests/mutation_score.py``
prints it any time).

A mutant is I{killed} when the test run fails with it, I{survived} when the
tests pass; mutants no selected test reaches count as survivors too ("no
tests"), and mutants not run yet are listed apart and left out of the score.
"""

from __future__ import annotations

import collections
import re
import subprocess
import sys
from typing import Dict, Iterable, List, Tuple

_LINE = re.compile(r"^\s*(?P<name>\S+?)\.x[_ǁ]\S*: (?P<status>.+?)\s*$")
KILLED = ("killed",)
NOT_RUN = ("not checked",)


def tally(lines: Iterable[str]) -> Dict[str, collections.Counter]:
    """Counts of each status per module, from ``mutmut results --all true`` lines."""
    per_module: Dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in lines:
        match = _LINE.match(line)
        if match:
            per_module[match["name"]][match["status"]] += 1
    return per_module


def score(counts: collections.Counter) -> Tuple[int, int]:
    """(killed, run): the mutants killed and the mutants run (not-run ones excluded)."""
    run = sum(n for status, n in counts.items() if status not in NOT_RUN)
    killed = sum(n for status, n in counts.items() if status in KILLED)
    return killed, run


def report(per_module: Dict[str, collections.Counter]) -> List[str]:
    lines = ["%-42s %7s %6s %8s %s" % ("module", "mutants", "killed", "score", "other")]
    total: collections.Counter = collections.Counter()
    for module in sorted(per_module):
        counts = per_module[module]
        total.update(counts)
        killed, run = score(counts)
        others = ", ".join(
            "%d %s" % (n, status) for status, n in sorted(counts.items()) if status != "killed"
        )
        lines.append(
            "%-42s %7d %6d %7.1f%% %s"
            % (module, run, killed, 100.0 * killed / run if run else 0.0, others)
        )
    killed, run = score(total)
    lines.append(
        "%-42s %7d %6d %7.1f%%" % ("all", run, killed, 100.0 * killed / run if run else 0.0)
    )
    return lines


def main() -> int:
    output = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    print("\n".join(report(tally(output.splitlines()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
