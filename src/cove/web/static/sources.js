// Knowledge-base sources in the chat: the composer's collection picker (set back to a reopened
// conversation's collections), and the cited passages under an answer, each with a link to its
// document's original file (for a PDF, the page itself). Every piece of a passage or a file name
// goes in as text (textContent), never as HTML: a document's words cannot become markup here.

import { $, api, authHeaders, el, explain, getJSON, notice } from "/static/util.js";

let answers = 0; // numbers each answer's sources, so their ids are unique on the page
// Collection names are plain (letters, digits, . _ -), so several chosen together (by the CLI,
// or the API) are one picker option whose value joins them with commas.
const JOIN = ",";
let listed = false; // the picker holds the server's collections (asked once at least)
let pending = null; // a conversation opened before that: its choice, shown once they came

/** Fill the composer's collection picker; it is hidden while there is no collection. */
export async function loadCollectionPicker() {
  const { collections } = await getJSON("/api/cove/kb");
  const picker = $("#kb");
  const was = chosenNames();
  const names = (collections || []).map((c) => c.name);
  picker.replaceChildren(el("option", { value: "", text: "No documents" }),
    ...names.map((name) => el("option", { value: name, text: name })));
  choose(was.filter((name) => names.includes(name)));
  $("#kb-box").hidden = names.length === 0;
  listed = true;
  if (pending) showChosen(pending.collections, pending.strict);
  strictShown();
}

function chosenNames() {
  const value = $("#kb").value;
  return value ? value.split(JOIN) : [];
}

/** Show `names` chosen in the picker (an option of their own when there are several). */
function choose(names) {
  const picker = $("#kb");
  picker.querySelector("option.several")?.remove();
  if (names.length > 1) picker.append(el("option", { value: names.join(JOIN), class: "several", text: names.join(" + ") }));
  picker.value = names.join(JOIN);
}

/** A reopened conversation's collections and strictness, back in the picker; one that is no
 * longer a collection is said, and left out (its turns would fail). */
export function showChosen(collections, strict) {
  pending = listed ? null : { collections, strict };
  if (!listed) return;
  const known = new Set([...$("#kb").options].map((o) => o.value).filter((v) => v && !v.includes(JOIN)));
  const wanted = collections || [];
  const names = wanted.filter((name) => known.has(name));
  choose(names);
  $("#kb-strict").checked = Boolean(strict) && names.length > 0;
  strictShown();
  const gone = wanted.filter((name) => !known.has(name));
  if (gone.length) notice(`This conversation answered from ${gone.join(", ")}, which is no longer a collection; it answers from ${names.length ? names.join(", ") : "no documents"} now.`);
}

/** Strict answering only means something with a collection chosen. */
export function strictShown() {
  $("#kb-strict").disabled = !$("#kb").value;
}

/** What a turn sends for the knowledge base: always the picker's choice, so "No documents" turns
 * off what a conversation chose before (the server keeps the choice with the conversation). */
export function knowledgeFields() {
  if (!listed) return {}; // the collections could not be asked for: the conversation keeps its own
  const names = $("#kb-box").hidden ? [] : chosenNames();
  return names.length ? { collections: names, cove_strict: $("#kb-strict").checked } : { collections: [] };
}

/** Where a cited document's original file opens: the page itself for a PDF (its viewer reads #page). */
export function originalURL(c) {
  if (!c.collection || !c.file) return null;
  const url = `/api/cove/kb/${encodeURIComponent(c.collection)}/file?file=${encodeURIComponent(c.file)}`;
  return /\.pdf$/i.test(c.file) && Number.isInteger(c.page) ? `${url}#page=${c.page}` : url;
}

/** A link that opens a document's original in a new tab. With an API key (which a plain link
 * cannot send) the file is fetched and opened from memory instead: a PDF as a PDF, an office
 * file downloaded, anything else as plain text, so nothing in it runs as this page. */
export function originalLink(href, text, label) {
  const link = el("a", { href, class: "original", target: "_blank", rel: "noopener noreferrer", text, "aria-label": label });
  link.addEventListener("click", (e) => {
    if (!authHeaders().Authorization) return; // no key: the browser opens the link itself
    e.preventDefault();
    openWithKey(link).catch((err) => notice(`Could not open ${text}: ${explain(err)}`));
  });
  return link;
}

