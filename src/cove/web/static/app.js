// cove's browser chat. Model text is only ever inserted as text, or as the HTML the server's
// /api/cove/render returned after sanitising it. No libraries (KaTeX, bundled, only for formulas).

import { loadPrivacy } from "/static/privacy.js";
import { loadKnowledge, wireKnowledge } from "/static/knowledge.js";
import { knowledgeFields, loadCollectionPicker, showChosen, showSources, strictShown } from "/static/sources.js";
import {
  $, HttpError, api, copy, el, explain, fill, getJSON, ndjson, notice, onReconnect, postJSON,
  renderInto, renderMany, watchServer,
} from "/static/util.js";
import {
  closeMenus, connect, drawConversations, flushDeletes, list, loadConversations, search, toast,
} from "/static/sidebar.js";
import { loadModels, loadTools, loadUsage, onModelsChanged, pullModel } from "/static/views.js";

const RENDER_EVERY_MS = 250;
const PAGE = 60; // messages rendered at once; earlier ones come a page at a time
const MAX_ATTACHMENT = 15 * 1024 * 1024; // the server's own cap (under its 16 MiB request limit)
const READABLE = [".txt", ".text", ".log", ".md", ".markdown", ".mdx", ".rst", ".rest", ".html", ".htm", ".xhtml", ".pdf", ".docx", ".pptx"];
const DEFAULT_CHAT_MODEL = "smollm2:135m"; // the catalog's chat model for small machines

const state = {
  chat: null, // the conversation as shown (the server's JSON), null for a new chat
  controller: null,
  personas: new Map(),
  baseModels: new Set(),
  autoPicked: true, // the picker's model is the page's choice (not the person's, nor a conversation's)
  catalog: [],
  defaults: new Map(), // model -> { temperature, num_ctx, num_predict } it loads with
  measured: new Map(), // model -> the promise of its measured speeds (asked once a page)
  attachments: [], // [{ name, text, tokens, file }]
  collections: null, // the knowledge base's collection names, asked for with the first attachment
  draft: {}, // settings for a chat that is not stored yet
  shownFrom: 0,
};

// -- views ---------------------------------------------------------------------------------------

function show(view) {
  for (const button of document.querySelectorAll(".top nav button")) {
    if (button.dataset.view === view) button.setAttribute("aria-current", "page");
    else button.removeAttribute("aria-current");
  }
  for (const name of ["chat", "models", "usage", "knowledge", "tools", "privacy"]) $(`#view-${name}`).hidden = name !== view;
  if (view !== "chat") closeSettings();
  if (view === "models") loadModels().catch((e) => notice(explain(e), "#models-notice"));
  if (view === "usage") loadUsage().catch((e) => { $("#usage-summary").textContent = explain(e); });
  if (view === "knowledge") loadKnowledge().catch((e) => { $("#kb-summary").textContent = explain(e); });
  if (view === "tools") loadTools().catch((e) => { $("#tools-summary").textContent = explain(e); });
  if (view === "privacy") loadPrivacy(getJSON).catch((e) => { $("#privacy-summary").textContent = explain(e); });
}

// -- a conversation on screen: paged, with actions and branch switchers ---------------------------

function newChat() {
  if (state.controller) state.controller.abort();
  state.chat = null;
  state.draft = {};
  $("#messages").replaceChildren();
  $("#chat-title").textContent = "New chat";
  notice("");
  fillSettings();
  drawConversations();
  showEmpty();
  $("#prompt").focus();
}

async function openConversation(id) {
  if (state.controller) state.controller.abort();
  const chat = await getJSON(`/api/cove/conversations/${encodeURIComponent(id)}`);
  await drawChat(chat);
  if (chat.model && [...$("#model").options].some((o) => o.value === chat.model)) {
    $("#model").value = chat.model;
    state.autoPicked = false;
    describeChoice();
  }
  showChosen(chat.collections, chat.strict); // the documents its next turn answers from
  show("chat");
  closeSidebarIfNarrow();
  drawConversations();
}

/** Show `chat` (the server's JSON): its last page of messages; earlier pages on demand. */
async function drawChat(chat) {
  state.chat = chat;
  $("#chat-title").textContent = chat.title || "New chat";
  const box = $("#messages");
  state.shownFrom = Math.max(0, chat.messages.length - PAGE);
  box.replaceChildren(...await messageNodes(chat.messages.slice(state.shownFrom)));
  if (state.shownFrom > 0) box.prepend(earlierButton());
  fillSettings();
  showEmpty();
  box.scrollTop = box.scrollHeight;
}

function earlierButton() {
  const button = el("button", { type: "button", id: "earlier", class: "quiet", text: `Show earlier messages (${state.shownFrom})` });
  button.addEventListener("click", showEarlier);
  new IntersectionObserver((seen, observer) => {
    if (seen.some((s) => s.isIntersecting)) { observer.disconnect(); showEarlier(); }
  }, { root: $("#messages") }).observe(button);
  return button;
}

