/* pyjoule ui, the run page: fills in the psets table (a fragment the server renders
   and escapes), keeps sorting, facets and paging in the page (links still work
   without this script), and while the run is in flight fetches its summary every
   second, then its failures and psets again when its counts move. Nothing from the
   cache is turned into markup here: fragments arrive escaped. */
"use strict";

(() => {
  const summary = document.getElementById("run-summary");
  const failures = document.getElementById("run-failures");
  const psets = document.getElementById("run-psets");
  const cancel = document.getElementById("cancel-form");
  if (!summary || !psets) return;
  const base = psets.dataset.page;

  /* replace el's children by the fragment's, keeping which <details> were open */
  function swap(el, html) {
    const open = new Set(Array.from(el.querySelectorAll("details[open][data-id]"),
                                    (d) => d.dataset.id));
    const tpl = document.createElement("template");
    tpl.innerHTML = html;
    tpl.content.querySelectorAll("details[data-id]").forEach((d) => {
      if (open.has(d.dataset.id)) d.open = true;
    });
    el.replaceChildren(tpl.content);
  }

  async function load(el, url) {
    const resp = await fetch(pyjoule.url(url), {credentials: "same-origin"});
    if (!resp.ok) throw new Error(`${url}: ${resp.status}`);
    swap(el, await resp.text());
  }

  function psetsUrl(search) {
    return `${base}/psets${search}`;
  }

  async function showPsets(search) {
    psets.setAttribute("aria-busy", "true");
    try {
      await load(psets, psetsUrl(search));
      psets.dataset.loaded = search;
      if (!performance.getEntriesByName("pyjoule:psets-shown").length) {
        performance.mark("pyjoule:psets-shown");  /* benchmarks/ui.py reads it */
      }
    } finally {
      psets.removeAttribute("aria-busy");
    }
  }

  /* sort headers, facet values, clear and pager: fetch the fragment, keep the URL */
  psets.addEventListener("click", (event) => {
    const a = event.target.closest("a[href]");
    if (!a || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
    const url = new URL(a.href, location.href);
    if (url.pathname !== base) return;
    event.preventDefault();
    history.pushState(null, "", url.pathname + url.search);
    showPsets(url.search).catch(() => { location.href = url.href; });
  });
  window.addEventListener("popstate", () => { showPsets(location.search); });

  const inflight = () => {
    const s = summary.querySelector(".run-summary");
    return s && s.dataset.inflight === "yes";
  };
  const version = () => {
    const s = summary.querySelector(".run-summary");
    return s ? s.dataset.version : "";
  };

  /* ui.js's banner when the server stops answering */
  const connected = (ok) => { if (typeof pyjoule !== "undefined") pyjoule.connected(ok); };

  let busy = false;
  async function tick() {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const before = version();
      await load(summary, summary.dataset.src);
      connected(true);
      if (version() !== before) {
        await load(failures, failures.dataset.src);
        await showPsets(location.search);
      }
      const s = summary.querySelector(".run-summary");
      if (cancel && s && s.dataset.state !== "running") cancel.hidden = true;
      if (!inflight()) clearInterval(timer);
    } catch (err) {
      connected(false);  /* the server stopped or the run is gone: keep the last view */
    } finally {
      busy = false;
    }
  }
  const timer = inflight() ? setInterval(tick, 1000) : null;
  if (timer) document.addEventListener("visibilitychange", tick);  /* back to the tab */

  showPsets(location.search).catch(() => {
    psets.querySelector(".loading").textContent = "could not read the psets (reload the page)";
  });
})();
