// logstream dashboard: live tail over the /ws WebSocket.
//
// Everything shown comes from log lines, which are attacker-controlled: it
// is put on the page with textContent and text nodes only, never as HTML.
// The page makes no request outside its own origin.
'use strict';

(() => {
  const LEVELS = ['emerg', 'alert', 'crit', 'err', 'warning', 'notice', 'info', 'debug'];
  const page = new URLSearchParams(location.search);
  const MAX_ROWS = clamp(intParam('rows', 2000), 100, 20000); // rows kept in the DOM
  const BACKLOG = clamp(intParam('backlog', 200), 0, 10000); // entries asked for on start
  const MAX_WAITING = 10000; // entries held while paused
  const MAX_MESSAGE = 8000; // characters of a message shown in a row
  const PING_EVERY = 15000; // ms between application pings
  const SILENCE_LIMIT = 40000; // ms without any frame before the socket is deemed dead
  const CHART_SECONDS = 60;

  const $ = (id) => document.getElementById(id);
  const el = {
    status: $('status'), statusText: $('status-text'), form: $('filters'),
    host: $('host'), service: $('service'), level: $('level'), q: $('q'), re: $('re'),
    pause: $('pause'), follow: $('follow'), clear: $('clear'), theme: $('theme'),
    banner: $('banner'), bannerText: $('banner-text'), tokenForm: $('token-form'), token: $('token'),
    chart: $('chart'), rate: $('rate'), rows: $('rows'), dropped: $('dropped'), lastseq: $('lastseq'),
    legend: $('legend'), log: $('log'), waiting: $('waiting'),
    details: $('details'), fields: $('fields').tBodies[0], copy: $('copy'), closeDetails: $('close-details'),
  };

  // A FIFO with cheap removal at the head, bounded by the caller.
  class Queue {
    constructor() { this.a = []; this.h = 0; }
    get length() { return this.a.length - this.h; }
    push(x) { this.a.push(x); }
    shift() {
      const x = this.a[this.h];
      this.a[this.h++] = undefined;
      if (this.h > 1024 && this.h * 2 > this.a.length) { this.a = this.a.slice(this.h); this.h = 0; }
      return x;
    }
    drain() { const out = this.a.slice(this.h); this.a = []; this.h = 0; return out; }
  }

  // --- state ---
  let filter = filterFromURL(); // the filter in force
  let pendingReq = null; // {id, filter}: a subscribe sent, not yet answered
  let held = []; // entries of the old filter while a change is pending
  let reqCounter = 0;
  let ws = null;
  let lastSeq = 0; // the last stream sequence shown: reconnects resume after it
  let caughtUp = false;
  let paused = false;
  let follow = true;
  let blocked = false; // a close that reconnecting will not fix (bad filter, token)
  const waiting = new Queue(); // entries held while paused
  let waitingSkipped = 0;
  const renderQueue = new Queue(); // rows to add at the next frame
  let newBelow = 0; // rows added while not following
  let rafPending = false;
  let backoff = 500;
  let reconnectTimer = 0;
  let pingTimer = 0;
  let lastFrameAt = 0;
  let droppedTotal = 0;
  let highlighter = makeHighlighter(filter);
  let selectedRow = null;
  const rowEntry = new WeakMap();
  const buckets = new Map(); // second -> counts by level
  let theme = localStorage.getItem('logstream.theme') || 'auto';

  function intParam(name, def) {
    const n = parseInt(page.get(name) || '', 10);
    return Number.isFinite(n) ? n : def;
  }
  function clamp(n, lo, hi) { return Math.min(hi, Math.max(lo, n)); }
  function list(s) { return s.split(',').map((x) => x.trim()).filter(Boolean); }

  // --- filter <-> URL <-> form ---
  function filterFromURL() {
    const p = new URLSearchParams(location.search);
    const level = p.get('level') || '';
    return {
      host: p.get('host') || '',
      service: p.get('service') || '',
      level: LEVELS.includes(level) ? level : '',
      q: p.get('q') || '',
      re: p.get('re') === '1',
    };
  }
  function filterFromForm() {
    return {
      host: el.host.value.trim(), service: el.service.value.trim(), level: el.level.value,
      q: el.q.value, re: el.re.checked,
    };
  }
  function showFilter(f) {
    el.host.value = f.host; el.service.value = f.service; el.level.value = f.level;
    el.q.value = f.q; el.re.checked = f.re;
  }
  function sameFilter(a, b) {
    return a.host === b.host && a.service === b.service && a.level === b.level && a.q === b.q && a.re === b.re;
  }
  function writeURL(f) {
    const p = new URLSearchParams(location.search);
    for (const [k, v] of [['host', f.host], ['service', f.service], ['level', f.level], ['q', f.q], ['re', f.re ? '1' : '']]) {
      if (v) p.set(k, v); else p.delete(k);
    }
    const s = p.toString();
    history.replaceState(null, '', s ? '?' + s : location.pathname);
  }
  // queryFor returns the /ws query parameters for f and a start.
  function queryFor(f, start) {
    const p = new URLSearchParams();
    if (f.host) p.set('hosts', f.host);
    if (f.service) p.set('services', f.service);
    if (f.level) p.set('level', f.level);
    if (f.q) p.set(f.re ? 'regex' : 'contains', f.q);
    for (const [k, v] of Object.entries(start)) p.set(k, String(v));
    return p;
  }
  function subscribeMessage(f, id) {
    const m = { type: 'subscribe', id, backlog: BACKLOG };
    if (f.host) m.hosts = list(f.host);
    if (f.service) m.services = list(f.service);
    if (f.level) m.level = f.level;
    if (f.q) m[f.re ? 'regex' : 'contains'] = f.q;
    return JSON.stringify(m);
  }

  // --- connection ---
  function setStatus(state, text) {
    el.status.dataset.state = state;
    el.statusText.textContent = text || state;
  }

  function connect() {
    clearTimeout(reconnectTimer);
    reconnectTimer = 0;
    if (pendingReq) { // a change was sent on the socket that died: apply it now
      adopt(pendingReq.filter);
      pendingReq = null;
      held = [];
    }
    const url = new URL('ws', location.href);
    url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    url.search = queryFor(filter, lastSeq > 0 ? { after: lastSeq } : { backlog: BACKLOG }).toString();
    const protocols = ['logstream'];
    const token = sessionStorage.getItem('logstream.token');
    if (token) protocols.push('bearer.' + token);
    setStatus('connecting', 'connecting');
    let sock;
    try {
      sock = new WebSocket(url, protocols);
    } catch (err) {
      showBanner('cannot connect: ' + err.message);
      scheduleReconnect();
      return;
    }
    ws = sock;
    caughtUp = false;
    sock.onopen = () => {
      if (sock !== ws) return;
      lastFrameAt = Date.now();
      clearInterval(pingTimer);
      pingTimer = setInterval(keepAlive, PING_EVERY);
    };
    sock.onmessage = (ev) => {
      if (sock !== ws) return;
      lastFrameAt = Date.now();
      let f;
      try { f = JSON.parse(ev.data); } catch { return; }
      if (f && typeof f === 'object') onFrame(f);
    };
    sock.onclose = (ev) => {
      if (sock !== ws) return;
      onClosed(ev.code, ev.reason);
    };
  }

  function keepAlive() {
    if (!ws) return;
    if (Date.now() - lastFrameAt > SILENCE_LIMIT) {
      // Nothing heard, not even a pong: the connection is dead though the
      // browser has not noticed. Drop it and reconnect.
      const sock = ws;
      onClosed(1006, 'no answer from the server');
      sock.close();
      return;
    }
    if (ws.readyState === WebSocket.OPEN) ws.send('{"type":"ping"}');
  }

  function onClosed(code, reason) {
    ws = null;
    clearInterval(pingTimer);
    switch (code) {
      case 4401:
        blocked = true;
        setStatus('error', 'token required');
        showBanner(reason || 'this server needs a token', true);
        return;
      case 4400:
      case 4403:
        blocked = true;
        setStatus('error', 'refused');
        showBanner(reason || 'the server refused this filter');
        markInvalid(true);
        return;
    }
    scheduleReconnect();
  }

  function scheduleReconnect() {
    clearTimeout(reconnectTimer);
    const delay = Math.round(Math.min(backoff, 15000) * (0.8 + Math.random() * 0.4));
    backoff = Math.min(backoff * 2, 15000);
    setStatus('offline', 'offline, retrying in ' + Math.max(1, Math.round(delay / 1000)) + 's');
    reconnectTimer = setTimeout(connect, delay);
  }

  function onFrame(f) {
    switch (f.type) {
      case 'subscribed':
        if (pendingReq) {
          if (f.id !== pendingReq.id) return; // an older request
          adopt(pendingReq.filter);
          pendingReq = null;
          held = [];
        }
        backoff = 500;
        caughtUp = false;
        blocked = false;
        hideBanner();
        markInvalid(false);
        setStatus('replaying', 'replaying history');
        return;
      case 'entries':
        if (!Array.isArray(f.entries)) return;
        for (const e of f.entries) onEntry(e);
        return;
      case 'dropped': {
        const n = Number(f.count) || 0;
        droppedTotal += n;
        el.dropped.textContent = String(droppedTotal);
        const why = f.reason === 'gone' ? 'no longer kept by the server' : 'this page could not keep up';
        deliver({ notice: n + ' entries missed (' + why + ')' });
        return;
      }
      case 'caught_up':
        caughtUp = true;
        setStatus('live', 'live');
        return;
      case 'error':
        if (pendingReq && f.id === pendingReq.id) {
          // The change was refused: the old filter stays.
          pendingReq = null;
          const h = held;
          held = [];
          for (const e of h) onEntry(e);
          markInvalid(true);
        }
        showBanner(String(f.message || 'error'));
        return;
      default:
        // pong, or a frame type this page does not know: ignore.
    }
  }

  function onEntry(e) {
    if (!e || typeof e !== 'object') return;
    if (pendingReq) { // of the old filter: shown only if the change fails
      if (held.length < MAX_ROWS) held.push(e);
      return;
    }
    const seq = Number(e.seq) || 0;
    if (seq && seq <= lastSeq) return; // already shown (never expected)
    if (seq) lastSeq = seq;
    if (caughtUp) count(e.level);
    deliver({ entry: e, seq });
  }

  // adopt makes f the filter in force: the view starts again.
  function adopt(f) {
    filter = f;
    highlighter = makeHighlighter(f);
    writeURL(f);
    lastSeq = 0;
    clearView();
  }

  function applyForm() {
    const f = filterFromForm();
    const target = pendingReq ? pendingReq.filter : filter;
    if (sameFilter(f, target) && !blocked) return;
    markInvalid(false);
    if (ws && ws.readyState === WebSocket.OPEN && !blocked) {
      const id = 's' + (++reqCounter);
      pendingReq = { id, filter: f };
      held = [];
      ws.send(subscribeMessage(f, id));
      return;
    }
    // Not connected (or refused): connect afresh with the new filter.
    pendingReq = null;
    adopt(f);
    blocked = false;
    hideBanner();
    if (ws) { const s = ws; ws = null; s.close(); }
    connect();
  }

  // --- rows ---
  function deliver(item) {
    if (paused) {
      waiting.push(item);
      if (waiting.length > MAX_WAITING) { waiting.shift(); waitingSkipped++; }
    } else {
      renderQueue.push(item);
      if (renderQueue.length > MAX_ROWS) renderQueue.shift(); // would scroll out anyway
    }
    scheduleRender();
  }

  function scheduleRender() {
    if (rafPending) return;
    rafPending = true;
    requestAnimationFrame(render);
  }

  function render() {
    rafPending = false;
    const items = renderQueue.drain();
    const log = el.log;
    if (items.length) {
      const frag = document.createDocumentFragment();
      for (const it of items) frag.append(it.entry ? makeRow(it.entry, it.seq) : makeNotice(it.notice));
      log.append(frag);
      if (!follow) newBelow += items.length;
    }
    let excess = log.childElementCount - MAX_ROWS;
    if (excess > 0) {
      let removed = 0;
      while (excess-- > 0) {
        const r = log.firstElementChild;
        if (!follow) removed += r.offsetHeight;
        if (r === selectedRow) selectedRow = null;
        r.remove();
      }
      if (!follow && removed) log.scrollTop -= removed;
    }
    if (follow) log.scrollTop = log.scrollHeight;
    el.rows.textContent = String(log.childElementCount);
    el.lastseq.textContent = lastSeq ? String(lastSeq) : '–';
    updateWaiting();
  }

  function add(row, cls, text) {
    const s = document.createElement('span');
    s.className = cls;
    s.textContent = text;
    row.append(s);
    return s;
  }

  function makeRow(e, seq) {
    const lvl = LEVELS.includes(e.level) ? e.level : 'notice';
    const row = document.createElement('div');
    row.className = 'row lvl-' + lvl;
    if (seq) row.dataset.seq = String(seq);
    const t = typeof e.time === 'string' ? e.time : (typeof e.received === 'string' ? e.received : '');
    add(row, 'time', formatTime(t)).title = t;
    add(row, 'host', str(e.host)).title = str(e.host);
    add(row, 'svc', str(e.service)).title = str(e.service);
    add(row, 'lvl', lvl);
    let text = str(e.message);
    if (text.length > MAX_MESSAGE) text = text.slice(0, MAX_MESSAGE) + '…';
    highlight(add(row, 'msg', ''), text);
    rowEntry.set(row, e);
    return row;
  }

  function makeNotice(text) {
    const row = document.createElement('div');
    row.className = 'row notice-row';
    row.textContent = '— ' + text + ' —';
    return row;
  }

  function str(v) { return v === undefined || v === null ? '' : String(v); }

  function formatTime(iso) {
    if (!iso) return '';
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return iso.slice(0, 23);
    const p = (n, w = 2) => String(n).padStart(w, '0');
    return p(d.getMonth() + 1) + '-' + p(d.getDate()) + ' ' + p(d.getHours()) + ':' + p(d.getMinutes()) + ':' +
      p(d.getSeconds()) + '.' + p(d.getMilliseconds(), 3);
  }

  // makeHighlighter returns a global RegExp for the search text, or null.
  function makeHighlighter(f) {
    if (!f.q) return null;
    if (!f.re) return new RegExp(f.q.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'g');
    let src = f.q;
    let flags = 'g';
    const m = /^\(\?([imsU]+)\)/.exec(src); // RE2 leading flags
    if (m) {
      src = src.slice(m[0].length);
      if (m[1].includes('i')) flags += 'i';
      if (m[1].includes('s')) flags += 's';
      if (m[1].includes('m')) flags += 'm';
    }
    try { return new RegExp(src, flags); } catch { return null; } // RE2 syntax JS lacks: no highlight
  }

  function highlight(span, text) {
    const re = highlighter;
    if (!re || !text) { span.textContent = text; return; }
    re.lastIndex = 0;
    let last = 0;
    let n = 0;
    let m;
    while (n < 200 && (m = re.exec(text)) !== null) {
      if (m[0] === '') { re.lastIndex++; continue; }
      if (m.index > last) span.append(text.slice(last, m.index));
      const mark = document.createElement('mark');
      mark.textContent = m[0];
      span.append(mark);
      last = m.index + m[0].length;
      n++;
    }
    if (last < text.length) span.append(text.slice(last));
  }

  function clearView() {
    renderQueue.drain();
    waiting.drain();
    waitingSkipped = 0;
    newBelow = 0;
    el.log.replaceChildren();
    closeDetails();
    scheduleRender();
  }

  // --- pause, follow ---
  function setPaused(p) {
    paused = p;
    el.pause.setAttribute('aria-pressed', String(p));
    el.pause.textContent = p ? 'Resume' : 'Pause';
    if (!p) {
      const items = waiting.drain();
      if (waitingSkipped) items.unshift({ notice: waitingSkipped + ' entries skipped while paused (more than ' + MAX_WAITING + ' waited)' });
      waitingSkipped = 0;
      for (const it of items) {
        renderQueue.push(it);
        if (renderQueue.length > MAX_ROWS) renderQueue.shift();
      }
    }
    scheduleRender();
  }

  function setFollow(f) {
    follow = f;
    el.follow.setAttribute('aria-pressed', String(f));
    if (f) {
      newBelow = 0;
      el.log.scrollTop = el.log.scrollHeight;
    }
    updateWaiting();
  }

  function updateWaiting() {
    const b = el.waiting;
    if (paused) {
      const n = waiting.length + waitingSkipped;
      b.textContent = 'Paused, ' + n + ' waiting · Resume';
      b.dataset.count = String(n);
      b.hidden = false;
    } else if (!follow && newBelow > 0) {
      b.textContent = '↓ ' + newBelow + ' new · Follow';
      b.dataset.count = String(newBelow);
      b.hidden = false;
    } else {
      b.hidden = true;
      b.dataset.count = '0';
    }
  }

  // --- details ---
  const ORDER = ['seq', 'time', 'received', 'host', 'service', 'level', 'severity', 'facility', 'pid', 'source', 'message', 'id'];

  function showDetails(row) {
    const e = rowEntry.get(row);
    if (!e) return;
    if (selectedRow) selectedRow.classList.remove('selected');
    selectedRow = row;
    row.classList.add('selected');
    const tb = el.fields;
    tb.replaceChildren();
    const put = (k, v) => {
      const tr = document.createElement('tr');
      const th = document.createElement('th');
      th.textContent = k;
      const td = document.createElement('td');
      td.textContent = typeof v === 'object' && v !== null ? JSON.stringify(v) : str(v);
      tr.append(th, td);
      tb.append(tr);
    };
    for (const k of ORDER) if (k in e) put(k, e[k]);
    const fields = e.fields && typeof e.fields === 'object' ? e.fields : {};
    for (const k of Object.keys(fields).sort()) put('fields.' + k, fields[k]);
    for (const k of Object.keys(e).sort()) if (!ORDER.includes(k) && k !== 'fields') put(k, e[k]);
    el.details.hidden = false;
  }

  function closeDetails() {
    el.details.hidden = true;
    if (selectedRow) selectedRow.classList.remove('selected');
    selectedRow = null;
  }

  // --- chart ---
  function count(level) {
    const s = Math.floor(Date.now() / 1000);
    let b = buckets.get(s);
    if (!b) { b = new Array(LEVELS.length).fill(0); buckets.set(s, b); }
    const i = LEVELS.indexOf(level);
    b[i < 0 ? 5 : i]++;
  }

  function cssVar(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }

  function drawChart() {
    const now = Math.floor(Date.now() / 1000);
    for (const s of buckets.keys()) if (s <= now - CHART_SECONDS) buckets.delete(s);
    const c = el.chart;
    const dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth || 600;
    const h = c.clientHeight || 64;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(h * dpr);
    }
    const g = c.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    let max = 1;
    for (let s = now - CHART_SECONDS + 1; s <= now; s++) {
      const b = buckets.get(s);
      if (b) max = Math.max(max, b.reduce((x, y) => x + y, 0));
    }
    const colors = LEVELS.map((l) => cssVar('--' + l));
    const bw = w / CHART_SECONDS;
    for (let i = 0; i < CHART_SECONDS; i++) {
      const b = buckets.get(now - CHART_SECONDS + 1 + i);
      if (!b) continue;
      let y = h;
      for (let l = LEVELS.length - 1; l >= 0; l--) { // least severe at the bottom
        if (!b[l]) continue;
        const bh = (b[l] / max) * (h - 12);
        g.fillStyle = colors[l];
        g.fillRect(i * bw + 0.5, y - bh, Math.max(1, bw - 1), bh);
        y -= bh;
      }
    }
    g.fillStyle = cssVar('--muted');
    g.font = '10px system-ui, sans-serif';
    g.textBaseline = 'top';
    g.fillText(max + '/s', 2, 1);
    const prev = buckets.get(now - 1);
    el.rate.textContent = (prev ? prev.reduce((x, y) => x + y, 0) : 0) + '/s';
  }

  function buildLegend() {
    for (const l of LEVELS) {
      const s = document.createElement('span');
      const i = document.createElement('i');
      i.style.background = 'var(--' + l + ')';
      s.append(i, l);
      el.legend.append(s);
    }
  }

  // --- theme, banner ---
  function applyTheme() {
    if (theme === 'light' || theme === 'dark') document.documentElement.dataset.theme = theme;
    else delete document.documentElement.dataset.theme;
    el.theme.textContent = 'Theme: ' + theme;
    drawChart();
  }

  function showBanner(text, askToken) {
    el.bannerText.textContent = text;
    el.tokenForm.hidden = !askToken;
    el.banner.hidden = false;
  }
  function hideBanner() { el.banner.hidden = true; }
  function markInvalid(bad) {
    for (const i of [el.host, el.service, el.q]) i.setAttribute('aria-invalid', String(bad));
  }

  // --- events ---
  let debounce = 0;
  for (const i of [el.host, el.service, el.q]) {
    i.addEventListener('input', () => { clearTimeout(debounce); debounce = setTimeout(applyForm, 400); });
  }
  el.level.addEventListener('change', applyForm);
  el.re.addEventListener('change', applyForm);
  el.form.addEventListener('submit', (ev) => { ev.preventDefault(); clearTimeout(debounce); applyForm(); });
  el.pause.addEventListener('click', () => setPaused(!paused));
  el.follow.addEventListener('click', () => setFollow(!follow));
  el.clear.addEventListener('click', clearView);
  el.waiting.addEventListener('click', () => { if (paused) setPaused(false); else setFollow(true); });
  el.theme.addEventListener('click', () => {
    theme = { auto: 'light', light: 'dark', dark: 'auto' }[theme] || 'auto';
    localStorage.setItem('logstream.theme', theme);
    applyTheme();
  });
  el.log.addEventListener('scroll', () => {
    const log = el.log;
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 24;
    if (follow && !atBottom) setFollow(false);
    else if (!follow && atBottom) setFollow(true);
  });
  el.log.addEventListener('click', (ev) => {
    const row = ev.target instanceof Element ? ev.target.closest('.row') : null;
    if (row && rowEntry.has(row)) showDetails(row);
  });
  el.closeDetails.addEventListener('click', closeDetails);
  el.copy.addEventListener('click', () => {
    const e = selectedRow && rowEntry.get(selectedRow);
    if (e && navigator.clipboard) navigator.clipboard.writeText(JSON.stringify(e, null, 2)).catch(() => {});
  });
  el.tokenForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = el.token.value.trim();
    if (t) sessionStorage.setItem('logstream.token', t); else sessionStorage.removeItem('logstream.token');
    el.token.value = '';
    blocked = false;
    hideBanner();
    connect();
  });
  document.addEventListener('keydown', (ev) => {
    if (ev.target instanceof HTMLInputElement || ev.target instanceof HTMLSelectElement || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.key === 'Escape') closeDetails();
    else if (ev.key === 'p') setPaused(!paused);
    else if (ev.key === 'f') setFollow(!follow);
  });
  window.addEventListener('online', () => { if (!ws && !blocked) connect(); });
  matchMedia('(prefers-color-scheme: dark)').addEventListener('change', drawChart);

  // --- start ---
  showFilter(filter);
  buildLegend();
  applyTheme();
  setInterval(drawChart, 1000);
  connect();
})();
