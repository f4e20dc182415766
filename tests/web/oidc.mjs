// A real OpenID Connect provider for idgard's sign-in tests: npm `oidc-provider`, on loopback,
// with one confidential client and a fixed set of users.
//
//   node tests/web/oidc.mjs
//
// Env:
//   OIDC_PORT           port on 127.0.0.1; 0 or unset = a free port chosen by the system
//   OIDC_CLIENT_ID      the one client (confidential, client_secret_basic)
//   OIDC_CLIENT_SECRET  its secret
//   OIDC_REDIRECT_URI   its redirect URI (several may be given, separated by spaces)
//   OIDC_USERS          JSON: {"alice": {"password": "...", "groups": ["idm-admins"], "name": "Alice"}, ...}
//                       ("name" is optional); the login is the subject (`sub`) and `preferred_username`
//   OIDC_ID_TOKEN_TTL   optional: ID token lifetime in seconds
//   OIDC_DEVIATE        optional, for negative tests: the ID token from the token endpoint is broken on
//                       purpose (see below)
//
// Issuer: http://127.0.0.1:<port>. Prints exactly one line `ready <issuer>` on stdout once it
// listens, and nothing else there (everything else, including oidc-provider's own notices, goes
// to stderr). Exits 0 on SIGTERM or SIGINT.
//
// What it offers: the authorization code flow only (`response_types: ['code']`, grant type
// authorization_code, no refresh tokens), PKCE required for every request (oidc-provider 9 knows
// only S256), scopes `openid profile groups`, claims profile → preferred_username, name and
// groups → groups. By oidc-provider's default (`conformIdTokenClaims`) the ID token carries `sub`
// (plus nonce, auth_time, at_hash...) and the profile and groups claims come from UserInfo.
//
// Interactions are this file's own pages and work without JavaScript, for Playwright and for a
// plain HTTP client that follows redirects and posts the form:
//   GET  /interaction/:uid        login prompt: an HTML form (fields "Login" = `login`, "Password" =
//                                 `password`, button "Sign in", action /interaction/:uid/login; it is
//                                 the page's only form); consent prompt: granted at once for
//                                 everything asked (a Grant with all missing scopes and claims),
//                                 answered with a 303 onwards
//   POST /interaction/:uid/login  right password: 303 onwards; wrong or unknown: the form again, 401
//   GET  /interaction/:uid/abort  ends the flow with error=access_denied (the form's "Cancel" link)
// Only oidc-provider's documented API is used: the configuration, provider.interactionDetails,
// provider.interactionFinished, provider.Grant, provider.use (post-middleware), provider.on.
//
// OIDC_DEVIATE: oidc-provider itself cannot issue an ID token with a wrong `iss` (or the other
// faults below). Instead of a second provider, a post-middleware on the token endpoint rewrites
// the `id_token` of the token response: it decodes it, changes one thing, and signs it again with
// the provider's own key (the same `kid`, in the published JWKS), so that exactly the one named
// fault is wrong and everything else still verifies. Discovery, JWKS, UserInfo are untouched.
//   wrong-issuer    iss = <issuer>/wrong-issuer
//   wrong-audience  aud = "someone-else"
//   wrong-nonce     nonce = a fresh random value
//   expired         iat = now - 1200 s, exp = now - 600 s
//   bad-signature   signed with another RSA key under the same kid
//   alg-none        header alg = "none", no signature (an unsecured JWT)
import { createServer } from "node:http";
import { generateKeyPairSync, randomBytes, randomUUID, sign } from "node:crypto";

// oidc-provider prints its notices with console.info (stdout); stdout is for the ready line only.
console.info = console.error;
console.log = console.error;
const { default: Provider, errors: providerErrors } = await import("oidc-provider");

function fatal(msg) {
  console.error(`oidc.mjs: ${msg}`);
  process.exit(2);
}
function env(name) {
  const v = process.env[name];
  if (!v) fatal(`${name} is not set`);
  return v;
}

const port = Number(process.env.OIDC_PORT || "0");
if (!Number.isInteger(port) || port < 0 || port > 65535) fatal(`OIDC_PORT is not a port: ${process.env.OIDC_PORT}`);
const clientId = env("OIDC_CLIENT_ID");
const clientSecret = env("OIDC_CLIENT_SECRET");
const redirectUris = env("OIDC_REDIRECT_URI").split(/\s+/).filter(Boolean);
let users;
try {
  users = JSON.parse(env("OIDC_USERS"));
} catch (e) {
  fatal(`OIDC_USERS is not JSON: ${e.message}`);
}
if (typeof users !== "object" || users === null || Array.isArray(users)) fatal("OIDC_USERS must be a JSON object");
for (const [login, u] of Object.entries(users)) {
  if (typeof u?.password !== "string") fatal(`OIDC_USERS.${login}.password must be a string`);
  if (u.groups !== undefined && !(Array.isArray(u.groups) && u.groups.every((g) => typeof g === "string"))) {
    fatal(`OIDC_USERS.${login}.groups must be an array of strings`);
  }
}
const idTokenTtl = process.env.OIDC_ID_TOKEN_TTL ? Number(process.env.OIDC_ID_TOKEN_TTL) : undefined;
if (idTokenTtl !== undefined && !(Number.isInteger(idTokenTtl) && idTokenTtl > 0)) fatal("OIDC_ID_TOKEN_TTL must be a positive integer");
const DEVIATIONS = ["wrong-issuer", "wrong-audience", "wrong-nonce", "expired", "bad-signature", "alg-none"];
const deviate = process.env.OIDC_DEVIATE || "";
if (deviate && !DEVIATIONS.includes(deviate)) fatal(`OIDC_DEVIATE must be one of ${DEVIATIONS.join(", ")}`);

