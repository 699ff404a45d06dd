# -*- test-case-name: tests.adapters.test_autobahn_private -*-
"""
Every private part of Autobahn the project uses, in one place.

What it reaches into, who uses it and why, and what happens when an
Autobahn release moves it (tests/adapters/test_autobahn_private.py is the
canary for each; setup.py's ceiling on Autobahn is the newest release it
passed on):

  1. The WebSocket parser's state and steps (C{WebSocketProtocol}), for
     L{aws_localproxy.upstream.websocket.TunnelClientProtocol}'s fast path,
     which takes the service's complete binary frames itself and hands
     Autobahn everything else at a frame boundary: it reads whether
     Autobahn sits between messages (L{PARSER_STATE}: C{state},
     C{current_frame}, C{inside_message}, the buffered C{data}), hands it
     bytes through L{parse_frames} (C{_dataReceived}: the parser without the
     Twisted adapter's per-read debug line), restarts the keep-alive on data
     as Autobahn does for the frames it parses (L{restart_keepalive}:
     C{_cancelAutoPingTimeoutCall}), and overrides three of its hooks
     (L{HOOKS}): C{onMessageEnd} (reading C{message_data}, C{failedByMe}),
     C{processControlFrame} (reading C{current_frame.opcode} and
     C{control_frame_data}, to take the pacer's pongs) and
     C{onAutoPingTimeout}.  Gone (L{PARSER_SEAM} false): the fast path is
     off and Autobahn parses every frame itself through its public
     C{dataReceived}, the pacer's pongs arrive through the public
     C{onPong}; a warning, once.
  2. The factory's batched timer (C{factory._batched_timer}), on which
     Autobahn runs its keep-alive timeouts, for the pong timeout the
     WebSocket puts off while flow control is not reading.  Gone:
     C{txaio.call_later}, txaio's public timer on the same loop
     (L{keepalive_call_later}).
  3. The NVX masker, Autobahn's compiled C{_nvx_xormasker} module (built
     with Autobahn 25.9.1 and later when a compiler or a binary wheel is
     there), for L{aws_localproxy.upstream.masking}: one masking pass over a
     frame where it lies, rather than Autobahn's masker object, which copies
     the payload twice.  Checked once, at import, by masking a sample
     (L{NVX_MASKER}); gone or wrong: Autobahn's pure-Python masker
     (C{python_masker}), about 10 MB/s, and the proxy's start-up warning
     says so (L{aws_localproxy.upstream.masking.SLOW_MASKING_WARNING}).

The checks run once (at import, or once per connection) and every name the
hot path calls is resolved here once: the hot path calls exactly what it
called before, with no layer in between.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, NamedTuple, Optional

import txaio
from autobahn.websocket import xormasker as _xormasker
from autobahn.websocket.protocol import WebSocketProtocol

from aws_localproxy.adapters.seams import code_uses, warn_once

__all__ = [
    "PARSER_STATE",
    "HOOKS",
    "PARSER_SEAM",
    "parse_frames",
    "restart_keepalive",
    "fast_path",
    "keepalive_call_later",
    "NvxMasker",
    "NVX_MASKER",
    "NVX_MISSING_REASON",
    "python_masker",
]

_WS: Any = WebSocketProtocol

# --- 1. The parser -------------------------------------------------------------------

#: The parser state the fast path reads, each with the method of Autobahn's
#: that must still use it under that name.
PARSER_STATE = {
    "state": "_dataReceived",
    "data": "_dataReceived",
    "current_frame": "processData",
    "inside_message": "processData",
    "control_frame_data": "processControlFrame",
    "message_data": "onMessageEnd",
    "failedByMe": "onMessageEnd",
    "autoPingTimeoutCall": "_cancelAutoPingTimeoutCall",
    "autoPingPending": "_cancelAutoPingTimeoutCall",
}

#: The hooks of Autobahn's parser the WebSocket overrides.
HOOKS = ("onMessageEnd", "processControlFrame", "onAutoPingTimeout")

#: C{WebSocketProtocol._dataReceived(protocol, data)}: the parser, given bytes.
parse_frames: Any = getattr(_WS, "_dataReceived", None)

#: C{WebSocketProtocol._cancelAutoPingTimeoutCall(protocol)}: data counts as
#: the peer's answer to a keep-alive ping; the next ping is scheduled.
restart_keepalive: Any = getattr(_WS, "_cancelAutoPingTimeoutCall", None)

#: Whether Autobahn's parser still has every part the fast path reads,
#: calls and overrides (as far as can be seen without a connection: each
#: name is still used by the method that used it; Autobahn restarts its own
#: keep-alive on frames with C{restart_keepalive}; C{processControlFrame}
#: still tells a pong by C{current_frame.opcode}).
PARSER_SEAM: bool = (
    callable(parse_frames)
    and callable(restart_keepalive)
    and isinstance(getattr(_WS, "STATE_OPEN", None), int)
    and all(callable(getattr(_WS, hook, None)) for hook in HOOKS)
    and all(code_uses(_WS, method, name) for name, method in PARSER_STATE.items())
    and code_uses(_WS, "processControlFrame", "opcode")
    and code_uses(_WS, "onFrameEnd", "_cancelAutoPingTimeoutCall", "autoPingRestartOnAnyTraffic")
)


def fast_path() -> bool:
    """
    Whether the WebSocket may take frames past Autobahn's parser
    (L{PARSER_SEAM}); warns once when it may not.  Asked once per connection.
    """
    if PARSER_SEAM:
        return True
    warn_once(
        "autobahn-parser",
        "This Autobahn's WebSocket parser no longer has the state and steps the proxy's "
        f"fast path uses (_dataReceived, _cancelAutoPingTimeoutCall, {', '.join(PARSER_STATE)}, "
        f"{', '.join(HOOKS)}): Autobahn parses every frame itself (the same frames, more "
        "time per frame)",
    )
    return False


# --- 2. The keep-alive's timer -------------------------------------------------------


def keepalive_call_later(factory: object) -> Callable[..., Any]:
    """
    C{call_later(delay, function)} on the timer Autobahn runs its keep-alive
    timeouts on (C{factory._batched_timer}), or txaio's own where that is
    gone.  Asked when flow control resumes reading, not per frame.
    """
    call_later: Any = getattr(getattr(factory, "_batched_timer", None), "call_later", None)
    if callable(call_later):
        timer: Callable[..., Any] = call_later
        return timer
    warn_once(
        "autobahn-batched-timer",
        "This Autobahn's WebSocket factory has no _batched_timer: the keep-alive's pong "
        "timeout runs on txaio.call_later",
    )
    txaio_api: Any = txaio  # txaio binds its API at run time (txaio.use_twisted)
    public: Callable[..., Any] = txaio_api.call_later
    return public


# --- 3. The NVX masker ---------------------------------------------------------------


class NvxMasker(NamedTuple):
    """The functions of Autobahn's NVX masker, resolved once."""

    #: C{ffi.from_buffer}: a C pointer into a Python buffer, no copy.
    from_buffer: Any
    #: C{nvx_xormask_new(mask)}: a masker for a 4-byte mask, on NVX's best
    #: implementation for this CPU (SSE2 where there is one).
    new: Any
    #: C{nvx_xormask_process(masker, data, length)}: masks in place.
    process: Any
    #: C{nvx_xormask_free(masker)}.
    free: Any


