"""Tests for aws_localproxy.cli.log_setup: the reference's line format, -v levels and secret redaction."""

from __future__ import annotations

import io
import re
import threading
from typing import cast

from twisted.logger import ILogObserver, LogBeginner, Logger, LogLevel, LogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.cli.log_setup import (
    LineFormatObserver,
    make_observer,
    severity_name,
    start_logging,
)

LINE = re.compile(
    r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6})\] \((0x[0-9a-f]{16})\) \[(\w+)\] (.*)$"
)


def _emit(observer, namespace: str = "aws_localproxy.test"):
    publisher = LogPublisher(observer)
    return Logger(namespace=namespace, observer=cast(ILogObserver, publisher))


class FormatTests(SynchronousTestCase):
    def test_line_format(self) -> None:
        stream = io.StringIO()
        observer, _ = make_observer(4, stream)
        _emit(observer).info("Listening for new connection on port {port}", port=5555)
        match = LINE.match(stream.getvalue().rstrip("\n"))
        self.assertIsNotNone(match)
        assert match is not None
        self.assertEqual(match.group(3), "info")
        self.assertEqual(match.group(4), "Listening for new connection on port 5555")
        self.assertEqual(int(match.group(2), 16), threading.get_ident())
        self.assertTrue(stream.getvalue().endswith("\n"))

    def test_severity_names(self) -> None:
        self.assertEqual(severity_name({"log_level": LogLevel.critical}), "fatal")
        self.assertEqual(severity_name({"log_level": LogLevel.error}), "error")
        self.assertEqual(severity_name({"log_level": LogLevel.warn}), "warning")
        self.assertEqual(severity_name({"log_level": LogLevel.info}), "info")
        self.assertEqual(severity_name({"log_level": LogLevel.debug}), "debug")
        self.assertEqual(severity_name({"log_level": LogLevel.debug, "txaio_trace": True}), "trace")

    def test_failure_summary(self) -> None:
        stream = io.StringIO()
        observer, _ = make_observer(4, stream)
        _emit(observer).failure("Boom", Failure(ValueError("bad thing")))
        self.assertIn("[fatal] Boom: bad thing", stream.getvalue())
        self.assertEqual(len(stream.getvalue().splitlines()), 1)
        self.flushLoggedErrors(ValueError)

    def test_failure_traceback_at_debug(self) -> None:
        stream = io.StringIO()
        observer, _ = make_observer(5, stream)
        _emit(observer).failure("Boom", Failure(ValueError("bad thing")))
        self.assertIn("Traceback", stream.getvalue())


class LevelTests(SynchronousTestCase):
    def _levels_shown(self, verbosity: int, namespace: str = "aws_localproxy.x") -> list[str]:
        stream = io.StringIO()
        observer, _ = make_observer(verbosity, stream)
        log = _emit(observer, namespace)
        log.critical("c")
        log.error("e")
        log.warn("w")
        log.info("i")
        log.debug("d")
        log.debug("t", txaio_trace=True)
        return [LINE.match(line).group(3) for line in stream.getvalue().splitlines()]  # type: ignore[union-attr]

    def test_each_verbosity(self) -> None:
        order = ["fatal", "error", "warning", "info", "debug", "trace"]
        for verbosity in range(0, 7):
            self.assertEqual(self._levels_shown(verbosity), order[:verbosity], verbosity)
        self.assertEqual(self._levels_shown(200), order)

    def test_library_noise(self) -> None:
        self.assertEqual(self._levels_shown(4, "autobahn.websocket"), ["fatal", "error", "warning"])
        self.assertEqual(
            self._levels_shown(5, "twisted.internet"), ["fatal", "error", "warning", "info"]
        )
        self.assertEqual(len(self._levels_shown(6, "autobahn.websocket")), 6)


class RedactionTests(SynchronousTestCase):
    def test_secrets_replaced(self) -> None:
        stream = io.StringIO()
        observer, lines = make_observer(4, stream, secrets=["access-SECRET-token"])
        lines.add_secret("proxy-pass")
        lines.add_secret("")
        lines.add_secret("ab")  # too short to redact safely
        _emit(observer, "twisted.web").error("header access-token: {v}", v="access-SECRET-token")
        _emit(observer).warn("url http://u:proxy-pass@p:3128 ab")
        out = stream.getvalue()
        self.assertNotIn("SECRET", out)
        self.assertNotIn("proxy-pass", out)
        self.assertIn("header access-token: ***", out)
        self.assertIn("http://u:***@p:3128 ab", out)

    def test_observer_never_raises(self) -> None:
        class Broken(io.StringIO):
            def write(self, s: str) -> int:
                raise OSError("closed")

        LineFormatObserver(Broken())({"log_format": "x", "log_level": LogLevel.info, "log_time": 0})


class StartLoggingTests(SynchronousTestCase):
    def _beginner(self) -> tuple[LogBeginner, LogPublisher]:
        publisher = LogPublisher()
        errors = io.StringIO()

        class _Warnings:
            showwarning = None

        return LogBeginner(publisher, errors, io, _Warnings()), publisher  # type: ignore[arg-type]

    def test_buffered_events_replayed(self) -> None:
        beginner, publisher = self._beginner()
        log = Logger(namespace="aws_localproxy.t", observer=cast(ILogObserver, publisher))
        log.info("before start, token {t}", t="tok-123456")
        log.debug("hidden")
        stream = io.StringIO()
        lines = start_logging(4, stream, secrets=["tok-123456"], beginner=beginner)
        self.assertIsNotNone(lines)
        log.warn("after start")
        out = stream.getvalue().splitlines()
        self.assertEqual(len(out), 2)
        self.assertTrue(out[0].endswith("[info] before start, token ***"))
        self.assertTrue(out[1].endswith("[warning] after start"))

    def test_verbosity_zero_writes_nothing(self) -> None:
        beginner, publisher = self._beginner()
        log = Logger(namespace="aws_localproxy.t", observer=cast(ILogObserver, publisher))
        stream = io.StringIO()
        self.assertIsNone(start_logging(0, stream, beginner=beginner))
        log.critical("fatal thing")
        self.assertEqual(stream.getvalue(), "")
