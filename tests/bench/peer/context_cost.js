// context_cost.js — where a clean browser context's CPU goes, per process
// and phase, on the raw CDP calls Parallel makes (lib/browser/stager.c).
//
//   [CHROME=/usr/bin/chromium] [N=8] [SETTLE=1200] [ARGS="--flag …"]
//   [FINE=1] [AGAIN=1] [THREADS=1] [STAT=mean|median] [PREP=parallel|batched]
//   [DISPOSE=context|close-first|crash|freeze|blank|none] [LINGER=0]
//   [RELAUNCH=1] [KILL=term] [TARGET=window|minimized|minshow|hidden]
//   [VIEWPORT=780x493] [TARGET_URL=about:blank] [FOCUS=0|1] [BACKGROUND=1]
//   [TRACE=1|categories] [TOP=40]
//     node context_cost.js <base-url>
//
// Launches one Chromium with the flags lib/browser/chrome.c passes (plus
// ARGS; --disable-features values are joined to chrome.c's), then N times:
// an idle phase; prepare a context (createBrowserContext, createTarget
// about:blank, attach, Page.enable, setLifecycleEventsEnabled,
// Runtime.enable; FINE=1 measures each call as a phase of its own); run the
// bench page's steps in it (navigate, fill #q, click #go, read #answer;
// AGAIN=1 runs them a second time in the same context, as a reused tab
// would); dispose of the context. Every phase is followed by SETTLE ms of
// quiet so the work it causes after its replies counts too. CPU per phase
// and process class (by --type) of the browser's process group: run time
// of every live thread (/proc/<pid>/task/*/schedstat), plus what a process
// reaped of its children (a renderer that exits shows in the zygote's
// column with what it did since the last snapshot); browser-ui-thread is
// the browser process's main thread (THREADS=1: every browser thread).
// Experiments: PREP=batched sends the three enables at once;
// DISPOSE=close-first closes the target before disposing of the context;
// DISPOSE=crash|freeze|blank|none leaves the used context open (its window
// stays) and only makes its page inert: Page.crash (the renderer exits),
// Page.setWebLifecycleState frozen, a navigation to about:blank, or
// nothing; LINGER=K first makes K such used contexts (unmeasured), so the
// measured ones run with K..K+N used contexts open. The CPU figures then
// also come from a cpuacct cgroup holding the browser (column cgroup:
// includes exits and kernel time), and the memory (PSS) of the browser's
// processes is printed before and after, per context left open.
// RELAUNCH=1 (needs the cgroup) also measures a browser's launch (spawn to
// DevToolsActivePort plus LAUNCH_SETTLE ms, 3000) and its SIGKILL with every used
// context still open, until its last process is gone (KILL=term: SIGTERM
// first, as chrome.c does): what recycling a browser after K used contexts
// costs, once per K.
// TARGET=minimized opens the window minimized and restores it when the
// spin starts, minshow restores it at the end of the preparation, hidden
// makes a hidden target (no window; VIEWPORT sets its size); TARGET_URL,
// FOCUS and BACKGROUND set createTarget's url, focus and background.
// TRACE=1 (or a list of trace categories) also records a Chromium trace of
// the measured contexts and prints its TOP events by self time per
// context, per process/thread (the trace's own overhead inflates the CPU
// figures of that run). It prints the mean (or median) per phase; it
// asserts nothing (docs/BENCHMARKS.md).
'use strict';
const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const WebSocket = require('ws');

