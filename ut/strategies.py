"""Hypothesis strategies for the property tests, and the plain-Python model they obey.

A `Scenario` describes one run as plain data: processors (`ProcSpec`: kind, cap,
the arithmetic of their jobs, how each descriptor's job behaves), edges (`EdgeSpec`:
how the converter filters, multiplies or fails), initial descriptors and kill/stop
points (`KillPoint`). Descriptors are ``(value, hops_left)`` tuples; every converter
emits descriptors with one hop less and nothing at zero hops, so every run of every
graph, cycles included, ends.

The model functions (`behaviour`, `job_result`, `convert`) say what a job and a
converter do with a descriptor; ``ut/test_properties.py`` builds real processors
from them, and `simulate` computes independently, by a plain breadth-first walk,
what a fault-free run must return.
"""
from __future__ import absolute_import, division, print_function

import collections

import attr
from hypothesis import strategies as st

__all__ = [
    "EdgeSpec", "KillPoint", "LIMIT", "ProcSpec", "Scenario", "behaviour", "convert",
    "is_sequential", "job_result", "scenarios", "simulate", "upper_bound",
]

MOD = 97  #: descriptor values and job results live in range(MOD)
LIMIT = 60  #: the most descriptors one run may feed, over all processors
MAX_HOPS = 4

KINDS = ("separate", "separate_sync", "sequential", "sequential_sync")
#: job behaviours: succeed, succeed after a few loop turns (or a little work in a
#: thread), raise, block until the processor is killed
BEHAVIOURS = ("ok", "slow", "raise", "block")
CONTAINERS = ("list", "tuple", "generator")
#: how a converter fails on its ``raise_at``-th call
RAISE_HOWS = ("raise", "raise_in_generator", "return_none", "return_int")


@attr.s(frozen=True)
class ProcSpec(object):
    """One processor: ``kind`` (see `KINDS`), ``cap`` (``max_parallel_jobs`` or
    ``max_batch_size``), result ``(a * value + b) % MOD``, ``table`` and ``salt``
    choosing each descriptor's behaviour, ``shared_executor`` (synchronous kinds:
    a module-wide pool instead of the processor's default one), ``kill_delay``
    (loop turns between a blocked job and the kill that ends it); Separate kinds
    only: ``attempts`` (a ``RetryPolicy`` that retries `JobFailure`, or ``None``)
    and ``job_timeout`` (long enough never to expire: it only takes the timed
    path of the processor)."""

    kind = attr.ib()
    cap = attr.ib()
    a = attr.ib()
    b = attr.ib()
    table = attr.ib()
    salt = attr.ib()
    shared_executor = attr.ib()
    kill_delay = attr.ib()
    attempts = attr.ib(default=None)
    job_timeout = attr.ib(default=None)


@attr.s(frozen=True)
class EdgeSpec(object):
    """One edge ``src -> dst``. For a successful handle whose result ``r`` is
    divisible by ``fmod`` the converter emits ``mult`` descriptors
    ``((r + i * step) % MOD, hops - 1)``; for a failed one ``(value, hops - 1)`` if
    ``on_fail``; nothing for a cancelled one or at zero hops. It returns a
    ``container`` and fails as ``raise_how`` says on its ``raise_at``-th call."""

    src = attr.ib()
    dst = attr.ib()
    mult = attr.ib()
    step = attr.ib()
    fmod = attr.ib()
    on_fail = attr.ib()
    container = attr.ib()
    raise_at = attr.ib()
    raise_how = attr.ib()


@attr.s(frozen=True)
class KillPoint(object):
    """On the ``k``-th call of the job function of processor ``index`` (``where ==
    "job"``: per descriptor for Separate, per batch for Sequential) or of the
    converter of edge ``index`` (``where == "converter"``), call ``action``
    (``"kill"`` or ``"stop"``) on processor ``target``."""

    where = attr.ib()
    index = attr.ib()
    k = attr.ib()
    action = attr.ib()
    target = attr.ib()


