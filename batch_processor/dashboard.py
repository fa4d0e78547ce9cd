"""``python -m batch_processor dashboard PATH``: a local web page that watches a run.

The standard library's HTTP server (threaded), bound to 127.0.0.1 only, serves one
page (``/``) made anew from the checkpoint at each request, read-only, through
`batch_processor.watch.read_checkpoint`: the status table, the shared resources'
units in use (if the run's processors use any), a chart of the handles
collected over time per processor (SVG made here), the latest results and the last
failures. The page reloads itself every few seconds (a meta refresh: no script).
Every value that comes from the run (names, reprs, messages) is HTML-escaped.
``/status.json`` gives what ``status --json`` prints. Python 3 only; the program that
serves it until Ctrl-C is ``batch_processor.__main__``.
"""
from __future__ import absolute_import, division, print_function

import json
import os
import time

from .checkpoint import CheckpointError
from .cli import age, resource_cells

__all__ = ["make_server", "render_chart", "render_page", "render_resources"]

#: Seconds between two reloads of the page.
REFRESH = 2
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; margin-bottom: 0.2em; } h2 { font-size: 1.05em; margin-top: 1.5em; }
table { border-collapse: collapse; } td, th { padding: 0.25em 0.8em; border-bottom: 1px solid #ddd; }
th { text-align: left; background: #f4f4f4; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
td.repr { font-family: monospace; max-width: 40em; overflow-wrap: anywhere; }
.running { color: #1a7f37; } .stopped { color: #b35900; } .finished { color: #0b5cad; }
.note { color: #555; font-size: 0.9em; }
.error { color: #b00020; } footer { margin-top: 2em; color: #777; font-size: 0.85em; }
"""


def escape(value):
    """``value`` as text safe in HTML and SVG (quotes included)."""
    import html
    return html.escape(u"%s" % (value,), quote=True)


def render_page(status, now=None, refresh=REFRESH):
    """The HTML page for a `batch_processor.watch.CheckpointStatus`."""
    now = time.time() if now is None else now
    state = status.state
    pid = ""
    if status.pid is not None:
        pid = " (pid %d)" % status.pid if state == "running" else " (last pid %d)" % status.pid
    parts = [
        u"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        u"<meta http-equiv=\"refresh\" content=\"%d\">" % refresh,
        u"<title>%s: %s</title><style>%s</style></head><body>"
        % (escape(state), escape(os.path.basename(status.path)), _STYLE),
        u"<h1>Run of <code>%s</code></h1>" % escape(status.path),
        u"<p id=\"state\">state: <b class=\"%s\">%s</b>%s &middot; started %s &middot; "
        u"last record %s</p>" % (escape(state), escape(state), escape(pid),
                                 _when(status.started, now), _when(status.updated, now)),
        u"<table id=\"processors\"><thead><tr><th>processor</th><th>fed</th><th>in flight</th>"
        u"<th>ok</th><th>failed</th><th>cancelled</th></tr></thead><tbody>",
    ]
    for p in status.processors:
        parts.append(u"<tr><td class=\"name\">%s</td>%s</tr>" % (escape(p.name), u"".join(
            u"<td class=\"n\">%d</td>" % v
            for v in (p.fed, p.in_flight, p.succeeded, p.failed, p.cancelled))))
    parts.append(u"</tbody></table>")
    if status.resources:
        parts.append(render_resources(status.resources))
    parts.append(u"<h2>Handles collected over time</h2>")
    parts.append(render_chart(status.history, [p.name for p in status.processors],
                              status.started, status.updated))
    parts.append(u"<h2>Last failures</h2>")
    parts.append(_rows_table("failures", ("processor", "descriptor", "error"),
                             [(f.processor, f.descriptor, f.error) for f in reversed(status.failures)],
                             u"no failure recorded"))
    parts.append(u"<h2>Latest results</h2>")
    parts.append(_rows_table("results", ("processor", "descriptor", "result"),
                             list(reversed(status.results)), u"no result recorded yet"))
    parts.append(u"<footer>A read-only view of the checkpoint, reloaded every %d s; "
                 u"<a href=\"status.json\">status.json</a>.</footer></body></html>" % refresh)
    return u"\n".join(parts)


def render_resources(resources):
    """The heading and table (``id="resources"``) of `batch_processor.watch.ResourceUse`\\ s."""
    rows = []
    for resource in resources:
        cells = resource_cells(resource)
        rows.append(u"<tr><td class=\"name\">%s</td>%s<td class=\"repr\">%s</td>"
                    u"<td class=\"name\">%s</td></tr>" % (
                        escape(cells[0]), u"".join(u"<td class=\"n\">%d</td>" % v
                                                   for v in cells[1:4]),
                        escape(cells[4]), escape(cells[5])))
    return (u"<h2>Shared resources</h2>"
            u"<table id=\"resources\"><thead><tr><th>resource</th><th>capacity</th>"
            u"<th>in use</th><th>waiting</th><th>devices in use</th><th>used by (units a job "
            u"asks)</th></tr></thead><tbody>%s</tbody></table>"
            u"<p class=\"note\">As of the last record; units in use and jobs waiting count "
            u"every run of the process that shares the resource.</p>" % u"".join(rows))


def error_page(path, message, refresh=REFRESH):
    return (u"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            u"<meta http-equiv=\"refresh\" content=\"%d\"><title>error</title></head><body>"
            u"<h1>Run of <code>%s</code></h1><p class=\"error\" id=\"error\">%s</p></body></html>"
            % (refresh, escape(path), escape(message)))


def _when(seconds, now):
    if seconds is None:
        return u"(not recorded)"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))
    return u"%s (%s ago)" % (escape(stamp), escape(age(now - seconds)))


def _rows_table(ident, header, rows, empty):
    if not rows:
        return u"<p id=\"%s\">%s</p>" % (ident, escape(empty))
    body = u"".join(u"<tr><td class=\"name\">%s</td>%s</tr>" % (
        escape(row[0]), u"".join(u"<td class=\"repr\">%s</td>" % escape(v) for v in row[1:]))
        for row in rows)
    return u"<table id=\"%s\"><thead><tr>%s</tr></thead><tbody>%s</tbody></table>" % (
        ident, u"".join(u"<th>%s</th>" % h for h in header), body)


def render_chart(history, names, started=None, updated=None, width=720, height=260):
    """An SVG chart of `batch_processor.watch.Sample`\\ s: one line per processor."""
    left, right, top, bottom = 60, 170, 15, 35
    plot_w, plot_h = width - left - right, height - top - bottom
    times = [s.time for s in history]
    start = min([t for t in [started] + times if t is not None] or [0])
    end = max([t for t in [updated] + times if t is not None] or [start])
    span = max(end - start, 1e-9)
    top_count = max([s.collected for s in history] or [0]) or 1
    parts = [u"<svg id=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
             u"viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"handles collected over time\">"
             % (width, height, width, height),
             u"<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#fafafa\" "
             u"stroke=\"#ccc\"/>" % (left, top, plot_w, plot_h)]
    for fraction in (0, 0.5, 1):
        y = top + plot_h * (1 - fraction)
        parts.append(u"<text x=\"%d\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%s</text>"
                     % (left - 6, y + 4, escape(int(round(top_count * fraction)))))
    parts.append(u"<text x=\"%d\" y=\"%d\" font-size=\"11\">0 s</text>" % (left, height - 12))
    parts.append(u"<text x=\"%d\" y=\"%d\" font-size=\"11\" text-anchor=\"end\">%s</text>"
                 % (left + plot_w, height - 12, escape(age(span))))
    by_name = {}
    for sample in history:
        by_name.setdefault(sample.processor, []).append(sample)
    for i, name in enumerate(names):
        colour = COLOURS[i % len(COLOURS)]
        samples = by_name.get(name, [])
        points = [(left, top + plot_h)]
        for sample in samples:
            x = left + plot_w * (sample.time - start) / span
            y = top + plot_h * (1 - sample.collected / top_count)
            points.append((x, points[-1][1]))  # a step: the count holds until it changes
            points.append((x, y))
        if samples:
            points.append((left + plot_w * (end - start) / span, points[-1][1]))
        parts.append(u"<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"%s\">"
                     u"<title>%s</title></polyline>" % (colour, u" ".join(
                         u"%.1f,%.1f" % point for point in points), escape(name)))
        legend_y = top + 14 + 18 * i
        parts.append(u"<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"4\" fill=\"%s\"/>"
                     u"<text x=\"%d\" y=\"%d\" font-size=\"12\">%s (%d)</text>"
                     % (left + plot_w + 12, legend_y - 4, colour, left + plot_w + 30, legend_y,
                        escape(name), samples[-1].collected if samples else 0))
    parts.append(u"</svg>")
    return u"".join(parts)


def _handler_class(path):
    from http.server import BaseHTTPRequestHandler
    from .watch import read_checkpoint

    class Handler(BaseHTTPRequestHandler):
        server_version = "batch_processor-dashboard"

        def do_GET(self):
            route = self.path.split("?", 1)[0]
            if route not in ("/", "/index.html", "/status.json"):
                self._send(404, "text/plain; charset=utf-8", u"not found: try /\n")
                return
            try:
                status = read_checkpoint(path, history=route != "/status.json")
            except CheckpointError as exc:
                if route == "/status.json":
                    self._send(503, "application/json", json.dumps({"error": str(exc)}))
                else:
                    self._send(200, "text/html; charset=utf-8", error_page(path, str(exc)))
                return
            if route == "/status.json":
                self._send(200, "application/json", json.dumps(status.as_dict(), sort_keys=True))
            else:
                self._send(200, "text/html; charset=utf-8", render_page(status))

        def _send(self, code, kind, text):
            body = text.encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):  # quiet: the terminal shows the URL only
            pass

    return Handler


def make_server(path, port):
    """A threaded HTTP server of the dashboard of ``path`` on 127.0.0.1:``port``, bound.

    Raises:
        CheckpointError: ``path`` is not a checkpoint (checked before listening).
        OSError: the port cannot be bound (``errno.EADDRINUSE``: it is in use).
    """
    from http.server import HTTPServer
    from socketserver import ThreadingMixIn

    from .watch import read_checkpoint
    read_checkpoint(path)

    class Server(ThreadingMixIn, HTTPServer):
        daemon_threads = True
        allow_reuse_address = False

    return Server(("127.0.0.1", port), _handler_class(path))
