"""A Toxiproxy-compatible server: TCP proxies with toxics, driven by Toxiproxy's HTTP API.

Modules, one job each: ``limits`` (every bound), ``spec`` (what a toxic is, the type
registry), ``stage`` and ``link`` (the chain of one direction of one connection),
``toxics`` (the data path of each type), ``connection`` and ``proxy`` (sockets and
listeners), ``listen`` (addresses), ``jsonbody`` (Go-style request decoding), ``state``
(the registry and every operation), ``api`` (HTTP routes), ``embedded`` (in-process start)
and ``resolve`` (``--toxiproxy auto|embedded|URL``). Compatibility target and extensions:
``chaos/README.md``.
"""

from hongbao.chaos.toxiproxy.api import EXTENSIONS as EXTENSIONS
from hongbao.chaos.toxiproxy.api import REFERENCE_VERSION as REFERENCE_VERSION
from hongbao.chaos.toxiproxy.embedded import EmbeddedToxiproxy as EmbeddedToxiproxy
from hongbao.chaos.toxiproxy.embedded import ThreadedToxiproxy as ThreadedToxiproxy
from hongbao.chaos.toxiproxy.resolve import ToxiproxyChoice as ToxiproxyChoice
from hongbao.chaos.toxiproxy.resolve import ToxiproxyEndpoint as ToxiproxyEndpoint
from hongbao.chaos.toxiproxy.resolve import open_toxiproxy as open_toxiproxy
from hongbao.chaos.toxiproxy.resolve import resolve_toxiproxy as resolve_toxiproxy

__all__ = [
    "EXTENSIONS",
    "REFERENCE_VERSION",
    "EmbeddedToxiproxy",
    "ThreadedToxiproxy",
    "ToxiproxyChoice",
    "ToxiproxyEndpoint",
    "open_toxiproxy",
    "resolve_toxiproxy",
]
