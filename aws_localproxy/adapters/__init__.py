"""
The edges to the operating system and to the private parts of dependencies.

L{sockets} sets socket options and writes in the same reactor turn. Every
use of a dependency's private attribute goes through one module of this
package per dependency, so a release that moves it breaks one place, which a
canary test names.
"""
