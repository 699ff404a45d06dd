# -*- test-case-name: tests.adapters.test_lazy_stdlib -*-
"""
Standard-library modules that a dependency imports and a running proxy never
uses: loaded on first use instead of at start-up.

Twisted's C{twisted.python.compat}, which every Twisted program imports
(C{twisted.logger} and C{twisted.python.failure} need it), imports
C{http.cookiejar} for one deprecated alias, C{compat.cookielib}; and
C{http.cookiejar} imports C{urllib.request}, which brings C{http.client} and
the e-mail parser with it.  Together about a tenth of the console script's
start-up (issue 22), for cookies and URLs the proxy never handles.

L{defer_unused_stdlib} puts a lazy module in the place of each one
(C{importlib.util.LazyLoader}): importing it succeeds at once, and the module
runs the first time one of its attributes is used, by whoever uses it
(Twisted's cookie agent, C{prometheus_client}'s exposition for
``--metrics-port``).  Only when it runs changes, never what it holds.

Only the console scripts call it, before anything imports Twisted (see
L{aws_localproxy.cli}); an application that embeds the proxy keeps its
interpreter as it is.  A module already imported, or one whose loader cannot
load lazily (a freezer's importer without C{exec_module}), is left alone:
it is then imported as usual.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import List, Sequence

__all__ = ["DEFERRED", "defer_unused_stdlib"]

#: The modules made lazy (see the module docstring for why each one).
DEFERRED = ("http.cookiejar",)


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
