// The console's only script: the session countdown (R16). Without it the
// pages work the same; the server ends an idle session either way.
(function () {
  "use strict";
  var body = document.body;
  var idle = parseInt(body.getAttribute("data-idle") || "0", 10);
  var warn = parseInt(body.getAttribute("data-warn") || "0", 10);
  var box = document.getElementById("session-warning");
  if (!idle || !box) { return; }
  var countdown = document.getElementById("session-countdown");
  var form = document.getElementById("stay-form");
  var next = form.querySelector("input[name=next]");
  next.value = window.location.pathname;
  var last = Date.now();
  var shown = false;

  function left() { return Math.max(0, Math.round((last + idle * 1000 - Date.now()) / 1000)); }
  function words(s) {
    var m = Math.floor(s / 60), r = s % 60;
    if (m > 0) { return m + (m === 1 ? " minute " : " minutes ") + r + (r === 1 ? " second" : " seconds"); }
    return r + (r === 1 ? " second" : " seconds");
  }
  function tick() {
    var s = left();
    if (s <= 0) {
      window.location.assign("/console/sign-in?ended=idle&next=" + encodeURIComponent(window.location.pathname));
      return;
    }
    if (Date.now() - last >= warn * 1000) {
      countdown.textContent = words(s);
      if (!shown) {
        shown = true;
        box.hidden = false;
        document.getElementById("stay-signed-in").focus();
      }
    }
  }
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var data = new URLSearchParams(new FormData(form));
    fetch(form.action, { method: "POST", body: data, credentials: "same-origin",
      headers: { "Accept": "application/json" } }).then(function (r) {
      if (!r.ok) { window.location.assign("/console/sign-in?ended=idle"); return; }
      last = Date.now();
      shown = false;
      box.hidden = true;
    });
  });
  window.setInterval(tick, 1000);
})();
