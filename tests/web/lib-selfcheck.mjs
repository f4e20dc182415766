// Checks lib.mjs against a small page server of its own on 127.0.0.1 (plain HTTP): watch() sees a
// CSP violation, a page error, a 500, and a request to http://10.255.255.1/x (recorded, aborted);
// axeCheck() finds known violations, passes a clean page behind a strict CSP, uses cookies, and
// refuses to pass a page it was redirected away from; shot() writes a PNG; main()/check()/fail()
// exit 1 with the message (and no Chromium is left after them); WEB_TEST_TIMEOUT ends a stuck
// test; a test killed with SIGKILL leaves no Chromium behind (Chromium ends when its pipe closes,
// so "no Chromium left" does not by itself prove that main() closed the browser).
//
//   node tests/web/lib-selfcheck.mjs          (exits non-zero, naming the failed check, on failure)
//
// Nothing here reaches 10.255.255.1: watch() aborts the request in the browser, and launch()'s
// LOOPBACK_ONLY_ARGS would stop it anyway (checked below: a redirect there, which routes miss).
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { randomBytes } from "node:crypto";
import { axeCheck, check, launch, main, newContext, shot, watch } from "./lib.mjs";

const HERE = fileURLToPath(new URL(".", import.meta.url));
const OUTSIDE = "http://10.255.255.1/x";
let passed = 0;
const ok = (cond, msg) => {
  check(cond, msg);
  passed++;
};

const layout = (title, body, { lang = "en" } = {}) =>
  `<!doctype html><html${lang ? ` lang="${lang}"` : ""}><head><meta charset="utf-8"><title>${title}</title></head><body>${body}</body></html>`;
const pages = {
  // A strict CSP, an inline script (refused), a script from 'self' that throws, an image answering 500.
  "/": {
    csp: "default-src 'self'",
    html: layout("Home", `<main><h1>Home</h1><script>document.title = "inline ran";</script><script src="/app.js"></script><img src="/boom" alt="broken on purpose"></main>`),
  },
  "/app.js": { type: "text/javascript", html: `document.body.dataset.app = "ran"; throw new Error("app.js fails on purpose");` },
  "/boom": { status: 500, type: "text/plain", html: "boom" },
  // No CSP: an image from outside loopback.
  "/outside": { html: layout("Outside", `<main><h1>Outside</h1><img id="out" src="${OUTSIDE}" alt="from outside"></main>`) },
  // Known axe violations: no lang (serious), an image without alt (critical), a button without a name (critical).
  "/axe-bad": { html: layout("Bad", `<main><h1>Bad</h1><img src="/pixel.png"><button></button></main>`, { lang: "" }) },
  // A clean page behind the same strict CSP (axe must still get in).
  "/axe-good": { csp: "default-src 'self'", html: layout("Good", `<main><h1>Good</h1><p>Nothing wrong here.</p><form><label for="q">Search</label> <input id="q" name="q"><button type="submit">Go</button></form></main>`) },
  "/signin": { html: layout("Sign in", `<main><h1>Sign in</h1></main>`) },
};

function serve() {
  const server = createServer((req, res) => {
    const path = req.url.split("?")[0];
    if (path === "/private") {
      if (!(req.headers.cookie ?? "").split(/;\s*/).includes("s=1")) {
        res.writeHead(303, { location: "/signin" });
        return res.end();
      }
      res.writeHead(200, { "content-type": "text/html; charset=utf-8", "content-security-policy": "default-src 'self'" });
      return res.end(layout("Private", `<main><h1>Private</h1><img src="/pixel.png"></main>`));
    }
    if (path === "/redirect-out") {
      res.writeHead(302, { location: OUTSIDE });
      return res.end();
    }
    if (path === "/pixel.png") {
      res.writeHead(200, { "content-type": "image/png" });
      return res.end(Buffer.from("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=", "base64"));
    }
    const p = pages[path];
    if (!p) {
      res.writeHead(404, { "content-type": "text/plain" });
      return res.end("not found");
    }
    const headers = { "content-type": p.type ?? "text/html; charset=utf-8" };
    if (p.csp) headers["content-security-policy"] = p.csp;
    res.writeHead(p.status ?? 200, headers);
    res.end(p.html);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

// Runs a small test script using lib.mjs in a child process; answers its exit code and output.
function child(body, env = {}, { killAfterMs } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "lib-selfcheck-"));
  const file = join(dir, `selfcheck-child-${randomBytes(4).toString("hex")}.mjs`);
  const lib = pathToFileURL(join(HERE, "lib.mjs")).href;
  writeFileSync(file, `import { launch, newContext, check, fail, main } from ${JSON.stringify(lib)};\n${body}\n`);
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [file], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    c.stdout.on("data", (d) => (out += d));
    c.stderr.on("data", (d) => (out += d));
    const t0 = Date.now();
    if (killAfterMs) {
      const poll = setInterval(() => {
        if (out.includes("launched")) {
          clearInterval(poll);
          setTimeout(() => c.kill("SIGKILL"), killAfterMs);
        }
      }, 50);
    }
    c.on("exit", (code, signal) => {
      rmSync(dir, { recursive: true, force: true });
      resolve({ code, signal, out, ms: Date.now() - t0 });
    });
  });
}

