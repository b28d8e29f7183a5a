// Luzia's dashboard: live updates without reloading. Plain JS, no build step.
// - A page whose <body data-live> is set listens to /events (the broker's events as
//   server-sent events) and fetches its live part again (header X-Luzia-Fragment) when an
//   event concerns it, at most once a second.
// - A job page streams its output from /jobs/ID/log into <pre id="log">.
// - A hidden tab closes its streams (a browser allows only six connections per host over
//   HTTP/1.1) and opens them again, catching up, when it is shown.
// - A form with data-confirm asks first.
"use strict";

(function () {
  const body = document.body;
  const live = body.dataset.live || "";
  const conn = document.getElementById("conn");
  const MIN_GAP = 1000;       // ms between two fetches of the live part
  let lastFetch = 0, timer = null, busy = false;
  let events = null, logStream = null, ticker = null;

  function setConn(ok) { if (conn) conn.className = "conn " + (ok ? "on" : "off"); }

  async function refresh() {
    timer = null;
    if (busy) { schedule(); return; }
    const target = document.getElementById("live");
    if (!target) return;
    busy = true; lastFetch = Date.now();
    try {
      const r = await fetch(location.href, {headers: {"X-Luzia-Fragment": "1"}, credentials: "same-origin"});
      if (r.ok) { target.innerHTML = await r.text(); bindForms(target); }
      else if (r.status === 401) { location.reload(); }
    } catch (e) { setConn(false); }
    finally { busy = false; }
  }

  function schedule() {
    if (timer) return;
    timer = setTimeout(refresh, Math.max(0, lastFetch + MIN_GAP - Date.now()));
  }

  function concerns(ev) {
    if (live.startsWith("job:")) return (ev.id || "") === live.slice(4);
    if (live === "stats" || live === "history") return (ev.topic || "").startsWith("job.") && ev.state !== "running";
    return true;
  }

  function openEvents() {
    if (!live || !window.EventSource || events) return;
    events = new EventSource("/events");
    // what happened between rendering the page and the stream's (re)opening is fetched once
    events.onopen = () => { setConn(true); schedule(); };
    events.onerror = () => setConn(false);
    events.onmessage = (m) => {
      let ev = {};
      try { ev = JSON.parse(m.data); } catch (e) { return; }
      if (concerns(ev)) schedule();
    };
    events.addEventListener("reload", schedule);
    // agents' load changes with each heartbeat, which publishes no event
    if (live === "fleet") ticker = setInterval(schedule, 5000);
  }

  // a job's output, streamed
  const log = document.getElementById("log");
  const logState = document.getElementById("log-state");
  function say(text) { if (logState) logState.textContent = text; }

  function openLog() {
    if (!log || !log.dataset.src || log.dataset.ended || !window.EventSource || logStream) return;
    let first = true;
    const atBottom = () => log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    const put = (text, replace) => {
      const follow = atBottom();
      if (replace) log.textContent = text; else log.textContent += text;
      if (log.textContent.length > 400000) log.textContent = log.textContent.slice(-300000);
      if (follow) log.scrollTop = log.scrollHeight;
    };
    logStream = new EventSource(log.dataset.src);
    logStream.addEventListener("log", (m) => { put(JSON.parse(m.data), first); first = false; say("live"); });
    logStream.addEventListener("tail", (m) => { put(JSON.parse(m.data), true); say("last lines (agent away)"); });
    logStream.addEventListener("problem", (m) => say(JSON.parse(m.data)));
    logStream.addEventListener("end", (m) => {
      logStream.close(); logStream = null; log.dataset.ended = "1"; say("ended: " + JSON.parse(m.data));
    });
    log.scrollTop = log.scrollHeight;
  }

  function closeAll() {
    if (events) { events.close(); events = null; }
    if (ticker) { clearInterval(ticker); ticker = null; }
    if (logStream) { logStream.close(); logStream = null; }
  }

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) closeAll(); else { openEvents(); openLog(); }
  });

  function bindForms(root) {
    root.querySelectorAll("form[data-confirm]").forEach((f) => {
      f.addEventListener("submit", (e) => { if (!confirm(f.dataset.confirm)) e.preventDefault(); });
    });
  }
  bindForms(document);
  openEvents();
  openLog();
})();