let loadingEarlier = false;

async function showEarlier() {
  if (loadingEarlier || !state.chat || state.shownFrom === 0) return;
  loadingEarlier = true;
  const box = $("#messages");
  const from = Math.max(0, state.shownFrom - PAGE);
  const nodes = await messageNodes(state.chat.messages.slice(from, state.shownFrom));
  const height = box.scrollHeight;
  $("#earlier")?.remove();
  box.prepend(...nodes);
  state.shownFrom = from;
  if (from > 0) box.prepend(earlierButton());
  box.scrollTop += box.scrollHeight - height; // the messages in view stay where they were
  loadingEarlier = false;
}

async function messageNodes(messages) {
  const answers = messages.filter((m) => m.role === "assistant");
  const html = answers.length ? await renderMany(answers.map((m) => m.content)) : [];
  const out = [];
  let next = 0;
  for (const m of messages) {
    if (m.role === "user") out.push(userNode(m));
    else if (m.role === "assistant") out.push(answerNode(m, html[next++]));
    else if (m.role === "tool") out.push(el("div", { class: "tool-note", text: m.content })); // a kept tool run, as text
    else if (m.summary_of) out.push(el("div", { class: "tool-note", text: `Summary of earlier messages: ${m.content}` }));
  }
  return out;
}

function userNode(m) {
  const node = el("article", { class: "msg user", "aria-label": "You" }, el("div", { class: "body", text: m.content }), el("div", { class: "msg-foot" }));
  setMessage(node, m);
  return node;
}

function answerNode(m, html) {
  const body = el("div", { class: "md" });
  if (html !== undefined) fill(body, html);
  else body.textContent = m.content;
  const node = el("article", { class: "msg assistant", "aria-label": "cove" }, body, el("div", { class: "msg-foot" }));
  if (m.cut_off) { // kept as far as it came, and said so (the history records why it stopped)
    node.classList.add("cut");
    node.insertBefore(el("p", { class: "cutoff", text: `Cut off: ${m.cut_off}` }), node.lastChild);
  }
  setMessage(node, m, { ttft: m.time_to_first_token_ms, tps: m.tokens_per_s, cut: Boolean(m.cut_off) });
  return node;
}

/** A message's stored identity and its foot: the version switcher, figures and actions. */
function setMessage(node, m, figures) {
  node.message = m;
  if (m.id) node.dataset.id = m.id;
  if (figures) node.figures = figures;
  if (m.role === "assistant" && m.citations?.length) showSources(node, m.citations);
  foot(node);
}

function foot(node) {
  const m = node.message || {};
  const user = node.classList.contains("user");
  const parts = [];
  const f = node.figures || {};
  if (f.ttft != null) parts.push(`first token ${Math.round(f.ttft)} ms`);
  if (f.tps != null) parts.push(`${Number(f.tps).toFixed(1)} tokens/s`);
  if (f.stopped) parts.push("stopped");
  if (f.cut) parts.push("cut off");
  const children = [];
  const siblings = m.siblings || [];
  if (siblings.length > 1) {
    const at = siblings.indexOf(m.id);
    const go = (to) => () => switchBranch(siblings[to]);
    children.push(el("span", { class: "switcher", role: "group", "aria-label": "Versions" },
      el("button", { type: "button", class: "small quiet", text: "‹", "aria-label": "Previous version", disabled: at <= 0, onclick: go(at - 1) }),
      el("span", { class: "version", text: `${at + 1}/${siblings.length}` }),
      el("button", { type: "button", class: "small quiet", text: "›", "aria-label": "Next version", disabled: at >= siblings.length - 1, onclick: go(at + 1) })));
  }
  if (!user) children.push(el("span", { class: "stats", text: parts.join(" · ") }));
  const text = () => m.content ?? node.textBuffer ?? "";
  const copyButton = el("button", { type: "button", class: "small quiet act-copy", text: "Copy" });
  copyButton.addEventListener("click", () => copy(text(), copyButton));
  const actions = el("span", { class: "msg-actions" }, copyButton);
  if (m.id && user) actions.append(el("button", { type: "button", class: "small quiet act-edit", text: "Edit", onclick: () => editMessage(node) }));
  if (m.id && !user) actions.append(el("button", { type: "button", class: "small quiet act-regenerate", text: "Regenerate", onclick: () => regenerate(node) }));
  if (m.id) actions.append(el("button", { type: "button", class: "small quiet act-delete", text: "Delete", "aria-label": "Delete this message", onclick: () => deleteMessage(node) }));
  children.push(actions);
  if (user && f.cut) children.push(el("span", { class: "stats", text: "not answered" }));
  node.querySelector(".msg-foot").replaceChildren(...children);
}

