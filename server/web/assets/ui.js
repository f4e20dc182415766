// idgard UI: the little the pages need beyond HTML. Every page works without it; with it, a
// run's page follows the run live (server-sent events, resumed by the browser after a cut
// with Last-Event-ID), and forms that change things ask before they go.
"use strict";

function follow(root) {
  const source = new EventSource(root.dataset.events);
  const state = document.getElementById("run-state");
  const log = document.getElementById("log");
  source.addEventListener("run", (e) => {
    const run = JSON.parse(e.data);
    if (state && state.textContent !== run.state) state.textContent = run.state;
    for (const t of run.tasks) {
      const row = document.getElementById("task-" + t.id);
      if (!row) { source.close(); location.reload(); return; }
      row.querySelector(".task-state").textContent = t.state;
      const cell = row.querySelector(".task-progress");
      if (t.percent !== null) {
        let bar = cell.querySelector("progress");
        if (!bar) {
          cell.textContent = "";
          bar = document.createElement("progress");
          bar.max = 100;
          bar.setAttribute("aria-label", "Task " + t.id + " progress");
          cell.append(bar, document.createTextNode(""));
        }
        bar.value = t.percent;
        bar.textContent = t.percent + " %";
        cell.lastChild.textContent = " " + t.percent + " %";
      } else {
        cell.textContent = t.total === null ? String(t.done) : t.done + " of " + t.total;
      }
    }
  });
  source.addEventListener("log", (e) => {
    const line = JSON.parse(e.data);
    const li = document.createElement("li");
    const level = document.createElement("span");
    level.className = "level " + line.level;
    level.textContent = line.level;
    li.append(level, " " + line.when + " " + line.message);
    log.append(li);
    while (log.children.length > 500) log.firstElementChild.remove();
  });
  source.addEventListener("end", () => {
    source.close();
    location.reload();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const run = document.getElementById("run");
  if (run && run.dataset.events) follow(run);
  // A launch the agent has not answered yet: look again every second (the page's meta refresh
  // does the same without this script).
  if (document.querySelector("[data-pending-launch]")) setTimeout(() => location.reload(), 1000);
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (e) => {
      if (!window.confirm(form.dataset.confirm)) e.preventDefault();
    });
  }
});
