// A real OAuth 2.1 authorization server for the gateway's resource-server tests: the pinned `oidc-provider`.
// Usage: node oauth_provider.mjs '<options as JSON>'
//   options: { port?: number (0 = any free one), kid?: string, scopes: "a b c", account?: "alice" }
// It issues JWT access tokens (RS256, signed with a key generated at start and published at /jwks) bound to the
// requested resource indicator (RFC 8707), for these clients:
//   machine, robot, stranger        client_credentials (secret: `<id>-secret`), may ask for every scope
//   short-lived / short-secret      client_credentials, tokens live 3 seconds (2 to 3 left when issued)
//   opaque, short-opaque            client_credentials, opaque access tokens (RFC 7662 introspection), the second's
//                                   live 3 seconds
//   gateway / gateway-secret        the resource server's own client, for the introspection endpoint, and the
//                                   gateway as a client of upstreams: client credentials and token exchange
//   short-gateway / short-secret    the same, its client-credentials tokens live 3 seconds
// Token exchange (RFC 8693, which oidc-provider does not implement: registered below as a grant type) takes an
// access token this server issued as `subject_token` and issues a JWT for the requested `resource` with the
// subject token's `sub`, the exchanging client as `client_id` and as the actor (`act`).
//   public PKCE clients             registered dynamically (RFC 7591); authorization code + PKCE, where the login
//                                   and consent are scripted: the interaction URL logs `account` in and grants
//                                   what was asked, so a headless client follows redirects to its code.
// Prints {"issuer": "..."} as one JSON line once listening; stops on SIGTERM.
import { generateKeyPairSync } from "node:crypto";
import http from "node:http";
import Provider, { errors } from "oidc-provider";
import { SignJWT, jwtVerify } from "jose";

const options = JSON.parse(process.argv[2] ?? "{}");
const server = http.createServer();
await new Promise((resolve) => server.listen(options.port ?? 0, "127.0.0.1", resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: "jwk" }), kid: options.kid ?? "key-1", use: "sig", alg: "RS256" };
const account = options.account ?? "alice";
const TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token";
const machineClient = (id, secret, grantTypes = ["client_credentials"]) => ({
  client_id: id,
  client_secret: secret,
  grant_types: grantTypes,
  redirect_uris: [],
  response_types: [],
  scope: options.scopes,
});

const provider = new Provider(issuer, {
  jwks: { keys: [signingKey] },
  clients: [
    ...["machine", "robot", "stranger", "opaque", "short-opaque"].map((id) => machineClient(id, `${id}-secret`)),
    machineClient("gateway", "gateway-secret", ["client_credentials", TOKEN_EXCHANGE]),
    machineClient("short-gateway", "short-secret", ["client_credentials", TOKEN_EXCHANGE]),
    machineClient("short-lived", "short-secret"),
  ],
  scopes: ["openid", "offline_access", ...options.scopes.split(" ")],
  pkce: { required: () => true },
  findAccount: async (ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    registration: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => undefined,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resource, client) => ({
        scope: options.scopes,
        audience: resource,
        accessTokenTTL: client.clientId.startsWith("short") ? 3 : 300,
        accessTokenFormat: client.clientId.endsWith("opaque") ? "opaque" : "jwt",
        jwt: { sign: { alg: "RS256" } },
      }),
    },
  },
  interactions: { url: async (ctx, interaction) => `/interaction/${interaction.uid}` },
  // Local test server over plain http: no secure cookies.
  cookies: { keys: ["oauth-provider-test-cookie-key"], short: { secure: false }, long: { secure: false } },
});

// RFC 8693 token exchange for clients allowed the grant: the subject token must be a live access token of ours.
provider.registerGrantType(
  TOKEN_EXCHANGE,
  async (ctx) => {
    const { client, params } = ctx.oidc;
    if (params.subject_token_type !== ACCESS_TOKEN_TYPE) {
      throw new errors.InvalidRequest("subject_token_type must be an access token");
    }
    if (!params.resource) throw new errors.InvalidTarget("a resource is required");
    let subject;
    try {
      ({ payload: subject } = await jwtVerify(params.subject_token, publicKey, { issuer }));
    } catch {
      throw new errors.InvalidGrant("subject_token is not a valid access token of this server");
    }
    const lifetime = client.clientId.startsWith("short") ? 3 : 300;
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({
      client_id: client.clientId,
      act: { sub: client.clientId },
      scope: params.scope ?? subject.scope,
      jti: crypto.randomUUID(),
    })
      .setProtectedHeader({ alg: "RS256", typ: "at+jwt", kid: signingKey.kid })
      .setIssuer(issuer)
      .setSubject(subject.sub)
      .setAudience(params.resource)
      .setIssuedAt(now)
      .setExpirationTime(now + lifetime)
      .sign(privateKey);
    ctx.body = {
      access_token: token,
      issued_token_type: ACCESS_TOKEN_TYPE,
      token_type: "Bearer",
      expires_in: lifetime,
    };
  },
  ["subject_token", "subject_token_type", "requested_token_type", "resource", "audience", "scope"],
);

// The scripted login and consent: whatever the interaction asks, `account` logs in and grants it all.
async function scriptedInteraction(req, res) {
  const { prompt, params, grantId } = await provider.interactionDetails(req, res);
  if (prompt.name === "login") {
    return provider.interactionFinished(req, res, { login: { accountId: account } }, { mergeWithLastSubmission: false });
  }
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: account, clientId: params.client_id });
  const { missingOIDCScope, missingResourceScopes } = prompt.details;
  if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(" "));
  for (const [indicator, scopes] of Object.entries(missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(" "));
  }
  const consent = { grantId: await grant.save() };
  return provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
}

const callback = provider.callback();
server.on("request", (req, res) => {
  if (req.url.startsWith("/interaction/")) {
    scriptedInteraction(req, res).catch((error) => {
      res.statusCode = 500;
      res.end(String(error));
    });
    return;
  }
  callback(req, res);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
console.log(JSON.stringify({ issuer, kid: signingKey.kid }));