async function switchBranch(id) {
  if (state.controller || !state.chat) return;
  const chat = await postJSON(`/api/cove/conversations/${encodeURIComponent(state.chat.id)}/select`, { message_id: id });
  const scroll = $("#messages").scrollTop;
  await drawChat(chat);
  $("#messages").scrollTop = scroll;
  document.querySelector(`#messages [data-id="${id}"] .switcher button:not([disabled])`)?.focus();
}

async function deleteMessage(node) {
  if (state.controller || !state.chat) return;
  const chat = await api(`/api/cove/conversations/${encodeURIComponent(state.chat.id)}/messages/${node.dataset.id}`, { method: "DELETE" })
    .then((r) => r.json());
  await drawChat(chat);
  toast("Message deleted.");
}

/** Remove `node` and every message after it from the screen (the branch is being replaced). */
function dropFrom(node) {
  while (node.nextSibling) node.nextSibling.remove();
  node.remove();
}

function editMessage(node) {
  if (state.controller) return;
  const m = node.message;
  const area = el("textarea", { class: "edit-area", rows: "3", "aria-label": "Edit your message" });
  area.value = m.content;
  const form = el("form", { class: "edit-form" }, area,
    el("div", { class: "actions" },
      el("button", { type: "submit", class: "primary small", text: "Send" }),
      el("button", { type: "button", class: "small", text: "Cancel", onclick: () => { form.replaceWith(body); node.querySelector(".msg-actions .act-edit")?.focus(); } })));
  const body = node.querySelector(".body");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = area.value;
    if (!text.trim() || state.controller) return;
    try {
      // The earlier version is kept: the conversation now shows its branch up to this message's parent.
      const chat = await postJSON(`/api/cove/conversations/${encodeURIComponent(state.chat.id)}/branch`, { message_id: m.id });
      state.chat = chat;
      dropFrom(node);
      await send(text);
    } catch (err) { notice(explain(err)); }
  });
  area.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); }
    if (e.key === "Escape") { e.preventDefault(); e.stopPropagation(); form.replaceWith(body); }
  });
  body.replaceWith(form);
  area.focus();
}

async function regenerate(node) {
  if (state.controller || !state.chat) return;
  // Answer the same question again: the new answer becomes a sibling of this one (and of any
  // tool runs before it); the question is not stored twice.
  const shown = state.chat.messages;
  let at = shown.findIndex((m) => m.id === Number(node.dataset.id));
  while (at > 0 && shown[at - 1].role === "tool") at--;
  const first = shown[at] || node.message;
  try {
    const chat = await postJSON(`/api/cove/conversations/${encodeURIComponent(state.chat.id)}/branch`, { message_id: first.id });
    state.chat = chat;
    let from = node;
    while (from.previousSibling && from.previousSibling.classList.contains("tool-note")) from = from.previousSibling;
    dropFrom(from);
    // No new message in a stored conversation: the server answers its question again.
    await stream({ ...turnBody(), messages: [] });
  } catch (err) { notice(explain(err)); }
}

// -- the empty chat: which model, what it is for, how fast it is here ----------------------------

async function showEmpty() {
  const empty = $("#empty");
  const has = $("#messages").children.length > 0;
  empty.hidden = has;
  if (has) return;
  const name = $("#model").value;
  if (!name) {
    $("#empty-model").textContent = "No model yet";
    $("#empty-about").textContent = "Open Models to pull one; it then answers here, on this machine.";
    $("#empty-speed").textContent = "";
    return;
  }
  const entry = state.catalog.find((e) => e.name === name || `${e.name}:latest` === name);
  const base = state.baseModels.has(name);
  $("#empty-model").textContent = base ? `${name} (a base model)` : name;
  $("#empty-about").textContent = base
    ? "A base model continues text rather than following instructions: good for completing a passage, poor at chat. Pull a chat model from Models for conversations."
    : entry ? `${entry.description}.` : "A model in your store, answering on this machine: nothing you type leaves it.";
  $("#empty-speed").textContent = "";
  if (!state.measured.has(name)) state.measured.set(name, getJSON(`/api/cove/measured?model=${encodeURIComponent(name)}`));
  state.measured.get(name).then(({ measured }) => {
    if ($("#model").value !== name) return;
    $("#empty-speed").textContent = measured && measured.decode_tps
      ? `Measured here: about ${measured.decode_tps.toFixed(1)} tokens/s writing`
        + (measured.prompt_tps ? `, ${Math.round(measured.prompt_tps)} tokens/s reading` : "")
        + ` (median of ${measured.runs} answer${measured.runs === 1 ? "" : "s"}).`
      : "Not measured on this machine yet: its first answers will be.";
  }).catch(() => {});
}

// -- settings: per conversation, with the model's defaults shown ---------------------------------

const FIELDS = [["temperature", parseFloat], ["num_ctx", parseInt], ["num_predict", parseInt]];

