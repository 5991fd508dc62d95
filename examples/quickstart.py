"""Quick start: compare three filters on a noisy random walk.

A 1-d random walk x[t] = x[t-1] + q w[t] is observed as y[t] = x[t] + r v[t].
We track it with the exact Kalman filter (KF), an ensemble Kalman filter (EnKF)
and a bootstrap particle filter (PF), for several ensemble sizes N and seeds, and
compare their RMSE. Run it twice: the second run takes everything from the cache.

    python examples/quickstart.py
"""

import time

import numpy as np

import pyjoule as pj

STEPS = 200
Q, R = 0.5, 1.0  # process and observation noise (std)


def truth_and_obs(rng):
    x = np.cumsum(Q * rng.standard_normal(STEPS))
    return x, x + R * rng.standard_normal(STEPS)


def kalman(y, N, rng):
    m, P, out = 0.0, 1.0, np.empty(STEPS)
    for t in range(STEPS):
        P += Q**2
        K = P / (P + R**2)
        m, P = m + K * (y[t] - m), (1 - K) * P
        out[t] = m
    return out, np.full(STEPS, np.sqrt(P))


def enkf(y, N, rng):
    E, out, spread = rng.standard_normal(N), np.empty(STEPS), np.empty(STEPS)
    for t in range(STEPS):
        E = E + Q * rng.standard_normal(N)
        P = E.var(ddof=1)
        K = P / (P + R**2)
        E = E + K * (y[t] + R * rng.standard_normal(N) - E)
        out[t], spread[t] = E.mean(), E.std(ddof=1)
    return out, spread


def particle(y, N, rng):
    X, out, spread = rng.standard_normal(N), np.empty(STEPS), np.empty(STEPS)
    for t in range(STEPS):
        X = X + Q * rng.standard_normal(N)
        w = np.exp(-0.5 * ((y[t] - X) / R) ** 2)
        w /= w.sum()
        out[t] = w @ X
        spread[t] = np.sqrt(w @ (X - out[t]) ** 2)
        X = X[rng.choice(N, N, p=w)]
    return out, spread


METHODS = {"KF": kalman, "EnKF": enkf, "PF": particle}


@pj.experiment
def simulate(method, N, seed=0):
    """One twin experiment: RMSE and mean spread of `method` with `N` members."""
    rng = np.random.default_rng(seed)
    x, y = truth_and_obs(rng)
    estimate, spread = METHODS[method](y, N, rng)
    return {"rmse": float(np.sqrt(np.mean((estimate - x) ** 2))),
            "spread": float(np.mean(spread))}


if __name__ == "__main__":
    t0 = time.perf_counter()
    cached = simulate.cache_info()["entries"]  # results of this version of simulate
    ds = simulate.sweep(method=["KF", "EnKF", "PF"], N=[10, 20, 40, 80], seed=range(8))
    print(ds)
    print("\nRMSE, mean over seeds:")
    print(ds.rmse.mean("seed").to_pandas().round(3))
    n = ds.sizes["method"] * ds.sizes["N"] * ds.sizes["seed"]
    print(f"\n{n} psets in {time.perf_counter() - t0:.2f} s: {n - cached} computed, "
          f"{cached} from the cache ({simulate.cache_info()['cache']})")
