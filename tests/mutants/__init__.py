"""
The fixed sample of mutants CI runs (L{tests.support.mutation}): one module
per part of the package, each with a tuple C{MUTANTS}.  Add a mutant where a
test was written to kill a survivor of C{tox -e mutation}.
"""
