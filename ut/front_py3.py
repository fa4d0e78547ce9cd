"""Python 3 helpers of ``test_front_runners.py`` (``async for``): not a test module,
imported on Python 3 only."""


async def collect(make, single, stop_after=None):
    """The handles of the async streaming iterator ``make()`` (made on the running loop);
    ``stop_after``: close it after that many."""
    iterator = make()
    handles = []
    async for item in iterator:
        handles.append(item if single else item[1])
        if stop_after is not None and len(handles) == stop_after:
            await iterator.aclose()
            break
    return handles
