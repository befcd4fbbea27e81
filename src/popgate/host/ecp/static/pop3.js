// The POP3 settings page: Get-PopSettings into the form, Set-PopSettings with only what
// changed, refusals shown at their field, and the restart that makes the settings effective.
"use strict";

(() => {
  const form = document.getElementById("pop3-form");
  const server = form.dataset.server;
  const mayChange = form.dataset.mayChange === "true";
  const controls = [...form.querySelectorAll("[data-kind]")];
  const byName = new Map(controls.map((control) => [control.name, control]));
  const banner = document.getElementById("restart-banner");
  const pending = document.getElementById("pending");
  const restartButton = document.getElementById("restart");
  const status = document.getElementById("status");
  const query = `?server=${encodeURIComponent(server)}`;
  // What each control held when the settings were last loaded or saved.
  let loaded = new Map();
  let lastView = null;

  // --- values in and out of the controls -------------------------------------------------

  /** Show one parameter as Get-PopSettings formats it. */
  function write(control, text) {
    switch (control.dataset.kind) {
      case "checkbox":
        control.checked = text === "$true";
        break;
      case "list":
        // Lists come comma-separated; one per line is easier to edit.
        control.value = text === "$null" ? "" : text.split(",").filter(Boolean).join("\n");
        break;
      default:
        control.value = text === "$null" ? "" : text;
    }
  }

  /** The value to send for a control: JSON types the API reads for that parameter. */
  function read(control) {
    switch (control.dataset.kind) {
      case "checkbox":
        return control.checked;
      case "list": {
        const items = control.value.split(/[\n,]/).map((item) => item.trim()).filter(Boolean);
        // An empty optional list means "not set": InternalConnectionSettings' computed default.
        return items.length === 0 && control.dataset.optional === "true" ? null : items;
      }
      default:
        // Text, also for numbers: the API parses it and names the parameter when it refuses.
        return control.value.trim();
    }
  }

  const key = (value) => JSON.stringify(value);

  function changes() {
    const changed = {};
    for (const control of controls) {
      const value = read(control);
      if (key(value) !== loaded.get(control.name)) changed[control.name] = value;
    }
    return changed;
  }

  function show(view) {
    for (const control of controls) {
      if (control.name in view.configured) write(control, view.configured[control.name]);
    }
    loaded = new Map(controls.map((control) => [control.name, key(read(control))]));
    lastView = view;
    showPending(view);
  }

  // --- the restart banner ----------------------------------------------------------------

  /** A value as the banner shows it: lists with spaces after commas, nothing as "(none)". */
  function readable(name, text) {
    if (!text || text === "$null") return "(none)";
    return byName.get(name)?.dataset.kind === "list" ? text.split(",").join(", ") : text;
  }

  function showPending(view) {
    // In the form's order, so that the list reads like the form below it.
    const names = [...byName.keys(), ...Object.keys(view.configured).filter((name) => !byName.has(name))]
      .filter((name) => name in view.configured && view.configured[name] !== view.effective[name]);
    pending.replaceChildren(...names.map((name) => {
      const item = document.createElement("li");
      const label = document.createElement("strong");
      label.textContent = name;
      const now = document.createElement("span");
      now.className = "effective";
      now.textContent = readable(name, view.effective[name]);
      const next = document.createElement("span");
      next.className = "configured";
      next.textContent = readable(name, view.configured[name]);
      item.dataset.name = name;
      item.append(label, ": ", now, " \u2192 ", next);
      return item;
    }));
    banner.hidden = names.length === 0;
  }

  // --- refusals at their field -----------------------------------------------------------

  function clearError(control) {
    const error = document.getElementById(`e-${control.name}`);
    error.textContent = "";
    error.hidden = true;
    control.removeAttribute("aria-invalid");
    control.setAttribute("aria-describedby", `h-${control.name}`);
  }

  function markError(control, message) {
    const error = document.getElementById(`e-${control.name}`);
    error.textContent = message;
    error.hidden = false;
    control.setAttribute("aria-invalid", "true");
    control.setAttribute("aria-describedby", `e-${control.name} h-${control.name}`);
  }

  /** The control a refusal concerns: the directory's messages name the parameter
   * ("MaxCommandSize must be between 40 and 1024; got 5."), so the earliest name wins. */
  function controlOf(message) {
    let found = null;
    let at = Infinity;
    for (const [name, control] of byName) {
      const match = new RegExp(`\\b${name}\\b`).exec(message);
      if (match && match.index < at) {
        found = control;
        at = match.index;
      }
    }
    return found;
  }

  // --- loading and saving ----------------------------------------------------------------

  async function load() {
    try {
      show(await popgate.api("GET", `/pop-settings${query}`));
    } catch (error) {
      popgate.alert(error.message);
      return;
    }
    for (const control of controls) control.disabled = !mayChange;
    form.setAttribute("aria-busy", "false");
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!mayChange || lastView === null) return;
    popgate.clearAlert();
    status.textContent = "";
    for (const control of controls) clearError(control);
    const changed = changes();
    const names = Object.keys(changed);
    if (names.length === 0) {
      status.textContent = "There are no changes to save.";
      return;
    }
    const save = document.getElementById("save");
    save.disabled = true;
    try {
      const view = await popgate.api("PATCH", `/pop-settings${query}`, { changes: changed });
      show(view);
      const restart = view.restart_needed.length
        ? " Restart the POP3 services to apply them."
        : "";
      status.textContent = `Saved ${names.join(", ")}.${restart}`;
    } catch (error) {
      const control = error.status === 422 ? controlOf(error.message) : null;
      if (control) {
        // Set-PopSettings applies all changes or none, so nothing of this save was kept.
        markError(control, error.message);
        popgate.alert(`Nothing was saved: correct ${control.name} and save again.`);
        control.focus();
      } else {
        popgate.alert(error.status === 422 ? `Nothing was saved: ${error.message}` : error.message);
      }
    } finally {
      save.disabled = false;
    }
  });

  form.addEventListener("input", (event) => {
    const control = event.target.closest("[data-kind]");
    if (control && control.getAttribute("aria-invalid") === "true") clearError(control);
  });

  document.getElementById("undo")?.addEventListener("click", () => {
    if (lastView === null) return;
    for (const control of controls) clearError(control);
    popgate.clearAlert();
    show(lastView);
    status.textContent = "Your changes were undone.";
  });

  // --- restarting the services -----------------------------------------------------------

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const RESTART_SECONDS = 120;

  /** Wait until the service runs again: Running with a newer "since" than before. */
  async function runningAgain(name, before) {
    const deadline = Date.now() + RESTART_SECONDS * 1000;
    for (;;) {
      await sleep(250);
      const view = await popgate.api("GET", `/services/${encodeURIComponent(name)}`);
      if (view.status === "Running" && view.since !== before.since) return;
      if (view.status === "Stopped" && view.last_error && view.since !== before.since) {
        throw new Error(`${name} did not start: ${view.last_error}`);
      }
      if (Date.now() > deadline) {
        throw new Error(`${name} is still ${view.status} after ${RESTART_SECONDS} seconds.`);
      }
    }
  }

  async function restart() {
    const names = restartButton.dataset.services.split(",");
    restartButton.disabled = true;
    popgate.clearAlert();
    status.textContent = "Restarting the POP3 services\u2026";
    try {
      // One after the other: the back end first, since the front end proxies to it.
      for (const name of names) {
        const path = `/services/${encodeURIComponent(name)}`;
        const before = await popgate.api("GET", path);
        await popgate.api("POST", `${path}/restart`);
        await runningAgain(name, before);
      }
      const view = await popgate.api("GET", `/pop-settings${query}`);
      // Only the banner: the form may hold edits not saved yet.
      showPending(view);
      status.textContent = `Restarted ${names.join(" and ")}; the configured settings are in effect.`;
    } catch (error) {
      status.textContent = "";
      popgate.alert(error.code === 5
        ? `You don't have permission to restart services: ${error.message}`
        : error.message);
    } finally {
      restartButton.disabled = false;
    }
  }

  restartButton?.addEventListener("click", restart);

  // --- the server picker -----------------------------------------------------------------

  async function loadServers() {
    const pick = document.getElementById("server-pick");
    let servers;
    try {
      servers = await popgate.api("GET", "/servers");
    } catch {
      return; // the picker keeps the one server shown; load() reports access problems
    }
    const current = pick.dataset.current.toLowerCase();
    pick.replaceChildren(...servers.map((item) => {
      const option = document.createElement("option");
      option.value = item.name;
      option.textContent = `${item.name} (${item.fqdn})`;
      option.selected = item.name.toLowerCase() === current;
      return option;
    }));
    const here = servers.find((item) => item.name.toLowerCase() === current);
    if (!here) {
      // An unknown server stays shown as asked for; load() reports that it does not exist.
      const option = document.createElement("option");
      option.value = option.textContent = pick.dataset.current;
      option.selected = true;
      pick.prepend(option);
    }
    const remote = document.querySelector(".remote-services");
    if (here && here.control_url && remote) {
      // This host manages that computer's services through its host.
      remote.querySelector("a").href = `${remote.dataset.prefix}/services?server=${encodeURIComponent(here.name)}`;
      remote.hidden = false;
    }
  }

  load();
  loadServers();
})();
