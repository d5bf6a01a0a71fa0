// Job page: refresh the counts (and this page's device statuses) from the JSON API while the
// job runs. The session cookie authenticates the requests; only textContent is written.
(function () {
  "use strict";
  const box = document.getElementById("job");
  if (!box) return;
  const field = (name) => box.querySelector('[data-field="' + name + '"]');
  const table = document.getElementById("job-devices");

  async function getJSON(url) {
    const r = await fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}});
    if (!r.ok) throw new Error(url + ": " + r.status);
    return r.json();
  }

  function showJob(job) {
    for (const [bucket, n] of Object.entries(job.counts)) {
      const el = box.querySelector('[data-count="' + bucket + '"]');
      if (el) el.textContent = String(n);
    }
    const c = job.counts;
    field("state").textContent = job.state;
    field("progress").value = job.progress;
    field("done").textContent = String(job.total - c.queued - c.sent - c.not_now);
  }

  function showDevices(page) {
    if (!table) return;
    for (const it of page.items) {
      const row = table.querySelector('tr[data-udid="' + CSS.escape(it.udid) + '"]');
      if (!row) continue;
      const badge = row.querySelector('[data-field="status"] .badge');
      if (badge) {
        badge.textContent = it.status.replace("_", " ");
        badge.className = "badge s-" + it.status;
      }
      const when = (t) => (t ? t.replace("T", " ").replace(/\..*$/, "").replace(/\+00:00$/, "") + " UTC" : "—");
      row.querySelector('[data-field="sent_at"]').textContent = when(it.sent_at);
      row.querySelector('[data-field="completed_at"]').textContent = when(it.completed_at);
    }
  }

  async function tick() {
    try {
      const job = await getJSON(box.dataset.jobUrl);
      showJob(job);
      showDevices(await getJSON(box.dataset.devicesUrl));
      if (job.state !== "running") {
        const cancel = box.querySelector('[data-action="cancel"]');
        if (cancel) cancel.closest("form").hidden = true;
        const failed = job.counts.error + job.counts.expired;
        field("live").textContent = failed ? "(reload to see the errors and retry)" : "";
        return;
      }
    } catch (e) {
      field("live").textContent = "(live updates stopped: " + e.message + ")";
      return;
    }
    setTimeout(tick, 1500);
  }

  if (field("state").textContent === "running") setTimeout(tick, 1000);
})();