@attr.s(frozen=True)
class Scenario(object):
    """A run: ``procs``, ``edges``, ``initial`` ``(pid, descriptor)`` pairs, ``kill_points``.

    Also: ``descriptor_type`` (``"tuple"``; ``"list"``, unhashable; or ``"noeq"``, a
    list that refuses ``==``: the library must neither hash nor compare
    descriptors), ``runner`` (``"sync"``, or ``"async"``: the ``_async`` form on a
    loop of the test's own; the single-processor runners for a lone processor),
    ``keep`` (``None`` or the pids for ``keep_results``), ``rerun`` (run the same
    processors again with the same initial descriptors), ``empty_feeds`` (give an
    empty iterable to the processors without initial descriptors).
    """

    procs = attr.ib()
    edges = attr.ib()
    initial = attr.ib()
    kill_points = attr.ib()
    descriptor_type = attr.ib(default="tuple")
    runner = attr.ib(default="sync")
    keep = attr.ib(default=None)
    rerun = attr.ib(default=False)
    empty_feeds = attr.ib(default=False)


# -- the model --------------------------------------------------------------------------

def is_sequential(spec):
    return spec.kind.startswith("sequential")


def behaviour(spec, descriptor):
    """What the job of ``descriptor`` does on a processor of spec ``spec``."""
    value, hops = descriptor
    return spec.table[(value * 31 + hops * 7 + spec.salt) % len(spec.table)]


def job_result(pid, spec, descriptor):
    """The result of a successful job: the processor's id and a number."""
    return (pid, (spec.a * descriptor[0] + spec.b) % MOD)


def convert(edge, descriptor, outcome):
    """The descriptors ``edge``'s converter emits for one handle.

    ``outcome`` is ``("ok", result)``, ``("fail",)`` or ``("cancelled",)``.
    """
    value, hops = descriptor
    if hops <= 0:
        return []
    if outcome[0] == "ok":
        number = outcome[1][1]
        if number % edge.fmod:
            return []
        return [((number + i * edge.step) % MOD, hops - 1) for i in range(edge.mult)]
    if outcome[0] == "fail" and edge.on_fail:
        return [(value, hops - 1)]
    return []


def simulate(scenario):
    """What a fault-free run of ``scenario`` gives, computed without the library.

    Returns:
        ``(fed, outcomes, exact)``: per processor, the `Counter` of descriptors fed
        and the `Counter` of ``(descriptor, outcome)``; ``exact`` is false when the
        outcome depends on scheduling (a blocking job, or a raising job in a
        Sequential batch, which fails the whole batch), and then the first two
        are meaningless.
    """
    procs, out = scenario.procs, _out_edges(scenario)
    fed = [collections.Counter() for _ in procs]
    outcomes = [collections.Counter() for _ in procs]
    exact = True
    queue = collections.deque(scenario.initial)
    while queue:
        pid, descriptor = queue.popleft()
        spec = procs[pid]
        fed[pid][descriptor] += 1
        what = behaviour(spec, descriptor)
        if what == "block" or (what == "raise" and is_sequential(spec)):
            exact = False
        outcome = ("fail",) if what == "raise" else ("ok", job_result(pid, spec, descriptor))
        outcomes[pid][(descriptor, outcome)] += 1
        for edge in out[pid]:
            queue.extend((edge.dst, d) for d in convert(edge, descriptor, outcome))
    return fed, outcomes, exact


def upper_bound(procs, edges, initial, limit):
    """How many descriptors a run may feed at most, whatever fails (capped above ``limit``).

    Each job counts as both succeeded and failed: the real feeding tree is a part
    of this one, whatever the kills, stops and batch failures do.
    """
    out = _out_edges(Scenario(procs, edges, initial, ()))
    queue = collections.deque(initial)
    total = 0
    while queue and total <= limit:
        pid, descriptor = queue.popleft()
        total += 1
        ok = ("ok", job_result(pid, procs[pid], descriptor))
        for edge in out[pid]:
            for outcome in (ok, ("fail",)):
                queue.extend((edge.dst, d) for d in convert(edge, descriptor, outcome))
    return total


def _out_edges(scenario):
    out = [[] for _ in scenario.procs]
    for edge in scenario.edges:
        out[edge.src].append(edge)
    return out


# -- strategies -------------------------------------------------------------------------

