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
  var problem = document.getElementById("session-problem");
  var endText = document.querySelector(".session-end");
  var form = document.getElementById("stay-form");
  form.querySelector("input[name=next]").value = window.location.pathname;
  var last = Date.now();
  var shown = false;
  var returnFocus = null;

  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function showEnd() {
    if (!endText) { return; }
    var d = new Date(last + idle * 1000);
    endText.textContent = "If you are idle, your session ends at " + d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" +
      pad(d.getUTCDate()) + " " + pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds()) + " UTC.";
  }
  function left() { return Math.max(0, Math.round((last + idle * 1000 - Date.now()) / 1000)); }
  function words(s) {
    var m = Math.floor(s / 60), r = s % 60;
    if (m > 0) { return m + (m === 1 ? " minute " : " minutes ") + r + (r === 1 ? " second" : " seconds"); }
    return r + (r === 1 ? " second" : " seconds");
  }
  function say(text) {
    problem.textContent = text;
    problem.hidden = !text;
  }
  function signedOut() {
    window.location.assign("/console/sign-in?ended=idle&next=" + encodeURIComponent(window.location.pathname));
  }
  function tick() {
    var s = left();
    if (s <= 0) { signedOut(); return; }
    if (Date.now() - last >= warn * 1000) {
      countdown.textContent = words(s);
      if (!shown) {
        shown = true;
        returnFocus = document.activeElement;
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
      if (r.status === 401) { signedOut(); return; }
      if (!r.ok) { say("Your session could not be extended (the server answered " + r.status + "). Reload the page."); return; }
      last = Date.now();
      shown = false;
      say("");
      box.hidden = true;
      showEnd();
      if (returnFocus && returnFocus !== document.body && document.contains(returnFocus)) {
        returnFocus.focus();
      } else {
        document.getElementById("main").focus();
      }
    }).catch(function () {
      say("Your session could not be extended: the console cannot be reached. Check your connection and try again.");
    });
  });
  showEnd();
  window.setInterval(tick, 1000);
})();
