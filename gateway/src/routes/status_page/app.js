// The gateway's status page (GET /status). Every 2 s it reads /admin/status (pools,
// instances, breakers), /admin/signals (running totals of requests, 5xx answers, fallback
// answers and the latency histogram) and /admin/history (breaker transitions and health
// changes), and renders them. Rates and percentiles are computed here, from the difference
// between two readings of the totals: since the gateway started at the first poll, then
// between the readings of the last 30 s (2 s after the first, growing to 30 s). A failed
// poll keeps the last data on screen, marked stale. Text is set as text (never parsed as
// HTML); no inline script or style.
'use strict';

const POLL_MS = 2000;
const POLL_TIMEOUT_MS = 4000;
const WINDOW_S = 30;
const TRANSITIONS_SHOWN = 15;

// ---- Computations (no DOM) ----

// The q-quantile (0 to 1) in seconds of a histogram: `bounds` ascending upper bounds,
// `counts` cumulative per bound, `total` every sample (the +Inf bucket). Linear inside a
// bucket, as Prometheus' histogram_quantile; the highest finite bound when the rank falls
// in +Inf; null without samples.
function quantile(q, bounds, counts, total) {
  if (!(total > 0) || bounds.length === 0) return null;
  const rank = q * total;
  let below = 0;
  for (let i = 0; i < bounds.length; i++) {
    if (counts[i] >= rank) {
      const lower = i === 0 ? 0 : bounds[i - 1];
      const inside = counts[i] - below;
      return inside > 0 ? lower + ((bounds[i] - lower) * (rank - below)) / inside : lower;
    }
    below = counts[i];
  }
  return bounds[bounds.length - 1];
}

// A reading of the gateway at its start: every total 0, at uptime 0.
function origin(reading) {
  return {
    uptime_s: 0,
    requests: 0,
    errors: 0,
    fallbacks: 0,
    latency: { bounds_s: reading.latency.bounds_s, counts: reading.latency.counts.map(() => 0), total: 0 },
    origin: true,
  };
}

// The readings to keep once `reading` arrives (oldest first). The first one (or the first
// after a restart) is compared with the gateway's start; from the second on, readings are
// compared with each other: the newest one at least WINDOW_S old is kept, and every one
// after it.
function keep(kept, reading) {
  const last = kept[kept.length - 1];
  const restarted = !last || reading.uptime_s < last.uptime_s || reading.requests < last.requests;
  const list = restarted ? [origin(reading), reading] : kept.concat([reading]);
  if (list.length > 2 && list[0].origin) list.shift();
  while (list.length > 2 && list[1].uptime_s <= reading.uptime_s - WINDOW_S) list.shift();
  return list;
}

// Rates and percentiles between the oldest and the newest of `kept`, per second of the
// gateway's own clock (its uptime).
function summarize(kept) {
  const older = kept[0];
  const newer = kept[kept.length - 1];
  const seconds = newer.uptime_s - older.uptime_s;
  const requests = newer.requests - older.requests;
  const bounds = newer.latency.bounds_s;
  const counts = newer.latency.counts.map((c, i) => c - (older.latency.counts[i] || 0));
  const timed = newer.latency.total - older.latency.total;
  const share = (n) => (requests > 0 ? n / requests : null);
  return {
    sinceStart: Boolean(older.origin),
    seconds,
    requests,
    rate: seconds > 0 ? requests / seconds : null,
    errorRate: share(newer.errors - older.errors),
    fallbackRate: share(newer.fallbacks - older.fallbacks),
    p50: quantile(0.5, bounds, counts, timed),
    p95: quantile(0.95, bounds, counts, timed),
    p99: quantile(0.99, bounds, counts, timed),
    inFlight: newer.in_flight,
  };
}

// ---- Formatting ----

function formatRate(perSecond) {
  if (perSecond === null) return '–';
  return (perSecond < 10 ? perSecond.toFixed(2) : perSecond.toFixed(1)) + '/s';
}

function formatShare(share) {
  return share === null ? '–' : (share * 100).toFixed(1) + '%';
}

function formatSeconds(seconds) {
  if (seconds === null) return '–';
  const ms = seconds * 1000;
  if (ms < 10) return ms.toFixed(1) + ' ms';
  if (ms < 1000) return Math.round(ms) + ' ms';
  return seconds.toFixed(2) + ' s';
}

