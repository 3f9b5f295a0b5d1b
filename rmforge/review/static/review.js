// Keyboard-first labelling: j/k move, c/i/u mark correct/incorrect/unsure (and move on),
// n opens the next rollout, s shows formulas as source or rendered (math.js). Marking clicks
// the item's button, which htmx posts.
(() => {
  "use strict";
  let current = 0;
  const items = () => Array.from(document.querySelectorAll("#items > li.item"));

  function show(index, scroll = true) {
    const all = items();
    if (!all.length) return;
    current = Math.max(0, Math.min(index, all.length - 1));
    all.forEach((el, i) => el.classList.toggle("current", i === current));
    if (scroll) all[current].scrollIntoView({ block: "nearest" });
  }

  function mark(verdict) {
    const item = items()[current];
    const button = item && item.querySelector(`button[data-verdict="${verdict}"]`);
    if (!button) return;
    button.click();
    show(current + 1);
  }

  function next() {
    const holder = document.querySelector("[data-next]");
    if (holder) window.location.assign(holder.dataset.next);
  }

  const keys = {
    j: () => show(current + 1),
    k: () => show(current - 1),
    c: () => mark("correct"),
    i: () => mark("incorrect"),
    u: () => mark("unknown"),
    n: next,
    s: () => rmforgeMath.toggleSource(),
  };

  function onKey(event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    if (event.target.closest("input, select, textarea")) return;
    const action = keys[event.key];
    if (action) {
      event.preventDefault();
      action();
    }
  }

  document.addEventListener("click", (event) => {
    const item = event.target.closest("#items > li.item");
    if (item) show(items().indexOf(item), false);
  });

  // A saved label comes back as the re-rendered item: typeset it, and keep the cursor where it is
  // once htmx has settled the item's classes (it restores the server's class list after the swap).
  document.addEventListener("htmx:afterSwap", () => rmforgeMath.render());
  document.addEventListener("htmx:afterSettle", () => show(current, false));
  document.addEventListener("htmx:responseError", (event) => {
    const status = document.getElementById("status");
    status.textContent = `not saved: ${event.detail.xhr.status} ${event.detail.xhr.responseText}`;
    status.className = "error";
  });
  document.addEventListener("htmx:afterRequest", (event) => {
    if (!event.detail.successful) return;
    const status = document.getElementById("status");
    status.textContent = "saved";
    status.className = "ok";
  });

  // htmx wires the buttons on DOMContentLoaded (its listener was added first): only then
  // do keys work, and the cursor appears.
  document.addEventListener("DOMContentLoaded", () => {
    document.addEventListener("keydown", onKey);
    rmforgeMath.restoreSource();
    rmforgeMath.render();
    show(0, false);
  });
})();
