"""The warnings the adapters on dependencies' private parts log, for the tests that check them."""

from __future__ import annotations

from typing import Any, List

from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.adapters import seams


def adapter_warnings(test: SynchronousTestCase) -> List[str]:
    """
    The text of each warning the adapters log from now to the end of
    C{test}; the adapters' "once per process" memory is cleared before and
    after, so that each test sees its own warning.
    """
    seams.forget_warnings()
    texts: List[str] = []

    def observe(event: Any) -> None:
        if (
            event.get("log_namespace") == "aws_localproxy.adapters"
            and event.get("log_level") is LogLevel.warn
        ):
            texts.append(event["text"])

    globalLogPublisher.addObserver(observe)
    test.addCleanup(globalLogPublisher.removeObserver, observe)
    test.addCleanup(seams.forget_warnings)
    return texts