const hasUser = (login) => Object.prototype.hasOwnProperty.call(users, login);

// The signing key: made fresh at each start.
const kid = randomUUID();
const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: "jwk" }), kid, alg: "RS256", use: "sig" };

let handler = (_req, res) => {
  res.statusCode = 503;
  res.end();
};
const server = createServer((req, res) => handler(req, res));
await new Promise((resolve, reject) => {
  server.once("error", reject);
  server.listen(port, "127.0.0.1", resolve);
});
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: redirectUris,
      grant_types: ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
    },
  ],
  clientAuthMethods: ["client_secret_basic"],
  responseTypes: ["code"],
  pkce: { required: () => true },
  scopes: ["openid"],
  claims: {
    acr: null,
    sid: null,
    auth_time: null,
    iss: null,
    openid: ["sub"],
    profile: ["preferred_username", "name"],
    groups: ["groups"],
  },
  async findAccount(_ctx, sub) {
    if (!hasUser(sub)) return undefined;
    const u = users[sub];
    return {
      accountId: sub,
      async claims() {
        const c = { sub, preferred_username: sub, groups: u.groups ?? [] };
        if (typeof u.name === "string") c.name = u.name;
        return c;
      },
    };
  },
  jwks: { keys: [jwk] },
  cookies: { keys: [randomBytes(32).toString("base64url")] },
  features: {
    devInteractions: { enabled: false },
    dPoP: { enabled: false },
    pushedAuthorizationRequests: { enabled: false },
    resourceIndicators: { enabled: false },
  },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  ...(idTokenTtl ? { ttl: { IdToken: idTokenTtl } } : {}),
});

for (const ev of ["server_error", "authorization.error", "grant.error", "userinfo.error", "jwks.error", "discovery.error", "end_session.error"]) {
  provider.on(ev, (_ctx, err) => console.error(`oidc.mjs: ${ev}: ${err?.name ?? ""} ${err?.message ?? err} ${err?.error_description ?? ""}`));
}
provider.on("grant.success", (ctx) => console.error(`oidc.mjs: token issued to ${ctx.oidc.client?.clientId}`));

// OIDC_DEVIATE: rewrite the ID token of the token response (see the header).
const b64 = (v) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");
const otherKey = deviate === "bad-signature" ? generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey : null;
function broken(idToken) {
  const [h, p] = idToken.split(".");
  const header = JSON.parse(Buffer.from(h, "base64url").toString());
  const payload = JSON.parse(Buffer.from(p, "base64url").toString());
  const now = Math.floor(Date.now() / 1000);
  switch (deviate) {
    case "wrong-issuer": payload.iss = `${issuer}/wrong-issuer`; break;
    case "wrong-audience": payload.aud = "someone-else"; break;
    case "wrong-nonce": payload.nonce = randomBytes(16).toString("base64url"); break;
    case "expired": payload.iat = now - 1200; payload.exp = now - 600; break;
    case "bad-signature": break;
    case "alg-none": break;
  }
  if (header.alg !== "RS256") throw new Error(`unexpected ID token alg ${header.alg}`);
  if (deviate === "alg-none") return `${b64({ alg: "none", typ: "JWT" })}.${b64(payload)}.`;
  const input = `${b64(header)}.${b64(payload)}`;
  return `${input}.${sign("sha256", Buffer.from(input), otherKey ?? privateKey).toString("base64url")}`;
}
if (deviate) {
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.oidc?.route === "token" && ctx.status === 200 && ctx.body && typeof ctx.body.id_token === "string") {
      ctx.body = { ...ctx.body, id_token: broken(ctx.body.id_token) };
      console.error(`oidc.mjs: OIDC_DEVIATE=${deviate}: ID token altered`);
    }
  });
}

// The interaction pages.
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

