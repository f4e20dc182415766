// The UI's daily tasks in headless Chromium, against a running idgard server, agent and slapd
// that tests/all/ui.rs started. Exits non-zero, naming what failed, on the first problem.
//
// Env: IDGARD_URL; OPERATOR_USER/OPERATOR_PASSWORD (development password, operator);
// VIEWER_USER/VIEWER_PASSWORD (an account of the OpenID Connect provider, viewer);
// APPROVER_USER/APPROVER_PASSWORD (directory account, approver); JOB (a declared job);
// HR_CSV and HR_AFTER (the source file, and what to write there before the second run: two
// leavers, over the threshold); SHOTS_DIR.
import { writeFileSync } from "node:fs";
import { launch, newContext, watch, axeCheck, shot, check, main } from "./lib.mjs";

const url = process.env.IDGARD_URL;
const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};

async function signIn(page, kind, user, password) {
  await page.goto(url + "/");
  check(page.url().includes("/signin"), `a visitor is led to sign-in, not ${page.url()}`);
  const prefix = kind === "password" ? "dev" : "ldap";
  await page.fill(`#${prefix}-user`, user);
  await page.fill(`#${prefix}-password`, password);
  const label = kind === "password" ? "Sign in with password" : "Sign in with directory account";
  await Promise.all([page.waitForURL("**/dashboard"), page.getByRole("button", { name: label }).click()]);
  check((await page.locator("h1").innerText()) === "Dashboard", "the dashboard after sign-in");
}

async function runState(page) {
  return (await page.locator("#run-state").innerText()).trim();
}

async function waitState(page, wanted, seconds) {
  const until = Date.now() + seconds * 1000;
  const seen = [];
  while (Date.now() < until) {
    const s = await runState(page).catch(() => "");
    if (seen[seen.length - 1] !== s) seen.push(s);
    if (s === wanted) return seen;
    await page.waitForTimeout(100);
  }
  throw new Error(`run state ${wanted} not reached in ${seconds} s; seen ${seen.join(" → ")}`);
}

