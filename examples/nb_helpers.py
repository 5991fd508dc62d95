"""Helpers for examples/study.ipynb: a test signal and a rolling-window filter.

They live in a module next to the notebook, as shared code often does. pyjoule
treats this module as your code (it is in your project, not an installed package):
editing a function here that an experiment calls recomputes that experiment's results,
and the pool's worker processes get the current version of it, not the file on disk.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def noisy_signal(n: int, outliers: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A smooth signal and a noisy observation of it, with a fraction of outliers.

    Parameters
    ----------
    n : int
        Number of samples.
    outliers : float
        Fraction of samples replaced by large spikes (between 0 and 1).
    seed : int
        Seed of the random generator: the same seed gives the same signal.

    Returns
    -------
    clean, noisy : numpy.ndarray
        The signal and its observation, both of length `n`.

    Examples
    --------
    >>> clean, noisy = noisy_signal(1000, outliers=0.05, seed=1)
    >>> clean.shape, noisy.shape
    ((1000,), (1000,))
    >>> bool((noisy != clean).all())
    True
    """
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, n)
    clean = np.sin(2 * np.pi * 3 * t) + 0.5 * np.sin(2 * np.pi * 11 * t)
    noisy = clean + 0.3 * rng.standard_normal(n)
    spikes = rng.random(n) < outliers
    noisy[spikes] += rng.choice([-5.0, 5.0], spikes.sum())
    return clean, noisy


def rolling(y: np.ndarray, width: int, reduce=np.mean) -> np.ndarray:
    """Apply `reduce` over a centred window of `width` samples (edges padded).

    Parameters
    ----------
    y : numpy.ndarray
        The signal.
    width : int
        Window length in samples (odd, so that the window is centred).
    reduce : callable
        A numpy reduction taking ``axis=``, e.g. ``np.mean`` or ``np.median``.

    Returns
    -------
    numpy.ndarray
        The filtered signal, the same length as `y`.

    Examples
    --------
    >>> rolling(np.array([0.0, 0.0, 9.0, 0.0, 0.0]), 3, np.median)
    array([0., 0., 0., 0., 0.])
    >>> rolling(np.array([0.0, 3.0, 6.0]), 3)
    array([1., 3., 5.])
    """
    if width < 1 or width % 2 == 0:
        raise ValueError(f"width must be a positive odd number, not {width}")
    padded = np.pad(y, width // 2, mode="edge")
    return reduce(sliding_window_view(padded, width), axis=-1)
