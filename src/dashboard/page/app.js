/*
 * starforge dashboard: one plain script, no framework, no build step.
 *
 * Data: the JSON API under api/ (status, queue, history, dead-letter queue, agent logs) and the
 * server-sent events of events (slots, queue, attempt, log), which keep the page current without
 * polling. Everything shown from the daemon is set with textContent: no HTML is ever built from
 * data. The server's Content-Security-Policy forbids inline scripts and styles, so all behaviour
 * lives here and all looks in style.css.
 */
"use strict";
(() => {
  // ---- small helpers ----------------------------------------------------------------------

  const $ = (id) => document.getElementById(id);
  const SVG_NS = "http://www.w3.org/2000/svg";

  /** `el("td", {className: "num", text: "3", title: "…", data: {agent: "a"}}, child…)` */
  const el = (tag, props, ...children) => {
    const node = document.createElement(tag);
    applyProps(node, props);
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  };

  const svg = (tag, attrs, ...children) => {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) node.setAttribute(k, String(v));
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  };

  const applyProps = (node, props) => {
    if (!props) return;
    for (const [key, value] of Object.entries(props)) {
      if (value === undefined || value === null) continue;
      if (key === "text") node.textContent = String(value);
      else if (key === "className") node.className = value;
      else if (key === "data") for (const [k, v] of Object.entries(value)) node.dataset[k] = String(v);
      else if (key === "on") for (const [k, v] of Object.entries(value)) node.addEventListener(k, v);
      else if (key === "hidden" || key === "disabled") node[key] = Boolean(value);
      else node.setAttribute(key, String(value));
    }
  };

  /** Sets a node's text only when it changed (no needless layout work on every event). */
  const setText = (node, text) => {
    const value = text === undefined || text === null ? "" : String(text);
    if (node.textContent !== value) node.textContent = value;
  };

  const known = (n) => typeof n === "number" && Number.isFinite(n);
  const DASH = "–";

  // ---- formatting (the same forms as the CLI) ---------------------------------------------

  /** `12s`, `3m 05s`, `1h 02m 09s` */
  const fmtDuration = (seconds) => {
    const s = Math.max(0, Math.floor(seconds));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const r = s % 60;
    if (h > 0) return `${h}h ${String(m).padStart(2, "0")}m ${String(r).padStart(2, "0")}s`;
    if (m > 0) return `${m}m ${String(r).padStart(2, "0")}s`;
    return `${r}s`;
  };

  const fmtCost = (usd) => (known(usd) ? `$${usd === 0 || usd >= 1 ? usd.toFixed(2) : usd.toFixed(4)}` : DASH);
  const fmtCostShort = (usd) => (known(usd) ? `$${usd < 10 ? usd.toFixed(2) : usd.toFixed(0)}` : DASH);
  const fmtTokens = (n) => (!known(n) ? DASH : n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : n >= 1000 ? `${(n / 1000).toFixed(1)}k` : String(n));
  const fmtBytes = (b) => {
    if (!known(b)) return DASH;
    const v = Math.max(0, b);
    if (v < 1024) return `${Math.round(v)} B`;
    if (Math.round(v / 1024) < 1024) return `${Math.round(v / 1024)} KB`;
    if (Math.round(v / 1024 ** 2) < 1024) return `${Math.round(v / 1024 ** 2)} MB`;
    return `${(v / 1024 ** 3).toFixed(1)} GB`;
  };
  const fmtPercent = (p) => (known(p) ? `${Math.round(Math.max(0, p))}%` : DASH);

  /** `just now`, `42s ago`, `5m ago`, `3h ago`, `2d ago` */
  const fmtAgo = (ms) => {
    if (!known(ms)) return DASH;
    const s = Math.max(0, Math.floor((Date.now() - ms) / 1000));
    if (s < 5) return "just now";
    if (s < 60) return `${s}s ago`;
    if (s < 3600) return `${Math.floor(s / 60)}m ago`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
    return `${Math.floor(s / 86400)}d ago`;
  };

  const pad2 = (n) => String(n).padStart(2, "0");
  const fmtClock = (ms) => {
    const d = new Date(ms);
    return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
  };
  const parseTime = (iso) => {
    const ms = typeof iso === "string" ? Date.parse(iso) : NaN;
    return Number.isNaN(ms) ? undefined : ms;
  };

  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

  /** A node whose text is redrawn every second: the time since `ms` (`elapsed`) or `… ago`. */
  const liveTime = (kind, ms, className) => {
    const node = el("span", { className, data: { [kind]: String(ms) } });
    node.textContent = kind === "since" ? fmtDuration((Date.now() - ms) / 1000) : fmtAgo(ms);
    return node;
  };

  // ---- the API ----------------------------------------------------------------------------

  /** The body of a response: JSON when it says so, text otherwise. */
  const bodyOf = async (response) => {
    const type = response.headers.get("content-type") || "";
    if (type.includes("json")) {
      try {
        return await response.json();
      } catch {
        return undefined;
      }
    }
    return response.text();
  };

  /** `{ok, status, body, error}`; never throws. A 401/403 shows how to sign in. */
  const api = async (path, options = {}) => {
    let response;
    try {
      response = await fetch(path, {
        credentials: "same-origin",
        cache: "no-store",
        ...options,
        headers: { Accept: "application/json", ...(options.headers || {}) }
      });
    } catch {
      return { ok: false, status: 0, body: undefined, error: "the dashboard does not answer (is the daemon running?)" };
    }
    const body = await bodyOf(response);
    if (response.status === 401 || response.status === 403) {
      showBanner("Not signed in: open the address printed by `starforge dashboard` (it carries the token).");
    }
    const error = response.ok
      ? undefined
      : body && typeof body === "object" && typeof body.error === "string"
      ? body.error
      : `the request failed (HTTP ${response.status})`;
    return { ok: response.ok, status: response.status, body, error };
  };

  const post = (path, json) =>
    api(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: json === undefined ? "{}" : JSON.stringify(json)
    });

  const showBanner = (text) => {
    const banner = $("banner");
    setText(banner, text);
    banner.hidden = false;
  };
  const hideBanner = () => {
    $("banner").hidden = true;
  };

  /**
   * Runs `task` now, or once more after the run in flight, never more often than every `gapMs`:
   * a burst of events costs one request, and no event's change is missed.
   */
  const coalesced = (task, gapMs) => {
    let running = false;
    let again = false;
    let last = 0;
    const run = async () => {
      if (running) {
        again = true;
        return;
      }
      running = true;
      const wait = last + gapMs - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      try {
        // Calls made while waiting are answered by this run; calls during it, by the next.
        again = false;
        last = Date.now();
        await task();
      } catch (e) {
        console.error(e);
      } finally {
        running = false;
        if (again) {
          again = false;
          void run();
        }
      }
    };
    return run;
  };

  // ---- state ------------------------------------------------------------------------------

  const state = {
    /** agent → slot, as `slots list --json` */
    slots: {},
    slotsKnown: false,
    /** the waiting triggers, each with `why` */
    queue: [],
    queueKnown: false,
    /** finished attempts of the last 24 hours, oldest first */
    history: [],
    dlq: [],
    dlqKnown: false,
    status: undefined,
    /** the daemon's events seen since the page opened (the "Daemon events" log) */
    events: [],
    /** "" = daemon events, otherwise an agent */
    logAgent: ""
  };

  const MAX_EVENTS = 400;
  const RECENT_ATTEMPTS = 15;
  const MAX_QUEUE_ROWS = 200;

  const toSlotTable = (data) => {
    if (Array.isArray(data)) {
      const table = {};
      for (const s of data) if (s && typeof s.agent === "string") table[s.agent] = s;
      return table;
    }
    if (data && typeof data === "object") return data.slots && typeof data.slots === "object" && !("status" in data.slots) ? toSlotTable(data.slots) : data;
    return {};
  };

  const toList = (data, ...keys) => {
    if (Array.isArray(data)) return data;
    if (data && typeof data === "object") for (const k of keys) if (Array.isArray(data[k])) return data[k];
    return [];
  };

  // ---- the top bar and the summary --------------------------------------------------------

  const ANNOUNCE = { live: "Live updates connected", connecting: "", disconnected: "Live updates disconnected" };

  const setConnection = (kind, text) => {
    const conn = $("conn");
    // Screen readers hear the change of state, not the countdown.
    if (conn.dataset.state !== kind) setText($("conn-announce"), ANNOUNCE[kind] ?? "");
    conn.dataset.state = kind;
    setText($("conn-text"), text);
    $("reconnect").hidden = kind !== "disconnected";
  };

  const renderStatus = () => {
    const s = state.status;
    const daemon = $("daemon");
    if (s === undefined) return;
    if (s === null) {
      daemon.dataset.state = "unknown";
      setText($("daemon-text"), "Daemon unreachable");
    } else if (s.running) {
      daemon.dataset.state = "running";
      const cap = capOf(s);
      const parts = [`Running · PID ${s.pid}`];
      if (s.mode) parts.push(s.mode === "parallel" && known(cap) && cap < 999 ? `parallel, cap ${cap}` : s.mode);
      if (known(s.uptime_seconds)) parts.push(`up ${fmtDuration(s.uptime_seconds)}`);
      setText($("daemon-text"), parts.join(" · "));
    } else {
      daemon.dataset.state = "stopped";
      setText($("daemon-text"), "Daemon stopped");
    }
    renderStats();
  };

  /** The effective cap while dynamic scaling lowers it, else MAX_CONCURRENT_AGENTS. */
  const capOf = (s) => {
    if (!s) return undefined;
    if (s.capacity && known(s.capacity.effective_cap)) return s.capacity.effective_cap;
    return known(s.max_concurrent) ? s.max_concurrent : undefined;
  };

  const renderStats = () => {
    const s = state.status || undefined;
    const busy = Object.values(state.slots).filter((slot) => slot && slot.status === "busy").length;
    const cap = capOf(s);
    setText($("stat-busy"), state.slotsKnown ? (known(cap) && cap < 999 ? `${busy} / ${cap}` : String(busy)) : DASH);
    $("stat-busy").dataset.tone = busy > 0 ? "busy" : "";
    const waiting = state.queueKnown ? state.queue.length : s && s.queue ? s.queue.pending : undefined;
    setText($("stat-waiting"), known(waiting) ? String(waiting) : DASH);
    setText($("stat-done"), s && s.last_hour ? String(s.last_hour.done) : DASH);
    const failed = s && s.last_hour ? s.last_hour.failed : undefined;
    setText($("stat-failed"), known(failed) ? String(failed) : DASH);
    $("stat-failed").dataset.tone = failed > 0 ? "fail" : "";
    const dead = state.dlqKnown ? state.dlq.length : s && s.queue ? s.queue.dead_letter : undefined;
    setText($("stat-dlq"), known(dead) ? String(dead) : DASH);
    $("stat-dlq").dataset.tone = dead > 0 ? "fail" : "";
    const cost = s && s.cost_today ? s.cost_today.total_usd : undefined;
    setText($("stat-cost"), known(cost) ? fmtCost(cost) : DASH);
    document.title = busy > 0 ? `(${busy} busy) starforge` : "starforge";
  };

  const refreshStatus = coalesced(async () => {
    const r = await api("api/status");
    if (r.ok && r.body && typeof r.body === "object") {
      state.status = r.body;
      hideBanner();
      // Before the first event, the status's own slot table and waiting list fill the page.
      if (!state.slotsKnown && r.body.slots) applySlots(r.body.slots);
      const waiting = r.body.pending ?? r.body.waiting;
      if (!state.queueKnown && Array.isArray(waiting)) applyQueue(waiting);
    } else if (r.status === 0) {
      state.status = null;
    }
    renderStatus();
    renderChart();
    setText($("updated"), `Updated ${fmtClock(Date.now())}`);
  }, 1000);

  // ---- agents -----------------------------------------------------------------------------

  /** agent → the parts of its card that change */
  const cards = new Map();

  const makeCard = (agent) => {
    const refs = {};
    const line = (label, valueClass) => {
      const v = el("span", { className: `v ${valueClass || ""}`.trim() });
      const row = el("div", { className: "agent-line" }, el("span", { className: "k", text: label }), v);
      return { row, v };
    };
    const metric = (label) => {
      const dd = el("dd", { text: DASH });
      return { node: el("div", null, el("dt", { text: label }), dd), dd };
    };
    refs.badge = el("span", { className: "badge" });
    refs.ticket = line("Ticket");
    refs.trigger = line("Trigger", "mono");
    refs.running = line("Running for");
    refs.last = line("Last attempt");
    refs.turns = metric("Turns · tool uses");
    refs.tool = metric("Last tool");
    refs.tokens = metric("Tokens in / out");
    refs.cost = metric("Cost");
    refs.cpu = metric("CPU");
    refs.mem = metric("Memory");
    refs.metrics = el(
      "dl",
      { className: "metrics" },
      refs.turns.node, refs.tool.node, refs.tokens.node, refs.cost.node, refs.cpu.node, refs.mem.node
    );
    const viewLog = el("button", {
      type: "button",
      className: "secondary small",
      text: "View log",
      "aria-label": `View the log of ${agent}`,
      on: { click: () => chooseLog(agent, true) }
    });
    const root = el(
      "li",
      { className: "agent", data: { agent } },
      el("div", { className: "agent-head" }, el("span", { className: "agent-name", text: agent, title: agent }), refs.badge),
      el(
        "div",
        { className: "agent-body" },
        refs.ticket.row, refs.trigger.row, refs.running.row, refs.last.row
      ),
      refs.metrics,
      el("div", { className: "agent-foot" }, viewLog)
    );
    return { root, refs, since: undefined };
  };

  const updateCard = (card, agent, slot) => {
    const r = card.refs;
    const busy = slot.status === "busy";
    card.root.dataset.status = busy ? "busy" : "idle";
    setText(r.badge, busy ? "busy" : "idle");
    r.badge.dataset.tone = busy ? "busy" : "";
    r.ticket.row.hidden = !busy;
    r.trigger.row.hidden = !busy;
    r.running.row.hidden = !busy;
    r.metrics.hidden = !busy;
    if (busy) {
      setText(r.ticket.v, `${slot.ticket ?? "none"}${known(slot.attempt) ? ` · attempt ${slot.attempt}` : ""}`);
      setText(r.trigger.v, slot.trigger ?? DASH);
      r.trigger.v.title = slot.trigger ?? "";
      const started = parseTime(slot.started_at);
      if (started !== card.since) {
        card.since = started;
        r.running.v.replaceChildren(started === undefined ? DASH : liveTime("since", started, "elapsed"));
        r.running.v.title = slot.started_at ? `since ${slot.started_at}` : "";
      }
      const hasProgress = slot.last_event_at !== undefined && slot.last_event_at !== null;
      setText(r.turns.dd, hasProgress ? `${slot.turns ?? 0} · ${slot.tool_uses ?? 0}` : DASH);
      setText(r.tool.dd, slot.last_tool || DASH);
      setText(r.tokens.dd, hasProgress ? `${fmtTokens(slot.tokens_in ?? 0)} / ${fmtTokens(slot.tokens_out ?? 0)}` : DASH);
      setText(r.cost.dd, fmtCost(slot.cost_usd));
      setText(r.cpu.dd, fmtPercent(slot.cpu_percent));
      setText(r.mem.dd, fmtBytes(slot.rss_bytes));
      r.mem.dd.title = known(slot.peak_rss_bytes) ? `peak ${fmtBytes(slot.peak_rss_bytes)}` : "";
    } else {
      card.since = undefined;
      r.running.v.replaceChildren();
    }
    // Idle: how its last attempt went.
    const last = busy ? undefined : lastAttemptOf(agent);
    r.last.row.hidden = last === undefined;
    if (last !== undefined) {
      const ended = parseTime(last.end);
      r.last.v.replaceChildren(
        el("span", { text: `${last.outcome} · ` }),
        ended === undefined ? DASH : liveTime("ago", ended)
      );
    }
  };

  const lastAttemptOf = (agent) => {
    for (let i = state.history.length - 1; i >= 0; i--) if (state.history[i].agent === agent) return state.history[i];
    return undefined;
  };

  const renderAgents = () => {
    const names = Object.keys(state.slots).sort((a, b) => a.localeCompare(b));
    const list = $("agents");
    for (const [agent, card] of cards) {
      if (!(agent in state.slots)) {
        card.root.remove();
        cards.delete(agent);
      }
    }
    let previous = null;
    for (const agent of names) {
      let card = cards.get(agent);
      if (!card) {
        card = makeCard(agent);
        cards.set(agent, card);
      }
      updateCard(card, agent, state.slots[agent] || {});
      // Keep alphabetical order: a card stays where it is when its agent goes busy or idle.
      const expected = previous ? previous.nextSibling : list.firstChild;
      if (expected !== card.root) list.insertBefore(card.root, expected);
      previous = card.root;
    }
    $("agents-empty").hidden = names.length > 0;
    const busy = names.filter((a) => state.slots[a].status === "busy").length;
    setText($("agents-note"), names.length === 0 ? "" : `${busy} busy, ${names.length - busy} idle`);
    renderAgentChoices(names);
    renderStats();
  };

  let knownAgents = "";
  /** The agent pickers: the log's select and the form's suggestions. */
  const renderAgentChoices = (names) => {
    const key = names.join("\n");
    if (key === knownAgents) return;
    knownAgents = key;
    $("agent-names").replaceChildren(...names.map((n) => el("option", { value: n })));
    const select = $("log-agent");
    const chosen = state.logAgent;
    const options = [el("option", { value: "", text: "Daemon events" }), ...names.map((n) => el("option", { value: n, text: n }))];
    if (chosen && !names.includes(chosen)) options.push(el("option", { value: chosen, text: chosen }));
    select.replaceChildren(...options);
    select.value = chosen;
  };

  const applySlots = (data) => {
    const before = state.slots;
    state.slots = toSlotTable(data);
    state.slotsKnown = true;
    renderAgents();
    // The chosen agent's log changes with its slot (started, progressed, ended).
    const agent = state.logAgent;
    if (agent && JSON.stringify(before[agent]) !== JSON.stringify(state.slots[agent])) refreshLog();
  };

  // ---- the queue --------------------------------------------------------------------------

  const REASONS = {
    next: "next",
    agent_busy: "agent busy",
    cap_reached: "cap reached",
    retry_delay: "retry delay",
    usage_limit: "usage limit",
    budget: "budget",
    held_back: "held back",
    stopping: "stopping",
    no_daemon: "no daemon"
  };

  const applyQueue = (data) => {
    state.queue = toList(data, "queue", "pending", "waiting", "triggers");
    state.queueKnown = true;
    renderQueue();
    renderStats();
  };

  const renderQueue = () => {
    const rows = state.queue.slice(0, MAX_QUEUE_ROWS).map((q) => {
      const why = q.why && typeof q.why === "object" ? q.why : undefined;
      const reason = why && typeof why.reason === "string" ? why.reason : undefined;
      return el(
        "tr",
        { data: { trigger: q.trigger ?? "" } },
        el("td", { className: "trigger", text: q.trigger ?? DASH, "data-label": "Trigger" }),
        el("td", { className: "nowrap", text: q.agent ?? DASH, "data-label": "Agent" }),
        el("td", { text: q.ticket ?? DASH, "data-label": "Ticket" }),
        el("td", { className: "num", text: q.attempt ?? DASH, "data-label": "Attempt" }),
        el(
          "td",
          { className: "why-cell", "data-label": "Why it waits" },
          el(
            "span",
            { className: "why" },
            reason ? el("span", { className: "badge", data: { tone: "wait" }, text: REASONS[reason] || reason.replace(/_/g, " ") }) : null,
            el("span", { className: "why-text", text: why && why.text ? why.text : typeof q.why === "string" ? q.why : DASH })
          )
        )
      );
    });
    $("queue").replaceChildren(...rows);
    const n = state.queue.length;
    $("queue-table").hidden = n === 0;
    $("queue-empty").hidden = n > 0;
    setText($("queue-note"), n === 0 ? "" : n > MAX_QUEUE_ROWS ? `first ${MAX_QUEUE_ROWS} of ${n}` : plural(n, "trigger"));
  };

  const refreshQueue = coalesced(async () => {
    const r = await api("api/queue");
    if (r.ok) applyQueue(r.body);
  }, 300);

  // ---- attempts and the chart -------------------------------------------------------------

  const DAY_MS = 24 * 3600 * 1000;
  const attemptKey = (a) => `${a.trigger}\n${a.attempt}\n${a.end}`;

  const refreshHistory = coalesced(async () => {
    const since = new Date(Date.now() - DAY_MS).toISOString().replace(/\.\d{3}Z$/, "Z");
    const r = await api(`api/history?since=${encodeURIComponent(since)}`);
    if (!r.ok) return;
    const rows = toList(r.body, "history", "entries", "attempts");
    // Keep what events brought meanwhile.
    const seen = new Set(rows.map(attemptKey));
    const extra = state.history.filter((a) => !seen.has(attemptKey(a)));
    state.history = [...rows, ...extra].sort((a, b) => (parseTime(a.end) ?? 0) - (parseTime(b.end) ?? 0));
    renderHistory();
  }, 1000);

  const addAttempt = (row) => {
    if (!row || typeof row !== "object") return;
    if (state.history.some((a) => attemptKey(a) === attemptKey(row))) return;
    state.history.push(row);
    renderHistory();
  };

  const renderHistory = () => {
    const cutoff = Date.now() - DAY_MS;
    state.history = state.history.filter((a) => (parseTime(a.end) ?? 0) >= cutoff);
    renderAttempts();
    renderChart();
    renderAgents();
  };

  const outcomeTone = (outcome) => (outcome === "success" ? "ok" : outcome === "interrupted" ? "" : "fail");

  const renderAttempts = () => {
    const recent = state.history.slice(-RECENT_ATTEMPTS).reverse();
    const rows = recent.map((a) => {
      const start = parseTime(a.start);
      const end = parseTime(a.end);
      return el(
        "tr",
        { data: { trigger: a.trigger ?? "", outcome: a.outcome ?? "" } },
        el("td", { className: "nowrap", title: a.end ?? "", "data-label": "Ended" }, end === undefined ? DASH : liveTime("ago", end)),
        el("td", { className: "nowrap", text: a.agent ?? DASH, "data-label": "Agent" }),
        el("td", { className: "trigger", text: a.trigger ?? DASH, "data-label": "Trigger" }),
        el("td", { className: "num", text: a.attempt ?? DASH, "data-label": "Attempt" }),
        el(
          "td",
          { "data-label": "Outcome" },
          el("span", {
            className: "badge",
            data: { tone: outcomeTone(a.outcome) },
            text: a.outcome ?? DASH,
            title: a.signal ? `signal ${a.signal}` : known(a.exit_code) ? `exit code ${a.exit_code}` : ""
          })
        ),
        el("td", {
          className: "num nowrap",
          text: start !== undefined && end !== undefined ? fmtDuration((end - start) / 1000) : DASH,
          "data-label": "Took"
        })
      );
    });
    $("attempts").replaceChildren(...rows);
    $("attempts-table").hidden = rows.length === 0;
    $("attempts-empty").hidden = rows.length > 0;
    setText($("attempts-note"), state.history.length > RECENT_ATTEMPTS ? `last ${RECENT_ATTEMPTS} of ${state.history.length} today` : "");
  };

  /** 1, 2, 5, 10, 20, 50… at or above n. */
  const niceCeil = (n) => {
    if (n <= 0) return 1;
    const p = 10 ** Math.floor(Math.log10(n));
    for (const m of [1, 2, 5, 10]) if (m * p >= n) return m * p;
    return 10 * p;
  };

  const renderChart = () => {
    const HOUR = 3600 * 1000;
    const now = Date.now();
    const firstHour = Math.floor(now / HOUR) * HOUR - 23 * HOUR;
    const buckets = Array.from({ length: 24 }, (_, i) => ({ start: firstHour + i * HOUR, ok: 0, failed: 0, cost: 0 }));
    let costKnown = false;
    for (const a of state.history) {
      const end = parseTime(a.end);
      if (end === undefined || end < firstHour) continue;
      const b = buckets[Math.min(23, Math.floor((end - firstHour) / HOUR))];
      if (a.outcome === "success") b.ok++;
      else b.failed++;
      if (known(a.cost_usd)) {
        b.cost += a.cost_usd;
        costKnown = true;
      }
    }
    const W = 720;
    const H = 230;
    const M = { left: 34, right: costKnown ? 50 : 14, top: 14, bottom: 26 };
    const plotW = W - M.left - M.right;
    const plotH = H - M.top - M.bottom;
    // Whole numbers on the attempts axis: at most 4 steps of 1, 2, 5, 10…
    const highest = Math.max(1, ...buckets.map((b) => b.ok + b.failed));
    const step = highest <= 4 ? 1 : niceCeil(highest / 4);
    const ticks = Math.ceil(highest / step);
    const maxCount = step * ticks;
    const maxCost = niceCeil(Math.max(0.01, ...buckets.map((b) => b.cost)));
    const slot = plotW / 24;
    const barW = Math.max(2, slot * 0.62);
    const y = (count) => M.top + plotH - (count / maxCount) * plotH;
    const yCost = (usd) => M.top + plotH - (usd / maxCost) * plotH;

    const total = buckets.reduce((s, b) => s + b.ok + b.failed, 0);
    const failed = buckets.reduce((s, b) => s + b.failed, 0);
    const cost = buckets.reduce((s, b) => s + b.cost, 0);
    const summary = total === 0
      ? "No attempt finished in the last 24 hours."
      : `${plural(total, "attempt")} in the last 24 hours, ${failed} failed${costKnown ? `, ${fmtCost(cost)}` : ""}.`;

    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": "chart-svg-title" }, svg("title", { id: "chart-svg-title" }, summary));
    // Grid and the attempts axis.
    for (let i = 0; i <= ticks; i++) {
      const value = step * i;
      const yy = y(value);
      root.append(svg("line", { class: "grid", x1: M.left, x2: W - M.right, y1: yy, y2: yy }));
      root.append(svg("text", { class: "axis", x: M.left - 6, y: yy + 3.5, "text-anchor": "end" }, String(value)));
      if (costKnown) {
        root.append(svg("text", { class: "axis-cost", x: W - M.right + 6, y: yy + 3.5 }, fmtCostShort((maxCost / ticks) * i)));
      }
    }
    const points = [];
    buckets.forEach((b, i) => {
      const x = M.left + i * slot + (slot - barW) / 2;
      const hour = new Date(b.start);
      const label = `${pad2(hour.getHours())}:00–${pad2((hour.getHours() + 1) % 24)}:00`;
      const group = svg(
        "g",
        null,
        svg("title", null, `${label}: ${plural(b.ok + b.failed, "attempt")}${b.failed ? ` (${b.failed} failed)` : ""}${costKnown ? `, ${fmtCost(b.cost)}` : ""}`),
        svg("rect", { class: "hover", x: M.left + i * slot, y: M.top, width: slot, height: plotH })
      );
      if (b.ok > 0) group.append(svg("rect", { class: "bar-ok", x, y: y(b.ok), width: barW, height: y(0) - y(b.ok), rx: 2 }));
      if (b.failed > 0) {
        group.append(svg("rect", { class: "bar-fail", x, y: y(b.ok + b.failed), width: barW, height: y(b.ok) - y(b.ok + b.failed), rx: 2 }));
      }
      root.append(group);
      if (i % 3 === 0 || i === 23) {
        root.append(svg("text", { class: "axis", x: M.left + i * slot + slot / 2, y: H - 8, "text-anchor": "middle" }, i === 23 ? "now" : `${pad2(hour.getHours())}:00`));
      }
      points.push([M.left + i * slot + slot / 2, yCost(b.cost)]);
    });
    if (costKnown) {
      root.append(svg("polyline", { class: "cost-line", points: points.map(([px, py]) => `${px.toFixed(1)},${py.toFixed(1)}`).join(" ") }));
      buckets.forEach((b, i) => {
        if (b.cost > 0) root.append(svg("circle", { class: "cost-dot", cx: points[i][0], cy: points[i][1], r: 2.6 }));
      });
    }
    $("chart").replaceChildren(root);
    // Without a cost per attempt in the history, the day's total from the status stands in.
    $("legend-cost").hidden = !costKnown;
    const today = state.status && state.status.cost_today ? state.status.cost_today.total_usd : undefined;
    setText($("chart-summary"), costKnown || !known(today) || today === 0 ? summary : `${summary} Cost today: ${fmtCost(today)}.`);
  };

  // ---- the dead-letter queue --------------------------------------------------------------

  /** Bumped by each retry or delete: a listing asked for before it is out of date. */
  let dlqEpoch = 0;

  const refreshDlq = coalesced(async () => {
    const epoch = dlqEpoch;
    const r = await api("api/dlq");
    if (!r.ok || epoch !== dlqEpoch) return;
    state.dlq = toList(r.body, "entries", "dlq");
    state.dlqKnown = true;
    renderDlq();
  }, 250);

  const renderDlq = () => {
    const items = state.dlq.map((entry) => {
      const name = String(entry.name ?? "");
      const entered = parseTime(entry.dlq_entry_timestamp);
      const meta = [];
      if (entry.agent) meta.push(String(entry.agent));
      if (known(entry.attempts)) meta.push(plural(entry.attempts, "attempt"));
      if (entry.signal) meta.push(`signal ${entry.signal}`);
      else if (known(entry.exit_code)) meta.push(`exit ${entry.exit_code}`);
      if (known(entry.total_cost_usd) && entry.total_cost_usd > 0) meta.push(fmtCost(entry.total_cost_usd));
      const retry = el("button", {
        type: "button",
        className: "primary small",
        text: "Retry",
        "aria-label": `Retry ${name}`,
        on: { click: () => dlqAction(name, "retry", retry) }
      });
      const purge = el("button", {
        type: "button",
        className: "danger small",
        text: "Delete",
        "aria-label": `Delete ${name}`,
        on: {
          click: () => {
            if (window.confirm(`Delete ${name} from the dead-letter queue for good?`)) void dlqAction(name, "purge", purge);
          }
        }
      });
      return el(
        "li",
        { className: "dlq-entry", data: { name } },
        el("span", { className: "dlq-name", text: name }),
        el(
          "span",
          { className: "dlq-meta" },
          meta.join(" · ") + (meta.length > 0 && entered !== undefined ? " · entered " : entered !== undefined ? "entered " : ""),
          entered === undefined ? null : liveTime("ago", entered)
        ),
        el("span", { className: "dlq-reason", text: entry.failure_reason ?? "(no failure record)" }),
        el("div", { className: "dlq-actions" }, purge, retry)
      );
    });
    $("dlq").replaceChildren(...items);
    $("dlq-empty").hidden = items.length > 0;
    setText($("dlq-note"), items.length === 0 ? "" : `${items.length} ${items.length === 1 ? "entry" : "entries"}`);
    renderStats();
  };

  const dlqAction = async (name, action, button) => {
    button.disabled = true;
    setText($("dlq-error"), "");
    const r = await post(`api/dlq/${encodeURIComponent(name)}/${action}`);
    dlqEpoch++;
    if (r.ok) {
      state.dlq = state.dlq.filter((e) => e.name !== name);
      renderDlq();
      void refreshStatus();
      void refreshQueue();
    } else {
      button.disabled = false;
      setText($("dlq-error"), `Could not ${action === "retry" ? "retry" : "delete"} ${name}: ${r.error}`);
    }
    void refreshDlq();
  };

  // ---- the log view -----------------------------------------------------------------------

  const logView = $("log-view");
  const LOG_LINES = 300;

  const atBottom = () => logView.scrollTop + logView.clientHeight >= logView.scrollHeight - 24;

  const showLogText = (text) => {
    const follow = atBottom();
    setText(logView, text);
    if (follow) logView.scrollTop = logView.scrollHeight;
  };

  const eventLine = (e) => {
    const t = parseTime(e.time ?? e.timestamp);
    return `${t === undefined ? "" : fmtClock(t) + "  "}${(e.event ?? e.level ?? "").toString().padEnd(8)} ${e.message ?? ""}`;
  };

  const renderEvents = () => {
    if (state.logAgent !== "") return;
    setText($("log-file"), "The daemon's events since this page opened");
    showLogText(state.events.length === 0 ? "Events appear here as they happen." : state.events.map(eventLine).join("\n"));
  };

  const refreshLog = coalesced(async () => {
    const agent = state.logAgent;
    if (agent === "") return renderEvents();
    const r = await api(`api/logs/${encodeURIComponent(agent)}?lines=${LOG_LINES}`);
    if (state.logAgent !== agent) return;
    if (!r.ok) {
      setText($("log-file"), "");
      showLogText(r.status === 404 ? `${agent} has no log yet.` : `Cannot read the log of ${agent}: ${r.error}`);
      return;
    }
    const body = r.body;
    let text;
    let file = "";
    if (typeof body === "string") text = body;
    else if (body && typeof body === "object") {
      file = body.file ?? body.log ?? body.path ?? "";
      text = Array.isArray(body.lines) ? body.lines.join("\n") : typeof body.text === "string" ? body.text : typeof body.content === "string" ? body.content : "";
    } else text = "";
    setText($("log-file"), file);
    showLogText(text === "" ? "(empty)" : text.replace(/\n$/, ""));
  }, 1000);

  const chooseLog = (agent, focus) => {
    state.logAgent = agent;
    const select = $("log-agent");
    if (![...select.options].some((o) => o.value === agent)) select.append(el("option", { value: agent, text: agent }));
    select.value = agent;
    logView.textContent = "";
    setText($("log-file"), "");
    void refreshLog();
    if (focus) {
      $("log-title").scrollIntoView({ behavior: "smooth", block: "start" });
      select.focus({ preventScroll: true });
    }
  };

  $("log-agent").addEventListener("change", (e) => chooseLog(e.target.value, false));

  // While a chosen agent runs, its log is read again every few seconds (output between events).
  setInterval(() => {
    const agent = state.logAgent;
    if (agent && !document.hidden && state.slots[agent] && state.slots[agent].status === "busy") void refreshLog();
  }, 3000);

  // ---- the form ---------------------------------------------------------------------------

  const AGENT_NAME = /^(?![.-])(?!.*\.\.)[A-Za-z0-9._-]{1,64}$/;
  const form = $("trigger-form");
  const fields = {
    to_agent: $("f-agent"),
    action: $("f-action"),
    ticket: $("f-ticket"),
    priority: $("f-priority"),
    message: $("f-message")
  };

  const fieldError = (name, text) => {
    const input = fields[name];
    const out = $(input.getAttribute("aria-describedby"));
    setText(out, text || "");
    if (text) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  };

  const clearErrors = () => {
    for (const name of Object.keys(fields)) fieldError(name, "");
    setText($("form-error"), "");
  };

  const validate = () => {
    const errors = {};
    const agent = fields.to_agent.value.trim();
    if (agent === "") errors.to_agent = "Enter the agent that runs the trigger.";
    else if (!AGENT_NAME.test(agent)) {
      errors.to_agent = "Use 1–64 letters, digits, '.', '_' or '-', not starting with '.' or '-' and without '..'.";
    }
    const action = fields.action.value.trim();
    if (action === "") errors.action = "Enter what the agent should do, e.g. implement_ticket.";
    else if (action.length > 200) errors.action = "Keep the action under 200 characters.";
    if (fields.ticket.value.trim().length > 200) errors.ticket = "Keep the ticket under 200 characters.";
    if (new Blob([fields.message.value]).size > 100 * 1024) errors.message = "The message is over 100 KiB.";
    return errors;
  };

  /** The field a server error names (`to_agent …`, `action: …`), if any. */
  const fieldOfError = (text) => {
    const m = /^(to_agent|action|message|ticket|priority|context)\b/.exec(text.replace(/^Invalid trigger: /, ""));
    if (!m) return undefined;
    return m[1] === "context" ? "ticket" : m[1];
  };

  form.addEventListener("input", (e) => {
    const name = Object.keys(fields).find((k) => fields[k] === e.target);
    if (name && fields[name].getAttribute("aria-invalid") === "true") fieldError(name, "");
  });

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearErrors();
    setText($("form-status"), "");
    const errors = validate();
    const names = Object.keys(errors);
    if (names.length > 0) {
      for (const name of names) fieldError(name, errors[name]);
      fields[names[0]].focus();
      return;
    }
    const body = {
      to_agent: fields.to_agent.value.trim(),
      from_agent: "dashboard",
      action: fields.action.value.trim(),
      priority: fields.priority.value
    };
    if (fields.message.value.trim() !== "") body.message = fields.message.value;
    if (fields.ticket.value.trim() !== "") body.ticket = fields.ticket.value.trim();
    const submit = $("f-submit");
    submit.disabled = true;
    const r = await post("api/triggers", body);
    submit.disabled = false;
    if (r.ok) {
      const created = r.body && typeof r.body === "object" ? r.body.trigger ?? r.body.name ?? r.body.file ?? r.body.path : undefined;
      const shown = typeof created === "string" ? created.split("/").pop() : "the trigger";
      setText($("form-status"), `Queued ${shown}.`);
      fields.message.value = "";
      fields.ticket.value = "";
      void refreshQueue();
      void refreshStatus();
    } else {
      const field = fieldOfError(r.error);
      if (field) {
        fieldError(field, r.error);
        fields[field].focus();
      } else setText($("form-error"), r.error);
    }
  });

  // ---- the event stream -------------------------------------------------------------------

  let source = null;
  let retryMs = 1000;
  let retryAt = 0;
  let retryTimer = null;
  const MAX_RETRY_MS = 30000;

  const parse = (e) => {
    try {
      return JSON.parse(e.data);
    } catch {
      return undefined;
    }
  };

  /** After a failed attempt, the trigger may be moving to the dead-letter queue: look now and once it has. */
  const dlqSoon = () => {
    void refreshDlq();
    setTimeout(() => void refreshDlq(), 700);
  };

  const connect = () => {
    clearTimeout(retryTimer);
    retryTimer = null;
    if (source) source.close();
    setConnection("connecting", "Connecting");
    const es = new EventSource("events");
    source = es;
    es.addEventListener("open", () => {
      if (source !== es) return;
      retryMs = 1000;
      setConnection("live", "Live");
      // Whatever happened while the stream was down.
      void refreshStatus();
      void refreshHistory();
      void refreshDlq();
      if (state.logAgent) void refreshLog();
    });
    es.addEventListener("slots", (e) => {
      const data = parse(e);
      if (data === undefined) return;
      applySlots(data);
    });
    es.addEventListener("queue", (e) => {
      const data = parse(e);
      if (data === undefined) return;
      applyQueue(data);
      void refreshStatus();
    });
    es.addEventListener("attempt", (e) => {
      const row = parse(e);
      if (row === undefined) return;
      addAttempt(row);
      if (row.outcome !== "success") dlqSoon();
      if (row.agent === state.logAgent) void refreshLog();
      void refreshStatus();
    });
    es.addEventListener("log", (e) => {
      const line = parse(e);
      if (line === undefined) return;
      state.events.push(line);
      if (state.events.length > MAX_EVENTS) state.events.splice(0, state.events.length - MAX_EVENTS);
      renderEvents();
      if (line.event === "DLQ") dlqSoon();
      if (line.agent && line.agent === state.logAgent) void refreshLog();
    });
    es.addEventListener("error", () => {
      if (source !== es) return;
      es.close();
      source = null;
      scheduleReconnect();
    });
  };

  const scheduleReconnect = () => {
    const delay = retryMs;
    retryMs = Math.min(MAX_RETRY_MS, retryMs * 2);
    retryAt = Date.now() + delay;
    showRetryCountdown();
    retryTimer = setTimeout(connect, delay);
    void refreshStatus();
  };

  const showRetryCountdown = () => {
    const s = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
    setConnection("disconnected", `Disconnected · retrying in ${s}s`);
  };

  $("reconnect").addEventListener("click", () => {
    retryMs = 1000;
    connect();
  });

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) return;
    if (!source) {
      retryMs = 1000;
      connect();
    } else if (state.logAgent) void refreshLog();
  });

  // ---- the clock --------------------------------------------------------------------------

  setInterval(() => {
    for (const node of document.querySelectorAll("[data-since]")) {
      setText(node, fmtDuration((Date.now() - Number(node.dataset.since)) / 1000));
    }
    for (const node of document.querySelectorAll("[data-ago]")) setText(node, fmtAgo(Number(node.dataset.ago)));
    if (!source && retryTimer) showRetryCountdown();
  }, 1000);

  // The uptime, cost and counts change without an event; the dead-letter queue has none of its own.
  setInterval(() => {
    if (document.hidden) return;
    void refreshStatus();
    void refreshDlq();
  }, 10000);

  // The chart's hours move on.
  setInterval(renderChart, 60000);

  // ---- start ------------------------------------------------------------------------------

  // The token has set the session cookie: keep it out of the address bar, history and bookmarks.
  if (/[?&]token=/.test(location.search)) history.replaceState(null, "", location.pathname);

  renderChart();
  renderEvents();
  void refreshStatus();
  void refreshQueue();
  void refreshHistory();
  void refreshDlq();
  void api("api/slots").then((r) => {
    if (r.ok && !state.slotsKnown) applySlots(r.body);
  });
  connect();
})();
