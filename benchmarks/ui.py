"""The browser view's run page at 100,000 psets (issue #18): time to first contentful
paint of ``/runs/RUN`` and to its psets table shown, in Debian's chromium.

```sh
uv run python benchmarks/ui.py                       # 100,000 psets, 5 loads each way
uv run python benchmarks/ui.py --n 10000 --loads 3
uv run python benchmarks/ui.py --doc docs/benchmarks.md   # writes its section there
```

The cache holds one finished run of ``n`` no-op psets over three parameters (method ×
size × seed; 25 psets in 100,000 fail, so the failures section has something to
show), made once per invocation by a script in a fresh interpreter. Three ways of
loading the page, each ``--loads`` times, medians reported:

- *cold*: ``pyjoule ui`` started fresh for each load, so the psets table includes
  building the run's frame (reading the request and the cache's columns);
- *warm*: the same server loaded again (the frame is kept per run and state);
- *filtered*: warm, with two facets, a sort and page 3 in the address.

First contentful paint is ``performance.getEntriesByName("first-contentful-paint")``;
the psets table shown is the mark ``pyjoule:psets-shown`` that ``static/run.js`` sets
once the table is in the page; both are from the navigation's start. Each load is a
new browser context (no cache, the token's cookie set again). The target (issue #18)
is < 1 s to first paint. ``--doc`` writes the section SECTION into that page
(``run.py`` keeps it when it rewrites the page).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SECTION = "## Browser view"
TARGET_S = 1.0
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--disable-dev-shm-usage"]

STUDY = """
import json, sys
import pyjoule as pj

@pj.experiment(errors="ignore", progress=False)
def noop(method, size, seed):
    if seed % 1000 == 7 and method == "b":
        raise ValueError(f"seed {seed} is unlucky")
    return {"y": seed * 0.5}

