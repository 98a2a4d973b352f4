// meshsim's dashboard: a running process's services and replicas, live from its /events stream, or a
// finished run's report from the JSON embedded in the page. Plain DOM and SVG, no library: the page
// ships inside the package and must work where there is no internet.
//
// Every text from the data goes through textContent or an attribute, never markup: names come from
// scenario files and configs.
"use strict";

(() => {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const PALETTE = ["#2563eb", "#d97706", "#059669", "#dc2626", "#7c3aed", "#0891b2", "#db2777", "#65a30d", "#9333ea", "#ea580c"];
  const GOOD = new Set(["healthy"]);
  const TAKEN_OUT = new Set(["ejected", "out of rotation"]);
  const LIVE_SPAN_MIN = 60; // seconds on a live chart's axis at least, so a fresh page does not stretch 5 s
  const LIVE_SPAN_MAX = 300;

  // ---- DOM helpers --------------------------------------------------------------------------------

  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    setAttributes(node, attributes);
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function svg(tag, attributes, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttributes(node, attributes);
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function setAttributes(node, attributes) {
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = String(value);
      else node.setAttribute(name, String(value));
    }
  }

  function table(headers, rows, attributes) {
    return el(
      "table",
      attributes,
      el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, ...rows),
    );
  }

  function badge(text, kind) {
    return el("span", { class: `badge badge-${kind}`, text });
  }

  function stateKind(state) {
    if (GOOD.has(state)) return "good";
    if (TAKEN_OUT.has(state)) return "warn";
    return "bad";
  }

  // ---- numbers ------------------------------------------------------------------------------------

  function fmt(value, digits = 3) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    if (value === 0) return "0";
    const magnitude = Math.abs(value);
    if (magnitude >= 1000) return Math.round(value).toLocaleString("en");
    return String(Number(value.toPrecision(digits)));
  }

  function percent(share, digits = 3) {
    return share === null || share === undefined ? "–" : `${fmt(share * 100, digits)}%`;
  }

  function ms(value) {
    return value === null || value === undefined ? "–" : `${fmt(value)} ms`;
  }

  function clock(seconds) {
    const sign = seconds < 0 ? "-" : "";
    const whole = Math.round(Math.abs(seconds));
    if (whole < 60) return `${sign}${whole}s`;
    const minutes = Math.floor(whole / 60);
    return `${sign}${minutes}:${String(whole % 60).padStart(2, "0")}`;
  }

  function niceCeiling(value) {
    if (!(value > 0)) return 1;
    const power = 10 ** Math.floor(Math.log10(value));
    for (const step of [1, 2, 2.5, 5, 10]) if (value <= step * power) return step * power;
    return 10 * power;
  }

  function ticks(x0, x1, count) {
    const span = x1 - x0;
    if (!(span > 0)) return [x0];
    const raw = span / count;
    const power = 10 ** Math.floor(Math.log10(raw));
    let step = power;
    for (const factor of [1, 2, 5, 10]) {
      step = factor * power;
      if (step >= raw) break;
    }
    if (span >= 120) step = Math.max(30, Math.ceil(raw / 30) * 30); // minutes read best in halves
    const first = Math.ceil(x0 / step) * step;
    const found = [];
    for (let x = first; x <= x1 + 1e-9; x += step) found.push(Math.abs(x) < 1e-9 ? 0 : x);
    return found;
  }

  // ---- the chart ----------------------------------------------------------------------------------

  // series: [{name, points: [[x, y|null], ...]}]; a null y breaks the line.
  // options: {x0, x1, xFormat, yFormat, yMin, yMax, spans: [{from, to, label}], marks: [{at, label, kind}]}
  function chart(title, series, options) {
    const width = 560;
    const height = 190;
    const left = 52;
    const right = 12;
    const top = 14;
    const bottom = 24;
    const x0 = options.x0;
    const x1 = options.x1 > x0 ? options.x1 : x0 + 1;
    let highest = 0;
    for (const line of series) for (const [, y] of line.points) if (y !== null && y > highest) highest = y;
    const yMin = options.yMin ?? 0;
    const yMax = options.yMax ?? niceCeiling(highest * 1.05);
    const sx = (x) => left + ((x - x0) / (x1 - x0)) * (width - left - right);
    const sy = (y) => top + (1 - (Math.min(Math.max(y, yMin), yMax) - yMin) / (yMax - yMin)) * (height - top - bottom);
    const yFormat = options.yFormat || fmt;
    const xFormat = options.xFormat || clock;

    const plot = svg("svg", {
      viewBox: `0 0 ${width} ${height}`,
      class: "chart-svg",
      role: "img",
      "aria-label": title,
    });
    const spans = svg("g", { class: "spans" });
    for (const span of options.spans || []) {
      const from = Math.max(x0, span.from);
      const to = Math.min(x1, span.to ?? x1);
      if (to <= from) continue;
      spans.append(
        svg(
          "rect",
          { class: "span", x: sx(from), y: top, width: Math.max(1, sx(to) - sx(from)), height: height - top - bottom },
          svg("title", { text: span.label }),
        ),
        svg("text", { class: "span-label", x: sx(from) + 3, y: top + 10, text: span.label }),
      );
    }
    plot.append(spans);
    const grid = svg("g", { class: "grid" });
    for (let i = 0; i <= 4; i += 1) {
      const y = yMin + ((yMax - yMin) * i) / 4;
      grid.append(
        svg("line", { x1: left, x2: width - right, y1: sy(y), y2: sy(y) }),
        svg("text", { class: "y-label", x: left - 5, y: sy(y) + 3, text: yFormat(y) }),
      );
    }
    for (const x of ticks(x0, x1, 6)) {
      grid.append(
        svg("line", { class: "x-tick", x1: sx(x), x2: sx(x), y1: height - bottom, y2: height - bottom + 4 }),
        svg("text", { class: "x-label", x: sx(x), y: height - 6, text: xFormat(x) }),
      );
    }
    plot.append(grid);
    const marks = svg("g", { class: "marks" });
    for (const mark of options.marks || []) {
      if (mark.at < x0 || mark.at > x1) continue;
      marks.append(
        svg(
          "line",
          { class: `mark mark-${mark.kind}`, x1: sx(mark.at), x2: sx(mark.at), y1: top, y2: height - bottom },
          svg("title", { text: mark.label }),
        ),
      );
    }
    plot.append(marks);
    series.forEach((line, index) => {
      const colour = PALETTE[index % PALETTE.length];
      let d = "";
      let drawing = false;
      for (const [x, y] of line.points) {
        if (y === null || y === undefined || x < x0 || x > x1) {
          drawing = false;
          continue;
        }
        d += `${drawing ? "L" : "M"}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`;
        drawing = true;
      }
      if (d) plot.append(svg("path", { class: "line", d, stroke: colour }, svg("title", { text: line.name })));
    });
    const legend = el(
      "div",
      { class: "legend" },
      ...series.map((line, index) =>
        el("span", { class: "legend-item" }, legendSwatch(PALETTE[index % PALETTE.length]), line.name),
      ),
    );
    return el(
      "figure",
      { class: "chart", "data-chart": options.id || title },
      el("figcaption", { text: title }),
      plot,
      legend,
    );
  }

  function legendSwatch(colour) {
    return svg("svg", { class: "swatch", viewBox: "0 0 12 12", width: 12, height: 12 }, svg("rect", { width: 12, height: 12, fill: colour }));
  }

  // ---- live mode ----------------------------------------------------------------------------------

  function live() {
    const main = document.getElementById("main");
    const status = document.getElementById("status");
    const state = { history: [], keep: LIVE_SPAN_MAX, window: 5 };
    const token = new URLSearchParams(window.location.search).get("token");
    // /dashboard and /dashboard/ both reach the page: the stream is beside it, at the root.
    const base = window.location.pathname.replace(/\/dashboard\/?$/, "/");
    const url = base + "events" + (token ? `?token=${encodeURIComponent(token)}` : "");
    const source = new EventSource(url);

    function setStatus(text, kind) {
      status.replaceChildren(badge(text, kind));
    }

    source.addEventListener("hello", (event) => {
      const hello = JSON.parse(event.data);
      state.keep = Math.max(1, Math.round(LIVE_SPAN_MAX / hello.interval_s));
      state.window = hello.window_s;
      state.history = hello.history;
      setStatus("live", "good");
      render();
    });
    source.addEventListener("sample", (event) => {
      state.history.push(JSON.parse(event.data));
      if (state.history.length > state.keep) state.history.splice(0, state.history.length - state.keep);
      render();
    });
    source.addEventListener("error", () => setStatus("reconnecting…", "warn"));

    function render() {
      const history = state.history;
      const latest = history[history.length - 1];
      if (!latest) {
        main.replaceChildren(el("p", { class: "muted", text: "Waiting for the first sample…" }));
        return;
      }
      document.body.dataset.seq = String(latest.seq);
      const parts = [liveSummary(latest, state.window)];
      for (const service of latest.services) parts.push(liveService(service, history, latest));
      if (latest.services.length === 0) parts.push(el("p", { class: "muted", text: "This process shows no services." }));
      main.replaceChildren(...parts);
    }
  }

  function liveSummary(latest, window) {
    const faults = latest.faults || [];
    const rows = faults.map((fault) =>
      el(
        "tr",
        { "data-fault": fault.id },
        el("td", { text: fault.id }),
        el("td", { text: fault.action }),
        el("td", { text: fault.target }),
        el("td", { text: fault.effect }),
        el("td", { class: "num", text: clock(fault.remaining_s) }),
      ),
    );
    return el(
      "section",
      { class: "summary" },
      el(
        "p",
        { class: "facts" },
        fact("ready", latest.ready ? "yes" : "no"),
        fact("updated", new Date().toLocaleTimeString("en-GB")),
        fact("rates over", `${window} s`),
        fact("active faults", faults.length),
      ),
      faults.length ? table(["fault", "action", "target", "effect", "left"], rows, { class: "faults" }) : null,
    );
  }

  function fact(name, value) {
    return el("span", { class: "fact" }, el("span", { class: "fact-name", text: name }), el("span", { class: "fact-value", text: value }));
  }

  function liveService(service, history, latest) {
    const key = service.name;
    const points = [];
    for (const sample of history) {
      const found = sample.services.find((s) => s.name === key);
      points.push([sample.t - latest.t, found]);
    }
    const span = Math.min(LIVE_SPAN_MAX, Math.max(LIVE_SPAN_MIN, latest.t - history[0].t));
    const axis = { x0: -span, x1: 0, spans: faultSpans(history, latest), marks: stateMarks(history, latest, key) };
    const pick = (f) => points.map(([x, s]) => [x, s ? f(s) : null]);
    const rateLines = [{ name: "service", points: pick((s) => s.rps) }];
    if (service.replicas.some((r) => r.rps !== null)) {
      for (const replica of service.replicas) {
        rateLines.push({
          name: replica.name,
          points: pick((s) => {
            const r = s.replicas.find((each) => each.address === replica.address);
            return r ? r.rps : null;
          }),
        });
      }
    }
    const title = el("h2", {}, service.name);
    const about = [];
    if (service.service !== service.name) about.push(service.service);
    about.push(service.seen_by === "proxy" ? "as the proxy sees it" : "as its replicas count it");
    if (service.policy) about.push(`policy ${service.policy}`);
    return el(
      "section",
      { class: "service", "data-service": service.name },
      el("header", { class: "service-head" }, title, el("span", { class: "muted", text: about.join(" · ") }), service.panic ? badge("panic", "bad") : null),
      el(
        "p",
        { class: "facts" },
        fact("requests/s", fmt(service.rps)),
        fact("errors", percent(service.error_rate)),
        fact("p50", ms(service.p50_ms)),
        fact("p99", ms(service.p99_ms)),
      ),
      replicaTable(service, latest.faults || []),
      el(
        "div",
        { class: "charts" },
        chart("requests per second", rateLines, { ...axis, id: "rps" }),
        chart("errors (share of calls)", [{ name: "errors", points: pick((s) => (s.error_rate === null ? null : s.error_rate * 100)) }], {
          ...axis,
          id: "errors",
          yFormat: (y) => `${fmt(y)}%`,
        }),
        chart(
          "latency (ms)",
          [
            { name: "p50", points: pick((s) => s.p50_ms) },
            { name: "p99", points: pick((s) => s.p99_ms) },
          ],
          { ...axis, id: "latency" },
        ),
      ),
    );
  }

  // Each column is shown where the process behind the page knows it: the proxy its balancer's view
  // (breaker, calls in flight, weight) and its attempts on each replica, the replicas their own calls.
  function replicaTable(service, faults) {
    const byProxy = service.seen_by === "proxy";
    const faultsOn = (r) => r.faults ?? faults.filter((f) => f.target === r.address).map((f) => f.id);
    const columns = [
      ["state", (r) => el("td", {}, badge(r.state, stateKind(r.state)), r.connected === false ? el("span", { class: "muted", text: " not connected" }) : null)],
      ["breaker", (r) => el("td", { text: r.breaker ? r.breaker.toLowerCase().replace("_", " ") : "–" }), byProxy],
      ["in flight", (r) => el("td", { class: "num", text: fmt(r.in_flight) }), byProxy],
      ["weight", (r) => el("td", { class: "num", text: fmt(r.weight) }), byProxy],
      [byProxy ? "attempts/s" : "requests/s", (r) => el("td", { class: "num", text: fmt(r.rps) })],
      ["errors", (r) => el("td", { class: "num", text: percent(r.error_rate) })],
      ["share", (r) => el("td", { class: "share" }, shareBar(r.share))],
      ["p50", (r) => el("td", { class: "num", text: ms(r.p50_ms) })],
      ["p99", (r) => el("td", { class: "num", text: ms(r.p99_ms) })],
      ["faults", (r) => el("td", { text: faultsOn(r).join(", ") || "–" })],
    ].filter(([, , shown]) => shown !== false);
    const rows = service.replicas.map((r) =>
      el(
        "tr",
        { "data-address": r.address, "data-name": r.name, "data-state": r.state },
        el("th", { scope: "row" }, r.name, r.name !== r.address ? el("span", { class: "address", text: r.address }) : null),
        ...columns.map(([, cell]) => cell(r)),
      ),
    );
    const note = byProxy
      ? el("p", { class: "note", text: "Per replica the proxy counts attempts: a retried call is an attempt on each replica it tried." })
      : null;
    return el("div", { class: "table-wrap" }, table(["replica", ...columns.map(([name]) => name)], rows, { class: "replicas" }), note);
  }

  function shareBar(share) {
    if (share === null || share === undefined) return "–";
    const bar = el("span", { class: "bar" }, el("span", { class: "bar-fill" }));
    bar.firstChild.style.width = `${Math.round(share * 100)}%`;
    return el("span", { class: "bar-wrap" }, bar, el("span", { class: "num", text: percent(share, 2) }));
  }

  function faultSpans(history, latest) {
    const seen = new Map();
    for (const sample of history) {
      for (const fault of sample.faults || []) {
        const label = `${fault.id} ${fault.action} ${fault.target}`;
        const known = seen.get(fault.id);
        if (known) known.to = sample.t - latest.t;
        else seen.set(fault.id, { from: sample.t - latest.t, to: sample.t - latest.t, label });
      }
    }
    return [...seen.values()].map((span) => ({ ...span, to: span.to === 0 ? null : span.to }));
  }

  function stateMarks(history, latest, serviceName) {
    const marks = [];
    const last = new Map();
    for (const sample of history) {
      const service = sample.services.find((s) => s.name === serviceName);
      if (!service) continue;
      for (const replica of service.replicas) {
        const before = last.get(replica.address);
        if (before !== undefined && before !== replica.state) {
          marks.push({ at: sample.t - latest.t, label: `${replica.name}: ${replica.state}`, kind: stateKind(replica.state) });
        }
        last.set(replica.address, replica.state);
      }
    }
    return marks;
  }

  // ---- report mode --------------------------------------------------------------------------------

  function report() {
    const data = JSON.parse(document.getElementById("meshsim-data").textContent);
    const run = data.report;
    const load = data.replica_load;
    const main = document.getElementById("main");
    const status = document.getElementById("status");
    status.replaceChildren(badge(run.passed ? "PASSED" : "FAILED", run.passed ? "good" : "bad"));
    const width = run.timeline.bucket_s;
    const buckets = run.timeline.buckets;
    const middle = (b) => b.start_s + width / 2;
    const axis = {
      x0: 0,
      x1: run.duration_s,
      spans: run.faults.map((f) => ({ from: f.applied_at_s, to: f.cleared_at_s, label: `fault ${f.index}: ${f.action} ${f.target}` })),
      marks: reportMarks(run),
    };
    const perSecond = (count) => count / width;
    const successPoints = buckets.map((b) => [middle(b), b.requests ? (100 * b.ok) / b.requests : null]);
    const loadLines = load
      ? Object.entries(load).map(([name, counts]) => ({ name, points: counts.map((c, i) => [middle(buckets[i]), perSecond(c)]) }))
      : [];
    main.replaceChildren(
      reportSummary(run),
      el("h2", { text: "Assertions" }),
      assertionTable(run),
      el("h2", { text: "Over time" }),
      el(
        "div",
        { class: "charts" },
        chart(
          "latency (ms)",
          [
            { name: "p50", points: buckets.map((b) => [middle(b), b.p50_ms]) },
            { name: "p99", points: buckets.map((b) => [middle(b), b.p99_ms]) },
          ],
          { ...axis, id: "latency" },
        ),
        load
          ? chart("calls each replica took per second (attempts)", loadLines, { ...axis, id: "replica-load" })
          : el("p", { class: "note", text: "This report has no per-replica timeline." }),
        chart(
          "success rate",
          [{ name: "OK / calls", points: successPoints }],
          { ...axis, id: "success", yMin: successFloor(successPoints), yMax: 100, yFormat: (y) => `${fmt(y)}%` },
        ),
      ),
      el("p", { class: "note", text: "Shaded: faults. Lines: a replica marked unhealthy (red), healthy again (green), ejected (orange)." }),
      el("h2", { text: "Replicas" }),
      endpointTable(run),
      el("h2", { text: "What happened" }),
      eventTable(run),
    );
  }

  // A success rate's axis starts at the highest of these below its lowest point, so a dip of a few
  // calls in a thousand shows, and a collapse still fits.
  function successFloor(points) {
    const lowest = Math.min(100, ...points.filter(([, y]) => y !== null).map(([, y]) => y));
    return [99, 98, 95, 90, 80, 50, 0].find((floor) => floor < lowest) ?? 0;
  }

  function reportSummary(run) {
    const totals = run.totals;
    const success = totals.requests ? totals.ok / totals.requests : null;
    return el(
      "section",
      { class: "summary" },
      el(
        "p",
        { class: "facts" },
        fact("scenario", run.scenario),
        fact("file", run.path),
        fact("seed", run.seed),
        fact("preset", run.preset),
        fact("mode", run.interrupted ? `${run.mode}, interrupted` : run.mode),
        fact("duration", `${fmt(run.duration_s)} s`),
      ),
      el(
        "p",
        { class: "facts" },
        fact("calls", fmt(totals.requests)),
        fact("success", percent(success, 4)),
        fact("p50", ms(run.latency_ms.p50)),
        fact("p99", ms(run.latency_ms.p99)),
        fact("retries", fmt(totals.retries)),
        fact("hedges", fmt(totals.hedges)),
      ),
    );
  }

  function assertionTable(run) {
    if (!run.assertions.length) return el("p", { class: "muted", text: "The scenario asserts nothing." });
    const rows = run.assertions.map((a) =>
      el(
        "tr",
        { "data-passed": a.passed ? "yes" : "no" },
        el("td", {}, badge(a.passed ? "pass" : "FAIL", a.passed ? "good" : "bad")),
        el("th", { scope: "row", text: a.name }),
        el("td", { text: a.metric }),
        el("td", { text: a.scope }),
        el("td", { text: a.window_s ? `${fmt(a.window_s[0])}–${fmt(a.window_s[1])} s` : "whole run" }),
        el("td", { class: "num", text: a.observed === null ? "no calls" : fmt(a.observed, 6) }),
        el("td", { class: "num", text: a.expected }),
      ),
    );
    return table(["", "assertion", "metric", "scope", "window", "observed", "expected"], rows, { class: "assertions" });
  }

  function endpointTable(run) {
    const attempts = run.endpoints.reduce((sum, e) => sum + e.attempts, 0);
    const rows = run.endpoints.map((e) => {
      const ok = e.by_status.OK || 0;
      return el(
        "tr",
        { "data-name": e.name },
        el("th", { scope: "row", text: e.name }),
        el("td", { text: e.service }),
        el("td", { class: "num", text: fmt(e.requests) }),
        el("td", { class: "share" }, shareBar(attempts ? e.attempts / attempts : null)),
        el("td", { class: "num", text: percent(e.requests ? ok / e.requests : null, 4) }),
        el("td", { class: "num", text: ms(e.latency_ms.p50) }),
        el("td", { class: "num", text: ms(e.latency_ms.p99) }),
        el("td", { class: "num", text: fmt(e.retries) }),
        el("td", { class: "num", text: fmt(e.hedges) }),
      );
    });
    return table(["replica", "service", "attempts", "share", "OK", "p50", "p99", "retries", "hedges"], rows, { class: "replicas" });
  }

  function healthChanges(run) {
    // The first "healthy" of each client and replica is the check starting, not a change.
    const changes = [];
    for (const endpoint of run.endpoints) {
      const seen = new Set();
      for (const t of endpoint.health_transitions) {
        const first = !seen.has(t.client);
        seen.add(t.client);
        if (first && t.healthy) continue;
        changes.push({ at: t.at_s, endpoint: endpoint.name, client: t.client, healthy: t.healthy, probe: t.last_probe });
      }
    }
    return changes;
  }

  function reportMarks(run) {
    const marks = healthChanges(run).map((c) => ({
      at: c.at,
      kind: c.healthy ? "good" : "bad",
      label: `${clock(c.at)} ${c.endpoint} ${c.healthy ? "healthy" : "unhealthy"} (${c.client})`,
    }));
    for (const j of run.ejections) marks.push({ at: j.at_s, kind: "warn", label: `${clock(j.at_s)} ${j.endpoint} ejected (${j.detector})` });
    return marks;
  }

  function eventTable(run) {
    const events = [];
    for (const f of run.faults) {
      const what = `fault ${f.index}: ${f.action} on ${f.target}${f.detail ? ` (${f.detail})` : ""}`;
      events.push({ at: f.applied_at_s, kind: "warn", text: what });
      if (f.cleared_at_s !== null) events.push({ at: f.cleared_at_s, kind: "good", text: `fault ${f.index} ended` });
    }
    for (const c of healthChanges(run)) {
      events.push({ at: c.at, kind: c.healthy ? "good" : "bad", text: `${c.endpoint} ${c.healthy ? "healthy again" : "unhealthy"} for ${c.client} (last probe ${c.probe})` });
    }
    for (const j of run.ejections) {
      events.push({ at: j.at_s, kind: "warn", text: `${j.endpoint} ejected by ${j.client} (${j.detector}) for ${fmt(j.duration_s)} s` });
    }
    for (const b of run.breaker_transitions) {
      events.push({ at: b.at_s, kind: b.state === "CLOSED" ? "good" : "warn", text: `${b.client}'s breaker on ${b.target}: ${b.state}` });
    }
    for (const p of run.panic_periods) {
      events.push({ at: p.start_s, kind: "bad", text: `${p.client} panics on ${p.service}` });
      if (p.end_s !== null) events.push({ at: p.end_s, kind: "good", text: `${p.client} out of panic on ${p.service}` });
    }
    if (!events.length) return el("p", { class: "muted", text: "No faults and no health changes." });
    // A stable sort: ties keep the order above (faults, then health, ...), as the report lists them.
    events.sort((a, b) => a.at - b.at);
    const rows = events.map((e) =>
      el("tr", { "data-kind": e.kind }, el("td", { class: "num", text: `${fmt(e.at, 4)} s` }), el("td", {}, badge("●", e.kind), " ", e.text)),
    );
    return table(["at", "what"], rows, { class: "events" });
  }

  if (document.body.dataset.mode === "live") live();
  else report();
})();
