// Helpers for idgard's browser tests: Debian's Chromium (/usr/bin/chromium) driven by
// playwright-core, against the idgard server on 127.0.0.1 (HTTPS, self-signed certificate).
//
//   launch()                      Chromium, headless, no background networking, nothing beyond loopback
//   newContext(browser)           a context that accepts the self-signed certificate
//   watch(page)                   records what a person would not see but should not happen:
//                                 CSP violations, uncaught page errors, requests leaving loopback
//                                 (aborted), responses >= 500; .problems() lists them
//   axeCheck(browserOrContext, url, cookies)
//                                 axe-core's serious and critical violations on one page
//   shot(page, name)              a full-page screenshot, $SHOTS_DIR/<name>.png
//   fail(msg), check(cond, msg)   end the test with a clear message
//   main(fn)                      runs fn(browsers), closes every browser, exits 1 on any error
import { mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { chromium } from "playwright-core";

export const CHROMIUM = "/usr/bin/chromium";
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

// A guard besides watch(): every request for a host other than loopback goes to a "proxy" on a
// closed loopback port and fails there (Chromium never proxies 127.0.0.1, localhost or [::1]).
// watch() records such requests and aborts them with page.route, but Playwright's routes never
// see the target of a redirect (a loopback page answering 302 to an outside address): without
// this guard Chromium would really connect there; with it, it fails with
// net::ERR_PROXY_CONNECTION_FAILED (and no outside name is looked up in DNS either).
export const LOOPBACK_ONLY_ARGS = ["--proxy-server=http://127.0.0.1:9"];

// Every browser launch() made, so that main() can close the ones a test forgot.
const launched = new Set();

/** Chromium with CHROMIUM_ARGS and LOOPBACK_ONLY_ARGS; `options.args` are added after them. */
export async function launch(options = {}) {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    ...options,
    args: [...CHROMIUM_ARGS, ...LOOPBACK_ONLY_ARGS, ...(options.args ?? [])],
  });
  launched.add(browser);
  browser.on("disconnected", () => launched.delete(browser));
  return browser;
}

export function newContext(browser, options = {}) {
  return browser.newContext({ ignoreHTTPSErrors: true, ...options });
}

const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]", "::1"]);

/** True for addresses that stay on this machine (and for data:, blob:, about: URLs). */
export function isLoopback(url) {
  let u;
  try {
    u = new URL(url);
  } catch {
    return false;
  }
  if (["data:", "blob:", "about:"].includes(u.protocol)) return true;
  return LOOPBACK.has(u.hostname);
}

/**
 * Watches one page from now on. Records
 * - CSP violations (the console messages Chromium writes for them, "... Content Security Policy ..."),
 * - uncaught errors in the page (pageerror),
 * - every request to a host other than 127.0.0.1, localhost or [::1]; these are also aborted
 *   (except the target of a redirect, which routes never see: LOOPBACK_ONLY_ARGS stops those),
 * - responses with a status of 500 or more.
 * Nothing is injected into the page. Answers { problems(), ready }: `ready` resolves once the
 * request interception is in place (requests before that are still recorded, not aborted).
 */
export function watch(page) {
  const found = [];
  const seen = new Set();
  const note = (msg) => {
    if (!seen.has(msg)) {
      seen.add(msg);
      found.push(msg);
    }
  };
  const outside = (method, url) => note(`request leaving loopback: ${method} ${url}`);
  page.on("console", (m) => {
    const text = m.text();
    if (text.includes("Content Security Policy")) note(`CSP violation on ${page.url()}: ${text}`);
  });
  page.on("pageerror", (e) => note(`page error on ${page.url()}: ${e.message}`));
  page.on("request", (r) => {
    if (!isLoopback(r.url())) outside(r.method(), r.url());
  });
  page.on("websocket", (ws) => {
    if (!isLoopback(ws.url())) outside("WEBSOCKET", ws.url());
  });
  page.on("response", (r) => {
    if (r.status() >= 500) note(`HTTP ${r.status()} for ${r.request().method()} ${r.url()}`);
  });
  const ready = page
    .route("**/*", (route) => {
      const r = route.request();
      if (isLoopback(r.url())) return route.fallback();
      outside(r.method(), r.url());
      return route.abort("blockedbyclient");
    })
    .catch((e) => note(`watch could not intercept requests: ${e.message}`));
  return {
    ready,
    problems: () => [...found],
  };
}

