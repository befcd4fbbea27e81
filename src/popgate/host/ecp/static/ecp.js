// The admin center's shared script: API calls with the CSRF token, alerts, the help overlay.
"use strict";

const popgate = (() => {
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";
  const alerts = document.getElementById("alerts");

  /** Call the control API; resolves to the JSON body, or rejects with its error message. */
  async function api(method, path, body) {
    const options = { method, credentials: "same-origin", headers: { "X-CSRF-Token": csrf } };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(`/api/v1${path}`, options);
    if (response.status === 401) {
      window.location.assign(`/ecp/login?next=${encodeURIComponent(location.pathname)}`);
      throw new Error("Your session has ended; sign in again.");
    }
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(data.error?.message ?? `The request failed (HTTP ${response.status}).`);
      error.status = response.status;
      error.code = data.error?.code;
      throw error;
    }
    return data;
  }

  function alert(text) {
    alerts.textContent = text;
  }

  function clearAlert() {
    alerts.textContent = "";
  }

  const help = document.getElementById("help");
  document.addEventListener("keydown", (event) => {
    const typing = event.target.closest("input, select, textarea");
    if (event.key === "?" && !typing) {
      event.preventDefault();
      if (help.open) help.close(); else help.showModal();
    }
  });

  return { api, alert, clearAlert };
})();