def proc_specs(faults):
    behaviours = BEHAVIOURS if faults else ("ok", "slow", "raise")

    @st.composite
    def proc_spec(draw):
        kind = draw(st.sampled_from(KINDS))
        allowed = behaviours
        if not faults and kind.startswith("sequential"):
            allowed = ("ok", "slow")  # a raising job fails its whole batch: not exact
        separate = kind.startswith("separate")
        return ProcSpec(
            attempts=draw(st.sampled_from((None, 1, 2, 3))) if separate else None,
            job_timeout=draw(st.sampled_from((None, 60.0))) if separate else None,
            kind=kind,
            cap=draw(st.sampled_from((None, 1, 2, 3))),
            a=draw(st.integers(1, MOD - 1)),
            b=draw(st.integers(0, MOD - 1)),
            table=tuple(draw(st.lists(st.sampled_from(allowed), min_size=1, max_size=4))),
            salt=draw(st.integers(0, 6)),
            shared_executor=draw(st.booleans()),
            kill_delay=draw(st.integers(0, 2)),
        )
    return proc_spec()


def shape_pairs(shape, n):
    """The ``(src, dst)`` pairs of a graph shape over ``n`` processors."""
    if shape == "chain":
        return [(i, i + 1) for i in range(n - 1)]
    if shape == "fan_out":
        return [(0, i) for i in range(1, n)]
    if shape == "fan_in":
        return [(i, n - 1) for i in range(n - 1)]
    if shape == "cycle":
        return [(i, (i + 1) % n) for i in range(n)]
    if shape == "self_loops":
        return [(i, i) for i in range(n)]
    return []


def edge_specs(src, dst, faults):
    return st.builds(
        EdgeSpec,
        src=st.just(src),
        dst=st.just(dst),
        mult=st.sampled_from((1, 1, 2, 3)),
        step=st.integers(1, 5),
        fmod=st.sampled_from((1, 1, 2, 3)),
        on_fail=st.booleans(),
        container=st.sampled_from(CONTAINERS),
        raise_at=st.one_of(st.none(), st.integers(1, 4)) if faults else st.none(),
        raise_how=st.sampled_from(RAISE_HOWS),
    )


def kill_points(n_procs, n_edges, busy):
    """Kill/stop points; job points watch the processors in ``busy`` (those fed first)."""
    wheres = ["job"] + (["converter"] if n_edges else [])

    @st.composite
    def kill_point(draw):
        where = draw(st.sampled_from(wheres))
        if where == "job":
            index = draw(st.sampled_from(busy) if busy else st.integers(0, n_procs - 1))
        else:
            index = draw(st.integers(0, n_edges - 1))
        return KillPoint(
            where=where,
            index=index,
            k=draw(st.sampled_from((1, 1, 2, 3))),
            action=draw(st.sampled_from(("kill", "stop"))),
            target=draw(st.integers(0, n_procs - 1)),
        )
    return kill_point()


@st.composite
def scenarios(draw):
    """A `Scenario` of at most 5 processors and `LIMIT` descriptors fed in all."""
    faults = draw(st.sampled_from((False, True, True)))
    n = draw(st.integers(1, 5))
    procs = tuple(draw(proc_specs(faults)) for _ in range(n))
    shape = draw(st.sampled_from(("chain", "fan_out", "fan_in", "cycle", "self_loops", "random")))
    pid = st.integers(0, n - 1)
    pairs = shape_pairs(shape, n) + draw(st.lists(st.tuples(pid, pid), max_size=3))
    edges = tuple(draw(edge_specs(src, dst, faults)) for src, dst in pairs)
    initial = draw(st.lists(
        st.tuples(pid, st.tuples(st.integers(0, MOD - 1), st.integers(0, MAX_HOPS))),
        max_size=12))
    # Keep the run small: lower the largest hop count (then drop descriptors) until
    # whatever happens cannot feed more than LIMIT descriptors.
    while upper_bound(procs, edges, initial, LIMIT) > LIMIT:
        hops = [d[1] for _, d in initial]
        i = hops.index(max(hops))
        if hops[i]:
            p, (value, h) = initial[i]
            initial[i] = (p, (value, h - 1))
        else:
            initial.pop()
    points = ()
    if faults:
        busy = sorted(set(p for p, _ in initial))
        points = tuple(draw(st.lists(kill_points(n, len(edges), busy), min_size=1, max_size=3)))
    keep = draw(st.one_of(st.none(), st.lists(pid, unique=True).map(sorted).map(tuple)))
    return Scenario(
        procs=procs, edges=edges, initial=tuple(initial), kill_points=points,
        descriptor_type=draw(st.sampled_from(("tuple", "list", "noeq"))),
        runner=draw(st.sampled_from(("sync", "async"))),
        keep=keep,
        rerun=draw(st.booleans()),
        empty_feeds=draw(st.booleans()),
    )
