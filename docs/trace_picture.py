"""Draw a trace written by ``trace=PATH`` as a timeline picture, with matplotlib.

This is how ``docs/_static/demo-trace.png`` is made, from a real run of the demo::

    python -m batch_processor.demo --budget 40 --dot "" --trace demo.trace.json
    python docs/trace_picture.py demo.trace.json docs/_static/demo-trace.png

One row per track of the trace (the rows Perfetto shows), one box per complete
event, coloured by its outcome; nothing is invented: the boxes are the events'
``ts`` and ``dur``.
"""
from __future__ import absolute_import, division, print_function

import json
import sys

COLOURS = {"ok": "#4c9a2a", "failed": "#c0392b", "timeout": "#e67e22", "cancelled": "#999999"}


def load(path):
    with open(path) as stream:
        return json.load(stream)


def rows(events):
    """``[(track name, [event, ...]), ...]`` in the trace's sort order."""
    names, order = {}, {}
    for event in events:
        if event.get("ph") == "M" and event["name"] == "thread_name":
            names[event["tid"]] = event["args"]["name"]
        elif event.get("ph") == "M" and event["name"] == "thread_sort_index":
            order[event["tid"]] = event["args"]["sort_index"]
    by_tid = {}
    for event in events:
        if event.get("ph") == "X":
            by_tid.setdefault(event["tid"], []).append(event)
    tids = sorted(by_tid, key=lambda tid: (order.get(tid, tid), tid))
    return [(names.get(tid, str(tid)), by_tid[tid]) for tid in tids]


def draw(events, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    tracks = rows(events)
    figure, axes = plt.subplots(figsize=(11, 0.55 * len(tracks) + 1.6))
    for row, (_, track) in enumerate(tracks):
        spans = [(e["ts"] / 1e6, max(e["dur"] / 1e6, 0.004)) for e in track]
        colours = [COLOURS.get(e["args"].get("outcome"), "#3465a4") for e in track]
        axes.broken_barh(spans, (row - 0.38, 0.76), facecolors=colours, edgecolor="white",
                         linewidth=0.4)
    axes.set_yticks(range(len(tracks)))
    axes.set_yticklabels([name for name, _ in tracks])
    axes.invert_yaxis()
    axes.set_xlabel("seconds since the run started")
    axes.set_title("A trace of the demo (python -m batch_processor.demo --trace ...)")
    axes.grid(axis="x", linestyle=":", linewidth=0.5)
    shown = sorted(set(e["args"].get("outcome") for _, track in tracks for e in track))
    axes.legend(handles=[Patch(color=COLOURS[o], label=o) for o in shown if o in COLOURS],
                loc="upper right", fontsize=8)
    figure.tight_layout()
    figure.savefig(out, dpi=110)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python docs/trace_picture.py TRACE.json PICTURE.png", file=sys.stderr)
        return 2
    draw(load(argv[0]), argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
