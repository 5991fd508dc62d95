"""A single call raises what the function raised; map and sweep raise ExperimentError.

``f(x=1)`` raises the function's own exception (its class, its message) with the
worker's traceback attached, from the real pool and in process (``workers=0``), for
classes of the standard library and for one the user's script defines; an exception
that cannot make the trip back is an ``ExperimentError`` as before. A return value
that cannot be pickled fails its pset with a message naming the culprit. Public
exception classes print as ``pyjoule.X``.
"""

from __future__ import annotations

import pickle
import sys
import threading

import pytest

import pyjoule as pj

from conftest import run_script


def parity(x):
    if x % 2:
        raise ValueError(f"odd x={x}")
    return x


class TwoArgs(Exception):
    """An exception that pickles but does not come back (its __init__ wants two)."""

    def __init__(self, a, b):
        super().__init__(f"{a} and {b}")


def two_args(x):
    raise TwoArgs(x, "more")


def holds_a_lock(x):
    raise RuntimeError("with a lock", threading.Lock())


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 0], ids=["pool", "inprocess"])
def test_a_single_call_raises_the_functions_exception_with_its_worker_traceback(
        cache_dir, workers):
    f = pj.experiment(workers=workers)(parity)
    assert f(x=2) == 2
    with pytest.raises(ValueError, match="odd x=3") as info:
        f(x=3)
    exc = info.value
    assert type(exc) is ValueError  # the class itself, not a pyjoule wrapper
    cause = exc.__cause__
    assert isinstance(cause, pj.WorkerTraceback)
    assert 'raise ValueError(f"odd x={x}")' in str(cause) and "in parity" in str(cause)
    assert "{'x': 3}" in str(cause)
    assert "_execute.py" not in str(cause)  # the function's frames, not pyjoule's
    if sys.version_info >= (3, 11):  # PEP 678
        assert any("raised by the function in a worker" in n for n in exc.__notes__)
    # not cached: the next call runs it again, and raises again
    with pytest.raises(ValueError):
        f(x=3)
    # map and sweep keep ExperimentError, whatever the functions raised
    with pytest.raises(pj.ExperimentError, match="1 of 2 psets"):
        f.sweep(x=[2, 3])


@pytest.mark.parametrize("func", [two_args, holds_a_lock], ids=["init", "unpicklable"])
def test_an_exception_that_cannot_come_back_is_an_experiment_error(cache_dir, func):
    f = pj.experiment(workers=1)(func)
    with pytest.raises(pj.ExperimentError) as info:
        f(x=1)
    assert type(info.value) is pj.ExperimentError
    assert func.__name__ in str(info.value)
    assert info.value.failures["error_type"].tolist() == [
        "TwoArgs" if func is two_args else "RuntimeError"]


@pytest.mark.slow
def test_a_class_defined_in_the_script_is_raised_and_its_traceback_shown(
        cache_dir, weird_tmp_path):
    proc = run_script(weird_tmp_path, """
        import pyjoule as pj

        class NotConverged(Exception):
            pass

        @pj.experiment(workers=1)
        def solve(tol):
            raise NotConverged(f"no convergence at tol={tol}")

        try:
            solve(tol=1e-3)
        except NotConverged as exc:
            print("CAUGHT", type(exc) is NotConverged, exc)
        try:
            solve.sweep(tol=[1e-3, 1e-4])
        except pj.ExperimentError as exc:
            print("MAP", type(exc))
        solve(tol=1e-5)  # uncaught: what does the user see?
    """, check=False)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[0] == "CAUGHT True no convergence at tol=0.001"
    assert lines[1] == "MAP <class 'pyjoule.ExperimentError'>"
    err = proc.stderr
    script = str(weird_tmp_path / "script.py")
    assert err.startswith("pyjoule.WorkerTraceback: the function raised this in a worker "
                          "for pset {'tol': 1e-05}"), err
    assert f'File "{script}", line 9, in solve' in err  # the worker's frame
    assert "The above exception was the direct cause" in err
    assert f'File "{script}", line 19, in <module>' in err  # the caller's line
    assert "\nNotConverged: no convergence at tol=1e-05\n" in err  # the last exception
    assert "_dispatch" not in err and "select" not in err


def test_an_unpicklable_return_value_fails_its_pset_with_a_plain_message(cache_dir):
    def returns_lock(x):
        return {"y": x, "lock": threading.Lock()} if x == 1 else {"y": x}

    f = pj.experiment(workers=1, errors="ignore")(returns_lock)
    run = f.submit([{"x": 0}, {"x": 1}, {"x": 2}])
    run.wait(60)
    (fail,) = run.failures.to_dict("records")
    assert fail["x"] == 1 and fail["error_type"] == "SerializationError"
    assert fail["message"].startswith(
        "the return value could not be pickled: its item 'lock': cannot pickle "
        "'_thread.lock' object (TypeError)")
    assert "cloudpickle" not in fail["traceback"] and "Traceback" not in fail["traceback"]
    assert run.status()["done"] == 2
    with pytest.raises(pj.SerializationError, match="its item 'lock'"):
        f(x=1)  # a single call raises it as what it is


def test_public_exceptions_print_as_pyjoule_and_still_pickle():
    for name in pj.__all__:
        cls = getattr(pj, name)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            assert cls.__module__ == "pyjoule", name
            assert f"{cls.__module__}.{cls.__qualname__}" == f"pyjoule.{name}"
            back = pickle.loads(pickle.dumps(cls("message")))
            assert type(back) is cls and str(back) == "message"
    err = pickle.loads(pickle.dumps(pj.RemoteCommandError("m", "ls", 2, "boom")))
    assert (err.command, err.returncode, err.stderr) == ("ls", 2, "boom")
