"""The ``repro`` command.

    repro run NOTEBOOK [--scale ci|local|full] [-p NAME VALUE]... [--output PATH]
    repro scales NOTEBOOK
    repro ledger [--executed DIR] [--out FILE] [--readme README.md] [--check]
    repro data list | repro data fetch NAME [--dest DIR]
    repro book [--scale ci] [--force | --no-execute]
    repro train TASK [...]            (full-scale entry points; run under torchrun)

Errors in the input (unknown scale or parameter, wrong type, missing notebook, bad manifest,
offline data) print one line naming the problem and the fix, and exit with status 2 before any
compute starts. Heavy libraries load only inside the subcommand that needs them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from .entry import report_error, standalone  # noqa: F401  (re-exported)
from .errors import ReproError

#: ``repro train <task>``: task name → "module:function" that adds its parser.
TRAIN_TASKS = {
    "gpt": "repro.lm.train_gpt:add_parser",
    "efficientvit": "repro.vision.train_classifier:add_parser",
}


def _parser(load_train: bool = True) -> argparse.ArgumentParser:
    import repro

    p = argparse.ArgumentParser(prog="repro", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="version", version=f"repro {repro.__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="execute a notebook at a scale (papermill)")
    run.add_argument("notebook", type=Path)
    run.add_argument("--scale", default="ci", help="ci (default), local or full")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                     metavar=("NAME", "VALUE"), help="override one parameter (repeatable)")
    run.add_argument("--output", type=Path, help="executed notebook (.ipynb); default "
                     "build/executed/<paper>/<name>.ipynb")
    run.add_argument("--timeout", type=float, default=None, help="seconds per cell")
    run.add_argument("--threads", type=int, default=None, help="torch threads in the kernel")
    run.add_argument("--log-output", action="store_true", help="stream cell output")

    sc = sub.add_parser("scales", help="print a notebook's scales side by side")
    sc.add_argument("notebook", type=Path)

    led = sub.add_parser("ledger", help="check recorded claims and write the status page")
    led.add_argument("--executed", type=Path, default=Path("build/executed"))
    led.add_argument("--notebooks", type=Path, default=Path("notebooks"))
    led.add_argument("--out", type=Path, help="write the status page (markdown) here")
    led.add_argument("--readme", type=Path, help="update the ledger block of this README")
    led.add_argument("--check", action="store_true",
                     help="exit 1 when a ci claim failed or was not recorded")

    data = sub.add_parser("data", help="manifests of real data sets and checkpoints")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    dsub.add_parser("list", help="list the manifests")
    fetch = dsub.add_parser("fetch", help="download and verify one item")
    fetch.add_argument("name")
    fetch.add_argument("--dest", type=Path)
    fetch.add_argument("--allow-unpinned", action="store_true",
                       help="download an item whose manifest has no sha256 yet")

    bk = sub.add_parser("book", help="execute notebooks (reusing current runs) and build HTML")
    bk.add_argument("--scale", default="ci")
    bk.add_argument("--force", action="store_true", help="re-execute every notebook")
    bk.add_argument("--no-execute", action="store_true",
                    help="build from the executed notebooks already in build/executed")

    train = sub.add_parser("train", help="full-scale training entry points (torchrun)")
    tsub = train.add_subparsers(dest="task", required=True, metavar="TASK")
    for task, target in TRAIN_TASKS.items():
        module, func = target.split(":")
        if not load_train:  # keep `repro --help` fast: torch loads only for `repro train`
            tsub.add_parser(task, help=f"see `repro train {task} --help`")
            continue
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:  # a real missing dependency: say so, do not hide it
                raise
            continue  # this chapter's trainer is not part of the installed tree
        getattr(mod, func)(tsub)
    return p


def _cmd_run(args) -> int:
    from .execute import run_notebook

    overrides = dict(args.parameter)
    if len(overrides) != len(args.parameter):
        raise ReproError("a parameter was given twice with -p; give each name once")
    result = run_notebook(args.notebook, args.scale, overrides, args.output,
                          timeout=args.timeout, threads=args.threads,
                          log_output=args.log_output)
    print(f"{args.notebook} ran at scale {result.scale} in {result.seconds:.1f} s -> "
          f"{result.output}")
    return 0


def _cmd_scales(args) -> int:
    from .scales import format_table, read_scales

    print(format_table(read_scales(args.notebook)))
    return 0


def _cmd_ledger(args) -> int:
    from . import ledger

    rows = ledger.build(args.executed, args.notebooks)
    if args.out:
        from .io import atomic_write_text

        try:
            atomic_write_text(args.out, ledger.status_markdown(rows))
        except (IsADirectoryError, NotADirectoryError) as err:
            raise ReproError(f"--out: {err}") from None
        print(f"wrote {args.out}")
    if args.readme:
        changed = ledger.update_readme(args.readme, rows)
        print(f"{'updated' if changed else 'unchanged'}: {args.readme}")
    width = max((len(r.status) for chapter_rows in rows.values() for r in chapter_rows),
                default=0)
    for paper, chapter_rows in rows.items():
        counts = ledger.summary_counts(chapter_rows)
        print(f"{paper}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
        for r in chapter_rows:
            value = "—" if r.measurement is None else ledger._fmt(r.measurement.value)
            print(f"  {r.status:<{width}}  {r.claim.id} = {value}")
    bad = ledger.failures(rows)
    if args.check and bad:
        for r in bad:
            print(f"FAILED {r.chapter.paper}/{r.claim.id}: {r.status}", file=sys.stderr)
        return 1
    return 0


def _cmd_data(args) -> int:
    from .data.manifest import fetch, list_manifests

    if args.data_command == "list":
        for m in list_manifests():
            where = m.url or "by hand (see manual)"
            print(f"{m.name:<28} {m.kind:<10} {where}")
        return 0
    path = fetch(args.name, args.dest, allow_unpinned=args.allow_unpinned, progressbar=True)
    print(path)
    return 0


def _cmd_book(args) -> int:
    from .book import build

    if args.force and args.no_execute:
        raise ReproError("--force re-executes every notebook and --no-execute executes none: "
                         "give one of them")
    build(Path.cwd(), args.scale, args.force, execute=not args.no_execute)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser(load_train=bool(argv) and argv[0] == "train").parse_args(argv)
    handlers = {"run": _cmd_run, "scales": _cmd_scales, "ledger": _cmd_ledger,
                "data": _cmd_data,
                "book": _cmd_book}
    try:
        if args.command == "train":
            return int(args.func(args) or 0)
        return handlers[args.command](args)
    except ReproError as err:
        return report_error(err)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
