// Benchmark: what the browser app costs before the chat page renders.
//
//   (cd frontend && npm run build) && node bench/frontend_load.mjs [--runs 7]
//
// 1. JS before the chat renders (gzip): the entry script of dist/index.html and the
//    chunks it preloads, gzip level 6 (nginx's gzip_comp_level in roles/nginx is the
//    same order); lazy chunks (Markdown + highlighting) are listed apart: they load
//    after the first answer is on screen. Target (docs/BENCHMARKS.md): <= 200 kB.
// 2. Time to first render: Debian's Chromium opens the built app from a local static
//    server (SPA fallback, gzip) and waits for the login form, the first screen of a
//    new visitor; median of N runs, on loopback and with a throttled profile (4x CPU
//    slowdown, 1.6 Mbit/s, 150 ms RTT: a mid-range phone on slow 4G).
import { createReadStream, readdirSync, readFileSync, statSync } from "node:fs";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import path from "node:path";
import { gzipSync } from "node:zlib";

const root = path.resolve(import.meta.dirname, "..");
const dist = path.join(root, "frontend", "dist");
const require = createRequire(path.join(root, "tests", "e2e", "package.json"));
const { chromium } = require("playwright-core");
const runs = Number(process.argv[process.argv.indexOf("--runs") + 1]) || 7;

const gz = (file) => gzipSync(readFileSync(path.join(dist, file)), { level: 6 }).length;
const kB = (bytes) => `${(bytes / 1000).toFixed(1)} kB`;

// --- 1. bytes ---
const html = readFileSync(path.join(dist, "index.html"), "utf8");
const initial = [...html.matchAll(/(?:src|href)="\/(assets\/[^"]+\.js)"/g)].map((m) => m[1]);
const all = readdirSync(path.join(dist, "assets"))
  .filter((f) => f.endsWith(".js"))
  .map((f) => `assets/${f}`);
const lazy = all.filter((f) => !initial.includes(f));
const initialGzip = initial.reduce((sum, f) => sum + gz(f), 0);
const css = [...html.matchAll(/href="\/(assets\/[^"]+\.css)"/g)].map((m) => m[1]);
console.log("JS before the chat page renders (gzip -6):");
for (const f of initial) console.log(`  ${f.padEnd(40)} ${kB(gz(f))}`);
console.log(`  total                                    ${kB(initialGzip)}  (target <= 200 kB)`);
console.log(`CSS: ${css.map((f) => `${f} ${kB(gz(f))}`).join(", ")}`);
console.log("Loaded later (lazy):");
for (const f of lazy) console.log(`  ${f.padEnd(40)} ${kB(gz(f))}`);

// --- 2. time to first render ---
const types = {
  ".js": "text/javascript",
  ".css": "text/css",
  ".html": "text/html",
  ".svg": "image/svg+xml",
};
const server = createServer((request, response) => {
  const url = new URL(request.url, "http://x");
  let file = path.join(dist, path.normalize(url.pathname));
  if (!file.startsWith(dist) || !statSync(file, { throwIfNoEntry: false })?.isFile()) {
    file = path.join(dist, "index.html"); // SPA fallback, as nginx does
  }
  const headers = { "Content-Type": types[path.extname(file)] ?? "application/octet-stream" };
  if (/\bgzip\b/.test(request.headers["accept-encoding"] ?? "")) {
    response.writeHead(200, { ...headers, "Content-Encoding": "gzip" });
    response.end(gzipSync(readFileSync(file), { level: 6 }));
  } else {
    response.writeHead(200, headers);
    createReadStream(file).pipe(response);
  }
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const base = `http://127.0.0.1:${server.address().port}`;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
  ],
});

async function firstRender(throttled) {
  const context = await browser.newContext(); // a fresh cache each run: a first visit
  const page = await context.newPage();
  if (throttled) {
    const cdp = await context.newCDPSession(page);
    await cdp.send("Emulation.setCPUThrottlingRate", { rate: 4 });
    await cdp.send("Network.enable");
    await cdp.send("Network.emulateNetworkConditions", {
      offline: false,
      latency: 150,
      downloadThroughput: (1.6 * 1024 * 1024) / 8,
      uploadThroughput: (750 * 1024) / 8,
    });
  }
  const start = Date.now();
  await page.goto(`${base}/chat`); // no session: the app renders the login form
  await page.getByLabel("E-mail").waitFor();
  const rendered = Date.now() - start;
  const fcp = await page.evaluate(
    () => performance.getEntriesByName("first-contentful-paint")[0]?.startTime ?? Number.NaN,
  );
  await context.close();
  return { rendered, fcp };
}

const median = (values) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)];
for (const throttled of [false, true]) {
  const results = [];
  for (let i = 0; i < runs; i++) results.push(await firstRender(throttled));
  const label = throttled ? "4x CPU, 1.6 Mbit/s, 150 ms RTT" : "loopback, no throttling";
  console.log(
    `First render (${label}), median of ${runs}: login form visible ${median(results.map((r) => r.rendered))} ms, ` +
      `first contentful paint ${median(results.map((r) => r.fcp)).toFixed(0)} ms`,
  );
}
await browser.close();
server.close();
