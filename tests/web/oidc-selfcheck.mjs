// Checks oidc.mjs from the outside, as a relying party would, with Node's fetch and no browser:
// discovery, PKCE required, the code flow through the login form (cookies carried by hand, every
// redirect followed by hand), the token endpoint (client_secret_basic), the ID token's signature
// against the published JWKS, UserInfo's claims, refusals (wrong password, replayed code, wrong
// verifier, cancelled sign-in), OIDC_ID_TOKEN_TTL, each OIDC_DEVIATE, a clean exit on SIGTERM; then
// the same sign-in once in Chromium through lib.mjs (fields found by their labels, no CSP
// violation, axe clean). With SHOTS_DIR set, the login page is saved as oidc-login.png.
//
//   node tests/web/oidc-selfcheck.mjs        (exits non-zero, naming the failed check, on any failure)
import { spawn } from "node:child_process";
import { createHash, createPublicKey, randomBytes, verify } from "node:crypto";
import { fileURLToPath } from "node:url";
import { axeCheck, launch, newContext, shot, watch } from "./lib.mjs";

const OIDC = fileURLToPath(new URL("./oidc.mjs", import.meta.url));
const CLIENT_ID = "idgard";
const CLIENT_SECRET = "client-secret";
const REDIRECT = "https://127.0.0.1:59999/signin/oidc/callback"; // nothing listens there: the flow stops at it
const USERS = {
  alice: { password: "alice-pw", groups: ["idm-admins"] },
  mallory: { password: "mallory-pw", groups: ["staff", "other"], name: "Mallory M" },
};

let passed = 0;
function check(cond, msg) {
  if (!cond) throw new Error(`FAILED: ${msg}`);
  passed++;
}
const b64u = (buf) => Buffer.from(buf).toString("base64url");

const children = new Set();
async function startProvider(extraEnv = {}) {
  const child = spawn(process.execPath, [OIDC], {
    env: {
      ...process.env,
      OIDC_PORT: "0",
      OIDC_CLIENT_ID: CLIENT_ID,
      OIDC_CLIENT_SECRET: CLIENT_SECRET,
      OIDC_REDIRECT_URI: REDIRECT,
      OIDC_USERS: JSON.stringify(USERS),
      ...extraEnv,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  let stdout = "";
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  const issuer = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`oidc.mjs not ready in 10 s; stderr:\n${stderr}`)), 10000);
    child.stdout.on("data", (d) => {
      stdout += d;
      const nl = stdout.indexOf("\n");
      if (nl >= 0) {
        clearTimeout(timer);
        const line = stdout.slice(0, nl);
        if (!line.startsWith("ready ")) reject(new Error(`first line is not "ready <issuer>": ${line}`));
        resolve(line.slice("ready ".length));
      }
    });
    child.on("exit", (code) => reject(new Error(`oidc.mjs exited (${code}) before ready; stderr:\n${stderr}`)));
  });
  return {
    issuer,
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    async stop() {
      const t0 = Date.now();
      child.kill("SIGTERM");
      const r = await exited;
      children.delete(child);
      return { ...r, ms: Date.now() - t0 };
    },
  };
}