const CHROME = process.env.CHROME || '/usr/bin/chromium';
const N = parseInt(process.env.N || '8', 10);
const SETTLE = parseInt(process.env.SETTLE || '1200', 10);
const PREP = process.env.PREP || 'parallel';
const DISPOSE = process.env.DISPOSE || 'context';
const TARGET = process.env.TARGET || 'window';
const FINE = !!process.env.FINE;
const STAT = process.env.STAT || 'mean';
const HZ = 100; // USER_HZ on Linux
const base = process.argv[2];
if (!base) {
  console.error('usage: node context_cost.js <base-url>');
  process.exit(2);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A cpuacct cgroup (v1) per browser when the machine has one writable:
// its usage counts every process of the browser, also the kernel's work
// for their exits, which /proc/<pid> no longer shows once they are gone.
const CG_ROOT = '/sys/fs/cgroup/cpuacct';
function cgroupNew(tag) {
  const d = `${CG_ROOT}/ctxcost-${process.pid}-${tag}`;
  try {
    fs.mkdirSync(d);
    return d;
  } catch (_) { return null; }
}
function cgroupMs(cg) {
  return cg ? +fs.readFileSync(`${cg}/cpuacct.usage`, 'utf8') / 1e6 : 0;
}
function cgroupProcs(cg) {
  return fs.readFileSync(`${cg}/cgroup.procs`, 'utf8').split('\n').filter(Boolean).length;
}
function cgroupRemove(cg) {
  if (cg) try { fs.rmdirSync(cg); } catch (_) { /* busy or gone */ }
}

function launch(tag = 'a') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ctxcost-'));
  const cg = cgroupNew(tag);
  const disabled = ['SpareRendererForSitePerProcess', 'WebUIOmniboxPopup', 'WebUIOmniboxAimPopup'];
  const extra = [];
  for (const a of (process.env.ARGS || '').split(/\s+/).filter(Boolean)) {
    if (a.startsWith('--disable-features=')) disabled.push(...a.slice(19).split(','));
    else extra.push(a);
  }
  const args = [];
  if (!/headless-shell/.test(CHROME)) args.push('--headless');
  args.push('--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--no-default-browser-check', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-default-apps',
    '--disable-breakpad', '--password-store=basic', '--use-mock-keychain',
    '--remote-debugging-address=127.0.0.1', '--remote-debugging-port=0',
    `--user-data-dir=${dir}/profile`, ...extra,
    `--disable-features=${disabled.join(',')}`, 'about:blank');
  const env = { ...process.env, HOME: `${dir}/home`, XDG_CONFIG_HOME: `${dir}/home/.config`, TMPDIR: dir };
  fs.mkdirSync(`${dir}/home`);
  // Into the cgroup before the exec, so every process of the browser is in it.
  const child = cg
    ? spawn('/bin/sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', cg, CHROME, ...args], { env, detached: true, stdio: 'ignore' })
    : spawn(CHROME, args, { env, detached: true, stdio: 'ignore' });
  return { child, dir, cg };
}

// PSS (kB) of every process of the group.
function pssKb(pgid) {
  let kb = 0;
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const st = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      if (parseInt(st.slice(st.lastIndexOf(')') + 2).split(' ')[2], 10) !== pgid) continue;
      const m = /^Pss:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${e}/smaps_rollup`, 'utf8'));
      if (m) kb += +m[1];
    } catch (_) { /* gone */ }
  }
  return kb;
}

async function endpoint(dir) {
  for (let i = 0; i < 500; i++) {
    try {
      const [port, p] = fs.readFileSync(`${dir}/profile/DevToolsActivePort`, 'utf8').split('\n');
      if (p) return `ws://127.0.0.1:${port}${p}`;
    } catch (_) { /* not yet */ }
    await sleep(20);
  }
  throw new Error('no DevToolsActivePort');
}

