# -*- test-case-name: tests.upstream.test_masking -*-
"""
Client-frame masking, in place, with Autobahn's NVX code.

Every frame a client sends is XORed with a fresh 4-byte mask (RFC 6455
section 5.3).  Autobahn's masker object copies the payload into a new C
buffer, masks it and copies it out again, and is built anew for each frame;
for the tunnel's large frames those two copies and the object cost as much
as the masking.  Here the frame is built once, as a C{bytearray}, and its
payload is masked where it lies by the same NVX routine.  Where Autobahn was
installed without NVX, its own masker does the work (slowly, as it would).
"""

from __future__ import annotations

import importlib
from typing import Any, Optional

from autobahn.websocket import xormasker as _xormasker

__all__ = ["mask_in_place", "NVX"]


def _load_nvx() -> Optional[Any]:
    """Autobahn's compiled NVX masker module, if Autobahn was built with it."""
    try:
        return importlib.import_module("_nvx_xormasker")
    except ImportError:  # pragma: no cover - depends on how Autobahn was built
        return None


_nvx = _load_nvx()
_ffi: Optional[Any] = _nvx.ffi if _nvx is not None else None
_lib: Optional[Any] = _nvx.lib if _nvx is not None else None

#: Whether frames are masked by Autobahn's NVX code (else by its pure-Python masker).
NVX = _lib is not None

#: Autobahn's NVX implementation number for its SIMD (SSE2) path, the one it uses itself.
_NVX_SIMD = 2

_create_xor_masker: Any = _xormasker.create_xor_masker  # type: ignore[attr-defined]


def mask_in_place(frame: bytearray, offset: int, mask: bytes) -> None:
    """XOR C{frame[offset:]} with the 4-byte C{mask}, repeated from its first byte."""
    length = len(frame) - offset
    if length <= 0:
        return
    if _lib is None or _ffi is None:
        frame[offset:] = _create_xor_masker(mask, length).process(bytes(frame[offset:]))
        return
    masker = _lib.nvx_xormask_new(_ffi.from_buffer("uint8_t[]", mask))
    try:
        _lib.nvx_xormask_set_impl(masker, _NVX_SIMD)
        _lib.nvx_xormask_process(masker, _ffi.from_buffer("uint8_t[]", frame) + offset, length)
    finally:
        _lib.nvx_xormask_free(masker)
