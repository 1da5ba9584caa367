// zmws web page: snapshots from the gateway's JSON routes, kept live by the
// job events of /ui/events (docs/UI.md). Every piece of data goes on the
// page as text (textContent and DOM nodes), never as markup.
'use strict';

(function () {
  const TOKEN_KEY = 'zmws-token';
  const REFRESH_MIN_MS = 1000; // at most one refetch a second while events pour in
  const REFRESH_EVERY_MS = 5000; // workers come and go without events: refetch anyway
  const POLL_MS = 2000; // without an event stream
  const MAX_ROWS = 2000; // per table; the count says how many there are
  const MAX_FINISHED = 100;
  const OUTPUT_FETCHES = 20; // finished jobs whose output is fetched
  const RATE_WINDOW_MS = 60000;

  const $ = (id) => document.getElementById(id);

  const st = {
    token: sessionStorage.getItem(TOKEN_KEY) || '',
    services: [],
    workers: [],
    queue: new Map(), // id → {id, service, created}
    active: new Map(), // id → JobInfo-like
    finished: [], // newest first
    outputs: new Map(), // id → {text} | {pending: true} | {error}
    samples: new Map(), // service → [[ms, completed+failed], ...]
    skew: 0, // server clock − ours, in ms
    live: false,
    stream: null, // AbortController of the event stream
    refreshTimer: 0,
    lastRefresh: 0,
    renderTimer: 0,
    generation: 0, // bumps with each snapshot, so late answers are dropped
  };

  // --- fetching -----------------------------------------------------------

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    if (st.token) h.Authorization = 'Bearer ' + st.token;
    return h;
  }

  class HTTPError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function request(method, path) {
    const r = await fetch(path, { method, headers: headers(), cache: 'no-store' });
    const date = Date.parse(r.headers.get('Date') || '');
    if (!isNaN(date)) {
      const skew = date - Date.now();
      st.skew = Math.abs(skew) > 2000 ? skew : 0; // Date has whole seconds
    }
    let body = null;
    const text = await r.text();
    try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
    if (!r.ok) {
      const msg = (body && body.error) || (r.status + ' ' + r.statusText);
      throw new HTTPError(r.status, body && body.code, msg);
    }
    return { body, link: r.headers.get('Link') };
  }

  // nextLink returns the target of a Link rel="next", or ''.
  function nextLink(link) {
    const m = /<([^>]*)>;\s*rel="next"/.exec(link || '');
    return m ? m[1] : '';
  }

  // getAll follows rel="next" for a paged listing, at most pages pages.
  async function getAll(path, pages) {
    let out = [];
    for (let i = 0; i < pages && path; i++) {
      const { body, link } = await request('GET', path);
      out = out.concat(body || []);
      path = nextLink(link);
    }
    return out;
  }

  function refusalText(err) {
    if (err.status === 401) return 'A token is needed: type it above (' + err.message + ').';
    if (err.status === 403) return 'Refused: this token is not an admin token (' + err.message + ').';
    return 'Could not load: ' + err.message;
  }

  function setRefusal(name, err) {
    const p = $(name + '-refusal');
    if (err) {
      p.textContent = refusalText(err);
      p.hidden = false;
    } else {
      p.hidden = true;
      p.textContent = '';
    }
  }

  // refresh fetches every snapshot; what events said meanwhile is replaced.
  // A refresh that a later one overtook changes nothing.
  async function refresh() {
    st.refreshTimer = 0;
    st.lastRefresh = Date.now();
    const gen = ++st.generation;
    const names = ['services', 'workers', 'queue', 'active', 'jobs'];
    const results = await Promise.allSettled([
      getAll('/SERVER-SERVICES', 20),
      request('GET', '/SERVER-WORKERS?all=1').then((r) => r.body || []),
      request('GET', '/SERVER-QUEUE').then((r) => r.body || []),
      request('GET', '/SERVER-ACTIVE').then((r) => r.body || []),
      request('GET', '/SERVER-JOBS?limit=' + MAX_FINISHED).then((r) => r.body || []),
    ]);
    if (gen !== st.generation) return;
    const [services, workers, queue, active, jobs] = results.map((res) => (res.status === 'fulfilled' ? res.value : []));
    st.services = services;
    recordRates(services);
    st.workers = workers;
    st.queue = new Map();
    for (const q of queue) {
      for (const id of q.jobs || []) st.queue.set(id, { id, service: q.service });
      if (q.oldest && st.queue.has(q.oldest)) st.queue.get(q.oldest).created = q.since;
      for (const s of q.scheduled_jobs || []) st.queue.set(s.id, { id: s.id, service: q.service, at: s.at });
    }
    st.queueTotal = queue.reduce((n, q) => n + q.queued + (q.scheduled || 0), 0);
    st.active = new Map(active.map((j) => [j.id, j]));
    st.finished = jobs;
    results.forEach((res, i) => setRefusal(names[i], res.status === 'rejected' ? res.reason : null));
    const unauth = results.find((res) => res.status === 'rejected' && res.reason.status === 401);
    if (unauth) notice(refusalText(unauth.reason), 'auth');
    else if (st.noticeKind === 'auth') notice('');
    fetchOutputs();
    scheduleRender();
  }

  // scheduleRefresh asks for a refetch, at most one each REFRESH_MIN_MS.
  function scheduleRefresh() {
    if (st.refreshTimer) return;
    const wait = Math.max(0, st.lastRefresh + REFRESH_MIN_MS - Date.now());
    st.refreshTimer = setTimeout(refresh, wait);
  }

  // fetchOutputs gets the output of the newest finished jobs, once each.
  function fetchOutputs() {
    for (const j of st.finished.slice(0, OUTPUT_FETCHES)) {
      if (st.outputs.has(j.id)) continue;
      st.outputs.set(j.id, { pending: true });
      request('GET', '/jobs/' + encodeURIComponent(j.id)).then((r) => {
        st.outputs.set(j.id, { text: outputText(r.body) });
        scheduleRender();
      }, (err) => {
        st.outputs.set(j.id, { error: err.message });
        scheduleRender();
      });
    }
    // Forget what is no longer shown.
    const keep = new Set(st.finished.map((j) => j.id));
    for (const id of st.outputs.keys()) if (!keep.has(id)) st.outputs.delete(id);
  }

  function outputText(j) {
    if (!j || j.output === undefined) return '';
    let s = j.output;
    if (j.output_encoding === 'base64') {
      try {
        const bin = atob(s);
        const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
        s = new TextDecoder('utf-8', { fatal: false }).decode(bytes);
      } catch (e) {
        s = '(binary output)';
      }
    }
    return j.output_truncated ? s + '\n… (truncated)' : s;
  }

  // --- rates --------------------------------------------------------------

  function recordRates(services) {
    const now = Date.now();
    for (const s of services) {
      const list = st.samples.get(s.name) || [];
      list.push([now, s.completed + s.failed]);
      while (list.length > 2 && now - list[1][0] > RATE_WINDOW_MS) list.shift();
      st.samples.set(s.name, list);
    }
  }

  function rate(name) {
    const list = st.samples.get(name);
    if (!list || list.length < 2) return '';
    const [t0, n0] = list[0];
    const [t1, n1] = list[list.length - 1];
    if (t1 <= t0) return '';
    return ((n1 - n0) * 1000 / (t1 - t0)).toFixed(2);
  }

  // --- events -------------------------------------------------------------

  function apply(name, e) {
    switch (name) {
      case 'queued':
        st.active.delete(e.job);
        st.queue.set(e.job, { id: e.job, service: e.service, created: e.time });
        break;
      case 'requeued':
        st.active.delete(e.job);
        st.queue.set(e.job, { id: e.job, service: e.service, created: e.time, why: e.error });
        setWorker(e.worker, 'idle', '');
        break;
      case 'started':
        st.queue.delete(e.job);
        st.active.set(e.job, { id: e.job, service: e.service, worker: e.worker, started: e.time, attempts: e.attempt });
        setWorker(e.worker, 'busy', e.job);
        break;
      case 'completed':
      case 'failed': {
        st.queue.delete(e.job);
        st.active.delete(e.job);
        setWorker(e.worker, 'idle', '');
        const j = { id: e.job, service: e.service, state: name === 'completed' ? 'complete' : 'failed',
          finished: e.time, exit_code: e.exit_code, code: e.code, worker: e.worker };
        st.finished = [j].concat(st.finished.filter((f) => f.id !== e.job)).slice(0, MAX_FINISHED);
        break;
      }
      default:
        break;
    }
    scheduleRender();
    scheduleRefresh(); // counts, outputs, and what events do not carry
  }

  function setWorker(identity, state, job) {
    if (!identity) return;
    for (const w of st.workers) {
      if (w.identity === identity && w.state !== 'gone') {
        w.state = state;
        w.job = job;
      }
    }
  }

  // follow reads /ui/events with fetch, so the token goes in a header
  // (EventSource cannot send one), and parses the Server-Sent Events.
  async function follow() {
    const ctl = new AbortController();
    st.stream = ctl;
    let ok = false;
    try {
      const r = await fetch('/ui/events', { headers: headers({ Accept: 'text/event-stream' }), signal: ctl.signal, cache: 'no-store' });
      if (!r.ok) {
        let msg = r.status + ' ' + r.statusText;
        try { msg = (await r.json()).error || msg; } catch (e) { /* not JSON */ }
        polling(r.status === 403 ? 'live updates need an admin token; polling' : 'no live updates (' + msg + '); polling');
        return;
      }
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value.replace(/\r\n?/g, '\n');
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          if (dispatch(block)) ok = true;
        }
      }
    } catch (e) {
      if (ctl.signal.aborted) return;
    } finally {
      if (st.stream === ctl) st.stream = null;
    }
    if (ctl.signal.aborted) return;
    // The stream ended (zmwsd restarting, a proxy): poll, and try again.
    polling(ok ? 'live updates interrupted; reconnecting' : 'no live updates; polling');
    setTimeout(() => { if (!st.stream && !ctl.signal.aborted) follow(); }, 2000);
  }

  // dispatch handles one event block; it returns true for a ready event.
  function dispatch(block) {
    let name = 'message';
    let data = '';
    for (const line of block.split('\n')) {
      if (line === '' || line.startsWith(':')) continue;
      const c = line.indexOf(':');
      const field = c < 0 ? line : line.slice(0, c);
      let value = c < 0 ? '' : line.slice(c + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') name = value;
      else if (field === 'data') data += (data ? '\n' : '') + value;
    }
    if (name === 'ready') {
      live();
      refresh();
      return true;
    }
    if (name === 'resync') {
      refresh();
      return false;
    }
    let e;
    try { e = JSON.parse(data); } catch (err) { return false; }
    if (e && e.job) apply(name, e);
    return false;
  }

  let pollTimer = 0;

  function live() {
    st.live = true;
    const s = $('status');
    s.textContent = 'live';
    s.className = 'status live';
    if (pollTimer) clearInterval(pollTimer);
    pollTimer = setInterval(refresh, REFRESH_EVERY_MS);
  }

  function polling(why) {
    st.live = false;
    const s = $('status');
    s.textContent = why;
    s.className = 'status down';
    if (pollTimer) clearInterval(pollTimer);
    pollTimer = setInterval(refresh, POLL_MS);
    refresh();
  }

  function restart() {
    st.outputs.clear(); // fetched with the rights of another token
    if (st.stream) st.stream.abort();
    st.stream = null;
    if (pollTimer) clearInterval(pollTimer);
    pollTimer = setInterval(refresh, REFRESH_EVERY_MS);
    $('status').textContent = 'connecting…';
    $('status').className = 'status';
    follow(); // its ready event (or its failure) fetches the snapshots
  }

  // --- rendering ----------------------------------------------------------

  function scheduleRender() {
    if (st.renderTimer) return;
    st.renderTimer = setTimeout(render, 30);
  }

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function row(cells, attrs) {
    const tr = document.createElement('tr');
    for (const c of cells) {
      if (c instanceof Node) {
        const td = document.createElement('td');
        td.appendChild(c);
        tr.appendChild(td);
      } else {
        tr.appendChild(el('td', c));
      }
    }
    if (attrs) for (const k of Object.keys(attrs)) tr.dataset[k] = attrs[k];
    return tr;
  }

  function fill(table, rows, total) {
    const tbody = $(table).tBodies[0];
    const frag = document.createDocumentFragment();
    for (const r of rows.slice(0, MAX_ROWS)) frag.appendChild(r);
    if (total > MAX_ROWS || rows.length > MAX_ROWS) {
      const tr = document.createElement('tr');
      const td = el('td', '… and ' + (Math.max(total, rows.length) - MAX_ROWS) + ' more', 'more');
      td.colSpan = $(table).tHead.rows[0].cells.length;
      tr.appendChild(td);
      frag.appendChild(tr);
    }
    tbody.replaceChildren(frag);
    const count = $(table + '-count');
    if (count) count.textContent = '(' + (total === undefined ? rows.length : total) + ')';
  }

  function ago(t) {
    if (!t) return '';
    const ms = Date.now() + st.skew - Date.parse(t);
    if (isNaN(ms)) return '';
    const s = Math.max(0, ms / 1000);
    if (s < 60) return s.toFixed(1) + ' s ago';
    if (s < 3600) return Math.floor(s / 60) + ' min ago';
    if (s < 86400) return Math.floor(s / 3600) + ' h ago';
    return Math.floor(s / 86400) + ' d ago';
  }

  function jobLink(id) {
    const a = el('a', id, 'id');
    a.href = '#' + encodeURIComponent(id);
    a.addEventListener('click', (ev) => { ev.preventDefault(); showJob(id); });
    return a;
  }

  function button(label, action, id) {
    const b = el('button', label, 'small');
    b.type = 'button';
    b.dataset.action = action;
    b.dataset.job = id;
    b.addEventListener('click', () => change(action, id, b));
    return b;
  }

  function render() {
    st.renderTimer = 0;
    fill('services', st.services.map((s) => row([
      s.name + (s.draining ? ' (draining)' : s.paused ? ' (paused)' : ''), s.workers_idle, s.workers_busy,
      s.queued + (s.scheduled ? ' + ' + s.scheduled + ' scheduled' : ''), s.active, s.completed, s.failed, rate(s.name), ago(s.last_seen),
    ], { service: s.name })));

    fill('workers', st.workers.map((w) => {
      const tr = row([
        el('span', w.identity, 'id'), w.service, el('span', w.state, 'state-' + w.state),
        w.job ? jobLink(w.job) : '', w.state === 'gone' ? '' : ago(w.last_heartbeat),
        w.jobs_done, w.failed, w.details && w.details.host ? w.details.host + (w.details.pid ? ' (' + w.details.pid + ')' : '') : '',
        w.state === 'gone' ? (w.gone_why || '') + ' ' + ago(w.gone_at) : '',
      ], { worker: w.identity });
      tr.cells[4].dataset.age = w.state === 'gone' ? '' : w.last_heartbeat;
      return tr;
    }));

    const queued = Array.from(st.queue.values());
    fill('queue', queued.map((j) => row([
      jobLink(j.id), j.service, j.at ? 'scheduled for ' + j.at : ago(j.created), button('cancel', 'cancel', j.id),
    ], { job: j.id })), Math.max(st.queueTotal || 0, queued.length));

    fill('active', Array.from(st.active.values()).map((j) => row([
      jobLink(j.id), j.service, el('span', j.worker || '', 'id'), ago(j.started), j.attempts || '', button('cancel', 'cancel', j.id),
    ], { job: j.id })));

    fill('jobs', st.finished.map((j) => {
      const o = st.outputs.get(j.id);
      const out = el('pre', o ? (o.text !== undefined ? o.text : o.error ? '(' + o.error + ')' : '…') : '', 'output');
      const outcome = j.state === 'failed' ? 'failed' + (j.code ? ': ' + j.code : '') : j.state;
      return row([
        jobLink(j.id), j.service, el('span', outcome, 'state-' + j.state),
        j.exit_code === undefined || j.exit_code === null ? '' : j.exit_code, ago(j.finished), out,
        j.state === 'failed' ? button('retry', 'retry', j.id) : '',
      ], { job: j.id });
    }));
    window.zmwsRendered = (window.zmwsRendered || 0) + 1;
  }

  // Heartbeat ages move without any fetch.
  function tickAges() {
    for (const td of document.querySelectorAll('#workers td[data-age]')) {
      if (td.dataset.age) td.textContent = ago(td.dataset.age);
    }
  }

  // --- actions ------------------------------------------------------------

  // notice shows text above the tables (or hides it, for ''). Refusals of
  // the user's actions stay until the next action; the "token needed" of a
  // refresh goes with the next refresh that needs none.
  function notice(text, kind) {
    const n = $('notice');
    n.textContent = text;
    n.hidden = !text;
    st.noticeKind = text ? kind || 'action' : '';
  }

  async function change(action, id, btn) {
    if (btn) btn.disabled = true;
    const path = '/jobs/' + encodeURIComponent(id) + (action === 'retry' ? '/retry' : '');
    try {
      const { body } = await request(action === 'retry' ? 'POST' : 'DELETE', path);
      notice('');
      if ($('job-id').textContent === id) showJobInfo(body);
    } catch (err) {
      notice((action === 'retry' ? 'Retry' : 'Cancel') + ' of ' + id + ' refused: ' +
        (err.status === 403 ? (action === 'retry' ? 'a token that is not admin may retry only its own jobs' : 'only an admin token may cancel jobs') + ' (' + err.message + ')' : err.message));
    } finally {
      if (btn) btn.disabled = false;
    }
    scheduleRefresh();
  }

  async function showJob(id) {
    id = id.trim();
    if (!id) return;
    try {
      const { body } = await request('GET', '/jobs/' + encodeURIComponent(id));
      notice('');
      showJobInfo(body);
    } catch (err) {
      notice('Job ' + id + ': ' + (err.status === 404 ? 'not known (the broker keeps finished jobs for a while only)' : refusalText(err)));
    }
  }

  function showJobInfo(j) {
    $('job').hidden = false;
    $('job-id').textContent = j.id;
    const dl = $('job-fields');
    const frag = document.createDocumentFragment();
    const field = (k, v) => {
      if (v === undefined || v === null || v === '') return;
      frag.appendChild(el('dt', k));
      frag.appendChild(el('dd', v));
    };
    field('service', j.service);
    field('state', j.state + (j.code ? ' (' + j.code + ')' : ''));
    field('priority', j.priority);
    field('not before', j.not_before);
    field('exit code', j.exit_code);
    field('error', j.error);
    field('created', j.created);
    field('started', j.started);
    field('finished', j.finished);
    field('attempts', j.attempts);
    field('worker', j.worker);
    field('owner', j.owner);
    if (j.params) field('params', Object.keys(j.params).map((k) => k + '=' + j.params[k]).join('  '));
    dl.replaceChildren(frag);
    const actions = $('job-actions');
    actions.replaceChildren();
    if (j.state === 'scheduled' || j.state === 'queued' || j.state === 'active') actions.appendChild(button('cancel', 'cancel', j.id));
    if (j.state === 'failed') actions.appendChild(button('retry', 'retry', j.id));
    $('job-output').textContent = outputText(j);
  }

  // --- start --------------------------------------------------------------

  function init() {
    $('token').value = st.token;
    $('token-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      st.token = $('token').value.trim();
      if (st.token) sessionStorage.setItem(TOKEN_KEY, st.token);
      else sessionStorage.removeItem(TOKEN_KEY);
      restart();
    });
    $('token-forget').addEventListener('click', () => {
      st.token = '';
      $('token').value = '';
      sessionStorage.removeItem(TOKEN_KEY);
      restart();
    });
    $('search').addEventListener('submit', (ev) => {
      ev.preventDefault();
      showJob($('search-id').value);
    });
    $('job-close').addEventListener('click', () => { $('job').hidden = true; $('job-id').textContent = ''; });
    setInterval(tickAges, 1000);
    const hash = decodeURIComponent(location.hash.slice(1));
    if (hash) showJob(hash);
    restart();
  }

  init();
}());
