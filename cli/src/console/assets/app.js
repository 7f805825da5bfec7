// Terima console: plain JavaScript, no build step, nothing from the network.
// Every value from the server is written with textContent, never as HTML.
'use strict';

const TOKEN = document.querySelector('meta[name="terima-token"]').content;
const WRITES = document.querySelector('meta[name="terima-writes"]').content === 'on';
const PROVIDERS = ['bebaskirim', 'bitbybit', 'oms', 'biteship'];
const STATUSES = ['received', 'processing', 'processed', 'failed'];
const OUTCOMES = ['accepted', 'duplicate', 'conflict', 'quarantined', 'rejected', 'ignored', 'unavailable'];
const main = document.getElementById('main');
let info = { live_deliveries: false, writes: WRITES };
let stream = null;

// ---- little helpers ------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'text') el.textContent = value;
    else if (key === 'class') el.className = value;
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const enc = encodeURIComponent;
const dash = (v) => (v === undefined || v === null || v === '' ? '–' : String(v));

async function api(path, options) {
  const response = await fetch(path, options);
  const type = response.headers.get('content-type') || '';
  const body = type.includes('json') ? await response.json() : await response.text();
  if (!response.ok) throw new Error((body && body.error) || response.statusText);
  return body;
}

async function post(path, payload) {
  return api(path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-Terima-Token': TOKEN },
    body: JSON.stringify(payload || {}),
  });
}

function toast(message, bad) {
  const el = document.getElementById('toast');
  el.textContent = message;
  el.className = 'toast show' + (bad ? ' bad' : '');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.className = 'toast'; }, 6000);
}

function badge(kind, value) {
  return h('span', { class: `badge ${kind}-${String(value).replace(/[^a-z_]/g, '')}`, text: value });
}

function time(value) {
  if (!value) return h('span', { class: 'muted', text: '–' });
  const short = value.replace('T', ' ').replace(/Z$/, '');
  return h('time', { datetime: value, title: value, text: short });
}

function resourceHref(provider, kind, id) {
  return `#/resource/${enc(provider)}/${enc(kind)}/${enc(id)}`;
}

function resourceLink(provider, kind, id) {
  if (!kind || !id) return h('span', { class: 'muted', text: '–' });
  return h('a', { href: resourceHref(provider, kind, id), text: `${kind}:${id}` });
}

function facts(pairs) {
  const dl = h('dl', { class: 'facts' });
  for (const [name, value] of pairs) {
    dl.append(h('dt', { text: name }), h('dd', {}, value instanceof Node ? value : dash(value)));
  }
  return dl;
}

function pre(text, label) {
  return h('pre', { class: 'code', tabindex: 0, 'aria-label': label }, text || '');
}

function section(title, ...children) {
  const id = 'sec-' + title.toLowerCase().replace(/[^a-z]+/g, '-');
  return h('section', { 'aria-labelledby': id }, h('h2', { id, text: title }), ...children);
}

function page(title, ...children) {
  main.replaceChildren(h('h1', { text: title }), ...children.filter((c) => c !== null && c !== undefined));
  document.title = `${title} · Terima console`;
}

function failed(error) {
  main.replaceChildren(h('h1', { text: 'Not available' }), h('p', { class: 'error', role: 'alert', text: error.message }));
}

function confirmAction(text) {
  const dialog = document.getElementById('confirm');
  document.getElementById('confirm-text').textContent = text;
  dialog.returnValue = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
    dialog.showModal();
    document.getElementById('confirm-cancel').focus();
  });
}

function action(label, question, run, extra) {
  if (!WRITES) return null;
  return h('button', {
    type: 'button', class: 'action ' + (extra || ''), text: label,
    onclick: async (event) => {
      const button = event.currentTarget;
      if (!(await confirmAction(question))) return;
      button.disabled = true;
      try {
        toast(await run());
      } catch (error) {
        toast(error.message, true);
      } finally {
        button.disabled = false;
      }
    },
  });
}