async function openWithKey(link) {
  const tab = window.open("", "_blank"); // now, while the click still counts as the person's
  if (tab) tab.opener = null;
  const url = new URL(link.href);
  let res;
  try {
    res = await api(url.pathname + url.search);
  } catch (err) {
    tab?.close();
    throw err;
  }
  const kind = (res.headers.get("content-type") || "").split(";")[0];
  const pdf = kind === "application/pdf";
  const download = /^attachment/i.test(res.headers.get("content-disposition") || "");
  // Only two types are ever opened here: a PDF, or text. Nothing from the file becomes a page.
  const type = download ? "application/octet-stream" : pdf ? "application/pdf" : "text/plain;charset=utf-8";
  const local = URL.createObjectURL(new Blob([await res.arrayBuffer()], { type }));
  setTimeout(() => URL.revokeObjectURL(local), 60_000);
  if (download) {
    tab?.close();
    el("a", { href: local, download: link.dataset.file || "document" }).click();
  } else if (tab) {
    tab.location.href = local + (pdf ? url.hash : "");
  }
}

function where(c) {
  const parts = [c.file || "a document"];
  if (c.page != null && c.page !== "") parts.push(`page ${c.page}`);
  else if (c.heading) parts.push(c.heading);
  return parts.join(", ");
}

/** A "Sources" list under the answer `node`, and its [n] markers turned into links to them. */
export function showSources(node, citations) {
  if (!citations || !citations.length || node.querySelector(":scope > .sources")) return;
  const prefix = `src${++answers}`;
  const entries = new Map();
  const items = citations.map((c) => {
    const details = el("details", { id: `${prefix}-${c.n}`, class: "source" },
      el("summary", { text: `[${c.n}] ${where(c)}` }),
      el("blockquote", { class: "passage", text: c.text || "" }));
    entries.set(String(c.n), details);
    const href = originalURL(c);
    const page = href && href.includes("#page=") ? `page ${c.page} of ` : "";
    const open = href ? originalLink(href, `Open ${page}${c.file}`, `Open ${page}${c.file} (source ${c.n}) in a new tab`) : null;
    if (open) open.dataset.file = c.file.split("/").pop();
    return el("li", {}, details, open);
  });
  const heading = el("h3", { id: `${prefix}-title`, text: "Sources" });
  const box = el("section", { class: "sources", "aria-labelledby": `${prefix}-title` }, heading, el("ol", {}, ...items));
  node.insertBefore(box, node.querySelector(":scope > .msg-foot"));
  const md = node.querySelector(":scope > .md");
  if (md) linkMarkers(md, entries);
}

function openSource(details) {
  details.open = true;
  details.scrollIntoView({ block: "nearest" });
  details.querySelector("summary").focus();
}

/** Replace each "[n]" that names a source with a link to it (text nodes only, outside code and links). */
function linkMarkers(md, entries) {
  const walker = document.createTreeWalker(md, NodeFilter.SHOW_TEXT, {
    acceptNode: (t) => (t.parentElement.closest("code, pre, a, .katex") ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT),
  });
  const texts = [];
  while (walker.nextNode()) if (/\[\d+\]/.test(walker.currentNode.nodeValue)) texts.push(walker.currentNode);
  for (const text of texts) {
    const pieces = [];
    let last = 0;
    for (const match of text.nodeValue.matchAll(/\[(\d+)\]/g)) {
      const details = entries.get(match[1]);
      if (!details) continue;
      pieces.push(document.createTextNode(text.nodeValue.slice(last, match.index)));
      const link = el("a", { href: `#${details.id}`, class: "cite", text: match[0], "aria-label": `Source ${match[1]}` });
      link.addEventListener("click", (e) => { e.preventDefault(); openSource(details); });
      pieces.push(link);
      last = match.index + match[0].length;
    }
    if (!pieces.length) continue;
    pieces.push(document.createTextNode(text.nodeValue.slice(last)));
    text.replaceWith(...pieces);
  }
}
