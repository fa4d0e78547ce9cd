"""``python -m batch_processor``: watch a checkpointed run from another terminal.

Commands (each reads the checkpoint read-only, through `batch_processor.watch`):

* ``status PATH [--json]``: the run's state, times, counts per processor and last
  failures, as a table or as one JSON object;
* ``export PATH [--format csv|jsonl] [--output FILE]``: one row per recorded handle;
* ``dashboard PATH [--port N]``: a local web page that shows the status and refreshes
  itself (Python 3; see `batch_processor.dashboard`).

A path that is not a checkpoint exits with status 2 and a message that says why.
"""
from __future__ import absolute_import, division, print_function

import argparse
import csv
import errno
import io
import json
import os
import sys
import time

import six

from .checkpoint import CheckpointError
from .interface import safe_repr, safe_str

__all__ = ["main"]

PROGRAM = "python -m batch_processor"
COLUMNS = ("processor", "descriptor", "outcome", "result", "error", "duration")
#: How long a descriptor or result repr may be in an export (characters).
EXPORT_LIMIT = 2000


def main(argv=None):
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    args = _parser().parse_args(argv)
    try:
        return args.command(args)
    except CheckpointError as exc:
        print("%s %s: error: %s" % (PROGRAM, args.name, exc), file=sys.stderr)
        return 2
    except IOError as exc:  # BrokenPipeError on Python 3: `... | head` stopped reading
        if exc.errno != errno.EPIPE:
            raise
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
            pass
        return 0


def _parser():
    parser = argparse.ArgumentParser(
        prog=PROGRAM, description="Watch a run that records a checkpoint (checkpoint=PATH), "
        "while it runs or after it ended. The file is only read, never changed.")
    commands = parser.add_subparsers(metavar="COMMAND")
    commands.required = True
    status = commands.add_parser(
        "status", help="the run's state, counts per processor and last failures")
    status.add_argument("path", metavar="PATH", help="the checkpoint file")
    status.add_argument("--json", action="store_true",
                        help="print one JSON object (keys: state, pid, started, updated, "
                             "processors, failures)")
    status.set_defaults(command=_status, name="status")
    export = commands.add_parser(
        "export", help="one row per recorded handle, for pandas or a spreadsheet")
    export.add_argument("path", metavar="PATH", help="the checkpoint file")
    export.add_argument("--format", choices=("csv", "jsonl"), default="csv",
                        help="CSV with a header, or one JSON object per line (default: csv)")
    export.add_argument("--output", metavar="FILE", default=None,
                        help="write to FILE instead of the standard output")
    export.set_defaults(command=_export, name="export")
    dashboard = commands.add_parser(
        "dashboard", help="a web page on 127.0.0.1 that shows the status and refreshes itself")
    dashboard.add_argument("path", metavar="PATH", help="the checkpoint file")
    dashboard.add_argument("--port", type=int, default=8765,
                           help="the port to listen on, on 127.0.0.1 only (default: "
                                "%(default)s; 0: any free port)")
    dashboard.set_defaults(command=_dashboard, name="dashboard")
    return parser


# -- status --------------------------------------------------------------------------


def _status(args):
    from .watch import read_checkpoint
    status = read_checkpoint(args.path)
    if args.json:
        print(json.dumps(status.as_dict(), sort_keys=True))
    else:
        print(format_status(status))
    return 0


def format_status(status, now=None):
    """The readable text ``status`` prints for a `CheckpointStatus`."""
    now = time.time() if now is None else now
    state = status.state
    if status.pid is not None:
        state += " (pid %d)" % status.pid if status.state == "running" else " (last pid %d)" % status.pid
    lines = ["checkpoint:  %s" % status.path, "state:       %s" % state,
             "started:     %s" % _when(status.started, now),
             "last record: %s" % _when(status.updated, now), ""]
    header = ("processor", "fed", "in flight", "ok", "failed", "cancelled")
    rows = [header] + [(p.name, p.fed, p.in_flight, p.succeeded, p.failed, p.cancelled)
                       for p in status.processors]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    for row in rows:
        cells = [str(row[0]).ljust(widths[0])] + [str(v).rjust(w) for v, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
    if status.failures:
        lines += ["", "last failures (oldest first):"]
        lines += ["  %s %s: %s" % (f.processor, f.descriptor, f.error) for f in status.failures]
    return "\n".join(lines)


def _when(seconds, now):
    if seconds is None:
        return "not recorded"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))
    return "%s (%s ago)" % (stamp, age(now - seconds))


def age(seconds):
    """``"3 s"``, ``"4 min 2 s"``, ``"2 h 5 min"``."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return "%d s" % seconds
    if seconds < 3600:
        return "%d min %d s" % divmod(seconds, 60)
    return "%d h %d min" % (seconds // 3600, seconds % 3600 // 60)


# -- export --------------------------------------------------------------------------


def export_rows(path):
    """Yield one dict per recorded handle, with the keys `COLUMNS` (strings and numbers)."""
    from .watch import durations, read_checkpoint
    status = read_checkpoint(path)
    seconds = durations(path)
    for name, key, handle in status.recorded(lenient=True):
        future = handle.future
        row = {"processor": name, "descriptor": safe_repr(handle.descriptor, EXPORT_LIMIT),
               "result": "", "error": "", "duration": seconds.get(key, "")}
        if future.cancelled():
            row["outcome"] = "cancelled"
        elif future.exception() is not None:
            row["outcome"] = "failed"
            row["error"] = safe_str(future.exception())
        else:
            row["outcome"] = "ok"
            row["result"] = safe_repr(future.result(), EXPORT_LIMIT)
        yield row


def _export(args):
    rows = export_rows(args.path)
    first = next(rows, None)  # errors (not a checkpoint) before any output is opened
    if args.output is None:
        out = sys.stdout
        close = False
    else:
        try:
            if six.PY2:
                out = open(args.output, "wb" if args.format == "csv" else "w")
            else:
                out = io.open(args.output, "w", encoding="utf-8", newline="")
        except (IOError, OSError) as exc:
            print("%s export: error: --output %s cannot be written (%s)"
                  % (PROGRAM, args.output, exc), file=sys.stderr)
            return 2
        close = True
    try:
        if args.format == "csv":
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(COLUMNS)
            if first is not None:
                writer.writerow([_cell(first[c]) for c in COLUMNS])
                for row in rows:
                    writer.writerow([_cell(row[c]) for c in COLUMNS])
        elif first is not None:
            out.write(json.dumps(first, sort_keys=True) + "\n")
            for row in rows:
                out.write(json.dumps(row, sort_keys=True) + "\n")
    finally:
        if close:
            out.close()
    return 0


def _cell(value):
    if six.PY2 and isinstance(value, six.text_type):
        return value.encode("utf-8")
    return value


# -- dashboard -----------------------------------------------------------------------


def _dashboard(args):
    if sys.version_info[0] < 3:
        print("%s dashboard: error: the dashboard needs Python 3 (this is Python %d.%d); run "
              "`python3 -m batch_processor dashboard %s` (status and export work here)"
              % ((PROGRAM,) + sys.version_info[:2] + (args.path,)), file=sys.stderr)
        return 2
    from .dashboard import serve
    try:
        return serve(args.path, args.port)
    except KeyboardInterrupt:  # Ctrl-C before the server listened
        return 0
