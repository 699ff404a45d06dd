"""
examples/agent_demo.py, the whole device flow with real processes: it
must end with the bytes back, and the agent's log (at -v 6, where
Autobahn dumps the handshake's headers) must not show the tunnel's tokens.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.support.agent import mosquitto_missing
from tests.support.deadlines import START, scaled
from tests.support.helpers import PROJECT_ROOT, run_child

DEMO = os.path.join(PROJECT_ROOT, "examples", "agent_demo.py")


class AgentDemoTests(TestCase):
    if mosquitto_missing:
        skip = mosquitto_missing

    timeout = scaled(90)

    @inlineCallbacks
    def test_demo(self) -> Any:
        directory = os.path.abspath(self.mktemp())
        env = dict(os.environ, AGENT_DEMO_DIR=directory, AGENT_DEMO_VERBOSITY="6")
        bin_dir = os.path.dirname(sys.executable)
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
        # The demo runs a broker, a tunnel service, an agent and a source:
        # a few seconds; it is killed, and the test fails with its output,
        # if it has not ended within the deadline.
        code, out, err = yield run_child([sys.executable, DEMO], env, START * 2, name="the demo")
        text = out.decode(errors="replace") + err.decode(errors="replace")
        self.assertEqual(code, 0, text)
        self.assertIn("demo: OK, 100000 bytes went through the tunnel and back", text)
        with open(os.path.join(directory, "opened.json")) as f:
            opened = json.load(f)
        with open(os.path.join(directory, "agent.log"), errors="replace") as f:
            agent_log = f.read()
        self.assertIn("access-token: ***", agent_log)
        self.assertNotIn(opened["destinationAccessToken"], agent_log)
        self.assertNotIn(opened["sourceAccessToken"], agent_log)
