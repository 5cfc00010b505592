"""The forward stage's plumbing: running batches on worker threads, masks, progress.

On a CPU with several torch threads, batches of the torch back-end run on ``workers`` Python
threads at once, each with one torch thread: small batches keep every core busy without the
per-operation synchronisation of intra-op threads, which costs most when other processes
share the CPU.
"""

from __future__ import annotations

import sys


def run_on_threads(fn, items, workers: int, *, torch_threads: int | None = None, **kwargs):
    """Yield ``fn(item, **kwargs)`` for each of ``items``, in order.

    With ``workers`` > 1 the calls run on that many threads, torch's own thread count set to
    1 meanwhile (restored after, also when the caller stops early); at most two items per
    worker are in flight, so memory stays bounded. With one worker, ``torch_threads`` (if
    given) is torch's thread count for the duration.
    """
    import torch

    if workers <= 1:
        old = torch.get_num_threads()
        if torch_threads:
            torch.set_num_threads(torch_threads)
        try:
            for item in items:
                yield fn(item, **kwargs)
        finally:
            torch.set_num_threads(old)
        return
    from concurrent.futures import ThreadPoolExecutor

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="bertkit-encode") as pool:
            pending = []
            for item in items:
                pending.append(pool.submit(fn, item, **kwargs))
                if len(pending) >= 2 * workers:
                    yield pending.pop(0).result()
            while pending:
                yield pending.pop(0).result()
    finally:
        torch.set_num_threads(old)


def row_mask(n: int, width: int, specials):
    """(width,) mask of one row of n tokens: content tokens 1, specials and padding 0."""
    import torch

    pre, suf = specials
    m = torch.zeros(width)
    m[pre: n - suf] = 1
    return m


def progress_bar(progress, total: int, n_batches: int, *, desc: str):
    """A tqdm bar on stderr, or None. ``progress`` None: shown when stderr is a terminal
    and there is more than one batch."""
    show = progress if progress is not None else (sys.stderr.isatty() and n_batches > 1)
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="text", desc=desc, leave=False, file=sys.stderr)