// A browser without JavaScript: a cookie jar by name (as tests/all/ui.rs keeps one), redirects
// followed by hand.
class Jar {
  cookies = new Map();
  take(res) {
    for (const sc of res.headers.getSetCookie()) {
      const [pair, ...attrs] = sc.split(";");
      const eq = pair.indexOf("=");
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const gone = attrs.some((a) => {
        const [k, v] = a.trim().split("=");
        return (k.toLowerCase() === "max-age" && Number(v) <= 0) || (k.toLowerCase() === "expires" && Date.parse(v) < Date.now());
      });
      if (gone) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }
  header() {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join("; ");
  }
}

async function http(jar, url, init = {}) {
  const res = await fetch(url, { redirect: "manual", ...init, headers: { cookie: jar.header(), ...(init.headers ?? {}) } });
  jar.take(res);
  return { status: res.status, location: res.headers.get("location"), body: await res.text(), headers: res.headers };
}

function authUrl(issuer, { verifier, state, nonce, scope = "openid profile groups", pkce = true, responseType = "code" }) {
  const u = new URL(`${issuer}/auth`);
  u.searchParams.set("client_id", CLIENT_ID);
  u.searchParams.set("response_type", responseType);
  u.searchParams.set("redirect_uri", REDIRECT);
  u.searchParams.set("scope", scope);
  u.searchParams.set("state", state);
  u.searchParams.set("nonce", nonce);
  if (pkce) {
    u.searchParams.set("code_challenge", b64u(createHash("sha256").update(verifier).digest()));
    u.searchParams.set("code_challenge_method", "S256");
  }
  return u.toString();
}

// Follows redirects from `url` until the client's redirect URI; fills the login form when it
// shows. Answers the final redirect URI (parsed) and what was seen on the way.
async function through(jar, url, login, password, { expectForm = true } = {}) {
  const seen = { forms: 0, refusals: 0, chain: [] };
  let loc = url;
  for (let i = 0; i < 20; i++) {
    if (loc.startsWith(REDIRECT)) return { final: new URL(loc), seen };
    seen.chain.push(loc);
    const r = await http(jar, loc);
    if (r.location) {
      loc = new URL(r.location, loc).toString();
      continue;
    }
    check(r.status === 200, `a page on the way answers 200 or a redirect, not ${r.status} at ${loc}: ${r.body.slice(0, 300)}`);
    seen.forms++;
    check(expectForm, `no login form expected here: ${loc}`);
    check(/<label for="login">Login<\/label>/.test(r.body), "the form has a field labelled Login");
    check(/<label for="password">Password<\/label>/.test(r.body), "the form has a field labelled Password");
    check(/<button type="submit">Sign in<\/button>/.test(r.body), "the form has a Sign in button");
    check(!/<script/i.test(r.body), "the login page has no script");
    check((r.headers.get("content-security-policy") ?? "").includes("default-src 'none'"), "the login page has a strict CSP");
    const action = new URL(r.body.match(/action="([^"]+)"/)[1].replaceAll("&amp;", "&"), loc).toString();
    // A wrong password first: the form again, 401, no redirect.
    const wrong = await http(jar, action, { method: "POST", body: new URLSearchParams({ login, password: password + "x" }) });
    check(wrong.status === 401 && !wrong.location && wrong.body.includes("Wrong login or password"), `a wrong password is refused with the form again (${wrong.status})`);
    seen.refusals++;
    const ok = await http(jar, action, { method: "POST", body: new URLSearchParams({ login, password }) });
    check(ok.status === 303 && ok.location, `the right password is answered with a 303 (${ok.status} ${ok.body.slice(0, 200)})`);
    loc = new URL(ok.location, action).toString();
  }
  throw new Error(`FAILED: no way back to the client from ${url}`);
}

async function token(issuer, body, { secret = CLIENT_SECRET } = {}) {
  const res = await fetch(`${issuer}/token`, {
    method: "POST",
    headers: { authorization: `Basic ${Buffer.from(`${CLIENT_ID}:${secret}`).toString("base64")}` },
    body: new URLSearchParams(body),
  });
  return { status: res.status, json: await res.json() };
}

function decodeJwt(jwt) {
  const [h, p, s] = jwt.split(".");
  return {
    header: JSON.parse(Buffer.from(h, "base64url")),
    payload: JSON.parse(Buffer.from(p, "base64url")),
    input: Buffer.from(`${h}.${p}`),
    sig: Buffer.from(s, "base64url"),
  };
}

async function signatureValid(issuer, jwt) {
  const { header, input, sig } = decodeJwt(jwt);
  const disc = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
  const jwks = await (await fetch(disc.jwks_uri)).json();
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  check(jwk, `the ID token's kid ${header.kid} is in the JWKS`);
  check(!("d" in jwk) && !("p" in jwk), "the JWKS publishes no private key parts");
  return verify("sha256", input, createPublicKey({ key: jwk, format: "jwk" }), sig);
}

// One whole sign-in for `login`: answers the token response and what the flow saw.
async function signIn(issuer, login, { jar = new Jar(), expectForm = true } = {}) {
  const verifier = b64u(randomBytes(32));
  const state = b64u(randomBytes(16));
  const nonce = b64u(randomBytes(16));
  const { final, seen } = await through(jar, authUrl(issuer, { verifier, state, nonce }), login, USERS[login].password, { expectForm });
  check(final.searchParams.get("state") === state, "the state comes back");
  check(final.searchParams.get("iss") === issuer, "the iss parameter comes back (RFC 9207)");
  const code = final.searchParams.get("code");
  check(code, `a code comes back: ${final}`);
  const t = await token(issuer, { grant_type: "authorization_code", code, redirect_uri: REDIRECT, code_verifier: verifier });
  check(t.status === 200 && t.json.id_token && t.json.access_token, `the token endpoint answers tokens: ${JSON.stringify(t.json)}`);
  return { t, seen, nonce, verifier, code, jar };
}

async function main() {
  const guard = setTimeout(() => {
    console.error("FAILED: the self-check took over 120 s");
    for (const c of children) c.kill("SIGKILL");
    process.exit(1);
  }, 120000);

  // 1. Start, discovery.
  const p = await startProvider();
  const { issuer } = p;
  check(/^http:\/\/127\.0\.0\.1:\d+$/.test(issuer), `issuer is http://127.0.0.1:<port>: ${issuer}`);
  const disc = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
  check(disc.issuer === issuer, "discovery names the issuer");
  check(JSON.stringify(disc.response_types_supported) === '["code"]', `response types: code only (${disc.response_types_supported})`);
  check(JSON.stringify(disc.grant_types_supported) === '["authorization_code"]', `grant types: authorization_code only (${disc.grant_types_supported})`);
  check(JSON.stringify(disc.code_challenge_methods_supported) === '["S256"]', `PKCE: S256 only (${disc.code_challenge_methods_supported})`);
  check(["openid", "profile", "groups"].every((s) => disc.scopes_supported.includes(s)), `scopes: ${disc.scopes_supported}`);
  check(!disc.scopes_supported.includes("offline_access"), "no offline_access");
  check(JSON.stringify(disc.token_endpoint_auth_methods_supported) === '["client_secret_basic"]', `client auth: ${disc.token_endpoint_auth_methods_supported}`);
  check(disc.userinfo_endpoint && disc.jwks_uri && disc.token_endpoint && disc.authorization_endpoint, "endpoints published");

  // 2. PKCE is required; only the code response type is accepted.
  {
    const jar = new Jar();
    const r = await http(jar, authUrl(issuer, { verifier: "x", state: "s1", nonce: "n1", pkce: false }));
    const to = r.location ? new URL(r.location, issuer) : null;
    check(r.status === 303 && to && to.toString().startsWith(REDIRECT) && to.searchParams.get("error") === "invalid_request", `an authorization request without PKCE is refused: ${r.status} ${r.location}`);
    check(/PKCE/.test(to.searchParams.get("error_description") ?? ""), `the refusal names PKCE: ${to.searchParams.get("error_description")}`);
    const it = await http(jar, authUrl(issuer, { verifier: "x".repeat(43), state: "s2", nonce: "n2", responseType: "id_token" }));
    check(it.status >= 300 && it.status < 500 && !(it.location ?? "").includes("id_token="), `response_type=id_token is refused: ${it.status} ${it.location}`);
  }

  // 3. The whole flow for alice: form, wrong password refused, consent granted by itself.
  const a = await signIn(issuer, "alice");
  check(a.seen.forms === 1, `exactly one form on the way (${a.seen.forms})`);
  check(a.seen.chain.filter((u) => u.includes("/interaction/")).length === 2, `login then consent interactions: ${a.seen.chain.join(" → ")}`);
  const id = decodeJwt(a.t.json.id_token);
  check(id.header.alg === "RS256", "the ID token is RS256");
  check(await signatureValid(issuer, a.t.json.id_token), "the ID token's signature verifies against the JWKS");
  check(id.payload.iss === issuer && id.payload.aud === CLIENT_ID && id.payload.sub === "alice", `ID token iss/aud/sub: ${JSON.stringify(id.payload)}`);
  check(id.payload.nonce === a.nonce, "the ID token carries the nonce");
  check(id.payload.exp > Date.now() / 1000, "the ID token is not expired");
  check(typeof a.t.json.scope === "string" && ["openid", "profile", "groups"].every((s) => a.t.json.scope.split(" ").includes(s)), `granted scope: ${a.t.json.scope}`);
  check(!a.t.json.refresh_token, "no refresh token");
  const ui = await fetch(disc.userinfo_endpoint, { headers: { authorization: `Bearer ${a.t.json.access_token}` } });
  const info = await ui.json();
  check(ui.status === 200, `userinfo answers 200: ${ui.status} ${JSON.stringify(info)}`);
  check(info.sub === "alice" && info.preferred_username === "alice", `userinfo sub and preferred_username: ${JSON.stringify(info)}`);
  check(JSON.stringify(info.groups) === '["idm-admins"]', `userinfo groups: ${JSON.stringify(info)}`);
  const noToken = await fetch(disc.userinfo_endpoint);
  check(noToken.status === 401, `userinfo without a token: 401 (${noToken.status})`);

  // 4. The code cannot be used twice; a wrong verifier or secret is refused.
  const replay = await token(issuer, { grant_type: "authorization_code", code: a.code, redirect_uri: REDIRECT, code_verifier: a.verifier });
  check(replay.status === 400 && replay.json.error === "invalid_grant", `a replayed code is refused: ${JSON.stringify(replay)}`);
  {
    const verifier = b64u(randomBytes(32));
    const jar = new Jar();
    const { final } = await through(jar, authUrl(issuer, { verifier, state: "s3", nonce: "n3" }), "mallory", USERS.mallory.password);
    const code = final.searchParams.get("code");
    const badSecret = await token(issuer, { grant_type: "authorization_code", code, redirect_uri: REDIRECT, code_verifier: verifier }, { secret: "nope" });
    check(badSecret.status === 401 && badSecret.json.error === "invalid_client", `a wrong client secret is refused: ${JSON.stringify(badSecret)}`);
    const wrong = await token(issuer, { grant_type: "authorization_code", code, redirect_uri: REDIRECT, code_verifier: b64u(randomBytes(32)) });
    check(wrong.status === 400 && wrong.json.error === "invalid_grant", `a wrong code_verifier is refused: ${JSON.stringify(wrong)}`);
  }

  // 5. mallory's other claims; a second sign-in in the same browser needs no form (SSO session).
  const m = await signIn(issuer, "mallory");
  const mi = await (await fetch(disc.userinfo_endpoint, { headers: { authorization: `Bearer ${m.t.json.access_token}` } })).json();
  check(mi.preferred_username === "mallory" && JSON.stringify(mi.groups) === '["staff","other"]' && mi.name === "Mallory M", `mallory's userinfo: ${JSON.stringify(mi)}`);
  const again = await signIn(issuer, "mallory", { jar: m.jar, expectForm: false });
  check(again.seen.forms === 0, "a second sign-in in the same browser shows no form");

  // 6. Unknown user refused; Cancel ends the flow with access_denied.
  {
    const jar = new Jar();
    let loc = authUrl(issuer, { verifier: b64u(randomBytes(32)), state: "s4", nonce: "n4" });
    let r;
    for (let i = 0; i < 5 && (r = await http(jar, loc)).location; i++) loc = new URL(r.location, loc).toString();
    const action = new URL(r.body.match(/action="([^"]+)"/)[1], loc).toString();
    const unknown = await http(jar, action, { method: "POST", body: new URLSearchParams({ login: "eve", password: "x" }) });
    check(unknown.status === 401 && !unknown.location, `an unknown user is refused (${unknown.status})`);
    const empty = await http(jar, action, { method: "POST", body: new URLSearchParams({ login: "alice", password: "" }) });
    check(empty.status === 401 && !empty.location, `an empty password is refused (${empty.status})`);
    const cancel = new URL(r.body.match(/href="([^"]+\/abort)"/)[1], loc).toString();
    let c = await http(jar, cancel);
    let cl = new URL(c.location, cancel).toString();
    while (!cl.startsWith(REDIRECT)) {
      c = await http(jar, cl);
      check(c.location, `Cancel leads back to the client (${c.status} at ${cl})`);
      cl = new URL(c.location, cl).toString();
    }
    check(new URL(cl).searchParams.get("error") === "access_denied" && new URL(cl).searchParams.get("state") === "s4", `Cancel: error=access_denied with the state (${cl})`);
    const foreign = await http(new Jar(), action, { method: "POST", body: new URLSearchParams({ login: "alice", password: "alice-pw" }) });
    check(foreign.status === 400 && !foreign.location, `a form post without the interaction cookie is refused (${foreign.status})`);
  }

  // 7. SIGTERM: exit 0, promptly; stdout had only the ready line.
  const stopped = await p.stop();
  check(stopped.code === 0, `exit code 0 on SIGTERM (${stopped.code} ${stopped.signal})`);
  check(stopped.ms < 3000, `stops within 3 s (${stopped.ms} ms)`);
  check(p.stdout() === `ready ${issuer}\n`, `stdout is only the ready line: ${JSON.stringify(p.stdout())}`);

  // 8. OIDC_ID_TOKEN_TTL.
  {
    const q = await startProvider({ OIDC_ID_TOKEN_TTL: "30" });
    const { t } = await signIn(q.issuer, "alice");
    const { payload } = decodeJwt(t.json.id_token);
    check(payload.exp - payload.iat === 30, `OIDC_ID_TOKEN_TTL=30 gives exp - iat = 30 (${payload.exp - payload.iat})`);
    check(t.json.expires_in > 30, `the access token keeps its own lifetime (${t.json.expires_in} s)`);
    await q.stop();
  }

  // 9. OIDC_DEVIATE: each breaks exactly the one thing it names.
  const now = () => Date.now() / 1000;
  const expectations = {
    "wrong-issuer": (pl, iss, sigOk) => sigOk && pl.iss === `${iss}/wrong-issuer` && pl.aud === CLIENT_ID,
    "wrong-audience": (pl, iss, sigOk) => sigOk && pl.iss === iss && pl.aud === "someone-else",
    "wrong-nonce": (pl, iss, sigOk, nonce) => sigOk && pl.iss === iss && pl.nonce && pl.nonce !== nonce,
    expired: (pl, iss, sigOk) => sigOk && pl.iss === iss && pl.exp < now() - 300,
    "bad-signature": (pl, iss, sigOk, nonce) => !sigOk && pl.iss === iss && pl.aud === CLIENT_ID && pl.nonce === nonce && pl.exp > now(),
  };
  for (const [deviate, ok] of Object.entries(expectations)) {
    const q = await startProvider({ OIDC_DEVIATE: deviate });
    const { t, nonce } = await signIn(q.issuer, "alice");
    const { payload } = decodeJwt(t.json.id_token);
    const sigOk = await signatureValid(q.issuer, t.json.id_token);
    check(ok(payload, q.issuer, sigOk, nonce), `OIDC_DEVIATE=${deviate}: signature ${sigOk ? "valid" : "invalid"}, ${JSON.stringify(payload)}`);
    const qd = await (await fetch(`${q.issuer}/.well-known/openid-configuration`)).json();
    check(qd.issuer === q.issuer, `OIDC_DEVIATE=${deviate}: discovery keeps the true issuer`);
    const qi = await (await fetch(qd.userinfo_endpoint, { headers: { authorization: `Bearer ${t.json.access_token}` } })).json();
    check(qi.sub === "alice" && JSON.stringify(qi.groups) === '["idm-admins"]', `OIDC_DEVIATE=${deviate}: userinfo unchanged`);
    await q.stop();
  }
  {
    const child = spawn(process.execPath, [OIDC], { env: { ...process.env, OIDC_CLIENT_ID: "x", OIDC_CLIENT_SECRET: "y", OIDC_REDIRECT_URI: REDIRECT, OIDC_USERS: "{}", OIDC_DEVIATE: "nonsense" }, stdio: "ignore" });
    const code = await new Promise((r) => child.on("exit", r));
    check(code === 2, `an unknown OIDC_DEVIATE is refused at start (exit ${code})`);
  }

  // 10. In Chromium (playwright-core, through lib.mjs): the form by its labels, no CSP violation
  // or error on the provider's pages, no serious accessibility problem on the login page.
  {
    const q = await startProvider();
    const browser = await launch();
    try {
      const ctx = await newContext(browser);
      const page = await ctx.newPage();
      const w = watch(page);
      await w.ready;
      const verifier = b64u(randomBytes(32));
      await page.goto(authUrl(q.issuer, { verifier, state: "b1", nonce: "bn1" }));
      check(page.url().includes("/interaction/"), `the browser shows the interaction page: ${page.url()}`);
      const axe = await axeCheck(browser, page.url(), await ctx.cookies());
      check(axe.length === 0, `no serious accessibility problem on the login page: ${JSON.stringify(axe)}`);
      if (process.env.SHOTS_DIR) await shot(page, "oidc-login");
      await page.getByLabel("Login").fill("alice");
      await page.getByLabel("Password").fill("wrong");
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.getByRole("alert").waitFor();
      check((await page.getByRole("alert").innerText()).includes("Wrong login or password"), "a wrong password shows the form again, saying so");
      await page.getByLabel("Password").fill(USERS.alice.password);
      // Nothing listens at the redirect URI here (and a route cannot answer the end of a redirect
      // chain): catch the browser's request to it.
      const [req] = await Promise.all([
        page.waitForRequest((r) => r.url().startsWith(REDIRECT)),
        page.getByRole("button", { name: "Sign in" }).click(),
      ]);
      const back = new URL(req.url());
      check(back.searchParams.get("state") === "b1" && back.searchParams.get("code"), `the browser comes back with a code: ${back}`);
      const t = await token(q.issuer, { grant_type: "authorization_code", code: back.searchParams.get("code"), redirect_uri: REDIRECT, code_verifier: verifier });
      check(t.status === 200 && decodeJwt(t.json.id_token).payload.sub === "alice", `the browser's code is exchanged: ${JSON.stringify(t.json)}`);
      check(w.problems().length === 0, `nothing wrong on the provider's pages: ${JSON.stringify(w.problems())}`);
    } finally {
      await browser.close();
      await q.stop();
    }
  }

  clearTimeout(guard);
  console.log(`oidc-selfcheck: ${passed} checks passed`);
  console.log(`${passed} passed, 0 failed`);
}

main().catch((err) => {
  for (const c of children) c.kill("SIGKILL");
  console.error(err.stack ?? err);
  console.log(`${passed} passed, 1 failed`);
  process.exit(1);
});