// ---- routing -------------------------------------------------------------

function route() {
  if (stream) { stream.close(); stream = null; }
  window.scrollTo(0, 0);
  setConn('');
  const hash = location.hash.replace(/^#/, '') || '/';
  const [path, query] = hash.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  for (const link of document.querySelectorAll('[data-nav]')) {
    const current = (parts[0] || 'live') === link.dataset.nav || (parts[0] === 'quarantine' && link.dataset.nav === 'dead');
    if (current) link.setAttribute('aria-current', 'page'); else link.removeAttribute('aria-current');
  }
  const view = {
    event: () => eventPage(parts[1]),
    resource: () => storyPage(parts[1], parts[2], parts.slice(3).join('/')),
    dead: () => deadPage(),
    quarantine: () => quarantinePage(parts[1]),
  }[parts[0]] || (() => livePage(new URLSearchParams(query || '')));
  view().catch(failed);
}

function setConn(state) {
  const el = document.getElementById('conn');
  el.textContent = state;
  el.className = 'conn ' + state.replace(/[^a-z]/g, '');
}

// ---- live events ---------------------------------------------------------

function rowKey(item) {
  if (item.kind === 'delivery') {
    if (item.record_id && ['accepted', 'duplicate', 'conflict'].includes(item.outcome)) return item.record_id;
    if (item.record_id && item.outcome === 'quarantined') return 'q:' + item.record_id;
    return 'r:' + item.request_id;
  }
  return item.id;
}

function fromDelivery(d) {
  const logged = ['accepted', 'conflict'].includes(d.outcome);
  return {
    kind: 'delivery', key: null, received_at: d.received_at, provider: d.provider,
    event_type: d.event_type, resource_kind: d.resource_kind, resource_id: d.resource_id,
    outcome: d.outcome, reason: d.reason, status: logged ? 'received' : null, attempts: null,
    href: d.outcome === 'quarantined' ? `#/quarantine/${enc(d.record_id)}`
      : d.record_id && d.outcome !== 'ignored' ? `#/event/${enc(d.record_id)}` : null,
    record_id: d.record_id, request_id: d.request_id, http: d.http_status,
  };
}

function fromEvent(e) {
  return {
    kind: 'event', key: e.id, received_at: e.received_at, provider: e.provider,
    event_type: e.event_type, resource_kind: e.resource_kind, resource_id: e.resource_id,
    outcome: e.outcome || null, reason: null, status: e.status, attempts: e.attempts,
    replay: e.replay, href: `#/event/${enc(e.id)}`, id: e.id,
  };
}

function renderRow(tr, r) {
  const outcome = r.outcome || (r.replay ? 'replay' : 'logged');
  tr.dataset.href = r.href || '';
  tr.replaceChildren(
    h('td', { 'data-label': 'Received' }, r.href ? h('a', { href: r.href }, time(r.received_at)) : time(r.received_at)),
    h('td', { 'data-label': 'Provider', text: r.provider }),
    h('td', { 'data-label': 'Event type', text: dash(r.event_type) }),
    h('td', { 'data-label': 'Resource' }, resourceLink(r.provider, r.resource_kind, r.resource_id)),
    h('td', { 'data-label': 'Outcome' }, badge('outcome', outcome), r.reason ? h('span', { class: 'reason', text: r.reason }) : null),
    h('td', { 'data-label': 'Status' }, r.status ? badge('status', r.status) : h('span', { class: 'muted', text: '–' })),
    h('td', { 'data-label': 'Attempts', class: 'num', text: r.attempts === null || r.attempts === undefined ? '–' : r.attempts }),
  );
}

async function livePage(params) {
  info = await api('/api/info');
  const query = new URLSearchParams();
  for (const [k, v] of params) if (v) query.set(k, v);
  const form = filterForm(params);
  const tbody = h('tbody', { id: 'rows' });
  const table = h('table', { class: 'rows nav', id: 'live-table' },
    h('caption', { class: 'sr-only', text: 'Deliveries and logged events, newest first' }),
    h('thead', {}, h('tr', {}, ...['Received', 'Provider', 'Event type', 'Resource', 'Outcome', 'Status', 'Attempts'].map((t) => h('th', { scope: 'col', text: t })))),
    tbody);
  const more = h('button', { type: 'button', class: 'more', text: 'Older events', hidden: true });
  const empty = h('p', { class: 'muted empty', text: 'Nothing yet. Send a webhook (terima send events/…) and it appears here.' });
  page('Live events', form, h('div', { class: 'table-wrap' }, table), empty, more);

  const rows = new Map();
  const upsert = (item, fresh) => {
    const key = item.key || rowKey(Object.assign({ kind: item.kind }, item));
    let entry = rows.get(key);
    if (entry) {
      const merged = Object.assign({}, entry.data);
      for (const [k, v] of Object.entries(item)) if (v !== null && v !== undefined) merged[k] = v;
      if (item.kind === 'delivery' && entry.data.kind === 'event') {
        merged.kind = 'event'; merged.status = entry.data.status; merged.received_at = entry.data.received_at; merged.href = entry.data.href;
      }
      entry.data = merged;
      renderRow(entry.tr, merged);
      if (fresh) flash(entry.tr);
      return;
    }
    const tr = h('tr', { tabindex: -1 });
    entry = { data: item, tr };
    rows.set(key, entry);
    renderRow(tr, item);
    // Newest first: before the first row that is older.
    let before = null;
    for (const other of tbody.children) {
      if ((other._received || '') < item.received_at) { before = other; break; }
    }
    tr._received = item.received_at;
    tbody.insertBefore(tr, before);
    if (fresh) flash(tr);
    empty.hidden = true;
  };

  const deliveryQuery = new URLSearchParams(query);
  const eventsQuery = new URLSearchParams(query);
  eventsQuery.delete('outcome');
  const outcome = query.get('outcome');
  const wantsEvents = !outcome || ['accepted', 'conflict'].includes(outcome);
  const [events, deliveries] = await Promise.all([
    wantsEvents ? api('/api/events?' + eventsQuery) : { items: [], next: null },
    info.live_deliveries ? api('/api/deliveries?' + deliveryQuery) : { items: [], seq: 0 },
  ]);
  for (const d of deliveries.items.slice().reverse()) upsert(fromDelivery(d), false);
  for (const e of events.items) upsert(fromEvent(e), false);
  empty.hidden = rows.size > 0;

  let next = events.next;
  const showMore = () => { more.hidden = !next; };
  showMore();
  more.onclick = async () => {
    const older = new URLSearchParams(eventsQuery);
    older.set('after', next);
    const pageOf = await api('/api/events?' + older);
    for (const e of pageOf.items) upsert(fromEvent(e), false);
    next = pageOf.next;
    showMore();
  };

  const streamQuery = new URLSearchParams(query);
  streamQuery.set('seq', deliveries.seq || 0);
  stream = new EventSource('/api/stream?' + streamQuery);
  stream.onopen = () => setConn('live');
  stream.onerror = () => setConn('reconnecting');
  stream.addEventListener('delivery', (m) => upsert(fromDelivery(JSON.parse(m.data)), true));
  stream.addEventListener('logged', (m) => upsert(fromEvent(JSON.parse(m.data)), true));
  stream.addEventListener('problem', (m) => toast(JSON.parse(m.data).error, true));
}

function flash(tr) {
  tr.classList.remove('new');
  void tr.offsetWidth;
  tr.classList.add('new');
}

function filterForm(params) {
  const select = (name, label, options) => h('label', {}, label,
    h('select', { name }, h('option', { value: '', text: 'any' }),
      ...options.map((o) => h('option', { value: o, text: o, selected: params.get(name) === o }))));
  const input = (name, label, placeholder, type) => h('label', {}, label,
    h('input', { name, type: type || 'text', placeholder, value: params.get(name) || '', autocomplete: 'off' }));
  const localTime = (iso) => (iso ? iso.replace(/(\.\d+)?Z$/, '') : '');
  const when = (name, label) => {
    const field = h('input', { name, type: 'datetime-local', step: 1, value: localTime(params.get(name)) });
    return h('label', {}, label + ' (UTC)', field);
  };
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter events' },
    select('provider', 'Provider', PROVIDERS),
    input('event_type', 'Event type', 'order.created'),
    select('status', 'Status', STATUSES),
    info.live_deliveries ? select('outcome', 'Outcome', OUTCOMES) : null,
    input('resource', 'Resource', 'order:ORD-001'),
    when('since', 'Since'),
    when('until', 'Until'),
    h('div', { class: 'buttons' },
      h('button', { type: 'submit', text: 'Filter' }),
      h('a', { href: '#/', class: 'button-like', text: 'Clear' })));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    for (const [k, v] of new FormData(form)) {
      if (!v) continue;
      query.set(k, k === 'since' || k === 'until' ? v + (v.length === 16 ? ':00' : '') + 'Z' : v);
    }
    location.hash = '#/?' + query;
  });
  // Folded on a phone unless a filter is set: the rows matter more.
  const open = window.innerWidth > 720 || [...params.values()].some(Boolean);
  return h('details', { class: 'filter-box', open }, h('summary', { text: 'Filters' }), form);
}