function fillSettings() {
  const chat = state.chat;
  const values = chat ? { ...chat.parameters, num_ctx: chat.num_ctx, system: chat.system, persona: chat.persona } : state.draft;
  for (const [id] of FIELDS) $(`#${id}`).value = values[id] ?? "";
  $("#system").value = values.system ?? "";
  $("#persona").value = state.personas.has(values.persona) ? values.persona : "";
  $("#settings-scope").textContent = chat ? "Saved with this conversation." : "For this new chat: saved with it once it starts.";
  $("#settings-status").textContent = "";
  showDefaults();
}

async function showDefaults() {
  const name = $("#model").value;
  if (!name) return;
  if (!state.defaults.has(name)) {
    state.defaults.set(name, {}); // asked once: a second call meanwhile shows "model default"
    try {
      const info = await (await api("/api/show", { method: "POST", body: { model: name } })).json();
      const found = {};
      for (const line of (info.parameters || "").split("\n")) {
        const [key, value] = line.trim().split(/\s+/, 2);
        if (["temperature", "num_ctx", "num_predict"].includes(key)) found[key] = value;
      }
      const key = Object.keys(info.model_info || {}).find((k) => k.endsWith(".context_length"));
      if (!found.num_ctx && key) found.num_ctx = `${info.model_info[key]} (trained)`;
      state.defaults.set(name, found);
    } catch { state.defaults.set(name, {}); }
  }
  if ($("#model").value !== name) return; // another model was picked meanwhile
  const d = state.defaults.get(name);
  $("#temperature").placeholder = `model default: ${d.temperature ?? "0.8"}`;
  $("#num_ctx").placeholder = `model default: ${d.num_ctx ?? "cove chooses"}`;
  $("#num_predict").placeholder = d.num_predict ? `model default: ${d.num_predict}` : "no limit";
  updateFit();
}

function options() {
  const out = {};
  for (const [id, parse] of FIELDS) {
    const raw = $(`#${id}`).value.trim();
    if (raw !== "" && !Number.isNaN(parse(raw))) out[id] = parse(raw);
  }
  return out;
}

async function saveSettings() {
  const opts = options();
  const system = $("#system").value;
  state.draft = { ...opts, system, persona: $("#persona").value || null };
  if (state.chat) {
    const parameters = { temperature: opts.temperature ?? null, num_predict: opts.num_predict ?? null };
    const chat = await postJSON(`/api/cove/conversations/${encodeURIComponent(state.chat.id)}/settings`,
      { system, parameters, num_ctx: opts.num_ctx ?? 0 });
    state.chat = { ...state.chat, system: chat.system, parameters: chat.parameters, num_ctx: chat.num_ctx };
    $("#settings-status").textContent = "Saved with this conversation.";
  } else {
    $("#settings-status").textContent = "Saved: this new chat starts with them.";
  }
  updateFit();
}

function openSettings() {
  $("#settings-panel").hidden = false;
  $("#settings-button").setAttribute("aria-expanded", "true");
  fillSettings();
  $("#persona").focus();
}

function closeSettings() {
  if ($("#settings-panel").hidden) return;
  $("#settings-panel").hidden = true;
  $("#settings-button").setAttribute("aria-expanded", "false");
}

// -- attachments: read by the server's parsers, counted against the context ----------------------

const tokensOf = (text) => Math.ceil(text.length / 4); // a rough count: about 4 characters a token

async function attach(files) {
  for (const file of files) {
    const dot = file.name.lastIndexOf(".");
    const suffix = dot >= 0 ? file.name.slice(dot).toLowerCase() : "";
    if (!READABLE.includes(suffix)) {
      notice(`${file.name}: cove reads text, Markdown, reStructuredText, HTML, PDF, DOCX and PPTX files, not ${suffix || "files without a type"}.`);
      continue;
    }
    if (file.size > MAX_ATTACHMENT) {
      notice(`${file.name} is too large to attach (${(file.size / 2 ** 20).toFixed(1)} MB; the most is ${MAX_ATTACHMENT / 2 ** 20} MB).`);
      continue;
    }
    try {
      const res = await api(`/api/cove/attachments?name=${encodeURIComponent(file.name)}`, { method: "POST", raw: file });
      const { name, text } = await res.json();
      state.attachments.push({ name, text, tokens: tokensOf(text), file });
      notice("");
    } catch (err) {
      notice(`${file.name} could not be attached: ${explain(err)}`);
    }
  }
  if (state.collections === null) {
    state.collections = await getJSON("/api/cove/kb").then((r) => r.collections.map((c) => c.name)).catch(() => []);
  }
  drawChips();
}

/** Keep the file in a knowledge-base collection too (uploaded, then synced there). */
async function addToCollection(a, collection) {
  const form = new FormData();
  form.append("file", a.file, a.name);
  const where = `/api/cove/kb/${encodeURIComponent(collection)}`;
  try {
    await api(`${where}/upload`, { method: "POST", raw: form });
    toast(`${a.name} added to ${collection}; indexing it…`);
    await api(`${where}/sync`, { method: "POST", body: { stream: false } });
    toast(`${a.name} is in the collection ${collection}.`);
  } catch (err) {
    notice(`${a.name} was not added to ${collection}: ${explain(err)}`);
  }
}

