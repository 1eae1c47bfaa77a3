"""SIGTERM (schedulers, `kill`) and SIGINT (Ctrl-C) end a run with the shells' exit status (143,
130) and one line naming the unfinished run directory and how to resume it; in a sweep the line
says how many of this process's jobs finished first. The run directory stays resumable: every
file is written atomically and the checkpoint of the last epoch stays (resume: auto).

Under submitit (SUBMITIT_EXECUTOR set) nothing is installed: submitit's own handlers checkpoint
and requeue a preempted job as before. Handlers are only installed in the main thread.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

FINISHED = {"runs": 0}  # runs this process finished (a sweep's jobs run in one process)
NAMES = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT"}


class RunInterrupted(SystemExit):
    """Raised in the main thread by the SIGTERM/SIGINT handler; a SystemExit, so no `except
    Exception` swallows it and Lightning re-raises it after its own teardown."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum


_HELD: dict[str, int | bool | None] = {"hold": False, "pending": None}


def _raise(signum: int, frame: object) -> None:
    if _HELD["hold"]:  # between the epoch's checkpoint and its CSV row: raised at release()
        _HELD["pending"] = signum
        return
    raise RunInterrupted(signum)


def hold() -> None:
    """Defer SIGTERM/SIGINT until release(): from an epoch's checkpoint until Lightning has logged
    that epoch's rows, so an interrupted run's files always agree with its checkpoint."""
    _HELD["hold"] = True


def release() -> None:
    """End hold(); a signal that arrived meanwhile interrupts the run now."""
    _HELD["hold"] = False
    signum, _HELD["pending"] = _HELD["pending"], None
    if signum is not None:
        raise RunInterrupted(int(signum))


def message(signum: int, outs: list[Path]) -> str:
    where = ", ".join(str(o) for o in outs)
    done = FINISHED["runs"]
    return (f"error: interrupted by {NAMES.get(signum, signum)}: run directory {where} is unfinished; "
            f"run the same command again to resume it (resume=auto)"
            + (f"; {done} job(s) of this sweep finished before it" if done else ""))


@contextlib.contextmanager
def interruptible(outs: list[Path]) -> Iterator[None]:
    """Turn SIGTERM/SIGINT during the body into exit status 128+signal with one line on stderr."""
    if os.environ.get("SUBMITIT_EXECUTOR") or threading.current_thread() is not threading.main_thread():
        yield
        FINISHED["runs"] += len(outs)
        return
    previous = {s: signal.signal(s, _raise) for s in NAMES}
    _HELD.update(hold=False, pending=None)
    try:
        yield
    except RunInterrupted as err:
        print(message(err.signum, outs), file=sys.stderr, flush=True)
        raise SystemExit(128 + err.signum) from None
    except SystemExit:
        # A SIGTERM held between an epoch's checkpoint and its rows also set Lightning's own flag,
        # and Lightning ends fit() on it at the epoch's end, before release(), with its
        # SIGTERMException: a SystemExit whose status is 0. The held signal decides the status.
        signum = _HELD["pending"]
        if signum is None:
            raise
        print(message(int(signum), outs), file=sys.stderr, flush=True)
        raise SystemExit(128 + int(signum)) from None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _HELD.update(hold=False, pending=None)
    FINISHED["runs"] += len(outs)