// ---- event detail --------------------------------------------------------

async function eventPage(id) {
  const e = await api('/api/events/' + enc(id));
  if (!e.logged) {
    const d = e.delivery;
    page('Delivery (not logged)',
      h('p', { text: d.outcome === 'duplicate'
        ? 'A duplicate: its work was already recorded, so it was acknowledged and nothing ran. Duplicates are not logged.'
        : 'Accepted; the processor has not logged it yet. This page does not refresh: reload it in a moment.' }),
      facts([['Outcome', badge('outcome', d.outcome)], ['Provider', d.provider], ['Event type', d.event_type],
        ['Resource', resourceLink(d.provider, d.resource_kind, d.resource_id)], ['Received at', time(d.received_at)],
        ['Request id', d.request_id], ['Event id', h('code', { text: id })]]));
    return;
  }
  const headers = Object.entries(e.headers || {});
  const bodyPre = pre(e.body_pretty, 'Body, pretty-printed');
  let raw = false;
  const toggle = h('button', { type: 'button', 'aria-pressed': 'false', text: 'Show the raw bytes',
    onclick: async () => {
      raw = !raw;
      toggle.setAttribute('aria-pressed', String(raw));
      toggle.textContent = raw ? 'Show pretty-printed' : 'Show the raw bytes';
      bodyPre.textContent = raw ? await api(`/api/events/${enc(id)}/raw`) : e.body_pretty;
    } });
  const reading = e.reading || {};
  const w = e.work;
  page(`${e.event_type}`,
    h('p', { class: 'subtitle' }, h('code', { text: e.id }), ' ', badge('status', e.status),
      e.replay ? badge('outcome', 'replay') : null, e.archived ? badge('outcome', 'archived') : null),
    h('div', { class: 'actions-row' },
      action('Replay this event', `Send ${e.event_type} (${e.id}) through the dedup path and the queue again, marked as a replay?`,
        async () => `Replayed: ${(await post(`/api/events/${enc(id)}/replay`)).outcome}`)),
    h('div', { class: 'grid' },
      section('Summary', facts([
        ['Provider', e.provider], ['Event type', e.event_type],
        ['Resource', resourceLink(e.provider, e.resource_kind, e.resource_id)],
        ['Carried status', e.carried_status], ['Received at', time(e.received_at)],
        ['Occurred at (provider)', time(e.occurred_at)], ['Processed at', time(e.processed_at)],
        ['Effect', e.effect], ['Attempts', e.attempts], ['Request id', e.request_id],
        ['Body', `${e.body_size} bytes${e.body_stored ? ' (stored apart)' : ''}`]])),
      section('Keys', facts([
        ['Dedup key', h('code', { text: e.dedup_key })], ['Work key', h('code', { text: e.work_key })],
        ['Digest', h('code', { text: e.digest })]])),
      section('Typed reading', reading.error
        ? h('p', { class: 'error', text: `${reading.reason}: ${reading.error}` })
        : facts([['Model', reading.model], ['Event type', reading.event_type],
          ['Resource', `${reading.resource_kind}:${reading.resource_id}`], ['Status', reading.status],
          ['Occurred at', time(reading.occurred_at)], ['Dedup key', h('code', { text: dash(reading.dedup_key) })],
          ['Work key', h('code', { text: dash(reading.work_key) })],
          ['Notes', (reading.notes || []).join('; ') || null]])),
      section('Processing', w ? facts([['Status', badge('status', w.status)], ['Attempts', w.attempts],
        ['Effect', w.effect], ['Processed at', time(w.processed_at)],
        ['Error', w.error ? h('pre', { class: 'error', text: w.error }) : null],
        ['Recorded by', w.event_id === e.id ? 'this event' : h('a', { href: `#/event/${enc(w.event_id)}`, text: w.event_id })]])
        : h('p', { class: 'muted', text: 'No work recorded yet.' }))),
    section('Headers that matter',
      headers.length ? h('table', { class: 'kv' }, h('tbody', {}, ...headers.map(([k, v]) => h('tr', {}, h('th', { scope: 'row', text: k }), h('td', {}, h('code', { text: v })))))) : h('p', { class: 'muted', text: 'None kept for this provider.' }),
      h('p', { class: 'muted small', text: 'Secrets and signatures are never shown: only their length.' })),
    e.deliveries && e.deliveries.length ? section('Deliveries seen by this process',
      h('table', { class: 'rows' }, h('thead', {}, h('tr', {}, ...['Received', 'Outcome', 'HTTP', 'Request id'].map((t) => h('th', { scope: 'col', text: t })))),
        h('tbody', {}, ...e.deliveries.map((d) => h('tr', {}, h('td', {}, time(d.received_at)), h('td', {}, badge('outcome', d.outcome)), h('td', { text: d.http_status }), h('td', {}, h('code', { text: d.request_id }))))))) : null,
    section('Body', h('div', { class: 'actions-row' }, toggle,
      h('a', { href: `/api/events/${enc(id)}/raw`, target: '_blank', rel: 'noopener', text: 'Open the raw bytes' })), bodyPre),
    e.conflict ? section('Conflict',
      h('p', { text: 'The same work key arrived with another body: both were processed; the state follows the provider\'s order.' }),
      facts([['Other event', h('a', { href: `#/event/${enc(e.conflict.other.id)}`, text: e.conflict.other.id })],
        ['Detected at', time(e.conflict.conflict.detected_at)]]),
      h('div', { class: 'side' },
        h('div', {}, h('h3', { text: 'This body' }), pre(e.body_pretty, 'This body')),
        h('div', {}, h('h3', { text: 'The other body' }), pre(e.conflict.other.body_pretty || '(gone)', 'The other body')))) : null);
}