function page(res, status, title, body) {
  const html = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${esc(title)}</title></head>
<body>
<main>
${body}
</main>
</body>
</html>
`;
  res.statusCode = status;
  res.setHeader("Content-Type", "text/html; charset=utf-8");
  res.setHeader("Cache-Control", "no-store");
  res.setHeader("Content-Security-Policy", "default-src 'none'; base-uri 'none'; frame-ancestors 'none'");
  res.setHeader("X-Content-Type-Options", "nosniff");
  res.setHeader("Referrer-Policy", "no-referrer");
  res.end(html);
}

function loginForm(res, status, uid, clientName, login, error) {
  const uidPath = encodeURIComponent(uid);
  page(
    res,
    status,
    "Sign in - test provider",
    `<h1>Sign in to continue to ${esc(clientName)}</h1>
${error ? `<p role="alert">${esc(error)}</p>\n` : ""}<form method="post" action="/interaction/${uidPath}/login">
<p><label for="login">Login</label> <input id="login" name="login" type="text" autocomplete="username" required value="${esc(login)}"></p>
<p><label for="password">Password</label> <input id="password" name="password" type="password" autocomplete="current-password" required></p>
<p><button type="submit">Sign in</button></p>
</form>
<p><a href="/interaction/${uidPath}/abort">Cancel</a></p>`,
  );
}

async function readForm(req) {
  let size = 0;
  const chunks = [];
  for await (const c of req) {
    size += c.length;
    if (size > 65536) throw Object.assign(new Error("form too large"), { status: 413 });
    chunks.push(c);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
}

async function details(req, res, uid) {
  const interaction = await provider.interactionDetails(req, res);
  if (interaction.uid !== uid) throw Object.assign(new Error("this interaction is not the one of this browser"), { status: 400 });
  return interaction;
}

async function grantAll(req, res, interaction) {
  const { prompt, params, session } = interaction;
  const grant = interaction.grantId
    ? await provider.Grant.find(interaction.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(" "));
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  if (prompt.details.missingResourceScopes) {
    for (const [indicator, scopes] of Object.entries(prompt.details.missingResourceScopes)) {
      grant.addResourceScope(indicator, scopes.join(" "));
    }
  }
  const grantId = await grant.save();
  const consent = interaction.grantId ? {} : { grantId };
  await provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
}

async function interactionRoute(req, res, parts) {
  const uid = decodeURIComponent(parts[0]);
  const action = parts[1] ?? "";
  if (req.method === "GET" && action === "") {
    const interaction = await details(req, res, uid);
    if (interaction.prompt.name === "login") {
      return loginForm(res, 200, uid, interaction.params.client_id, interaction.params.login_hint ?? "", "");
    }
    if (interaction.prompt.name === "consent") return grantAll(req, res, interaction);
    return page(res, 400, "Unexpected prompt", `<h1>Unexpected prompt ${esc(interaction.prompt.name)}</h1>`);
  }
  if (req.method === "POST" && action === "login") {
    const interaction = await details(req, res, uid);
    if (interaction.prompt.name !== "login") {
      return page(res, 400, "Not a login", `<h1>This interaction is not waiting for a login</h1>`);
    }
    const form = await readForm(req);
    const login = form.get("login") ?? "";
    const password = form.get("password") ?? "";
    if (!hasUser(login) || password === "" || users[login].password !== password) {
      console.error(`oidc.mjs: login refused for ${JSON.stringify(login)}`);
      return loginForm(res, 401, uid, interaction.params.client_id, login, "Wrong login or password.");
    }
    console.error(`oidc.mjs: ${login} signed in`);
    return provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
  }
  if (req.method === "GET" && action === "abort") {
    await details(req, res, uid);
    return provider.interactionFinished(
      req,
      res,
      { error: "access_denied", error_description: "End-User aborted interaction" },
      { mergeWithLastSubmission: false },
    );
  }
  return page(res, 404, "Not found", "<h1>Not found</h1>");
}

const providerCallback = provider.callback();
const { SessionNotFound } = providerErrors;
handler = (req, res) => {
  const path = (req.url ?? "/").split("?")[0];
  const parts = path.split("/").filter(Boolean);
  if (parts[0] !== "interaction" || parts.length < 2 || parts.length > 3) return providerCallback(req, res);
  interactionRoute(req, res, parts.slice(1)).catch((err) => {
    if (res.headersSent) return res.end();
    if (err instanceof SessionNotFound) {
      return page(res, 400, "Interaction expired", `<h1>This sign-in has expired or is not this browser's</h1><p>${esc(err.message)}</p>`);
    }
    if (err.status && err.status < 500) return page(res, err.status, "Bad request", `<h1>${esc(err.message)}</h1>`);
    console.error("oidc.mjs: interaction failed:", err);
    return page(res, 500, "Error", "<h1>Internal error</h1>");
  });
};

function stop(signal) {
  console.error(`oidc.mjs: ${signal}, stopping`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on("SIGTERM", () => stop("SIGTERM"));
process.on("SIGINT", () => stop("SIGINT"));

console.error(`oidc.mjs: client ${clientId}, users ${Object.keys(users).join(", ")}${deviate ? `, OIDC_DEVIATE=${deviate}` : ""}`);
process.stdout.write(`ready ${issuer}\n`);
