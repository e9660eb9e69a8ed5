// The Privacy page: what may leave this machine (the egress policy) and what did (the ledger).
// Everything here is inserted as text, never as HTML.

const $ = (sel) => document.querySelector(sel);

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  return td;
}

function row(...texts) {
  const tr = document.createElement("tr");
  tr.append(...texts.map(cell));
  return tr;
}

function size(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function mayLeave(allowed) {
  if (allowed === null || allowed === undefined) return "outside cove";
  return allowed ? "yes" : "no";
}

function showPolicy(policy) {
  $("#privacy-summary").textContent = policy.summary;
  $("#privacy-rules tbody").replaceChildren(
    ...policy.rules.map((r) => row(r.feature, mayLeave(r.allowed), r.to, r.why)),
  );
  $("#privacy-notes").replaceChildren(...policy.notes.map((note) => {
    const li = document.createElement("li");
    li.textContent = note;
    return li;
  }));
}

function showLedger(ledger) {
  const verdict = $("#privacy-verdict");
  verdict.textContent = ledger.verdict;
  verdict.dataset.left = String(ledger.left_machine);
  verdict.classList.toggle("proof", ledger.left_machine === 0);
  const table = $("#privacy-ledger");
  table.hidden = ledger.entries.length === 0; // an empty ledger is shown as what it is: the verdict
  table.querySelector("tbody").replaceChildren(...ledger.entries.map((e) => {
    const tr = row(
      e.at.slice(0, 19).replace("T", " "), e.feature, e.host, e.port ?? "", e.decision,
      size(e.bytes_sent), size(e.bytes_received), e.reason,
    );
    tr.className = e.decision;
    return tr;
  }));
}

export async function loadPrivacy(getJSON) {
  const { policy, ledger } = await getJSON("/api/cove/privacy?limit=500");
  showPolicy(policy);
  showLedger(ledger);
}