function clock(date) {
  return [date.getHours(), date.getMinutes(), date.getSeconds()]
    .map((n) => String(n).padStart(2, '0'))
    .join(':');
}

// `llm-service` is the pool breaker; instance and endpoint breakers keep their names.
function breakerName(name) {
  return name === 'llm-service' ? 'pool breaker' : name;
}

function words(kind) {
  return kind ? String(kind).replace(/_/g, ' ') : '';
}

// ---- DOM ----

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

// A row of one cell across `columns` columns.
function noteRow(text, columns) {
  const row = el('tr');
  const cell = el('td', text, 'note');
  cell.colSpan = columns;
  row.append(cell);
  return row;
}

function stateClass(state) {
  return 'state state-' + String(state).toLowerCase();
}

function setOutput(id, value, text) {
  const node = document.getElementById(id);
  node.textContent = text;
  node.dataset.value = value === null || value === undefined ? '' : String(value);
}

function renderHeader(status) {
  const overall = document.getElementById('overall');
  overall.textContent = status.overall_status + (status.ready ? '' : ' · not ready');
  overall.className = 'badge health-' + status.overall_status;
  const breaker = status.circuit_breaker;
  const pool = document.getElementById('pool-breaker');
  const retry = breaker.retry_after_ms;
  pool.textContent = breaker.state + (retry ? ' · probes in ' + Math.ceil(retry / 1000) + ' s' : '');
  pool.className = 'badge ' + stateClass(breaker.state);
  pool.dataset.state = breaker.state;
}

function renderSignals(summary) {
  setOutput('rate', summary.rate, formatRate(summary.rate));
  setOutput('error-rate', summary.errorRate, formatShare(summary.errorRate));
  setOutput('fallback-rate', summary.fallbackRate, formatShare(summary.fallbackRate));
  for (const q of ['p50', 'p95', 'p99']) setOutput(q, summary[q], formatSeconds(summary[q]));
  setOutput('in-flight', summary.inFlight, String(summary.inFlight));
  const span = Math.round(summary.seconds);
  const requests = summary.requests + (summary.requests === 1 ? ' request' : ' requests');
  const caption = document.getElementById('window');
  caption.textContent = summary.sinceStart
    ? 'Since the gateway started, ' + span + ' s ago: ' + requests + '.'
    : 'Over the last ' + span + ' s: ' + requests + '.';
  caption.dataset.span = summary.sinceStart ? 'start' : 'window';
}

function instanceRow(instance, breaker) {
  const health = instance.healthy ? 'healthy' : 'unhealthy';
  const row = el('tr');
  row.dataset.instance = instance.id;
  row.append(
    el('td', instance.id, 'id'),
    el('td', instance.tier),
    el('td', health, 'health-' + health),
    el('td', instance.circuit_state, stateClass(instance.circuit_state)),
    el('td', breaker ? breaker.consecutive_failures : '–', 'num'),
    el('td', instance.model || '–'),
    el('td', instance.url, 'url'),
  );
  return row;
}

function poolTable(title, group) {
  const table = el('table', null, 'list pool');
  table.dataset.pool = title;
  table.append(el('caption', title));
  const head = el('tr');
  for (const name of ['instance', 'tier', 'health', 'breaker', 'failures in a row', 'model', 'url']) {
    head.append(el('th', name));
  }
  table.append(el('thead'));
  table.tHead.append(head);
  const body = el('tbody');
  for (const instance of group.instances) {
    body.append(instanceRow(instance, group.breakers[instance.id]));
  }
  if (group.instances.length === 0) body.append(noteRow('no instance', 7));
  table.append(body);
  return table;
}

function renderPools(status) {
  const tables = Object.entries(status.pools).map(([name, pool]) => poolTable(name, pool));
  for (const endpoint of status.endpoints) tables.push(poolTable('endpoint ' + endpoint.id, endpoint));
  const pools = document.getElementById('pools');
  if (tables.length === 0) tables.push(el('p', 'No pool has any instance.', 'note'));
  pools.replaceChildren(...tables);
}

