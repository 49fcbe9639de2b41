// drover's cluster page. It reads /api/v1/ once a second and builds every
// element with createElement and text nodes: no string from the API is
// ever parsed as markup (text nodes and attributes only, no inline handlers).
"use strict";

(function () {
  const POLL_MS = 1000;

  // el makes an element; attrs: {class, data: {k: v}, title}; children are
  // nodes or strings (always added as text).
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    if (attrs) {
      if (attrs.class) e.className = attrs.class;
      if (attrs.title) e.title = attrs.title;
      if (attrs.data) {
        for (const [k, v] of Object.entries(attrs.data)) e.setAttribute("data-" + k, String(v));
      }
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function replace(parent, ...children) {
    while (parent.firstChild) parent.removeChild(parent.firstChild);
    for (const c of children) parent.appendChild(c);
  }

  function dur(s) {
    if (s < 0) return "never";
    if (s < 60) return s.toFixed(0) + "s";
    if (s < 3600) return (s / 60).toFixed(0) + "m";
    if (s < 86400) return (s / 3600).toFixed(1) + "h";
    return (s / 86400).toFixed(1) + "d";
  }

  function renderMesh(m) {
    const table = document.getElementById("mesh-matrix");
    const head = el("tr", null, el("th", null, "from \\ to"));
    for (const h of m.hosts) head.appendChild(el("th", { class: h.down ? "host-down" : "", data: { node: h.node } }, h.node));
    replace(table.tHead, head);
    const rows = m.hosts.map((h, i) => {
      const tr = el("tr", { data: { node: h.node } }, el("th", { class: h.down ? "host-down" : "" }, h.node));
      for (const c of m.cells[i]) {
        let text = "";
        if (c.state === "self") text = "—";
        else if (c.state === "reachable") text = "ok " + c.rtt_ms.toFixed(2) + " ms";
        else if (c.state === "unreachable") text = "unreachable";
        else text = "?";
        const hs = c.state === "self" ? null : el("div", { class: "hs" }, "handshake " + dur(c.handshake_age_s));
        tr.appendChild(el("td", { class: "cell cell-" + c.state, title: c.why || "", data: { from: c.from, to: c.to, state: c.state } }, text, hs));
      }
      return tr;
    });
    replace(table.tBodies[0], ...rows);
    const hosts = m.hosts.map((h) =>
      el("tr", { class: h.down ? "host-down" : "host-up", data: { node: h.node, down: h.down } },
        el("td", null, h.node), el("td", { title: h.why || "" }, h.down ? "DOWN: " + h.why : "up"),
        el("td", null, h.subnet), el("td", null, h.endpoint), el("td", null, h.version),
        el("td", null, h.row_age_s < 0 ? "" : dur(h.uptime_s)), el("td", null, h.row_age_s < 0 ? "no row" : dur(h.row_age_s)),
        el("td", null, h.consul_health || "")));
    replace(document.getElementById("hosts").tBodies[0], ...hosts);
  }

  function renderServices(s) {
    const rows = [];
    for (const svc of s.services) {
      for (const ins of svc.instances) {
        const tags = el("td", { class: "tags" });
        for (const t of ins.tags || []) tags.appendChild(el("span", { class: "tag" }, t));
        const checks = el("td", { class: "checks" });
        for (const c of ins.checks || []) checks.appendChild(el("span", { class: "check check-" + c.status, title: c.id }, c.name + ": " + c.status));
        rows.push(el("tr", { class: "instance", data: { service: svc.name, node: ins.node, health: ins.health } },
          el("td", null, svc.name), el("td", null, ins.node), el("td", null, ins.address), el("td", null, ins.port), tags, checks));
      }
    }
    replace(document.getElementById("services").tBodies[0], ...rows);
    const refused = s.refused.map((r) =>
      el("tr", { class: "refusal", data: { node: r.node } },
        el("td", null, r.node), el("td", null, r.container), el("td", null, r.port || ""), el("td", { class: "reason" }, r.reason)));
    replace(document.getElementById("refused").tBodies[0], ...refused);
  }

  function stats(st) {
    return [el("td", { class: "st-" + st.status }, st.status), el("td", null, st.sessions), el("td", null, st.rate), el("td", null, st.requests), el("td", null, st.errors)];
  }

  function renderLB(l) {
    const blocks = l.lbs.map((s) => {
      const box = el("div", { class: "lbhost", data: { node: s.node } },
        el("h3", null, "lb on " + s.node),
        el("p", null, "reloads " + s.reloads + ", failed " + s.failed_reloads + ", runtime ops " + s.runtime_ops + (s.stale ? ", STALE: " + s.stale_reason : "") + (s.last_error ? ", last error: " + s.last_error : "") +
          (s.omitted_backends ? ", " + s.omitted_backends + " more backends not published (too many for one Consul key; the UI of " + s.node + " shows them all)" : "")));
      const fts = el("table", { class: "frontends" },
        el("thead", null, el("tr", null, el("th", null, "frontend"), el("th", null, "mode"), el("th", null, "port"), el("th", null, "routes"),
          el("th", null, "state"), el("th", null, "sessions"), el("th", null, "rate/s"), el("th", null, "requests"), el("th", null, "errors"))));
      const ftb = el("tbody");
      for (const f of s.frontends) {
        const routes = el("td", null);
        for (const r of f.routes || []) routes.appendChild(el("div", { class: "route", data: { backend: r.backend } }, (r.host || "*") + (r.path || "") + " → " + (r.redirect ? "redirect " + r.redirect : r.backend)));
        if (f.default_backend) routes.appendChild(el("div", { class: "route", data: { backend: f.default_backend } }, "→ " + f.default_backend));
        ftb.appendChild(el("tr", { class: "frontend", data: { frontend: f.name } }, el("td", null, f.name), el("td", null, f.mode), el("td", null, f.port), routes, ...stats(f.stats)));
      }
      fts.appendChild(ftb);
      box.appendChild(fts);
      const bts = el("table", { class: "backends" },
        el("thead", null, el("tr", null, el("th", null, "backend"), el("th", null, "server"), el("th", null, "address"), el("th", null, "weight"),
          el("th", null, "state"), el("th", null, "sessions"), el("th", null, "rate/s"), el("th", null, "requests"), el("th", null, "errors"))));
      const btb = el("tbody");
      for (const b of s.backends) {
        btb.appendChild(el("tr", { class: "backend", data: { backend: b.name } },
          el("td", null, b.name + " (" + b.mode + ", " + b.balance + ", " + b.slots + " slots)"), el("td", null, ""), el("td", null, ""), el("td", null, ""), ...stats(b.stats)));
        for (const sv of b.servers || []) {
          btb.appendChild(el("tr", { class: "server", data: { backend: b.name, addr: sv.addr, status: sv.stats.status } },
            el("td", null, ""), el("td", null, sv.slot), el("td", null, sv.addr), el("td", null, sv.weight), ...stats(sv.stats)));
        }
      }
      bts.appendChild(btb);
      box.appendChild(bts);
      const hist = el("ol", { class: "history" });
      for (const e of s.history || []) hist.appendChild(el("li", { class: "event", data: { kind: e.kind } }, el("span", { class: "when" }, new Date(e.at).toLocaleTimeString()), e.text));
      box.appendChild(el("h4", null, "last reloads and runtime operations"));
      box.appendChild(hist);
      return box;
    });
    if (blocks.length === 0) blocks.push(el("p", null, "no load balancer publishes a summary"));
    replace(document.getElementById("lb"), ...blocks);
  }

  function renderEvents(ev) {
    const items = ev.events.map((e) =>
      el("li", { class: "event", data: { kind: e.kind, node: e.node } },
        el("span", { class: "when" }, new Date(e.at).toLocaleTimeString()), el("span", { class: "kind" }, e.node + " " + e.kind), e.text));
    replace(document.getElementById("events"), ...items);
  }

  async function get(path) {
    const r = await fetch(path, { credentials: "same-origin", cache: "no-store" });
    if (!r.ok) throw new Error(path + ": HTTP " + r.status);
    return r.json();
  }

  async function tick() {
    const status = document.getElementById("status");
    try {
      const [idx, mesh, svcs, lb, ev] = await Promise.all(["/api/v1/", "/api/v1/mesh", "/api/v1/services", "/api/v1/lb", "/api/v1/events"].map(get));
      document.getElementById("node").textContent = "on " + idx.node;
      renderMesh(mesh);
      renderServices(svcs);
      renderLB(lb);
      renderEvents(ev);
      const problems = [].concat(svcs.problems || [], lb.problems || []);
      document.getElementById("problems").textContent = problems.join("\n");
      status.textContent = "updated " + new Date().toLocaleTimeString();
      status.className = "status";
      document.body.setAttribute("data-updated", String(Date.now()));
    } catch (e) {
      status.textContent = "cannot read the API: " + e.message;
      status.className = "status error";
    }
    setTimeout(tick, POLL_MS);
  }

  tick();
})();