// Chromium processes whose command line carries `marker`.
function chromiumsWith(marker) {
  const found = [];
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(marker)) found.push(pid);
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

async function gone(marker, ms) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (chromiumsWith(marker).length === 0) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

main(async (browsers) => {
  const server = await serve();
  const base = `http://127.0.0.1:${server.address().port}`;
  const shotsDir = mkdtempSync(join(tmpdir(), "lib-selfcheck-shots-"));
  process.env.SHOTS_DIR = join(shotsDir, "nested");
  try {
    const browser = await launch();
    browsers.push(browser);
    ok(browser.version().length > 0, "Chromium starts");

    // 1. watch(): CSP violation, page error, 500.
    const ctx = await newContext(browser);
    const page = await ctx.newPage();
    const w = watch(page);
    await w.ready;
    await page.goto(base + "/");
    await page.waitForFunction(() => document.body.dataset.app === "ran");
    await page.waitForTimeout(300);
    ok((await page.title()) === "Home", "the inline script did not run (CSP)");
    let probs = w.problems();
    ok(probs.some((p) => p.startsWith("CSP violation") && p.includes("inline")), `watch reports the CSP violation: ${JSON.stringify(probs)}`);
    ok(probs.some((p) => p.startsWith("page error") && p.includes("app.js fails on purpose")), `watch reports the page error: ${JSON.stringify(probs)}`);
    ok(probs.some((p) => p.startsWith("HTTP 500") && p.includes("/boom")), `watch reports the 500: ${JSON.stringify(probs)}`);
    ok(!probs.some((p) => p.includes("leaving loopback")), `nothing left loopback yet: ${JSON.stringify(probs)}`);
    const beforeShot = probs.length;

    // 2. A request leaving loopback: recorded once, aborted by watch (not by the safety proxy).
    const failedOutside = [];
    page.on("requestfailed", (r) => r.url() === OUTSIDE && failedOutside.push(r.failure()?.errorText));
    await page.goto(base + "/outside");
    await page.waitForFunction(() => document.getElementById("out").complete);
    probs = w.problems();
    ok(probs.filter((p) => p === `request leaving loopback: GET ${OUTSIDE}`).length === 1, `watch reports ${OUTSIDE} once: ${JSON.stringify(probs)}`);
    ok((await page.evaluate(() => document.getElementById("out").naturalWidth)) === 0, "the outside image did not load");
    ok(failedOutside.length === 1 && failedOutside[0].startsWith("net::ERR_BLOCKED_BY_CLIENT"), `watch aborted it: ${JSON.stringify(failedOutside)}`);
    ok(probs.length === beforeShot + 1, `nothing else reported: ${JSON.stringify(probs)}`);

    // 2b. A redirect to outside loopback: routes never see it; watch records it and the
    // launch() guard stops it (it fails at the closed proxy port, it is not connected to).
    {
      const rp = await ctx.newPage();
      const rw = watch(rp);
      await rw.ready;
      const failedRedirect = [];
      rp.on("requestfailed", (r) => r.url() === OUTSIDE && failedRedirect.push(r.failure()?.errorText));
      const went = await rp.goto(base + "/redirect-out").then(() => "loaded", (e) => e.message);
      ok(went.includes("ERR_PROXY_CONNECTION_FAILED"), `a redirect out of loopback goes nowhere: ${went}`);
      ok(failedRedirect.length === 1 && failedRedirect[0] === "net::ERR_PROXY_CONNECTION_FAILED", `stopped by the guard: ${JSON.stringify(failedRedirect)}`);
      ok(JSON.stringify(rw.problems()) === JSON.stringify([`request leaving loopback: GET ${OUTSIDE}`]), `watch records the redirect out: ${JSON.stringify(rw.problems())}`);
      await rp.close();
    }

    // 3. The same on a watch whose interception is not awaited (as tests call it).
    const page2 = await ctx.newPage();
    const w2 = watch(page2);
    await page2.goto(base + "/outside");
    await page2.waitForFunction(() => document.getElementById("out").complete);
    ok(w2.problems().includes(`request leaving loopback: GET ${OUTSIDE}`), `an unawaited watch reports it too: ${JSON.stringify(w2.problems())}`);
    ok(w2.problems().length === 1, `and nothing else: ${JSON.stringify(w2.problems())}`);
    await page2.close();

    // 4. shot(): a PNG in SHOTS_DIR (created).
    const path = await shot(page, "outside");
    ok(path === join(process.env.SHOTS_DIR, "outside.png") && existsSync(path), `shot writes ${path}`);
    ok(readFileSync(path).subarray(1, 4).toString() === "PNG", "the shot is a PNG");

    // 5. axeCheck() with a browser: known violations; a clean page behind a strict CSP; cookies.
    const bad = await axeCheck(browser, base + "/axe-bad");
    for (const id of ["html-has-lang", "image-alt", "button-name"]) {
      ok(bad.some((v) => v.includes(` ${id}:`)), `axe finds ${id}: ${JSON.stringify(bad)}`);
    }
    ok(bad.every((v) => v.startsWith("serious ") || v.startsWith("critical ")), `only serious and critical: ${JSON.stringify(bad)}`);
    const good = await axeCheck(browser, base + "/axe-good");
    ok(good.length === 0, `a clean page behind default-src 'self' passes: ${JSON.stringify(good)}`);
    const noCookie = await axeCheck(browser, base + "/private");
    ok(noCookie.length === 1 && noCookie[0].startsWith("not checked") && noCookie[0].includes("/signin"), `a redirect away is not passed: ${JSON.stringify(noCookie)}`);
    const withCookie = await axeCheck(browser, base + "/private", [{ name: "s", value: "1", url: base }]);
    ok(withCookie.length === 1 && withCookie[0].includes("image-alt"), `cookies are used: ${JSON.stringify(withCookie)}`);
    const missing = await axeCheck(browser, base + "/nowhere");
    ok(missing.length === 1 && missing[0].includes("answered 404"), `a 404 is not passed: ${JSON.stringify(missing)}`);

    // 6. axeCheck() with a context (as ui-flow.mjs calls it): bypassCSP needed, and said so.
    const bypass = await browser.newContext({ ignoreHTTPSErrors: true, bypassCSP: true });
    await bypass.addCookies([{ name: "s", value: "1", url: base }]);
    const viaCtx = await axeCheck(bypass, base + "/private");
    ok(viaCtx.length === 1 && viaCtx[0].includes("image-alt"), `axeCheck with a context: ${JSON.stringify(viaCtx)}`);
    ok(bypass.pages().length === 0, "axeCheck closes its page in a given context");
    await bypass.close();
    const strict = await newContext(browser);
    let refused = "";
    await axeCheck(strict, base + "/axe-good").catch((e) => (refused = e.message));
    ok(/addScriptTag|Content Security Policy|did not load/.test(refused), `a context without bypassCSP fails loudly: ${refused}`);
    await strict.close();
    await ctx.close();

    // 7. main(), check(), fail() in a child: exit codes, messages, the browser closed.
    const marker = `--idgard-selfcheck-${randomBytes(6).toString("hex")}`;
    const launchLine = `const b = await launch({ args: ["${marker}"] }); console.error("launched");`;
    let r = await child(`main(async () => { ${launchLine} check(1 + 1 === 3, "arithmetic is off"); });`);
    ok(r.code === 1 && r.out.includes("FAILED: arithmetic is off"), `a failed check exits 1 with its message: ${r.code} ${r.out}`);
    ok(await gone(marker, 5000), "no Chromium left after a failed check");
    r = await child(`main(async (browsers) => { ${launchLine} browsers.push(b); await (await b.newPage()).goto("about:blank"); throw new TypeError("plain error"); });`);
    ok(r.code === 1 && r.out.includes("TypeError: plain error") && r.out.includes("selfcheck-child-"), `a thrown error exits 1 with its stack: ${r.code} ${r.out}`);
    ok(await gone(marker, 5000), "no Chromium left after a thrown error");
    r = await child(`main(async () => { fail("said so"); });`);
    ok(r.code === 1 && r.out.includes("FAILED: said so"), `fail() exits 1: ${r.code} ${r.out}`);
    r = await child(`main(async () => { ${launchLine} });`);
    ok(r.code === 0, `a passing test exits 0: ${r.code} ${r.out}`);
    ok(await gone(marker, 5000), "no Chromium left after a pass");
    r = await child(`main(async () => { await new Promise(() => {}); });`, { WEB_TEST_TIMEOUT: "2" });
    ok(r.code === 1 && r.out.includes("ran over 2 s") && r.ms < 10000, `WEB_TEST_TIMEOUT ends a stuck test: ${r.code} ${r.ms} ms ${r.out}`);

    // 8. A test killed outright (SIGKILL, as a harness may) leaves no Chromium behind.
    r = await child(`main(async () => { ${launchLine} await new Promise(() => {}); });`, {}, { killAfterMs: 500 });
    ok(r.signal === "SIGKILL", `the child was killed: ${r.signal}`);
    ok(await gone(marker, 10000), `Chromium exits with its killed test (left: ${chromiumsWith(marker).join(" ")})`);
  } finally {
    server.close();
    rmSync(shotsDir, { recursive: true, force: true });
  }
  console.log(`lib-selfcheck: ${passed} checks passed`);
  console.log(`${passed} passed, 0 failed`);
});
