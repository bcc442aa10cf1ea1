// oidc-provider on loopback for tower-alf's interop tests (tests/interop.rs).
//
//   node tests/interop/server.mjs [PORT]     (0 or nothing: a free port)
//
// Prints `ready http://127.0.0.1:PORT` on stdout once it accepts requests.
// Everything here is for tests only: the clients, secrets and keys (the
// public halves of tests/fixtures) protect nothing.
//
// Besides oidc-provider's own endpoints (discovery, token, introspection,
// authorization with its development login screens), the same process
// serves:
//   GET  /api/whoami        a protected resource: 200 with what it knows of
//                           a valid bearer token, else 401 invalid_token
//   grant_type urn:ietf:params:oauth:grant-type:token-exchange (RFC 8693):
//                           oidc-provider has no built-in token exchange, so
//                           this registers a minimal one through its grant
//                           type extension point: the subject must be a valid
//                           access token of this provider; the new token is
//                           issued to the authenticated client, its scope the
//                           requested one, and records the subject's client
//                           and the audience
//   GET  /api/dpop          a protected resource for DPoP-bound tokens
//                           (RFC 9449 §7): the DPoP scheme only, the proof
//                           verified with its embedded JWK (typ, ES256,
//                           htm, htu, ath, unique jti), its thumbprint equal
//                           to the token's jkt, and a nonce of its own,
//                           rotated on every 200; reach it on another origin
//                           (http://localhost:PORT) than the issuer's
//   the device authorization grant (RFC 8628, features.deviceFlow): the
//                           endpoint /device/auth, the user's pages at
//                           /device (enter the code, confirm or abort), then
//                           the development sign-in and consent screens
//   POST /test/refresh-token?client_id=ID
//                           mints a refresh token for ID, as if an
//                           authorization-code flow had just run (test only)

