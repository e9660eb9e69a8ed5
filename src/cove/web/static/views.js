// The Models and Usage views: the store, pulling from the catalog, and SVG bar charts of usage.

import { $, api, bytes, el, explain, getJSON, ndjson, notice } from "/static/util.js";

let refreshPickers = async () => {};
export function onModelsChanged(fn) { refreshPickers = fn; }

// -- models --------------------------------------------------------------------------------------

export async function loadModels() {
  notice("", "#models-notice");
  const [{ models }, catalog] = await Promise.all([getJSON("/api/tags"), getJSON("/api/cove/catalog")]);
  const rows = $("#models-table tbody");
  rows.replaceChildren();
  if (!models.length) notice("No model is installed yet: pull one below.", "#models-notice");
  for (const m of models) {
    const ctx = el("td", { text: "…" });
    const del = el("button", { type: "button", class: "small danger", text: "Delete", "aria-label": `Delete ${m.name}` });
    del.addEventListener("click", async () => {
      if (del.dataset.armed !== "1") { // a second press confirms: no browser dialog
        del.dataset.armed = "1";
        del.textContent = "Really delete?";
        setTimeout(() => { del.dataset.armed = ""; del.textContent = "Delete"; }, 4000);
        return;
      }
      try {
        await api("/api/delete", { method: "DELETE", body: { model: m.name } });
      } catch (e) { notice(explain(e), "#models-notice"); }
      await Promise.all([loadModels(), refreshPickers()]);
    });
    rows.append(el("tr", { "data-model": m.name },
      el("td", { text: m.name }), el("td", { text: bytes(m.size) }),
      el("td", { text: m.details?.quantization_level || "" }), ctx, el("td", {}, del)));
    api("/api/show", { method: "POST", body: { model: m.name } }).then((r) => r.json()).then((info) => {
      const key = Object.keys(info.model_info || {}).find((k) => k.endsWith(".context_length"));
      const n = key ? info.model_info[key] : null;
      ctx.textContent = n ? `${n.toLocaleString()} tokens` : "";
    }).catch(() => { ctx.textContent = ""; });
  }
  const have = new Set(models.map((m) => m.name));
  $("#catalog").replaceChildren(...catalog.models.map((entry) => {
    const pull = el("button", { type: "button", class: "small primary", text: have.has(entry.name) ? "Installed" : "Pull" });
    pull.disabled = have.has(entry.name);
    pull.addEventListener("click", () => pullModel(entry.name));
    return el("li", { "data-fit": entry.fit || "" },
      el("h4", { text: entry.name }),
      el("p", { text: entry.description }),
      el("p", {}, el("span", { class: "ram", text: `needs ~${entry.ram_gb} GB RAM` }),
        document.createTextNode(` · ${entry.download_mb ?? entry.size_mb} MB download · ${entry.license}`)),
      fitLine(entry),
      pull);
  }));
}

// The server ranks the catalog for this machine: best here first, each with its fit and speed.
const FIT_WORDS = {
  yes: "Fits this machine", slow: "Fits, but writes slowly", tight: "Fits, with little room to spare",
  "if freed": "Fits if other programs free memory", no: "Does not fit this machine",
};

function fitLine(entry) {
  if (!entry.fit || !entry.plan) return el("p", { class: "fit", text: "" });
  const speed = entry.plan.decode_tps >= 10 ? Math.round(entry.plan.decode_tps) : entry.plan.decode_tps.toFixed(1);
  const gb = (entry.plan.memory.total / 1e9).toFixed(1);
  return el("p", { class: `fit fit-${entry.fit.replace(" ", "-")}`, title: entry.plan.reason,
    text: `${FIT_WORDS[entry.fit] || entry.fit} · about ${speed} tokens/s · ${gb} GB` });
}

