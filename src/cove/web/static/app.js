// cove's browser chat: one module, no libraries. Model text is only ever inserted as text, or as the
// HTML the server's /api/cove/render returned after sanitising it.

import { loadPrivacy } from "/static/privacy.js";

const $ = (sel) => document.querySelector(sel);
const KEY_STORE = "cove-api-key";
const RENDER_EVERY_MS = 250;

const state = {
  conversation: null, // the stored conversation id, once the server gave one
  personaSent: null, // the persona whose system prompt this conversation already holds
  controller: null,
  lastUser: null,
  personas: new Map(),
  baseModels: new Set(), // stored models the catalog calls base models
};

// -- small helpers -------------------------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

function bytes(n) {
  if (!n && n !== 0) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function notice(text, where = "#notice") {
  const box = $(where);
  box.textContent = text || "";
  box.hidden = !text;
}

class HttpError extends Error {
  constructor(status, message, retryAfter) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

function explain(err) {
  if (err instanceof HttpError) {
    if (err.status === 503) {
      const wait = err.retryAfter ? ` Try again in ${err.retryAfter} s.` : " Try again shortly.";
      return `The server is busy (${err.message}).${wait}`;
    }
    if (err.status === 401) return "The server needs an API key.";
    return err.message;
  }
  return String(err && err.message ? err.message : err);
}

// -- the API, with the key kept only in sessionStorage -------------------------------------------

function askKey() {
  const dialog = $("#key-dialog");
  $("#key").value = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      const key = dialog.returnValue === "ok" ? $("#key").value.trim() : "";
      if (key) sessionStorage.setItem(KEY_STORE, key);
      resolve(Boolean(key));
    }, { once: true });
    dialog.showModal();
  });
}