// The transitions table's rows (oldest first, as both sources give them) from the
// history's entries: breaker transitions and health changes.
function historyRows(entries) {
  return entries.map((e) => {
    if (e.kind === 'breaker') {
      const counts = e.failure_count ? ' (' + e.failure_count + ' failures)' : '';
      return {
        at: e.at_ms,
        subject: breakerName(e.service),
        service: e.service,
        from: e.from,
        to: e.state,
        why: words(e.reason) + counts,
      };
    }
    const took = typeof e.response_time_ms === 'number' ? 'check took ' + e.response_time_ms + ' ms' : '';
    const why = e.error || took;
    return { at: e.at_ms, subject: e.service, service: e.service, to: e.status, why, health: true };
  });
}

// The same from /admin/status's transitions (the breakers' own, in memory).
function statusRows(transitions) {
  return transitions.map((t) => {
    const reason = t.reason || {};
    let detail = '';
    if (reason.count) detail = ' (' + reason.count + ')';
    else if (reason.rate) detail = ' (' + formatShare(reason.rate) + ')';
    return {
      at: t.at_ms,
      subject: breakerName(t.breaker),
      service: t.breaker,
      from: t.from,
      to: t.to,
      why: words(reason.kind) + detail,
    };
  });
}

function renderTransitions(status, past) {
  const source = document.getElementById('transitions-source');
  let rows;
  if (past.page) {
    rows = historyRows(past.page.entries);
    source.textContent = '(history database: ' + past.page.database + ')';
    source.dataset.source = 'history';
  } else {
    rows = statusRows(status.transitions);
    source.textContent = "(the breakers' recent transitions: " + past.why + ')';
    source.dataset.source = 'status';
  }
  const body = document.querySelector('#transitions tbody');
  const shown = rows.slice(-TRANSITIONS_SHOWN).reverse().map((r) => {
    const row = el('tr');
    row.dataset.service = r.service;
    row.dataset.to = r.to;
    const change = (r.from ? r.from + ' → ' : '') + r.to;
    row.append(
      el('td', clock(new Date(r.at)), 'num'),
      el('td', r.subject),
      el('td', change, r.health ? 'health-' + r.to : stateClass(r.to)),
      el('td', r.why),
    );
    return row;
  });
  if (shown.length === 0) shown.push(noteRow('none yet', 4));
  body.replaceChildren(...shown);
}

// ---- Polling ----

async function getJson(path) {
  const response = await fetch(path, {
    cache: 'no-store',
    headers: { accept: 'application/json' },
    // A gateway that hangs makes the poll fail (stale) rather than wait for ever.
    signal: AbortSignal.timeout ? AbortSignal.timeout(POLL_TIMEOUT_MS) : undefined,
  });
  if (!response.ok) {
    const error = new Error(path + ' answered ' + response.status);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

// The history's latest entries, or why there are none: it is off (404) or does not answer.
async function readHistory() {
  try {
    return { page: await getJson('/admin/history?limit=' + TRANSITIONS_SHOWN) };
  } catch (error) {
    return { why: error.status === 404 ? 'the history is off' : 'the history database does not answer' };
  }
}

let kept = [];
let lastGood = null;

async function poll() {
  try {
    const [status, signals, past] = await Promise.all([
      getJson('/admin/status'),
      getJson('/admin/signals'),
      readHistory(),
    ]);
    kept = keep(kept, signals);
    renderHeader(status);
    renderSignals(summarize(kept));
    renderPools(status);
    renderTransitions(status, past);
    lastGood = new Date();
    document.body.classList.remove('is-stale');
    document.getElementById('stale').hidden = true;
    const updated = document.getElementById('updated');
    updated.textContent = 'updated ' + clock(lastGood);
    updated.dataset.fresh = 'true';
  } catch (error) {
    document.body.classList.add('is-stale');
    const stale = document.getElementById('stale');
    stale.hidden = false;
    stale.textContent =
      'Stale: the poll at ' + clock(new Date()) + ' failed (' + (error.message || error) + '); ' +
      (lastGood ? 'showing the data of ' + clock(lastGood) + '.' : 'no data yet.');
    document.getElementById('updated').dataset.fresh = 'false';
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

if (document.getElementById('status-page')) poll();
