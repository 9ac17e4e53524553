// Countersign's page script: keyboard shortcuts for the review desk and the
// live "after approval" preview. Every page works without it; it only adds
// keys and updates (progressive enhancement). No third-party code.
"use strict";
(function () {
  var page = document.body.getAttribute("data-page");

  function typing(t) {
    return t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName));
  }
  function go(rel) {
    var a = document.querySelector('a[rel="' + rel + '"]');
    if (a) { window.location.href = a.href; return true; }
    return false;
  }
  function openPanel(id, focus) {
    var d = document.getElementById(id);
    if (!d) return;
    d.open = true;
    var f = document.getElementById(focus);
    if (f) f.focus();
  }

  // The inbox: j / k move between tasks, Enter opens (links do that).
  if (page === "inbox") {
    document.addEventListener("keydown", function (e) {
      if (e.altKey || e.ctrlKey || e.metaKey || typing(e.target)) return;
      if (e.key !== "j" && e.key !== "k") return;
      var links = Array.prototype.slice.call(document.querySelectorAll("a.task"));
      if (links.length === 0) return;
      var i = links.indexOf(document.activeElement);
      i = e.key === "j" ? Math.min(i + 1, links.length - 1) : Math.max(i - 1, 0);
      links[i].focus();
      e.preventDefault();
    });
    return;
  }
  if (page !== "task") return;

  var form = document.getElementById("approve");
  var help = document.getElementById("keys-help");

  // Mark edited fields and keep the preview in step with the values.
  var timer = null;
  function refresh() {
    if (!form) return;
    var fields = form.querySelectorAll(".field");
    for (var i = 0; i < fields.length; i++) {
      var c = fields[i].querySelector("input,textarea,select");
      if (!c) continue;
      var changed = c.value.replace(/\r\n/g, "\n") !== fields[i].getAttribute("data-draft");
      fields[i].classList.toggle("changed", changed);
    }
    var url = form.getAttribute("data-preview");
    var target = document.getElementById("after");
    if (!url || !target || !window.fetch) return;
    clearTimeout(timer);
    timer = setTimeout(function () {
      fetch(url, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams(new FormData(form)).toString()
      }).then(function (r) {
        return r.ok ? r.text() : null;
      }).then(function (html) {
        if (html !== null) target.innerHTML = html;
      }).catch(function () {});
    }, 350);
  }
  if (form) {
    form.addEventListener("input", refresh);
    form.addEventListener("change", refresh);
    // Ctrl+Enter (or Cmd+Enter) approves from inside a field.
    form.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        form.requestSubmit ? form.requestSubmit() : form.submit();
      }
    });
  }
  // The same inside the reject, escalate and hand-off panels: Ctrl+Enter
  // sends the panel's own form (its reason typed, no reach for the mouse).
  var panels = document.querySelectorAll(".more-decisions form");
  for (var p = 0; p < panels.length; p++) {
    panels[p].addEventListener("keydown", function (e) {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        var f = e.currentTarget;
        f.requestSubmit ? f.requestSubmit() : f.submit();
      }
    });
  }
  var openers = document.querySelectorAll("[data-open]");
  for (var i = 0; i < openers.length; i++) {
    openers[i].addEventListener("click", function (e) {
      var id = e.currentTarget.getAttribute("data-open");
      openPanel(id, { reject: "reason", handoff: "handoff_reason" }[id] || "queue");
    });
  }

  var sent = false;
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && typing(e.target)) { e.target.blur(); return; }
    if (e.altKey || e.ctrlKey || e.metaKey || typing(e.target)) return;
    var done = true;
    switch (e.key) {
      case "a":
        if (form && !sent) { sent = true; form.requestSubmit ? form.requestSubmit() : form.submit(); }
        break;
      case "e":
        var first = form && form.querySelector(".field input, .field textarea, .field select");
        if (first) first.focus(); else done = false;
        break;
      case "r": openPanel("reject", "reason"); break;
      case "x": openPanel("escalate", "queue"); break;
      case "h": openPanel("handoff", "handoff_reason"); break;
      case "j": done = go("next"); break;
      case "k": done = go("prev"); break;
      case "u": done = go("up"); break;
      case "?": if (help) help.hidden = !help.hidden; break;
      default: done = false;
    }
    if (done) e.preventDefault();
  });
})();
