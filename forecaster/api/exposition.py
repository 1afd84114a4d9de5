"""Per-series gauges written straight to the Prometheus text format.

``prometheus_client`` builds a ``Sample`` for every value and escapes and sorts
every label pair of every line: about 6 microseconds a value. The forecast gauges
have 11-26 values per series, so at 5,000 series one scrape of ``/metrics`` took
about 1.3 s of the API worker's interpreter, time taken from the requests it
serves. :class:`GaugeText` writes the same text (``tests/api/test_exposition.py``
checks it against ``generate_latest``) from one line template per family, each
label value escaped once per scrape.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.utils import floatToGoString


def escape_label_value(value: str) -> str:
    """A label value as the text format writes it (backslash, newline, double quote)."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class GaugeText:
    """One gauge family: its ``# HELP``/``# TYPE`` header and one line per value.

    Label values are given in ``labels`` order and written sorted by label name, as
    ``generate_latest`` writes them.
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
        self._template = f"{name}{{{{{pairs}}}}} " if pairs else f"{name} "
        self.values: list[tuple[tuple[str, ...], float]] = []

    def add(self, label_values: tuple[str, ...], value: float) -> None:
        """One value, its label values in ``labels`` order."""
        self.values.append((label_values, value))

    def text(self, escaped: dict[str, str]) -> Iterator[str]:
        """The family in the text format; ``escaped`` caches escaped label values."""
        yield self.header
        template = self._template.format
        for label_values, value in self.values:
            texts = []
            for raw in label_values:
                text = escaped.get(raw)
                if text is None:
                    text = escaped[raw] = escape_label_value(raw)
                texts.append(text)
            yield template(*texts) + floatToGoString(value) + "\n"  # type: ignore[no-untyped-call]

    def family(self) -> GaugeMetricFamily:
        """The same values as a ``prometheus_client`` family."""
        family = GaugeMetricFamily(self.name, self.documentation, labels=list(self.labels))
        for label_values, value in self.values:
            family.add_metric(list(label_values), value)
        return family


class TextFamilies(Protocol):
    """A source of gauge families for one instant (the forecast exporters)."""

    def families(self, now: float) -> list[GaugeText]:
        """The families at Unix time ``now``."""
        ...


def render(sources: Iterable[TextFamilies], now: float) -> str:
    """Every family of ``sources`` at ``now``, in the text format."""
    escaped: dict[str, str] = {}
    families = [family for source in sources for family in source.families(now)]
    return "".join(line for family in families for line in family.text(escaped))