class Cdp {
  constructor(url) {
    this.id = 0;
    this.pending = new Map();
    this.listeners = [];
    this.ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 256 << 20 });
    this.ws.on('message', (d) => {
      const m = JSON.parse(d);
      if (m.id !== undefined) {
        const p = this.pending.get(m.id);
        this.pending.delete(m.id);
        if (m.error) p.reject(new Error(`${p.method}: ${m.error.message}`));
        else p.resolve(m.result);
      } else {
        for (const l of this.listeners) l(m);
      }
    });
  }
  open() { return new Promise((r, j) => { this.ws.once('open', r); this.ws.once('error', j); }); }
  call(method, params = {}, sessionId) {
    const id = ++this.id;
    const msg = { id, method, params };
    if (sessionId) msg.sessionId = sessionId;
    this.ws.send(JSON.stringify(msg));
    return new Promise((resolve, reject) => this.pending.set(id, { resolve, reject, method }));
  }
  waitEvent(pred, ms = 10000) {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => { done(); reject(new Error('event timeout')); }, ms);
      const l = (m) => { if (pred(m)) { done(); resolve(m); } };
      const done = () => { clearTimeout(t); this.listeners = this.listeners.filter((x) => x !== l); };
      this.listeners.push(l);
    });
  }
}

// Every process of the group: pid -> {cls, ppid, cpu ms}: the run time
// of its live threads (schedstat, ns) plus, in ticks, what the children it
// reaped used (renderers that exited are counted in the zygote's).
function threadsMs(pid, byName) {
  let ms = 0;
  let tasks = [];
  try { tasks = fs.readdirSync(`/proc/${pid}/task`); } catch (_) { return 0; }
  for (const t of tasks) {
    try {
      const v = +fs.readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0] / 1e6;
      ms += v;
      if (byName) {
        const n = t === String(pid) ? 'main' : fs.readFileSync(`/proc/${pid}/task/${t}/comm`, 'utf8').trim().replace(/\d+$/, '');
        byName[n] = (byName[n] || 0) + v;
      }
    } catch (_) { /* exited */ }
  }
  return ms;
}

function snapshot(pgid) {
  const out = new Map();
  const threads = {};
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    let st, cmd;
    try {
      st = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      cmd = fs.readFileSync(`/proc/${e}/cmdline`, 'utf8');
    } catch (_) { continue; }
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    if (parseInt(f[2], 10) !== pgid) continue;
    let cls = 'browser';
    const t = /--type=([a-z-]+)/.exec(cmd);
    if (t) {
      cls = t[1];
      if (cls === 'utility') {
        const s = /--utility-sub-type=([\w.]+)/.exec(cmd);
        cls = `utility:${s ? s[1].replace(/\.mojom\./, '.').split('.').pop() : '?'}`;
      }
      if (cls === 'renderer' && /--top-chrome-webui|--extension-process/.test(cmd)) cls = 'renderer-ui';
    }
    const cpu = threadsMs(+e, cls === 'browser' ? threads : null) + (+f[13] + +f[14]) * 1000 / HZ;
    out.set(+e, { cls, cpu, ppid: parseInt(f[1], 10) });
  }
  return { procs: out, main: threads.main || 0, threads };
}

// CPU ms per class between two snapshots; a process that appeared counts
// from 0, one that vanished is in its parent's reaped-children figure.
function delta(a, b) {
  const d = { 'browser-ui-thread': b.main - a.main };
  if (process.env.THREADS) for (const [n, v] of Object.entries(b.threads)) d[`b:${n}`] = v - (a.threads[n] || 0);
  let spawned = 0;
  for (const [pid, p] of b.procs) {
    const before = a.procs.get(pid);
    if (!before) spawned++;
    const ms = p.cpu - (before ? before.cpu : 0);
    d[p.cls] = (d[p.cls] || 0) + ms;
  }
  // A reaped child's whole life lands in its parent's cutime: take off
  // what was already counted while it lived, leaving its last moments.
  let exited = 0;
  for (const [pid, p] of a.procs) {
    if (b.procs.has(pid)) continue;
    exited++;
    const parent = b.procs.get(p.ppid);
    const k = parent ? parent.cls : 'browser';
    d[k] = (d[k] || 0) - p.cpu;
  }
  d.total = Object.entries(d).filter(([k]) => k !== 'browser-ui-thread' && !k.startsWith('b:')).reduce((s, [, v]) => s + v, 0);
  d.spawned = spawned;
  d.exited = exited;
  return d;
}