// ---- resource story ------------------------------------------------------

async function storyPage(provider, kind, id) {
  const s = await api(`/api/resources/${enc(provider)}/${enc(kind)}/${enc(id)}`);
  const state = s.state;
  const events = s.events.map((e) => Object.assign({ source: 'work' }, e));
  const dups = s.duplicates.map((d) => ({
    source: 'duplicate', event_type: d.event_type, received_at: d.received_at, occurred_at: null,
    moved: false, why: 'duplicate: acknowledged, nothing ran', event_id: d.record_id, status: 'duplicate',
  }));
  const byArrival = events.concat(dups).sort((a, b) => (a.received_at < b.received_at ? -1 : 1));
  const arrival = new Map(byArrival.map((e, i) => [e, i + 1]));
  const byProvider = events.slice().sort((a, b) => {
    if (!a.occurred_at) return 1;
    if (!b.occurred_at) return -1;
    return a.occurred_at < b.occurred_at ? -1 : a.occurred_at > b.occurred_at ? 1 : 0;
  });
  const item = (e, when, order) => h('li', { class: 'step ' + (e.moved ? 'moved' : 'still') },
    h('div', { class: 'step-head' },
      h('span', { class: 'ordinal', text: order }),
      e.event_id && e.source === 'work' ? h('a', { href: `#/event/${enc(e.event_id)}`, text: e.event_type }) : h('span', { text: e.event_type }),
      e.carried_status ? h('span', { class: 'carried', text: `→ ${e.carried_status}` }) : null,
      badge('effect', e.moved ? 'moved' : e.source === 'duplicate' ? 'duplicate' : e.status === 'processed' ? 'stale' : e.status)),
    h('div', { class: 'step-time' }, when === 'provider' ? time(e.occurred_at) : time(e.received_at),
      h('span', { class: 'muted', text: when === 'provider' ? ` · arrived #${arrival.get(e)}` : '' })),
    e.moved ? null : h('div', { class: 'why', text: e.why }),
    e.replay ? h('div', { class: 'muted small', text: 'replayed' }) : null);
  const derived = [];
  if (s.derived_from) derived.push(h('p', {}, 'Derived from ', h('a', { href: resourceHref(s.provider, 'order', s.derived_from), text: `order ${s.derived_from}` }), ' (a partial cancellation).'));
  if (s.derived.length) derived.push(h('p', {}, 'Orders derived from it: ', ...s.derived.map((d, i) => [i ? ', ' : '', h('a', { href: resourceHref(s.provider, 'order', d), text: d })])));
  const fieldCount = state ? Object.keys(state.fields).length : 0;
  page(`${s.provider} ${s.kind} ${s.id}`,
    h('div', { class: 'grid' },
      section('Current state', state ? facts([
        ['Status', state.status ? badge('status', state.status) : null],
        ['Updated at (provider)', time(state.updated_at)],
        ['Last event', h('a', { href: `#/event/${enc(state.last_event)}`, text: state.last_event })],
        ['Version', state.version], ['Deleted', state.deleted ? 'yes' : 'no']])
        : h('p', { class: 'muted', text: 'No state projected.' })),
      section('Links', ...derived,
        h('p', {}, h('a', { href: `#/?provider=${enc(s.provider)}&resource=${enc(`${s.kind}:${s.id}`)}`, text: 'Its events on the live page' })),
        h('p', { class: 'muted small', text: `${events.length} event(s) processed, ${events.filter((e) => e.moved).length} moved the state${dups.length ? `, ${dups.length} duplicate(s) acknowledged` : ''}.` }))),
    section('Timeline',
      h('p', { class: 'muted', text: 'The same events twice: in the provider\'s time (the order the state follows) and in the order they arrived. Dimmed ones did not move the state; each says why.' }),
      h('div', { class: 'timeline' },
        h('div', {}, h('h3', { text: 'In provider time' }), h('ol', { class: 'steps', 'aria-label': 'In provider time' }, ...byProvider.map((e, i) => item(e, 'provider', i + 1)))),
        h('div', {}, h('h3', { text: 'In arrival time' }), h('ol', { class: 'steps', 'aria-label': 'In arrival time' }, ...byArrival.map((e, i) => item(e, 'arrival', i + 1)))))),
    state ? h('details', { class: 'fields' }, h('summary', { text: `Projected fields (${fieldCount})` }),
      pre(JSON.stringify(state.fields, null, 2), 'Projected fields')) : null);
}

