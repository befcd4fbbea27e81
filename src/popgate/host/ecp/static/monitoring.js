// The Monitoring page: the audit log (filtered, newest first), the tail of the host log and
// the newest rows of a service's protocol log, read again on demand and every few seconds. The API decides who may read them; a refusal
// is shown as the API words it.
"use strict";

(() => {
  const root = document.getElementById("monitoring");
  const every = Number(root.dataset.refreshSeconds) * 1000;
  const form = document.getElementById("audit-filter");
  const table = document.getElementById("audit");
  const rows = table.tBodies[0];
  const auditStatus = document.getElementById("audit-status");
  const hostLog = document.getElementById("host-log");
  const logStatus = document.getElementById("log-status");
  const logLines = document.getElementById("log-lines");
  const auto = document.getElementById("auto-refresh");
  const refreshed = document.getElementById("refreshed");
  const cmdletNames = document.getElementById("cmdlet-names");
  const COLUMNS = ["actor", "origin", "action", "target", "result", "detail"];
  let latest = 0; // the newest refresh: an older answer that arrives late is dropped
  const protocolForm = document.getElementById("protocol-filter");
  const protocolTable = document.getElementById("protocol-log");
  const protocolRows = protocolTable.tBodies[0];
  const protocolStatus = document.getElementById("protocol-status");
  const PROTOCOL_COLUMNS = ["seq_number", "client_ip", "user", "command", "parameters", "context"];
  let protocolLatest = 0;

  /** The filter form as the audit endpoint's query (Search-AdminAuditLog's parameters). */
  function auditQuery() {
    const query = new URLSearchParams();
    const cmdlets = form.elements.cmdlets.value.trim();
    const users = form.elements.user_ids.value.trim();
    if (cmdlets) query.set("cmdlets", cmdlets);
    if (users) query.set("user_ids", users);
    for (const name of ["start", "end"]) {
      const value = form.elements[name].value;
      // datetime-local is this browser's time; sent with its offset, the host reads it right.
      if (value) query.set(name, new Date(value).toISOString());
    }
    query.set("result_size", form.elements.result_size.value || "100");
    return query;
  }

  /** Say why ``what`` could not be read (the API's words), or nothing; true if it could not. */
  function explain(status, what, outcome) {
    const failed = outcome.status === "rejected";
    const error = outcome.reason;
    status.classList.toggle("error", failed);
    if (failed) {
      status.textContent =
        error.status === 403 ? `You can't read the ${what}: ${error.message}` : error.message;
    }
    return failed;
  }

  function showAudit(outcome) {
    rows.replaceChildren();
    table.hidden = explain(auditStatus, "audit log", outcome);
    if (table.hidden) return;
    const wanted = form.elements.result.value;
    // The API has no result filter: the entries read are narrowed here.
    const entries = outcome.value.filter((entry) => !wanted || entry.result === wanted);
    for (const entry of entries) {
      const row = rows.insertRow();
      row.dataset.result = entry.result;
      const when = document.createElement("time");
      when.dateTime = entry.at;
      when.textContent = new Date(entry.at).toLocaleString();
      row.insertCell().append(when);
      for (const key of COLUMNS) row.insertCell().textContent = entry[key];
      remember(entry.action);
    }
    const count = entries.length;
    auditStatus.textContent = count
      ? `${count} ${count === 1 ? "entry" : "entries"}, newest first.`
      : "No audit entries match the filter.";
  }

  /** Offer every cmdlet met in the log as a suggestion of the Cmdlet filter. */
  function remember(action) {
    const known = [...cmdletNames.options].some((option) => option.value === action);
    if (!known) cmdletNames.append(new Option(action, action));
  }

  function showLog(outcome) {
    hostLog.hidden = explain(logStatus, "host log", outcome);
    if (hostLog.hidden) {
      hostLog.textContent = "";
      return;
    }
    // Follow the newest line, unless the reader has scrolled up to read an older one.
    const following = hostLog.scrollTop + hostLog.clientHeight >= hostLog.scrollHeight - 4;
    const lines = outcome.value.lines;
    hostLog.textContent = lines.join("\n");
    logStatus.textContent = lines.length ? "" : "The host log is empty.";
    if (following) hostLog.scrollTop = hostLog.scrollHeight;
  }

  /** The protocol log filter as the endpoint's query. */
  function protocolQuery() {
    const query = new URLSearchParams();
    for (const name of ["service", "lines", "session", "user"]) {
      const value = protocolForm.elements[name].value.trim();
      if (value) query.set(name, value);
    }
    return query;
  }

  /** A session id that, pressed, shows that session alone (in either service's log). */
  function sessionButton(id) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "session";
    button.textContent = id;
    button.setAttribute("aria-label", `Only session ${id}`);
    button.addEventListener("click", () => {
      protocolForm.elements.session.value = id;
      refreshProtocol();
    });
    return button;
  }

  function showProtocol(outcome) {
    protocolRows.replaceChildren();
    protocolTable.hidden = explain(protocolStatus, "protocol log", outcome);
    if (protocolTable.hidden) return;
    const view = outcome.value;
    // Follow the newest row, unless the reader has scrolled up to read an older one.
    const box = protocolTable.parentElement;
    const following = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
    for (const entry of view.rows) {
      const row = protocolRows.insertRow();
      row.dataset.session = entry.session_id;
      if (entry.context.includes('R="-ERR')) row.dataset.failed = "";
      row.insertCell().textContent = entry.date_time;
      row.insertCell().append(sessionButton(entry.session_id));
      for (const key of PROTOCOL_COLUMNS) row.insertCell().textContent = entry[key];
    }
    const count = view.rows.length;
    const shown = count
      ? `${count} ${count === 1 ? "row" : "rows"} of ${view.files.join(", ")} in ${view.folder}, newest last.`
      : "No protocol log rows match the filter.";
    protocolStatus.textContent = view.note ? `${view.note} ${count ? shown : ""}`.trim() : shown;
    if (following) box.scrollTop = box.scrollHeight;
  }

  async function refreshProtocol() {
    const mine = ++protocolLatest;
    protocolTable.setAttribute("aria-busy", "true");
    const [outcome] = await Promise.allSettled([
      popgate.api("GET", `/protocol-log?${protocolQuery()}`),
    ]);
    if (mine !== protocolLatest) return;
    protocolTable.removeAttribute("aria-busy");
    showProtocol(outcome);
  }

  async function refresh() {
    const mine = ++latest;
    table.setAttribute("aria-busy", "true");
    const [audit, log] = await Promise.allSettled([
      popgate.api("GET", `/audit?${auditQuery()}`),
      popgate.api("GET", `/log?lines=${encodeURIComponent(logLines.value)}`),
    ]);
    if (mine !== latest) return;
    table.removeAttribute("aria-busy");
    showAudit(audit);
    showLog(log);
    await refreshProtocol();
    refreshed.textContent = `Last read at ${new Date().toLocaleTimeString()}.`;
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    refresh();
  });
  // The reset event comes before the fields are cleared: read once they are.
  form.addEventListener("reset", () => setTimeout(refresh));
  form.elements.result.addEventListener("change", refresh);
  logLines.addEventListener("change", refresh);
  protocolForm.addEventListener("submit", (event) => {
    event.preventDefault();
    refreshProtocol();
  });
  protocolForm.addEventListener("reset", () => setTimeout(refreshProtocol));
  for (const name of ["service", "lines"]) {
    protocolForm.elements[name].addEventListener("change", refreshProtocol);
  }
  document.getElementById("refresh").addEventListener("click", refresh);
  setInterval(() => {
    if (auto.checked && !document.hidden) refresh();
  }, every);
  refresh();
})();
