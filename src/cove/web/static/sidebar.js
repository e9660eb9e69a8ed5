// The conversation list: grouped by date, searched, each with one "⋯" menu (rename in place,
// exports, a delete that can be undone for a few seconds), and the page's toast.

import { $, api, el, explain, getJSON, notice } from "/static/util.js";

const UNDO_MS = 6000;
export const list = { conversations: [] };
const pending = new Map(); // id -> timer: deleted when the undo time runs out
const hooks = { current: () => null, open: async () => {}, newChat: () => {}, renamed: () => {} };

/** What the list asks of the chat: the open conversation's id, open one, start anew, a new title. */
export function connect(given) { Object.assign(hooks, given); }

function groupName(when, now = new Date()) {
  const day = (d) => new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
  const days = Math.round((day(now) - day(when)) / 86_400_000);
  if (days <= 0) return "Today";
  if (days === 1) return "Yesterday";
  if (days < 7) return "Previous 7 days";
  if (days < 30) return "Previous 30 days";
  return "Older";
}

export async function loadConversations() {
  const { conversations } = await getJSON("/api/cove/conversations?limit=500");
  list.conversations = conversations;
  drawConversations();
}

export function drawConversations() {
  const nav = $("#conversations");
  nav.replaceChildren();
  let ul = null;
  let group = null;
  for (const c of list.conversations) {
    if (pending.has(c.id)) continue;
    const name = groupName(new Date(c.updated_at));
    if (name !== group) {
      group = name;
      const id = `group-${name.replace(/\W+/g, "-").toLowerCase()}`;
      ul = el("ul", { "aria-labelledby": id });
      nav.append(el("h2", { class: "group", id, text: name }), ul);
    }
    ul.append(conversationItem(c));
  }
  if (!nav.children.length) nav.append(el("p", { class: "muted", text: "No conversations yet." }));
}

function conversationItem(c) {
  const title = c.title || "(untitled)";
  const current = hooks.current() === c.id;
  const item = el("li", { "data-id": c.id, class: current ? "current" : "" });
  const open = el("button", {
    type: "button", class: "conv-open", title: `${title} · ${c.model || ""}`,
    "aria-current": current ? "true" : undefined, onclick: () => hooks.open(c.id),
  }, el("span", { class: "conv-title", text: title }));
  const menuId = `menu-${c.id}`;
  const toggle = el("button", {
    type: "button", class: "conv-menu", text: "⋯", "aria-haspopup": "menu", "aria-expanded": "false",
    "aria-controls": menuId, "aria-label": `Actions for ${title}`,
  });
  const id = encodeURIComponent(c.id);
  const entry = (label, cls, action) => el("button", {
    type: "button", role: "menuitem", class: cls, text: label, tabindex: "-1",
    onclick: () => { closeMenus(); action(); },
  });
  const menu = el("div", { id: menuId, role: "menu", class: "menu", "aria-label": `Actions for ${title}`, hidden: true },
    entry("Rename", "rename", () => renameInPlace(item, c)),
    entry("Export Markdown", "export-md", () => saveExport(`/api/cove/conversations/${id}/export?format=md`, `cove-${c.id}.md`)),
    entry("Export JSON", "export-json", () => saveExport(`/api/cove/conversations/${id}/export?format=json`, `cove-${c.id}.json`)),
    entry("Delete", "delete danger", () => deleteWithUndo(c)));
  toggle.addEventListener("click", () => (menu.hidden ? openMenu(toggle, menu) : closeMenus()));
  menu.addEventListener("keydown", (e) => menuKeys(e, toggle, menu));
  item.append(open, toggle, menu);
  return item;
}

function openMenu(toggle, menu) {
  closeMenus();
  menu.hidden = false;
  toggle.setAttribute("aria-expanded", "true");
  menu.querySelector("[role=menuitem]").focus();
}

export function closeMenus(focusBack = false) {
  for (const menu of document.querySelectorAll(".menu:not([hidden])")) {
    menu.hidden = true;
    const toggle = document.querySelector(`[aria-controls="${menu.id}"]`);
    toggle?.setAttribute("aria-expanded", "false");
    if (focusBack) toggle?.focus();
  }
}

