// The console's only script: progressive enhancement over server-rendered pages.
// - the export form's list-name preview (asks the server, which uses the worker's own function)
// - live progress on a run's page (polls the public API until the run is final, then reloads)
// - CSV uploads with a progress bar (XMLHttpRequest upload events; CSRF token in a header); a
//   customer file imported in the background: its progress (polls the public API until final)
// Loaded as a module from this origin only (CSP: script-src 'self'); no inline script anywhere.

const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";

function listNamePreview() {
  const input = document.getElementById("f-listName");
  const out = document.getElementById("preview");
  if (!input || !out) return;
  const form = input.form;
  let timer = 0;
  const update = async () => {
    const params = new URLSearchParams();
    params.set("listName", input.value);
    params.set("displayName", form.elements.displayName?.value ?? "");
    for (const box of form.querySelectorAll('input[name="segments"]:checked')) {
      params.append("segments", box.value);
    }
    const response = await fetch(`/exports/preview?${params}`, { credentials: "same-origin" });
    if (!response.ok) return;
    const data = await response.json();
    out.replaceChildren();
    const p = document.createElement("p");
    if (data.error) {
      p.className = "error";
      p.textContent = data.error;
    } else {
      p.append("Lists: ");
      data.names.forEach((name, i) => {
        const code = document.createElement("code");
        code.textContent = name;
        p.append(code);
        if (i < data.names.length - 1) p.append(", ");
      });
    }
    out.append(p);
  };
  form.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(update, 200);
  });
}

function runProgress() {
  const section = document.getElementById("run");
  if (!section || section.dataset.active !== "true") return;
  const url = section.dataset.runUrl;
  const status = document.getElementById("run-status");
  const poll = async () => {
    let run;
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(String(response.status));
      run = await response.json();
    } catch {
      setTimeout(poll, 3000);
      return;
    }
    status.textContent = run.status;
    status.className = `status status-${run.status}`;
    run.segments.forEach((s, i) => {
      const row = document.querySelector(`tr[data-segment="${i}"]`);
      if (!row) return;
      const left = Object.values(s.leftOut || {}).reduce((a, b) => a + b, 0);
      const progress = s.complete ? "done" : `${s.progress.phase}${s.progress.total ? ` ${s.progress.done}/${s.progress.total}` : ""}`;
      const values = { progress, members: s.members, matched: s.matched, leftOut: left, added: s.added, removed: s.removed, failed: s.failed, error: s.error || "" };
      for (const [key, value] of Object.entries(values)) {
        const cell = row.querySelector(`[data-k="${key}"]`);
        if (cell) cell.textContent = String(value);
      }
    });
    if (run.status === "queued" || run.status === "running") {
      setTimeout(poll, 1000);
    } else {
      window.location.reload();
    }
  };
  setTimeout(poll, 500);
}

function followImport(url, bar, said) {
  const poll = async () => {
    let record;
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(String(response.status));
      record = await response.json();
    } catch {
      setTimeout(poll, 3000);
      return;
    }
    bar.value = record.rows ? Math.round((100 * record.rowsWritten) / record.rows) : 100;
    if (record.state === "succeeded") {
      said.textContent = `Uploaded: ${record.rowsWritten.toLocaleString()} rows imported.`;
      said.dataset.done = "true";
    } else if (record.state === "failed") {
      said.textContent = `The import failed: ${record.error || "see the function logs"}`;
    } else {
      said.textContent = `Importing in the background (${record.state}): ${record.rowsWritten.toLocaleString()} of ${record.rows.toLocaleString()} rows written…`;
      setTimeout(poll, 1000);
    }
  };
  bar.value = 0;
  setTimeout(poll, 500);
}

function uploads() {
  for (const form of document.querySelectorAll("form.js-upload")) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const file = form.elements.file.files[0];
      if (!file) return;
      const bar = form.querySelector("progress");
      const said = form.querySelector(".upload-status");
      let target = form.action;
      if (form.dataset.kind === "segment") {
        target += `?name=${encodeURIComponent(form.elements.name.value)}`;
      }
      const xhr = new XMLHttpRequest();
      xhr.open("POST", target);
      xhr.setRequestHeader("X-CSRF-Token", csrf);
      xhr.setRequestHeader("Content-Type", "text/csv");
      xhr.setRequestHeader("Accept", "application/json");
      bar.hidden = false;
      bar.value = 0;
      said.textContent = "Uploading…";
      xhr.upload.addEventListener("progress", (e) => {
        if (e.lengthComputable) bar.value = Math.round((100 * e.loaded) / e.total);
      });
      xhr.addEventListener("load", () => {
        let message = `Upload finished with status ${xhr.status}.`;
        let importUrl = "";
        try {
          const answer = JSON.parse(xhr.responseText);
          message = answer.message || message;
          importUrl = answer.importUrl || "";
        } catch {}
        bar.value = 100;
        said.textContent = message;
        if (importUrl) {
          followImport(importUrl, bar, said);
          return;
        }
        if (xhr.status >= 200 && xhr.status < 300) {
          said.dataset.done = "true";
        }
      });
      xhr.addEventListener("error", () => {
        said.textContent = "The upload failed: the connection was lost.";
      });
      xhr.send(file);
    });
  }
}

listNamePreview();
runProgress();
uploads();