// ---- dead letters, quarantine, conflicts --------------------------------

async function deadPage() {
  const [letters, quarantined, conflicts] = await Promise.all([
    api('/api/dead-letters'), api('/api/quarantine'), api('/api/conflicts')]);
  const table = (heads, rows, empty) => (rows.length
    ? h('div', { class: 'table-wrap' }, h('table', { class: 'rows nav' },
      h('thead', {}, h('tr', {}, ...heads.map((t) => h('th', { scope: 'col', text: t })))), h('tbody', {}, ...rows)))
    : h('p', { class: 'muted', text: empty }));
  const letterRows = letters.items.map((l) => h('tr', { tabindex: -1, 'data-href': l.event_id ? `#/event/${enc(l.event_id)}` : '' },
    h('td', { 'data-label': 'Id' }, h('code', { text: l.id })),
    h('td', { 'data-label': 'Moved' }, time(l.moved_at)),
    h('td', { 'data-label': 'Provider', text: dash(l.provider) }),
    h('td', { 'data-label': 'Event type', text: dash(l.event_type || l.unreadable) }),
    h('td', { 'data-label': 'Resource' }, resourceLink(l.provider, l.resource_kind, l.resource_id)),
    h('td', { 'data-label': 'Receives', class: 'num', text: l.receive_count }),
    h('td', { 'data-label': 'Action' }, info.backend === 'aws' ? null : action('Redrive', `Move dead letter ${l.id} (${dash(l.event_type)}) back to the queue?`,
      async () => { const r = await post('/api/dead-letters/redrive', { ids: [l.id] }); setTimeout(route, 300); return `Redriven: ${r.redriven}`; }, 'redrive'))));
  const quarantineRows = quarantined.items.map((q) => h('tr', { tabindex: -1, 'data-href': `#/quarantine/${enc(q.id)}` },
    h('td', { 'data-label': 'Received' }, h('a', { href: `#/quarantine/${enc(q.id)}` }, time(q.received_at))),
    h('td', { 'data-label': 'Provider', text: q.provider }),
    h('td', { 'data-label': 'Reason' }, badge('reason', q.reason)),
    h('td', { 'data-label': 'Detail', class: 'detail', text: q.detail }),
    h('td', { 'data-label': 'Retried', text: q.retried ? q.retried.outcome : '–' }),
    h('td', { 'data-label': 'Action' }, q.retried ? null : retryButton(q.id))));
  const conflictRows = conflicts.items.map((c) => h('tr', { tabindex: -1, 'data-href': `#/event/${enc(c.second_event_id)}` },
    h('td', { 'data-label': 'Detected' }, time(c.detected_at)),
    h('td', { 'data-label': 'Provider', text: c.provider }),
    h('td', { 'data-label': 'Resource' }, resourceLink(c.provider, c.resource.kind, c.resource.id)),
    h('td', { 'data-label': 'First' }, h('a', { href: `#/event/${enc(c.first_event_id)}`, text: c.first_event_id })),
    h('td', { 'data-label': 'Second' }, h('a', { href: `#/event/${enc(c.second_event_id)}`, text: c.second_event_id }))));
  page('Dead letters & quarantine',
    WRITES ? null : h('p', { class: 'note', text: 'Read-only. Start the console with --console-allow-writes (terima serve) or --allow-writes (terima console) to redrive, retry and replay.' }),
    section('Dead letters',
      h('p', { class: 'muted', text: 'Events whose processing failed too many times. Redrive moves them back to the queue (terima dlq redrive).' }),
      letters.items.length ? h('div', { class: 'actions-row' }, action('Redrive all', `Move all ${letters.items.length} dead letter(s) back to the queue?`,
        async () => { const r = await post('/api/dead-letters/redrive', { ids: [] }); setTimeout(route, 300); return `Redriven: ${r.redriven}`; })) : null,
      table(['Id', 'Moved', 'Provider', 'Event type', 'Resource', 'Receives', ''], letterRows, 'The dead-letter queue is empty.')),
    section('Quarantine',
      h('p', { class: 'muted', text: 'Verified bodies that could not be read, kept raw. Retry reads them again with the current rules (terima quarantine retry).' }),
      table(['Received', 'Provider', 'Reason', 'Detail', 'Retried', ''], quarantineRows, 'Nothing is quarantined.')),
    section('Conflicts',
      h('p', { class: 'muted', text: 'One work key seen with two bodies: both were processed.' }),
      table(['Detected', 'Provider', 'Resource', 'First', 'Second'], conflictRows, 'No conflicts.')));
}