#: Autobahn's pure-Python masker factory, C{create_xor_masker(mask, length)}.
python_masker: Callable[[bytes, int], Any] = _xormasker.create_xor_masker  # type: ignore[attr-defined]


def _load_nvx() -> tuple[Optional[NvxMasker], str]:
    """
    Autobahn's NVX masker, if it is installed and masks a sample as RFC 6455
    says; else C{None} and why not.
    """
    try:
        module: Any = importlib.import_module("_nvx_xormasker")
    except ImportError:
        return None, "Autobahn was installed without its compiled NVX extension"
    try:
        masker = NvxMasker(
            from_buffer=module.ffi.from_buffer,
            new=module.lib.nvx_xormask_new,
            process=module.lib.nvx_xormask_process,
            free=module.lib.nvx_xormask_free,
        )
        mask, sample = b"\x01\x80\x7f\xfe", bytearray(range(37))
        expected = bytes(byte ^ mask[index % 4] for index, byte in enumerate(sample))
        handle = masker.new(masker.from_buffer("uint8_t[]", mask))
        try:
            masker.process(handle, masker.from_buffer("uint8_t[]", sample), len(sample))
        finally:
            masker.free(handle)
    except Exception as error:
        return None, f"Autobahn's NVX extension does not work ({error})"
    if bytes(sample) != expected:
        return None, "Autobahn's NVX extension masks wrongly"
    return masker, ""


#: Autobahn's NVX masker, checked; C{None} where it is missing or wrong
#: (L{NVX_MISSING_REASON} says which).
NVX_MASKER: Optional[NvxMasker]
#: Why L{NVX_MASKER} is C{None} (empty when it is not).
NVX_MISSING_REASON: str
NVX_MASKER, NVX_MISSING_REASON = _load_nvx()
