// The hongbao console page: renders each view the server streams on /api/events.
// Rules: no state of its own beyond the charts' recent points (POINTS_MAX) and the
// pending confirmation; every figure comes from the server's view; every action's
// outcome is shown from the server's action list.
"use strict";

const POINTS_MAX = 120; // about two minutes at the default 1 s interval
const COLORS = ["#58a6ff", "#3fb950", "#d29922", "#bc8cff", "#f778ba", "#39c5cf"];
const charts = {};
let regionsKnown = [];

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function dash(value) { return value === null || value === undefined ? "-" : value; }

// -- the map: cities placed by latitude and longitude (equirectangular, fitted) ---------

function drawMap(regions) {
  const map = document.getElementById("map");
  map.replaceChildren();
  const placed = regions.filter((r) => r.latitude !== null && r.longitude !== null);
  const width = 600, height = 420, margin = 70;
  const lats = placed.map((r) => r.latitude), lons = placed.map((r) => r.longitude);
  const [latMin, latMax] = [Math.min(...lats), Math.max(...lats)];
  const [lonMin, lonMax] = [Math.min(...lons), Math.max(...lons)];
  const span = Math.max(latMax - latMin, lonMax - lonMin, 1);
  const scale = Math.min(width, height) - 2 * margin;
  const x = (lon) => margin + ((lon - lonMin) / span) * scale + (width - scale) / 4;
  const y = (lat) => height - margin - ((lat - latMin) / span) * scale;
  regions.forEach((region, i) => {
    const hasPlace = region.latitude !== null && region.longitude !== null;
    const cx = hasPlace ? x(region.longitude) : 40;
    const cy = hasPlace ? y(region.latitude) : 40 + i * 40;
    const group = svg("g", { "data-region": region.name });
    group.append(svg("circle", { cx, cy, r: 10 + 3 * region.leaders_count,
      class: `city-${region.state}`, opacity: 0.8 }));
    const nodes = region.nodes.map((n) => `${n.node_id}:${n.health}`).join(" ");
    group.append(svg("text", { x: cx + 18, y: cy - 4 }, `${region.name} (${region.state})`));
    group.append(svg("text", { x: cx + 18, y: cy + 12 },
      `leads ${region.leaders_count} · nodes ${nodes} · ${dash(region.requests_per_s)} req/s`));
    map.append(group);
  });
}

// -- region cards: state, drain progress, actions ---------------------------------------

function drawRegions(regions) {
  const box = document.getElementById("regions");
  box.replaceChildren();
  for (const region of regions) {
    const card = el("div", { class: "region-card", "data-region": region.name },
      el("strong", {}, region.name), " ",
      el("span", { class: region.state, "data-state": region.state }, region.state),
      el("div", {}, `leads ${region.leaders_count}; routers ` +
        region.routers.map((r) => `${r.router_id}:${r.up ? "up" : "down"}` +
          (r.metrics === "ok" ? "" : " (no metrics)")).join(" ")));
    if (region.drain) {
      const progress = el("div", { class: "progress", "data-drain": region.name },
        `drain: ${region.drain.moved_count}/${region.drain.shards.length} led elsewhere; ` +
        `deadline in ${Math.round((region.drain.deadline_ms - Date.now()) / 1000)} s: `);
      for (const shard of region.drain.shards) {
        progress.append(el("span", { class: shard.moved ? "moved" : "waiting" },
          `${shard.shard}→${dash(shard.leader_region)} `));
      }
      card.append(progress);
    }
    const buttons = el("div");
    for (const action of ["drain", "undrain", "stop", "start"]) {
      buttons.append(el("button", { type: "button", "data-action": action,
        onclick: () => ask(action, region.name) }, action));
    }
    card.append(buttons);
    box.append(card);
  }
}

// -- tables -----------------------------------------------------------------------------

function drawNodes(regions) {
  const body = document.querySelector("#nodes tbody");
  body.replaceChildren();
  for (const region of regions) {
    for (const n of region.nodes) {
      body.append(el("tr", { "data-node": n.node_id },
        el("td", {}, n.node_id), el("td", {}, n.region),
        el("td", { class: n.health }, n.health), el("td", {}, n.latency_ms),
        el("td", {}, n.shards_led.join(",") || "-"), el("td", {}, n.apply_lag_entries),
        el("td", {}, dash(n.log_lag_entries)), el("td", {}, dash(n.fsync_ms_mean)),
        el("td", { class: n.slow_disk ? "flag" : "" }, dash(n.fsync_ms_p99)),
        el("td", {}, n.metrics)));
    }
  }
}

function drawShards(shards) {
  const body = document.querySelector("#shards tbody");
  body.replaceChildren();
  for (const s of shards) {
    const away = s.leader_region !== null && s.leader_region !== s.home_region;
    const replicas = s.replicas.map((r) => `${r.node_id}${r.role === "leader" ? "*" : ""} ` +
      `${dash(r.applied_index)}${r.lag_entries ? " lag " + r.lag_entries : ""}` +
      (r.role === "down" ? " (down)" : "")).join("; ");
    body.append(el("tr", { "data-shard": s.shard, "data-leader-region": s.leader_region ?? "" },
      el("td", {}, s.shard),
      el("td", { class: s.leader_node_id === null ? "none" : "" }, dash(s.leader_node_id ?? "none")),
      el("td", { class: away ? "away" : "" }, dash(s.leader_region)),
      el("td", {}, s.home_region), el("td", {}, dash(s.term)), el("td", {}, dash(s.commit_index)),
      el("td", {}, replicas)));
  }
}

