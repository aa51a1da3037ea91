// reference.mjs — replays every recording in tests/fixtures/replay/recordings
// with @puppeteer/replay (the reference implementation of the Recorder
// format) and writes the outcome of each to expected.json:
//   {"<name>": {"outcome": "pass"} | {"outcome": "fail", "step": N, "error": "…"}}
// The C conformance test (tests/integration/chrome_conformance_test.c) asserts
// that `par_spin_run` ends every recording the same way.
//
// Regenerate:  cd tests/conformance && npm ci && node reference.mjs
// (Node 20; @puppeteer/replay 3.1.3 is the newest release that runs on it.)
// Chromium: /usr/bin/chromium, or $CHROME.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';
import { createRunner, parse, PuppeteerRunnerExtension } from '@puppeteer/replay';

const here = path.dirname(fileURLToPath(import.meta.url));
const fixtures = path.join(here, '..', 'fixtures', 'replay');
const pages = path.join(fixtures, 'pages');
const recDir = path.join(fixtures, 'recordings');
const out = process.argv[2] || path.join(here, 'expected.json');

// A static server on 127.0.0.1, like the C test's fixture server.
const server = http.createServer((req, res) => {
  const p = decodeURIComponent(new URL(req.url, 'http://x').pathname);
  const file = path.join(pages, path.normalize(p));
  if (!file.startsWith(pages) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'Content-Type': 'text/html' }).end(fs.readFileSync(file));
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const port = server.address().port;
const params = {
  base: `http://localhost:${port}`,
  oopif: `http://oopifdomain:${port}`,
};

// The same flags as the upstream runner tests (site isolation, and a host
// name that resolves to 127.0.0.1 so iframes on it are out-of-process).
const browser = await puppeteer.launch({
  executablePath: process.env.CHROME || '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--site-per-process', '--host-rules=MAP oopifdomain 127.0.0.1, MAP localhost 127.0.0.1',
  ],
});

// Records which step is running, so a failure names its index.
class IndexingExtension extends PuppeteerRunnerExtension {
  current = -1;
  async beforeEachStep(step, flow) {
    this.current = flow.steps.indexOf(step);
  }
}

const results = {};
const names = fs.readdirSync(recDir).filter((f) => f.endsWith('.json')).sort();
for (const file of names) {
  const name = file.slice(0, -5);
  const text = fs.readFileSync(path.join(recDir, file), 'utf8')
    .replace(/\{\{\s*(\w+)\s*\}\}/g, (_, k) => params[k]);
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  const ext = new IndexingExtension(browser, page);
  let result;
  try {
    const flow = parse(JSON.parse(text));
    const runner = await createRunner(flow, ext);
    await runner.run();
    result = { outcome: 'pass' };
  } catch (e) {
    result = { outcome: 'fail', step: ext.current, error: String(e.message).split('\n')[0].slice(0, 200) };
  }
  await context.close();
  results[name] = result;
  console.log(name.padEnd(45), result.outcome, result.step ?? '', result.error ?? '');
}
await browser.close();
server.close();
fs.writeFileSync(out, JSON.stringify(results, null, 2) + '\n');
