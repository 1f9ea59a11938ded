// The trace viewer's page: the list of traces the daemon holds, the datagrams it refused, and
// one trace as a waterfall with each document's fields.
//
// Hash routing: `#/` is the list, `#/?q=…&errors=1&min_ms=…&annotation=…` the list filtered
// (the server filters; the filter lives in the URL so it survives a reload), `#/trace/<id>` a
// trace. Data comes from the JSON API under /daemon/viewer/api/ and live updates from its
// Server-Sent Events stream; live updates can be paused.
//
// On a trace's page: its critical path is marked, its errors can be stepped through, the
// server's instrumentation hints sit beside their rows, and the trace downloads as JSON Lines.
// A JSON Lines file dropped on the page (or picked with "Load file…") is sent to the server,
// which adds its documents to the store. Keys (listed under "? Keys" on the page): j/k move,
// Enter opens, h/l collapse/expand, 1-9/0 set the depth shown, e/E step through errors, `/`
// filters, `?` shows the keys.
//
// Every string in a document is untrusted: it reaches the DOM only through textContent or
// setAttribute of non-URL attributes, never as markup to parse. The URLs we build put an id only
// through encodeURIComponent: a row's link is a fragment, `#/trace/` + the encoded id, which
// cannot leave the page; the download link is API + `traces/` + the encoded id + `/download`,
// which cannot leave the API's path.
// The server's CSP (`default-src 'self'`) also forbids inline styles, so bars are placed
// through element.style from here.
'use strict';

