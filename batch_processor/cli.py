"""What ``python -m batch_processor status|export`` print, made as text and rows.

The program itself (arguments, printing, exit statuses) is ``batch_processor.__main__``;
this module only formats what `batch_processor.watch.read_checkpoint` reads.
"""
from __future__ import absolute_import, division, print_function

import csv
import json
import time

import six

from .interface import safe_repr, safe_str

__all__ = ["COLUMNS", "age", "export_rows", "format_status", "resource_cells", "write_export"]

PROGRAM = "python -m batch_processor"
COLUMNS = ("processor", "descriptor", "outcome", "result", "error", "duration")
#: How long a descriptor or result repr may be in an export (characters).
EXPORT_LIMIT = 2000


# -- status --------------------------------------------------------------------------


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
    rows = [[u"%s" % (cell,) for cell in row] for row in rows]  # names may be unicode on 2.7
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [v.rjust(w) for v, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
    resources = getattr(status, "resources", None)
    if resources:
        lines += ["", "shared resources (as of the last record; in use and waiting count every "
                  "run of the process):"]
        lines += _table(("resource", "capacity", "in use", "waiting", "devices in use",
                         "used by (units a job asks)"),
                        [resource_cells(r) for r in resources], left=(0, 4, 5))
    if status.failures:
        lines += ["", "last failures (oldest first):"]
        lines += ["  %s %s: %s" % (f.processor, f.descriptor, f.error) for f in status.failures]
    return "\n".join(lines)


def resource_cells(resource):
    """The cells of a `ResourceUse`'s row (``status`` and the dashboard): resource,
    capacity, in use, waiting, devices in use, used by (``name units`` per processor)."""
    if resource.devices is None:
        devices = "-"
    else:
        devices = u"%s of %s" % (",".join(resource.devices_in_use) or "none",
                                 ",".join(resource.devices))
    users = u", ".join(u"%s %d" % (p["name"], p["units"]) for p in resource.processors)
    return [resource.name, resource.capacity, resource.in_use, resource.waiting, devices, users]


def _table(header, rows, left=(0,)):
    """Lines of a table: the columns ``left`` aligned left, the others right."""
    rows = [[u"%s" % (cell,) for cell in row] for row in [header] + rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return ["  ".join(cell.ljust(width) if i in left else cell.rjust(width)
                      for i, (cell, width) in enumerate(zip(row, widths))).rstrip()
            for row in rows]


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


def write_export(rows, out, kind="csv"):
    """Write the rows of `export_rows` to the text file ``out`` as CSV or JSON lines."""
    if kind == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([_cell(row[c]) for c in COLUMNS])
    else:
        for row in rows:
            out.write(json.dumps(row, sort_keys=True) + "\n")


def _cell(value):
    if six.PY2 and isinstance(value, six.text_type):
        return value.encode("utf-8")
    return value
