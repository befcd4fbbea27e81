// The Mailboxes page: a searchable list of mailboxes, with dialogs to create and remove them,
// reset passwords, turn POP3 on and off, change their POP3 settings and import messages.
"use strict";

(() => {
  const table = document.getElementById("mailboxes");
  const mayChange = table.dataset.mayChange === "true";
  const here = table.dataset.server.toLowerCase();
  const maxUpload = Number(table.dataset.maxUpload);
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";
  const rows = table.tBodies[0];
  const search = document.getElementById("search");
  const status = document.getElementById("status");
  const count = document.getElementById("count");
  const toolbar = document.querySelector(".toolbar");
  const READ_ONLY = "Changing mailboxes takes Organization Management or Recipient Management.";
  let mailboxes = [];
  let latest = 0; // the newest list request: an older answer that arrives late is dropped

  const path = (name, rest = "") => `/mailboxes/${encodeURIComponent(name)}${rest}`;
  const byName = (name) => mailboxes.find((mailbox) => mailbox.name === name);
  const isLocal = (mailbox) => (mailbox.server ?? "").toLowerCase() === here;
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

  function say(text) {
    popgate.clearAlert();
    status.textContent = text;
  }

  /** A search box text as Get-Mailbox's filter: a pattern as typed, plain text anywhere. */
  function filterOf(text) {
    const trimmed = text.trim();
    if (!trimmed) return "";
    return /[*?]/.test(trimmed) ? trimmed : `*${trimmed}*`;
  }

  async function refresh() {
    const filter = filterOf(search.value);
    const mine = ++latest;
    table.setAttribute("aria-busy", "true");
    try {
      const query = filter ? `?filter=${encodeURIComponent(filter)}` : "";
      const list = await popgate.api("GET", `/mailboxes${query}`);
      if (mine !== latest) return;
      mailboxes = list;
      render(filter);
    } catch (error) {
      if (mine === latest) popgate.alert(error.message);
    } finally {
      if (mine === latest) table.removeAttribute("aria-busy");
    }
  }

  // --- the list --------------------------------------------------------------------------
  function cell(row, text) {
    const td = row.insertCell();
    td.textContent = text;
    return td;
  }

  function button(mailbox, action, text, label, enabled = mayChange) {
    const element = document.createElement("button");
    element.type = "button";
    element.textContent = text;
    element.dataset.action = action;
    element.dataset.name = mailbox.name;
    element.setAttribute("aria-label", label);
    element.disabled = !enabled;
    if (!enabled && !mayChange) element.title = READ_ONLY;
    return element;
  }

  function render(filter) {
    // Rows are rebuilt, so keep the keyboard focus on the same button of the same mailbox.
    const focused = document.activeElement?.closest("#mailboxes button");
    const keep = focused && { name: focused.dataset.name, action: focused.dataset.action };
    rows.replaceChildren();
    for (const mailbox of mailboxes) {
      const row = rows.insertRow();
      row.dataset.name = mailbox.name;
      cell(row, mailbox.name).className = "name";
      cell(row, mailbox.address);
      cell(row, mailbox.server ?? "(none)");
      const pop = cell(row, "");
      pop.className = "pop";
      const state = document.createElement("span");
      state.className = mailbox.pop_enabled ? "state on" : "state off";
      state.textContent = mailbox.pop_enabled ? "Enabled" : "Disabled";
      const verb = mailbox.pop_enabled ? "Disable" : "Enable";
      pop.append(state, " ", button(mailbox, "toggle", verb, `${verb} POP3 for ${mailbox.name}`));
      const actions = cell(row, "");
      actions.className = "actions";
      const importer = button(mailbox, "import", "Import", `Import messages into ${mailbox.name}`,
        mayChange && isLocal(mailbox));
      if (mayChange && !isLocal(mailbox)) {
        importer.title = `Its mail is on ${mailbox.server ?? "no server"}: import it on that server.`;
      }
      actions.append(
        // Everyone who may read may look at the settings; the dialog is read-only for them.
        button(mailbox, "settings", "Settings", `POP3 settings of ${mailbox.name}`, true),
        button(mailbox, "password", "Reset password", `Reset password of ${mailbox.name}`),
        importer,
        button(mailbox, "remove", "Remove", `Remove ${mailbox.name}`),
      );
    }
    const matching = filter ? ` matching ${filter}` : "";
    const n = mailboxes.length;
    count.textContent = `${n} ${n === 1 ? "mailbox" : "mailboxes"}${matching}`;
    if (keep) focusButton(keep);
  }

  function focusButton({ name, action }) {
    const target = [...rows.querySelectorAll("button")].find(
      (element) => element.dataset.name === name && element.dataset.action === action,
    );
    if (target && !target.disabled) target.focus();
    else search.focus();
  }

  rows.addEventListener("click", (event) => {
    const target = event.target.closest("button[data-action]");
    const mailbox = target && byName(target.dataset.name);
    if (!mailbox || target.disabled) return;
    const open = { toggle, settings: openSettings, password: openPassword, import: openImport,
      remove: openRemove }[target.dataset.action];
    open(mailbox, target);
  });
  toolbar.addEventListener("click", (event) => {
    const target = event.target.closest("button[data-action]");
    if (!target || target.disabled) return;
    if (target.dataset.action === "refresh") refresh();
    if (target.dataset.action === "new") openNew(target);
  });
  let typing;
  search.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(refresh, 250);
  });
  document.getElementById("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(typing);
    refresh();
  });

  async function toggle(mailbox) {
    const enable = !mailbox.pop_enabled;
    try {
      await popgate.api("PATCH", path(mailbox.name, "/cas"), { changes: { PopEnabled: enable } });
      say(`POP3 is now ${enable ? "enabled" : "disabled"} for ${mailbox.name}; `
        + "it applies from the mailbox's next POP3 login.");
    } catch (error) {
      popgate.alert(error.message);
    }
    await refresh();
  }

  // --- dialogs ---------------------------------------------------------------------------
  // Each dialog is modal (showModal moves the focus into it, Escape closes it); when it
  // closes, the focus goes back to the button that opened it, or the search box.
  let opener = null;

  function openDialog(dialog, from) {
    opener = from;
    dialog.querySelector(".error").textContent = "";
    dialog.showModal();
  }

  for (const dialog of document.querySelectorAll("dialog:not(#help)")) {
    dialog.querySelector("[data-close]").addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => {
      const from = opener;
      opener = null;
      if (!from) return;
      if (from.isConnected && !from.disabled) from.focus();
      else if (from.dataset.name) focusButton(from.dataset);
      else search.focus();
    });
  }

  function failed(dialog, error) {
    const denied = error.status === 403 ? ` ${READ_ONLY}` : "";
    dialog.querySelector(".error").textContent = `${error.message}${denied}`;
  }

  /** Submitting ``form`` runs ``action``; its error stays in the dialog, which stays open. */
  function onSubmit(form, action) {
    const dialog = form.closest("dialog");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      dialog.querySelector(".error").textContent = "";
      try {
        await action(new FormData(form));
      } catch (error) {
        failed(dialog, error);
      }
    });
  }

  // New mailbox
  const newDialog = document.getElementById("new-dialog");
  const newForm = document.getElementById("new-form");

  function openNew(from) {
    newForm.reset();
    openDialog(newDialog, from);
  }

  onSubmit(newForm, async (data) => {
    const address = data.get("address").trim();
    const created = await popgate.api("POST", "/mailboxes", {
      name: data.get("name").trim(),
      password: data.get("password"),
      address: address || null,
    });
    newDialog.close();
    say(`Created mailbox ${created.name} <${created.address}>.`);
    await refresh();
  });

  // Reset password
  const passwordDialog = document.getElementById("password-dialog");
  const passwordForm = document.getElementById("password-form");

  function openPassword(mailbox, from) {
    passwordForm.reset();
    passwordDialog.dataset.name = mailbox.name;
    document.getElementById("password-subject").textContent = `For ${mailbox.name} <${mailbox.address}>`;
    openDialog(passwordDialog, from);
  }

  onSubmit(passwordForm, async (data) => {
    if (data.get("password") !== data.get("confirm")) {
      throw new Error("The two passwords differ; type the same password twice.");
    }
    const name = passwordDialog.dataset.name;
    await popgate.api("PUT", path(name, "/password"), { password: data.get("password") });
    passwordDialog.close();
    say(`The password of ${name} has been reset.`);
  });

  // Remove
  const removeDialog = document.getElementById("remove-dialog");

  function openRemove(mailbox, from) {
    removeDialog.dataset.name = mailbox.name;
    document.getElementById("remove-text").textContent =
      `Remove ${mailbox.name} <${mailbox.address}> and all of its mail? This cannot be undone.`;
    openDialog(removeDialog, from);
  }

  onSubmit(document.getElementById("remove-form"), async () => {
    const name = removeDialog.dataset.name;
    await popgate.api("DELETE", path(name));
    removeDialog.close();
    say(`Removed mailbox ${name} and its mail.`);
    await refresh();
  });

  // POP3 settings
  const settingsDialog = document.getElementById("settings-dialog");
  const settingsForm = document.getElementById("settings-form");
  const ownSettings = document.getElementById("own-settings");
  const CHECKBOXES = ["PopEnabled", "PopUseProtocolDefaults", "PopEnableExactRFC822Size",
    "PopForceICalForCalendarRetrievalOption", "PopSuppressReadReceipt"];
  const MIME = "PopMessagesRetrievalMimeFormat";
  let shown = {};

  function settingsOf() {
    const values = Object.fromEntries(CHECKBOXES.map((name) => [name, settingsForm[name].checked]));
    values[MIME] = settingsForm[MIME].value;
    return values;
  }

  function showOwnSettings() {
    // They apply only without the server's settings: say so by disabling them meanwhile.
    ownSettings.disabled = !mayChange || settingsForm.PopUseProtocolDefaults.checked;
  }

  async function openSettings(mailbox, from) {
    let cas;
    try {
      cas = await popgate.api("GET", path(mailbox.name, "/cas"));
    } catch (error) {
      popgate.alert(error.message);
      return;
    }
    shown = { ...cas };
    for (const name of CHECKBOXES) {
      settingsForm[name].checked = Boolean(cas[name]);
      settingsForm[name].disabled = !mayChange;
    }
    settingsForm[MIME].value = cas[MIME];
    settingsDialog.dataset.name = mailbox.name;
    document.getElementById("settings-subject").textContent = `For ${mailbox.name} <${mailbox.address}>`;
    showOwnSettings();
    openDialog(settingsDialog, from);
  }

  settingsForm.PopUseProtocolDefaults.addEventListener("change", showOwnSettings);

  onSubmit(settingsForm, async () => {
    const name = settingsDialog.dataset.name;
    const changes = Object.fromEntries(
      Object.entries(settingsOf()).filter(([key, value]) => shown[key] !== value),
    );
    if (Object.keys(changes).length) {
      await popgate.api("PATCH", path(name, "/cas"), { changes });
      say(`Saved the POP3 settings of ${name}.`);
    }
    settingsDialog.close();
    await refresh();
  });

  // Import
  const importDialog = document.getElementById("import-dialog");
  const importForm = document.getElementById("import-form");
  const progress = document.getElementById("import-progress");
  const importStatus = importDialog.querySelector(".import-status");
  const importButton = importForm.querySelector('button[type="submit"]');
  const fileInput = document.getElementById("import-files");
  let upload = null;

  function openImport(mailbox, from) {
    importForm.reset();
    progress.max = 1;
    progress.value = 0;
    importStatus.textContent = "";
    importButton.disabled = false;
    importDialog.dataset.name = mailbox.name;
    document.getElementById("import-subject").textContent = `Into ${mailbox.name} <${mailbox.address}>`;
    openDialog(importDialog, from);
  }

  /** POST the files with XMLHttpRequest, which (unlike fetch) reports upload progress. */
  function send(name, files) {
    return new Promise((resolve, reject) => {
      const request = new XMLHttpRequest();
      upload = request;
      request.open("POST", `/api/v1${path(name, "/import")}`);
      request.setRequestHeader("X-CSRF-Token", csrf);
      request.responseType = "json";
      request.upload.addEventListener("progress", (event) => {
        if (!event.lengthComputable) return;
        progress.max = event.total;
        progress.value = event.loaded;
        importStatus.textContent = `Uploading: ${Math.floor((100 * event.loaded) / event.total)}%`;
      });
      request.upload.addEventListener("load", () => {
        progress.removeAttribute("value"); // indeterminate while the server delivers
        importStatus.textContent = "Uploaded; delivering the messages...";
      });
      request.addEventListener("load", () => {
        if (request.status === 401) {
          window.location.assign(`/ecp/login?next=${encodeURIComponent(location.pathname)}`);
        }
        if (request.status >= 200 && request.status < 300) {
          resolve(request.response);
          return;
        }
        const problem = request.response?.error;
        const error = new Error(problem?.message ?? `The import failed (HTTP ${request.status}).`);
        error.status = request.status;
        reject(error);
      });
      request.addEventListener("error", () => reject(new Error("The connection to the server was lost; the import may be incomplete.")));
      request.addEventListener("abort", () => reject(new Error("The import was cancelled.")));
      const body = new FormData();
      for (const file of files) body.append("files", file, file.name);
      request.send(body);
    });
  }

  onSubmit(importForm, async () => {
    const files = [...fileInput.files];
    const size = files.reduce((total, file) => total + file.size, 0);
    if (size > maxUpload) {
      throw new Error(`These files are larger than ${maxUpload / 1024 ** 3} GB, the most one import takes; import them in several parts.`);
    }
    const name = importDialog.dataset.name;
    // The focus goes to Close (which cancels) before Import is disabled, so it is not lost.
    importDialog.querySelector("[data-close]").focus();
    importButton.disabled = true;
    progress.max = Math.max(size, 1);
    progress.value = 0;
    importStatus.textContent = "Uploading: 0%";
    try {
      const result = await send(name, files);
      progress.max = 1;
      progress.value = 1;
      importStatus.textContent = `Imported ${plural(result.imported, "message")} into ${result.name}.`;
      say(importStatus.textContent);
    } catch (error) {
      progress.max = 1;
      progress.value = 0;
      importStatus.textContent = "";
      throw error;
    } finally {
      upload = null;
      importButton.disabled = false;
    }
  });

  importDialog.addEventListener("close", () => upload?.abort());

  refresh();
})();