const require = createRequire(import.meta.url);
let axeSource;

/**
 * Runs axe-core on `url` and answers its serious and critical violations as strings.
 * With a Browser, the page is opened in a context of its own made with bypassCSP (axe is injected
 * as a script, which the server's CSP rightly refuses) and ignoreHTTPSErrors, given `cookies`
 * (as from context.cookies()) first, and closed afterwards. With a BrowserContext, that context is
 * used as it is (it must have been made with bypassCSP: true) and only the page is closed.
 * A page that answers >= 400 or ends on another path (a sign-in redirect: missing cookies) is
 * reported as not checked, never silently passed.
 */
export async function axeCheck(browserOrContext, url, cookies = []) {
  axeSource ??= readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
  const own = typeof browserOrContext.newContext === "function";
  const ctx = own ? await browserOrContext.newContext({ ignoreHTTPSErrors: true, bypassCSP: true }) : browserOrContext;
  try {
    if (cookies.length) await ctx.addCookies(cookies);
    const page = await ctx.newPage();
    try {
      const res = await page.goto(url, { waitUntil: "load" });
      if (!res || res.status() >= 400) return [`not checked: ${url} answered ${res ? res.status() : "nothing"}`];
      if (new URL(page.url()).pathname !== new URL(url).pathname) return [`not checked: ${url} led to ${page.url()}`];
      await page.addScriptTag({ content: axeSource });
      if (!(await page.evaluate(() => typeof window.axe === "object"))) {
        throw new Error(`axe-core did not load on ${url} (a context without bypassCSP?)`);
      }
      const violations = await page.evaluate(async () => {
        const r = await window.axe.run(document);
        return r.violations.map((v) => ({
          id: v.id,
          impact: v.impact,
          help: v.help,
          targets: v.nodes.map((n) => n.target.join(" ")),
        }));
      });
      return violations
        .filter((v) => v.impact === "serious" || v.impact === "critical")
        .map((v) => `${v.impact} ${v.id}: ${v.help} (${v.targets.slice(0, 5).join(", ")}${v.targets.length > 5 ? ", ..." : ""})`);
    } finally {
      await page.close();
    }
  } finally {
    if (own) await ctx.close();
  }
}

/** A full-page screenshot as $SHOTS_DIR/<name>.png; answers its path (null when SHOTS_DIR is unset). */
export async function shot(page, name) {
  const dir = process.env.SHOTS_DIR;
  if (!dir) return null;
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

export class CheckFailed extends Error {
  name = "CheckFailed";
}

/** Ends the test: throws, and main() prints the message and exits 1. */
export function fail(msg) {
  throw new CheckFailed(msg);
}

export function check(cond, msg) {
  if (!cond) fail(msg);
}

async function closeAll(browsers) {
  await Promise.all(
    [...new Set([...browsers, ...launched])].map((b) =>
      Promise.race([b.close().catch(() => {}), new Promise((r) => setTimeout(r, 10000).unref())]),
    ),
  );
}

/**
 * Runs `fn(browsers)`; any browser pushed to `browsers` or made by launch() is closed at the end.
 * Exits 0 when fn resolves, 1 (printing the stack) when it throws or runs over the time limit
 * ($WEB_TEST_TIMEOUT seconds, 300 by default).
 */
export function main(fn) {
  const browsers = [];
  const limit = Number(process.env.WEB_TEST_TIMEOUT || "300");
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the test ran over ${limit} s (WEB_TEST_TIMEOUT)`)), limit * 1000);
  });
  return Promise.race([Promise.resolve().then(() => fn(browsers)), timeout]).then(
    async () => {
      clearTimeout(timer);
      await closeAll(browsers);
      process.exit(0);
    },
    async (err) => {
      clearTimeout(timer);
      console.error(err instanceof CheckFailed ? `FAILED: ${err.message}\n${err.stack}` : (err?.stack ?? String(err)));
      await closeAll(browsers);
      process.exit(1);
    },
  );
}
