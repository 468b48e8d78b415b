"""Charts and documents drawn from known data, so an extraction can be scored against the truth.

Needs matplotlib (``pip install caprl-nb[synthetic]``), imported on first use; figures are
drawn on ``matplotlib.figure.Figure`` objects, never pyplot, so nothing touches global state
or a display. Everything is seeded: the same call writes the same files and truths.

* :func:`charts`: bar, line, scatter, pie and stacked-bar charts of several sizes, styles and
  legends. The truth is a table in :func:`~caprl_nb.extract.chart_table`'s layout (x column
  first, one column per series, ``attrs`` with title, axis labels and units).
* :func:`documents`: invoices and forms as PNG (optionally "scanned": grey, slightly rotated,
  noisy). The truth is a dict of field values matching :data:`INVOICE_SCHEMA` /
  :data:`FORM_SCHEMA`.
* :func:`pdf`: a multi-page PDF of invoices and forms (one truth row per page).

Each returns a DataFrame with an ``image`` column (the file path), so
``frame.caprl.chart_table("image")`` or ``frame.caprl.extract("image", INVOICE_SCHEMA)``
runs on it directly, and a ``truth`` column for :mod:`caprl_nb.extract.scoring`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from caprl_nb.errors import ConfigError

__all__ = ["CHART_KINDS", "FORM_SCHEMA", "INVOICE_SCHEMA", "charts", "documents", "pdf"]

CHART_KINDS = ("bar", "line", "scatter", "pie", "stacked_bar")

# Every string is bounded, so a model that loops inside a string is stopped by the grammar.
INVOICE_SCHEMA: dict[str, Any] = {
    "title": "invoice",
    "type": "object",
    "properties": {
        "invoice_number": {"type": "string", "maxLength": 40},
        "date": {"type": "string", "maxLength": 20, "description": "as printed, YYYY-MM-DD"},
        "vendor": {"type": "string", "maxLength": 100},
        "customer": {"type": "string", "maxLength": 100},
        "total": {"type": "number"},
        "currency": {"type": "string", "maxLength": 3, "description": "ISO code, e.g. USD"},
    },
    "required": ["invoice_number", "date", "vendor", "customer", "total", "currency"],
}

FORM_SCHEMA: dict[str, Any] = {
    "title": "membership_form",
    "type": "object",
    "properties": {
        "full_name": {"type": "string", "maxLength": 100},
        "date_of_birth": {"type": "string", "maxLength": 20},
        "email": {"type": "string", "maxLength": 100},
        "phone": {"type": "string", "maxLength": 30},
        "member_id": {"type": "integer"},
        "newsletter": {"type": "boolean"},
    },
    "required": ["full_name", "date_of_birth", "email", "phone", "member_id", "newsletter"],
}

_SIZES = ((4.0, 3.0), (6.4, 4.8), (8.0, 4.5), (5.0, 5.0))
_STYLES = ("default", "ggplot", "seaborn-v0_8-whitegrid", "bmh", "grayscale")
_CATEGORIES = (
    ("Year", [str(y) for y in range(2016, 2025)]),
    ("Quarter", ["Q1", "Q2", "Q3", "Q4"]),
    ("Region", ["North", "South", "East", "West", "Central"]),
    ("Month", ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug"]),
    ("Country", ["Brazil", "Canada", "India", "Japan", "Kenya", "Norway"]),
)
_MEASURES = (
    ("Revenue", "USD millions", 10, 900, 0),
    ("Market share", "%", 1, 60, 1),
    ("Temperature change", "°C", -3, 5, 1),
    ("Units sold", "thousands", 100, 5000, 0),
    ("Profit", "EUR thousands", -200, 800, 0),
)
_SERIES = ("Product A", "Product B", "Product C", "Online", "Retail", "2023", "2024")
_VENDORS = ("Acme Supplies Ltd", "Northwind Traders", "Globex Corporation", "Initech GmbH",
            "Umbrella Logistics", "Stark Paper Co")
_CUSTOMERS = ("Wayne Enterprises", "Tyrell Corp", "Cyberdyne Systems", "Soylent Foods",
              "Hooli Inc", "Vandelay Industries")
_ITEMS = ("Printer paper A4", "Toner cartridge", "Office chair", "USB-C cable", "Desk lamp",
          "Consulting hours", "Shipping", "Notebook pack")
_NAMES = ("Maria Garcia", "Wei Zhang", "Amara Okafor", "Lukas Novak", "Priya Raman",
          "John O'Neill", "Sofia Rossi")
_CURRENCIES = (("USD", "$"), ("EUR", "€"), ("GBP", "£"))


def _figure(size: tuple[float, float], dpi: int) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # an optional dependency: say how to get it
        msg = "caprl_nb.extract.groundtruth draws with matplotlib: pip install 'caprl-nb[synthetic]'."
        raise ConfigError(msg) from exc
    return Figure(figsize=size, dpi=dpi)


def _style(name: str) -> Any:
    import matplotlib.style

    available = set(matplotlib.style.available) | {"default"}
    return matplotlib.style.context(name if name in available else "default")


def _values(rng: np.random.Generator, n: int, low: float, high: float, decimals: int) -> list[float]:
    return [round(float(v), decimals) for v in rng.uniform(low, high, n)]


def _format(value: float, decimals: int) -> str:
    return f"{value:,.{decimals}f}"


def _chart(kind: str, i: int, rng: np.random.Generator, path: Path) -> dict[str, Any]:
    x_label, categories = _CATEGORIES[i % len(_CATEGORIES)]
    measure, units, low, high, decimals = _MEASURES[(i // 2) % len(_MEASURES)]
    size = _SIZES[i % len(_SIZES)]
    dpi = (80, 100, 120)[i % 3]
    n = int(rng.integers(3, len(categories) + 1))
    x: list[Any] = categories[:n]
    n_series = 1 if kind in ("pie", "scatter") else int(rng.integers(1, 4))
    if kind == "stacked_bar":
        n_series = max(2, n_series)
        low = max(low, 1)
    names = list(rng.choice(_SERIES, n_series, replace=False)) if n_series > 1 else [measure]
    series = {name: _values(rng, n, low, high, decimals) for name in names}
    title = f"{measure} by {x_label.lower()}"
    y_label = f"{measure} ({units})"
    if kind == "pie":
        raw = rng.uniform(5, 40, n)
        shares = [round(float(v), 1) for v in raw / raw.sum() * 100]
        shares[-1] = round(100 - sum(shares[:-1]), 1)
        series = {"Share": shares}
        title, y_label, units = f"Share by {x_label.lower()}", "Share (%)", "%"
    if kind == "scatter":
        x_label, y_label = "Advertising spend (USD thousands)", f"{measure} ({units})"
        x = sorted(_values(rng, n + 3, 1, 100, 1))
        slope = (high - low) / 100
        series = {measure: [round(low + slope * v + float(rng.normal(0, (high - low) / 20)), decimals)
                            for v in x]}
        title = f"{measure} vs advertising spend"
    labelled = bool(i % 2 == 0 and kind in ("bar", "line", "stacked_bar"))
    with _style(_STYLES[i % len(_STYLES)]):
        fig = _figure(size, dpi)
        ax = fig.subplots()
        positions = np.arange(len(x))
        if kind == "bar":
            width = 0.8 / len(series)
            for k, (name, ys) in enumerate(series.items()):
                bars = ax.bar(positions + (k - (len(series) - 1) / 2) * width, ys, width, label=name)
                if labelled:
                    ax.bar_label(bars, labels=[_format(v, decimals) for v in ys], fontsize=7)
            ax.set_xticks(positions, x)
        elif kind == "stacked_bar":
            bottom = np.zeros(len(x))
            for name, ys in series.items():
                bars = ax.bar(positions, ys, 0.6, bottom=bottom, label=name)
                if labelled:
                    ax.bar_label(bars, labels=[_format(v, decimals) for v in ys],
                                 label_type="center", fontsize=7)
                bottom += np.asarray(ys)
            ax.set_xticks(positions, x)
        elif kind == "line":
            for k, (name, ys) in enumerate(series.items()):
                ax.plot(positions, ys, marker="os^"[k % 3], label=name)
                if labelled:
                    for px, py in zip(positions, ys):
                        ax.annotate(_format(py, decimals), (px, py), textcoords="offset points",
                                    xytext=(0, 5), ha="center", fontsize=7)
            ax.set_xticks(positions, x)
        elif kind == "scatter":
            ys = next(iter(series.values()))
            ax.scatter(x, ys)
        else:  # pie
            ax.pie(series["Share"], labels=x, autopct="%1.1f%%", startangle=90, counterclock=False)
            ax.set_aspect("equal")
        if kind != "pie":
            ax.set_xlabel(x_label)
            ax.set_ylabel(y_label)
            if len(series) > 1:
                ax.legend(loc=("best", "upper left", "lower right")[i % 3], fontsize=8)
        ax.set_title(title)
        fig.tight_layout()
        fig.savefig(path)
    table = pd.DataFrame({x_label: x, **series})
    if kind != "scatter":
        table[x_label] = table[x_label].astype("string")
    table = table.astype({name: "Float64" for name in series})
    table.attrs = {"title": title, "x_label": x_label if kind != "pie" else "",
                   "y_label": y_label if kind != "pie" else "", "units": units}
    return {"image": str(path), "kind": kind, "title": title, "x_label": table.attrs["x_label"],
            "y_label": table.attrs["y_label"], "units": units, "truth": table}


def charts(folder: str | Path, n: int = 10, *, seed: int = 0,
           kinds: tuple[str, ...] = CHART_KINDS) -> pd.DataFrame:
    """Draw ``n`` charts (cycling through ``kinds``) as PNGs under ``folder``.

    Returns one row per chart: ``image`` (path), ``kind``, ``title``, ``x_label``, ``y_label``,
    ``units`` and ``truth`` (the table that was plotted, in chart_table's layout).
    """
    unknown = set(kinds) - set(CHART_KINDS)
    if unknown or not kinds:
        raise ConfigError(f"kinds must be among {CHART_KINDS}, not {sorted(unknown) or kinds!r}.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = [_chart(kinds[i % len(kinds)], i, rng, folder / f"chart{i:03d}_{kinds[i % len(kinds)]}.png")
            for i in range(n)]
    return pd.DataFrame(rows)


# -- documents -------------------------------------------------------------------------------

_Lines = list[tuple[str, int, float]]  # (item, quantity, unit price)


def _invoice_fields(rng: np.random.Generator, i: int) -> tuple[dict[str, Any], _Lines, str]:
    code, symbol = _CURRENCIES[i % len(_CURRENCIES)]
    lines = []
    for item in rng.choice(_ITEMS, int(rng.integers(2, 6)), replace=False):
        lines.append((str(item), int(rng.integers(1, 20)), round(float(rng.uniform(2, 400)), 2)))
    total = round(sum(q * p for _, q, p in lines), 2)
    month, day = int(rng.integers(1, 13)), int(rng.integers(1, 29))
    fields = {
        "invoice_number": f"INV-{2020 + i % 5}-{int(rng.integers(1, 10000)):04d}",
        "date": f"{2020 + i % 5}-{month:02d}-{day:02d}",
        "vendor": str(_VENDORS[int(rng.integers(len(_VENDORS)))]),
        "customer": str(_CUSTOMERS[int(rng.integers(len(_CUSTOMERS)))]),
        "total": total,
        "currency": code,
    }
    return fields, lines, symbol


def _draw_invoice(fig: Any, fields: dict[str, Any], lines: _Lines, symbol: str) -> None:
    fig.text(0.08, 0.94, fields["vendor"], fontsize=16, weight="bold")
    fig.text(0.08, 0.915, "12 Harbour Street, Springfield", fontsize=9)
    fig.text(0.70, 0.94, "INVOICE", fontsize=20, weight="bold")
    fig.text(0.62, 0.89, f"Invoice #: {fields['invoice_number']}", fontsize=10)
    fig.text(0.62, 0.87, f"Date: {fields['date']}", fontsize=10)
    fig.text(0.08, 0.84, "Bill to:", fontsize=10, weight="bold")
    fig.text(0.08, 0.82, fields["customer"], fontsize=11)
    y = 0.75
    for x, head in ((0.08, "Description"), (0.52, "Qty"), (0.62, "Unit price"), (0.80, "Amount")):
        fig.text(x, y, head, fontsize=10, weight="bold")
    fig.add_artist(_line(fig, y - 0.008))
    for item, qty, price in lines:
        y -= 0.03
        fig.text(0.08, y, item, fontsize=10)
        fig.text(0.52, y, str(qty), fontsize=10)
        fig.text(0.62, y, f"{symbol}{price:,.2f}", fontsize=10)
        fig.text(0.80, y, f"{symbol}{qty * price:,.2f}", fontsize=10)
    fig.add_artist(_line(fig, y - 0.015))
    fig.text(0.62, y - 0.045, "Total:", fontsize=12, weight="bold")
    fig.text(0.80, y - 0.045, f"{symbol}{fields['total']:,.2f} {fields['currency']}", fontsize=12,
             weight="bold")
    fig.text(0.08, 0.08, "Payment due within 30 days. Thank you for your business.", fontsize=9)


def _line(fig: Any, y: float) -> Any:
    from matplotlib.lines import Line2D

    return Line2D([0.08, 0.92], [y, y], transform=fig.transFigure, color="black", linewidth=0.8)


def _form_fields(rng: np.random.Generator, i: int) -> dict[str, Any]:
    name = str(_NAMES[int(rng.integers(len(_NAMES)))])
    user = name.lower().replace(" ", ".").replace("'", "")
    return {
        "full_name": name,
        "date_of_birth": f"{int(rng.integers(1950, 2005))}-{int(rng.integers(1, 13)):02d}-"
                         f"{int(rng.integers(1, 29)):02d}",
        "email": f"{user}@example.org",
        "phone": f"+1 555 {int(rng.integers(100, 1000))} {int(rng.integers(1000, 10000))}",
        "member_id": int(rng.integers(10000, 99999)),
        "newsletter": bool(i % 2),
    }


def _draw_form(fig: Any, fields: dict[str, Any]) -> None:
    from matplotlib.patches import Rectangle

    fig.text(0.08, 0.93, "Membership Application Form", fontsize=18, weight="bold")
    fig.text(0.08, 0.905, "Please write clearly in block capitals.", fontsize=9, style="italic")
    rows = (("Full name", fields["full_name"]), ("Date of birth", fields["date_of_birth"]),
            ("Email", fields["email"]), ("Phone", fields["phone"]),
            ("Member ID", str(fields["member_id"])))
    y = 0.84
    for label, value in rows:
        fig.text(0.08, y, label, fontsize=11)
        fig.add_artist(Rectangle((0.32, y - 0.012), 0.58, 0.04, transform=fig.transFigure,
                                 fill=False, linewidth=0.8))
        fig.text(0.34, y, value, fontsize=12, family="monospace")
        y -= 0.07
    fig.text(0.08, y, "Subscribe to the newsletter", fontsize=11)
    ticks = ((0.45, "Yes", fields["newsletter"]), (0.60, "No", not fields["newsletter"]))
    for x, text, ticked in ticks:
        fig.add_artist(Rectangle((x, y - 0.004), 0.022, 0.022 * 0.77, transform=fig.transFigure,
                                 fill=False, linewidth=0.8))
        if ticked:
            fig.text(x + 0.003, y - 0.002, "X", fontsize=11, weight="bold")
        fig.text(x + 0.03, y, text, fontsize=11)
    fig.text(0.08, 0.1, "Signature: ______________________", fontsize=11)


def _document(kind: str, i: int, rng: np.random.Generator) -> tuple[Any, dict[str, Any]]:
    fig = _figure((8.5, 11), 100)
    if kind == "invoice":
        fields, lines, symbol = _invoice_fields(rng, i)
        _draw_invoice(fig, fields, lines, symbol)
    else:
        fields = _form_fields(rng, i)
        _draw_form(fig, fields)
    return fig, fields


def _scan(path: Path, rng: np.random.Generator) -> None:
    """Make a clean render look scanned: grey, a slight tilt, speckle noise."""
    from PIL import Image

    with Image.open(path) as img:
        grey = img.convert("L").rotate(float(rng.uniform(-1.5, 1.5)), expand=False, fillcolor=255,
                                       resample=Image.Resampling.BICUBIC)
    noise = rng.normal(0, 12, (grey.height, grey.width)).astype(np.int16)
    pixels = np.asarray(grey, dtype=np.int16) + noise
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)


def documents(
    folder: str | Path, n: int = 4, *, seed: int = 0, scanned: bool | None = None
) -> pd.DataFrame:
    """Draw ``n`` documents (alternating invoice and form) as Letter-size PNGs under ``folder``.

    ``scanned``: True makes every page look scanned, False none; None (default) every other
    pair. Returns one row per document: ``image``, ``kind`` (``"invoice"`` or ``"form"``),
    ``scanned`` and ``truth`` (the field values; :data:`INVOICE_SCHEMA` / :data:`FORM_SCHEMA`).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        kind = ("invoice", "form")[i % 2]
        fig, fields = _document(kind, i, rng)
        path = folder / f"doc{i:03d}_{kind}.png"
        fig.savefig(path)
        looks_scanned = bool((i // 2) % 2) if scanned is None else scanned
        if looks_scanned:
            _scan(path, rng)
        rows.append({"image": str(path), "kind": kind, "scanned": looks_scanned, "truth": fields})
    return pd.DataFrame(rows)


def pdf(path: str | Path, pages: int = 3, *, seed: int = 0) -> pd.DataFrame:
    """Write a ``pages``-page PDF (invoice, form, invoice, ...) at ``path``.

    Returns one row per page: ``image`` (the PDF's path, the same on every row), ``page``
    (1-based), ``kind`` and ``truth`` (the page's field values).
    """
    if not isinstance(pages, int) or pages < 1:
        raise ConfigError(f"pages must be a positive integer, not {pages!r}.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _figure((1, 1), 72)  # the helpful ImportError before importing the PDF backend
    from matplotlib.backends.backend_pdf import PdfPages

    rng = np.random.default_rng(seed)
    rows = []
    # No CreationDate: the same call writes the same bytes (and hits the same store keys).
    metadata = {"Title": "caprl_nb synthetic documents", "CreationDate": None}
    with PdfPages(path, metadata=metadata) as out:
        for i in range(pages):
            kind = ("invoice", "form")[i % 2]
            fig, fields = _document(kind, i, rng)
            out.savefig(fig)
            rows.append({"image": str(path), "page": i + 1, "kind": kind, "truth": fields})
    return pd.DataFrame(rows)