async function prepare(cdp) {
  const t0 = Date.now();
  const { browserContextId } = await cdp.call('Target.createBrowserContext');
  const tp = { url: process.env.TARGET_URL !== undefined ? process.env.TARGET_URL : 'about:blank', browserContextId };
  if (TARGET === 'hidden') tp.hidden = true;
  if (process.env.FOCUS) tp.focus = process.env.FOCUS === '1';
  if (process.env.BACKGROUND) tp.background = true;
  if (TARGET === 'minimized' || TARGET === 'minshow') tp.windowState = 'minimized';
  const { targetId } = await cdp.call('Target.createTarget', tp);
  const { sessionId } = await cdp.call('Target.attachToTarget', { targetId, flatten: true });
  if (process.env.VIEWPORT) {
    const [width, height] = process.env.VIEWPORT.split('x').map(Number);
    await cdp.call('Emulation.setDeviceMetricsOverride', { width, height, deviceScaleFactor: 1, mobile: false }, sessionId);
  }
  if (PREP === 'batched') {
    await Promise.all([
      cdp.call('Page.enable', {}, sessionId),
      cdp.call('Page.setLifecycleEventsEnabled', { enabled: true }, sessionId),
      cdp.call('Runtime.enable', {}, sessionId)]);
  } else {
    await cdp.call('Page.enable', {}, sessionId);
    await cdp.call('Page.setLifecycleEventsEnabled', { enabled: true }, sessionId);
    await cdp.call('Runtime.enable', {}, sessionId);
  }
  let windowId;
  if (TARGET === 'minimized' || TARGET === 'minshow') windowId = (await cdp.call('Browser.getWindowForTarget', { targetId })).windowId;
  if (TARGET === 'minshow') {
    await cdp.call('Browser.setWindowBounds', { windowId, bounds: { windowState: 'normal' } });
    windowId = undefined;
  }
  return { browserContextId, targetId, sessionId, windowId, ms: Date.now() - t0 };
}

