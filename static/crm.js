// Progressive enhancement only: every page works without this file.
// 1. Kanban: drag a card to another stage; the server's workflow guard decides.
// 2. Link pickers: search the linked entity instead of scrolling a long list.
// 3. Imports: the mapping step previews again when a choice changes; a job's page follows its progress.
"use strict";
(function () {
  document.documentElement.classList.add("js");
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content;

  function say(text, ok) {
    const box = document.getElementById("board-message");
    if (!box) return;
    box.textContent = text;
    box.classList.toggle("ok", !!ok);
  }

  function recount(board) {
    board.querySelectorAll(".column").forEach((column) => {
      const count = column.querySelector("h2 .count");
      const shown = column.querySelectorAll(".kanban-card").length;
      const hidden = Number(column.dataset.hidden || 0);
      if (count) count.textContent = String(shown + hidden);
    });
  }

  function setUpBoard(board) {
    let dragged = null;
    board.addEventListener("dragstart", (event) => {
      dragged = event.target.closest(".kanban-card");
      if (dragged) event.dataTransfer.setData("text/plain", dragged.dataset.id);
    });
    board.querySelectorAll(".column").forEach((column) => {
      column.addEventListener("dragover", (event) => { event.preventDefault(); column.classList.add("drop-target"); });
      column.addEventListener("dragleave", () => column.classList.remove("drop-target"));
      column.addEventListener("drop", async (event) => {
        event.preventDefault();
        column.classList.remove("drop-target");
        if (!dragged) return;
        const card = dragged, from = card.closest(".column");
        dragged = null;
        if (from === column) return;
        column.querySelector(".cards").appendChild(card);  // optimistic; snaps back if refused
        const response = await fetch(card.dataset.move, {
          method: "POST",
          headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": csrf },
          body: JSON.stringify({ to: column.dataset.stage, field: board.dataset.field, version: card.dataset.version }),
        });
        const fallback = { ok: false, reasons: [`the server answered ${response.status} ${response.statusText}`] };
        const result = await response.json().catch(() => fallback);
        if (response.ok && result.ok) {
          card.dataset.version = String(Number(card.dataset.version) + 1);
          recount(board);
          card.querySelector(".card-move")?.remove();  // its choices were for the old stage
          say(`Moved to ${result.label}.`, true);
        } else {
          from.querySelector(".cards").appendChild(card);
          say(`Not moved: ${(result.reasons || [result.error]).join("; ")}`, false);
        }
      });
    });
  }

  function setUpPicker(input) {
    const select = document.getElementById(input.dataset.target);
    if (!select) return;
    input.hidden = false;
    let timer = null;
    input.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(async () => {
        const response = await fetch(`${input.dataset.lookup}?q=${encodeURIComponent(input.value)}`,
                                     { headers: { "Accept": "application/json" } });
        if (!response.ok) return;
        const found = await response.json();
        // The chosen record stays an option even when the search does not find it, so saving keeps it.
        const chosen = select.selectedOptions[0];
        const keep = chosen && chosen.value ? [new Option(chosen.text, chosen.value, true, true)] : [];
        select.replaceChildren(new Option("—", ""), ...keep);
        for (const item of found) {
          if (String(item.id) !== (chosen && chosen.value)) select.add(new Option(item.title, String(item.id)));
        }
      }, 200);
    });
  }

  function setUpImportMapping(form) {
    // The page comes back from the server after each change: keep the focus on the control just changed.
    const focused = sessionStorage.getItem("import-focus");
    sessionStorage.removeItem("import-focus");
    if (focused) document.getElementById(focused)?.focus();
    form.addEventListener("change", (event) => {
      if (event.target.id) sessionStorage.setItem("import-focus", event.target.id);
      form.requestSubmit(form.querySelector('button[value="preview"]'));
    });
  }

  function followImport(box) {
    // Without this, a <noscript> refresh reloads the page every two seconds.
    const show = (state) => {
      for (const [key, value] of Object.entries(state)) {
        box.querySelectorAll(`[data-field="${key}"]`).forEach((element) => { element.textContent = String(value); });
      }
      const bar = box.querySelector("progress");
      if (bar) { bar.max = state.total || 1; bar.value = state.total ? state.processed : 1; }
    };
    const timer = setInterval(async () => {
      const response = await fetch(box.dataset.importStatus, { headers: { "Accept": "application/json" } })
        .catch(() => null);
      if (!response || !response.ok) return;
      const state = await response.json();
      show(state);
      if (state.finished || state.stopped) {
        clearInterval(timer);
        location.reload();  // the finished page offers the error report, "Resume" or the records
      }
    }, 1000);
  }

  document.querySelectorAll(".board").forEach(setUpBoard);
  document.querySelectorAll(".picker-search").forEach(setUpPicker);
  document.querySelectorAll("form.import-mapping").forEach(setUpImportMapping);
  document.querySelectorAll("[data-import-status]").forEach(followImport);
})();
