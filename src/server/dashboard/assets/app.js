// lode's built-in dashboard: reads /dashboard/state once, then follows /dashboard/events
// (server-sent events, one a second) and redraws. The leader-latency view is the leader's: on
// a follower's page it shows the leader's samples, which this member mirrors from the leader
// over the peer port and relays, so the page needs to reach this member only.
"use strict";

const KEEP = 300;                 // samples charted: five minutes at one a second
const state = {
  member: "", samples: [], leader: { id: "", samples: [] }, clusterRequests: 0,
  timeline: [], members: [], alarms: [], slowest: [],
};
let source = null;                // the EventSource followed
let charts = {};

function $(id) { return document.getElementById(id); }
function cell(text) { const td = document.createElement("td"); td.textContent = text; return td; }
function us(value) { return value === undefined ? "" : value >= 100 ? value.toFixed(0) : value.toFixed(1); }
function when(ms) { return new Date(ms).toLocaleTimeString(); }
function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + " " + units[i];
}
function fill(table, rows) {
  const body = $(table).tBodies[0];
  body.replaceChildren(...rows);
}
function row(values, cls) {
  const tr = document.createElement("tr");
  if (cls) tr.className = cls;
  values.forEach(v => tr.appendChild(cell(v)));
  return tr;
}

// A stage's name as people read it.
function stageName(stage) {
  const [kind, who] = stage.split(":");
  const names = {
    proposal_queueing: "proposal queueing",
    leader_log_sync: "leader log sync (fsync)",
    follower_log_sync: who ? "log sync (fsync) on follower " + who : "follower log sync (fsync)",
    commit_to_apply: "commit → apply",
    apply_to_response: "apply → response",
    proposal_total: "commit latency (total)",
    replication: "replication round trip to " + who,
    heartbeat: "heartbeat round trip to " + who,
  };
  return names[kind] || stage;
}

// Appends the samples newer than the last kept, keeping the newest KEEP.
function append(kept, samples) {
  for (const sample of samples || []) {
    const last = kept[kept.length - 1];
    if (!last || sample.seq > last.seq) kept.push(sample);
  }
  if (kept.length > KEEP) kept.splice(0, kept.length - KEEP);
}

function merge(event) {
  append(state.samples, event.samples);
  if (event.leader) {
    if (event.leader.id !== state.leader.id) state.leader = { id: event.leader.id, samples: [] };
    append(state.leader.samples, event.leader.samples);
  }
  if (event.cluster_requests !== undefined) state.clusterRequests = event.cluster_requests;
  if (event.timeline) state.timeline = event.timeline;
  if (event.members) state.members = event.members;
  if (event.alarms) state.alarms = event.alarms;
  if (event.slowest) state.slowest = event.slowest;
}

// uPlot wants columns: x values, then one array per series.
function plot(id, series, columns) {
  const key = id + "|" + series.map(s => s.label).join(",");
  const width = Math.max(420, Math.min(760, (document.body.clientWidth - 120) / 2));
  if (!charts[id] || charts[id].key !== key) {
    if (charts[id]) charts[id].plot.destroy();
    const palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"];
    const opts = {
      width, height: 260,
      scales: { x: { time: true } },
      series: [{}].concat(series.map((s, i) => ({ label: s.label, stroke: palette[i % palette.length], width: 1.5, spanGaps: false }))),
      axes: [{}, { size: 70 }],
    };
    charts[id] = { key, plot: new uPlot(opts, columns, $(id)) };
  } else {
    charts[id].plot.setData(columns);
  }
}

function stageValue(sample, stage, field) {
  const s = sample.stages.find(x => x.stage === stage);
  return s && s.count > 0 ? s[field] : null;
}

// The samples the leader-latency view shows: the leader's as relayed by this member when this
// member follows, else this member's own.
function latencySamples() {
  const own = state.samples[state.samples.length - 1];
  if (own && !own.is_leader && state.leader.id && state.leader.samples.length) {
    return { samples: state.leader.samples, from: state.leader.id };
  }
  return { samples: state.samples, from: "" };
}

