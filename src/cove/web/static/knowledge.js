// The Knowledge view: collections and their documents, creating one, uploading files into one
// (then syncing it, its progress shown), opening a document's original, deleting a document or a
// whole collection (a second press confirms), and searching them. All data goes in as text.

import { $, api, el, explain, getJSON, ndjson, postJSON } from "/static/util.js";
import { originalLink } from "/static/sources.js";

let changed = () => {};
const CONFIRM_MS = 4000; // how long a delete button waits for its second press

/** `onChange` runs after a collection is created or deleted (the composer's picker lists them). */
export function wireKnowledge(onChange) {
  changed = onChange;
  $("#kb-create").addEventListener("submit", (e) => { e.preventDefault(); create().catch(say); });
  $("#kb-search").addEventListener("submit", (e) => { e.preventDefault(); search().catch(say); });
}

function say(err) { $("#kb-status").textContent = explain(err); }

export async function loadKnowledge() {
  const { collections } = await getJSON("/api/cove/kb");
  $("#kb-summary").textContent = collections.length
    ? `${collections.length} collection${collections.length === 1 ? "" : "s"}.`
    : "No collection yet: create one, then add files to it.";
  const docs = await Promise.all(collections.map((c) =>
    getJSON(`/api/cove/kb/${encodeURIComponent(c.name)}/documents`).then((r) => r.documents).catch(() => [])));
  $("#kb-list").replaceChildren(...collections.map((c, i) => collectionNode(c, docs[i])));
  const within = $("#kb-search-in");
  const was = within.value;
  within.replaceChildren(...collections.map((c) => el("option", { value: c.name, text: c.name })));
  if (collections.some((c) => c.name === was)) within.value = was;
  $("#kb-search").hidden = collections.length === 0;
}

