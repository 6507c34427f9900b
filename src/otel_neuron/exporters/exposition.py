"""One collection's Prometheus exposition: rendered once, served as bytes to every scrape.

`Exposition.of(families)` renders prometheus_client metric families when the exporter has them
(once per collection, on the exporter's thread; `otel_names` renders its own the same way);
`answer(accept, accept_encoding)` then gives the bytes of the format the scraper negotiates, made
at most once per collection and kept, gzipped too when the scraper asks. `make_exposition_app` is
the WSGI app serving the latest one.

The exposition is prometheus_client's, byte for byte (`generate_latest` in the text format,
`openmetrics.exposition.generate_latest` in OpenMetrics; tests/fixtures/prometheus holds it):

- content negotiation is prometheus_client's own (`choose_encoder`, `gzip_accepted`): a scraper
  asking for OpenMetrics (as Prometheus does) gets OpenMetrics, anything else the text format;
- the text format and OpenMetrics with the `underscores` or `allow-utf-8` name escaping (what
  Prometheus asks for) are rendered here: every sample line once, both formats sharing them;
- anything else (the `dots` or `values` escaping, another OpenMetrics version, names outside
  `[a-zA-Z_][a-zA-Z0-9_]*`, timestamps, exemplars, native histograms) is rendered by prometheus_client's
  encoder, once per collection and format;
- requests other than a GET of the metrics (OPTIONS, other methods, /favicon.ico, `name[]`
  filters) are answered by prometheus_client's own WSGI app over the same families.
"""

from __future__ import annotations

import gzip
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple
from urllib.parse import parse_qs

from prometheus_client.exposition import choose_encoder, gzip_accepted, make_wsgi_app
from prometheus_client.metrics_core import Metric as Family
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# The content types (as choose_encoder names them) whose exposition is rendered here.
TEXT = "text"
OPENMETRICS = "openmetrics"
RENDERED_HERE = {
    "text/plain; version=0.0.4; charset=utf-8": TEXT,
    "text/plain; version=1.0.0; charset=utf-8; escaping=underscores": TEXT,
    "text/plain; version=1.0.0; charset=utf-8; escaping=allow-utf-8": TEXT,
    "application/openmetrics-text; version=1.0.0; charset=utf-8": OPENMETRICS,
    "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores": OPENMETRICS,
    "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=allow-utf-8": OPENMETRICS,
}
# A name both escapings and both formats leave as it is.
_PLAIN_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Samples the text format moves out of their family into a gauge of their own, in this order.
_MOVED_SUFFIXES = ("_created", "_gcount", "_gsum")
# gzip's fastest level: an exposition is mostly label text repeated line after line, which it
# already compresses well, and the answer is made once per collection for every scraper.
GZIP_LEVEL = 1
# The bodies one collection keeps at most (the formats Prometheus asks for, plain and gzipped, and a
# few more); others are rendered for each request.
MAX_KEPT = 16


def go_floats(values: Sequence[float]) -> list[str]:
    """floatToGoString of each value (how both formats write a number), in C-level passes when
    every value is written as Python's repr writes it: no inf or nan, none of 1e6 or more (Go writes
    those with an exponent sooner than Python)."""
    floats = list(map(float, values))
    texts = list(map(repr, floats))
    if floats and ("n" in " ".join(texts) or max(map(abs, floats)) >= 1e6):
        return [floatToGoString(value) for value in floats]
    return texts


def plain_name(name: str) -> bool:
    """Whether every format and escaping rendered here writes `name` as it is."""
    return _PLAIN_NAME.fullmatch(name) is not None


def label_text(labels: dict[str, str]) -> str | None:
    """`a="1",b="x\\"y"`, sorted by name as prometheus_client writes labels; None if a name is not
    plain (prometheus_client's encoder then renders the exposition)."""
    parts = []
    for name, value in sorted(labels.items()):
        if not _PLAIN_NAME.fullmatch(name):
            return None
        escaped = value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
        parts.append(f'{name}="{escaped}"')
    return ",".join(parts)


