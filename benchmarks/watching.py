"""Workload 12's watcher: a child process that watches a checkpoint while a run writes it.

``python benchmarks/watching.py PATH`` reads ``PATH`` with ``read_checkpoint`` every
0.1 s (what ``python -m batch_processor status`` prints) and, on Python 3, serves the
dashboard and fetches its page every 0.5 s (more often than its own refresh, 2 s),
until its standard input closes; it prints ``ready`` once started and, at the end,
how many reads it made. A path that does not exist yet is polled until it does.
"""
from __future__ import absolute_import, division, print_function

import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
try:
    import batch_processor  # noqa: F401
except ImportError:  # run from a checkout
    sys.path.insert(0, os.path.dirname(HERE))

from batch_processor.checkpoint import CheckpointError, read_checkpoint  # noqa: E402

STATUS_EVERY = 0.1
PAGE_EVERY = 0.5


def main(path):
    stop = threading.Event()
    counts = {"status": 0, "page": 0}
    server = None

    def watch():
        next_page = time.time()
        while not stop.is_set():
            try:
                read_checkpoint(path)
                counts["status"] += 1
            except CheckpointError:  # not written yet
                pass
            if server is not None and time.time() >= next_page:
                next_page += PAGE_EVERY
                fetch_page(server)
            stop.wait(STATUS_EVERY)

    if sys.version_info[0] >= 3:
        server = start_dashboard(path)

    def fetch_page(server):
        from urllib.request import urlopen
        try:
            with urlopen("http://127.0.0.1:%d/" % server.server_address[1], timeout=10) as page:
                page.read()
            counts["page"] += 1
        except OSError:
            pass

    thread = threading.Thread(target=watch)
    thread.start()
    print("ready")
    sys.stdout.flush()
    sys.stdin.read()
    stop.set()
    thread.join()
    if server is not None:
        server.shutdown()
        server.server_close()
    print("%(status)d status reads, %(page)d dashboard pages" % counts)


def start_dashboard(path):
    from http.server import HTTPServer
    from socketserver import ThreadingMixIn

    from batch_processor.dashboard import _handler_class

    class Server(ThreadingMixIn, HTTPServer):
        daemon_threads = True

    server = Server(("127.0.0.1", 0), _handler_class(path))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


if __name__ == "__main__":
    main(sys.argv[1])