function collectionPicker(a) {
  if (!state.collections || !state.collections.length) return null;
  const picker = el("select", { class: "to-collection", "aria-label": `Add ${a.name} to a collection` },
    el("option", { value: "", text: "Add to a collection…" }),
    ...state.collections.map((name) => el("option", { value: name, text: name })));
  picker.addEventListener("change", () => { if (picker.value) addToCollection(a, picker.value); picker.value = ""; });
  return picker;
}

function drawChips() {
  $("#chips").replaceChildren(...state.attachments.map((a, i) => el("span", { class: "chip" },
    el("span", { text: `${a.name} · ~${a.tokens.toLocaleString()} tokens` }),
    collectionPicker(a),
    el("button", { type: "button", class: "small quiet", text: "✕", "aria-label": `Remove ${a.name}`, onclick: () => { state.attachments.splice(i, 1); drawChips(); } }))));
  updateFit();
}

function contextSize() {
  const set = parseInt($("#num_ctx").value, 10);
  if (set) return set;
  if (state.chat && state.chat.num_ctx) return state.chat.num_ctx;
  const d = state.defaults.get($("#model").value) || {};
  return parseInt(d.num_ctx, 10) || 4096;
}

function updateFit() {
  const box = $("#fit");
  const attached = state.attachments.reduce((n, a) => n + a.tokens, 0);
  if (!attached) { box.hidden = true; return; }
  const history = (state.chat?.messages || []).reduce((n, m) => n + tokensOf(m.content), 0);
  const need = attached + history + tokensOf($("#prompt").value) + 256; // and room to answer
  const size = contextSize();
  box.hidden = false;
  box.className = need > size ? "warn" : "";
  box.textContent = need > size
    ? `This does not fit: about ${need.toLocaleString()} tokens with the attachments, and the context holds ${size.toLocaleString()}. Older turns would be summarised and the rest cut; raise the context length in Settings or attach less.`
    : `Attachments: about ${attached.toLocaleString()} tokens of the ${size.toLocaleString()} the context holds.`;
}

function withAttachments(text) {
  if (!state.attachments.length) return text;
  const files = state.attachments.map((a) => `--- Attached file: ${a.name} ---\n${a.text}\n--- End of ${a.name} ---`);
  state.attachments = [];
  drawChips();
  return `${files.join("\n\n")}\n\n${text}`;
}

// -- chatting ------------------------------------------------------------------------------------

function turnBody() {
  const body = { model: $("#model").value, stream: true, conversation_id: state.chat ? state.chat.id : "new" };
  const opts = options();
  if (Object.keys(opts).length) body.options = opts;
  return { ...body, ...knowledgeFields() };
}

async function send(typed) {
  const model = $("#model").value;
  if (!model) {
    notice("No model is installed yet. Open Models and pull one (or start cove once with a network).");
    return;
  }
  notice("");
  const text = withAttachments(typed);
  const user = userNode({ role: "user", content: text });
  $("#messages").append(user);
  showEmpty();
  const messages = [];
  const system = $("#system").value;
  if (!state.chat && system.trim()) messages.push({ role: "system", content: system }); // a new chat's settings
  messages.push({ role: "user", content: text });
  await stream({ ...turnBody(), messages }, user);
}

function setBusy(on) {
  const button = $("#send");
  button.textContent = on ? "Stop" : "Send";
  button.classList.toggle("stop", on);
  button.setAttribute("aria-label", on ? "Stop the answer" : "Send");
  button.title = on ? "Stop (Esc)" : "Send (Enter)";
}

function stop() { if (state.controller) state.controller.abort(); }