function retryButton(id) {
  return action('Retry', `Read quarantined body ${id} again with the current rules, and queue it if it reads?`,
    async () => { const r = await post(`/api/quarantine/${enc(id)}/retry`); setTimeout(route, 300); return `Retry: ${r.outcome}`; });
}

async function quarantinePage(id) {
  const q = await api('/api/quarantine/' + enc(id));
  const headers = Object.entries(q.headers || {});
  page(`Quarantined ${q.provider} body`,
    h('p', { class: 'subtitle' }, h('code', { text: q.id }), ' ', badge('reason', q.reason)),
    q.retried ? null : h('div', { class: 'actions-row' }, retryButton(q.id)),
    facts([['Provider', q.provider], ['Received at', time(q.received_at)], ['Request id', q.request_id],
      ['Reason', q.reason], ['Detail', q.detail], ['Retried', q.retried ? `${q.retried.outcome} at ${q.retried.at}` : null],
      ['Body', `${q.body_size} bytes`]]),
    section('Headers that matter', headers.length ? h('table', { class: 'kv' }, h('tbody', {}, ...headers.map(([k, v]) => h('tr', {}, h('th', { scope: 'row', text: k }), h('td', {}, h('code', { text: v })))))) : h('p', { class: 'muted', text: 'None kept.' })),
    section('Body', pre(q.body_pretty, 'Quarantined body')));
}