(function () {
  const API = '/daemon/viewer/api/';
  const LIST_LIMIT = 1000; // rows drawn; the store's byte budget bounds the rest
  const REFUSED_LIMIT = 50; // the server keeps the same number
  const RESYNC_MS = 30000; // full list refetch: catches evictions, refreshes store stats
  const TICK_MS = 250; // in-progress bars grow at this pace
  const FILTER_TYPING_MS = 300; // a filter box applies this long after the last keystroke
  const FILTERED_RELOAD_MS = 1000; // live changes under a filter: one refetch per this long
  // (each makes the server go through its whole store)

  const state = {
    traces: new Map(), // trace_id -> Summary
    refused: [],
    store: null,
    listLoaded: false,
    streamed: new Map(), // summaries the stream brought since the last list request was sent
    listError: null,
    route: { view: 'list', id: null },
    trace: null, // { id, status: 'loading'|'ok'|'missing'|'error', data, tree, message }
    selected: null, // node id whose details are open
    detailsKey: null, // node id + document seq shown in the details panel
    tab: 'overview',
    collapsed: new Set(), // node ids whose descendants are hidden
    filter: emptyFilter(), // what the list shows; mirrors the URL's `#/?…`
    listFiltered: false, // `traces` holds a filtered answer (the stream's summaries do not apply)
    listSelected: null, // trace id of the list's row selected by j/k
    paused: false, // live updates are held back (counted, not applied)
    pausedUpdates: 0,
  };

  // ---------------------------------------------------------------- small helpers

  function $(id) {
    return document.getElementById(id);
  }

  // An element with an optional class and text (text always through textContent).
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function num(value) {
    return typeof value === 'number' && Number.isFinite(value) ? value : null;
  }

  function str(value) {
    return typeof value === 'string' ? value : value === undefined || value === null ? '' : String(value);
  }

  function isObject(value) {
    return value !== null && typeof value === 'object' && !Array.isArray(value);
  }

  function pad(n, width) {
    return String(n).padStart(width, '0');
  }

  // Unix seconds -> local "YYYY-MM-DD HH:MM:SS.mmm".
  function fmtDateTime(t) {
    if (num(t) === null) return '';
    const d = new Date(t * 1000);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1, 2)}-${pad(d.getDate(), 2)} ` + fmtClock(t);
  }

  // Unix seconds -> local "HH:MM:SS.mmm".
  function fmtClock(t) {
    if (num(t) === null) return '';
    const d = new Date(t * 1000);
    return `${pad(d.getHours(), 2)}:${pad(d.getMinutes(), 2)}:${pad(d.getSeconds(), 2)}.${pad(d.getMilliseconds(), 3)}`;
  }

  // Milliseconds with a precision that suits their size.
  function fmtMs(ms) {
    if (num(ms) === null) return '';
    if (ms >= 60000) return (ms / 60000).toFixed(1) + ' min';
    if (ms >= 10000) return (ms / 1000).toFixed(1) + ' s';
    const digits = ms < 10 ? 2 : ms < 100 ? 1 : 0;
    return ms.toFixed(digits) + ' ms';
  }

  function fmtBytes(n) {
    if (num(n) === null) return '?';
    if (n < 1024) return n + ' B';
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + ' KiB';
    return (n / (1024 * 1024)).toFixed(1) + ' MiB';
  }

  function traceHref(id) {
    return '#/trace/' + encodeURIComponent(id);
  }

  function plural(n, one, many) {
    return `${n} ${n === 1 ? one : many}`;
  }

  // The error of an answer that is not 2xx: the server's own words (its errors are plain text).
  async function answerError(res, path) {
    let text = '';
    try {
      text = (await res.text()).trim();
    } catch (err) {
      // no body: the status says it
    }
    return new Error(text || `the daemon answered ${res.status} ${res.statusText} for ${API + path}`);
  }

  // GET a JSON document of the API: { body } or { missing: true } on 404; throws otherwise.
  async function getJSON(path) {
    const res = await fetch(API + path, { headers: { Accept: 'application/json' }, cache: 'no-store' });
    if (res.status === 404) return { missing: true };
    if (!res.ok) throw await answerError(res, path);
    return { body: await res.json() };
  }

  // POST to the API (the browser adds the Origin header the server checks); the JSON answer,
  // or throws with the server's message.
  async function postJSON(path, body, contentType) {
    const init = { method: 'POST', headers: { Accept: 'application/json' }, cache: 'no-store' };
    if (body !== undefined) {
      init.body = body;
      init.headers['Content-Type'] = contentType;
    }
    const res = await fetch(API + path, init);
    if (!res.ok) throw await answerError(res, path);
    return res.json();
  }

  function errorMessage(err) {
    return err && err.message ? err.message : String(err);
  }

  // A line at the top of the page saying what an action did (or why it failed); '' hides it.
  function notice(text, isError) {
    const box = $('notice');
    $('notice-text').textContent = text;
    box.classList.toggle('notice-error', Boolean(isError));
    box.hidden = !text;
  }

  // Runs `job` with at most one call in flight; a call asked for meanwhile runs once after it.
  function coalesced(job) {
    let running = false;
    let again = false;
    return function run() {
      if (running) {
        again = true;
        return;
      }
      running = true;
      Promise.resolve()
        .then(job)
        .catch(() => {}) // jobs report their own failures on the page
        .finally(() => {
          running = false;
          if (again) {
            again = false;
            run();
          }
        });
    };
  }

  // ---------------------------------------------------------------- the list's filter

  // The filter's parts, as the API's query parameters name them: `q` (text in the trace id,
  // a name, the root's URL or method), `errors` (an error, fault or throttle somewhere),
  // `min_ms` (lasting at least that long) and `annotation` (`key=value`, or `key` alone).
  function emptyFilter() {
    return { q: '', errors: false, min_ms: '', annotation: '' };
  }

  // A minimum duration the server accepts: milliseconds, 0 or more. Anything else is left out
  // rather than sent (the server would answer 400, and the browser log it).
  function validMinMs(text) {
    return /^\d+(\.\d+)?$/.test(text) ? text : '';
  }

  // The filter from a query string (the part of the hash after `?`).
  function parseFilter(query) {
    const params = new URLSearchParams(query);
    return {
      q: (params.get('q') || '').trim(),
      errors: params.get('errors') === '1',
      min_ms: validMinMs((params.get('min_ms') || '').trim()),
      annotation: (params.get('annotation') || '').trim(),
    };
  }

  // The filter as a query string, '' when it lets everything through. Percent-encoded by
  // encodeURIComponent (a space is %20, `=` in an annotation %3D), for the URL and the API alike.
  function filterQuery(f) {
    const parts = [];
    if (f.q) parts.push('q=' + encodeURIComponent(f.q));
    if (f.errors) parts.push('errors=1');
    if (f.min_ms) parts.push('min_ms=' + encodeURIComponent(f.min_ms));
    if (f.annotation) parts.push('annotation=' + encodeURIComponent(f.annotation));
    return parts.join('&');
  }

  function filterOn() {
    return filterQuery(state.filter) !== '';
  }

  // The list's fragment with the current filter.
  function listHash() {
    const query = filterQuery(state.filter);
    return query ? '#/?' + query : '#/';
  }

  function writeFilterInputs() {
    const f = state.filter;
    $('filter-q').value = f.q;
    $('filter-errors').checked = f.errors;
    $('filter-min-ms').value = f.min_ms;
    $('filter-annotation').value = f.annotation;
    $('filter-clear').hidden = !filterOn();
  }

  // Takes a new filter: into the URL (replacing the entry: a keystroke is no history), then a
  // fresh list from the server.
  function setFilter(f) {
    const before = filterQuery(state.filter);
    state.filter = f;
    $('filter-clear').hidden = !filterOn();
    $('back').setAttribute('href', listHash());
    if (filterQuery(f) === before) return;
    if (state.route.view === 'list') history.replaceState(null, '', listHash());
    state.listSelected = null;
    loadList();
  }

  function filterFromInputs() {
    const minMs = $('filter-min-ms');
    return {
      q: $('filter-q').value.trim(),
      errors: $('filter-errors').checked,
      // a number box holds '' while what is typed is not a number
      min_ms: minMs.validity.valid ? validMinMs(minMs.value.trim()) : '',
      annotation: $('filter-annotation').value.trim(),
    };
  }

  function wireFilter() {
    let typing = null;
    const applySoon = () => {
      if (typing !== null) clearTimeout(typing);
      typing = setTimeout(() => {
        typing = null;
        setFilter(filterFromInputs());
      }, FILTER_TYPING_MS);
    };
    const applyNow = () => {
      if (typing !== null) clearTimeout(typing);
      typing = null;
      setFilter(filterFromInputs());
    };
    for (const id of ['filter-q', 'filter-min-ms', 'filter-annotation']) $(id).addEventListener('input', applySoon);
    $('filter-errors').addEventListener('change', applyNow);
    $('filter').addEventListener('submit', (event) => {
      event.preventDefault();
      applyNow();
    });
    $('filter-clear').addEventListener('click', () => {
      if (typing !== null) clearTimeout(typing);
      typing = null;
      setFilter(emptyFilter());
      writeFilterInputs();
      $('filter-q').focus();
    });
  }

  // ---------------------------------------------------------------- list data

  // Merges a Summary from the stream: a newer `updated` wins, an older one is stale.
  function mergeSummary(s) {
    if (!isObject(s) || typeof s.trace_id !== 'string') return;
    const old = state.traces.get(s.trace_id);
    if (old && num(old.updated) !== null && num(s.updated) !== null && old.updated > s.updated) return;
    state.traces.set(s.trace_id, s);
  }

  function refusalKey(r) {
    return [r.at, r.sender, r.reason, r.first_bytes].join('\u0000');
  }

  function addRefusal(r) {
    if (!isObject(r)) return;
    const key = refusalKey(r);
    if (state.refused.some((x) => refusalKey(x) === key)) return;
    state.refused.unshift(r);
    state.refused.sort((a, b) => (num(b.at) || 0) - (num(a.at) || 0));
    state.refused.length = Math.min(state.refused.length, REFUSED_LIMIT);
  }

  const loadList = coalesced(async function () {
    const query = filterQuery(state.filter);
    state.streamed = new Map();
    try {
      const { body } = await getJSON(query ? 'traces?' + query : 'traces');
      // The filter changed meanwhile: this answer is for the old one (a new load is queued).
      if (filterQuery(state.filter) !== query) return;
      const fetched = Array.isArray(body && body.traces) ? body.traces : [];
      const filtered = query !== '' || (body && body.filtered === true);
      // The snapshot replaces what we hold (a trace it lacks was evicted or cleared), except
      // that a summary the stream brought while it was on its way may be newer (the later
      // `updated` wins). Under a filter the stream is not merged at all.
      state.listFiltered = filtered;
      state.traces = new Map();
      for (const s of fetched) mergeSummary(s);
      if (!filtered) for (const s of state.streamed.values()) mergeSummary(s);
      state.streamed = new Map();
      const refused = Array.isArray(body && body.refused) ? body.refused : [];
      const streamedRefusals = state.refused;
      state.refused = [];
      for (const r of refused.concat(streamedRefusals)) addRefusal(r);
      state.store = isObject(body && body.store) ? body.store : null;
      state.listLoaded = true;
      state.listError = null;
    } catch (err) {
      state.listError = `Could not load the traces: ${errorMessage(err)}`;
    }
    scheduleListRender();
    renderStore();
  });

  // A job run once, `wait` ms (or what `wait()` returns) after the first of any calls made
  // before it runs: a burst of changes costs one run.
  function deferred(wait, job) {
    let timer = null;
    return function schedule() {
      if (timer !== null) return;
      timer = setTimeout(() => {
        timer = null;
        job();
      }, typeof wait === 'function' ? wait() : wait);
    };
  }

  // Under a filter a live change cannot be placed by the page (does the trace still match?):
  // the server is asked again, at most once per FILTERED_RELOAD_MS. Not while paused (one
  // scheduled just before the pause waits for the resume, which loads the list anyway).
  const scheduleFilteredReload = deferred(FILTERED_RELOAD_MS, () => {
    if (!state.paused) loadList();
  });

  // After changes, a fresh snapshot at most every few seconds: it brings the store's figures
  // (documents, bytes, evictions) that the stream does not carry.
  const scheduleResync = deferred(5000, () => {
    if (!state.paused) loadList();
  });

  // ---------------------------------------------------------------- list rendering

  // A long list is costly to redraw: batch more.
  const scheduleListRender = deferred(
    () => (state.traces.size > 200 ? 250 : 50),
    () => {
      if (state.route.view === 'list') renderList();
    },
  );

  function renderStore() {
    const s = state.store;
    if (!s) return;
    const parts = [
      `${s.traces} traces`,
      `${s.documents} documents`,
      `${fmtBytes(s.bytes)} of ${fmtBytes(s.budget_bytes)}`,
    ];
    if (s.evicted_traces) parts.push(`${s.evicted_traces} evicted`);
    $('store-stats').textContent = parts.join(' · ');
  }

  function marksOf(s) {
    const status = num(s.status);
    const marks = [];
    if (s.fault || (status !== null && status >= 500)) marks.push(['mark-fault', 'fault', 'a fault (5xx)']);
    if (s.throttle || status === 429) marks.push(['mark-throttle', 'throttle', 'throttled (429)']);
    if (s.error || (status !== null && status >= 400 && status < 500)) marks.push(['mark-error', 'error', 'an error (4xx)']);
    if (s.in_progress) marks.push(['mark-in-progress', 'in progress', 'still in progress']);
    return marks;
  }

  function statusClass(status) {
    if (status === null) return '';
    if (status >= 500) return 'st-fault';
    if (status === 429) return 'st-throttle';
    if (status >= 400) return 'st-error';
    return 'st-ok';
  }

  function traceRow(s) {
    const tr = el('tr', 'trace-row');
    tr.setAttribute('data-trace-id', s.trace_id);
    if (s.trace_id === state.listSelected) {
      tr.classList.add('selected');
      tr.setAttribute('aria-current', 'true');
    }
    const href = traceHref(s.trace_id);

    const marks = el('td', 'col-marks');
    for (const [cls, text, title] of marksOf(s)) {
      const mark = el('span', 'mark ' + cls, text);
      mark.setAttribute('title', title);
      marks.appendChild(mark);
    }
    tr.appendChild(marks);

    const nameCell = el('td', 'col-name');
    const link = el('a', 'trace-name', str(s.name) || '(unnamed)');
    link.setAttribute('href', href); // a fragment built from an encoded id, see the top
    nameCell.appendChild(link);
    tr.appendChild(nameCell);

    const req = el('td', 'col-request');
    if (s.method) req.appendChild(el('span', 'method', s.method));
    if (s.url) req.appendChild(el('span', 'url', s.url));
    tr.appendChild(req);

    const status = num(s.status);
    tr.appendChild(el('td', 'num status ' + statusClass(status), status === null ? '' : status));

    const start = el('td', 'col-start', fmtClock(s.start));
    if (num(s.start) !== null) start.setAttribute('title', fmtDateTime(s.start));
    tr.appendChild(start);

    const dur = num(s.duration);
    tr.appendChild(el('td', 'num', dur === null ? (s.in_progress ? '…' : '') : fmtMs(dur * 1000)));
    tr.appendChild(el('td', 'num', num(s.documents) === null ? '' : s.documents));
    tr.appendChild(el('td', 'mono trace-id', s.trace_id));

    // The whole row navigates; the name stays a real link (new tab, keyboard).
    tr.addEventListener('click', (event) => {
      if (event.target.closest('a')) return;
      location.hash = href;
    });
    return tr;
  }

  function refusedRow(r) {
    const li = el('li', 'refused-row');
    const head = el('div', 'refused-head');
    head.appendChild(el('span', 'refused-at', fmtDateTime(r.at)));
    head.appendChild(el('code', 'refused-reason', str(r.reason)));
    head.appendChild(el('span', 'refused-sender', 'from ' + str(r.sender)));
    li.appendChild(head);
    li.appendChild(el('p', 'refused-message', str(r.message)));
    li.appendChild(el('pre', 'refused-bytes', str(r.first_bytes)));
    return li;
  }

  function renderList() {
    const message = $('list-message');
    message.hidden = !state.listError;
    message.textContent = state.listError || '';

    const rows = Array.from(state.traces.values()).sort((a, b) => (num(b.updated) || 0) - (num(a.updated) || 0));
    const empty = rows.length === 0;
    $('empty-state').hidden = !(empty && state.listLoaded && !state.listFiltered);
    $('filter-none').hidden = !(empty && state.listLoaded && state.listFiltered);
    $('trace-list').hidden = empty;
    $('trace-count').textContent = empty ? '' : state.listFiltered ? `(${rows.length} matching)` : `(${rows.length})`;
    const frag = document.createDocumentFragment();
    for (const s of rows.slice(0, LIST_LIMIT)) frag.appendChild(traceRow(s));
    $('trace-rows').replaceChildren(frag);
    $('list-note').textContent =
      rows.length > LIST_LIMIT ? `Showing the ${LIST_LIMIT} most recently updated of ${rows.length} traces.` : '';

    $('refused-count').textContent = state.refused.length ? `(${state.refused.length})` : '';
    $('refused-none').hidden = state.refused.length > 0;
    const refused = document.createDocumentFragment();
    for (const r of state.refused) refused.appendChild(refusedRow(r));
    $('refused-rows').replaceChildren(refused);
    renderStore();
  }

  // j/k on the list: the row `step` away from the selected one (the first when none is).
  function moveListSelection(step) {
    const rows = Array.from(document.querySelectorAll('#trace-rows tr.trace-row'));
    if (!rows.length) return;
    const at = rows.findIndex((r) => r.getAttribute('data-trace-id') === state.listSelected);
    const next = at < 0 ? 0 : Math.min(Math.max(at + step, 0), rows.length - 1);
    state.listSelected = rows[next].getAttribute('data-trace-id');
    for (const r of rows) {
      const on = r === rows[next];
      r.classList.toggle('selected', on);
      if (on) r.setAttribute('aria-current', 'true');
      else r.removeAttribute('aria-current');
    }
    rows[next].scrollIntoView({ block: 'nearest' });
  }

  function openSelectedTrace() {
    if (state.listSelected !== null && state.traces.has(state.listSelected)) {
      location.hash = traceHref(state.listSelected);
    }
  }

  // ---------------------------------------------------------------- one trace: the tree

  // A node's bar class: in progress first (it has no outcome yet), then the worst outcome.
  function barClass(node) {
    const seg = node.seg;
    const status = num(isObject(seg.http) && isObject(seg.http.response) ? seg.http.response.status : null);
    if (node.inProgress) return 'bar-in-progress';
    if (seg.fault === true || (status !== null && status >= 500)) return 'bar-fault';
    if (seg.throttle === true || status === 429) return 'bar-throttle';
    if (seg.error === true || (status !== null && status >= 400 && status < 500)) return 'bar-error';
    return 'bar-ok';
  }

  // Builds the waterfall's tree from the documents (in arrival order).
  //
  // Every segment and subsegment is a node keyed by id: nested `subsegments` hang under the
  // node that holds them, other documents under the node named by their `parent_id`, in any
  // document of the trace (so a service's segment nests under the calling service's
  // subsegment). When an id comes twice, the later document wins, except that an in-progress
  // one never replaces a complete one. A parent that never arrived makes its child a root
  // marked as an orphan.
  function buildTree(docs) {
    const nodes = new Map();
    let order = 0;
    let unnamed = 0;

    // A document's segment and its nested subsegments, depth first in document order (a work
    // list, not recursion: the nesting is the sender's).
    function visit(segment, doc) {
      const work = [{ seg: segment, parentId: null, embedded: false }];
      while (work.length) {
        const { seg, parentId, embedded } = work.pop();
        if (!isObject(seg)) continue;
        const id = typeof seg.id === 'string' && seg.id !== '' ? seg.id : `(no id #${++unnamed})`;
        const ownParent = typeof seg.parent_id === 'string' && seg.parent_id !== '' ? seg.parent_id : null;
        const node = {
          id,
          seg,
          doc,
          parentId: parentId !== null ? parentId : ownParent,
          embedded,
          inProgress: seg.in_progress === true,
          start: num(seg.start_time),
          end: num(seg.end_time),
          order: order++,
          children: [],
          missingParent: null,
        };
        const old = nodes.get(id);
        if (!old || !(node.inProgress && !old.inProgress)) nodes.set(id, node);
        if (Array.isArray(seg.subsegments)) {
          const subs = seg.subsegments;
          for (let i = subs.length - 1; i >= 0; i--) work.push({ seg: subs[i], parentId: id, embedded: true });
        }
      }
    }
    for (const doc of docs) if (isObject(doc)) visit(doc.segment, doc);

    const roots = [];
    for (const node of nodes.values()) {
      const parent = node.parentId !== null ? nodes.get(node.parentId) : undefined;
      if (parent && parent !== node) {
        parent.children.push(node);
      } else {
        if (node.parentId !== null && !parent) node.missingParent = node.parentId;
        roots.push(node);
      }
    }
    const byStart = (a, b) => {
      const sa = a.start === null ? Infinity : a.start;
      const sb = b.start === null ? Infinity : b.start;
      return sa - sb || a.order - b.order;
    };

    // Depth-first into display order, with a work list (a parent_id chain can be as deep as
    // the trace is long); `seen` guards against parent_id cycles, whose members no root
    // reaches: they are added as roots afterwards.
    const rows = [];
    const seen = new Set();
    function walk(top) {
      const work = [{ node: top, depth: 0 }];
      while (work.length) {
        const { node, depth } = work.pop();
        if (seen.has(node)) continue;
        seen.add(node);
        rows.push({ node, depth });
        node.children.sort(byStart);
        for (let i = node.children.length - 1; i >= 0; i--) work.push({ node: node.children[i], depth: depth + 1 });
      }
    }
    roots.sort(byStart);
    for (const root of roots) walk(root);
    for (const node of nodes.values()) {
      if (!seen.has(node)) {
        node.missingParent = node.parentId;
        roots.push(node);
        walk(node);
      }
    }

    let t0 = Infinity;
    let tEnd = -Infinity;
    let inProgress = false;
    const counts = { error: 0, fault: 0, throttle: 0, inProgress: 0 };
    for (const node of nodes.values()) {
      if (node.start !== null) t0 = Math.min(t0, node.start);
      if (node.end !== null) tEnd = Math.max(tEnd, node.end);
      if (node.inProgress) inProgress = true;
      const cls = barClass(node);
      if (cls === 'bar-error') counts.error++;
      if (cls === 'bar-fault') counts.fault++;
      if (cls === 'bar-throttle') counts.throttle++;
      if (cls === 'bar-in-progress') counts.inProgress++;
    }
    // The nodes that e/E step through, in display order.
    const problems = rows.map((r) => r.node).filter((node) => PROBLEM_BARS.has(barClass(node)));
    const tree = { nodes, roots, rows, t0, tEnd, inProgress, counts, problems };
    tree.critical = criticalPath(tree);
    return tree;
  }

  const PROBLEM_BARS = new Set(['bar-error', 'bar-throttle', 'bar-fault']);

  // The ids of the nodes on the trace's critical path: what the root's end waited for.
  //
  // From a root (a node whose parent is not missing), among its children take the one that
  // ends last (its end clamped to the parent's), then again and again the child ending latest
  // at or before the start of the one taken before; each child taken is on the path and the
  // walk goes on into it (with its clamped end). A node without children ends the path there.
  // A child with no start cannot be placed and is never taken; an open one ends "now", that
  // is at its parent's end. A tie on the end goes to the child drawn first (the earlier start).
  //
  // The children are sorted by their clamped end once: each pick is then the first one not
  // yet taken from where the ends reach the limit (a binary search, then a skip over the taken
  // ones): O(k log k) for k children, where scanning them all for every pick was O(k²). The
  // tree is walked with a work list, in the order a recursion would take.
  function criticalPath(tree) {
    const path = new Set();
    const endOf = (node) => (node.end !== null ? node.end : node.inProgress ? Infinity : node.start);

    // The children on the path under `node`, which ends at `end`, as [{ child, end }].
    function picks(node, end) {
      const candidates = [];
      for (const child of node.children) {
        if (child.start === null || path.has(child.id)) continue;
        candidates.push({ child, end: Math.min(endOf(child), end) });
      }
      // Latest end first; a stable sort keeps the display order (earlier start) on a tie.
      candidates.sort((a, b) => (a.end === b.end ? 0 : a.end > b.end ? -1 : 1));
      const k = candidates.length;
      // next[i]: the first candidate at or after i not yet taken (k: none), path-compressed.
      const next = Array.from({ length: k + 1 }, (_, i) => i);
      const untaken = (i) => {
        let root = i;
        while (next[root] !== root) root = next[root];
        while (next[i] !== root) {
          const up = next[i];
          next[i] = root;
          i = up;
        }
        return root;
      };
      // The first candidate ending at or before `limit`.
      const firstWithin = (limit) => {
        let lo = 0;
        let hi = k;
        while (lo < hi) {
          const mid = (lo + hi) >> 1;
          if (candidates[mid].end > limit) lo = mid + 1;
          else hi = mid;
        }
        return lo;
      };
      const taken = [];
      let limit = Infinity;
      for (;;) {
        const i = untaken(firstWithin(limit));
        if (i >= k) break;
        next[i] = i + 1;
        taken.push(candidates[i]);
        limit = candidates[i].child.start;
      }
      return taken;
    }

    for (const root of tree.roots) {
      if (root.missingParent !== null) continue;
      const rootEnd = endOf(root);
      const work = [{ node: root, end: rootEnd === null ? Infinity : rootEnd }];
      while (work.length) {
        const { node, end } = work.pop();
        path.add(node.id);
        const taken = picks(node, end);
        for (let i = taken.length - 1; i >= 0; i--) work.push({ node: taken[i].child, end: taken[i].end });
      }
    }
    return path;
  }

  // ---------------------------------------------------------------- one trace: loading

  const loadTrace = coalesced(async function () {
    const id = state.route.id;
    if (state.route.view !== 'trace' || id === null) return;
    let next;
    try {
      const res = await getJSON('traces/' + encodeURIComponent(id));
      if (res.missing) {
        next = { id, status: 'missing' };
      } else {
        const docs = Array.isArray(res.body && res.body.documents) ? res.body.documents : [];
        const tree = buildTree(docs);
        next = { id, status: 'ok', data: res.body, tree, hints: indexHints(res.body && res.body.hints, tree) };
      }
    } catch (err) {
      next = { id, status: 'error', message: `Could not load the trace: ${errorMessage(err)}` };
    }
    if (state.route.view === 'trace' && state.route.id === id) {
      state.trace = next;
      renderTrace();
    }
  });

  // The server's instrumentation hints ({id, rule, message}), by node id; those of the whole
  // trace (id null) or of an id with no row go to the trace's header.
  function indexHints(hints, tree) {
    const byNode = new Map();
    const trace = [];
    for (const h of Array.isArray(hints) ? hints : []) {
      if (!isObject(h)) continue;
      const hint = { id: typeof h.id === 'string' ? h.id : null, rule: str(h.rule), message: str(h.message) };
      if (hint.id !== null && tree.nodes.has(hint.id)) {
        if (!byNode.has(hint.id)) byNode.set(hint.id, []);
        byNode.get(hint.id).push(hint);
      } else {
        trace.push(hint);
      }
    }
    return { byNode, trace };
  }

  // A list of hints: each message, and the rule's key (what the server calls it).
  function hintList(hints) {
    const ul = el('ul', 'hint-list');
    for (const h of hints) {
      const li = el('li', 'hint-item');
      li.setAttribute('data-rule', h.rule);
      li.appendChild(el('span', 'hint-message', h.message));
      if (h.rule) li.appendChild(el('code', 'hint-rule', h.rule));
      ul.appendChild(li);
    }
    return ul;
  }

  // ---------------------------------------------------------------- one trace: rendering

  let rowRefs = []; // { node, bar, duration } of the drawn rows, for layout()
  let rowIndex = new Map(); // node id -> its index in rowRefs
  let tickTimer = null;

  function renderTrace() {
    const t = state.trace;
    const message = $('trace-message');
    const body = $('trace-body');
    if (!t || t.status !== 'ok') {
      body.hidden = true;
      message.hidden = false;
      rowRefs = [];
      rowIndex = new Map();
      stopTicking();
      if (!t || t.status === 'loading') message.textContent = 'Loading…';
      else if (t.status === 'missing')
        message.textContent =
          `Trace ${t.id} is not in the store. It may not have arrived yet (this page shows it as soon ` +
          'as it does), or it was evicted to keep the store within its memory budget.';
      else message.textContent = t.message;
      return;
    }
    message.hidden = true;
    body.hidden = false;
    document.title = `${str(t.data.summary && t.data.summary.name) || t.id}: X-Ray trace`;
    renderHeader(t);
    renderWaterfall(t.tree);
    renderErrorPosition();
    layout();
    if (t.tree.inProgress) startTicking();
    else stopTicking();

    const selected = state.selected !== null ? t.tree.nodes.get(state.selected) : undefined;
    if (selected) renderDetails(selected, false);
    else renderDetails(null, false);
  }

  function renderHeader(t) {
    const s = isObject(t.data.summary) ? t.data.summary : {};
    const tree = t.tree;
    const header = $('trace-header');
    const title = el('h2', 'trace-title');
    const firstRoot = tree.rows.length ? tree.rows[0].node : null;
    title.appendChild(el('span', 'trace-name', str(s.name) || (firstRoot ? str(firstRoot.seg.name) : '') || '(unnamed)'));
    if (s.method || s.url) {
      title.appendChild(el('span', 'trace-request', [s.method, s.url].filter(Boolean).join(' ')));
    }
    const facts = el('dl', 'facts');
    function fact(label, value, className) {
      const wrap = el('div', 'fact' + (className ? ' ' + className : ''));
      wrap.appendChild(el('dt', null, label));
      wrap.appendChild(el('dd', null, value));
      facts.appendChild(wrap);
    }
    fact('Trace id', t.id, 'mono');
    if (num(s.status) !== null) fact('Status', s.status, statusClass(s.status));
    if (num(s.start) !== null) fact('Started', fmtDateTime(s.start));
    fact('Duration', num(s.duration) !== null ? fmtMs(s.duration * 1000) : s.in_progress ? 'in progress' : '?');
    fact('Documents', num(s.documents) !== null ? s.documents : Array.isArray(t.data.documents) ? t.data.documents.length : '?');
    fact('Spans', tree.nodes.size);
    fact('Errors', tree.counts.error, tree.counts.error ? 'st-error' : '');
    fact('Throttles', tree.counts.throttle, tree.counts.throttle ? 'st-throttle' : '');
    fact('Faults', tree.counts.fault, tree.counts.fault ? 'st-fault' : '');
    if (tree.counts.inProgress) fact('In progress', tree.counts.inProgress);

    const tools = el('div', 'trace-tools');
    tools.appendChild(errorNav(tree));
    const download = el('a', 'btn', 'Download JSON Lines');
    download.id = 'download';
    // The id only encoded, so the link stays under the API's path (see the top).
    download.setAttribute('href', API + 'traces/' + encodeURIComponent(t.id) + '/download');
    // Empty: the file's name is the server's (its Content-Disposition), one rule in one place.
    download.setAttribute('download', '');
    download.setAttribute('title', 'Every document of this trace, one per line, as received');
    tools.appendChild(download);

    const parts = [title, facts, tools];
    if (t.hints.trace.length) {
      const box = el('section', 'hints trace-hints');
      box.id = 'trace-hints';
      box.appendChild(el('h3', 'hints-title', '⚠ Instrumentation hints for the whole trace'));
      box.appendChild(hintList(t.hints.trace));
      parts.push(box);
    }
    header.replaceChildren(...parts);
  }

  // "N spans with an error, fault or throttle" and the buttons that step through them (e, E).
  function errorNav(tree) {
    const nav = el('div', 'error-nav');
    const n = tree.problems.length;
    const text = n ? plural(n, 'span', 'spans') + ' with an error, fault or throttle' : 'No error, fault or throttle';
    const count = el('span', 'error-count', text);
    count.id = 'error-count';
    if (n) count.classList.add('st-error');
    nav.appendChild(count);
    const prev = el('button', 'btn', '↑ previous error');
    prev.id = 'prev-error';
    prev.setAttribute('type', 'button');
    prev.setAttribute('aria-keyshortcuts', 'Shift+E');
    prev.setAttribute('title', 'Select the previous error, fault or throttle (E)');
    const next = el('button', 'btn', '↓ next error');
    next.id = 'next-error';
    next.setAttribute('type', 'button');
    next.setAttribute('aria-keyshortcuts', 'E');
    next.setAttribute('title', 'Select the next error, fault or throttle (e)');
    prev.disabled = next.disabled = n === 0;
    prev.addEventListener('click', () => jumpError(-1));
    next.addEventListener('click', () => jumpError(1));
    const position = el('span', 'error-position');
    position.id = 'error-position';
    nav.append(prev, next, position);
    return nav;
  }

  // "2 of 3" beside the buttons when the selected row is one of them.
  function renderErrorPosition() {
    const position = $('error-position');
    const t = state.trace;
    if (!position || !t || t.status !== 'ok') return;
    const at = t.tree.problems.findIndex((node) => node.id === state.selected);
    position.textContent = at < 0 ? '' : `${at + 1} of ${t.tree.problems.length}`;
  }

  function kindOf(node) {
    const seg = node.seg;
    if (seg.type === 'subsegment' || node.embedded) return seg.namespace ? str(seg.namespace) : 'subsegment';
    return 'segment';
  }

  function renderWaterfall(tree) {
    const frag = document.createDocumentFragment();
    rowRefs = [];
    rowIndex = new Map();
    for (const { node, depth } of tree.rows) {
      const row = el('div', 'span-row');
      row.setAttribute('data-id', node.id);
      row.setAttribute('data-depth', String(depth));
      row.setAttribute('tabindex', '0');
      if (node.missingParent !== null) row.classList.add('orphan');
      if (kindOf(node) === 'segment') row.classList.add('is-segment');
      if (node.id === state.selected) row.classList.add('selected');
      const critical = tree.critical.has(node.id);
      if (critical) row.classList.add('critical');

      const label = el('div', 'span-label');
      label.style.paddingLeft = depth * 16 + 4 + 'px';
      let toggle = null;
      if (node.children.length) {
        toggle = el('button', 'toggle');
        toggle.setAttribute('type', 'button');
        toggle.addEventListener('click', (event) => {
          event.stopPropagation();
          if (state.collapsed.has(node.id)) state.collapsed.delete(node.id);
          else state.collapsed.add(node.id);
          applyCollapse();
        });
        label.appendChild(toggle);
      } else {
        label.appendChild(el('span', 'toggle-spacer'));
      }
      label.appendChild(el('span', 'span-name', str(node.seg.name) || '(unnamed)'));
      label.appendChild(el('span', 'span-kind', kindOf(node)));
      if (critical) label.appendChild(el('span', 'sr', 'on the critical path'));
      const hints = state.trace.hints.byNode.get(node.id);
      if (hints) label.appendChild(hintBadge(hints));
      if (node.missingParent !== null) {
        label.appendChild(el('span', 'orphan-note', `parent ${node.missingParent} not received`));
      }
      row.appendChild(label);

      const duration = el('div', 'span-duration');
      row.appendChild(duration);
      const track = el('div', 'span-track');
      const bar = el('div', 'bar ' + barClass(node));
      track.appendChild(bar);
      row.appendChild(track);

      row.addEventListener('click', () => select(node.id));
      row.addEventListener('keydown', (event) => {
        if (event.key === 'Enter' || event.key === ' ') {
          event.preventDefault();
          select(node.id);
        }
      });
      rowIndex.set(node.id, rowRefs.length);
      rowRefs.push({ node, row, bar, duration, depth, toggle });
      frag.appendChild(row);
    }
    $('waterfall').replaceChildren(frag);
    applyCollapse();
  }

  // "⚠ N" beside a row; its title (and its text for screen readers) carries the messages.
  function hintBadge(hints) {
    const badge = el('span', 'hint-badge');
    const messages = hints.map((h) => h.message);
    badge.setAttribute('title', messages.join('\n'));
    const visible = el('span', null, '⚠ ' + hints.length);
    visible.setAttribute('aria-hidden', 'true');
    badge.appendChild(visible);
    badge.appendChild(el('span', 'sr', (hints.length === 1 ? 'hint: ' : `${hints.length} hints: `) + messages.join('; ')));
    return badge;
  }

  // Hides every row below a collapsed one (rows are in depth-first order), and sets each
  // toggle to what it will do.
  function applyCollapse() {
    let hideBelow = Infinity; // rows deeper than this are hidden
    for (const ref of rowRefs) {
      if (ref.depth <= hideBelow) hideBelow = Infinity;
      ref.row.hidden = ref.depth > hideBelow;
      const open = !state.collapsed.has(ref.node.id);
      if (!ref.row.hidden && !open) hideBelow = ref.depth;
      if (ref.toggle) {
        ref.toggle.setAttribute('aria-expanded', String(open));
        ref.toggle.setAttribute('title', open ? 'Hide what is under this row (h)' : 'Show what is under this row (l)');
        ref.toggle.textContent = open ? '▾' : '▸';
      }
    }
  }

  // A tick step of 1, 2 or 5 times a power of ten giving about `target` ticks.
  function niceStep(spanMs, target) {
    const raw = spanMs / target;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 5, 10]) if (m * power >= raw) return m * power;
    return 10 * power;
  }

  // How far past the trace's known end an open node's bar may grow (a document still open
  // long after, or a sender's clock far off, would squash every other bar).
  const OPEN_GROWTH_CAP_S = 300;

  // Places bars, in-progress durations and the time axis; in-progress nodes end "now".
  function layout() {
    const t = state.trace;
    if (!t || t.status !== 'ok') return;
    const tree = t.tree;
    const wallNow = Date.now() / 1000;
    const t0 = Number.isFinite(tree.t0) ? tree.t0 : wallNow;
    let t1 = Number.isFinite(tree.tEnd) ? tree.tEnd : t0;
    const now = Math.min(wallNow, Math.max(t1, t0) + OPEN_GROWTH_CAP_S);
    if (tree.inProgress) t1 = Math.max(t1, now);
    if (!(t1 - t0 > 0.000001)) t1 = t0 + 0.001;
    const span = t1 - t0;

    for (const ref of rowRefs) {
      const node = ref.node;
      const start = node.start !== null ? node.start : t0;
      let end = node.end;
      if (end === null) end = node.inProgress ? Math.max(now, start) : start;
      let left = ((start - t0) / span) * 100;
      left = Math.min(Math.max(left, 0), 99.8);
      let width = ((end - start) / span) * 100;
      width = Math.min(Math.max(width, 0.2), 100 - left);
      ref.bar.style.left = left.toFixed(3) + '%';
      ref.bar.style.width = width.toFixed(3) + '%';
      if (node.start === null) ref.duration.textContent = '?';
      else if (node.end === null && node.inProgress) ref.duration.textContent = fmtMs((end - start) * 1000) + '…';
      else ref.duration.textContent = fmtMs((end - start) * 1000);
    }

    const spanMs = span * 1000;
    const step = niceStep(spanMs, 6);
    const decimals = Math.max(0, -Math.floor(Math.log10(step)));
    const axis = $('axis');
    const scale = el('div', 'axis');
    for (let v = 0; v <= spanMs + step * 1e-9; v += step) {
      const tick = el('div', 'tick');
      tick.style.left = ((v / spanMs) * 100).toFixed(3) + '%';
      const label = spanMs >= 10000 ? (v / 1000).toFixed(Math.max(0, decimals - 3)) + ' s' : v.toFixed(decimals) + ' ms';
      tick.appendChild(el('span', 'tick-label', label));
      scale.appendChild(tick);
    }
    axis.replaceChildren(el('div', 'axis-label', 'Name'), el('div', 'axis-label', 'Duration'), scale);
  }

  function startTicking() {
    if (tickTimer === null) tickTimer = setInterval(layout, TICK_MS);
  }

  function stopTicking() {
    if (tickTimer !== null) clearInterval(tickTimer);
    tickTimer = null;
  }

  // ---------------------------------------------------------------- one trace: details

  function select(id) {
    state.selected = id;
    for (const ref of rowRefs) ref.row.classList.toggle('selected', ref.node.id === id);
    const node = state.trace && state.trace.tree ? state.trace.tree.nodes.get(id) : undefined;
    renderDetails(node || null, true);
    renderErrorPosition();
  }

  // A two-column table of a flat list of [label, value] pairs (values as text).
  function fieldTable(pairs) {
    const table = el('table', 'fields');
    for (const [label, value, className] of pairs) {
      const tr = el('tr');
      tr.appendChild(el('th', null, label));
      tr.appendChild(el('td', className || null, value));
      table.appendChild(tr);
    }
    return table;
  }

  // An object's leaves as dotted keys: {request: {method: "GET"}} -> [["request.method", "GET"]],
  // in key order, depth first (a work list, not recursion: the nesting is the sender's).
  function flatten(value, prefix, out) {
    const work = [[value, prefix]];
    while (work.length) {
      const [v, at] = work.pop();
      if (isObject(v)) {
        const keys = Object.keys(v);
        for (let i = keys.length - 1; i >= 0; i--) work.push([v[keys[i]], at ? at + '.' + keys[i] : keys[i]]);
      } else {
        out.push([at, typeof v === 'string' ? v : JSON.stringify(v)]);
      }
    }
    return out;
  }

  function timeText(t) {
    return num(t) === null ? '' : `${fmtDateTime(t)} (${t})`;
  }

  function overviewPane(node) {
    const seg = node.seg;
    const doc = node.doc;
    const pairs = [];
    const add = (label, value, className) => {
      if (value !== undefined && value !== null && value !== '') pairs.push([label, str(value), className]);
    };
    add('Name', seg.name);
    add('Id', node.id, 'mono');
    if (node.parentId !== null) add('Parent', node.parentId + (node.missingParent !== null ? ' (not received)' : ''), 'mono');
    add('Trace id', seg.trace_id, 'mono');
    add(
      'Kind',
      node.embedded
        ? `subsegment inside the document of ${str(doc.segment && doc.segment.id)}`
        : seg.type === 'subsegment'
          ? 'subsegment, sent as its own document'
          : 'segment'
    );
    add('Start', timeText(seg.start_time));
    add('End', node.inProgress ? 'in progress' : timeText(seg.end_time));
    if (node.start !== null && node.end !== null) add('Duration', fmtMs((node.end - node.start) * 1000));
    add('Namespace', seg.namespace);
    add('Origin', seg.origin);
    add('User', seg.user);
    const flags = ['error', 'throttle', 'fault', 'in_progress'].filter((f) => seg[f] === true);
    add('Flags', flags.join(', '));
    if (isObject(seg.service)) for (const [k, v] of flatten(seg.service, 'service', [])) add(k, v);
    if (Array.isArray(seg.precursor_ids)) add('Precursor ids', seg.precursor_ids.join(', '), 'mono');
    add('Document', `#${str(doc.seq)}, ${doc.format === 'otlp' ? 'OTLP span' : 'X-Ray'}, received ${fmtDateTime(doc.received_at)}`);
    return fieldTable(pairs);
  }

  function objectPane(value) {
    if (!isObject(value) || Object.keys(value).length === 0) return null;
    return fieldTable(flatten(value, '', []).map(([k, v]) => [k, v, 'mono']));
  }

  function annotationsPane(seg) {
    if (!isObject(seg.annotations) || Object.keys(seg.annotations).length === 0) return null;
    const table = el('table', 'fields');
    for (const key of Object.keys(seg.annotations)) {
      const value = seg.annotations[key];
      const tr = el('tr');
      tr.appendChild(el('th', null, key));
      tr.appendChild(el('td', 'mono', typeof value === 'string' ? value : JSON.stringify(value)));
      tr.appendChild(el('td', 'type', value === null ? 'null' : typeof value));
      table.appendChild(tr);
    }
    return table;
  }

  function metadataPane(seg) {
    if (!isObject(seg.metadata) || Object.keys(seg.metadata).length === 0) return null;
    return el('pre', 'json', JSON.stringify(seg.metadata, null, 2));
  }

  function exceptionsPane(seg) {
    const cause = seg.cause;
    if (typeof cause === 'string' && cause !== '') {
      return el('p', null, `The exception is recorded on another subsegment, exception id ${cause}.`);
    }
    if (!isObject(cause)) return null;
    const wrap = el('div', 'exceptions');
    if (cause.working_directory) wrap.appendChild(fieldTable([['Working directory', str(cause.working_directory), 'mono']]));
    if (Array.isArray(cause.paths) && cause.paths.length) wrap.appendChild(fieldTable([['Paths', cause.paths.join(', '), 'mono']]));
    const exceptions = Array.isArray(cause.exceptions) ? cause.exceptions : [];
    for (const ex of exceptions) {
      if (!isObject(ex)) continue;
      const box = el('div', 'exception');
      const title = el('p', 'exception-title');
      title.appendChild(el('span', 'exception-type', str(ex.type) || 'Exception'));
      if (ex.message !== undefined) title.appendChild(el('span', 'exception-message', str(ex.message)));
      box.appendChild(title);
      const notes = [];
      if (ex.id) notes.push('id ' + str(ex.id));
      if (ex.remote) notes.push('raised by a remote call');
      if (ex.cause) notes.push('caused by ' + str(ex.cause));
      if (ex.truncated) notes.push(`${str(ex.truncated)} frames truncated`);
      if (ex.skipped) notes.push(`${str(ex.skipped)} exceptions skipped`);
      if (notes.length) box.appendChild(el('p', 'exception-notes', notes.join(' · ')));
      if (Array.isArray(ex.stack) && ex.stack.length) {
        const stack = el('ol', 'stack');
        for (const frame of ex.stack) {
          if (!isObject(frame)) continue;
          const li = el('li', 'frame');
          const where = str(frame.path) + (frame.line !== undefined ? ':' + str(frame.line) : '');
          li.appendChild(el('span', 'frame-where', where));
          if (frame.label !== undefined) li.appendChild(el('span', 'frame-label', str(frame.label)));
          stack.appendChild(li);
        }
        box.appendChild(stack);
      }
      wrap.appendChild(box);
    }
    if (!exceptions.length && !wrap.firstChild) return null;
    return wrap;
  }

  function rawPane(node) {
    const doc = node.doc;
    const wrap = el('div', 'raw-pane');
    const label = el('p', 'raw-label', doc.format === 'otlp' ? 'OTLP span (JSON)' : 'X-Ray document, as the SDK sent it');
    label.id = 'raw-label';
    wrap.appendChild(label);
    if (node.embedded) {
      const root = isObject(doc.segment) ? doc.segment : {};
      wrap.appendChild(
        el('p', 'note', `This subsegment came inside the document of “${str(root.name)}” (${str(root.id)}); the whole document is shown.`)
      );
    }
    const raw = str(doc.raw);
    const tools = el('div', 'raw-tools');
    const copy = el('button', 'copy', 'Copy');
    copy.id = 'copy-raw';
    copy.setAttribute('type', 'button');
    const status = el('span', 'copy-status');
    tools.appendChild(copy);
    tools.appendChild(status);
    tools.appendChild(el('span', 'note', `document #${str(doc.seq)}, ${raw.length} characters`));
    wrap.appendChild(tools);
    const pre = el('pre', 'raw', raw);
    pre.id = 'raw';
    wrap.appendChild(pre);

    // The clipboard API needs a secure context and focus; without it, select the text so the
    // user can copy it by hand. Either way nothing is thrown or logged.
    const selectText = () => {
      const selection = window.getSelection();
      if (selection) selection.selectAllChildren(pre);
      status.textContent = 'Selected: press Ctrl+C (⌘C) to copy.';
    };
    copy.addEventListener('click', () => {
      if (navigator.clipboard && typeof navigator.clipboard.writeText === 'function') {
        navigator.clipboard.writeText(raw).then(() => {
          status.textContent = 'Copied.';
        }, selectText);
      } else {
        selectText();
      }
    });
    return wrap;
  }

  // The panel's tabs, by X-Ray field; a tab shows only when the node has that field.
  const TABS = [
    ['overview', 'Overview', (node) => overviewPane(node)],
    ['http', 'HTTP', (node) => objectPane(node.seg.http)],
    ['sql', 'SQL', (node) => objectPane(node.seg.sql)],
    ['aws', 'AWS', (node) => objectPane(node.seg.aws)],
    ['annotations', 'Annotations', (node) => annotationsPane(node.seg)],
    ['metadata', 'Metadata', (node) => metadataPane(node.seg)],
    ['exceptions', 'Exceptions', (node) => exceptionsPane(node.seg)],
    ['raw', 'Raw', (node) => rawPane(node)],
  ];

  // Draws the details of `node`; unless `force`, keeps the panel as is when it already shows
  // the same document (a refetch must not reset a selection or a scroll in the raw text).
  function renderDetails(node, force) {
    const panel = $('details');
    if (!node) {
      state.detailsKey = null;
      panel.replaceChildren(el('p', 'hint', 'Click a row to see its fields.'));
      return;
    }
    const key = node.id + '\u0000' + str(node.doc.seq);
    if (!force && key === state.detailsKey) return;
    state.detailsKey = key;

    const panes = [];
    for (const [name, label, build] of TABS) {
      const content = build(node);
      if (content) panes.push({ name, label, content });
    }
    if (!panes.some((p) => p.name === state.tab)) state.tab = 'overview';

    const title = el('h3', 'details-title');
    title.appendChild(el('span', 'span-name', str(node.seg.name) || '(unnamed)'));
    title.appendChild(el('span', 'mono details-id', node.id));
    const parts = [title];
    const hints = state.trace && state.trace.hints ? state.trace.hints.byNode.get(node.id) : undefined;
    if (hints) {
      const box = el('section', 'hints');
      box.id = 'details-hints';
      box.appendChild(el('h4', 'hints-title', '⚠ Instrumentation hints'));
      box.appendChild(hintList(hints));
      parts.push(box);
    }
    const tabs = el('div', 'tabs');
    tabs.setAttribute('role', 'tablist');
    const body = el('div', 'tab-body');
    function show(name) {
      state.tab = name;
      for (const p of panes) {
        p.button.classList.toggle('active', p.name === name);
        p.button.setAttribute('aria-selected', String(p.name === name));
        p.section.hidden = p.name !== name;
      }
    }
    for (const p of panes) {
      p.button = el('button', 'tab', p.label);
      p.button.setAttribute('type', 'button');
      p.button.setAttribute('role', 'tab');
      p.button.setAttribute('data-tab', p.name);
      p.button.id = 'tab-' + p.name;
      p.button.addEventListener('click', () => show(p.name));
      tabs.appendChild(p.button);
      p.section = el('section', 'pane');
      p.section.id = 'pane-' + p.name;
      p.section.setAttribute('role', 'tabpanel');
      p.section.appendChild(p.content);
      body.appendChild(p.section);
    }
    panel.replaceChildren(...parts, tabs, body);
    show(state.tab);
  }

  // ---------------------------------------------------------------- one trace: moving around

  // The index in rowRefs of node `id`'s row, -1 when it has none.
  function refIndex(id) {
    const index = rowIndex.get(id);
    return index === undefined ? -1 : index;
  }

  // The row drawn just above row `index` with a smaller depth: its parent in the waterfall.
  function parentIndex(index) {
    for (let i = index - 1; i >= 0; i--) if (rowRefs[i].depth < rowRefs[index].depth) return i;
    return -1;
  }

  // Selects a row and brings it into view (`block` as scrollIntoView takes it: 'nearest' for
  // a step, 'center' for a jump); keyboard focus follows when it was on a row.
  function selectRow(index, block) {
    const ref = rowRefs[index];
    if (!ref) return;
    const focusOnRow = document.activeElement && document.activeElement.classList.contains('span-row');
    select(ref.node.id);
    ref.row.scrollIntoView({ block: block || 'nearest' });
    if (focusOnRow) ref.row.focus({ preventScroll: true });
  }

  // After rows were hidden: a hidden selected row gives its selection to the nearest shown
  // row above it in the tree.
  function keepSelectionShown() {
    let index = refIndex(state.selected);
    if (index < 0 || !rowRefs[index].row.hidden) return;
    while (index >= 0 && rowRefs[index].row.hidden) index = parentIndex(index);
    if (index >= 0) selectRow(index);
  }

  // j/k: the shown row `step` away from the selected one (the first shown when none is).
  function moveRowSelection(step) {
    const shown = [];
    rowRefs.forEach((ref, i) => {
      if (!ref.row.hidden) shown.push(i);
    });
    if (!shown.length) return;
    const at = shown.indexOf(refIndex(state.selected));
    const next = at < 0 ? 0 : Math.min(Math.max(at + step, 0), shown.length - 1);
    selectRow(shown[next]);
  }

  // h: collapse the selected row; on a collapsed row or a leaf, go to its parent.
  function collapseSelected() {
    const index = refIndex(state.selected);
    if (index < 0) return;
    const ref = rowRefs[index];
    if (ref.node.children.length && !state.collapsed.has(ref.node.id)) {
      state.collapsed.add(ref.node.id);
      applyCollapse();
    } else {
      const parent = parentIndex(index);
      if (parent >= 0) selectRow(parent);
    }
  }

  // l: expand the selected row; on an expanded one, go to its first child.
  function expandSelected() {
    const index = refIndex(state.selected);
    if (index < 0) return;
    const ref = rowRefs[index];
    if (!ref.node.children.length) return;
    if (state.collapsed.has(ref.node.id)) {
      state.collapsed.delete(ref.node.id);
      applyCollapse();
    } else if (rowRefs[index + 1] && rowRefs[index + 1].depth > ref.depth) {
      selectRow(index + 1);
    }
  }

  // 1-9: rows down to depth `levels` - 1 are shown (the deeper collapsed); 0: all (levels null).
  function showDepth(levels) {
    state.collapsed = new Set();
    if (levels !== null) {
      for (const ref of rowRefs) if (ref.node.children.length && ref.depth >= levels - 1) state.collapsed.add(ref.node.id);
    }
    applyCollapse();
    keepSelectionShown();
  }

  // Opens the collapsed rows above row `index` so it shows.
  function reveal(index) {
    let changed = false;
    for (let i = parentIndex(index); i >= 0; i = parentIndex(i)) {
      if (state.collapsed.delete(rowRefs[i].node.id)) changed = true;
    }
    if (changed) applyCollapse();
  }

  // e/E and the buttons: the next (step 1) or previous (-1) error, fault or throttle after the
  // selected row, going round at the ends.
  function jumpError(step) {
    const t = state.trace;
    if (!t || t.status !== 'ok' || !t.tree.problems.length) return;
    const indexes = t.tree.problems.map((node) => refIndex(node.id)).filter((i) => i >= 0);
    if (!indexes.length) return;
    const at = refIndex(state.selected);
    let target;
    if (step > 0) target = indexes.find((i) => i > at);
    else target = indexes.filter((i) => at < 0 || i < at).pop();
    if (target === undefined) target = step > 0 ? indexes[0] : indexes[indexes.length - 1];
    reveal(target);
    selectRow(target, 'center');
  }

  // ---------------------------------------------------------------- keyboard

  // Whether keys typed now are text for a box rather than commands.
  function typingIn(target) {
    if (!target || !target.tagName) return false;
    if (target.isContentEditable) return true;
    const tag = target.tagName;
    if (tag === 'TEXTAREA' || tag === 'SELECT') return true;
    if (tag !== 'INPUT') return false;
    return !['checkbox', 'radio', 'button', 'submit', 'reset', 'file'].includes(target.type);
  }

  function focusFilter() {
    if (state.route.view !== 'list') {
      location.hash = listHash();
      showList(); // now, not at the hashchange: the box must show to take the focus
    }
    const box = $('filter-q');
    box.focus();
    box.select();
  }

  function onKey(event) {
    if (event.defaultPrevented || event.isComposing || event.ctrlKey || event.metaKey || event.altKey) return;
    if (typingIn(event.target)) {
      // Escape leaves a filter box, so that the keys work again.
      if (event.key === 'Escape' && event.target.closest('#filter')) event.target.blur();
      return;
    }
    const key = event.key;
    const onTrace = state.route.view === 'trace' && state.trace && state.trace.status === 'ok';
    let done = true;
    if (key === '/') focusFilter();
    else if (key === '?') $('keys').open = !$('keys').open;
    else if (state.route.view === 'list') {
      if (key === 'j') moveListSelection(1);
      else if (key === 'k') moveListSelection(-1);
      // Enter on a link, a button or the keys' summary is theirs.
      else if (key === 'Enter' && !event.target.closest('a, button, summary, input, select, textarea')) openSelectedTrace();
      else done = false;
    } else if (onTrace) {
      if (key === 'j') moveRowSelection(1);
      else if (key === 'k') moveRowSelection(-1);
      else if (key === 'h') collapseSelected();
      else if (key === 'l') expandSelected();
      else if (key === 'e') jumpError(1);
      else if (key === 'E') jumpError(-1);
      else if (key === '0') showDepth(null);
      else if (/^[1-9]$/.test(key)) showDepth(Number(key));
      else done = false;
    } else {
      done = false;
    }
    if (done) event.preventDefault();
  }

  // ---------------------------------------------------------------- loading files, clearing

  // A byte budget in MiB, as --viewer-memory takes it: "16", or "0.5" for an odd one.
  function fmtMiB(bytes) {
    const mib = bytes / (1024 * 1024);
    return Number.isInteger(mib) ? String(mib) : mib.toFixed(1);
  }

  // Sends JSON Lines files to the server (one request each, the File itself as the body, which
  // the browser streams: the page never holds the file), which adds their documents to the
  // store; the live stream then brings them, and the list is loaded again in any case (live
  // updates may be paused). A file larger than the whole store (its budget as the last list
  // gave it) is not sent: the server would refuse it.
  async function importFiles(files) {
    if (!files.length) return;
    const budget = state.store ? num(state.store.budget_bytes) : null;
    const tooLarge = budget === null ? [] : files.filter((f) => f.size > budget);
    const sending = files.filter((f) => !tooLarge.includes(f));
    const refusal = tooLarge.length
      ? `${tooLarge.map((f) => f.name).join(', ')} ${tooLarge.length === 1 ? 'is' : 'are'} larger than the ` +
        `viewer's store (${fmtMiB(budget)} MiB): start the daemon with a larger --viewer-memory.`
      : '';
    if (!sending.length) {
      notice(refusal, true);
      return;
    }
    const names = sending.map((f) => f.name).join(', ');
    notice(`Loading ${names}…`);
    let kept = 0;
    let skipped = 0;
    try {
      for (const file of sending) {
        const answer = await postJSON('import', file, 'application/x-ndjson');
        kept += num(answer && answer.kept) || 0;
        skipped += num(answer && answer.skipped) || 0;
      }
      const loaded = `Loaded ${plural(kept, 'document', 'documents')} (${skipped} skipped) from ${names}.`;
      notice(refusal ? loaded + ' ' + refusal : loaded, Boolean(refusal));
    } catch (err) {
      notice(`Could not load ${names}: ${errorMessage(err)}` + (refusal ? ' ' + refusal : ''), true);
    }
    loadList();
    if (state.route.view === 'trace') loadTrace();
  }

  // A file dragged over any part of the page can be dropped there.
  function wireFiles() {
    const overlay = $('drop-overlay');
    const carriesFiles = (event) => Boolean(event.dataTransfer) && Array.from(event.dataTransfer.types || []).includes('Files');
    document.addEventListener('dragover', (event) => {
      if (!carriesFiles(event)) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = 'copy';
      overlay.hidden = false;
    });
    document.addEventListener('dragleave', (event) => {
      // relatedTarget is null when the pointer left the window
      if (event.relatedTarget === null) overlay.hidden = true;
    });
    document.addEventListener('drop', (event) => {
      overlay.hidden = true;
      if (!carriesFiles(event)) return;
      event.preventDefault();
      importFiles(Array.from(event.dataTransfer.files || []));
    });
    const input = $('file-input');
    $('load-file').addEventListener('click', () => input.click());
    input.addEventListener('change', () => {
      const files = Array.from(input.files || []);
      input.value = ''; // the same file can be picked again
      importFiles(files);
    });
  }

  // Clear all asks once more, inline ("Clear all traces? Yes, clear / Cancel").
  function wireClear() {
    const ask = (asking) => {
      $('clear-all').hidden = asking;
      $('clear-confirm').hidden = !asking;
      (asking ? $('clear-no') : $('clear-all')).focus();
    };
    $('clear-all').addEventListener('click', () => ask(true));
    $('clear-no').addEventListener('click', () => ask(false));
    $('clear-yes').addEventListener('click', async () => {
      ask(false);
      try {
        const answer = await postJSON('clear');
        notice(`Cleared ${plural(num(answer && answer.cleared) || 0, 'trace', 'traces')}.`);
      } catch (err) {
        notice(`Could not clear the traces: ${errorMessage(err)}`, true);
      }
      state.listSelected = null;
      loadList();
    });
  }

  // ---------------------------------------------------------------- pausing live updates

  // While paused, live events are counted, not applied (nor are the periodic refetches);
  // resuming loads the list (and the open trace) afresh.
  function setPaused(paused) {
    state.paused = paused;
    state.pausedUpdates = 0;
    $('pause-live').textContent = paused ? 'Resume live' : 'Pause live';
    $('pause-live').setAttribute('title', paused ? 'Apply live updates again' : 'Hold live updates back, to look at the page as it is');
    renderPaused();
    if (!paused) {
      loadList();
      if (state.route.view === 'trace') loadTrace();
    }
  }

  function renderPaused() {
    const note = $('paused-note');
    note.hidden = !state.paused;
    note.textContent = state.paused ? plural(state.pausedUpdates, 'update', 'updates') + ' while paused' : '';
  }

  // True (and counted) when a live event must wait for the end of the pause.
  function heldBack() {
    if (!state.paused) return false;
    state.pausedUpdates++;
    renderPaused();
    return true;
  }

  // ---------------------------------------------------------------- routing and live updates

  function route() {
    const match = /^#\/trace\/(.+)$/.exec(location.hash);
    if (match) {
      let id = match[1];
      try {
        id = decodeURIComponent(id);
      } catch (err) {
        // a malformed escape: use the text as it is
      }
      showTrace(id);
    } else {
      showList();
    }
  }

  function showList() {
    // `#/?query` carries the filter; any other fragment (`#/`, `#refused`) none.
    const query = /^#\/\?/.test(location.hash) ? location.hash.slice(3) : '';
    const filter = parseFilter(query);
    state.route = { view: 'list', id: null };
    setFilter(filter);
    writeFilterInputs();
    state.trace = null;
    rowRefs = [];
    rowIndex = new Map();
    stopTicking();
    document.title = 'X-Ray daemon: traces';
    $('trace-view').hidden = true;
    $('list-view').hidden = false;
    renderList();
  }

  function showTrace(id) {
    if (state.route.view !== 'trace' || state.route.id !== id) {
      state.selected = null;
      state.detailsKey = null;
      state.tab = 'overview';
      state.collapsed = new Set();
      state.trace = { id, status: 'loading' };
    }
    state.route = { view: 'trace', id };
    $('back').setAttribute('href', listHash());
    document.title = `${id}: X-Ray trace`;
    $('list-view').hidden = true;
    $('trace-view').hidden = false;
    window.scrollTo(0, 0);
    renderTrace();
    loadTrace();
  }

  function setLive(className, text) {
    const live = $('live');
    live.className = 'live ' + className;
    live.textContent = text;
  }

  function parseData(event) {
    try {
      return JSON.parse(event.data);
    } catch (err) {
      return null;
    }
  }

  function connect() {
    const source = new EventSource(API + 'events');
    // Each (re)connection may have missed events: take a fresh snapshot.
    source.addEventListener('open', () => {
      setLive('live-on', 'live');
      if (state.paused) return; // resuming loads afresh
      loadList();
      if (state.route.view === 'trace') loadTrace();
    });
    source.addEventListener('error', () => {
      if (source.readyState === EventSource.CLOSED) {
        // The browser gave up (e.g. an error status); try again ourselves.
        setLive('live-off', 'disconnected, retrying…');
        source.close();
        setTimeout(connect, 3000);
      } else {
        setLive('live-off', 'reconnecting…');
      }
    });
    source.addEventListener('trace', (event) => {
      const summary = parseData(event);
      if (!isObject(summary) || typeof summary.trace_id !== 'string') return;
      if (heldBack()) return;
      if (filterOn()) {
        // Whether it (still) matches is the server's to say.
        scheduleFilteredReload();
      } else {
        mergeSummary(summary);
        state.streamed.set(summary.trace_id, summary);
        scheduleListRender();
        scheduleResync();
      }
      if (state.route.view === 'trace' && state.route.id === summary.trace_id) loadTrace();
    });
    source.addEventListener('refused', (event) => {
      if (heldBack()) return;
      addRefusal(parseData(event));
      scheduleListRender();
    });
    // The stream fell behind, or the store was cleared: what we hold is out of date.
    source.addEventListener('reload', () => {
      if (heldBack()) return;
      loadList();
      if (state.route.view === 'trace') loadTrace();
    });
  }

  function start() {
    wireFilter();
    wireFiles();
    wireClear();
    $('pause-live').addEventListener('click', () => setPaused(!state.paused));
    $('notice-close').addEventListener('click', () => notice(''));
    document.addEventListener('keydown', onKey);
    window.addEventListener('hashchange', route);
    route();
    loadList();
    connect();
    setInterval(() => {
      if (document.visibilityState === 'visible' && !state.paused) loadList();
    }, RESYNC_MS);
  }

  start();
})();