n = int(sys.argv[1])
noop.map(pj.grid(method=["a", "b", "c", "d"], size=[1, 2, 5, 10, 20], seed=range(n // 20)))
run = pj.runs().iloc[-1]
print(json.dumps({"run": run["id"], "failed": int(run["failed"])}))
"""


def make_cache(folder: str, n: int) -> tuple[str, dict]:
    """A cache with one finished run of ``n`` psets: ``(cache, {"run", "failed"})``."""
    cache = os.path.join(folder, "cache")
    script = os.path.join(folder, "study.py")
    with open(script, "w") as fh:
        fh.write(textwrap.dedent(STUDY))
    env = dict(os.environ, PYJOULE_CACHE=cache, PYTHONPATH=REPO)
    out = subprocess.run([sys.executable, script, str(n)], cwd=folder, env=env,
                         capture_output=True, text=True, check=True).stdout
    return cache, json.loads(out.strip().splitlines()[-1])


class Server:
    """``pyjoule ui --no-browser --port 0`` over ``cache``, until :meth:`stop`."""

    def __init__(self, cache: str):
        cmd = [sys.executable, "-m", "pyjoule", "ui", "--no-browser", "--port", "0",
               "--cache", cache]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True,
                                     env=dict(os.environ, PYTHONPATH=REPO))
        assert self.proc.stdout is not None
        # readline, not select: the lines come in one write, the rest stays buffered
        timer = threading.Timer(60, self.proc.kill)
        timer.start()
        said = []
        try:
            for line in self.proc.stdout:
                if line.startswith("open http"):
                    self.url = line.split()[1]
                    return
                said.append(line)
        finally:
            timer.cancel()
        self.stop()
        raise RuntimeError("pyjoule ui printed no URL:\n" + "".join(said))

    def at(self, path: str) -> str:
        base, token = self.url.split("/?token=")
        return f"{base}{path}{'&' if '?' in path else '?'}token={token}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate()


def entry(page, name: str) -> float:
    """The start time (s) of the performance entry ``name``, once there is one."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        t = page.evaluate(f"(performance.getEntriesByName({name!r})[0] || {{}}).startTime")
        if t is not None:
            return t / 1000
        time.sleep(0.02)
    raise RuntimeError(f"no performance entry {name}")


def load(browser, url: str) -> dict:
    """One load of the run page in a new context: first paint and table shown (s)."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(120_000)
        page.goto(url)
        page.wait_for_selector("table.psets")
        return {"fcp_s": entry(page, "first-contentful-paint"),
                "psets_s": entry(page, "pyjoule:psets-shown"),
                "rows": page.locator("table.psets tbody tr").count()}
    finally:
        context.close()


def measure(cache: str, run_id: str, loads: int) -> dict[str, list[dict]]:
    from playwright.sync_api import sync_playwright

    path = f"/runs/{run_id}"
    filtered = path + "?f.method=b&f.size=5&sort=p%3Aseed&desc=1&page=3"
    out: dict[str, list[dict]] = {"cold": [], "warm": [], "filtered": []}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            for _ in range(loads):
                server = Server(cache)
                try:
                    out["cold"].append(load(browser, server.at(path)))
                finally:
                    server.stop()
            server = Server(cache)
            try:
                load(browser, server.at(path))  # builds the frame
                for _ in range(loads):
                    out["warm"].append(load(browser, server.at(path)))
                    out["filtered"].append(load(browser, server.at(filtered)))
            finally:
                server.stop()
        finally:
            browser.close()
    return out


def medians(rows: list[dict]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in rows) for k in ("fcp_s", "psets_s")}


def spread(rows: list[dict], key: str) -> str:
    values = [r[key] for r in rows]
    return f"{statistics.median(values):.3f} s ({min(values):.3f}–{max(values):.3f})"


def doc_section(results: dict[str, list[dict]], n: int, failed: int,
                load_avg: tuple) -> str:
    what = {"cold": "cold: a fresh server per load (the run's frame built)",
            "warm": "warm: the same server again",
            "filtered": "warm, two facets + sort + page 3"}
    cold = medians(results["cold"])
    ok = "✅ met" if cold["fcp_s"] < TARGET_S else "❌ not met"
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        SECTION, "",
        f"Generated by `benchmarks/ui.py` on {when} (Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, Debian's chromium headless through Playwright; load "
        f"average {load_avg[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end: "
        "the machine was shared and busy, so these are upper bounds). The run page "
        f"`/runs/RUN` of one finished run of {n:,} no-op psets (method × size × seed, "
        f"{failed} failed), served by `pyjoule ui`; each load "
        "in a new browser context, times from the navigation's start; medians of "
        f"{len(results['cold'])} loads (min–max).", "",
        "| load | first contentful paint | psets table shown |",
        "| --- | ---: | ---: |",
    ]
    for kind, rows in results.items():
        lines.append(f"| {what[kind]} | {spread(rows, 'fcp_s')} | {spread(rows, 'psets_s')} |")
    lines += ["", "| target (issue #18) | result |", "| --- | --- |",
              f"| first paint of a run page with {n:,} psets < {TARGET_S:g} s | {ok} "
              f"({cold['fcp_s']:.3f} s cold) |", "",
              "The page paints its summary and failures first; the psets table is a "
              "fragment the page fetches (`/runs/RUN/psets`), paged (100 rows), sorted and "
              "filtered on the server from one frame per run and state, so only the cold "
              "load pays for reading the run's psets.", ""]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=100_000, help="psets in the run")
    p.add_argument("--loads", type=int, default=5, help="loads per way of loading")
    p.add_argument("--json", help="write the raw results here")
    p.add_argument("--doc", help="write the section SECTION into this page")
    a = p.parse_args(argv)
    load_avg = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="pyjoule-ui-bench-") as folder:
        t = time.perf_counter()
        cache, run = make_cache(folder, a.n)
        print(f"cache of {a.n:,} psets made in {time.perf_counter() - t:.1f} s", flush=True)
        results = measure(cache, run["run"], a.loads)
    section = doc_section(results, a.n, run["failed"], load_avg)
    print(section)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(results, fh, indent=1)
    if a.doc:
        sys.path.insert(0, HERE)
        from scale import replace_section

        with open(a.doc) as fh:
            page = fh.read()
        with open(a.doc, "w") as fh:
            fh.write(replace_section(page, SECTION, section))


if __name__ == "__main__":
    main()