import { createHash, createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';

import { calculateJwkThumbprint, EmbeddedJWK, jwtVerify } from 'jose';
import Provider, { errors } from 'oidc-provider';

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const DEVICE_CODE = 'urn:ietf:params:oauth:grant-type:device_code';

const fixtures = new URL('../fixtures/', import.meta.url);
const publicJwk = (file, alg) => ({
  ...createPublicKey(readFileSync(new URL(file, fixtures))).export({ format: 'jwk' }),
  alg,
  use: 'sig',
});

// The provider's own signing keys (ID tokens), fresh each run.
const signingKey = (type, options, alg) => ({
  ...generateKeyPairSync(type, options).privateKey.export({ format: 'jwk' }),
  alg,
  use: 'sig',
  kid: alg,
});

// Client-credentials clients, one per authentication method.
const cc = (client_id, token_endpoint_auth_method, extra) => ({
  client_id,
  token_endpoint_auth_method,
  grant_types: ['client_credentials', TOKEN_EXCHANGE],
  response_types: [],
  redirect_uris: [],
  scope: 'api:read api:write',
  ...extra,
});

export const clients = [
  // Characters RFC 6749 §2.3.1 form-encodes: space, '/', '+', '&', ':'.
  cc('cc-basic', 'client_secret_basic', { client_secret: 'basic secret/with+chars&:' }),
  cc('cc-post', 'client_secret_post', { client_secret: 'post-secret' }),
  cc('cc-jwt', 'client_secret_jwt', {
    client_secret: 'client-secret-jwt-shared-secret-0123456789',
    token_endpoint_auth_signing_alg: 'HS256',
  }),
  cc('cc-rs256', 'private_key_jwt', {
    jwks: { keys: [publicJwk('rsa_public.pem', 'RS256')] },
    token_endpoint_auth_signing_alg: 'RS256',
  }),
  cc('cc-es256', 'private_key_jwt', {
    jwks: { keys: [publicJwk('p256_public.pem', 'ES256')] },
    token_endpoint_auth_signing_alg: 'ES256',
  }),
  // Its tokens must be DPoP-bound (RFC 9449 §5.2).
  cc('cc-dpop', 'client_secret_basic', {
    client_secret: 'dpop-secret',
    dpop_bound_access_tokens: true,
  }),
  // Authorization code + refresh tokens: a confidential and a public client.
  {
    client_id: 'app',
    client_secret: 'app-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    application_type: 'native',
    redirect_uris: ['http://127.0.0.1/callback'],
  },
  // The device authorization grant: confidential clients and a public one.
  {
    client_id: 'device-app',
    client_secret: 'device-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: [DEVICE_CODE, 'refresh_token'],
    response_types: [],
    redirect_uris: [],
  },
  {
    client_id: 'device-es256',
    token_endpoint_auth_method: 'private_key_jwt',
    jwks: { keys: [publicJwk('p256_public.pem', 'ES256')] },
    token_endpoint_auth_signing_alg: 'ES256',
    grant_types: [DEVICE_CODE],
    response_types: [],
    redirect_uris: [],
  },
  {
    client_id: 'device-cli',
    token_endpoint_auth_method: 'none',
    grant_types: [DEVICE_CODE, 'refresh_token'],
    response_types: [],
    redirect_uris: [],
  },
  {
    client_id: 'cli',
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    application_type: 'native',
    redirect_uris: ['http://127.0.0.1/callback'],
  },
];

const configuration = {
  clients,
  jwks: {
    keys: [
      signingKey('rsa', { modulusLength: 2048 }, 'RS256'),
      signingKey('ec', { namedCurve: 'P-256' }, 'ES256'),
    ],
  },
  cookies: { keys: ['interop-test-only-cookie-key'] },
  clientAuthMethods: [
    'none',
    'client_secret_basic',
    'client_secret_post',
    'client_secret_jwt',
    'private_key_jwt',
  ],
  enabledJWA: {
    clientAuthSigningAlgValues: ['HS256', 'RS256', 'PS256', 'ES256', 'EdDSA'],
  },
  features: {
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    devInteractions: { enabled: true },
    deviceFlow: { enabled: true },
    // DPoP with server nonces required whenever a proof is sent.
    dPoP: { enabled: true, nonceSecret: randomBytes(32), requireNonce: () => true },
  },
  scopes: ['openid', 'offline_access', 'api:read', 'api:write'],
  pkce: { required: () => true },
  // Rotate on every use, so the tests see rotation.
  rotateRefreshToken: true,
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  ttl: {
    AccessToken: 600,
    ClientCredentials: 600,
    AuthorizationCode: 60,
    DeviceCode: 600,
    Grant: 86400,
    IdToken: 600,
    Interaction: 600,
    RefreshToken: 86400,
    Session: 86400,
  },
};

const server = http.createServer();
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, configuration);
  provider.registerGrantType(TOKEN_EXCHANGE, tokenExchange(provider), [
    'subject_token', 'subject_token_type', 'actor_token', 'actor_token_type',
    'requested_token_type', 'audience', 'resource', 'scope',
  ], ['audience', 'resource']);
  const callback = provider.callback();

  server.on('request', async (req, res) => {
    try {
      const url = new URL(req.url, issuer);
      if (url.pathname === '/api/whoami') {
        return await whoami(provider, req, res);
      }
      if (url.pathname === '/api/dpop') {
        return await dpopResource(provider, req, res);
      }
      if (url.pathname === '/test/refresh-token' && req.method === 'POST') {
        return await mintRefreshToken(provider, url.searchParams.get('client_id'), res);
      }
      return callback(req, res);
    } catch (err) {
      res.writeHead(500, { 'content-type': 'text/plain' }).end(String(err));
    }
  });
  console.log(`ready ${issuer}`);
});

// What each exchanged token was issued for, by jti.
const exchanged = new Map();

