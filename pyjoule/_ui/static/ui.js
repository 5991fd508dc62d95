/* pyjoule ui: the shared script. Live parts: an element with data-live="URL" has its
   content replaced every second by the HTML fragment at URL (rendered and escaped by
   the server; nothing from the cache is ever turned into markup here). Also
   pyjoule.post(url, data) for the pages' buttons: a POST with the page's CSRF value,
   and pyjoule.url(u) for any other request of a page script (the token, when framed). */
"use strict";

const pyjoule = (() => {
  /* Inside a frame of another site (pj.ui() inline in Jupyter at localhost while the
     view is at 127.0.0.1) the browser withholds the view's SameSite cookie: there the
     page's requests, links and forms carry the token of the frame's own address. */
  const framed = window.top !== window.self;
  const token = framed ? new URLSearchParams(location.search).get("token") : null;

  function url(u) {
    const target = new URL(u, location.href);
    if (token && target.origin === location.origin && !target.searchParams.has("token")) {
      target.searchParams.set("token", token);
    }
    return target.origin === location.origin ? target.pathname + target.search + target.hash
                                             : target.href;
  }

  const csrf = () => {
    const meta = document.querySelector('meta[name="csrf"]');
    return meta ? meta.content : "";
  };

  async function post(target, data) {
    const body = new URLSearchParams(data || {});
    body.set("csrf", csrf());
    return fetch(url(target), {method: "POST", body, credentials: "same-origin",
                               headers: {"X-CSRF-Token": csrf()}});
  }

  /* Replace el's children by the fragment's: the server sent escaped HTML of one
     element type, parsed inside a <template> of the same container (no script runs). */
  function swap(el, html) {
    const tpl = document.createElement("template");
    tpl.innerHTML = el.tagName === "TBODY" ? `<table><tbody>${html}</tbody></table>` : html;
    const source = el.tagName === "TBODY" ? tpl.content.querySelector("tbody") : tpl.content;
    el.replaceChildren(...Array.from(source.childNodes));
    el.dispatchEvent(new CustomEvent("pyjoule:swapped", {bubbles: true}));
  }

  /* The page's state of the connection: a banner says when the server stops answering
     (the view then shows the last state it had) and goes when it answers again. */
  function connected(ok, status) {
    const banner = document.getElementById("offline");
    if (!banner) return;
    banner.hidden = ok;
    const forbidden = document.getElementById("forbidden");
    if (forbidden) forbidden.hidden = ok || status !== 403;
  }

  /* After each poll, swapped in or not (tests wait for it). */
  function polled(el, ok, status) {
    el.dispatchEvent(new CustomEvent("pyjoule:polled", {bubbles: true, detail: {ok, status}}));
  }

  function live(el) {
    const every = Number(el.dataset.every || 1000);
    let busy = false;
    const tick = async () => {
      if (busy || document.hidden) return;
      busy = true;
      try {
        const resp = await fetch(url(el.dataset.live), {credentials: "same-origin",
                                                   headers: {"X-Requested-With": "fetch"}});
        connected(resp.ok, resp.status);
        if (resp.ok) swap(el, await resp.text());
        polled(el, resp.ok, resp.status);
      } catch (err) {
        connected(false, 0);  /* the server stopped: keep the last view */
        polled(el, false, 0);
      } finally {
        busy = false;
      }
    };
    setInterval(tick, every);
    document.addEventListener("visibilitychange", tick);  /* back to the tab: at once */
  }

  if (token) {  /* framed: links and forms of the view carry the token */
    document.addEventListener("click", (event) => {
      const link = event.target.closest && event.target.closest("a[href]");
      if (link && link.origin === location.origin) link.href = url(link.href);
    }, true);
    document.addEventListener("submit", (event) => {
      const form = event.target;
      if ((form.method || "get").toLowerCase() === "get") {
        if (!form.querySelector('input[name="token"]')) {
          const input = document.createElement("input");
          input.type = "hidden";
          input.name = "token";
          input.value = token;
          form.appendChild(input);
        }
      } else {
        form.action = url(form.action);
      }
    }, true);
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("[data-live]").forEach(live);
  });
  return {post, csrf, swap, live, connected, url};
})();
