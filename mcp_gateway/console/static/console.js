// The console's only script: live audit rows. Every page works without it.
"use strict";
(function () {
  const table = document.getElementById("audit");
  if (!table) return;
  const body = table.querySelector("tbody");
  let last = table.dataset.last;
  async function poll() {
    try {
      const url = table.dataset.live + (last ? "&after=" + encodeURIComponent(last) : "");
      const answer = await fetch(url, { credentials: "same-origin" });
      if (answer.ok) {
        last = answer.headers.get("x-audit-last") || last;
        const rows = (await answer.text()).trim();
        if (rows) body.insertAdjacentHTML("afterbegin", rows);
      }
    } finally {
      setTimeout(poll, 3000);
    }
  }
  setTimeout(poll, 3000);
})();