function tokenExchange(provider) {
  return async (ctx) => {
    const { params, client } = ctx.oidc;
    if (params.subject_token_type !== ACCESS_TOKEN_TYPE) {
      throw new errors.InvalidRequest('unsupported subject_token_type');
    }
    const subject = (await provider.AccessToken.find(params.subject_token))
      ?? (await provider.ClientCredentials.find(params.subject_token));
    if (!subject || subject.isExpired) {
      throw new errors.InvalidGrant('subject_token is not a valid access token');
    }
    const token = new provider.ClientCredentials({
      client,
      scope: params.scope || undefined,
    });
    const value = await token.save();
    exchanged.set(token.jti, { subject_client_id: subject.clientId, audience: params.audience ?? null });
    ctx.body = {
      access_token: value,
      issued_token_type: ACCESS_TOKEN_TYPE,
      token_type: 'Bearer',
      expires_in: token.expiration,
      scope: token.scope,
    };
  };
}

// A resource server: accepts access tokens this provider issued and that
// are still valid.
async function whoami(provider, req, res) {
  const token = (req.headers.authorization ?? '').replace(/^Bearer /, '');
  const found = token
    && ((await provider.AccessToken.find(token)) ?? (await provider.ClientCredentials.find(token)));
  if (!found || found.isExpired) {
    res.writeHead(401, { 'www-authenticate': 'Bearer error="invalid_token"' }).end();
    return;
  }
  const body = {
    client_id: found.clientId,
    scope: found.scope ?? null,
    sub: found.accountId ?? null,
    subject_client_id: null,
    audience: null,
    ...exchanged.get(found.jti),
  };
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

// The DPoP resource server's own nonce, the proofs' jti it saw, and how many
// nonce challenges it sent.
let resourceNonce = randomBytes(16).toString('base64url');
const seenJti = new Set();
let nonceChallenges = 0;

async function dpopResource(provider, req, res) {
  const deny = (error) => {
    if (error === 'use_dpop_nonce') nonceChallenges += 1;
    res.writeHead(401, {
      'www-authenticate': `DPoP error="${error}", algs="ES256"`,
      'dpop-nonce': resourceNonce,
    }).end();
  };
  const [scheme, token] = (req.headers.authorization ?? '').split(' ');
  if (scheme !== 'DPoP' || !token) return deny('invalid_token');
  const found = await provider.ClientCredentials.find(token);
  if (!found || found.isExpired || !found.jkt) return deny('invalid_token');
  let verified;
  try {
    verified = await jwtVerify(req.headers.dpop ?? '', EmbeddedJWK, {
      typ: 'dpop+jwt',
      algorithms: ['ES256'],
    });
  } catch {
    return deny('invalid_dpop_proof');
  }
  const { payload, protectedHeader } = verified;
  if (await calculateJwkThumbprint(protectedHeader.jwk) !== found.jkt) {
    return deny('invalid_token');
  }
  const ath = createHash('sha256').update(token).digest('base64url');
  if (payload.htm !== req.method || payload.htu !== `http://${req.headers.host}/api/dpop`
      || payload.ath !== ath || typeof payload.jti !== 'string' || seenJti.has(payload.jti)) {
    return deny('invalid_dpop_proof');
  }
  seenJti.add(payload.jti);
  if (payload.nonce !== resourceNonce) return deny('use_dpop_nonce');
  resourceNonce = randomBytes(16).toString('base64url');
  res.writeHead(200, { 'content-type': 'application/json', 'dpop-nonce': resourceNonce })
    .end(JSON.stringify({ client_id: found.clientId, jkt: found.jkt, nonce_challenges: nonceChallenges }));
}

// Test only: a refresh token as an authorization-code flow would issue it.
async function mintRefreshToken(provider, clientId, res) {
  const client = await provider.Client.find(clientId ?? '');
  if (!client) {
    res.writeHead(404).end();
    return;
  }
  const scope = 'openid offline_access';
  const grant = new provider.Grant({ accountId: 'alice', clientId });
  grant.addOIDCScope(scope);
  const grantId = await grant.save();
  const refreshToken = new provider.RefreshToken({
    accountId: 'alice',
    client,
    grantId,
    scope,
    gty: 'authorization_code',
    expiresWithSession: false,
    sessionUid: 'interop',
  });
  const value = await refreshToken.save();
  res.writeHead(200, { 'content-type': 'application/json' })
    .end(JSON.stringify({ refresh_token: value }));
}
