'use strict';
// A local OpenID Connect identity provider for toolgate's tests: several
// issuers (Okta custom and org authorization servers, Entra ID v2 and v1 for
// any tenant, a generic one) on one HTTP server on 127.0.0.1, each with its
// own discovery document and RS256 keys, tokens with the claims those real
// providers put in them, and the authorization-code + PKCE browser login
// without a login page. See README.md next to this file.
//
//   NODE_PATH="$(bash tests/idp/install.sh | tail -n1)" node tests/idp/idp.cjs [--port N] [--exit-with-stdin]
//
// Keys, JWKS and signing come from npm oauth2-mock-server (8.2.3: its
// OAuth2Issuer / JWKStore); routing, the token endpoint, codes, PKCE and the
// claims are done here, because the package's own handlers serve one issuer
// at the server root, accept any code, skip PKCE when no verifier is sent,
// never check redirect_uri and hard-code `sub: johndoe`.
//
// When listening it prints one line to stdout, {"url":"http://127.0.0.1:PORT"},
// and logs each request to stderr. --exit-with-stdin: exit when stdin closes
// (so it dies with the test process that spawned it).

const http = require('node:http');
const crypto = require('node:crypto');
const { pathToFileURL } = require('node:url');

const TOKEN_TTL = 3600;
const CODE_TTL_MS = 60 * 1000;
const TID = '[A-Za-z0-9-]+';

function log(msg) {
  process.stderr.write(`idp: ${msg}\n`);
}

function parseArgs(argv) {
  const opts = { port: 0, exitWithStdin: false };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--port' && i + 1 < argv.length) opts.port = Number(argv[++i]);
    else if (argv[i] === '--exit-with-stdin') opts.exitWithStdin = true;
    else throw new Error(`unknown argument ${argv[i]} (usage: idp.cjs [--port N] [--exit-with-stdin])`);
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) throw new Error('--port: 0..65535');
  return opts;
}

// The package is ESM only; find it through NODE_PATH like require() would,
// then import it by file URL (import() itself ignores NODE_PATH).
async function loadMockServer() {
  let entry;
  try {
    entry = require.resolve('oauth2-mock-server');
  } catch {
    throw new Error('oauth2-mock-server not found: run `bash tests/idp/install.sh` and set NODE_PATH to the node_modules it prints');
  }
  return import(pathToFileURL(entry).href);
}

// ─── state ───────────────────────────────────────────────────────────────────
let login = { sub: 'dev-user' }; // whom the next browser login signs in
const codes = new Map(); // code -> { realm, clientId, redirectUri, challenge, nonce, scope, login, expires }
const refreshTokens = new Map(); // token -> { realm, clientId, scope, login }

// ─── HTTP helpers ────────────────────────────────────────────────────────────
class HttpError extends Error {
  constructor(status, error, description) {
    super(description);
    this.status = status;
    this.error = error;
  }
}

