"""Per-series gauges written straight to the Prometheus text format.

``prometheus_client`` builds a ``Sample`` for every value and escapes and sorts
every label pair of every line: about 6 microseconds a value. The forecast gauges
have 11-26 values per series, so at 5,000 series one scrape of ``/metrics`` took
about 1.4 s of the API worker's interpreter, time taken from the requests it
serves. :class:`GaugeText` writes the same text (``tests/api/test_exposition.py``
checks it against ``generate_latest``) from one line template per family, and the
forecast gauges keep each series' lines until its forecast or the steps its
windows pick change (every 5 minutes at most), so a scrape mostly copies lines.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString


@lru_cache(maxsize=65536)
def escape_label_value(value: str) -> str:
    """A label value as the text format writes it (backslash, newline, double quote)."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class GaugeText:
    """One gauge family: its ``# HELP``/``# TYPE`` header and one line per value.

    Label values are given in ``labels`` order and written sorted by label name, as
    ``generate_latest`` writes them. Each line is written when its value is added;
    a source can keep a slice of them (:meth:`since`) and add it again unchanged
    (:meth:`extend`) while its inputs have not changed.
    """

    def __init__(self, name: str, documentation: str, labels: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = tuple(labels)
        doc = documentation.replace("\\", "\\\\").replace("\n", "\\n")
        self.header = f"# HELP {name} {doc}\n# TYPE {name} gauge\n"
        order = sorted(range(len(self.labels)), key=self.labels.__getitem__)
        pairs = ",".join(f'{self.labels[i]}="{{{i}}}"' for i in order)
        # "{{" and "}}" are the label set's own braces once str.format has run
        self._template = (f"{name}{{{{{pairs}}}}} " if pairs else f"{name} ").format
        self.values: list[tuple[tuple[str, ...], float]] = []
        self.lines: list[str] = []
        self._partial = False

    def add(self, label_values: tuple[str, ...], value: float) -> None:
        """One value, its label values in ``labels`` order."""
        self.values.append((label_values, value))
        labels = self._template(*map(escape_label_value, label_values))
        self.lines.append(labels + floatToGoString(value) + "\n")  # type: ignore[no-untyped-call]

    def mark(self) -> int:
        """Where the next line goes (for :meth:`since`)."""
        return len(self.lines)

    def since(self, mark: int) -> Chunk:
        """The text of the lines added after ``mark``."""
        return "".join(self.lines[mark:])

    def extend(self, chunk: Chunk) -> None:
        """Add lines kept from an earlier :meth:`since` (their values are not kept)."""
        self.lines.append(chunk)
        self._partial = True

    def add_series(
        self,
        name: str,
        inputs: tuple[object, Hashable],
        write: Callable[[], None],
        kept: Kept,
        keep: Kept,
    ) -> None:
        """Add the lines of series ``name``, written from ``inputs`` (a forecast object
        and what else they depend on, such as the steps a scrape picks).

        The text in ``kept`` is reused when it was written from the same object (``is``)
        and an equal key; otherwise ``write`` adds the lines afresh. Either way the
        text is recorded in ``keep``, the source's ``kept`` for its next scrape.
        """
        source, key = inputs
        old = kept.get(name)
        if old is not None and old[0] is source and old[1] == key:
            self.extend(old[2])
            keep[name] = old
            return
        mark = self.mark()
        write()
        keep[name] = (source, key, self.since(mark))

    def text(self) -> Iterator[str]:
        """The family in the text format."""
        yield self.header
        yield from self.lines

    def family(self) -> GaugeMetricFamily:
        """The values added with :meth:`add` as a ``prometheus_client`` family.

        Raises:
            ValueError: Lines were added with :meth:`extend` (their values are gone).
        """
        if self._partial:
            raise ValueError(f"{self.name}: kept lines have no values to build a family from")
        family = GaugeMetricFamily(self.name, self.documentation, labels=list(self.labels))
        for label_values, value in self.values:
            family.add_metric(list(label_values), value)
        return family


#: Text lines of one series, as :meth:`GaugeText.since` returns them: one string, so
#: what a source keeps between scrapes is the text itself (about 2 KB a series).
Chunk = str

#: Per series, what its text was written from and the text (:meth:`GaugeText.add_series`).
Kept = dict[str, tuple[object, Hashable, Chunk]]


@dataclass(frozen=True)
class SeriesSelection:
    """The series a scrape asks for (``/metrics?series=...``).

    A name selects the series of that name and, when it has no label set of its own,
    every ``split_by`` member of the family of that name (``checkout_rps_by_route``
    selects ``checkout_rps_by_route{route="/pay"}``).
    """

    names: frozenset[str]

    def __call__(self, series: str) -> bool:
        """Whether ``series`` is selected."""
        if series in self.names:
            return True
        brace = series.find("{")
        return brace > 0 and series[:brace] in self.names

    def unmatched(self, known: Collection[str]) -> list[str]:
        """The names that select none of the ``known`` series, sorted."""
        families = {name[: name.find("{")] for name in known if name.find("{") > 0}
        return sorted(n for n in self.names if n not in known and n not in families)


def merge_kept(
    kept: Kept, keep: Kept, only: SeriesSelection | None, present: Collection[str]
) -> Kept:
    """What a source keeps after a scrape that recorded ``keep``.

    A full scrape (``only`` None) keeps exactly what it wrote. A selective one also
    carries over the text of the series it did not visit (not selected), as long as
    they are still in the view, so scrapes of different selections share the kept
    text and nothing is kept for a series that is gone.
    """
    if only is None:
        return keep
    for name, entry in kept.items():
        if name not in keep and not only(name) and name in present:
            keep[name] = entry
    return keep


class TextFamilies(Protocol):
    """A source of gauge families for one instant (the forecast exporters)."""

    def families(self, now: float, only: SeriesSelection | None = None) -> list[GaugeText]:
        """The families at Unix time ``now``, of the series ``only`` selects (all if None)."""
        ...


def render(sources: Iterable[TextFamilies], now: float, only: SeriesSelection | None = None) -> str:
    """Every family of ``sources`` at ``now``, in the text format."""
    families = [family for source in sources for family in source.families(now, only)]
    return "".join(line for family in families for line in family.text())


class SelectedSeries(Collector):
    """The metrics of ``registry`` with only the samples of the series ``only`` selects.

    Samples without a ``series`` label (pipeline-wide totals) are all kept.
    """

    def __init__(self, registry: Collector, only: SeriesSelection) -> None:
        self.registry = registry
        self.only = only

    def collect(self) -> Iterator[Metric]:
        only = self.only
        for metric in self.registry.collect():
            if not any("series" in sample.labels for sample in metric.samples):
                yield metric
                continue
            kept = Metric(metric.name, metric.documentation, metric.type, metric.unit)
            kept.samples = [
                sample
                for sample in metric.samples
                if "series" not in sample.labels or only(sample.labels["series"])
            ]
            yield kept
