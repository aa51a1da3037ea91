// cdp_roundtrip.js — the puppeteer peer of tests/bench/cdp_roundtrip.c.
//
//   node cdp_roundtrip.js <browserWSEndpoint> [N]
//
// Against an already running Chromium (the driver script starts one and
// runs both benchmarks against it), times N sequential
//   - CDPSession.send('Runtime.evaluate', {expression: '1+1'})  (same wire
//     call as the C benchmark), and
//   - page.evaluate(() => 1 + 1)  (what a puppeteer script usually does),
// and prints the same key=value line format as the C benchmark.
'use strict';
const puppeteer = require('puppeteer-core');

function stats(impl, op, lat, errors) {
  lat.sort((a, b) => a - b);
  const n = lat.length;
  const mean = lat.reduce((a, b) => a + b, 0) / n;
  console.log(`impl=${impl} op=${op} n=${n} median_us=${lat[n >> 1].toFixed(1)} ` +
              `p99_us=${lat[Math.floor(n * 0.99)].toFixed(1)} mean_us=${mean.toFixed(1)} ` +
              `max_us=${lat[n - 1].toFixed(1)} errors=${errors}`);
}

async function timed(n, fn) {
  const lat = new Array(n);
  let errors = 0;
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    if (!(await fn())) errors++;
    lat[i] = Number(process.hrtime.bigint() - t0) / 1000;
  }
  return [lat, errors];
}

async function main() {
  const ws = process.argv[2];
  const n = parseInt(process.argv[3] || '10000', 10);
  if (!ws) {
    console.error('usage: node cdp_roundtrip.js <browserWSEndpoint> [N]');
    process.exit(2);
  }
  const browser = await puppeteer.connect({browserWSEndpoint: ws, defaultViewport: null});
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  const session = await page.createCDPSession();
  const send = async () => {
    const r = await session.send('Runtime.evaluate', {expression: '1+1'});
    return r.result.value === 2;
  };
  const evaluate = async () => (await page.evaluate(() => 1 + 1)) === 2;

  await timed(200, send);  // warm up
  let [lat, errors] = await timed(n, send);
  stats('puppeteer', 'CDPSession.send', lat, errors);
  await timed(200, evaluate);
  [lat, errors] = await timed(n, evaluate);
  stats('puppeteer', 'page.evaluate', lat, errors);

  await session.detach();
  await context.close();
  await browser.disconnect();
}

main().catch((e) => { console.error(e); process.exit(1); });