// ---- keyboard ------------------------------------------------------------

function selectedRow(rows) {
  return rows.findIndex((r) => r.getAttribute('aria-selected') === 'true');
}

document.addEventListener('keydown', (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (document.querySelector('dialog[open]')) return;
  const typing = event.target.closest('input, select, textarea, [contenteditable]');
  if (typing) {
    if (event.key === 'Escape') event.target.blur();
    return;
  }
  const rows = Array.from(document.querySelectorAll('table.nav tbody tr'));
  const at = selectedRow(rows);
  const select = (i) => {
    if (!rows.length) return;
    const next = Math.max(0, Math.min(rows.length - 1, i));
    rows.forEach((r) => r.removeAttribute('aria-selected'));
    rows[next].setAttribute('aria-selected', 'true');
    rows[next].focus();
  };
  switch (event.key) {
    case 'j': select(at + 1); break;
    case 'k': select(at < 0 ? 0 : at - 1); break;
    case 'Enter':
      if (at >= 0 && event.target === rows[at] && rows[at].dataset.href) location.hash = rows[at].dataset.href;
      else return;
      break;
    case '/': {
      const field = document.querySelector('form.filters input, form.filters select');
      if (!field) return;
      field.closest('details').open = true;
      field.focus();
      break;
    }
    case 'l': location.hash = '#/'; break;
    case 'd': location.hash = '#/dead'; break;
    case 'u': history.back(); break;
    case '?': document.getElementById('help').showModal(); break;
    default: return;
  }
  event.preventDefault();
});

document.getElementById('help-open').addEventListener('click', () => document.getElementById('help').showModal());
document.getElementById('skip').addEventListener('click', (event) => { event.preventDefault(); main.focus(); });
window.addEventListener('hashchange', () => { route(); main.focus({ preventScroll: true }); });
api('/api/info').then((i) => { info = i; }).catch(() => {}).finally(route);