function collectionNode(c, documents) {
  const id = `kb-c-${c.name.replace(/[^A-Za-z0-9_-]/g, "_")}`;
  const input = el("input", { type: "file", multiple: true, id: `${id}-file`, class: "kb-file" });
  input.addEventListener("change", () => { upload(c.name, [...input.files]).catch(say); input.value = ""; });
  const rows = documents.map((d) => el("tr", { "data-file": d.file },
    el("td", {}, d.id ? fileLink(c.name, d) : d.file), el("td", { text: d.status || "" }),
    el("td", { text: d.pages ?? "" }), el("td", { text: d.chunks ?? "" }),
    el("td", {}, deleteButton("Delete", `Delete ${d.file} from ${c.name}`, () => removeDocument(c.name, d)))));
  const table = documents.length
    ? el("table", { class: "kb-docs" },
      el("thead", {}, el("tr", {}, ...["File", "State", "Pages", "Passages", "Actions"].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, ...rows))
    : el("p", { class: "muted", text: "No documents yet." });
  const drop = deleteButton("Delete collection", `Delete collection ${c.name} (its documents' index)`, () => dropCollection(c.name));
  return el("section", { class: "kb-collection", "data-collection": c.name, "aria-labelledby": `${id}-name` },
    el("div", { class: "kb-head" }, el("h3", { id: `${id}-name`, text: c.name }), drop),
    el("p", { class: "muted", text: `${c.documents ?? documents.length} documents, ${c.chunks ?? 0} passages${c.model ? `, embedded with ${c.model}` : ""}${reranking(c.rerank)}` }),
    el("label", { for: `${id}-file`, text: `Add files to ${c.name}` }), input,
    table);
}

// "auto" reranks only when a reranking model is in the store, so it is said as a condition.
function reranking(setting) {
  if (!setting || setting === "off") return "";
  return setting === "auto" ? ", reranked when a reranking model is in the store" : `, reranked by ${setting}`;
}

function fileLink(name, d) {
  const href = `/api/cove/kb/${encodeURIComponent(name)}/documents/${encodeURIComponent(d.id)}/file`;
  const link = originalLink(href, d.file, `Open ${d.file} in a new tab`);
  link.dataset.file = d.file.split("/").pop();
  return link;
}

/** A delete button that acts on its second press within a few seconds (no browser dialog). */
function deleteButton(text, label, action) {
  const button = el("button", { type: "button", class: "small danger", text, "aria-label": label });
  let timer = null;
  button.addEventListener("click", () => {
    if (button.dataset.armed !== "1") {
      button.dataset.armed = "1";
      button.textContent = "Really delete?";
      button.setAttribute("aria-label", `Really delete? Press again to confirm: ${label}`);
      timer = setTimeout(() => { button.dataset.armed = ""; button.textContent = text; button.setAttribute("aria-label", label); }, CONFIRM_MS);
      return;
    }
    clearTimeout(timer);
    button.disabled = true;
    action().catch((err) => { say(err); button.disabled = false; button.dataset.armed = ""; button.textContent = text; });
  });
  return button;
}

async function removeDocument(name, d) {
  const where = `/api/cove/kb/${encodeURIComponent(name)}/documents`;
  const { removed } = await postJSON(where, { paths: [d.path || d.file] }, "DELETE");
  $("#kb-status").textContent = removed ? `Deleted ${d.file} from ${name}.` : `${d.file} was already gone from ${name}.`;
  await loadKnowledge();
}

async function dropCollection(name) {
  await postJSON(`/api/cove/kb/${encodeURIComponent(name)}`, undefined, "DELETE");
  $("#kb-status").textContent = `Deleted the collection ${name}.`;
  await loadKnowledge();
  changed();
}

async function create() {
  const name = $("#kb-new-name").value.trim();
  if (!name) return;
  await postJSON("/api/cove/kb", { name });
  $("#kb-new-name").value = "";
  $("#kb-status").textContent = `Created ${name}.`;
  await loadKnowledge();
  changed();
}

async function upload(name, files) {
  if (!files.length) return;
  const form = new FormData();
  for (const file of files) form.append("file", file, file.name);
  const where = `/api/cove/kb/${encodeURIComponent(name)}`;
  const status = $("#kb-status");
  status.textContent = `Uploading ${files.length} file${files.length === 1 ? "" : "s"} to ${name}…`;
  await api(`${where}/upload`, { method: "POST", raw: form });
  const res = await api(`${where}/sync`, { method: "POST", body: {} });
  for await (const line of ndjson(res)) {
    if (line.error) throw new Error(line.error);
    if (line.progress) {
      const p = line.progress;
      status.textContent = `Indexing ${name}: ${p.files_done} of ${p.files_total} files, ${p.chunks} passages${p.current ? ` (${p.current})` : ""}…`;
    }
    if (line.report) {
      const r = line.report;
      const refused = (r.refused || []).map((x) => `${x.file}: ${x.reason}`);
      const count = (v) => (Array.isArray(v) ? v.length : v || 0);
      status.textContent = `${name} synced: ${count(r.added)} added, ${count(r.updated)} updated, ${count(r.removed)} removed.`
        + (refused.length ? ` Not read: ${refused.join("; ")}.` : "");
    }
  }
  await loadKnowledge();
}

async function search() {
  const query = $("#kb-query").value.trim();
  const collection = $("#kb-search-in").value;
  if (!query || !collection) return;
  const { passages, reranked_by: by, warning } = await postJSON("/api/cove/kb/search", { collections: [collection], query, k: 5 });
  const order = by ? ` Ordered by the reranker ${by}.` : "";
  $("#kb-results-summary").textContent =
    (passages.length ? `${passages.length} passages, best first.${order}` : "Nothing found.") + (warning ? ` ${warning}` : "");
  $("#kb-results").replaceChildren(...passages.map((p) => el("li", { class: "kb-passage" },
    el("p", { class: "kb-where", text: `${p.file}${p.page != null ? `, page ${p.page}` : p.heading ? `, ${p.heading}` : ""} · score ${Number(p.score).toFixed(3)}` }),
    el("blockquote", { class: "passage", text: p.text || "" }))));
}