async function api(path, { method = "GET", body, signal } = {}) {
  for (let attempt = 0; attempt < 3; attempt++) {
    const headers = {};
    const key = sessionStorage.getItem(KEY_STORE);
    if (key) headers.Authorization = `Bearer ${key}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    headers["X-Cove-Source"] = "web"; // conversations started here are kept as the web chat's
    headers["X-Cove-Consent"] = "ask"; // this page asks before each tool call (see toolStep)
    const res = await fetch(path, {
      method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (res.status === 401 && (await askKey())) continue;
    if (!res.ok) {
      let message = `${res.status} ${res.statusText}`;
      try {
        const data = await res.json();
        if (data && data.error) message = typeof data.error === "string" ? data.error : data.error.message;
      } catch { /* not JSON */ }
      throw new HttpError(res.status, message, res.headers.get("retry-after"));
    }
    return res;
  }
  throw new HttpError(401, "missing or wrong API key");
}

const getJSON = async (path) => (await api(path)).json();

async function* ndjson(res) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, cut).trim();
      buffer = buffer.slice(cut + 1);
      if (line) yield JSON.parse(line);
    }
  }
  if (buffer.trim()) yield JSON.parse(buffer);
}

async function renderInto(node, text) {
  const { html } = await (await api("/api/cove/render", { method: "POST", body: { text } })).json();
  node.innerHTML = html; // sanitised by the server (nh3 allowlist); never the model's raw text
  node.classList.remove("streaming");
  for (const pre of node.querySelectorAll("pre")) {
    const button = el("button", { type: "button", class: "small copy-code", text: "Copy code" });
    button.addEventListener("click", () => copy(pre.querySelector("code")?.textContent ?? pre.textContent, button));
    pre.append(button);
  }
}

async function copy(text, button) {
  try {
    await navigator.clipboard.writeText(text);
    const was = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = was; }, 1200);
  } catch {
    button.textContent = "Copy failed";
  }
}

// -- views and the sidebar -----------------------------------------------------------------------

function show(view) {
  for (const button of document.querySelectorAll("nav button")) {
    if (button.dataset.view === view) button.setAttribute("aria-current", "page");
    else button.removeAttribute("aria-current");
  }
  for (const name of ["chat", "models", "usage", "privacy"]) $(`#view-${name}`).hidden = name !== view;
  if (view === "models") loadModels().catch((e) => notice(explain(e), "#models-notice"));
  if (view === "usage") loadUsage().catch((e) => { $("#usage-summary").textContent = explain(e); });
  if (view === "privacy") loadPrivacy(getJSON).catch((e) => { $("#privacy-summary").textContent = explain(e); });
}

async function loadConversations() {
  const { conversations } = await getJSON("/api/cove/conversations?limit=200");
  const list = $("#conversations");
  list.replaceChildren();
  for (const c of conversations) {
    const id = encodeURIComponent(c.id);
    const item = el("li", { "data-id": c.id, class: c.id === state.conversation ? "current" : "" });
    const open = el("button", { type: "button", class: "conv-open", onclick: () => openConversation(c.id) },
      el("span", { class: "conv-title", text: c.title || "(untitled)" }),
      el("span", { class: "conv-meta", text: `${new Date(c.updated_at).toLocaleString()} · ${c.model || ""}` }));
    const actions = el("div", { class: "conv-actions" },
      el("button", { type: "button", class: "small", text: "Rename", "aria-label": `Rename ${c.title || "conversation"}`, onclick: () => rename(c) }),
      el("button", { type: "button", class: "small danger", text: "Delete", "aria-label": `Delete ${c.title || "conversation"}`, onclick: () => remove(c) }),
      el("button", { type: "button", class: "small export-json", text: "JSON", "aria-label": `Export ${c.title || "conversation"} as JSON`,
        onclick: () => saveExport(`/api/cove/conversations/${id}/export?format=json`, `cove-${c.id}.json`) }),
      el("button", { type: "button", class: "small export-md", text: "Markdown", "aria-label": `Export ${c.title || "conversation"} as Markdown`,
        onclick: () => saveExport(`/api/cove/conversations/${id}/export?format=md`, `cove-${c.id}.md`) }));
    item.append(open, actions);
    list.append(item);
  }
}

// An export is fetched with the API key (a plain link could not send it), then saved from a blob: URL.
async function saveExport(path, filename) {
  try {
    const blob = await (await api(path)).blob();
    const url = URL.createObjectURL(blob);
    const link = el("a", { href: url, download: filename, hidden: "" });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (e) {
    notice(`Export failed: ${explain(e)}`);
  }
}

async function rename(c) {
  const title = window.prompt("New title", c.title || "");
  if (title === null) return;
  await api(`/api/cove/conversations/${encodeURIComponent(c.id)}/rename`, { method: "POST", body: { title } });
  await loadConversations();
}

async function remove(c) {
  if (!window.confirm(`Delete "${c.title || "this conversation"}"?`)) return;
  await api(`/api/cove/conversations/${encodeURIComponent(c.id)}`, { method: "DELETE" });
  if (state.conversation === c.id) newChat();
  await loadConversations();
}

async function search(text) {
  const box = $("#search-results");
  box.replaceChildren();
  if (!text.trim()) return;
  const { results } = await getJSON(`/api/cove/search?q=${encodeURIComponent(text)}`);
  const list = el("ul");
  for (const r of results) {
    list.append(el("li", {},
      el("button", { type: "button", class: "conv-open", onclick: () => openConversation(r.conversation_id) },
        el("span", { class: "conv-title", text: r.title || "(untitled)" }),
        el("span", { class: "snippet", text: r.snippet }))));
  }
  box.append(results.length ? list : el("p", { class: "snippet", text: "Nothing found." }));
}

function newChat() {
  if (state.controller) state.controller.abort();
  state.conversation = null;
  state.personaSent = null;
  state.lastUser = null;
  $("#messages").replaceChildren();
  $("#regenerate").disabled = true;
  notice("");
  loadConversations().catch(() => {});
  $("#prompt").focus();
}

async function openConversation(id) {
  if (state.controller) state.controller.abort();
  const chat = await getJSON(`/api/cove/conversations/${encodeURIComponent(id)}`);
  state.conversation = chat.id;
  state.personaSent = chat.persona || $("#persona").value || null;
  state.lastUser = null;
  const box = $("#messages");
  box.replaceChildren();
  for (const m of chat.messages) {
    if (m.role === "user") {
      addUser(m.content);
      state.lastUser = m.content;
    } else if (m.role === "assistant") {
      const bubble = addAssistant();
      bubble.text = m.content;
      await renderInto(bubble.body, m.content);
      footer(bubble, { ttft: m.time_to_first_token_ms, tps: m.tokens_per_s });
    } else if (m.role === "tool") {
      box.append(el("div", { class: "tool-note", text: m.content })); // a kept tool run, as text
    }
  }
  if (chat.model && [...$("#model").options].some((o) => o.value === chat.model)) {
    $("#model").value = chat.model;
    describeChoice(state.baseModels);
  }
  $("#regenerate").disabled = !state.lastUser;
  show("chat");
  closeSidebar();
  await loadConversations();
}

// -- chatting ------------------------------------------------------------------------------------

function addUser(text) {
  const node = el("div", { class: "msg user", text });
  $("#messages").append(node);
  node.scrollIntoView({ block: "end" });
  return node;
}

function addAssistant() {
  const body = el("div", { class: "md streaming" });
  const foot = el("div", { class: "msg-foot" });
  const node = el("div", { class: "msg assistant" }, body, foot);
  $("#messages").append(node);
  const bubble = { node, body, foot, text: "" };
  return bubble;
}

// -- tool calls: the server waits for a yes before it runs one ----------------------------------

const alwaysTools = new Set(); // tools answered "always" on this page

async function toolStep(bubble, step, signal) {
  if (step.kind !== "consent") {
    const said = { ran: "ran", error: "failed", refused: "not run", limit: "stopped" }[step.kind] || step.kind;
    const detail = step.kind === "error" || step.kind === "limit" ? `: ${step.message || ""}` : "";
    bubble.node.insertBefore(el("div", { class: "tool-note", text: `${step.name || "tools"} ${said}${detail}` }),
      bubble.body);
    return;
  }
  const answer = alwaysTools.has(step.name) ? "yes" : await askTool(step, signal);
  if (answer === "always") alwaysTools.add(step.name);
  await api("/api/cove/tools/consent", { method: "POST", body: { consent_id: step.consent_id, answer } })
    .catch(() => {}); // answered already, or timed out: the stream says what happened
}

function askTool(step, signal) {
  // Everything here is text (textContent): a model's arguments cannot become markup.
  const dialog = el("dialog", { class: "tool-dialog", "aria-label": "Allow a tool call" });
  const form = el("form", { method: "dialog" },
    el("p", { text: `The model wants to run the tool ${step.name} with:` }),
    el("pre", { text: JSON.stringify(step.arguments ?? {}, null, 2) }),
    el("div", { class: "tool-buttons" },
      el("button", { value: "yes", text: "Run it" }),
      el("button", { value: "no", text: "Don't run" }),
      el("button", { value: "always", text: `Always run ${step.name}` })));
  dialog.append(form);
  document.body.append(dialog);
  return new Promise((resolve) => {
    const stop = () => dialog.close("no");
    signal.addEventListener("abort", stop, { once: true });
    dialog.addEventListener("close", () => {
      signal.removeEventListener("abort", stop);
      dialog.remove();
      resolve(["yes", "no", "always"].includes(dialog.returnValue) ? dialog.returnValue : "no");
    }, { once: true });
    dialog.showModal();
  });
}

function footer(bubble, { ttft, tps, stopped }) {
  const parts = [];
  if (ttft != null) parts.push(`first token ${Math.round(ttft)} ms`);
  if (tps != null) parts.push(`${Number(tps).toFixed(1)} tokens/s`);
  if (stopped) parts.push("stopped");
  const button = el("button", { type: "button", class: "small", text: "Copy" });
  button.addEventListener("click", () => copy(bubble.text, button));
  bubble.foot.replaceChildren(el("span", { class: "stats", text: parts.join(" · ") }), button);
}

function options() {
  const out = {};
  for (const [id, parse] of [["temperature", parseFloat], ["num_ctx", parseInt], ["num_predict", parseInt]]) {
    const raw = $(`#${id}`).value.trim();
    if (raw !== "" && !Number.isNaN(parse(raw))) out[id] = parse(raw);
  }
  return out;
}

function busy(on) {
  $("#send").disabled = on;
  $("#stop").disabled = !on;
  $("#regenerate").disabled = on || !state.lastUser;
}

async function send(text) {
  const model = $("#model").value;
  if (!model) {
    notice("No model is installed yet. Open Models and pull one (or start cove once with a network).");
    return;
  }
  notice("");
  state.lastUser = text;
  addUser(text);
  const messages = [];
  const persona = $("#persona").value;
  if (persona && persona !== state.personaSent) {
    messages.push({ role: "system", content: state.personas.get(persona) || "" });
  }
  messages.push({ role: "user", content: text });
  const body = { model, messages, stream: true, conversation_id: state.conversation || "new" };
  const opts = options();
  if (Object.keys(opts).length) body.options = opts;
  await stream(body, persona);
}

async function stream(body, persona) {
  const bubble = addAssistant();
  const controller = new AbortController();
  state.controller = controller;
  busy(true);
  const started = performance.now();
  let ttft = null;
  let final = null;
  let rendered = "";
  let rendering = null;
  let lastRender = 0;
  const rerender = () => {
    if (rendering || bubble.text === rendered || performance.now() - lastRender < RENDER_EVERY_MS) return;
    const text = bubble.text;
    lastRender = performance.now();
    rendering = renderInto(bubble.body, text).then(() => { rendered = text; })
      .catch(() => {}).finally(() => { rendering = null; });
  };
  let stopped = false;
  try {
    const res = await api("/api/chat", { method: "POST", body, signal: controller.signal });
    const id = res.headers.get("x-cove-conversation");
    if (id) {
      const fresh = state.conversation !== id;
      state.conversation = id;
      if (persona !== undefined) state.personaSent = persona || state.personaSent;
      if (fresh) loadConversations().catch(() => {});
    }
    const context = res.headers.get("x-cove-context");
    if (context) notice(`Older messages were summarised to fit the context: ${context}`);
    for await (const chunk of ndjson(res)) {
      if (chunk.error) throw new Error(chunk.error);
      if (chunk.cove_tool) {
        await toolStep(bubble, chunk.cove_tool, controller.signal);
        continue;
      }
      const piece = chunk.message?.content || "";
      if (piece && ttft === null) ttft = performance.now() - started;
      bubble.text += piece;
      if (rendered === "") {
        bubble.body.textContent = bubble.text; // plain text until the first sanitised render lands
      } else {
        // Text that arrived since the last render, shown as text (never as HTML) until the next one.
        let tail = bubble.body.querySelector(":scope > .tail");
        if (!tail) bubble.body.append((tail = el("span", { class: "tail" })));
        tail.textContent = bubble.text.slice(rendered.length);
      }
      rerender();
      bubble.node.scrollIntoView({ block: "end" });
      if (chunk.done) final = chunk;
    }
  } catch (err) {
    if (err.name === "AbortError") {
      stopped = true;
    } else {
      bubble.node.classList.add("error");
      const message = explain(err);
      notice(err instanceof HttpError && err.status === 404 && /not found/i.test(message)
        ? `${message}. Open Models to pull it.` : message);
      if (!bubble.text) bubble.body.textContent = message;
    }
  } finally {
    if (state.controller === controller) state.controller = null;
    if (rendering) await rendering;
    if (bubble.text) await renderInto(bubble.body, bubble.text).catch(() => {});
    const tps = final && final.eval_duration ? final.eval_count / (final.eval_duration / 1e9) : null;
    footer(bubble, { ttft, tps, stopped });
    busy(false);
    $("#prompt").focus();
  }
}

async function regenerate() {
  if (!state.lastUser || state.controller) return;
  const bubbles = document.querySelectorAll("#messages .msg");
  const last = bubbles[bubbles.length - 1];
  if (last && last.classList.contains("assistant")) last.remove();
  const users = document.querySelectorAll("#messages .msg.user");
  if (users.length) users[users.length - 1].remove();
  await send(state.lastUser);
}

// -- pickers -------------------------------------------------------------------------------------

// The catalog's chat model for small machines: preselected whenever it is stored.
const DEFAULT_CHAT_MODEL = "smollm2:135m";

/** Names of the catalog's base models: they continue text rather than follow instructions. */
function baseModelNames(catalog) {
  // An entry's `kind` when the server gives one; else its description, which says "base".
  const isBase = (e) => (e.kind ? e.kind === "base" : /\bbase\b/i.test(e.description || ""));
  return new Set((catalog.models || []).filter(isBase).map((e) => e.name));
}

/** The model to preselect: the default chat model, else the first chat model, else any. */
function bestChatModel(names, base, catalog) {
  const preferred = (catalog.models || []).find((e) => e.default)?.name || DEFAULT_CHAT_MODEL;
  if (names.includes(preferred)) return preferred;
  return names.find((n) => !base.has(n)) || names[0] || "";
}

function describeChoice(base) {
  const picker = $("#model");
  const isBase = base.has(picker.value);
  picker.title = isBase ? `${picker.value} is a base model` : "";
  if (isBase) {
    notice(`${picker.value} is a base model: it continues text more than it follows instructions. ` +
      "Open Models to pull a chat model such as smollm2:135m.");
  } else if ($("#notice").textContent.includes("is a base model")) {
    notice("");
  }
}

async function loadPickers() {
  const [{ models }, { personas }, catalog] = await Promise.all([
    getJSON("/api/tags"), getJSON("/api/cove/personas"),
    getJSON("/api/cove/catalog").catch(() => ({ models: [] })), // only for labels: never fatal
  ]);
  const picker = $("#model");
  const was = picker.value;
  // The server says what each stored model is for; the catalog's names cover an older server.
  const base = new Set([...baseModelNames(catalog), ...models.filter((m) => m.kind === "base").map((m) => m.name)]);
  state.baseModels = base;
  picker.replaceChildren(...models.map((m) =>
    el("option", { value: m.name, text: base.has(m.name) ? `${m.name} (base model)` : m.name })));
  const names = models.map((m) => m.name);
  const chat = models.filter((m) => m.kind !== "embedding").map((m) => m.name);
  picker.value = was && names.includes(was) ? was : bestChatModel(chat.length ? chat : names, base, catalog);
  if (!models.length) notice("No model is installed yet. Open Models to pull one.");
  else describeChoice(base);
  const personaPicker = $("#persona");
  const chosen = personaPicker.value;
  state.personas = new Map(personas.map((p) => [p.name, p.system]));
  personaPicker.replaceChildren(el("option", { value: "", text: "None" }),
    ...personas.map((p) => el("option", { value: p.name, text: p.name })));
  if (state.personas.has(chosen)) personaPicker.value = chosen;
}

// -- models --------------------------------------------------------------------------------------

async function loadModels() {
  notice("", "#models-notice");
  const [{ models }, catalog] = await Promise.all([getJSON("/api/tags"), getJSON("/api/cove/catalog")]);
  const rows = $("#models-table tbody");
  rows.replaceChildren();
  if (!models.length) notice("No model is installed yet: pull one below.", "#models-notice");
  for (const m of models) {
    const ctx = el("td", { text: "…" });
    const del = el("button", { type: "button", class: "small danger", text: "Delete", "aria-label": `Delete ${m.name}` });
    del.addEventListener("click", async () => {
      if (!window.confirm(`Delete ${m.name}?`)) return;
      try {
        await api("/api/delete", { method: "DELETE", body: { model: m.name } });
      } catch (e) { notice(explain(e), "#models-notice"); }
      await Promise.all([loadModels(), loadPickers()]);
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

async function pullModel(name) {
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
  await Promise.all([loadModels(), loadPickers()]).catch(() => {});
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

async function loadUsage() {
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

// -- wiring --------------------------------------------------------------------------------------

function closeSidebar() {
  $("#sidebar").classList.remove("open");
  $("#menu").setAttribute("aria-expanded", "false");
}

function wire() {
  for (const button of document.querySelectorAll("nav button")) {
    button.addEventListener("click", () => show(button.dataset.view));
  }
  $("#menu").addEventListener("click", () => {
    const open = $("#sidebar").classList.toggle("open");
    $("#menu").setAttribute("aria-expanded", String(open));
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && $("#sidebar").classList.contains("open")) {
      closeSidebar();
      $("#menu").focus();
    }
  });
  $("#new-chat").addEventListener("click", () => { newChat(); show("chat"); closeSidebar(); });
  $("#composer").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("#prompt").value;
    if (!text.trim() || state.controller) return;
    $("#prompt").value = "";
    send(text).catch((err) => notice(explain(err)));
  });
  $("#prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $("#composer").requestSubmit();
    }
  });
  $("#stop").addEventListener("click", () => state.controller && state.controller.abort());
  $("#regenerate").addEventListener("click", () => regenerate().catch((err) => notice(explain(err))));
  let timer = null;
  $("#search").addEventListener("input", (e) => {
    clearTimeout(timer);
    timer = setTimeout(() => search(e.target.value).catch((err) => notice(explain(err))), 250);
  });
  $("#search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    search($("#search").value).catch((err) => notice(explain(err)));
  });
  $("#pull-form").addEventListener("submit", (e) => { e.preventDefault(); pullModel($("#pull-name").value); });
  $("#model").addEventListener("change", () => describeChoice(state.baseModels));
}

wire();
Promise.all([loadPickers(), loadConversations()])
  .then(() => { document.body.dataset.ready = "1"; })
  .catch((err) => { notice(explain(err)); document.body.dataset.ready = "1"; });