main(async (browsers) => {
  const browser = await launch();
  browsers.push(browser);
  const problems = [];
  const ctx = await newContext(browser);
  const page = await ctx.newPage();
  const w = watch(page);
  await w.ready;

  // 1. The operator signs in with the development password; the banner says so.
  await signIn(page, "password", env("OPERATOR_USER"), env("OPERATOR_PASSWORD"));
  check(await page.locator("p.banner").isVisible(), "the development banner");
  await shot(page, "01-dashboard");

  // 2. Runs the declared job and follows it live to the end, on one page load.
  await page.goto(url + "/jobs");
  await shot(page, "02-jobs");
  await page.selectOption("#job", env("JOB"));
  await page.check("input[name=mode][value=complete]");
  await Promise.all([page.waitForURL("**/runs/*"), page.getByRole("button", { name: "Run", exact: true }).click()]);
  const runUrl = page.url();
  let navigations = 0;
  page.on("framenavigated", (f) => { if (f === page.mainFrame()) navigations++; });
  const seen = await waitState(page, "succeeded", 60);
  // The page followed the run (reloading only when a step brought new tasks, and once at the
  // end to show the results); a finished run's page stays put.
  for (let i = 0; i < 50 && navigations === 0; i++) await page.waitForTimeout(100);
  check(navigations >= 1, `the page reloads at the end (seen ${seen.join(" → ")})`);
  await page.waitForLoadState("load");
  const settled = navigations;
  await page.waitForTimeout(1500);
  check(navigations === settled, "a finished run's page does not reload");
  const bars = await page.locator("progress").evaluateAll((ps) => ps.map((p) => p.value));
  check(bars.length > 0 && bars.every((v) => v === 100), `every task at 100 %: ${bars}`);
  check((await page.locator("dl.report").count()) >= 6, "each task's report as figures");
  await shot(page, "03-run-succeeded");

  // 3. The account that was already there waits for review beside its candidate identity; the
  //    operator confirms it, and it is linked from then on.
  await page.goto(url + "/connections/directory?situation=unlinked");
  const confirm = page.getByRole("button", { name: "Confirm paul.durand belongs to E2" });
  check((await confirm.count()) === 1, "paul.durand waits for review, candidate E2");
  await shot(page, "04-review");
  await Promise.all([page.waitForURL("**/connections/directory**"), confirm.click()]);
  await page.goto(url + "/connections/directory/entries/paul.durand");
  check((await page.locator("main").innerText()).includes("Situation linked."), "paul.durand is linked after the confirmation");
  await page.goto(url + "/connections/directory?situation=unlinked");
  check((await page.getByRole("button", { name: /^Confirm / }).count()) === 0, "nothing left to review");

  // 4. The connectors, with what each asks for and is granted; a connection tested from its page.
  await page.goto(url + "/connectors");
  check((await page.getByRole("row", { name: /directory/ }).count()) === 1, "the directory connection on the connectors page");
  await page.goto(url + "/connections/directory");
  await Promise.all([page.waitForURL("**/runs/*"), page.getByRole("button", { name: "Test connection" }).click()]);
  await waitState(page, "succeeded", 30);

  // 5. Who has what: search by name, then by key, then one identity with its accounts and history.
  await page.goto(url + "/identities?q=duR");
  check((await page.getByRole("link", { name: "E2", exact: true }).count()) === 1, "Paul Durand found by the start of his last name, case aside");
  await page.goto(url + "/identities?q=E1");
  await Promise.all([page.waitForURL("**/identities/E1"), page.getByRole("link", { name: "E1", exact: true }).click()]);
  check((await page.locator("h1").innerText()).includes("Identity E1"), "identity page");
  check((await page.locator("table").count()) >= 2, "attributes and accounts");
  await shot(page, "05-identity");
  for (const path of ["/connections", "/orders", "/agents", "/approvals", "/me"]) {
    const r = await page.goto(url + path);
    check(r.status() === 200, `${path}: ${r.status()}`);
  }

  // 6. Two leavers at once: the next run stops for approval; the operator cannot approve.
  writeFileSync(env("HR_CSV"), env("HR_AFTER"));
  await page.goto(url + "/jobs");
  await page.selectOption("#job", env("JOB"));
  await Promise.all([page.waitForURL("**/runs/*"), page.getByRole("button", { name: "Run", exact: true }).click()]);
  const blockedUrl = page.url();
  await waitState(page, "blocked", 60);
  await page.reload();
  check((await page.getByRole("button", { name: "Approve" }).count()) === 0, "no Approve button for an operator");
  const csrf = await page.locator("form[action='/signout'] input[name=csrf]").inputValue();
  const refused = await page.request.post(blockedUrl + "/approve", {
    form: { csrf },
    headers: { "sec-fetch-site": "same-origin" },
    maxRedirects: 0,
  });
  check(refused.status() === 403, `an operator's approval is refused: ${refused.status()}`);
  await shot(page, "06-blocked-operator");

  // 7. Sign out; Back shows the sign-in page, not the run.
  await Promise.all([page.waitForURL("**/signin"), page.getByRole("button", { name: "Sign out" }).click()]);
  await page.goBack();
  await page.waitForLoadState("load");
  check(page.url().includes("/signin"), `Back after sign-out leads to sign-in, not ${page.url()}`);
  check(!(await page.content()).includes("Blocked: waiting for approval"), "no data after sign-out");

  // 8. The approver (a directory account) approves; the run goes on to the end.
  await signIn(page, "ldap", env("APPROVER_USER"), env("APPROVER_PASSWORD"));
  await page.goto(url + "/approvals");
  await shot(page, "07-approvals");
  await Promise.all([page.waitForURL(blockedUrl), page.locator(`a[href='${new URL(blockedUrl).pathname}']`).first().click()]);
  await Promise.all([page.waitForURL(blockedUrl), page.getByRole("button", { name: "Approve" }).click()]);
  await waitState(page, "succeeded", 60);
  await shot(page, "08-approved");

  // 9. The confirmed account's update failed (the target lost it): an operator retries it.
  await Promise.all([page.waitForURL("**/signin"), page.getByRole("button", { name: "Sign out" }).click()]);
  await signIn(page, "password", env("OPERATOR_USER"), env("OPERATOR_PASSWORD"));
  await page.goto(url + "/orders?state=failed");
  const failed = page.getByRole("row", { name: /paul\.durand/ });
  check((await failed.count()) === 1, "the failed order for paul.durand is listed");
  check((await failed.innerText()).includes("no account"), "with the connector's message");
  await shot(page, "09-failed-order");
  await failed.getByRole("checkbox").check();
  await Promise.all([page.waitForURL("**/orders?state=retry**"), page.getByRole("button", { name: "Retry the selected failed orders" }).click()]);
  check((await page.getByRole("row", { name: /paul\.durand/ }).count()) === 1, "paul.durand's order waits for its next attempt");
  await page.goto(url + "/orders?state=failed");
  check((await page.getByRole("row", { name: /paul\.durand/ }).count()) === 0, "no failed order left for paul.durand");

  // 10. A viewer signs in through the OpenID Connect provider: the dashboard, and no Run button.
  await Promise.all([page.waitForURL("**/signin"), page.getByRole("button", { name: "Sign out" }).click()]);
  await page.getByRole("link", { name: "Staff sign-on" }).click();
  await page.waitForURL((u) => u.pathname.startsWith("/interaction/"));
  await page.fill("#login", env("VIEWER_USER"));
  await page.fill("#password", env("VIEWER_PASSWORD"));
  await Promise.all([page.waitForURL("**/dashboard"), page.getByRole("button", { name: "Sign in" }).click()]);
  check((await page.locator("h1").innerText()) === "Dashboard", "the dashboard after single sign-on");
  check((await page.locator("header").innerText()).includes(env("VIEWER_USER")), "signed in as the provider's user");
  await page.goto(url + "/jobs");
  check((await page.getByRole("button", { name: "Run", exact: true }).count()) === 0, "a viewer has no Run button");
  await shot(page, "10-viewer-sso");

  // 11. Accessibility of the main pages (axe, in a context that lets its script in).
  const cookies = await ctx.cookies();
  const axeCtx = await browser.newContext({ ignoreHTTPSErrors: true, bypassCSP: true });
  await axeCtx.addCookies(cookies);
  for (const path of ["/dashboard", "/jobs", new URL(runUrl).pathname, "/identities/E1", "/orders", "/agents", "/connections", "/connectors", "/approvals", "/me"]) {
    for (const v of await axeCheck(axeCtx, url + path)) problems.push(`axe ${path}: ${v}`);
  }
  const signinCtx = await browser.newContext({ ignoreHTTPSErrors: true, bypassCSP: true });
  for (const v of await axeCheck(signinCtx, url + "/signin")) problems.push(`axe /signin: ${v}`);

  problems.push(...w.problems());
  check(problems.length === 0, "problems:\n" + problems.join("\n"));
  console.log("ui-flow: all steps passed");
});
