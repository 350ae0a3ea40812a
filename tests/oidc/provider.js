// A real OpenID Connect provider (the oidc-provider package) for the job
// service's tests of its Armada credentials.
//
// Usage: node provider.js SETTINGS.json
// SETTINGS: {
//   "clients": [{"client_id", "client_secret"?, "grant_types": [...], "ttl_s"?}],
//   "users": {"name": "password"},          // the password grant's accounts
//   "kubernetes_assertion_file": "PATH",    // the service-account token the
//                                           // kubernetes grant accepts (read
//                                           // at each request: tests rotate it)
// }
// A client's tokens live its ttl_s seconds (default 600).
// It listens on 127.0.0.1 on a free port, then prints one JSON line
// {"issuer": "http://127.0.0.1:PORT"} on stdout. Tokens are opaque; the tests
// check them at the introspection endpoint. The token endpoint is
// /connect/token, where Armada's Go client sends the kubernetes grant.
//
// oidc-provider has no password or kubernetes grant: both are registered
// with registerGrantType and issue the same kind of token as
// client_credentials, marked with who they were issued to.
import fs from 'node:fs';
import http from 'node:http';
import querystring from 'node:querystring';

import Provider, { errors } from 'oidc-provider';

const settings = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const ttlOf = Object.fromEntries(settings.clients.map((c) => [c.client_id, c.ttl_s ?? 600]));

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: settings.clients.map((c) => ({
    client_id: c.client_id,
    ...(c.client_secret
      ? { client_secret: c.client_secret }
      : { token_endpoint_auth_method: 'none' }),
    grant_types: c.grant_types,
    response_types: [],
    redirect_uris: [],
    scope: 'openid armada',
  })),
  scopes: ['openid', 'armada'],
  routes: { token: '/connect/token' },
  features: {
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    devInteractions: { enabled: false },
  },
  ttl: { ClientCredentials: (ctx, token, client) => ttlOf[client.clientId] },
  // The custom grants leave who they authenticated on the request; the
  // introspection answer then carries it.
  extraTokenClaims: (ctx) => (ctx?.armadaSubject ? { armada_subject: ctx.armadaSubject } : undefined),
});

async function issue(ctx, subject) {
  const scope = [...new Set(String(ctx.oidc.params.scope || '').split(' ').filter(Boolean))]
    .filter((s) => ctx.oidc.client.scope.split(' ').includes(s));
  ctx.armadaSubject = subject;
  const token = new provider.ClientCredentials({
    client: ctx.oidc.client,
    scope: scope.join(' ') || undefined,
  });
  const value = await token.save();
  ctx.body = {
    access_token: value,
    token_type: 'Bearer',
    expires_in: token.expiration,
    scope: token.scope,
  };
}

provider.registerGrantType(
  'password',
  async (ctx) => {
    const { username, password } = ctx.oidc.params;
    const users = settings.users ?? {};
    if (!username || !Object.hasOwn(users, username) || users[username] !== password) {
      throw new errors.InvalidGrant('wrong user name or password');
    }
    await issue(ctx, `user:${username}`);
  },
  ['username', 'password', 'scope'],
);

// The kubernetes grant sends the service-account token as client_assertion,
// which oidc-provider would take for JWT client authentication. Here it is
// the grant's credential instead: read the form first and hand it on under
// a name of its own (oidc-provider accepts a body parsed before it).
provider.use(async (ctx, next) => {
  if (ctx.method === 'POST' && ctx.path === '/connect/token') {
    const chunks = [];
    for await (const chunk of ctx.req) chunks.push(chunk);
    const form = querystring.parse(Buffer.concat(chunks).toString());
    if (form.grant_type === 'kubernetes') {
      form.kubernetes_token = form.client_assertion;
      delete form.client_assertion;
    }
    ctx.request.body = form;
  }
  await next();
});

provider.registerGrantType(
  'kubernetes',
  async (ctx) => {
    const expected = fs.readFileSync(settings.kubernetes_assertion_file, 'utf8').trim();
    if (!ctx.oidc.params.kubernetes_token || ctx.oidc.params.kubernetes_token !== expected) {
      throw new errors.InvalidGrant('service account token not accepted');
    }
    await issue(ctx, 'serviceaccount');
  },
  ['kubernetes_token', 'scope'],
);

server.on('request', provider.callback());
process.stdout.write(`${JSON.stringify({ issuer })}\n`);
process.on('SIGTERM', () => server.close(() => process.exit(0)));
