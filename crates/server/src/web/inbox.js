//! Keyboard shortcuts for the review inbox: j / k move between tasks, Enter
//! opens the focused one (links do that by themselves). The pages work
//! without this file; it only adds the shortcuts.
"use strict";
document.addEventListener("keydown", function (e) {
  if (e.altKey || e.ctrlKey || e.metaKey || (e.key !== "j" && e.key !== "k")) return;
  var t = e.target;
  if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
  var links = Array.prototype.slice.call(document.querySelectorAll("a.task"));
  if (links.length === 0) return;
  var i = links.indexOf(document.activeElement);
  i = e.key === "j" ? Math.min(i + 1, links.length - 1) : Math.max(i - 1, 0);
  links[i].focus();
  e.preventDefault();
});
