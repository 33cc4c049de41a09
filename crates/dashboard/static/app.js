// Codeless Sync dashboard: the little JavaScript there is. Every page works without it;
// it only (1) updates live progress bars by polling a JSON endpoint, (2) names a Stripe
// key's type and mode from its prefix while it is typed, (3) highlights the connection
// string hint of the chosen project kind. Text is set with textContent, never as HTML.
"use strict";

function keyInfo(value) {
  var v = value.trim();
  if (v === "") return null;
  if (v.indexOf("pk_") === 0) return { bad: true, text: "This is a publishable key (pk_…): it cannot read account data. Paste a restricted key (rk_…)." };
  var m = /^(rk|sk)_(test|live)_/.exec(v);
  if (!m) return { bad: true, text: "Stripe keys start with rk_test_, rk_live_, sk_test_ or sk_live_." };
  var kind = m[1] === "rk" ? "Restricted key" : "Secret key";
  var text = kind + ", " + m[2] + " mode.";
  if (m[1] === "sk") text += " Warning: a secret key grants full read and write access; Codeless Sync only reads, so a restricted key is safer.";
  return { bad: m[1] === "sk", text: text };
}

function setupKeyHelpers() {
  document.querySelectorAll("input[data-key-helper]").forEach(function (input) {
    var out = document.getElementById(input.getAttribute("data-key-helper"));
    if (!out) return;
    var initial = out.textContent;
    input.addEventListener("input", function () {
      var info = keyInfo(input.value);
      out.textContent = info ? info.text : initial;
      out.classList.toggle("warn", !!(info && info.bad));
    });
  });
}

function setupKindHints() {
  var select = document.getElementById("kind");
  var hints = document.getElementById("url-hints");
  if (!select || !hints) return;
  var update = function () {
    hints.querySelectorAll("li[data-kind]").forEach(function (li) {
      li.classList.toggle("current", li.getAttribute("data-kind") === select.value);
    });
  };
  select.addEventListener("change", update);
  update();
}

function setupProgress() {
  var section = document.querySelector("[data-progress-url]");
  // Only a queued or running run is followed; an ended one is already on the page.
  if (!section || section.getAttribute("data-live") !== "true") return;
  var url = section.getAttribute("data-progress-url");
  var tick = function () {
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (p) {
        // The run ended: the page shows its outcome (and the errors) once reloaded.
        if (p.finished) { window.location.reload(); return; }
        var badge = section.querySelector("[data-field=status] .badge");
        if (badge && p.status) { badge.textContent = p.status; badge.className = "badge " + p.status; }
        // The live region: written only when its words change, so it is read once per change.
        var announce = section.querySelector("[data-field=announce]");
        var words = p.run_id && p.status ? "Sync run " + p.run_id + ": " + p.status + "." : "";
        if (announce && words && announce.textContent !== words) announce.textContent = words;
        p.types.forEach(function (t) {
          var row = section.querySelector('.bar-row[data-type="' + t.data_type + '"]');
          if (!row) return;
          var bar = row.querySelector("progress");
          if (t.expected) { bar.max = t.expected; bar.value = Math.min(t.objects, t.expected); }
          var text = t.objects + (t.expected ? " / ≈" + t.expected : "") + " objects · " + t.requests + (t.requests === 1 ? " request" : " requests");
          if (t.rate_limited > 0) text += " · " + t.rate_limited + " × 429";
          row.querySelector("[data-field=count]").textContent = text;
        });
        setTimeout(tick, 2000);
      })
      .catch(function () { setTimeout(tick, 5000); });
  };
  tick();
}

document.addEventListener("DOMContentLoaded", function () {
  setupKeyHelpers();
  setupKindHints();
  setupProgress();
});