export async function pullModel(name) {
  name = name.trim();
  if (!name) return;
  const status = $("#pull-status");
  const bar = $("#pull-progress");
  status.hidden = false;
  $("#pull-text").textContent = `Pulling ${name}…`;
  bar.removeAttribute("value");
  try {
    const res = await api("/api/pull", { method: "POST", body: { model: name, stream: true } });
    for await (const event of ndjson(res)) {
      if (event.error) throw new Error(event.error);
      if (event.total) {
        bar.max = event.total;
        bar.value = event.completed || 0;
        $("#pull-text").textContent = `${name}: ${event.status} ${bytes(event.completed || 0)} of ${bytes(event.total)}`;
      } else {
        $("#pull-text").textContent = `${name}: ${event.status}`;
      }
    }
    bar.max = 1;
    bar.value = 1;
    $("#pull-text").textContent = `${name} is ready.`;
  } catch (e) {
    $("#pull-text").textContent = `Pull failed: ${explain(e)}`;
  }
  await Promise.all([loadModels(), refreshPickers()]).catch(() => {});
}

// -- usage: SVG bar charts -----------------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function barChart(rows, format, label) {
  // rows: [{name, value}]; horizontal bars, one per row.
  if (!rows.length) return el("p", { class: "snippet", text: "No data yet." });
  const width = 520, rowH = 28, left = 150, right = 90;
  const max = Math.max(...rows.map((r) => r.value), 1e-9);
  const chart = svg("svg", {
    class: "chart", viewBox: `0 0 ${width} ${rows.length * rowH + 8}`, role: "img", "aria-label": label,
  });
  rows.forEach((r, i) => {
    const y = i * rowH + 4;
    const w = Math.max(2, ((width - left - right) * r.value) / max);
    chart.append(
      svg("text", { x: left - 8, y: y + 17, "text-anchor": "end" }, r.name.length > 20 ? `${r.name.slice(0, 19)}…` : r.name),
      svg("rect", { x: left, y: y + 3, width: w, height: rowH - 8, rx: 3, class: `bar-${i % 3}` }),
      svg("text", { x: left + w + 6, y: y + 17, class: "value" }, format(r.value)),
    );
  });
  return chart;
}

export async function loadUsage() {
  const stats = await getJSON("/api/cove/stats");
  $("#usage-summary").textContent = `${stats.conversations} conversations, ${stats.messages} messages, `
    + `${stats.tokens_in.toLocaleString()} tokens in and ${stats.tokens_out.toLocaleString()} tokens out.`;
  const models = Object.values(stats.by_model);
  const tokens = models.map((m) => ({ name: m.model, value: m.tokens_in + m.tokens_out }))
    .sort((a, b) => b.value - a.value);
  const speed = models.filter((m) => m.avg_tokens_per_s != null)
    .map((m) => ({ name: m.model, value: m.avg_tokens_per_s })).sort((a, b) => b.value - a.value);
  const cost = Object.entries(stats.cloud_cost_usd || {}).map(([name, value]) => ({ name, value }))
    .sort((a, b) => b.value - a.value);
  $("#chart-tokens").replaceChildren(barChart(tokens, (v) => v.toLocaleString(), "Tokens by model"));
  $("#chart-speed").replaceChildren(barChart(speed, (v) => v.toFixed(1), "Tokens per second by model"));
  const costChart = barChart(cost, (v) => `$${v < 0.01 ? v.toFixed(4) : v.toFixed(2)}`, "Cloud cost by hosted model");
  const asOf = el("p", { class: "snippet", text: stats.prices_as_of ? `List prices as of ${stats.prices_as_of}.` : "" });
  $("#chart-cost").replaceChildren(costChart, asOf);
}


// -- tools: what a model may call, and whether it is switched on ---------------------------------

export async function loadTools() {
  const { tools, mcp_servers: servers } = await getJSON("/api/cove/tools");
  const on = tools.filter((t) => t.enabled).length;
  $("#tools-summary").textContent = `${tools.length} tools, ${on} switched on`
    + (servers && servers.length ? `; ${servers.length} MCP server${servers.length === 1 ? "" : "s"} declared.` : ".");
  $("#tools-table tbody").replaceChildren(...tools.map((t) => el("tr", { "data-tool": t.name },
    el("td", {}, el("code", { text: t.name })), el("td", { text: t.description || "" }),
    el("td", { text: t.source || "" }), el("td", { text: t.network ? "uses the network" : "offline" }),
    el("td", { text: t.enabled ? "on" : "off" }))));
}
