// redbandit live dashboard: polls the sidecar's JSON endpoints and draws
// plain inline-SVG charts. No build step, no dependencies.
'use strict';

(() => {
  // ---------------------------------------------------------------- config
  const POLL_MS = 1000;           // GET /v1/dashboard
  const CONTEXT_MS = 2000;        // POST /v1/explain + /v1/arms
  const ARMS_LIMIT = 1000;        // the busiest products fetched for the table (sorted here)
  const MODEL_RETRY_MS = 5000;    // GET /v1/models/{model} after a failure
  const FETCH_TIMEOUT_MS = 5000;
  const TABLE_ROWS = 20;
  const DAYS = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'];
  const DEFAULT_DAY = 5, DEFAULT_HOUR = 10;   // Saturday 10 am
  // Defaults that make an interesting visitor, used when the spec allows them.
  const PRESETS = { age: 22, traffic_source: 'Search', gender: 'F' };
  const SIM_SERIES = ['linucb', 'random', 'oracle'];

  // ----------------------------------------------------------------- state
  const S = {
    model: new URLSearchParams(location.search).get('model') || null,
    dash: null,          // last /v1/dashboard response
    spec: undefined,     // undefined: not loaded; null: the model has none
    modelLoading: false,
    fields: [],          // context builder: [{attr, read() → {value}|{error}}]
    alphaInput: null,
    arms: null,          // last /v1/arms response
    sort: { key: 'events', dir: -1 },
    ctxSeq: 0,           // drops stale explain/arms responses
    ctxTimer: 0,
    inputTimer: 0,
  };

  // --------------------------------------------------------------- helpers
  const $ = (id) => document.getElementById(id);
  const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
  const fmt = (v, d = 0) => (isNum(v) ? v.toFixed(d) : '—');
  const fmtPct = (v, d = 1) => (isNum(v) ? (v * 100).toFixed(d) + '%' : '—');
  const trim = (v, d = 4) => String(+v.toFixed(d));   // 0.0500 → "0.05"
  const pad2 = (n) => String(n).padStart(2, '0');
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

  // Integer as HTML with digit groups spaced by CSS, so the text stays "123456".
  function intHTML(v) {
    if (!isNum(v)) return '—';
    const s = String(Math.round(Math.abs(v)));
    const head = s.length % 3 || 3;
    let out = (v < 0 ? '-' : '') + s.slice(0, head);
    for (let i = head; i < s.length; i += 3) out += `<span class="g">${s.slice(i, i + 3)}</span>`;
    return out;
  }

  // Sets an element's text (or HTML) only when it changed; data-value = raw
  // value when given.
  function show(id, text, raw, html = false) {
    const el = $(id);
    if (!el) return;
    if (html) { if (el.innerHTML !== text) el.innerHTML = text; }
    else if (el.textContent !== text) el.textContent = text;
    if (raw !== undefined) el.dataset.value = raw ?? '';
  }

  function ago(sec) {
    if (!isNum(sec)) return '—';
    sec = Math.max(0, sec);
    if (sec < 1) return 'just now';
    if (sec < 60) return `${Math.round(sec)} s ago`;
    if (sec < 3600) return `${Math.round(sec / 60)} min ago`;
    return `${(sec / 3600).toFixed(1)} h ago`;
  }

  const clock = (ms, secs = true) => {
    const d = new Date(ms);
    return `${pad2(d.getHours())}:${pad2(d.getMinutes())}` + (secs ? `:${pad2(d.getSeconds())}` : '');
  };

  // fetch → JSON; throws Error(message) on network, HTTP or JSON failure.
  async function api(path, body) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
    const opt = { signal: ctl.signal, cache: 'no-store' };
    if (body !== undefined) {
      Object.assign(opt, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    }
    try {
      const res = await fetch(path, opt);
      let data = null;
      try { data = await res.json(); } catch (_) { /* not JSON */ }
      if (!res.ok) throw new Error(data?.error || `HTTP ${res.status}`);
      if (data === null || typeof data !== 'object') throw new Error('bad response');
      return data;
    } catch (e) {
      if (e.name === 'AbortError') throw new Error('request timed out');
      if (e instanceof TypeError) throw new Error('server unreachable');
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  // ---------------------------------------------------------------- charts
  // Rounds x up to 1, 2, 2.5 or 5 × 10^k.
  function niceStep(x) {
    if (!(x > 0)) return 1;
    const p = 10 ** Math.floor(Math.log10(x));
    const f = x / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * p;
  }

  const TIME_STEPS = [5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600];

  // Draws series [{name, pts: [[t, v|null], …]}] into svg; returns the most
  // points drawn by one series. opt: height, axes (gridlines, zero-based y with
  // at least yFloor) or a fitted sparkline, area, yFmt, tipFmt.
  function drawChart(svg, series, opt) {
    const box = svg.parentNode.getBoundingClientRect();
    const W = Math.max(120, Math.round(box.width)), H = opt.height;
    const m = opt.axes ? { l: 46, r: 10, t: 8, b: 20 } : { l: 1, r: 1, t: 3, b: 2 };
    svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    svg.style.height = H + 'px';

    let t0 = Infinity, t1 = -Infinity, vMin = Infinity, vMax = -Infinity, most = 0;
    for (const s of series) {
      let n = 0;
      for (const [t, v] of s.pts) {
        if (!isNum(t) || !isNum(v)) continue;
        n++; t0 = Math.min(t0, t); t1 = Math.max(t1, t);
        vMin = Math.min(vMin, v); vMax = Math.max(vMax, v);
      }
      most = Math.max(most, n);
    }
    svg._chart = null;
    if (!most) {
      svg.innerHTML = opt.axes ? `<text class="empty" x="${W / 2}" y="${H / 2}">waiting for data…</text>` : '';
      return 0;
    }
    if (t1 - t0 < 1000) t0 = t1 - 1000;         // a single point: draw a 1 s span
    let yMin = 0, yMax, step = 0;
    if (opt.axes) {                               // zero-based, nice gridlines
      const top = Math.max(vMax, opt.yFloor ?? 1e-6) * 1.1;
      step = niceStep(top / 4);
      yMax = step * Math.max(1, Math.ceil(top / step));
    } else {                                      // sparkline: fit the data
      const pad = (vMax - vMin) * 0.15 || Math.abs(vMax) * 0.05 || 1;
      yMin = vMin - pad; yMax = vMax + pad;
    }
    const pw = W - m.l - m.r, ph = H - m.t - m.b;
    const x = (t) => m.l + ((t - t0) / (t1 - t0)) * pw;
    const y = (v) => m.t + (1 - (Math.min(Math.max(v, yMin), yMax) - yMin) / (yMax - yMin)) * ph;
    const parts = [];

    if (opt.axes) {
      for (let v = yMin; v <= yMax + step / 2; v += step) {        // y grid
        const yy = y(v).toFixed(1);
        parts.push(`<line class="grid" x1="${m.l}" x2="${W - m.r}" y1="${yy}" y2="${yy}"/>`,
          `<text class="ytick" x="${m.l - 6}" y="${yy}">${esc(opt.yFmt(v))}</text>`);
      }
      const maxTicks = Math.max(2, Math.floor(pw / 75));              // x ticks
      const sec = TIME_STEPS.find((s) => (t1 - t0) / 1000 / s <= maxTicks) ?? 86400;
      for (let t = Math.ceil(t0 / (sec * 1000)) * sec * 1000; t <= t1; t += sec * 1000) {
        const xv = x(t), xx = xv.toFixed(1);
        const anchor = xv > W - m.r - 24 ? 'end' : xv < m.l + 24 ? 'start' : 'middle';   // keep labels inside
        parts.push(`<line class="grid vgrid" x1="${xx}" x2="${xx}" y1="${m.t}" y2="${H - m.b}"/>`,
          `<text class="xtick" text-anchor="${anchor}" x="${xx}" y="${H - 4}">${clock(t, sec < 60)}</text>`);
      }
      parts.push(`<line class="axis" x1="${m.l}" x2="${W - m.r}" y1="${H - m.b}" y2="${H - m.b}"/>`);
    }
    for (const s of series) {                     // one path per series; nulls break it
      let d = '', pen = false, first = null, last = null;
      for (const [t, v] of s.pts) {
        if (!isNum(t) || !isNum(v)) { pen = false; continue; }
        const px = x(t).toFixed(1), py = y(v).toFixed(1);
        d += (pen ? 'L' : 'M') + px + ',' + py;
        pen = true; first ??= px; last = px;
      }
      if (!d) continue;
      if (opt.area) parts.push(`<path class="area area-${s.name}" d="${d}L${last},${H - m.b}L${first},${H - m.b}Z"/>`);
      parts.push(`<path class="series series-${s.name}" d="${d}"/>`);
    }
    svg.innerHTML = parts.join('');
    svg._chart = { series, x, t0, t1, m, W, H, yFmt: opt.tipFmt || opt.yFmt };
    updateTip(svg);
    return most;
  }

  // Hover tooltip: a vertical guide and the values nearest the pointer.
  function attachTip(svg) {
    const box = svg.parentNode;
    const tip = document.createElement('div');
    tip.className = 'tip';
    tip.hidden = true;
    box.appendChild(tip);
    svg._tip = { el: tip, px: null };
    svg.addEventListener('mousemove', (e) => {
      svg._tip.px = e.clientX - svg.getBoundingClientRect().left;
      updateTip(svg);
    });
    svg.addEventListener('mouseleave', () => { svg._tip.px = null; updateTip(svg); });
  }

  function updateTip(svg) {
    const tip = svg._tip, c = svg._chart;
    if (!tip) return;
    const guide = svg.querySelector('.guide');
    if (tip.px === null || !c || tip.px < c.m.l || tip.px > c.W - c.m.r) {
      tip.el.hidden = true;
      guide?.remove();
      return;
    }
    const t = c.t0 + ((tip.px - c.m.l) / (c.W - c.m.l - c.m.r)) * (c.t1 - c.t0);
    let best = null;                              // nearest timestamp over all series
    for (const s of c.series) {
      for (const [pt, v] of s.pts) if (isNum(pt) && isNum(v) && (best === null || Math.abs(pt - t) < Math.abs(best - t))) best = pt;
    }
    if (best === null) { tip.el.hidden = true; return; }
    const rows = c.series.map((s) => {
      const v = s.pts.find((p) => p[0] === best)?.[1];
      return `<div><i class="sw sw-${s.name}"></i>${esc(s.name)} <b>${isNum(v) ? esc(c.yFmt(v)) : '—'}</b></div>`;
    });
    tip.el.innerHTML = `<div class="tip-t">${clock(best)}</div>${rows.join('')}`;
    tip.el.hidden = false;
    const gx = c.x(best);
    tip.el.style.left = Math.min(gx + 10, c.W - tip.el.offsetWidth - 4) + 'px';
    let g = guide;
    if (!g) {
      g = document.createElementNS('http://www.w3.org/2000/svg', 'line');
      g.setAttribute('class', 'guide');
      svg.appendChild(g);
    }
    g.setAttribute('x1', gx.toFixed(1)); g.setAttribute('x2', gx.toFixed(1));
    g.setAttribute('y1', c.m.t); g.setAttribute('y2', c.H - c.m.b);
  }

  const pctTick = (v) => trim(v * 100, 2) + '%';
  const msTick = (v) => trim(v, 3) + ' ms';

  // -------------------------------------------------------------- dashboard
  function setConnected(ok, msg) {
    document.body.dataset.state = ok ? 'live' : 'error';
    $('banner').hidden = ok;
    if (!ok) {
      show('banner-text', msg === 'server unreachable' || msg === 'request timed out'
        ? `disconnected (${msg}), retrying…` : `error: ${msg} — retrying…`);
    }
  }

  async function pollDashboard() {
    try {
      const q = S.model ? '?model=' + encodeURIComponent(S.model) : '';
      const d = await api('/v1/dashboard' + q);
      if (!S.model && d.model) S.model = d.model;
      S.dash = d;
      setConnected(true);
      try {
        renderDashboard(d);
      } catch (e) {                                // unexpected data: say so, keep polling
        setConnected(false, 'bad dashboard data: ' + e.message);
      }
      if (S.model && S.spec === undefined && !S.modelLoading) loadModel();
    } catch (e) {
      setConnected(false, e.message);
    } finally {
      setTimeout(pollDashboard, POLL_MS);
    }
  }

  function renderDashboard(d) {
    show('model-name', d.model ?? '—');
    show('model-products', intHTML(d.products), d.products, true);
    show('updated', isNum(d.now_ms) ? `updated ${clock(d.now_ms)}` : 'updated');
    renderCtr(d);
    renderTrainer(d.trainer || {}, d.now_ms);
    renderServing(d.serving || {});
    renderScoring(d.scoring || {});
  }

  function renderCtr(d) {
    const pts = d.ctr?.points || [];
    const sim = d.simulator || null;
    const last = pts[pts.length - 1] || {};
    // Series present: observed always, a simulator's when it reports them.
    const names = ['observed', ...SIM_SERIES.filter((n) => sim?.ctr?.[n] != null || pts.some((p) => p[n] != null))];
    const series = names.map((n) => ({ name: n, pts: pts.map((p) => [p.t, p[n]]) }));
    const svg = $('ctr-chart');
    const n = drawChart(svg, series, { height: 240, axes: true, yFloor: 0.05, yFmt: pctTick, tipFmt: (v) => fmtPct(v, 1) });
    svg.setAttribute('data-points', String(n));

    show('ctr-observed', fmtPct(last.observed), last.observed);
    show('ctr-window', isNum(d.ctr?.window) ? `rolling over the last ~${d.ctr.window} events / visits` : '');
    $('ctr-stats').classList.toggle('has-sim', !!sim);
    for (const s of SIM_SERIES) {
      const v = sim?.ctr?.[s] ?? last[s];
      show('ctr-' + s, fmtPct(v), v);
    }
    const lin = sim?.ctr?.linucb, orc = sim?.ctr?.oracle;
    show('sim-ratio', isNum(lin) && isNum(orc) && orc > 0 ? `linucb / oracle = ${Math.round((lin / orc) * 100)}%` : '—');
    show('sim-visits', sim ? `${intHTML(sim.visits)} visits` : '', sim?.visits, true);

    const legend = names.map((n) => `<span><i class="sw sw-${n}"></i>${n}</span>`).join('');
    show('ctr-legend', legend, null, true);
  }

  function renderTrainer(tr, nowMs) {
    show('trainer-events', intHTML(tr.events), tr.events, true);
    show('trainer-rate', fmt(tr.events_per_s, 1), tr.events_per_s);
    show('trainer-lag', intHTML(tr.lag), tr.lag, true);
    show('trainer-lag-unit', tr.lag == null ? 'no Kafka consumer' : 'events');
    show('trainer-dlq', intHTML(tr.dlq), tr.dlq, true);
    $('trainer-dlq').classList.toggle('warn', tr.dlq > 0);

    const lf = tr.last_flush_ms;
    show('trainer-flush', !isNum(lf) ? '—' : lf === 0 ? 'never' : ago(((nowMs ?? Date.now()) - lf) / 1000));
    const detail = [];
    if (isNum(tr.flush_ms)) detail.push(`${fmt(tr.flush_ms, 1)} ms`);
    if (isNum(tr.flush_arms)) detail.push(`${tr.flush_arms} products`);
    if (isNum(tr.flush_events)) detail.push(`${tr.flush_events} events`);
    show('trainer-flush-detail', lf ? detail.join(' · ') : '');
    show('trainer-rewards', intHTML(tr.rewards), tr.rewards, true);
    show('trainer-reward-rate', isNum(tr.rewards) && tr.events > 0 ? `${fmtPct(tr.rewards / tr.events, 2)} of events` : '');

    const pts = tr.points || [];
    drawChart($('trainer-spark'), [{ name: 'rate', pts: pts.map((p) => [p.t, p.events_per_s]) }], { height: 36, area: true });
    const hasLag = pts.some((p) => isNum(p.lag));
    $('lag-row').hidden = !hasLag;
    if (hasLag) drawChart($('lag-spark'), [{ name: 'lag', pts: pts.map((p) => [p.t, p.lag]) }], { height: 28, area: true });
  }

  function renderServing(sv) {
    show('serving-rps', fmt(sv.rps, 1), sv.rps);
    show('serving-p50', fmt(sv.p50_ms, 2), sv.p50_ms);
    show('serving-p99', fmt(sv.p99_ms, 2), sv.p99_ms);
    show('serving-errors', intHTML(sv.errors), sv.errors, true);
    $('serving-errors').classList.toggle('warn', sv.errors > 0);
    const pts = sv.points || [];
    drawChart($('serving-spark'), [{ name: 'rps', pts: pts.map((p) => [p.t, p.rps]) }], { height: 36, area: true });
    drawChart($('latency-chart'), [
      { name: 'p50', pts: pts.map((p) => [p.t, p.p50_ms]) },
      { name: 'p99', pts: pts.map((p) => [p.t, p.p99_ms]) },
    ], { height: 120, axes: true, yFloor: 0.5, yFmt: msTick, tipFmt: (v) => fmt(v, 2) + ' ms' });
  }

  // ------------------------------------------------------ context builder
  // Where this sidecar scores (its --scoring): with local, whether the copy
  // of the model serves or the script answers because it has no current one.
  function renderScoring(sc) {
    const age = (s) => `${fmt(s, s < 10 ? 2 : 0)} s`;
    let text = '—', fallback = false;
    if (sc.mode === 'redis') text = 'Redis (script)';
    else if (sc.mode === 'local' && sc.copied) text = `local copy (age ${age(sc.age_s)}, ${sc.products} products)`;
    else if (sc.mode === 'local') {
      fallback = true;
      text = 'local, falling back to Redis: ' +
        (isNum(sc.age_s) ? `copy ${age(sc.age_s)} old (${sc.products} products)` : 'no current copy');
    } else if (sc.mode) text = String(sc.mode);
    show('serving-scoring', text, sc.mode ?? '');
    $('serving-scoring').classList.toggle('warn', fallback);
  }

  async function loadModel() {
    S.modelLoading = true;
    try {
      const m = await api('/v1/models/' + encodeURIComponent(S.model));
      S.spec = m.spec?.encoders?.length ? m.spec : null;
      buildForm();
      refreshContext();
    } catch (e) {
      formMessage(`could not load the model: ${e.message} — retrying…`);
      setTimeout(() => { S.modelLoading = false; }, MODEL_RETRY_MS);   // the next poll retries
      return;
    }
    S.modelLoading = false;
  }

  function formMessage(text) {
    const form = $('ctx-form');
    form.textContent = '';
    const p = document.createElement('p');
    p.className = 'msg';
    p.textContent = text;
    form.appendChild(p);
  }

  // One labelled field in the form; returns the container for the control(s).
  function addField(form, label, hint) {
    const div = document.createElement('div');
    div.className = 'field';
    div.innerHTML = `<span class="field-label">${esc(label)}</span><div class="ctl"></div>` +
      (hint !== undefined ? `<span class="hint">${esc(hint)}</span>` : '');
    form.appendChild(div);
    return div;
  }

  function numberInput(id, value, step, min, max) {
    const input = document.createElement('input');
    Object.assign(input, { type: 'number', id, step: String(step), value: String(value) });
    if (isNum(min) && isNum(max) && max > min) { input.min = String(min); input.max = String(max); }
    return input;
  }

  function select(id, options, selected) {
    const sel = document.createElement('select');
    sel.id = id;
    sel.innerHTML = options.map(([v, label]) =>
      `<option value="${esc(v)}"${String(v) === String(selected) ? ' selected' : ''}>${esc(label)}</option>`).join('');
    return sel;
  }

  const readNumber = (input, label) => () => {
    const v = input.valueAsNumber;
    input.classList.toggle('bad', !isNum(v));
    return isNum(v) ? { value: v } : { error: `${label}: enter a number` };
  };

  function buildForm() {
    S.fields = [];
    if (!S.spec) {
      const msg = 'this model has no feature spec; the context builder needs one';
      formMessage(msg);
      cardMessage('products-msg', msg);
      document.body.classList.add('no-spec');      // hides the top 5 and the products table
      return;
    }
    const form = $('ctx-form');
    form.textContent = '';
    const done = new Set();
    S.spec.encoders.forEach((enc, i) => {
      const attr = enc.attribute;
      if (!attr || done.has(attr)) return;
      done.add(attr);
      const id = 'ctx-' + i;
      if (enc.kind === 'time_of_day' || enc.kind === 'weekend') {
        addTimeField(form, attr, id);
      } else if (enc.kind === 'numeric') {
        const min = enc.min ?? 0, max = enc.max ?? 0;      // omitted in the JSON when 0
        const range = max - min;
        const step = range > 0 ? 10 ** Math.floor(Math.log10(range / 50)) : 1;
        const dec = Math.max(0, -Math.floor(Math.log10(step)));
        const preset = PRESETS[attr];
        const v = isNum(preset) && preset >= min && preset <= max ? preset
          : range > 0 ? Math.round((min + range / 2) / step) * step : min;
        const input = numberInput(id, trim(v, dec), step, min, max);
        addField(form, attr, range > 0 ? `${trim(min, dec)} – ${trim(max, dec)}` : '').querySelector('.ctl').appendChild(input);
        S.fields.push({ attr, read: readNumber(input, attr) });
      } else if (enc.kind === 'onehot') {
        const values = enc.values || [];
        const def = values.includes(PRESETS[attr]) ? PRESETS[attr] : values[0];
        const sel = select(id, values.map((v) => [v, v]), def);
        addField(form, attr).querySelector('.ctl').appendChild(sel);
        S.fields.push({ attr, read: () => ({ value: sel.value }) });
      } else {                                   // unknown kind: free text
        const input = document.createElement('input');
        Object.assign(input, { type: 'text', id });
        addField(form, attr, enc.kind).querySelector('.ctl').appendChild(input);
        S.fields.push({ attr, read: () => ({ value: input.value }) });
      }
    });
    const alpha = numberInput('ctx-alpha', 0.1, 0.05, null, null);
    alpha.min = '0';
    addField(form, 'α (alpha)', 'exploration weight').querySelector('.ctl').appendChild(alpha);
    S.alphaInput = alpha;
    form.addEventListener('input', onInput);
    form.addEventListener('change', onInput);
  }

  // Day-of-week and hour selects → an RFC 3339 time in the reference week
  // (Monday = 2026-01-05) with a zero offset: the server reads the local time.
  function addTimeField(form, attr, id) {
    const encs = S.spec.encoders.filter((e) => e.attribute === attr);
    const field = addField(form, attr, '');
    const day = select(id + '-day', DAYS.map((d, i) => [i, d]), DEFAULT_DAY);
    const hour = select(id + '-hour', Array.from({ length: 24 }, (_, h) => [h, `${pad2(h)}:00`]), DEFAULT_HOUR);
    day.setAttribute('aria-label', attr + ' day');
    hour.setAttribute('aria-label', attr + ' hour');
    field.querySelector('.ctl').append(day, hour);
    field.classList.add('time');
    const hint = field.querySelector('.hint');
    S.fields.push({
      attr,
      read: () => {
        const d = +day.value, h = +hour.value;
        // Hint: which time-of-day bins and weekend feature the choice sets.
        const tags = [];
        for (const e of encs) {
          if (e.kind === 'time_of_day') tags.push(...(e.bins || []).filter((b) => h >= b.from && h < b.to).map((b) => b.name));
          if (e.kind === 'weekend') tags.push(d >= 5 ? 'weekend' : 'weekday');
        }
        hint.textContent = tags.length ? tags.join(' · ') : 'no time bin';
        return { value: `2026-01-${pad2(5 + d)}T${pad2(h)}:00:00Z` };
      },
    });
  }

  function onInput() {
    clearTimeout(S.inputTimer);
    S.inputTimer = setTimeout(refreshContext, 150);
  }

  // Reads the form: {attributes, alpha} or {error}.
  function readContext() {
    const attributes = {};
    for (const f of S.fields) {
      const r = f.read();
      if (r.error) return { error: r.error };
      attributes[f.attr] = r.value;
    }
    const alpha = S.alphaInput.valueAsNumber;
    const ok = isNum(alpha) && alpha >= 0;
    S.alphaInput.classList.toggle('bad', !ok);
    return ok ? { attributes, alpha } : { error: 'α: enter a number ≥ 0' };
  }

  // POST /v1/explain and /v1/arms for the current context; reschedules itself.
  async function refreshContext() {
    clearTimeout(S.ctxTimer);
    S.ctxTimer = setTimeout(refreshContext, CONTEXT_MS);
    // No spec, or the dashboard is failing too: skip requests bound to fail.
    if (!S.spec || document.body.dataset.state === 'error') return;
    const seq = ++S.ctxSeq;
    const c = readContext();
    if (c.error) { cardMessage('top5-msg', c.error); return; }
    const body = { model: S.model, attributes: c.attributes, alpha: c.alpha };
    const [ex, ar] = await Promise.allSettled([api('/v1/explain', { ...body, k: 5 }), api('/v1/arms', { ...body, limit: ARMS_LIMIT })]);
    if (seq !== S.ctxSeq) return;                 // a newer request is on its way
    try {
      if (ex.status === 'fulfilled') { cardMessage('top5-msg', ''); renderTop5(ex.value.items || []); }
      else cardMessage('top5-msg', ex.reason.message);
      if (ar.status === 'fulfilled') { cardMessage('products-msg', ''); S.arms = ar.value; renderProducts(); }
      else cardMessage('products-msg', ar.reason.message);
    } catch (e) {
      cardMessage('top5-msg', 'bad response: ' + e.message);
    }
  }

  function cardMessage(id, text) {
    $(id).hidden = !text;
    show(id, text);
  }

  // --------------------------------------------------------------- tables
  function renderTop5(items) {
    const max = Math.max(1e-9, ...items.map((it) => Math.max(0, it.mean ?? 0) + Math.max(0, it.bonus ?? 0)));
    const rows = items.map((it, i) => {
      const wm = (Math.max(0, it.mean ?? 0) / max) * 100, wb = (Math.max(0, it.bonus ?? 0) / max) * 100;
      return `<tr data-id="${esc(it.id)}"><td class="num rank">${i + 1}</td><td class="pid">${esc(it.id)}</td>` +
        `<td class="num strong">${fmt(it.score, 3)}</td>` +
        `<td class="bar-col"><div class="stack"><span class="seg mean" style="width:${wm.toFixed(1)}%"></span>` +
        `<span class="seg bonus" style="width:${wb.toFixed(1)}%"></span></div>` +
        `<div class="split"><span class="t-mean">${fmt(it.mean, 3)}</span> + <span class="t-bonus">${fmt(it.bonus, 3)}</span></div></td>` +
        `<td class="num">${intHTML(it.events)}</td></tr>`;
    });
    $('top5').tBodies[0].innerHTML = rows.join('') ||
      '<tr class="empty"><td colspan="5">no products to recommend</td></tr>';
  }

  // Compares two arms by a column; nulls always last.
  function compareArms(a, b, key, dir) {
    const x = a[key], y = b[key];
    if (x == null || y == null) return x == null ? (y == null ? 0 : 1) : -1;
    if (key === 'id') return dir * String(x).localeCompare(String(y), undefined, { numeric: true });
    return dir * (x - y) || String(a.id).localeCompare(String(b.id), undefined, { numeric: true });
  }

  function renderProducts() {
    const arms = S.arms?.arms || [];
    const { key, dir } = S.sort;
    const sorted = arms.slice().sort((a, b) => compareArms(a, b, key, dir));
    const maxEv = Math.max(1, ...arms.map((a) => a.events || 0));
    $('products').tBodies[0].innerHTML = sorted.slice(0, TABLE_ROWS).map((a) =>
      `<tr data-id="${esc(a.id)}"><td class="pid">${esc(a.id)}</td>` +
      `<td class="num"><div class="ev"><span class="ev-track"><span class="ev-bar" style="width:${(((a.events || 0) / maxEv) * 100).toFixed(1)}%"></span></span>` +
      `<span class="ev-n">${intHTML(a.events)}</span></div></td>` +
      `<td class="num">${fmt(a.mean_reward, 3)}</td><td class="num">${fmt(a.estimate, 3)}</td>` +
      `<td class="num">${fmt(a.bonus, 3)}</td><td class="num strong">${fmt(a.score, 3)}</td></tr>`).join('') ||
      '<tr class="empty"><td colspan="6">no products yet</td></tr>';
    const total = S.arms?.products ?? arms.length;
    const more = total - Math.min(TABLE_ROWS, arms.length);
    show('products-more', more > 0 ? `… ${more} more` : '');
    if (S.arms) show('products-sub', `scored for the visitor above · α = ${trim(S.arms.alpha ?? 0, 4)} · ${arms.length < total ? `the ${arms.length} busiest of ${total}` : total} products`);
    for (const th of $('products').tHead.rows[0].cells) {
      const on = th.dataset.key === key;
      th.classList.toggle('sorted', on);
      th.setAttribute('aria-sort', on ? (dir < 0 ? 'descending' : 'ascending') : 'none');
    }
  }

  // Header click: sort by that column; a second click flips the direction.
  $('products').tHead.addEventListener('click', (e) => {
    const key = e.target.closest('th')?.dataset.key;
    if (!key) return;
    S.sort = S.sort.key === key ? { key, dir: -S.sort.dir } : { key, dir: key === 'id' ? 1 : -1 };
    renderProducts();
  });

  // --------------------------------------------------------------- startup
  let resizeFrame = 0;
  window.addEventListener('resize', () => {        // redraw charts at the new width
    cancelAnimationFrame(resizeFrame);
    resizeFrame = requestAnimationFrame(() => { if (S.dash) renderDashboard(S.dash); });
  });

  ['ctr-chart', 'latency-chart'].forEach((id) => attachTip($(id)));
  $('ctx-form').addEventListener('submit', (e) => e.preventDefault());
  renderProducts();
  pollDashboard();                                  // loads the model once it answers
})();