async function stream(body, userBubble) {
  const md = el("div", { class: "md streaming" });
  const node = el("article", { class: "msg assistant", "aria-label": "cove", "aria-busy": "true" }, md, el("div", { class: "msg-foot" }));
  node.textBuffer = "";
  $("#messages").append(node);
  $("#empty").hidden = true;
  const controller = new AbortController();
  state.controller = controller;
  setBusy(true);
  const started = performance.now();
  let ttft = null;
  let final = null;
  let rendered = "";
  let rendering = null;
  let lastRender = 0;
  const rerender = () => {
    if (rendering || node.textBuffer === rendered || performance.now() - lastRender < RENDER_EVERY_MS) return;
    const text = node.textBuffer;
    lastRender = performance.now();
    rendering = renderInto(md, text).then(() => { rendered = text; }).catch(() => {}).finally(() => { rendering = null; });
  };
  const figures = {};
  let stored = Boolean(state.chat);
  try {
    const res = await api("/api/chat", { method: "POST", body, signal: controller.signal });
    const id = res.headers.get("x-cove-conversation");
    if (id && !state.chat) {
      state.chat = { id, title: null, messages: [], parameters: {}, system: null, num_ctx: null };
      stored = true;
      loadConversations().catch(() => {});
    }
    const context = res.headers.get("x-cove-context");
    if (context) notice(`Older messages were summarised to fit the context: ${context}`);
    for await (const chunk of ndjson(res)) {
      if (chunk.error) throw new Error(chunk.error);
      if (chunk.cove_tool) {
        await toolStep(node, chunk.cove_tool, controller.signal);
        continue;
      }
      const piece = chunk.message?.content || "";
      if (piece && ttft === null) ttft = performance.now() - started;
      node.textBuffer += piece;
      if (rendered === "") {
        md.textContent = node.textBuffer; // plain text until the first sanitised render lands
      } else {
        // Text that arrived since the last render, shown as text (never as HTML) until the next one.
        let tail = md.querySelector(":scope > .tail");
        if (!tail) md.append((tail = el("span", { class: "tail" })));
        tail.textContent = node.textBuffer.slice(rendered.length);
      }
      rerender();
      stickToBottom();
      if (chunk.done) final = chunk;
    }
  } catch (err) {
    if (err.name === "AbortError") {
      figures.stopped = true;
    } else {
      const message = explain(err);
      notice(err instanceof HttpError && err.status === 404 && /not found/i.test(message) ? `${message}. Open Models to pull it.` : message);
      if (node.textBuffer) {
        figures.cut = true; // what arrived is kept, and said to be incomplete
        node.classList.add("cut");
        node.append(el("p", { class: "cutoff", text: `Cut off: ${message}` }));
      } else {
        node.remove();
        if (userBubble) { userBubble.figures = { cut: true }; foot(userBubble); }
      }
    }
  } finally {
    if (state.controller === controller) state.controller = null;
    if (rendering) await rendering;
    if (node.textBuffer) await renderInto(md, node.textBuffer).catch(() => {});
    node.removeAttribute("aria-busy");
    figures.ttft = ttft;
    figures.tps = final && final.eval_duration ? final.eval_count / (final.eval_duration / 1e9) : null;
    node.figures = figures;
    node.message = { role: "assistant", content: node.textBuffer };
    if (final?.citations?.length) showSources(node, final.citations);
    if (node.isConnected) foot(node);
    setBusy(false);
    state.measured.delete(body.model); // this answer was measured: ask again next time
    if (stored) await syncWithServer().catch(() => {});
    $("#prompt").focus();
  }
}

function stickToBottom() {
  const box = $("#messages");
  if (box.scrollHeight - box.scrollTop - box.clientHeight < 200) box.scrollTop = box.scrollHeight;
}

/** After a turn: the stored ids, parents and versions of what is on screen, without redrawing it. */
async function syncWithServer() {
  if (!state.chat) return;
  const chat = await getJSON(`/api/cove/conversations/${encodeURIComponent(state.chat.id)}`);
  state.chat = chat;
  $("#chat-title").textContent = chat.title || "New chat";
  const shown = [...document.querySelectorAll("#messages > .msg")];
  const kept = chat.messages.filter((m) => m.role === "user" || m.role === "assistant");
  for (let i = 1; i <= Math.min(shown.length, kept.length); i++) {
    const node = shown[shown.length - i];
    const m = kept[kept.length - i];
    if (!node.classList.contains(m.role)) break;
    setMessage(node, m);
  }
  if (!list.conversations.some((c) => c.id === chat.id) || list.conversations[0]?.id !== chat.id) await loadConversations();
  else drawConversations();
}

// -- tool calls: the server waits for a yes before it runs one ----------------------------------

const alwaysTools = new Set(); // tools answered "always" on this page

async function toolStep(node, step, signal) {
  if (step.kind !== "consent") {
    const said = { ran: "ran", error: "failed", refused: "not run", limit: "stopped" }[step.kind] || step.kind;
    const detail = step.kind === "error" || step.kind === "limit" ? `: ${step.message || ""}` : "";
    node.insertBefore(el("div", { class: "tool-note", text: `${step.name || "tools"} ${said}${detail}` }), node.querySelector(".md"));
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
    const cancel = () => dialog.close("no");
    signal.addEventListener("abort", cancel, { once: true });
    dialog.addEventListener("close", () => {
      signal.removeEventListener("abort", cancel);
      dialog.remove();
      resolve(["yes", "no", "always"].includes(dialog.returnValue) ? dialog.returnValue : "no");
    }, { once: true });
    dialog.showModal();
  });
}

// -- the model picker: the best chat model first, never a base model unless it is the only one ---

function baseModelNames(catalog) {
  const isBase = (e) => (e.kind ? e.kind === "base" : /\bbase\b/i.test(e.description || ""));
  return new Set((catalog.models || []).filter(isBase).map((e) => e.name));
}

