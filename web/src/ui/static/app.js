// upiflow UI: small, dependency-free behaviour on top of server-rendered pages.
// - [data-refresh="URL"]: re-fetch URL every data-every seconds (default 5) and swap the
//   element's content, so live regions update without a full reload. Not while the user is
//   in a form control inside it; a fragment holding [data-refresh-final] (say, a finished
//   run) ends the refreshing.
// - form[data-confirm]: ask before submitting.
// - [data-autosubmit]: submit the enclosing form when the control changes.
(function () {
  "use strict";

  function refresh(el) {
    var url = el.getAttribute("data-refresh");
    if (!url || document.hidden || el.dataset.busy) return;
    var active = document.activeElement;
    if (active && active.form && el.contains(active)) return;
    el.dataset.busy = "1";
    fetch(url, { credentials: "same-origin", headers: { "X-Fragment": "1" }, redirect: "manual" })
      .then(function (r) {
        if (r.type === "opaqueredirect" || r.status === 401) {
          window.location.reload();
          return null;
        }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (html !== null && html !== undefined) {
          el.innerHTML = html;
          if (el.querySelector("[data-refresh-final]")) el.removeAttribute("data-refresh");
          el.setAttribute("data-refreshed-at", String(Date.now()));
          el.dispatchEvent(new CustomEvent("upiflow:refreshed", { bubbles: true }));
        }
      })
      .catch(function () { /* the next tick tries again */ })
      .finally(function () { delete el.dataset.busy; });
  }

  function start() {
    document.querySelectorAll("[data-refresh]").forEach(function (el) {
      var every = parseFloat(el.getAttribute("data-every") || "5");
      setInterval(function () { refresh(el); }, Math.max(1, every) * 1000);
    });
    document.addEventListener("submit", function (ev) {
      var f = ev.target;
      var msg = f.getAttribute && f.getAttribute("data-confirm");
      if (msg && !window.confirm(msg)) ev.preventDefault();
    });
    document.addEventListener("change", function (ev) {
      var t = ev.target;
      if (t.hasAttribute && t.hasAttribute("data-autosubmit") && t.form) t.form.requestSubmit();
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