class RenderedFamily(NamedTuple):
    """A family's header facts and its sample lines, as both formats write them."""

    name: str
    type: str
    help: str
    unit: str
    lines: str  # every sample, in order (OpenMetrics)
    text_lines: str  # the samples the text format keeps in the family
    moved: tuple[tuple[str, str], ...]  # (suffix, lines) the text format gives a gauge of their own


def render_families(families: Sequence[Family]) -> list[RenderedFamily] | None:
    """Every family's sample lines, or None when one cannot be rendered here."""
    rendered = []
    for family in families:
        one = _render_family(family)
        if one is None:
            return None
        rendered.append(one)
    return rendered


def _render_family(family: Family) -> RenderedFamily | None:
    if not _PLAIN_NAME.fullmatch(family.name):
        return None
    moved_names = {family.name + suffix: suffix for suffix in _MOVED_SUFFIXES}
    lines: list[str] = []
    kept: list[str] = []  # the text format's (without the moved samples)
    moved: dict[str, list[str]] = {}
    names_seen: set[str] = set()
    for name, labels, value, timestamp, exemplar, native_histogram in family.samples:
        if timestamp is not None or exemplar is not None or native_histogram is not None:
            return None
        if name not in names_seen:
            if not _PLAIN_NAME.fullmatch(name):
                return None
            names_seen.add(name)
        if labels:
            text = label_text(labels)
            if text is None:
                return None
            line = f"{name}{{{text}}} {floatToGoString(value)}\n"
        else:
            line = f"{name} {floatToGoString(value)}\n"
        lines.append(line)
        suffix = moved_names.get(name)
        if suffix is None:
            kept.append(line)
        else:
            moved.setdefault(suffix, []).append(line)
    every = "".join(lines)
    moved_lines = tuple((suffix, "".join(moved[suffix])) for suffix in sorted(moved))
    text_lines = "".join(kept) if moved else every
    return RenderedFamily(
        family.name, family.type, family.documentation, family.unit, every, text_lines, moved_lines
    )


# prometheus_client's text format names some types differently (and suffixes counters and infos).
_TEXT_TYPES = {"counter": ("_total", "counter"), "info": ("_info", "gauge"), "stateset": ("", "gauge")}
_TEXT_TYPES.update(gaugehistogram=("", "histogram"), unknown=("", "untyped"))


def text_format(rendered: Sequence[RenderedFamily]) -> bytes:
    """What prometheus_client's generate_latest gives for these families."""
    parts = []
    for family in rendered:
        suffix, text_type = _TEXT_TYPES.get(family.type, ("", family.type))
        name = family.name + suffix
        help_text = family.help.replace("\\", r"\\").replace("\n", r"\n")
        parts.append(f"# HELP {name} {help_text}\n# TYPE {name} {text_type}\n")
        parts.append(family.text_lines)
        for moved_suffix, lines in family.moved:
            moved_name = family.name + moved_suffix
            parts.append(f"# HELP {moved_name} {help_text}\n# TYPE {moved_name} gauge\n")
            parts.append(lines)
    return "".join(parts).encode()


def openmetrics_format(rendered: Sequence[RenderedFamily]) -> bytes:
    """What prometheus_client's openmetrics generate_latest gives for these families."""
    parts = []
    for family in rendered:
        help_text = family.help.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
        parts.append(f"# HELP {family.name} {help_text}\n# TYPE {family.name} {family.type}\n")
        if family.unit:
            parts.append(f"# UNIT {family.name} {family.unit}\n")
        parts.append(family.lines)
    parts.append("# EOF\n")
    return "".join(parts).encode()


_FORMATS = {TEXT: text_format, OPENMETRICS: openmetrics_format}


class FamiliesCollector(Collector):
    """Fixed families as a prometheus_client collector (what its encoders and registries read)."""

    def __init__(self, families: Sequence[Family]) -> None:
        self._families = families

    def collect(self) -> Iterable[Family]:
        return iter(self._families)


