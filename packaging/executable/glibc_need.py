"""
The newest glibc symbol version an executable built by scripts/build-executable needs.

``python glibc_need.py PATH`` (the one-file program, or the ``--onedir``
directory) prints e.g. ``2.34 (libpython3.11.so.1.0)``: the highest
``GLIBC_x.y`` that the bootloader or any bundled shared library asks for
(``objdump -T``), and which file asks for it.  A device whose glibc is
older cannot run the file.  For a one-file program the bundled libraries
are read out of its archive with PyInstaller's own reader (so this runs in
the build virtualenv, which has PyInstaller).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from typing import Iterator, Tuple

_GLIBC = re.compile(rb"GLIBC_([0-9]+(?:\.[0-9]+)*)")


def _needs(path: str) -> Tuple[int, ...]:
    """The newest GLIBC_ version in the dynamic symbol table of ELF file C{path}; () if none."""
    output = subprocess.run(
        ["objdump", "-T", path], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False
    ).stdout
    return max(
        (tuple(int(part) for part in match.split(b".")) for match in _GLIBC.findall(output)),
        default=(),
    )


def _is_elf(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def _elf_files(path: str, scratch: str) -> Iterator[Tuple[str, str]]:
    """(name, file on disk) of the bootloader and every ELF file bundled in C{path}."""
    if os.path.isdir(path):
        for directory, _, files in os.walk(path):
            for name in files:
                full = os.path.join(directory, name)
                if not os.path.islink(full) and _is_elf(full):
                    yield os.path.relpath(full, path), full
        return
    from PyInstaller.archive.readers import CArchiveReader

    yield os.path.basename(path) + " (bootloader)", path
    archive = CArchiveReader(path)
    for index, name in enumerate(archive.toc):
        data = archive.extract(name)
        if data[:4] == b"\x7fELF":
            copy = os.path.join(scratch, str(index))
            with open(copy, "wb") as f:
                f.write(data)
            yield name, copy


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        version, by = max(
            ((_needs(copy), name) for name, copy in _elf_files(sys.argv[1], scratch)),
            default=((), ""),
        )
    print(".".join(map(str, version)) + f" ({by})" if version else "unknown (no GLIBC_ symbols)")


if __name__ == "__main__":
    main()
