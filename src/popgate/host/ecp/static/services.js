// The Services page: like services.msc, with live status, a toolbar, a context menu,
// keyboard shortcuts and the Properties dialog.
"use strict";

(() => {
  const table = document.getElementById("services");
  const mayControl = table.dataset.mayControl === "true";
  // Another computer's services go through this host to that computer's host (?server=).
  const onServer = table.dataset.server ? `?server=${encodeURIComponent(table.dataset.server)}` : "";
  const menu = document.getElementById("menu");
  const dialog = document.getElementById("properties");
  const form = document.getElementById("properties-form");
  const toolbar = document.querySelector(".toolbar");
  const rows = () => [...table.tBodies[0].rows];
  let views = {};

  const selected = () => rows().find((row) => row.getAttribute("aria-selected") === "true");

  function select(row, focus = true) {
    for (const other of rows()) {
      other.setAttribute("aria-selected", String(other === row));
      other.tabIndex = other === row ? 0 : -1;
    }
    if (focus) row.focus();
    updateActions();
  }

  /** Which actions the state allows: like the snap-in, Start only when Stopped, and so on. */
  function allowed(action, row) {
    if (action === "refresh") return true;
    if (!row) return false;
    if (action === "properties") return true;
    if (!mayControl) return false;
    const status = row.dataset.status;
    const view = views[row.dataset.name];
    if (action === "start") return status === "Stopped" && view?.startup_type !== "Disabled";
    if (action === "stop") return status === "Running";
    if (action === "restart") return status === "Running" || status === "Stopped";
    return false;
  }

  function updateActions() {
    const row = selected();
    for (const button of toolbar.querySelectorAll("button[data-action]")) {
      button.disabled = !allowed(button.dataset.action, row);
    }
    for (const item of menu.querySelectorAll("[role=menuitem]")) {
      item.setAttribute("aria-disabled", String(!allowed(item.dataset.action, row)));
    }
  }

  const STATUS_TEXT = { Running: "Running", Stopped: "Stopped", StartPending: "Starting", StopPending: "Stopping" };

  async function refresh() {
    let services;
    try {
      services = await popgate.api("GET", `/services${onServer}`);
    } catch (error) {
      popgate.alert(error.message);
      return;
    }
    views = Object.fromEntries(services.map((view) => [view.name, view]));
    for (const row of rows()) {
      const view = views[row.dataset.name];
      if (!view) continue;
      row.dataset.status = view.status;
      row.querySelector(".status").textContent = STATUS_TEXT[view.status] ?? view.status;
      row.querySelector(".startup").textContent = view.startup_type;
      row.title = view.last_error ? `Last error: ${view.last_error}` : "";
    }
    updateActions();
  }

  async function act(action) {
    const row = selected();
    closeMenu();
    if (action === "refresh") return refresh();
    if (!row) return;
    if (action === "properties") return openProperties(row);
    if (!allowed(action, row)) {
      if (!mayControl) popgate.alert(`You don't have permission to ${action} services: your role groups can only view them.`);
      return;
    }
    popgate.clearAlert();
    try {
      await popgate.api("POST", `/services/${encodeURIComponent(row.dataset.name)}/${action}${onServer}`);
    } catch (error) {
      popgate.alert(error.code === 5
        ? `You don't have permission to ${action} services: ${error.message}`
        : error.message);
    }
    refresh();
  }

  // --- the context menu ------------------------------------------------------------------
  function openMenu(x, y) {
    updateActions();
    menu.hidden = false;
    menu.style.left = `${x}px`;
    menu.style.top = `${y}px`;
    menu.querySelector("[role=menuitem]").focus();
  }

  function closeMenu() {
    if (menu.hidden) return;
    menu.hidden = true;
    selected()?.focus();
  }

  table.addEventListener("contextmenu", (event) => {
    const row = event.target.closest("tbody tr");
    if (!row) return;
    event.preventDefault();
    select(row, false);
    openMenu(event.clientX, event.clientY);
  });
  menu.addEventListener("click", (event) => {
    const item = event.target.closest("[role=menuitem]");
    if (item && item.getAttribute("aria-disabled") !== "true") act(item.dataset.action);
  });
  menu.addEventListener("keydown", (event) => {
    const items = [...menu.querySelectorAll("[role=menuitem]")];
    const index = items.indexOf(document.activeElement);
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const step = event.key === "ArrowDown" ? 1 : -1;
      items[(index + step + items.length) % items.length].focus();
    } else if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      const item = items[index];
      if (item && item.getAttribute("aria-disabled") !== "true") act(item.dataset.action);
    } else if (event.key === "Escape" || event.key === "Tab") {
      event.preventDefault();
      closeMenu();
    }
  });
  document.addEventListener("click", (event) => {
    if (!menu.contains(event.target)) closeMenu();
  });

  // --- selection and shortcuts -----------------------------------------------------------
  table.addEventListener("click", (event) => {
    const row = event.target.closest("tbody tr");
    if (row) select(row);
  });
  table.addEventListener("dblclick", (event) => {
    const row = event.target.closest("tbody tr");
    if (row) openProperties(row);
  });
  table.addEventListener("focusin", (event) => {
    const row = event.target.closest("tbody tr");
    if (row && row.getAttribute("aria-selected") !== "true") select(row, false);
  });
  table.addEventListener("keydown", (event) => {
    const row = event.target.closest("tbody tr");
    if (!row) return;
    const list = rows();
    const index = list.indexOf(row);
    const key = event.key.toLowerCase();
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const next = list[index + (event.key === "ArrowDown" ? 1 : -1)];
      if (next) select(next);
    } else if ((event.shiftKey && event.key === "F10") || event.key === "ContextMenu") {
      event.preventDefault();
      const box = row.getBoundingClientRect();
      openMenu(box.left + 24, box.bottom);
    } else if (event.key === "Enter" || key === "p") {
      event.preventDefault();
      openProperties(row);
    } else if (!event.ctrlKey && !event.altKey && !event.metaKey && key in SHORTCUTS) {
      event.preventDefault();
      act(SHORTCUTS[key]);
    }
  });
  const SHORTCUTS = { s: "start", t: "stop", r: "restart", f: "refresh" };
  toolbar.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (button && !button.disabled) act(button.dataset.action);
  });

  // --- the Properties dialog -------------------------------------------------------------
  const STEPS = ["first", "second", "subsequent"];

  function openProperties(row) {
    const view = views[row.dataset.name];
    if (!view) return;
    dialog.querySelector("#properties-title").textContent = `${view.display_name} (${view.name}) Properties`;
    dialog.querySelector(".service-description").textContent = view.description;
    form.startup_type.value = view.startup_type;
    const actions = view.recovery.actions;
    STEPS.forEach((step, index) => {
      const entry = actions[Math.min(index, actions.length - 1)] ?? { action: "none", delay: 0 };
      form[`${step}_action`].value = entry.action;
      form[`${step}_delay`].value = entry.delay;
    });
    form.reset_days.value = view.recovery.reset_after / 86400;
    dialog.querySelector(".last-error").textContent = view.last_error ?? "none";
    dialog.querySelector(".error").textContent = "";
    for (const field of form.elements) {
      if (field.name) field.disabled = !mayControl;
    }
    form.querySelector('button[value="save"]').disabled = !mayControl;
    dialog.dataset.name = view.name;
    dialog.showModal();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = encodeURIComponent(dialog.dataset.name);
    const actions = STEPS.map((step) => ({
      action: form[`${step}_action`].value,
      delay: Number(form[`${step}_delay`].value || 0),
    }));
    try {
      await popgate.api("PUT", `/services/${name}/startup-type${onServer}`, { startup_type: form.startup_type.value });
      await popgate.api("PUT", `/services/${name}/recovery${onServer}`, {
        actions,
        reset_after: Number(form.reset_days.value || 0) * 86400,
      });
      dialog.close();
      refresh();
    } catch (error) {
      dialog.querySelector(".error").textContent = error.message;
    }
  });
  form.querySelector('button[value="cancel"]').addEventListener("click", () => dialog.close());

  if (rows().length) select(rows()[0], false);
  refresh();
  setInterval(refresh, 1000);
})();
