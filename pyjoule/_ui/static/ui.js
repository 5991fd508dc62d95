/* pyjoule ui: the shared script. Live parts: an element with data-live="URL" has its
   content replaced every second by the HTML fragment at URL (rendered and escaped by
   the server; nothing from the cache is ever turned into markup here). Also
   pyjoule.post(url, data) for the pages' buttons: a POST with the page's CSRF value. */
"use strict";

const pyjoule = (() => {
  const csrf = () => {
    const meta = document.querySelector('meta[name="csrf"]');
    return meta ? meta.content : "";
  };

  async function post(url, data) {
    const body = new URLSearchParams(data || {});
    body.set("csrf", csrf());
    return fetch(url, {method: "POST", body, credentials: "same-origin",
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
  function connected(ok) {
    const banner = document.getElementById("offline");
    if (banner) banner.hidden = ok;
  }

  function live(el) {
    const every = Number(el.dataset.every || 1000);
    let busy = false;
    const tick = async () => {
      if (busy || document.hidden) return;
      busy = true;
      try {
        const resp = await fetch(el.dataset.live, {credentials: "same-origin",
                                                   headers: {"X-Requested-With": "fetch"}});
        connected(resp.ok);
        if (resp.ok) swap(el, await resp.text());
      } catch (err) {
        connected(false);  /* the server stopped: keep the last view */
      } finally {
        busy = false;
      }
    };
    setInterval(tick, every);
    document.addEventListener("visibilitychange", tick);  /* back to the tab: at once */
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("[data-live]").forEach(live);
  });
  return {post, csrf, swap, live, connected};
})();