/** The default chat model, else the catalog's best-ranked stored chat model, else any chat model. */
function bestChatModel(names, base, catalog) {
  const preferred = (catalog.models || []).find((e) => e.default)?.name || DEFAULT_CHAT_MODEL;
  if (names.includes(preferred)) return preferred;
  const ranked = (catalog.models || []).map((e) => e.name).filter((n) => names.includes(n) && !base.has(n));
  return ranked[0] || names.find((n) => !base.has(n)) || names[0] || "";
}

function describeChoice() {
  const picker = $("#model");
  const isBase = state.baseModels.has(picker.value);
  picker.title = isBase ? `${picker.value} is a base model` : "Model";
  if (isBase) {
    notice(`${picker.value} is a base model: it continues text more than it follows instructions. ` +
      "Open Models to pull a chat model such as smollm2:135m.");
  } else if ($("#notice").textContent.includes("is a base model")) {
    notice("");
  }
  showEmpty();
  showDefaults();
}

async function loadPickers() {
  // The catalog only labels and ranks: the picker does not wait for it (it may measure the
  // machine once), and is set again when it comes.
  const catalogCall = state.catalog.length ? Promise.resolve({ models: state.catalog })
    : getJSON("/api/cove/catalog").catch(() => ({ models: [] }));
  state.catalogCall = catalogCall;
  const [{ models }, { personas }] = await Promise.all([getJSON("/api/tags"), getJSON("/api/cove/personas")]);
  const catalog = await Promise.race([catalogCall, new Promise((r) => setTimeout(() => r(null), 300))]);
  if (catalog === null) catalogCall.then((c) => { if (c.models?.length) { state.catalog = c.models; loadPickers().catch(() => {}); } });
  pickModels(models, catalog || { models: [] });
  await loadCollectionPicker().catch(() => { $("#kb-box").hidden = true; });
  setPersonas(personas);
  showEmpty();
}

function pickModels(models, catalog) {
  state.catalog = catalog.models || [];
  const picker = $("#model");
  const was = picker.value;
  const base = new Set([...baseModelNames(catalog), ...models.filter((m) => m.kind === "base").map((m) => m.name)]);
  state.baseModels = base;
  picker.replaceChildren(...models.map((m) =>
    el("option", { value: m.name, text: base.has(m.name) ? `${m.name} (base model)` : m.name })));
  const names = models.map((m) => m.name);
  const chat = models.filter((m) => m.kind !== "embedding" && m.kind !== "reranker").map((m) => m.name);
  // A model chosen (by hand or by opening a conversation) stays; one the page chose is chosen again.
  const keep = was && names.includes(was) && !state.autoPicked;
  picker.value = keep ? was : bestChatModel(chat.length ? chat : names, base, catalog);
  state.autoPicked = !keep;
  if (!models.length) notice("No model is installed yet. Open Models to pull one.");
  else describeChoice();
}

function setPersonas(personas) {
  const personaPicker = $("#persona");
  const chosen = personaPicker.value;
  state.personas = new Map(personas.map((p) => [p.name, p.system]));
  personaPicker.replaceChildren(el("option", { value: "", text: "None" }),
    ...personas.map((p) => el("option", { value: p.name, text: p.name })));
  if (state.personas.has(chosen)) personaPicker.value = chosen;
}

// -- the sidebar and the keyboard ----------------------------------------------------------------

const narrow = window.matchMedia("(max-width: 760px)");

function sidebarShown() {
  return narrow.matches ? $("#sidebar").classList.contains("open") : !document.body.classList.contains("sidebar-closed");
}

function syncMenuButton() {
  const open = sidebarShown();
  $("#menu").setAttribute("aria-expanded", String(open));
  $("#menu").setAttribute("aria-label", open ? "Hide conversations" : "Show conversations");
}

function toggleSidebar() {
  if (narrow.matches) $("#sidebar").classList.toggle("open");
  else document.body.classList.toggle("sidebar-closed");
  syncMenuButton();
}

function closeSidebarIfNarrow() {
  if (narrow.matches && $("#sidebar").classList.contains("open")) toggleSidebar();
}

function typing(target) {
  return target instanceof HTMLElement && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
}

function focusSearch() {
  if (!sidebarShown()) toggleSidebar();
  $("#search").focus();
  $("#search").select();
}

