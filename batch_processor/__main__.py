"""``python -m batch_processor``: watch a checkpointed run from another terminal.

Commands (each reads the checkpoint read-only, through `batch_processor.watch`):

* ``status PATH [--json]``: the run's state, times, counts per processor, the shared
  resources' units in use (if it uses any) and last failures, as a table or as one
  JSON object;
* ``export PATH [--format csv|jsonl] [--output FILE]``: one row per recorded handle;
* ``dashboard PATH [--port N]``: a local web page that shows the status and refreshes
  itself (Python 3; see `batch_processor.dashboard`), until Ctrl-C.

A path that is not a checkpoint exits with status 2 and a message that says why. This
is the program: the text and rows it prints are made by `batch_processor.cli`.
"""
from __future__ import absolute_import, division, print_function

import argparse
import errno
import io
import json
import os
import signal
import sys
import threading

import six

from batch_processor.checkpoint import CheckpointError
from batch_processor.cli import PROGRAM, export_rows, format_status, write_export

__all__ = ["main"]


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
                             "processors, failures; and resources, if the run's processors "
                             "use shared resources)")
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


def _status(args):
    from batch_processor.watch import read_checkpoint
    status = read_checkpoint(args.path)
    if args.json:
        print(json.dumps(status.as_dict(), sort_keys=True))
    else:
        text = format_status(status)
        if six.PY2 and isinstance(text, six.text_type):  # names and messages from JSON
            text = text.encode(getattr(sys.stdout, "encoding", None) or "utf-8", "replace")
        print(text)
    return 0


def _export(args):
    rows = export_rows(args.path)
    first = next(rows, None)  # errors (not a checkpoint) before any output is opened
    rows = _chain(first, rows)
    if args.output is None:
        write_export(rows, sys.stdout, args.format)
        return 0
    try:
        if six.PY2:
            out = open(args.output, "wb" if args.format == "csv" else "w")
        else:
            out = io.open(args.output, "w", encoding="utf-8", newline="")
    except (IOError, OSError) as exc:
        print("%s export: error: --output %s cannot be written (%s)"
              % (PROGRAM, args.output, exc), file=sys.stderr)
        return 2
    with out:
        write_export(rows, out, args.format)
    return 0


def _chain(first, rest):
    if first is not None:
        yield first
        for row in rest:
            yield row


def _dashboard(args):
    if sys.version_info[0] < 3:
        print("%s dashboard: error: the dashboard needs Python 3 (this is Python %d.%d); run "
              "`python3 -m batch_processor dashboard %s` (status and export work here)"
              % ((PROGRAM,) + sys.version_info[:2] + (args.path,)), file=sys.stderr)
        return 2
    from batch_processor.dashboard import make_server
    try:
        server = make_server(args.path, args.port)
    except KeyboardInterrupt:  # Ctrl-C before the server listened
        return 0
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print("%s dashboard: error: port %d on 127.0.0.1 is in use (another dashboard?); "
                  "choose another with --port N (or --port 0 for any free port)"
                  % (PROGRAM, args.port), file=sys.stderr)
        else:
            print("%s dashboard: error: cannot listen on 127.0.0.1:%d (%s); choose another "
                  "port with --port N" % (PROGRAM, args.port, exc), file=sys.stderr)
        return 2
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C stops the server even where SIGINT was ignored (started with `&`).
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        print("dashboard of %s: http://127.0.0.1:%d/ (Ctrl-C to stop)"
              % (args.path, server.server_address[1]))
        sys.stdout.flush()
        server.serve_forever()
    except KeyboardInterrupt:
        print("dashboard stopped")
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