function send(res, status, body, headers = {}) {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, {
    ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}

function redirect(res, location) {
  res.writeHead(302, { location, 'cache-control': 'no-store' });
  res.end();
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > 1 << 20) {
        reject(new HttpError(413, 'invalid_request', 'body too large'));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

// A form (or JSON) body as a plain object of strings.
async function readParams(req) {
  const text = await readBody(req);
  const type = (req.headers['content-type'] || '').split(';')[0].trim().toLowerCase();
  if (type === 'application/json') {
    let value;
    try {
      value = JSON.parse(text || '{}');
    } catch {
      throw new HttpError(400, 'invalid_request', 'malformed JSON body');
    }
    if (!isObject(value)) throw new HttpError(400, 'invalid_request', 'the JSON body must be an object');
    return value;
  }
  return Object.fromEntries(new URLSearchParams(text));
}

function isObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

// ─── issuers ─────────────────────────────────────────────────────────────────
// An issuer as seen by one request: its shape (`kind`), its `iss`, the key set
// that signs for it and the absolute URLs its discovery document names.
function prefixIssuer(base, kind, prefix, keys, v1Paths) {
  const iss = base + prefix;
  const p = v1Paths ? '/v1' : ''; // Okta serves its endpoints under /v1
  return {
    kind,
    iss,
    keys,
    endpoints: {
      authorization_endpoint: `${iss}${p}/authorize`,
      token_endpoint: `${iss}${p}/token`,
      jwks_uri: v1Paths ? `${iss}/v1/keys` : `${iss}/jwks`,
      end_session_endpoint: `${iss}${p}/logout`,
    },
  };
}

function entraIssuer(base, version, tid, keys) {
  const v2 = version === 2;
  return {
    kind: v2 ? 'entra-v2' : 'entra-v1',
    iss: v2 ? `${base}/entra/${tid}/v2.0` : `${base}/sts/${tid}/`,
    tid,
    keys,
    endpoints: {
      authorization_endpoint: `${base}/entra/${tid}/oauth2${v2 ? '/v2.0' : ''}/authorize`,
      token_endpoint: `${base}/entra/${tid}/oauth2${v2 ? '/v2.0' : ''}/token`,
      jwks_uri: `${base}/entra/common/discovery${v2 ? '/v2.0' : ''}/keys`,
      end_session_endpoint: `${base}/entra/${tid}/oauth2${v2 ? '/v2.0' : ''}/logout`,
    },
  };
}

// pathname -> { op, issuer } (op: discovery, jwks, authorize, token, logout), or null.
function route(pathname, base, keys) {
  let m;
  if ((m = pathname.match(new RegExp(`^/entra/(${TID})/discovery(/v2\\.0)?/keys$`)))) {
    return { op: 'jwks', issuer: { keys: keys.entra } };
  }
  const entraRoutes = [
    [2, new RegExp(`^/entra/(${TID})/v2\\.0/\\.well-known/openid-configuration$`), 'discovery'],
    [1, new RegExp(`^/(?:entra|sts)/(${TID})/\\.well-known/openid-configuration$`), 'discovery'],
    [2, new RegExp(`^/entra/(${TID})/(?:oauth2/)?v2\\.0/(authorize|token|logout)$`)],
    [1, new RegExp(`^/entra/(${TID})/oauth2/(authorize|token|logout)$`)],
    [1, new RegExp(`^/sts/(${TID})/(authorize|token|logout)$`)],
  ];
  for (const [version, re, op] of entraRoutes) {
    if ((m = pathname.match(re))) {
      return { op: op || m[2], issuer: entraIssuer(base, version, m[1], keys.entra) };
    }
  }
  // Longest prefix first: /okta/oauth2/default/... is the custom AS, not the org AS.
  const prefixed = [
    ['okta', '/okta/oauth2/default', keys.oktaDefault, true],
    ['okta', '/okta', keys.oktaOrg, true],
    ['generic', '/generic', keys.generic, false],
  ];
  for (const [kind, prefix, keySet, v1] of prefixed) {
    if (!pathname.startsWith(`${prefix}/`)) continue;
    const rest = pathname.slice(prefix.length);
    const ops = {
      '/.well-known/openid-configuration': 'discovery',
      '/.well-known/oauth-authorization-server': 'discovery',
      '/authorize': 'authorize',
      '/token': 'token',
      '/logout': 'logout',
      ...(v1
        ? { '/v1/authorize': 'authorize', '/v1/token': 'token', '/v1/logout': 'logout', '/v1/keys': 'jwks' }
        : { '/jwks': 'jwks' }),
    };
    if (Object.hasOwn(ops, rest)) return { op: ops[rest], issuer: prefixIssuer(base, kind, prefix, keySet, v1) };
  }
  return null;
}

function discovery(issuer) {
  return {
    issuer: issuer.iss,
    ...issuer.endpoints,
    response_types_supported: ['code'],
    response_modes_supported: ['query'],
    grant_types_supported: ['authorization_code', 'client_credentials', 'password', 'refresh_token'],
    code_challenge_methods_supported: ['S256'],
    token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'none'],
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: ['RS256'],
    scopes_supported: ['openid', 'profile', 'email', 'offline_access'],
    ...(issuer.tid ? { tenant_region_scope: 'EU' } : {}),
  };
}

// ─── tokens ──────────────────────────────────────────────────────────────────
// Default access-token claims of each provider's shape. `who` is the
// username (password grant) or undefined; `clientId` the requesting client.
function accessClaims(issuer, { clientId, who, scope }) {
  const now = Math.floor(Date.now() / 1000);
  const times = { iat: now, exp: now + TOKEN_TTL };
  switch (issuer.kind) {
    case 'okta':
      return {
        ver: 1,
        jti: `AT.${crypto.randomBytes(16).toString('base64url')}`,
        iss: issuer.iss,
        aud: 'api://default',
        ...times,
        cid: clientId,
        uid: '00u1abcd',
        scp: scope ? scope.split(' ').filter(Boolean) : [],
        sub: who ?? clientId,
        groups: ['Everyone'],
      };
    case 'entra-v2':
    case 'entra-v1': {
      const v2 = issuer.kind === 'entra-v2';
      const client = v2
        ? { azp: clientId, preferred_username: 'user@contoso.example' }
        : { appid: clientId, upn: 'user@contoso.example', unique_name: 'user@contoso.example' };
      return {
        ver: v2 ? '2.0' : '1.0',
        iss: issuer.iss,
        aud: 'api://toolgate',
        ...times,
        nbf: now,
        tid: issuer.tid,
        oid: '11111111-1111-1111-1111-111111111111',
        sub: 'entra-sub-1',
        ...client,
        scp: 'mcp.call',
        roles: [],
        name: 'Entra User',
      };
    }
    default:
      return { iss: issuer.iss, aud: 'api://toolgate', sub: who ?? clientId, ...times, ...(scope ? { scope } : {}) };
  }
}

// `extra` over `claims`; a key whose value is null removes that claim.
function merge(claims, extra) {
  const out = { ...claims };
  for (const [k, v] of Object.entries(extra || {})) {
    if (v === null) delete out[k];
    else out[k] = v;
  }
  return out;
}

// Signs `payload` exactly as given (the package's own defaults, nbf and
// scope among them, are replaced, not merged) with the issuer's key; the
// header carries that key's kid.
async function sign(issuer, payload) {
  return issuer.keys.buildToken({
    scopesOrTransform: (_header, defaults) => {
      for (const k of Object.keys(defaults)) delete defaults[k];
      Object.assign(defaults, payload);
    },
  });
}

function idClaims(issuer, { clientId, user, nonce }) {
  const now = Math.floor(Date.now() / 1000);
  return merge(
    {
      iss: issuer.iss,
      aud: clientId,
      iat: now,
      exp: now + TOKEN_TTL,
      auth_time: now,
      ...(issuer.tid ? { tid: issuer.tid, ver: issuer.kind === 'entra-v2' ? '2.0' : '1.0' } : {}),
      ...(nonce !== undefined ? { nonce } : {}),
    },
    user,
  );
}

function clientOf(req, params) {
  const auth = req.headers.authorization || '';
  let id = params.client_id;
  if (/^basic /i.test(auth)) {
    const decoded = Buffer.from(auth.slice(6).trim(), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    let basicId = colon === -1 ? decoded : decoded.slice(0, colon);
    try {
      basicId = decodeURIComponent(basicId.replace(/\+/g, ' '));
    } catch {
      // not form-encoded: take it as it is
    }
    if (id !== undefined && id !== basicId) throw new HttpError(400, 'invalid_request', 'client_id in the body and in Basic auth differ');
    id = basicId;
  }
  if (!id) throw new HttpError(401, 'invalid_client', 'client_id is required (form field or HTTP Basic)');
  return id;
}

function s256(verifier) {
  return crypto.createHash('sha256').update(verifier).digest('base64url');
}

function invalidGrant(description) {
  return new HttpError(400, 'invalid_grant', description);
}

async function tokenEndpoint(req, res, issuer) {
  if (req.method !== 'POST') throw new HttpError(405, 'invalid_request', 'POST only');
  const params = await readParams(req);
  const clientId = clientOf(req, params);
  let extra = {};
  if (params.claims !== undefined) {
    try {
      extra = typeof params.claims === 'string' ? JSON.parse(params.claims) : params.claims;
    } catch {
      throw new HttpError(400, 'invalid_request', '`claims` is not JSON');
    }
    if (!isObject(extra)) throw new HttpError(400, 'invalid_request', '`claims` must be a JSON object');
  }
  const scope = typeof params.scope === 'string' ? params.scope : undefined;
  let access;
  let user; // the signed-in user's claims, for grants that have one
  let nonce;
  let grantScope = scope;
  switch (params.grant_type) {
    case 'client_credentials':
      access = accessClaims(issuer, { clientId, scope });
      break;
    case 'password':
      if (!params.username) throw new HttpError(400, 'invalid_request', 'username is required');
      access = accessClaims(issuer, { clientId, who: params.username, scope });
      if (scope && scope.split(' ').includes('openid')) user = { sub: params.username };
      break;
    case 'authorization_code': {
      const saved = codes.get(params.code);
      codes.delete(params.code); // single use, whatever happens next
      if (!params.code || !saved) throw invalidGrant('unknown or already used code');
      if (saved.expires < Date.now()) throw invalidGrant('code expired');
      if (saved.realm !== issuer.iss) throw invalidGrant('code was issued by another issuer');
      if (saved.clientId !== clientId) throw invalidGrant('code was issued to another client');
      if (params.redirect_uri !== saved.redirectUri) throw invalidGrant('redirect_uri differs from the authorization request');
      if (!params.code_verifier) throw invalidGrant('code_verifier is required (PKCE)');
      if (!/^[A-Za-z0-9._~-]{43,128}$/.test(params.code_verifier)) throw invalidGrant('code_verifier is not RFC 7636 shaped');
      if (s256(params.code_verifier) !== saved.challenge) throw invalidGrant('code_verifier does not match code_challenge');
      user = saved.login;
      nonce = saved.nonce;
      grantScope = saved.scope;
      access = merge(accessClaims(issuer, { clientId, who: user.sub, scope: grantScope }), user);
      break;
    }
    case 'refresh_token': {
      const saved = refreshTokens.get(params.refresh_token);
      refreshTokens.delete(params.refresh_token);
      if (!saved || saved.realm !== issuer.iss || saved.clientId !== clientId) throw invalidGrant('unknown refresh_token');
      user = saved.login;
      grantScope = saved.scope;
      access = merge(accessClaims(issuer, { clientId, who: user.sub, scope: grantScope }), user);
      break;
    }
    default:
      throw new HttpError(400, 'unsupported_grant_type', `grant_type ${params.grant_type ?? '(missing)'} is not supported`);
  }
  access = merge(access, extra);
  const now = Math.floor(Date.now() / 1000);
  const body = {
    access_token: await sign(issuer, access),
    token_type: 'Bearer',
    expires_in: typeof access.exp === 'number' ? Math.max(0, access.exp - now) : TOKEN_TTL,
    ...(grantScope ? { scope: grantScope } : {}),
  };
  if (user) {
    body.id_token = await sign(issuer, idClaims(issuer, { clientId, user, nonce }));
  }
  if (params.grant_type === 'authorization_code' || params.grant_type === 'refresh_token') {
    const refresh = crypto.randomBytes(32).toString('base64url');
    refreshTokens.set(refresh, { realm: issuer.iss, clientId, scope: grantScope, login: user });
    body.refresh_token = refresh;
  }
  send(res, 200, body, { pragma: 'no-cache' });
}

function authorizeEndpoint(req, res, issuer, query) {
  const q = Object.fromEntries(query);
  let target;
  try {
    target = new URL(q.redirect_uri);
  } catch {
    throw new HttpError(400, 'invalid_request', 'redirect_uri is missing or not an absolute URL');
  }
  if (!q.client_id) throw new HttpError(400, 'invalid_request', 'client_id is required');
  const fail = (error, description) => {
    target.searchParams.set('error', error);
    target.searchParams.set('error_description', description);
    if (q.state !== undefined) target.searchParams.set('state', q.state);
    redirect(res, target.href);
  };
  if (q.response_type !== 'code') return fail('unsupported_response_type', 'only response_type=code');
  if (!q.code_challenge) return fail('invalid_request', 'code_challenge is required (PKCE)');
  if ((q.code_challenge_method || 'plain') !== 'S256') return fail('invalid_request', 'code_challenge_method must be S256');
  const code = crypto.randomBytes(32).toString('base64url');
  codes.set(code, {
    realm: issuer.iss,
    clientId: q.client_id,
    redirectUri: q.redirect_uri,
    challenge: q.code_challenge,
    nonce: q.nonce,
    scope: q.scope,
    login: { ...login },
    expires: Date.now() + CODE_TTL_MS,
  });
  target.searchParams.set('code', code);
  if (q.state !== undefined) target.searchParams.set('state', q.state);
  redirect(res, target.href);
}

function logoutEndpoint(res, query) {
  const to = query.get('post_logout_redirect_uri');
  if (!to) return send(res, 200, { signed_out: true });
  let target;
  try {
    target = new URL(to);
  } catch {
    throw new HttpError(400, 'invalid_request', 'post_logout_redirect_uri is not an absolute URL');
  }
  if (query.get('state') !== null) target.searchParams.set('state', query.get('state'));
  redirect(res, target.href);
}

async function control(req, res, pathname) {
  if (pathname !== '/__control/login') throw new HttpError(404, 'not_found', pathname);
  if (req.method === 'GET') return send(res, 200, login);
  if (req.method !== 'POST') throw new HttpError(405, 'invalid_request', 'GET or POST');
  let value;
  try {
    value = JSON.parse(await readBody(req));
  } catch {
    throw new HttpError(400, 'invalid_request', 'the body must be a JSON object of claims');
  }
  if (!isObject(value)) throw new HttpError(400, 'invalid_request', 'the body must be a JSON object of claims');
  login = value;
  send(res, 204);
}

// ─── server ──────────────────────────────────────────────────────────────────
async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const { OAuth2Issuer } = await loadMockServer();
  // One key set per real-world key set: the two Okta authorization servers
  // sign with different keys; all Entra tenants (v1 and v2) share one set.
  const keys = {};
  for (const name of ['oktaDefault', 'oktaOrg', 'entra', 'generic']) {
    keys[name] = new OAuth2Issuer();
    await keys[name].keys.generate('RS256');
  }

  let base = '';
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    res.on('finish', () => log(`${req.method} ${url.pathname} -> ${res.statusCode}`));
    try {
      if (url.pathname.startsWith('/__control/')) return await control(req, res, url.pathname);
      const hit = route(url.pathname, base, keys);
      if (!hit) throw new HttpError(404, 'not_found', `no endpoint at ${url.pathname}`);
      const { op, issuer } = hit;
      if (op === 'token') return await tokenEndpoint(req, res, issuer);
      if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, 'invalid_request', 'GET only');
      if (op === 'discovery') return send(res, 200, discovery(issuer));
      if (op === 'jwks') return send(res, 200, { keys: issuer.keys.keys.toJSON().map((k) => ({ ...k, use: 'sig' })) });
      if (op === 'authorize') return authorizeEndpoint(req, res, issuer, url.searchParams);
      if (op === 'logout') return logoutEndpoint(res, url.searchParams);
      throw new HttpError(404, 'not_found', url.pathname);
    } catch (err) {
      if (res.headersSent) return res.destroy();
      if (err instanceof HttpError) {
        return send(res, err.status, { error: err.error, error_description: err.message });
      }
      log(`error: ${err && err.stack ? err.stack : err}`);
      send(res, 500, { error: 'server_error', error_description: String(err) });
    }
  });

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, '127.0.0.1', resolve);
  });
  base = `http://127.0.0.1:${server.address().port}`;
  // buildToken insists on an issuer URL; every token sets its own `iss`.
  for (const set of Object.values(keys)) set.url = base;

  const stop = () => {
    server.close();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  if (opts.exitWithStdin) {
    process.stdin.on('end', stop);
    process.stdin.on('close', stop);
    process.stdin.resume();
  }
  // Forget expired codes now and then.
  setInterval(() => {
    const now = Date.now();
    for (const [code, saved] of codes) if (saved.expires < now) codes.delete(code);
  }, CODE_TTL_MS).unref();

  process.stdout.write(`${JSON.stringify({ url: base })}\n`);
  log(`listening on ${base}`);
}

main().catch((err) => {
  log(`failed to start: ${err && err.message ? err.message : err}`);
  process.exit(1);
});