function drawLatency() {
  const { samples, from } = latencySamples();
  $("latency-source").textContent = from
    ? "(the leader " + from + "'s, relayed by this member)" : "(this member)";
  const xs = samples.map(s => s.at_ms / 1000);
  plot("chart-total",
    [{ label: "p50" }, { label: "p99" }, { label: "p99.9" }],
    [xs].concat(["p50_us", "p99_us", "p999_us"].map(f => samples.map(s => stageValue(s, "proposal_total", f)))));
  const names = [];
  for (const s of samples) for (const st of s.stages)
    if (st.stage !== "proposal_total" && !names.includes(st.stage)) names.push(st.stage);
  plot("chart-stages", names.map(n => ({ label: stageName(n) })),
    [xs].concat(names.map(n => samples.map(s => stageValue(s, n, "p99_us")))));

  const last = samples[samples.length - 1];
  if (!last) return;
  // The stage with the largest p99 this second (the total aside): where a spike comes from.
  let hot = null;
  for (const st of last.stages) {
    if (st.stage === "proposal_total" || st.count === 0) continue;
    if (!hot || st.p99_us > hot.p99_us) hot = st;
  }
  fill("stages", last.stages.map(st => {
    const r = row([stageName(st.stage), st.count, us(st.p50_us), us(st.p99_us), us(st.p999_us), us(st.max_us)],
      hot && st.stage === hot.stage ? "hot" : "");
    r.dataset.stage = st.stage;
    return r;
  }));
  $("verdict").textContent = hot ? "Slowest stage now: " + stageName(hot.stage) + " (p99 " + us(hot.p99_us) + " µs)" : "No commits in the last second.";
  fill("followers", last.followers.map(f => row([
    f.id, f.lag_entries, f.active ? "yes" : "no",
    us(stageValue(last, "replication:" + f.id, "p99_us") ?? undefined),
    us(stageValue(last, "follower_log_sync:" + f.id, "p99_us") ?? undefined),
    us(stageValue(last, "heartbeat:" + f.id, "p99_us") ?? undefined),
  ], f.active ? "" : "down")));
}

function drawCluster() {
  fill("members", state.members.map(m => row([
    m.id, m.name, m.role, m.reachable ? "healthy" : "unreachable: " + m.error,
    m.reachable ? m.term : "", m.reachable ? m.applied : "", m.reachable ? m.lag_entries : "",
    m.reachable ? m.log_syncs : "", m.reachable ? us(m.log_sync_p99_us) : "",
    m.version, m.reachable ? bytes(m.db_size) : "",
  ], m.reachable ? "" : "down")));
  $("alarms").textContent = state.alarms.length
    ? "Alarms: " + state.alarms.map(([member, alarm]) => alarm + " on " + member).join(", ")
    : "No alarms.";
  $("alarms").className = state.alarms.length ? "alarm" : "";
  fill("timeline", state.timeline.slice().reverse().map(c => row([
    when(c.at_ms), c.from || "none", c.to || "none", c.reason, c.term,
    c.to ? c.leaderless_ms + " ms" : "",
  ])));
}

function drawWorkload() {
  const samples = state.samples;
  const last = samples[samples.length - 1];
  if (last) {
    const total = Object.values(last.requests).reduce((a, b) => a + b, 0);
    $("workload-figures").replaceChildren(...[
      ["requests/s", total.toFixed(0)], ["requests/s (cluster)", state.clusterRequests.toFixed(0)],
      ["keys", last.keys], ["revision", last.revision],
      ["compacted at", last.compact_revision > 0 ? last.compact_revision : "none"], ["watch streams", last.watch_streams],
      ["watchers", last.watchers],
      ["leases", last.leases], ["term", last.term], ["applied", last.applied],
    ].map(([label, value]) => {
      const div = document.createElement("div");
      const b = document.createElement("b");
      b.textContent = value;
      div.append(b, label);
      return div;
    }));
  }
  const xs = samples.map(s => s.at_ms / 1000);
  for (const [id, field] of [["chart-requests", "requests"], ["chart-errors", "errors"]]) {
    const keys = [];
    for (const s of samples) for (const k of Object.keys(s[field])) if (!keys.includes(k)) keys.push(k);
    keys.sort();
    plot(id, keys.map(k => ({ label: k })), [xs].concat(keys.map(k => samples.map(s => s[field][k] ?? 0))));
  }
  fill("slowest", state.slowest.map(r => row([
    when(r.at_ms), us(r.total_us), r.stages.map(([name, v]) => name + " " + us(v)).join(", "),
  ])));
}

function draw() {
  const last = state.samples[state.samples.length - 1];
  const leader = last && last.leader ? last.leader : "none";
  $("summary").textContent = "member " + state.member + " · leader " + leader +
    (last ? " · term " + last.term + " · revision " + last.revision : "");
  drawLatency();
  drawCluster();
  drawWorkload();
}

// Follows this member's feed from sample `from` on; when the stream breaks (the member
// restarted, or the network), starts over from all it keeps a second later.
function follow(from) {
  if (source) source.close();
  source = new EventSource("/dashboard/events?from=" + from);
  source.onopen = () => { $("live").textContent = "live"; $("live").className = "badge up"; };
  source.onmessage = e => { merge(JSON.parse(e.data)); draw(); };
  source.onerror = () => {
    $("live").textContent = "reconnecting"; $("live").className = "badge down";
    source.close();
    setTimeout(() => {
      state.samples = []; state.leader = { id: "", samples: [] };
      follow(0);
    }, 1000);
  };
}

fetch("/dashboard/state").then(r => r.json()).then(initial => {
  state.member = initial.member;
  merge(initial);
  draw();
  follow(state.samples.length ? state.samples[state.samples.length - 1].seq + 1 : 0);
}).catch(() => { $("summary").textContent = "cannot read /dashboard/state"; follow(0); });
