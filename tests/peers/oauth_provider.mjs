// A real OAuth 2.1 authorization server for the gateway's resource-server tests: the pinned `oidc-provider`.
// Usage: node oauth_provider.mjs '<options as JSON>'
//   options: { port?: number (0 = any free one), kid?: string, scopes: "a b c", account?: "alice" }
// It issues JWT access tokens (RS256, signed with a key generated at start and published at /jwks) bound to the
// requested resource indicator (RFC 8707), for these clients:
//   machine, robot, stranger        client_credentials (secret: `<id>-secret`), may ask for every scope
//   short-lived / short-secret      client_credentials, tokens live 3 seconds (2 to 3 left when issued)
//   opaque, short-opaque            client_credentials, opaque access tokens (RFC 7662 introspection), the second's
//                                   live 3 seconds
//   gateway / gateway-secret        the resource server's own client, for the introspection endpoint
//   public PKCE clients             registered dynamically (RFC 7591); authorization code + PKCE, where the login
//                                   and consent are scripted: the interaction URL logs `account` in and grants
//                                   what was asked, so a headless client follows redirects to its code.
// Prints {"issuer": "..."} as one JSON line once listening; stops on SIGTERM.
import { generateKeyPairSync } from "node:crypto";
import http from "node:http";
import Provider from "oidc-provider";

const options = JSON.parse(process.argv[2] ?? "{}");
const server = http.createServer();
await new Promise((resolve) => server.listen(options.port ?? 0, "127.0.0.1", resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: "jwk" }), kid: options.kid ?? "key-1", use: "sig", alg: "RS256" };
const account = options.account ?? "alice";
const machineClient = (id, secret) => ({
  client_id: id,
  client_secret: secret,
  grant_types: ["client_credentials"],
  redirect_uris: [],
  response_types: [],
  scope: options.scopes,
});

const provider = new Provider(issuer, {
  jwks: { keys: [signingKey] },
  clients: [
    ...["machine", "robot", "stranger", "opaque", "short-opaque", "gateway"].map((id) => machineClient(id, `${id}-secret`)),
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
