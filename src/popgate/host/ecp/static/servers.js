// The Servers page: every computer of the organization (Get-ExchangeServer), its roles, and
// the state of this computer's services at a glance.
"use strict";

(() => {
  const table = document.getElementById("servers");
  const body = table.tBodies[0];
  const home = table.dataset.home.toLowerCase();
  const prefix = table.dataset.prefix;
  const STATUS_TEXT = { Running: "Running", Stopped: "Stopped", StartPending: "Starting", StopPending: "Stopping" };

  function element(tag, text, attributes = {}) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    return node;
  }

  function link(text, href) {
    return element("a", text, { href });
  }

  function row(server) {
    const local = server.name.toLowerCase() === home;
    const tr = element("tr", undefined, { "data-name": server.name });
    const name = element("th", server.name, { scope: "row" });
    if (local) name.append(" ", element("span", "(this computer)", { class: "note" }));
    const services = element("td", undefined, { class: "services" });
    const manage = element("td", undefined, { class: "manage" });
    const settings = link("POP3 settings", `${prefix}/pop3?server=${encodeURIComponent(server.name)}`);
    if (local) {
      tr.classList.add("local");
      services.append(element("ul", undefined, { class: "service-states", "aria-live": "polite" }));
      manage.append(link("Services", `${prefix}/services`), " ", settings);
    } else {
      // This host calls that computer's host for us (the same rights, audited there).
      const remote = link(`Services on ${server.name}`,
        `${prefix}/services?server=${encodeURIComponent(server.name)}`);
      services.append(server.control_url ? remote : "No control API other computers can reach");
      manage.append(server.control_url ? link("Services", remote.getAttribute("href")) : "", " ", settings);
    }
    tr.append(name, element("td", server.fqdn), element("td", server.roles.join(", "), { class: "roles" }),
      services, manage);
    return tr;
  }

  async function refreshServices() {
    const list = body.querySelector("tr.local .service-states");
    if (!list) return;
    let services;
    try {
      services = await popgate.api("GET", "/services");
    } catch (error) {
      popgate.alert(error.message);
      return;
    }
    if (services.length === 0) {
      list.replaceChildren(element("li", "No POP3 service is installed."));
      return;
    }
    for (const service of services) {
      let item = list.querySelector(`li[data-name="${CSS.escape(service.name)}"]`);
      if (!item) {
        item = element("li", undefined, { "data-name": service.name });
        item.append(element("span", service.display_name, { class: "display" }), ": ",
          element("span", "", { class: "state" }));
        list.append(item);
      }
      const state = item.querySelector(".state");
      const text = STATUS_TEXT[service.status] ?? service.status;
      // Only a change is written, so that the live region announces changes only.
      if (state.textContent !== text) {
        state.textContent = text;
        state.dataset.status = service.status;
      }
      item.title = service.last_error ? `Last error: ${service.last_error}` : "";
    }
  }

  async function load() {
    let servers;
    try {
      servers = await popgate.api("GET", "/servers");
    } catch (error) {
      popgate.alert(error.message);
      return;
    }
    body.replaceChildren(...servers.map(row));
    table.setAttribute("aria-busy", "false");
    await refreshServices();
    setInterval(refreshServices, 2000);
  }

  load();
})();