async function spinOnce(cdp, ctx, q) {
  const t0 = Date.now();
  const s = ctx.sessionId;
  if (ctx.windowId !== undefined && !ctx.shown) {
    await cdp.call('Browser.setWindowBounds', { windowId: ctx.windowId, bounds: { windowState: 'normal' } });
    ctx.shown = true;
  }
  const loaded = cdp.waitEvent((m) => m.sessionId === s && m.method === 'Page.lifecycleEvent' && m.params.name === 'load');
  await cdp.call('Page.navigate', { url: `${base}/bench.html` }, s);
  await loaded;
  const ev = async (expression) => (await cdp.call('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true }, s)).result.value;
  await ev(`(() => { const e = document.querySelector('#q'); e.focus(); e.value = ${JSON.stringify(q)}; e.dispatchEvent(new Event('input', {bubbles:true})); return 1; })()`);
  const r = await ev(`(() => { const b = document.querySelector('#go').getBoundingClientRect(); return [b.x + b.width/2, b.y + b.height/2]; })()`);
  for (const type of ['mouseMoved', 'mousePressed', 'mouseReleased']) {
    await cdp.call('Input.dispatchMouseEvent', { type, x: r[0], y: r[1], button: type === 'mouseMoved' ? 'none' : 'left', clickCount: 1 }, s);
  }
  const a = await ev(`document.getElementById('answer').textContent`);
  if (a !== `answer:${q}`) throw new Error(`unexpected answer ${a} (${await ev('document.visibilityState + "/" + innerWidth + "x" + innerHeight')}, click at ${r})`);
  const vis = await ev('document.visibilityState + "/" + innerWidth + "x" + innerHeight + "/" + document.hasFocus()');
  return { ms: Date.now() - t0, vis };
}

async function dispose(cdp, ctx) {
  const t0 = Date.now();
  const s = ctx.sessionId;
  if (DISPOSE === 'crash') {
    // Page.crash never answers: the renderer is gone when the target says so.
    const gone = cdp.waitEvent((m) => m.sessionId === s && m.method === 'Inspector.targetCrashed');
    cdp.call('Page.crash', {}, s).catch(() => {});
    await gone;
  } else if (DISPOSE === 'freeze') {
    await cdp.call('Page.setWebLifecycleState', { state: 'frozen' }, s);
  } else if (DISPOSE === 'blank') {
    const loaded = cdp.waitEvent((m) => m.sessionId === s && m.method === 'Page.lifecycleEvent' && m.params.name === 'load');
    await cdp.call('Page.navigate', { url: 'about:blank' }, s);
    await loaded;
  } else if (DISPOSE !== 'none') {
    if (DISPOSE === 'close-first') await cdp.call('Target.closeTarget', { targetId: ctx.targetId });
    await cdp.call('Target.disposeBrowserContext', { browserContextId: ctx.browserContextId });
  }
  return { ms: Date.now() - t0 };
}
const LAUNCH_SETTLE = parseInt(process.env.LAUNCH_SETTLE || '3000', 10);
const LINGERS = ['crash', 'freeze', 'blank', 'none'].includes(DISPOSE);

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[(s.length - 1) >> 1] : 0;
}

function mean(xs) {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0;
}

const TRACE_CATS = 'toplevel,browser,views,ui,cc,viz,navigation,loading,devtools,blink,renderer';

// Self time of every complete event of a trace (thread time where the
// trace has it), summed by process/thread and name; prints the top ones
// per context.
function traceSummary(events, n) {
  const tname = new Map();
  const pname = new Map();
  const byThread = new Map();
  for (const e of events) {
    if (e.ph === 'M' && e.name === 'thread_name') tname.set(`${e.pid}:${e.tid}`, e.args.name);
    if (e.ph === 'M' && e.name === 'process_name') pname.set(e.pid, e.args.name);
    if (e.ph !== 'X' || e.dur === undefined) continue;
    const k = `${e.pid}:${e.tid}`;
    if (!byThread.has(k)) byThread.set(k, []);
    byThread.get(k).push(e);
  }
  const agg = new Map();
  for (const [k, evs] of byThread) {
    evs.sort((a, b) => a.ts - b.ts || b.dur - a.dur);
    const stack = [];
    for (const e of evs) {
      while (stack.length && stack[stack.length - 1].ts + stack[stack.length - 1].dur <= e.ts) stack.pop();
      e.self = e.tdur !== undefined ? e.tdur : e.dur;
      if (stack.length) stack[stack.length - 1].self -= e.self;
      stack.push(e);
    }
    const th = `${pname.get(+k.split(':')[0]) || '?'}/${tname.get(k) || k}`;
    for (const e of evs) {
      const key = `${th}\t${e.name}`;
      const a = agg.get(key) || { n: 0, self: 0 };
      a.n++;
      a.self += e.self;
      agg.set(key, a);
    }
  }
  console.log(`# trace: self ms and count per context, top ${process.env.TOP || 40}`);
  for (const [k, a] of [...agg.entries()].sort((x, y) => y[1].self - x[1].self).slice(0, parseInt(process.env.TOP || '40', 10))) {
    console.log(`${(a.self / 1000 / n).toFixed(2)}\t${(a.n / n).toFixed(1)}\t${k}`);
  }
}

async function main() {
  const { child, dir, cg } = launch();
  const pgid = child.pid;
  let other = null; // RELAUNCH's second browser
  // Stopped early (timeout, ^C): take the browser's process group along.
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.on(sig, () => {
      try { process.kill(-pgid, 'SIGKILL'); } catch (_) { /* gone */ }
      if (other) try { process.kill(-other.child.pid, 'SIGKILL'); } catch (_) { /* gone */ }
      fs.rmSync(dir, { recursive: true, force: true });
      process.exit(130);
    });
  }
  let cdp;
  try {
    cdp = new Cdp(await endpoint(dir));
    await cdp.open();
    await sleep(2000); // launch settles
    // one warm-up round, not counted
    const w = await prepare(cdp);
    await spinOnce(cdp, w, 'warm');
    await dispose(cdp, w);
    await sleep(SETTLE);
    const linger = parseInt(process.env.LINGER || '0', 10);
    for (let i = 0; i < linger; i++) {
      const c = await prepare(cdp);
      await spinOnce(cdp, c, `l${i}`);
      await dispose(cdp, c);
    }
    if (linger) await sleep(SETTLE);
    const pss0 = pssKb(pgid);
    const rows = { idle: [], prepare: [], spin: [], again: [], dispose: [] };
    const wall = { prepare: [], spin: [], again: [], dispose: [] };
    if (FINE) {
      for (const k of ['p.context', 'p.target', 'p.attach', 'p.enable']) { rows[k] = []; wall[k] = []; }
      delete rows.prepare;
      delete wall.prepare;
    }
    let vis = '';
    const events = [];
    if (process.env.TRACE) {
      const cats = process.env.TRACE === '1' ? TRACE_CATS : process.env.TRACE;
      cdp.listeners.push((m) => { if (m.method === 'Tracing.dataCollected') events.push(...m.params.value); });
      await cdp.call('Tracing.start', { traceConfig: { includedCategories: cats.split(',') }, transferMode: 'ReportEvents' });
    }
    const phase = async (name, fn) => {
      const a = snapshot(pgid);
      const ca = cgroupMs(cg);
      const r = fn ? await fn() : { ms: 0 };
      await sleep(SETTLE);
      const d = delta(a, snapshot(pgid));
      if (cg) d.cgroup = cgroupMs(cg) - ca;
      rows[name].push(d);
      if (wall[name]) wall[name].push(r.ms);
      return r;
    };
    for (let i = 0; i < N; i++) {
      await phase('idle');
      let ctx;
      if (FINE) {
        ctx = {};
        await phase('p.context', async () => { const t = Date.now(); ctx.browserContextId = (await cdp.call('Target.createBrowserContext')).browserContextId; return { ms: Date.now() - t }; });
        await phase('p.target', async () => { const t = Date.now(); ctx.targetId = (await cdp.call('Target.createTarget', { url: 'about:blank', browserContextId: ctx.browserContextId })).targetId; return { ms: Date.now() - t }; });
        await phase('p.attach', async () => { const t = Date.now(); ctx.sessionId = (await cdp.call('Target.attachToTarget', { targetId: ctx.targetId, flatten: true })).sessionId; return { ms: Date.now() - t }; });
        await phase('p.enable', async () => {
          const t = Date.now();
          await cdp.call('Page.enable', {}, ctx.sessionId);
          await cdp.call('Page.setLifecycleEventsEnabled', { enabled: true }, ctx.sessionId);
          await cdp.call('Runtime.enable', {}, ctx.sessionId);
          return { ms: Date.now() - t };
        });
      } else {
        ctx = await phase('prepare', () => prepare(cdp));
      }
      const s = await phase('spin', () => spinOnce(cdp, ctx, String(i)));
      vis = s.vis;
      if (process.env.AGAIN) await phase('again', () => spinOnce(cdp, ctx, `${i}b`));
      await phase('dispose', () => dispose(cdp, ctx));
    }
    if (process.env.TRACE) {
      const done = cdp.waitEvent((m) => m.method === 'Tracing.tracingComplete', 60000);
      await cdp.call('Tracing.end');
      await done;
    }
    const pss1 = pssKb(pgid);
    const open = LINGERS ? linger + N : 0;
    let relaunch = '';
    if (process.env.RELAUNCH && cg) {
      // A second browser's launch, then the first one's kill with every
      // used context open, each in its own cgroup's figures.
      const t0 = Date.now();
      other = launch('b');
      const c0 = cgroupMs(other.cg);
      await endpoint(other.dir);
      const up = Date.now() - t0;
      await sleep(LAUNCH_SETTLE);
      const launchMs = cgroupMs(other.cg) - c0;
      const k0 = cgroupMs(cg);
      const t1 = Date.now();
      cdp.ws.terminate();
      cdp = null;
      // KILL=term: SIGTERM first, as chrome.c's inst_stop does (Chromium
      // then shuts down gracefully, window by window), SIGKILL after 2 s.
      if (process.env.KILL === 'term') {
        process.kill(-pgid, 'SIGTERM');
        while (cgroupProcs(cg) > 0 && Date.now() - t1 < 2000) await sleep(5);
      }
      try { process.kill(-pgid, 'SIGKILL'); } catch (_) { /* gone */ }
      while (cgroupProcs(cg) > 0 && Date.now() - t1 < 10000) await sleep(5);
      const killWall = Date.now() - t1;
      const killMs = cgroupMs(cg) - k0;
      relaunch = `# relaunch: launch ${launchMs.toFixed(0)} ms CPU (DevToolsActivePort after ${up} ms wall, then ${LAUNCH_SETTLE} ms), ` +
        `kill (${process.env.KILL === 'term' ? 'SIGTERM first' : 'SIGKILL'}) with ${open} used contexts open ${killMs.toFixed(0)} ms CPU (${killWall} ms wall)`;
    }
    const classes = new Set();
    for (const k of Object.keys(rows)) for (const d of rows[k]) for (const c of Object.keys(d)) classes.add(c);
    const order = [...(cg ? ['cgroup'] : []), 'total', 'browser', 'browser-ui-thread', ...[...classes].filter((c) => !['cgroup', 'total', 'browser', 'browser-ui-thread', 'spawned', 'exited'].includes(c)).sort(), 'spawned', 'exited'];
    const tv = ['TARGET_URL', 'FOCUS', 'BACKGROUND', 'TRACE'].filter((k) => process.env[k] !== undefined).map((k) => ` ${k}=${process.env[k]}`).join('');
    console.log(`# context_cost: ${CHROME} N=${N} SETTLE=${SETTLE} PREP=${PREP} DISPOSE=${DISPOSE} LINGER=${linger} TARGET=${TARGET}${tv} ARGS="${process.env.ARGS || ''}" load ${os.loadavg()[0].toFixed(2)} visibility=${vis}`);
    console.log(`# ${STAT} CPU ms per phase (processes spawned/exited are counts); median wall ms: ${Object.keys(wall).map((k) => `${k} ${median(wall[k])}`).join(', ')}`);
    console.log(['phase', ...order].join('\t'));
    for (const k of Object.keys(rows)) {
      const f = STAT === 'median' ? median : mean;
      console.log([k, ...order.map((c) => f(rows[k].map((d) => d[c] || 0)).toFixed(c === 'spawned' || c === 'exited' ? 1 : 0))].join('\t'));
    }
    console.log(`# memory: PSS of the browser's processes ${(pss0 / 1024).toFixed(0)} MB before the measured contexts, ` +
      `${(pss1 / 1024).toFixed(0)} MB after` + (open ? ` with ${open} used contexts open: ${((pss1 - pss0) / 1024 / N).toFixed(1)} MB per context` : ''));
    if (relaunch) console.log(relaunch);
    if (process.env.TRACE) traceSummary(events, N);
  } finally {
    for (const b of [{ pg: pgid, cg, dir }, ...(other ? [{ pg: other.child.pid, cg: other.cg, dir: other.dir }] : [])]) {
      try { process.kill(-b.pg, 'SIGTERM'); } catch (_) { /* gone */ }
      await sleep(500);
      try { process.kill(-b.pg, 'SIGKILL'); } catch (_) { /* gone */ }
      for (let i = 0; b.cg && i < 200 && cgroupProcs(b.cg) > 0; i++) await sleep(10);
      cgroupRemove(b.cg);
      fs.rmSync(b.dir, { recursive: true, force: true });
    }
    if (cdp) cdp.ws.terminate();
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
