// The page's plumbing: DOM building, the API (its key kept only in sessionStorage), the server's
// connection state, NDJSON streams, sanitised rendering and the bundled KaTeX.

export const $ = (sel) => document.querySelector(sel);
const KEY_STORE = "cove-api-key";

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

export function bytes(n) {
  if (!n && n !== 0) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function notice(text, where = "#notice") {
  const box = $(where);
  box.textContent = text || "";
  box.hidden = !text;
}

export class HttpError extends Error {
  constructor(status, message, retryAfter) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

/** A request that never reached the server (it is down or restarting), as opposed to an HTTP error. */
export const isOffline = (err) => err instanceof TypeError || (err && err.name === "NetworkError");

export function explain(err) {
  if (err instanceof HttpError) {
    if (err.status === 503) {
      const wait = err.retryAfter ? ` Try again in ${err.retryAfter} s.` : " Try again shortly.";
      return `The server is busy (${err.message}).${wait}`;
    }
    if (err.status === 401) return "The server needs an API key.";
    return err.message;
  }
  if (isOffline(err)) return "The cove server is not answering; the page reconnects by itself.";
  return String(err && err.message ? err.message : err);
}

// -- the connection: a banner while the server is away, and a poll that brings the page back ------

const reconnected = [];
let polling = null;

export function onReconnect(fn) { reconnected.push(fn); }

export function serverGone() {
  const banner = $("#connection");
  banner.className = "down";
  banner.textContent = "The cove server is not answering (stopped or restarting). Reconnecting…";
  banner.hidden = false;
  if (polling) return;
  polling = setInterval(async () => {
    try {
      await fetch("/api/version", { cache: "no-store" }); // any answer, even 401, means it is back
    } catch { return; }
    clearInterval(polling);
    polling = null;
    banner.className = "up";
    banner.textContent = "Reconnected to the cove server.";
    for (const fn of reconnected) Promise.resolve().then(fn).catch(() => {});
    setTimeout(() => { if (!polling) banner.hidden = true; }, 2500);
  }, 1500);
}

/** Notice a server that went away while the page sat idle, not only at the next request. */
export function watchServer(every = 20_000) {
  setInterval(() => {
    if (document.hidden || polling) return;
    fetch("/api/version", { cache: "no-store" }).catch(serverGone);
  }, every);
}

// -- the API --------------------------------------------------------------------------------------

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

export function authHeaders() {
  const key = sessionStorage.getItem(KEY_STORE);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

export async function api(path, { method = "GET", body, signal, raw } = {}) {
  for (let attempt = 0; attempt < 3; attempt++) {
    const headers = { ...authHeaders() };
    if (body !== undefined && raw === undefined) headers["Content-Type"] = "application/json";
    headers["X-Cove-Source"] = "web"; // conversations started here are kept as the web chat's
    headers["X-Cove-Consent"] = "ask"; // this page asks before each tool call (see toolStep)
    let res;
    try {
      res = await fetch(path, {
        method, headers, signal, body: raw !== undefined ? raw : body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      if (err.name !== "AbortError") serverGone();
      throw err;
    }
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

export const getJSON = async (path) => (await api(path)).json();
export const postJSON = async (path, body, method = "POST") => (await api(path, { method, body })).json();

export async function* ndjson(res) {
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

export async function copy(text, button) {
  const was = button.dataset.label || button.textContent;
  button.dataset.label = was;
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch {
    button.textContent = "Copy failed";
  }
  setTimeout(() => { button.textContent = was; }, 1200);
}

// -- rendering: the server's sanitised HTML, code copy buttons, and mathematics ------------------

/** Put the server's sanitised HTML (never the model's raw text) into `node`, and dress it. */
export function fill(node, html) {
  node.innerHTML = html; // sanitised by the server (nh3 allowlist)
  node.classList.remove("streaming");
  for (const pre of node.querySelectorAll("pre")) {
    const button = el("button", { type: "button", class: "small copy-code", text: "Copy code" });
    button.addEventListener("click", () => copy(pre.querySelector("code")?.textContent ?? pre.textContent, button));
    pre.append(button);
  }
  const math = node.querySelectorAll(".math-inline, .math-display");
  if (math.length) typeset(math);
}

export async function renderInto(node, text) {
  const { html } = await (await api("/api/cove/render", { method: "POST", body: { text } })).json();
  fill(node, html);
}

/** Many texts in one request (a page of a long conversation); the HTML in the same order. */
export async function renderMany(texts) {
  const out = [];
  for (let i = 0; i < texts.length; i += 200) {
    const { html } = await (await api("/api/cove/render-many", { method: "POST", body: { texts: texts.slice(i, i + 200) } })).json();
    out.push(...html);
  }
  return out;
}

let katexLoading = null;

function loadKatex() {
  if (!katexLoading) {
    katexLoading = new Promise((resolve, reject) => {
      document.head.append(el("link", { rel: "stylesheet", href: "/static/katex.min.css" }));
      const script = el("script", { src: "/static/katex.min.js" });
      script.addEventListener("load", () => resolve(window.katex));
      script.addEventListener("error", reject);
      document.head.append(script);
    });
  }
  return katexLoading;
}

/** Typeset the formulas the server marked, with the bundled KaTeX; the TeX stays as text if it fails. */
async function typeset(nodes) {
  let katex;
  try { katex = await loadKatex(); } catch { return; }
  for (const node of nodes) {
    const tex = node.textContent;
    try {
      // render() builds DOM nodes (styles set through the DOM, which the CSP allows).
      katex.render(tex, node, { displayMode: node.classList.contains("math-display"), throwOnError: false });
      node.setAttribute("data-tex", tex);
    } catch { node.textContent = tex; }
  }
}
