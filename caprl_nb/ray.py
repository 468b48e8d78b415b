"""Ray Data for clusters: caption, ask or extract a column of a ``ray.data.Dataset``.

``pip install 'caprl-nb[ray]'``, then::

    import ray.data
    import caprl_nb.ray

    ds = ray.data.read_parquet("s3://bucket/images/")          # a column of image bytes
    servers = ["http://vllm-0:8000/v1", "http://vllm-1:8000/v1"]     # or one URL
    out = caprl_nb.ray.caption(ds, "image", base_url=servers, concurrency=8)
    out.write_parquet("s3://bucket/captions/")

Each function returns the dataset with the columns of the pandas path with ``details=True``
added (``caption``/``answer``/the schema's fields, ``error``, ``error_type``, ``cached``,
``model``, ``checkpoint``, ``base_url``, ``latency_s``, ``prompt_tokens``,
``completion_tokens``, ``finish_reason``, ``attempts``: :data:`caprl_nb.frames.DETAIL_COLUMNS`);
every input column is kept. It is built on
``Dataset.map_batches`` with a callable class: ``concurrency`` actors, each of which sends its
batches through :func:`caprl_nb.caption` (or :func:`~caprl_nb.ask`,
:func:`~caprl_nb.extract.extract`), so a row is answered exactly as the notebook answers it.

* **Images** are read where Ray reads them: a column of paths (on storage every node sees),
  of URLs, of bytes (Parquet with image bytes), or the arrays of ``ray.data.read_images``.
* **Failed rows stay rows**: their caption is null and ``error``/``error_type`` say why; a
  row never fails the job. A job-wide problem (no server answers, a bad setting) does.
* **Resume**: every actor writes its answers to the result store as they arrive (``cache=True``,
  the default; a writer thread commits whatever has finished within moments), so a job that is
  killed and started again asks only for the rows it had not finished. On one machine all
  actors share ``$CAPRL_HOME``'s store (SQLite in WAL mode takes several processes; writes
  retry a locked store). On a multi-node cluster each node keeps its own store, unless
  CAPRL_HOME is on storage all nodes share; merge a node's store into yours with
  ``caprl-nb store import NODE.sqlite3`` so the notebook's gallery and re-runs find its
  answers. A store on a network filesystem works, with a rollback journal (slower; see
  :mod:`caprl_nb.store`).
* **Lost workers**: Ray Data restarts a dead actor and retries its batch (its
  ``max_restarts``/``max_task_retries``); the retried batch finds in the store what the dead
  actor had finished.
* **Settings** given to the call (``base_url``, ``model``, ``api_key``, ``home``, timeouts,
  ...) travel with the job; anything else is read on the worker: its ``CAPRL_*`` environment
  (set it with ``runtime_env={"env_vars": {...}}``), never the notebook's :func:`~caprl_nb.configure`.
  ``base_url`` is passed through as given: one URL, or several servers serving the same
  checkpoint (a list, or comma-separated), which every actor spreads its rows over.

The order of the rows follows Ray Data's (set
``ray.data.DataContext.get_current().execution_options.preserve_order = True`` to keep the
input order); every input column travels with its result, so keep an id column to join on.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pandas as pd

from caprl_nb.config import resolve_settings
from caprl_nb.errors import CapRLWarning, ColumnNotFoundError, ConfigError

if TYPE_CHECKING:
    import ray.data

__all__ = ["ask", "caption", "extract"]

# Rows per batch an actor sends through caprl_nb at once: the unit that is retried when a
# worker is lost, and the most requests one actor has in flight (with ``in_flight``).
DEFAULT_BATCH_SIZE = 256
# Options extract takes among its settings (how PDF rows are expanded into pages).
_EXTRACT_OPTIONS = frozenset({"max_pdf_pages", "max_pdf_bytes"})
# The failed-row summary each batch would warn: the rows carry their errors instead.
_FAILED_ROWS_WARNING = r"\d+ row\(s\) failed"


def caption(
    ds: ray.data.Dataset,
    column: str,
    *,
    base_url: Any = None,
    concurrency: int | tuple[int, int] = 1,
    batch_size: int = DEFAULT_BATCH_SIZE,
    in_flight: int | None = None,
    ray_args: dict[str, Any] | None = None,
    **options: Any,
) -> ray.data.Dataset:
    """``ds`` with a ``caption`` column and the details columns of :func:`caprl_nb.caption`.

    ``column``: the column of images (paths, URLs, bytes, or ``read_images`` arrays).
    ``concurrency``: how many actors (Ray's meaning: an int, or ``(min, max)`` to autoscale);
    ``in_flight``: requests each actor keeps in flight (caprl_nb's ``concurrency`` setting; by
    default ``min(batch_size, CAPRL_CONCURRENCY or 256)``). ``batch_size``: rows per batch.
    ``ray_args``: more arguments for ``Dataset.map_batches`` (``num_cpus``, ``memory``,
    ``max_restarts``, ``runtime_env``, ...). ``options``: those of :func:`caprl_nb.caption`
    (``prompt``, ``max_tokens``, ``seed``, ``cache``, ``model``, ``home``, ...), except
    ``details``, ``errors`` and ``progress``: every row is returned with its details.
    """
    return _map(ds, column, "caption", (), base_url, concurrency, batch_size, in_flight, ray_args, options)


def ask(
    ds: ray.data.Dataset,
    column: str,
    question: str,
    *,
    base_url: Any = None,
    concurrency: int | tuple[int, int] = 1,
    batch_size: int = DEFAULT_BATCH_SIZE,
    in_flight: int | None = None,
    ray_args: dict[str, Any] | None = None,
    **options: Any,
) -> ray.data.Dataset:
    """``ds`` with an ``answer`` column (``question`` about every image); see :func:`caption`."""
    return _map(ds, column, "ask", (question,), base_url, concurrency, batch_size, in_flight, ray_args, options)


def extract(
    ds: ray.data.Dataset,
    column: str,
    schema: Any,
    *,
    base_url: Any = None,
    concurrency: int | tuple[int, int] = 1,
    batch_size: int = DEFAULT_BATCH_SIZE,
    in_flight: int | None = None,
    ray_args: dict[str, Any] | None = None,
    **options: Any,
) -> ray.data.Dataset:
    """``ds`` with one column per top-level field of ``schema`` plus the details columns of
    :func:`caprl_nb.extract.extract` (a PDF row becomes one row per page, with ``page``);
    see :func:`caption`. The schema must be picklable (a JSON schema dict always is)."""
    return _map(ds, column, "extract", (schema,), base_url, concurrency, batch_size, in_flight, ray_args, options)


def _map(
    ds: ray.data.Dataset,
    column: str,
    kind: str,
    args: tuple[Any, ...],
    base_url: Any,
    concurrency: int | tuple[int, int],
    batch_size: int,
    in_flight: int | None,
    ray_args: dict[str, Any] | None,
    options: dict[str, Any],
) -> ray.data.Dataset:
    fixed = sorted({"details", "errors", "progress"} & set(options))
    if fixed:
        msg = (
            f"{', '.join(fixed)} cannot be set here: a Ray job returns every row with its "
            "details and error columns, and has no progress bar of caprl_nb's."
        )
        raise ConfigError(msg)
    if "concurrency" in options:
        msg = "Pass in_flight= for the requests each actor keeps in flight; concurrency= is how many actors."
        raise ConfigError(msg)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if base_url is not None:
        options = {**options, "base_url": base_url}
    if in_flight is not None:
        options = {**options, "concurrency": in_flight}
    # Checked here, before a job starts (a bad setting would fail every actor); the values the
    # workers use are resolved on the workers, from what travels and their environment.
    resolve_settings(**_settings_of(kind, options))
    import ray.data

    if isinstance(concurrency, tuple):
        compute = ray.data.ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1])
    else:
        compute = ray.data.ActorPoolStrategy(size=concurrency)
    extra = dict(ray_args or {})
    # One CPU per actor, Ray's default for a task: the image work (decode, resize, encode) is
    # the actor's; leave CPUs for the tasks that read the dataset (num_cpus= in ray_args).
    extra.setdefault("num_cpus", 1)
    return ds.map_batches(
        _Answerer,
        batch_size=batch_size,
        batch_format="pandas",
        compute=compute,
        fn_constructor_kwargs={
            "kind": kind, "column": column, "args": args, "options": options, "batch_size": batch_size,
        },
        **extra,
    )


def _settings_of(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` less the function's own parameters (prompt, max_tokens, cache, ...): the
    settings, where an unknown name is a ConfigError naming the known ones."""
    own = set(inspect.signature(_function(kind)).parameters)
    if kind == "extract":
        own |= _EXTRACT_OPTIONS
    return {k: v for k, v in options.items() if k not in own}


def _function(kind: str) -> Callable[..., pd.Series | pd.DataFrame]:
    """The pandas-path function a job of this kind runs on each batch."""
    from caprl_nb import frames

    if kind == "extract":
        from caprl_nb.extract import extract

        return extract
    return frames.ask if kind == "ask" else frames.caption


class _Answerer:
    """One Ray actor: its settings resolved once, then one caprl_nb batch per Ray batch."""

    def __init__(
        self, kind: str, column: str, args: tuple[Any, ...], options: dict[str, Any], batch_size: int
    ) -> None:
        self.function = _function(kind)
        self.column = column
        self.args = args
        self.options = dict(options)
        settings = _settings_of(kind, self.options)
        if "concurrency" not in settings:
            # One batch at a time per actor: more requests in flight than rows would be idle.
            resolved = resolve_settings(**settings)
            self.options["concurrency"] = min(batch_size, resolved.concurrency)
        else:
            resolve_settings(**settings)  # a bad setting fails the actor at its start

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        if self.column not in batch.columns:
            raise ColumnNotFoundError(self.column, list(batch.columns))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_FAILED_ROWS_WARNING, category=CapRLWarning)
            result = self.function(
                batch[self.column], *self.args, details=True, errors="coerce", progress=False,
                **self.options,
            )
        frame: pd.DataFrame = result.to_frame() if isinstance(result, pd.Series) else result
        clash = sorted(set(frame.columns) & set(batch.columns))
        if clash:
            msg = (
                f"The dataset already has column(s) {clash}, which the result adds. Rename them "
                "first (ds.rename_columns({...}))."
            )
            raise ConfigError(msg)
        if frame.index.equals(batch.index):
            joined = pd.concat([batch, frame], axis=1)
        else:
            # Rows that became several (a PDF's pages): each input row once per result.
            rows = batch.loc[frame.index].reset_index(drop=True)
            joined = pd.concat([rows, frame.reset_index(drop=True)], axis=1)
        return joined
