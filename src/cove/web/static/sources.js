// Knowledge-base sources in the chat: the composer's collection picker, and the cited passages
// under an answer. Every piece of a passage or a file name goes in as text (textContent), never
// as HTML: a document's words cannot become markup here.

import { $, el, getJSON } from "/static/util.js";

let answers = 0; // numbers each answer's sources, so their ids are unique on the page

/** Fill the composer's collection picker; it is hidden while there is no collection. */
export async function loadCollectionPicker() {
  const { collections } = await getJSON("/api/cove/kb");
  const picker = $("#kb");
  const was = picker.value;
  const names = (collections || []).map((c) => c.name);
  picker.replaceChildren(el("option", { value: "", text: "No documents" }),
    ...names.map((name) => el("option", { value: name, text: name })));
  picker.value = names.includes(was) ? was : "";
  $("#kb-box").hidden = names.length === 0;
  strictShown();
}

/** Strict answering only means something with a collection chosen. */
export function strictShown() {
  $("#kb-strict").disabled = !$("#kb").value;
}

/** What a turn sends for the knowledge base: nothing when "No documents" is chosen. */
export function knowledgeFields() {
  const name = $("#kb-box").hidden ? "" : $("#kb").value;
  return name ? { collections: [name], cove_strict: $("#kb-strict").checked } : {};
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
    return el("li", {}, details);
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
