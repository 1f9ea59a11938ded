// The trace viewer's page: the list of traces the daemon holds, the datagrams it refused, and
// one trace as a waterfall with each document's fields.
//
// Hash routing: `#/` is the list, `#/trace/<id>` a trace. Data comes from the JSON API under
// /daemon/viewer/api/ and live updates from its Server-Sent Events stream.
//
// Every string in a document is untrusted: it reaches the DOM only through textContent or
// setAttribute of non-URL attributes, never as markup to parse. The one URL we build (a row's
// link) is a fragment, `#/trace/` + encodeURIComponent(id), which cannot leave the page.
// The server's CSP (`default-src 'self'`) also forbids inline styles, so bars are placed
// through element.style from here.
'use strict';

(function () {
  const API = '/daemon/viewer/api/';
  const LIST_LIMIT = 1000; // rows drawn; the store's byte budget bounds the rest
  const REFUSED_LIMIT = 50; // the server keeps the same number
  const RESYNC_MS = 30000; // full list refetch: catches evictions, refreshes store stats
  const TICK_MS = 250; // in-progress bars grow at this pace

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

  // GET a JSON document of the API: { body } or { missing: true } on 404; throws otherwise.
  async function getJSON(path) {
    const res = await fetch(API + path, { headers: { Accept: 'application/json' }, cache: 'no-store' });
    if (res.status === 404) return { missing: true };
    if (!res.ok) throw new Error(`the daemon answered ${res.status} ${res.statusText} for ${API + path}`);
    return { body: await res.json() };
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
    state.streamed = new Map();
    try {
      const { body } = await getJSON('traces');
      const fetched = Array.isArray(body && body.traces) ? body.traces : [];
      // The snapshot replaces what we hold (a trace it lacks was evicted or cleared), except
      // that a summary the stream brought while it was on its way may be newer (the later
      // `updated` wins).
      state.traces = new Map();
      for (const s of fetched) mergeSummary(s);
      for (const s of state.streamed.values()) mergeSummary(s);
      state.streamed = new Map();
      const refused = Array.isArray(body && body.refused) ? body.refused : [];
      const streamedRefusals = state.refused;
      state.refused = [];
      for (const r of refused.concat(streamedRefusals)) addRefusal(r);
      state.store = isObject(body && body.store) ? body.store : null;
      state.listLoaded = true;
      state.listError = null;
    } catch (err) {
      state.listError = `Could not load the traces: ${err && err.message ? err.message : err}`;
    }
    scheduleListRender();
    renderStore();
  });

  // After changes, a fresh snapshot at most every few seconds: it brings the store's figures
  // (documents, bytes, evictions) that the stream does not carry.
  let resyncTimer = null;
  function scheduleResync() {
    if (resyncTimer !== null) return;
    resyncTimer = setTimeout(() => {
      resyncTimer = null;
      loadList();
    }, 5000);
  }

  // ---------------------------------------------------------------- list rendering

  let listTimer = null;
  function scheduleListRender() {
    if (listTimer !== null) return;
    listTimer = setTimeout(() => {
      listTimer = null;
      if (state.route.view === 'list') renderList();
    }, state.traces.size > 200 ? 250 : 50); // a long list is costly to redraw: batch more
  }

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
    $('empty-state').hidden = !(empty && state.listLoaded);
    $('trace-list').hidden = empty;
    $('trace-count').textContent = empty ? '' : `(${rows.length})`;
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

    function visit(seg, doc, parentId, depthInDoc) {
      if (!isObject(seg)) return;
      const id = typeof seg.id === 'string' && seg.id !== '' ? seg.id : `(no id #${++unnamed})`;
      const ownParent = typeof seg.parent_id === 'string' && seg.parent_id !== '' ? seg.parent_id : null;
      const node = {
        id,
        seg,
        doc,
        parentId: parentId !== null ? parentId : ownParent,
        embedded: depthInDoc > 0,
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
        for (const sub of seg.subsegments) visit(sub, doc, id, depthInDoc + 1);
      }
    }
    for (const doc of docs) if (isObject(doc)) visit(doc.segment, doc, null, 0);

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

    // Depth-first into display order; `seen` guards against parent_id cycles, whose members
    // no root reaches: they are added as roots afterwards.
    const rows = [];
    const seen = new Set();
    function walk(node, depth) {
      if (seen.has(node)) return;
      seen.add(node);
      rows.push({ node, depth });
      node.children.sort(byStart);
      for (const child of node.children) walk(child, depth + 1);
    }
    roots.sort(byStart);
    for (const root of roots) walk(root, 0);
    for (const node of nodes.values()) {
      if (!seen.has(node)) {
        node.missingParent = node.parentId;
        roots.push(node);
        walk(node, 0);
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
    return { nodes, roots, rows, t0, tEnd, inProgress, counts };
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
        next = { id, status: 'ok', data: res.body, tree: buildTree(docs) };
      }
    } catch (err) {
      next = { id, status: 'error', message: `Could not load the trace: ${err && err.message ? err.message : err}` };
    }
    if (state.route.view === 'trace' && state.route.id === id) {
      state.trace = next;
      renderTrace();
    }
  });

  // ---------------------------------------------------------------- one trace: rendering

  let rowRefs = []; // { node, bar, duration } of the drawn rows, for layout()
  let tickTimer = null;

  function renderTrace() {
    const t = state.trace;
    const message = $('trace-message');
    const body = $('trace-body');
    if (!t || t.status !== 'ok') {
      body.hidden = true;
      message.hidden = false;
      rowRefs = [];
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
    header.replaceChildren(title, facts);
  }

  function kindOf(node) {
    const seg = node.seg;
    if (seg.type === 'subsegment' || node.embedded) return seg.namespace ? str(seg.namespace) : 'subsegment';
    return 'segment';
  }

  function renderWaterfall(tree) {
    const frag = document.createDocumentFragment();
    rowRefs = [];
    for (const { node, depth } of tree.rows) {
      const row = el('div', 'span-row');
      row.setAttribute('data-id', node.id);
      row.setAttribute('data-depth', String(depth));
      row.setAttribute('tabindex', '0');
      if (node.missingParent !== null) row.classList.add('orphan');
      if (kindOf(node) === 'segment') row.classList.add('is-segment');
      if (node.id === state.selected) row.classList.add('selected');

      const label = el('div', 'span-label');
      label.style.paddingLeft = depth * 16 + 4 + 'px';
      if (node.children.length) {
        const toggle = el('button', 'toggle');
        toggle.setAttribute('type', 'button');
        const open = !state.collapsed.has(node.id);
        toggle.setAttribute('aria-expanded', String(open));
        toggle.setAttribute('title', open ? 'Hide what is under this row' : 'Show what is under this row');
        toggle.textContent = open ? '▾' : '▸';
        toggle.addEventListener('click', (event) => {
          event.stopPropagation();
          if (state.collapsed.has(node.id)) state.collapsed.delete(node.id);
          else state.collapsed.add(node.id);
          const nowOpen = !state.collapsed.has(node.id);
          toggle.setAttribute('aria-expanded', String(nowOpen));
          toggle.textContent = nowOpen ? '▾' : '▸';
          applyCollapse();
        });
        label.appendChild(toggle);
      } else {
        label.appendChild(el('span', 'toggle-spacer'));
      }
      label.appendChild(el('span', 'span-name', str(node.seg.name) || '(unnamed)'));
      label.appendChild(el('span', 'span-kind', kindOf(node)));
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
      rowRefs.push({ node, row, bar, duration, depth });
      frag.appendChild(row);
    }
    $('waterfall').replaceChildren(frag);
    applyCollapse();
  }

  // Hides every row below a collapsed one (rows are in depth-first order).
  function applyCollapse() {
    let hideBelow = Infinity; // rows deeper than this are hidden
    for (const ref of rowRefs) {
      if (ref.depth <= hideBelow) hideBelow = Infinity;
      ref.row.hidden = ref.depth > hideBelow;
      if (!ref.row.hidden && state.collapsed.has(ref.node.id)) hideBelow = ref.depth;
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

  // An object's leaves as dotted keys: {request: {method: "GET"}} -> [["request.method", "GET"]].
  function flatten(value, prefix, out) {
    if (isObject(value)) {
      for (const key of Object.keys(value)) flatten(value[key], prefix ? prefix + '.' + key : key, out);
    } else {
      out.push([prefix, typeof value === 'string' ? value : JSON.stringify(value)]);
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
    panel.replaceChildren(title, tabs, body);
    show(state.tab);
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
    state.route = { view: 'list', id: null };
    state.trace = null;
    rowRefs = [];
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
      mergeSummary(summary);
      state.streamed.set(summary.trace_id, summary);
      scheduleListRender();
      scheduleResync();
      if (state.route.view === 'trace' && state.route.id === summary.trace_id) loadTrace();
    });
    source.addEventListener('refused', (event) => {
      addRefusal(parseData(event));
      scheduleListRender();
    });
    // The stream fell behind, or the store was cleared: what we hold is out of date.
    source.addEventListener('reload', () => {
      loadList();
      if (state.route.view === 'trace') loadTrace();
    });
  }

  function start() {
    window.addEventListener('hashchange', route);
    route();
    loadList();
    connect();
    setInterval(() => {
      if (document.visibilityState === 'visible') loadList();
    }, RESYNC_MS);
  }

  start();
})();