class Exposition:
    """One collection's exposition and the bytes served for it, each format made at most once.

    `rendered` is its sample lines, rendered when the exporter had the collection (None leaves
    every format to prometheus_client's encoders); `families` gives its prometheus_client families
    when first needed (those encoders, `name[]` filters, the exporter's registry). `answer`
    assembles a format on its first request and keeps it, gzipped as well once a scraper asks."""

    def __init__(
        self, rendered: Sequence[RenderedFamily] | None, families: Callable[[], Sequence[Family]]
    ) -> None:
        self._rendered = rendered
        self._make_families = families
        self._families: Sequence[Family] | None = None
        self._families_lock = threading.Lock()
        self._bodies: dict[tuple[str, bool], bytes] = {}  # by (content type, gzipped)
        self._bodies_lock = threading.Lock()

    @classmethod
    def of(cls, families: Sequence[Family]) -> Exposition:
        """The exposition of these families, their sample lines rendered now."""
        return cls(render_families(families), lambda: families)

    @property
    def families(self) -> Sequence[Family]:
        with self._families_lock:
            if self._families is None:
                self._families = self._make_families()
            return self._families

    def answer(self, accept: str | None, accept_encoding: str | None) -> tuple[list[tuple[str, str]], bytes]:
        """(headers, body) for a scrape with these Accept and Accept-Encoding headers."""
        encoder, content_type = choose_encoder(accept or "")
        gzipped = gzip_accepted(accept_encoding or "")
        body = self._bodies.get((content_type, gzipped))
        if body is None:
            body = self._body(content_type, gzipped, encoder)
        headers = [("Content-Type", content_type)]
        if gzipped:
            headers.append(("Content-Encoding", "gzip"))
        return headers, body

    def _body(self, content_type: str, gzipped: bool, encoder: Callable[[Any], bytes]) -> bytes:
        with self._bodies_lock:  # one scraper makes it; those asking meanwhile wait for it
            body = self._bodies.get((content_type, gzipped))
            if body is not None:
                return body
            plain = self._bodies.get((content_type, False))
            if plain is None:
                plain = self._keep((content_type, False), self._render(content_type, encoder))
            if not gzipped:
                return plain
            return self._keep((content_type, True), gzip.compress(plain, GZIP_LEVEL, mtime=0))

    def _keep(self, key: tuple[str, bool], body: bytes) -> bytes:
        """Keep `body` for the scrapes to come, unless MAX_KEPT are kept already: the content type
        comes from the client (any OpenMetrics version), so what one collection holds is bounded."""
        if len(self._bodies) < MAX_KEPT:
            self._bodies[key] = body
        return body

    def _render(self, content_type: str, encoder: Callable[[Any], bytes]) -> bytes:
        form = RENDERED_HERE.get(content_type)
        if form is not None and self._rendered is not None:
            return _FORMATS[form](self._rendered)
        return encoder(FamiliesCollector(self.families))


def make_exposition_app(latest: Callable[[], Exposition], registry: Collector) -> WsgiApp:
    """A WSGI app answering a GET of the metrics with `latest()`'s bytes; every other request
    (OPTIONS, other methods, /favicon.ico, `name[]` filters) with prometheus_client's app over
    `registry`, which must collect the same families."""
    fallback = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        query = environ.get("QUERY_STRING")
        if (
            environ["REQUEST_METHOD"] != "GET"
            or environ.get("PATH_INFO") == "/favicon.ico"
            or (query and "name[]" in parse_qs(query))
        ):
            return fallback(environ, start_response)  # type: ignore[no-any-return]
        headers, body = latest().answer(environ.get("HTTP_ACCEPT"), environ.get("HTTP_ACCEPT_ENCODING"))
        start_response("200 OK", headers)
        return [body]

    return app


__all__ = [
    "RENDERED_HERE",
    "Exposition",
    "FamiliesCollector",
    "RenderedFamily",
    "go_floats",
    "label_text",
    "plain_name",
    "make_exposition_app",
    "openmetrics_format",
    "render_families",
    "text_format",
]