function menuKeys(e, toggle, menu) {
  const items = [...menu.querySelectorAll("[role=menuitem]")];
  const at = items.indexOf(document.activeElement);
  if (e.key === "ArrowDown" || e.key === "ArrowUp") {
    e.preventDefault();
    items[(at + (e.key === "ArrowDown" ? 1 : items.length - 1)) % items.length].focus();
  } else if (e.key === "Escape" || e.key === "Tab") {
    e.preventDefault();
    e.stopPropagation();
    closeMenus();
    toggle.focus();
  }
}

function renameInPlace(item, c) {
  const open = item.querySelector(".conv-open");
  const input = el("input", { class: "rename-input", value: c.title || "", "aria-label": "New title" });
  let done = false;
  const finish = async (save) => {
    if (done) return;
    done = true;
    const title = input.value.trim();
    if (save && title !== (c.title || "")) {
      try {
        await api(`/api/cove/conversations/${encodeURIComponent(c.id)}/rename`, { method: "POST", body: { title } });
        c.title = title || null;
        if (hooks.current() === c.id) hooks.renamed(c.title);
      } catch (err) { notice(`Rename failed: ${explain(err)}`); }
    }
    drawConversations();
    document.querySelector(`#conversations li[data-id="${CSS.escape(c.id)}"] .conv-open`)?.focus();
  };
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") { e.preventDefault(); finish(true); }
    if (e.key === "Escape") { e.preventDefault(); e.stopPropagation(); finish(false); }
  });
  input.addEventListener("blur", () => finish(true));
  open.replaceWith(input);
  input.focus();
  input.select();
}

function deleteWithUndo(c) {
  const wasOpen = hooks.current() === c.id;
  const remove = () => {
    pending.delete(c.id);
    api(`/api/cove/conversations/${encodeURIComponent(c.id)}`, { method: "DELETE" })
      .then(() => loadConversations()).catch((err) => notice(`Delete failed: ${explain(err)}`));
    hideToast();
  };
  pending.set(c.id, setTimeout(remove, UNDO_MS));
  if (wasOpen) hooks.newChat();
  drawConversations();
  toast(`Deleted “${c.title || "untitled"}”.`, "Undo", () => {
    clearTimeout(pending.get(c.id));
    pending.delete(c.id);
    drawConversations();
    if (wasOpen) hooks.open(c.id);
  });
}

export function flushDeletes() { // leaving the page: what was deleted stays deleted
  for (const [id, timer] of pending) {
    clearTimeout(timer);
    const headers = {};
    const key = sessionStorage.getItem("cove-api-key");
    if (key) headers.Authorization = `Bearer ${key}`;
    fetch(`/api/cove/conversations/${encodeURIComponent(id)}`, { method: "DELETE", keepalive: true, headers }).catch(() => {});
  }
  pending.clear();
}

let toastTimer = null;

export function toast(text, actionLabel, action) {
  const box = $("#toast");
  const button = actionLabel ? el("button", { type: "button", class: "small", text: actionLabel, onclick: () => { hideToast(); action(); } }) : null;
  box.replaceChildren(el("span", { text }), button);
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(hideToast, UNDO_MS);
}

export function hideToast() { $("#toast").hidden = true; }

// An export is fetched with the API key (a plain link could not send it), then saved from a blob: URL.
async function saveExport(path, filename) {
  try {
    const blob = await (await api(path)).blob();
    const url = URL.createObjectURL(blob);
    const link = el("a", { href: url, download: filename, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (e) {
    notice(`Export failed: ${explain(e)}`);
  }
}

export async function search(text) {
  const box = $("#search-results");
  box.replaceChildren();
  if (!text.trim()) return;
  const { results } = await getJSON(`/api/cove/search?q=${encodeURIComponent(text)}`);
  const found = el("ul");
  for (const r of results) {
    found.append(el("li", {},
      el("button", { type: "button", class: "conv-open", onclick: () => hooks.open(r.conversation_id) },
        el("span", { class: "conv-title", text: r.title || "(untitled)" }),
        el("span", { class: "snippet", text: r.snippet }))));
  }
  box.append(results.length ? found : el("p", { class: "snippet", text: "Nothing found." }));
}

