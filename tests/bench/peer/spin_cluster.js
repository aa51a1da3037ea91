// spin_cluster.js — the puppeteer-cluster peer of `parallel-ctl spin` with
// tests/fixtures/recipes/bench.json.
//
//   [STYLE=locator|plain] [MODEL=context|page] [PAGE=bench|bench_wait] [TUNED=1]
//   [CHROME=/usr/bin/chromium]
//     node spin_cluster.js <base-url> <spins> <concurrency>
//
// Same Chromium (CHROME, /usr/bin/chromium by default), same page, same steps as the recipe:
//   navigate PAGE.html (wait for load) · wait for #q · fill #q ·
//   click #go · (bench_wait: wait for #answer.ready) · extract #answer
// MODEL=context (CONCURRENCY_CONTEXT, default) gives every task a fresh
// incognito context and page: a clean state per job, like Parallel's spin
// scope (the cost is part of a spin). MODEL=page (CONCURRENCY_PAGE) gives
// every task a new page in one shared context: state carries over, like
// Parallel's resource scope. C loops each `await cluster.execute()` one spin at a time, so the
// latency is end to end per spin like parallel-ctl's (acquire + run +
// release), without queueing time. Browser launch and one warm-up spin per
// loop happen before the clock starts, as in parallel-ctl.
// Prints the same "summary …" line format as parallel-ctl on stderr.
'use strict';
const { Cluster } = require('puppeteer-cluster');
const puppeteer = require('puppeteer-core');

// STYLE=locator (default): the Locator API, which is what @puppeteer/replay
// uses to replay Recorder steps (waits for visible, enabled, stable box).
// STYLE=plain: page.type/page.click after waitForSelector (fewer checks,
// fewer round trips), to show how much of the time is the locators.
const STYLE = process.env.STYLE || 'locator';
const MODEL = process.env.MODEL || 'context';
const PAGE = process.env.PAGE || 'bench';
const CHROME = process.env.CHROME || '/usr/bin/chromium';

async function spin(page, { base, q }) {
  await page.goto(`${base}/${PAGE}.html`, { waitUntil: 'load' });
  await page.waitForSelector('#q');
  if (STYLE === 'plain') {
    await page.type('#q', q);
    await page.click('#go');
  } else {
    await page.locator('#q').fill(q);
    await page.locator('#go').click();
  }
  if (PAGE === 'bench_wait') await page.waitForSelector('#answer.ready');
  const answer = await page.$eval('#answer', (e) => e.textContent);
  if (answer !== `answer:${q}`) throw new Error(`unexpected answer ${answer}`);
  return answer;
}

function pct(sorted, p) {
  if (!sorted.length) return 0;
  const k = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[k];
}

async function main() {
  const [base, spinsArg, concArg] = process.argv.slice(2);
  if (!base) {
    console.error('usage: node spin_cluster.js <base-url> <spins> <concurrency>');
    process.exit(2);
  }
  const spins = parseInt(spinsArg || '100', 10);
  const conc = parseInt(concArg || '1', 10);
  const cluster = await Cluster.launch({
    concurrency: MODEL === 'page' ? Cluster.CONCURRENCY_PAGE : Cluster.CONCURRENCY_CONTEXT,
    maxConcurrency: conc,
    puppeteer,
    puppeteerOptions: {
      executablePath: CHROME,
      // the headless shell is the old headless mode: puppeteer must say so
      headless: /headless-shell/.test(CHROME) ? 'shell' : true,
      // The flags parallel's chrome.c passes (its --disable-features only with
      // TUNED=1, below), on top of puppeteer's defaults.
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
        '--disable-breakpad', '--disable-crash-reporter',
        // TUNED=1: also the features Parallel turns off at launch (a spare
        // renderer and the omnibox popups each headless window loads; see
        // lib/browser/chrome.c). puppeteer joins this list to its own.
        ...(process.env.TUNED
          ? ['--disable-features=SpareRendererForSitePerProcess,WebUIOmniboxPopup,WebUIOmniboxAimPopup']
          : [])],
    },
    timeout: 30000,
  });
  cluster.task(async ({ page, data }) => spin(page, data));
  // Stop cleanly (closing the browser) when the driver script is stopped.
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.on(sig, () => {
      cluster.close().finally(() => process.exit(130));
    });
  }

  // Warm-up: one spin per loop, outside the clock.
  await Promise.all(Array.from({ length: conc }, () => cluster.execute({ base, q: 'warm' })));

  const lat = [];
  let next = 0, ok = 0, failed = 0;
  const t0 = process.hrtime.bigint();
  async function loop() {
    for (;;) {
      const i = next++;
      if (i >= spins) return;
      const s = process.hrtime.bigint();
      try {
        await cluster.execute({ base, q: String(i) });
        ok++;
      } catch (e) {
        failed++;
        console.error(`spin ${i}: ${e.message}`);
      }
      lat.push(Number(process.hrtime.bigint() - s) / 1e6);
    }
  }
  await Promise.all(Array.from({ length: conc }, loop));
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  await cluster.idle();
  await cluster.close();
  lat.sort((a, b) => a - b);
  console.error(`summary recipe=bench impl=puppeteer-cluster model=${MODEL} page=${PAGE} style=${STYLE} count=${ok + failed} ok=${ok} ` +
    `failed=${failed} concurrency=${conc} elapsed_s=${elapsed.toFixed(3)} ` +
    `spins_per_s=${((ok + failed) / elapsed).toFixed(2)} p50_ms=${pct(lat, 50).toFixed(1)} ` +
    `p99_ms=${pct(lat, 99).toFixed(1)}`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