function drawFlags(flags, viewError) {
  const list = document.getElementById("flags");
  list.replaceChildren();
  if (viewError) list.append(el("li", { class: "flag" }, `view: ${viewError}`));
  if (!flags.length) list.append(el("li", { class: "up" }, "none"));
  for (const f of flags) list.append(el("li", { class: "flag", "data-flag": f.kind }, `${f.kind}: ${f.message}`));
}

function drawActions(actions) {
  const list = document.getElementById("actions");
  list.replaceChildren();
  for (const a of actions) {
    list.append(el("li", { "data-action-id": a.action_id, "data-state": a.state },
      el("span", { class: a.state }, a.state), ` #${a.action_id} ${a.kind} ${a.region ?? ""} `,
      a.elapsed_s ? `(${a.elapsed_s} s) ` : "", a.message));
  }
}

// -- charts (Chart.js) ------------------------------------------------------------------

function makeChart(id, title) {
  return new Chart(document.getElementById(id), {
    type: "line",
    data: { labels: [], datasets: [] },
    options: {
      animation: false, maintainAspectRatio: false, normalized: true,
      plugins: { title: { display: true, text: title, color: "#dde6ee" },
                 legend: { labels: { color: "#dde6ee" } } },
      scales: { x: { ticks: { color: "#8a9aab", maxTicksLimit: 8 } },
                y: { beginAtZero: true, ticks: { color: "#8a9aab" } } },
      elements: { point: { radius: 0 } },
    },
  });
}

function pushPoints(view) {
  if (!charts.requests) {
    charts.requests = makeChart("chart-requests", "requests per second (all codes)");
    charts.errors = makeChart("chart-errors", "errors per second (code not OK)");
  }
  const label = new Date(view.taken_at_ms).toLocaleTimeString();
  for (const [chart, key] of [[charts.requests, "requests_per_s"], [charts.errors, "errors_per_s"]]) {
    if (chart.data.datasets.length !== view.regions.length) {
      chart.data.datasets = view.regions.map((r, i) => ({ label: r.name, data: [],
        borderColor: COLORS[i % COLORS.length], backgroundColor: COLORS[i % COLORS.length] }));
    }
    chart.data.labels.push(label);
    view.regions.forEach((r, i) => chart.data.datasets[i].data.push(r[key]));
    if (chart.data.labels.length > POINTS_MAX) {
      chart.data.labels.shift();
      chart.data.datasets.forEach((d) => d.data.shift());
    }
    chart.update("none");
  }
}

// -- actions behind a confirmation ------------------------------------------------------

const WHAT = {
  drain: (r) => `Drain ${r}: it takes no new work, and every leadership there moves to another region.`,
  undrain: (r) => `Make ${r} active again (its leaders stay where they are until a rebalance).`,
  stop: (r) => `Stop every node and router process of ${r} (clients there lose their router).`,
  start: (r) => `Start ${r}'s processes again; it is marked active once caught up.`,
  rebalance: () => "Move every shard's leadership back to its home region (caught-up replicas only).",
};

function ask(action, region) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = WHAT[action](region);
  document.getElementById("deadline-row").hidden = action !== "drain";
  dialog.dataset.action = action;
  dialog.dataset.region = region ?? "";
  dialog.showModal();
}

async function confirmed() {
  const dialog = document.getElementById("confirm");
  if (dialog.returnValue !== "ok") return;
  const { action, region } = dialog.dataset;
  const url = action === "rebalance" ? "/api/rebalance" : `/api/regions/${encodeURIComponent(region)}/${action}`;
  const body = action === "drain" ? { deadline_s: Number(document.getElementById("deadline").value) } : {};
  try {
    const response = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body) });
    const answer = await response.json();
    if (!response.ok) showRefusal(`${action} ${region}: ${answer.error}`);
  } catch (error) {
    showRefusal(`${action} ${region}: ${error}`);
  }
}

function showRefusal(text) {
  const list = document.getElementById("actions");
  list.prepend(el("li", { "data-state": "refused" }, el("span", { class: "failed" }, "refused"), " ", text));
}

// -- the stream -------------------------------------------------------------------------

function render(payload) {
  const view = payload.view;
  drawFlags(view ? view.flags : [], payload.view_error);
  drawActions(payload.actions);
  if (!view) return;
  document.getElementById("cluster").textContent = `cluster ${view.cluster_id || "?"} · ` +
    `state v${dash(view.cluster_state_version)} · ${view.shard_count} shards · ` +
    new Date(view.taken_at_ms).toLocaleTimeString();
  const names = view.regions.map((r) => r.name).join();
  if (names !== regionsKnown.join()) regionsKnown = view.regions.map((r) => r.name);
  drawMap(view.regions);
  drawRegions(view.regions);
  drawNodes(view.regions);
  drawShards(view.shards);
  if (view.interval_s !== null) pushPoints(view);
}

function connect() {
  const live = document.getElementById("live");
  const events = new EventSource("/api/events");
  events.onopen = () => live.classList.add("on");
  events.onmessage = (message) => render(JSON.parse(message.data));
  events.onerror = () => live.classList.remove("on"); // EventSource reconnects by itself
}

document.getElementById("confirm").addEventListener("close", confirmed);
document.getElementById("rebalance").addEventListener("click", () => ask("rebalance", null));
connect();
