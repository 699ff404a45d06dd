# -*- test-case-name: tests.adapters.test_startup -*-
"""
What the console scripts leave out of their dependencies' start-up.

An ssh ``ProxyCommand`` starts a proxy for every ssh command, and nearly all
of a proxy's start-up is importing Twisted, pyOpenSSL and Autobahn
(issue 22).  Parts of those imports do work no proxy needs; the console
scripts, and only they, skip them:

  1. L{defer_unused_stdlib}: Twisted's C{twisted.python.compat}, which every
     Twisted program imports (C{twisted.logger} and C{twisted.python.failure}
     need it), imports C{http.cookiejar} for one deprecated alias,
     C{compat.cookielib}; and C{http.cookiejar} imports C{urllib.request},
     which brings C{http.client} and the e-mail parser with it.  They are
     replaced by a lazy module (C{importlib.util.LazyLoader}): importing it
     succeeds at once, and it runs the first time one of its attributes is
     used, by whoever uses it (Twisted's cookie agent, C{prometheus_client}
     for ``--metrics-port``).  Only when it runs changes, never what it
     holds.  Called before anything imports Twisted (see
     L{aws_localproxy.cli}); a module already imported, or one whose loader
     cannot load lazily (a freezer's importer without C{exec_module}), is
     left alone and imported as usual.
  2. L{autobahn_nvx_wrappers_off}: Autobahn's own NVX classes (its masker
     and UTF-8 validator objects) declare their C functions to cffi when
     Autobahn is imported, and cffi parses those declarations with
     pycparser: about a tenth of a start-up.  The proxy masks the frames it
     sends with Autobahn's compiled NVX module directly
     (L{aws_localproxy.upstream.masking}), which needs no declaration, so
     it imports Autobahn with Autobahn's public switch
     C{AUTOBAHN_USE_NVX=0}: Autobahn then masks the few frames it sends
     itself (pings, pongs, the close) and checks the UTF-8 of a text frame
     or a close reason in Python.  Bytes on the wire and every message are
     the same; the data path is not touched.  A C{AUTOBAHN_USE_NVX} the user
     set is obeyed, and the switch is removed from the environment again
     once Autobahn read it, so that nothing the proxy starts inherits it.
  3. L{collector_paused}: importing the proxy allocates some 80,000 objects
     that live as long as the process (modules, classes, functions) and no
     cyclic garbage at all, yet Python's cyclic garbage collector runs over
     them about a hundred times meanwhile, a few of them full passes: a
     tenth of the imports' time.  The collector is paused for the imports;
     then everything allocated so far is moved out of its reach
     (C{gc.freeze}) and it runs again, over what the proxy allocates from
     then on, as before, and its full passes no longer go over the imports'
     objects either.  An object frozen then that later ends up in an
     unreachable cycle is never freed: the price, for objects that are
     there for the life of the process anyway.

Nothing here runs for an application that embeds the proxy: its interpreter
is left as it is.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import sys
from contextlib import contextmanager
from typing import Iterator, List, Sequence

__all__ = ["DEFERRED", "defer_unused_stdlib", "autobahn_nvx_wrappers_off", "collector_paused"]

#: The modules made lazy (see the module docstring for why each one).
DEFERRED = ("http.cookiejar",)

#: Autobahn's switch for its NVX classes, read once, when C{autobahn.websocket} is imported.
AUTOBAHN_NVX_SWITCH = "AUTOBAHN_USE_NVX"


def defer_unused_stdlib(names: Sequence[str] = DEFERRED) -> List[str]:
    """
    Make each module of C{names} that is not imported yet a lazy module.

    @return: the names made lazy (the others were imported already, or
        cannot be loaded lazily).
    """
    deferred: List[str] = []
    for name in names:
        if name in sys.modules:
            continue
        try:
            spec = importlib.util.find_spec(name)
            if spec is None or spec.loader is None:
                continue
            # TypeError: a loader that cannot load lazily (no exec_module).
            loader = importlib.util.LazyLoader(spec.loader)
        except (ImportError, TypeError, ValueError):
            continue
        spec.loader = loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        loader.exec_module(module)
        parent, _, child = name.rpartition(".")
        if parent:
            # ``from http import cookiejar`` then finds it on its package.
            # Otherwise the import system looks it up again and reads its
            # __spec__ on the way, which is an attribute: the module would
            # be loaded by the very import it was made lazy for.
            setattr(sys.modules[parent], child, module)
        deferred.append(name)
    return deferred


@contextmanager
def autobahn_nvx_wrappers_off() -> Iterator[bool]:
    """
    Within it, a first import of Autobahn leaves Autobahn's own NVX classes
    out (see the module docstring).  Yields whether it does: not when
    Autobahn was imported already, nor when the user set the switch.
    """
    if "autobahn.websocket" in sys.modules or AUTOBAHN_NVX_SWITCH in os.environ:
        yield False
        return
    os.environ[AUTOBAHN_NVX_SWITCH] = "0"
    try:
        yield True
    finally:
        os.environ.pop(AUTOBAHN_NVX_SWITCH, None)


@contextmanager
def collector_paused() -> Iterator[bool]:
    """
    Within it, the cyclic garbage collector does not run; at its end every
    object so far is frozen (C{gc.freeze}) and the collector runs again (see
    the module docstring).  Yields whether it paused the collector: not when
    it was off already (then nothing is frozen either).
    """
    if not gc.isenabled():
        yield False
        return
    gc.disable()
    try:
        yield True
    finally:
        gc.freeze()
        gc.enable()