function keys(e) {
  const ctrl = e.ctrlKey || e.metaKey;
  if (ctrl && e.shiftKey && e.key.toLowerCase() === "o") { e.preventDefault(); newChat(); show("chat"); return; }
  if (ctrl && e.shiftKey && e.key.toLowerCase() === "s") { e.preventDefault(); toggleSidebar(); return; }
  if (ctrl && e.key.toLowerCase() === "k") { e.preventDefault(); focusSearch(); return; }
  if (ctrl && e.key === ",") { e.preventDefault(); show("chat"); openSettings(); return; }
  if (e.key === "Escape" && e.shiftKey) { e.preventDefault(); show("chat"); $("#prompt").focus(); return; }
  if (e.key === "Escape") {
    if (document.querySelector("dialog[open]")) return; // the dialog closes itself
    if (state.controller) { e.preventDefault(); stop(); return; }
    if (document.querySelector(".menu:not([hidden])")) { closeMenus(true); return; }
    if (!$("#settings-panel").hidden) { closeSettings(); $("#settings-button").focus(); return; }
    if (narrow.matches && sidebarShown()) { toggleSidebar(); $("#menu").focus(); }
    return;
  }
  if (typing(e.target) || ctrl || e.altKey) return;
  if (e.key === "/") { e.preventDefault(); focusSearch(); }
  if (e.key === "?") { e.preventDefault(); $("#shortcuts").showModal(); }
}

function wire() {
  for (const button of document.querySelectorAll(".top nav button")) button.addEventListener("click", () => show(button.dataset.view));
  $("#menu").addEventListener("click", toggleSidebar);
  narrow.addEventListener("change", syncMenuButton);
  syncMenuButton();
  document.addEventListener("keydown", keys);
  document.addEventListener("click", (e) => { if (!e.target.closest(".menu, .conv-menu")) closeMenus(); });
  $("#shortcuts-button").addEventListener("click", () => $("#shortcuts").showModal());
  $("#new-chat").addEventListener("click", () => { newChat(); show("chat"); closeSidebarIfNarrow(); });
  $("#composer").addEventListener("submit", (e) => {
    e.preventDefault();
    if (state.controller) { stop(); return; }
    const text = $("#prompt").value;
    if (!text.trim()) return;
    $("#prompt").value = "";
    send(text).catch((err) => notice(explain(err)));
  });
  $("#prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      if (!state.controller) $("#composer").requestSubmit();
    }
  });
  $("#prompt").addEventListener("input", () => { if (state.attachments.length) updateFit(); });
  $("#attach").addEventListener("click", () => $("#file").click());
  $("#file").addEventListener("change", () => { attach([...$("#file").files]); $("#file").value = ""; });
  const composer = $("#composer");
  composer.addEventListener("dragover", (e) => { e.preventDefault(); composer.classList.add("dropping"); });
  composer.addEventListener("dragleave", () => composer.classList.remove("dropping"));
  composer.addEventListener("drop", (e) => {
    e.preventDefault();
    composer.classList.remove("dropping");
    if (e.dataTransfer?.files?.length) attach([...e.dataTransfer.files]);
  });
  let timer = null;
  $("#search").addEventListener("input", (e) => {
    clearTimeout(timer);
    timer = setTimeout(() => search(e.target.value).catch((err) => notice(explain(err))), 250);
  });
  $("#search").addEventListener("keydown", (e) => { if (e.key === "Escape" && e.target.value) { e.stopPropagation(); e.target.value = ""; search(""); } });
  $("#search-form").addEventListener("submit", (e) => { e.preventDefault(); search($("#search").value).catch((err) => notice(explain(err))); });
  $("#pull-form").addEventListener("submit", (e) => { e.preventDefault(); pullModel($("#pull-name").value); });
  $("#model").addEventListener("change", () => { state.autoPicked = false; describeChoice(); });
  $("#kb").addEventListener("change", strictShown);
  wireKnowledge(() => loadCollectionPicker().catch(() => {}));
  $("#settings-button").addEventListener("click", () => ($("#settings-panel").hidden ? openSettings() : closeSettings()));
  $("#settings-close").addEventListener("click", () => { closeSettings(); $("#settings-button").focus(); });
  $("#persona").addEventListener("change", () => {
    const chosen = $("#persona").value;
    if (chosen) $("#system").value = state.personas.get(chosen) || "";
  });
  $("#settings-form").addEventListener("submit", (e) => {
    e.preventDefault();
    saveSettings().catch((err) => { $("#settings-status").textContent = `Not saved: ${explain(err)}`; });
  });
  for (const example of document.querySelectorAll("#examples .example")) {
    example.addEventListener("click", () => { $("#prompt").value = example.textContent; $("#prompt").focus(); updateFit(); });
  }
  window.addEventListener("pagehide", flushDeletes);
  connect({
    current: () => (state.chat ? state.chat.id : null),
    open: openConversation,
    newChat,
    renamed: (title) => { state.chat.title = title; $("#chat-title").textContent = title || "New chat"; },
  });
  onModelsChanged(loadPickers);
  onReconnect(() => Promise.all([loadPickers(), loadConversations()]));
  watchServer();
}

wire();
// Ready (for tests) once the catalog came too: the page is usable before, and labels follow.
Promise.all([loadPickers(), loadConversations()])
  .then(() => state.catalogCall)
  .then(() => { showEmpty(); document.body.dataset.ready = "1"; })
  .catch((err) => { notice(explain(err)); showEmpty(); document.body.dataset.ready = "1"; });
