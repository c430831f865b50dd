// Drives Tether's OAuth 2.0 and OpenID Connect endpoints with oauth4webapi,
// a client no one here wrote and strict about the specs, for
// api/oauth4webapi_test.go.
//
//   node flows.mjs SCENARIO ISSUER
//
// The client comes from the environment, so that its secret is not on a
// command line:
//
//   TETHER_CLIENT_ID, TETHER_CLIENT_SECRET (none for a public client)
//   TETHER_AUTH_METHOD     client_secret_basic, client_secret_post or none
//   TETHER_REDIRECT_URI    the client's registered redirect URI
//   TETHER_USERNAME, TETHER_PASSWORD   who signs in on the sign-in page
//   TETHER_DEVICE          the handset payload (JSON), sent as "device"
//   TETHER_ID_TOKEN_ALG    the client's id_token_signed_response_alg
//   TETHER_AUDIENCE        the aud of access tokens ("tether")
//
// Scenarios: discovery, code, dpop, device, client_credentials,
// revocation, id_token, refresh (see the functions below).
//
// It prints JSON, one object a line: events the Go side may act on
// ({"event": "user_code", ...}), then {"result": {...}} and exit 0; or
// {"failed": {...}} (oauth4webapi's error) and exit 1. What must be
// refused is asserted here too (refused() fails the scenario if the
// server accepts), and reported, so the Go side checks the reason.
import * as oauth from "oauth4webapi";

const [scenario, issuerArg] = process.argv.slice(2);
if (!scenario || !issuerArg) {
  console.error("usage: node flows.mjs SCENARIO ISSUER");
  process.exit(2);
}
const env = process.env;
const issuer = new URL(issuerArg);
const audience = env.TETHER_AUDIENCE || "tether";
// The issuer is a loopback http URL in the tests; everything else about
// the transport is as strict as the library is by default.
const insecure = { [oauth.allowInsecureRequests]: true };

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

// describe turns an oauth4webapi error (or any other) into JSON. A
// challenge (WWW-Authenticate) is reported with the answer's body error,
// if it has one (the token endpoint's Basic challenge, RFC 6749 section
// 5.2), else the challenge's.
async function describe(err) {
  const out = { name: err?.name, code: err?.code, message: err?.message };
  if (err instanceof oauth.ResponseBodyError) {
    Object.assign(out, { error: err.error, error_description: err.error_description, status: err.status });
  } else if (err instanceof oauth.WWWAuthenticateChallengeError) {
    out.status = err.status;
    out.challenges = err.cause;
    const body = await err.response?.json().catch(() => undefined);
    out.error = body?.error ?? err.cause.find((c) => c.parameters?.error)?.parameters.error;
    out.error_description = body?.error_description;
  } else if (err instanceof oauth.AuthorizationResponseError) {
    Object.assign(out, { error: err.error, error_description: err.error_description });
  }
  if (err?.cause && !(err.cause instanceof Response) && out.challenges === undefined) {
    try {
      out.cause = JSON.parse(JSON.stringify(err.cause));
    } catch {
      // not JSON: the message says enough
    }
  }
  return out;
}

class Unexpected extends Error {}

function check(cond, what) {
  if (!cond) throw new Unexpected(what);
}

// refused runs what must fail, and returns why it failed.
async function refused(what, fn) {
  let value;
  try {
    value = await fn();
  } catch (err) {
    if (err instanceof Unexpected) throw err;
    return await describe(err);
  }
  throw new Unexpected(`${what} was accepted: ${JSON.stringify(value)}`);
}

// nonceRetries lists the requests retried with the server's DPoP nonce
// (RFC 9449 section 8 and 9): oauth4webapi keeps the nonce of the
// DPoP-Nonce header and says when a request must be sent again.
const nonceRetries = [];

async function retryingNonce(label, fn) {
  try {
    return await fn();
  } catch (err) {
    if (!oauth.isDPoPNonceError(err)) throw err;
    nonceRetries.push(label);
    return fn();
  }
}

async function discover(algorithm = "oidc") {
  const res = await oauth.discoveryRequest(issuer, { algorithm, ...insecure });
  return oauth.processDiscoveryResponse(issuer, res);
}

function theClient(extra = {}) {
  const client = { client_id: env.TETHER_CLIENT_ID, ...extra };
  if (env.TETHER_ID_TOKEN_ALG) client.id_token_signed_response_alg = env.TETHER_ID_TOKEN_ALG;
  return client;
}

function clientAuth() {
  switch (env.TETHER_AUTH_METHOD || "none") {
    case "client_secret_basic":
      return oauth.ClientSecretBasic(env.TETHER_CLIENT_SECRET);
    case "client_secret_post":
      return oauth.ClientSecretPost(env.TETHER_CLIENT_SECRET);
    case "none":
      return oauth.None();
  }
  throw new Error(`TETHER_AUTH_METHOD ${env.TETHER_AUTH_METHOD}`);
}

// headerOf reads a JWT's header, for the report; oauth4webapi checked it.
function headerOf(jwt) {
  return JSON.parse(Buffer.from(jwt.split(".")[0], "base64url"));
}

const scope = "openid profile email offline_access";

// signIn goes through the authorization endpoint as a browser would: the
// sign-in page (its cookie kept), the form posted with the csrf field,
// the 303 read, not followed. The callback is validated for RFC 9207's
// iss and the state sent. extra adds request parameters (dpop_jkt).
async function signIn(as, client, extra = {}) {
  const verifier = oauth.generateRandomCodeVerifier();
  const state = oauth.generateRandomState();
  const nonce = oauth.generateRandomNonce();
  const url = new URL(as.authorization_endpoint);
  const params = {
    client_id: client.client_id,
    redirect_uri: env.TETHER_REDIRECT_URI,
    response_type: "code",
    scope,
    code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
    code_challenge_method: "S256",
    state,
    nonce,
    ...extra,
  };
  if (env.TETHER_DEVICE) params.device = env.TETHER_DEVICE;
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);

  let res = await fetch(url, { redirect: "manual" });
  const page = await res.text();
  check(res.status === 200, `the sign-in page answered ${res.status}: ${page.slice(0, 300)}`);
  check(oauth.getContentType(res) === "text/html", `the sign-in page is ${res.headers.get("content-type")}`);
  const cookie = res.headers
    .getSetCookie()
    .map((c) => c.split(";")[0])
    .find((c) => c.startsWith("tether_oauth_form="));
  check(cookie, "the sign-in page set no tether_oauth_form cookie");
  const csrf = page.match(/name="csrf" value="([^"]+)"/)?.[1];
  check(csrf, "the sign-in page has no csrf field");
  check(/name="username"/.test(page) && /name="password"/.test(page), "the sign-in page has no username and password fields");

  res = await fetch(url, {
    method: "POST",
    redirect: "manual",
    headers: { cookie, "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ csrf, username: env.TETHER_USERNAME, password: env.TETHER_PASSWORD, action: "approve" }),
  });
  const body = await res.text();
  check(res.status === 303, `signing in answered ${res.status}: ${body.slice(0, 300)}`);
  const location = new URL(res.headers.get("location"));
  check(
    location.href.startsWith(env.TETHER_REDIRECT_URI + "?"),
    `redirected to ${location.href}, not to ${env.TETHER_REDIRECT_URI}`,
  );
  const callback = oauth.validateAuthResponse(as, client, location, state);
  return { callback, verifier, nonce, state, location };
}

// redeem is the authorization_code grant with the ID token validated
// (nonce, auth_time within maxAge, iss, aud, exp, iat, the algorithm the
// client pinned) and its signature checked against the issuer's JWKS.
async function redeem(as, client, auth, got, options = {}) {
  const res = await oauth.authorizationCodeGrantRequest(
    as, client, auth, got.callback, env.TETHER_REDIRECT_URI, got.verifier, { ...insecure, ...options },
  );
  const raw = await res.clone().json().catch(() => undefined);
  const other = res.clone();
  const tokens = await oauth.processAuthorizationCodeResponse(as, client, res, {
    expectedNonce: got.nonce,
    maxAge: 300,
    requireIdToken: true,
  });
  await oauth.validateApplicationLevelSignature(as, res, insecure);
  return { tokens, raw, other, claims: oauth.getValidatedIdTokenClaims(tokens) };
}

// resourceServer checks an access token as a resource server would
// (RFC 9068; with its DPoP proof, RFC 9449 section 7): the request is
// built by oauth4webapi and handed over, not sent.
async function resourceServer(as, token, dpop) {
  let req;
  await oauth.protectedResourceRequest(token, "GET", new URL("https://api.example/v1/jobs"), undefined, undefined, {
    DPoP: dpop,
    [oauth.customFetch]: async (url, init) => {
      req = new Request(url, init);
      return new Response("{}", { headers: { "content-type": "application/json" } });
    },
  });
  return oauth.validateJwtAccessToken(as, req, audience, insecure);
}

async function userinfo(as, client, token, sub, dpop) {
  return retryingNonce("userinfo", async () => {
    const res = await oauth.userInfoRequest(as, client, token, { DPoP: dpop, ...insecure });
    return oauth.processUserInfoResponse(as, client, sub, res);
  });
}

async function refresh(as, client, auth, token, dpop) {
  return retryingNonce("refresh", async () => {
    const res = await oauth.refreshTokenGrantRequest(as, client, auth, token, { DPoP: dpop, ...insecure });
    const raw = await res.clone().json().catch(() => undefined);
    const tokens = await oauth.processRefreshTokenResponse(as, client, res);
    if (tokens.id_token) await oauth.validateApplicationLevelSignature(as, res, insecure);
    return { tokens, raw, claims: oauth.getValidatedIdTokenClaims(tokens) };
  });
}

const scenarios = {
  // Both metadata documents, each as its own kind of discovery reads it
  // (RFC 8414 section 3 and OpenID Connect Discovery section 4).
  async discovery() {
    const oidc = await discover("oidc");
    const oauth2 = await discover("oauth2");
    return { oidc, oauth2 };
  },

  // The authorization code flow of a confidential client: PKCE, state,
  // nonce, iss in the callback; the tokens checked; userinfo; then the
  // code presented again is refused, and the tokens it gave die with it
  // (RFC 6749 section 4.1.2).
  async code() {
    const as = await discover();
    const client = theClient();
    const got = await signIn(as, client);
    const { tokens, raw, claims } = await redeem(as, client, clientAuth(), got);
    const access = await resourceServer(as, tokens.access_token);
    const info = await userinfo(as, client, tokens.access_token, claims.sub);
    const replay = await refused("the code presented again", async () => {
      const res = await oauth.authorizationCodeGrantRequest(
        as, client, clientAuth(), got.callback, env.TETHER_REDIRECT_URI, got.verifier, insecure,
      );
      return oauth.processAuthorizationCodeResponse(as, client, res, { expectedNonce: got.nonce });
    });
    const afterReplay = await refused("userinfo with the tokens of a replayed code", () =>
      userinfo(as, client, tokens.access_token, claims.sub),
    );
    return {
      callback: Object.fromEntries(got.location.searchParams),
      state: got.state,
      nonce: got.nonce,
      token: raw,
      idTokenHeader: headerOf(tokens.id_token),
      idToken: claims,
      access,
      userinfo: info,
      replay,
      afterReplay,
    };
  },

  // A public client with DPoP (RFC 9449): dpop_jkt on the authorization
  // request, proofs on the code grant, the refresh (same key; the refresh
  // token rotates) and userinfo. A resource server sees the binding.
  // Refused: the bound token as a Bearer token, a refresh with another
  // key, the refresh token of before the rotation. Each request is
  // retried once when the server asks for its DPoP nonce.
  async dpop() {
    const as = await discover();
    const client = theClient();
    const key = await oauth.generateKeyPair("ES256");
    const dpop = oauth.DPoP(client, key);
    const got = await signIn(as, client, { dpop_jkt: await dpop.calculateThumbprint() });
    const first = await retryingNonce("authorization_code", () => redeem(as, client, oauth.None(), got, { DPoP: dpop }));
    const { tokens, claims } = first;
    const info = await userinfo(as, client, tokens.access_token, claims.sub, dpop);
    const asBearer = await refused("a DPoP-bound token sent as Bearer", async () => {
      const res = await oauth.userInfoRequest(as, client, tokens.access_token, insecure);
      return oauth.processUserInfoResponse(as, client, claims.sub, res);
    });
    const access = await resourceServer(as, tokens.access_token, dpop);

    const second = await refresh(as, client, oauth.None(), tokens.refresh_token, dpop);
    const info2 = await userinfo(as, client, second.tokens.access_token, claims.sub, dpop);
    const thief = oauth.DPoP(client, await oauth.generateKeyPair("ES256"));
    const otherKey = await refused("a refresh with another DPoP key", () =>
      refresh(as, client, oauth.None(), second.tokens.refresh_token, thief),
    );
    const third = await refresh(as, client, oauth.None(), second.tokens.refresh_token, dpop);
    const reused = await refused("the refresh token of before the rotation", () =>
      refresh(as, client, oauth.None(), tokens.refresh_token, dpop),
    );
    const afterReuse = await refused("the newest refresh token once an old one was reused", () =>
      refresh(as, client, oauth.None(), third.tokens.refresh_token, dpop),
    );
    return {
      thumbprint: await dpop.calculateThumbprint(),
      token: first.raw,
      idToken: claims,
      userinfo: info,
      asBearer,
      access,
      refreshed: second.raw,
      userinfo2: info2,
      otherKey,
      refreshedAgain: third.raw,
      reused,
      afterReuse,
      nonceRetries,
    };
  },

  // The device authorization grant (RFC 8628) of a public client for a
  // handset without a keyboard: the user code is printed as an event for
  // the Go side to approve on the verification page, while this polls.
  async device() {
    const as = await discover();
    const client = theClient();
    const params = { scope };
    if (env.TETHER_DEVICE) params.device = env.TETHER_DEVICE;
    const res = await oauth.deviceAuthorizationRequest(as, client, clientAuth(), params, insecure);
    const auth = await oauth.processDeviceAuthorizationResponse(as, client, res);
    const polls = [];
    let interval = auth.interval ?? 5;
    let tokens, raw;
    for (const deadline = Date.now() + 60_000; Date.now() < deadline; ) {
      try {
        const res = await oauth.deviceCodeGrantRequest(as, client, clientAuth(), auth.device_code, insecure);
        raw = await res.clone().json().catch(() => undefined);
        tokens = await oauth.processDeviceCodeResponse(as, client, res);
        await oauth.validateApplicationLevelSignature(as, res, insecure);
        polls.push("tokens");
        break;
      } catch (err) {
        if (!(err instanceof oauth.ResponseBodyError)) throw err;
        polls.push(err.error);
        if (err.error === "slow_down") interval += 5;
        else if (err.error !== "authorization_pending") throw err;
      }
      if (polls.length === 1) emit({ event: "user_code", ...auth });
      await new Promise((r) => setTimeout(r, interval * 1000));
    }
    check(tokens, `no tokens after polling: ${polls.join(", ")}`);
    const claims = oauth.getValidatedIdTokenClaims(tokens);
    const info = await userinfo(as, client, tokens.access_token, claims.sub);
    const used = await refused("the device code used again", async () => {
      const res = await oauth.deviceCodeGrantRequest(as, client, clientAuth(), auth.device_code, insecure);
      return oauth.processDeviceCodeResponse(as, client, res);
    });
    return { authorization: auth, polls, token: raw, idToken: claims, userinfo: info, used };
  },

  // client_credentials with client_secret_basic: a token naming the
  // client, checked as a resource server would.
  async client_credentials() {
    const as = await discover("oauth2");
    const client = theClient();
    const res = await oauth.clientCredentialsGrantRequest(as, client, clientAuth(), {}, insecure);
    const raw = await res.clone().json().catch(() => undefined);
    const tokens = await oauth.processClientCredentialsResponse(as, client, res);
    const access = await resourceServer(as, tokens.access_token);
    const wrongSecret = await refused("a wrong client secret", async () => {
      const res = await oauth.clientCredentialsGrantRequest(as, client, oauth.ClientSecretBasic("wrong"), {}, insecure);
      return oauth.processClientCredentialsResponse(as, client, res);
    });
    return { token: raw, access, wrongSecret };
  },

  // Introspection (RFC 7662) and revocation (RFC 7009) by a confidential
  // client: its token is active, then revoked, then inactive and refused.
  async revocation() {
    const as = await discover();
    const client = theClient();
    const got = await signIn(as, client);
    const { tokens, claims } = await redeem(as, client, clientAuth(), got);
    const introspect = async (token) => {
      const res = await oauth.introspectionRequest(as, client, clientAuth(), token, insecure);
      return oauth.processIntrospectionResponse(as, client, res);
    };
    const before = await introspect(tokens.access_token);
    const garbage = await introspect("not-a-token");
    const revokeUnknown = await oauth.processRevocationResponse(
      await oauth.revocationRequest(as, client, clientAuth(), "not-a-token", insecure),
    );
    await oauth.processRevocationResponse(
      await oauth.revocationRequest(as, client, clientAuth(), tokens.refresh_token, {
        additionalParameters: { token_type_hint: "refresh_token" },
        ...insecure,
      }),
    );
    const after = await introspect(tokens.access_token);
    const userinfoAfter = await refused("userinfo after revocation", () => userinfo(as, client, tokens.access_token, claims.sub));
    const refreshAfter = await refused("a refresh after revocation", () => refresh(as, client, clientAuth(), tokens.refresh_token));
    return { before, garbage, revokeUnknown: revokeUnknown ?? null, after, userinfoAfter, refreshAfter, sub: claims.sub };
  },

  // The ID token in the client's id_token_signed_response_alg, pinned in
  // the client as oauth4webapi pins it, its signature checked against the
  // JWKS; the same answer refused by a client pinned to another one.
  async id_token() {
    const as = await discover();
    const client = theClient();
    const got = await signIn(as, client);
    const { tokens, claims, other } = await redeem(as, client, clientAuth(), got);
    const alg = client.id_token_signed_response_alg;
    const otherAlg = alg === "RS256" ? "ES256" : "RS256";
    const pinnedElsewhere = await refused(`an ID token in ${alg} for a client pinned to ${otherAlg}`, () =>
      oauth.processAuthorizationCodeResponse(as, { ...client, id_token_signed_response_alg: otherAlg }, other, {
        expectedNonce: got.nonce,
      }),
    );
    return {
      header: headerOf(tokens.id_token),
      idToken: claims,
      accessToken: tokens.access_token,
      pinnedElsewhere,
      supported: as.id_token_signing_alg_values_supported,
    };
  },

  // The refresh_token grant of a confidential client (client_secret_post):
  // rotation, a fresh ID token (OpenID Connect Core section 12.2), then
  // reuse detection: the old refresh token refused, and the session it
  // belongs to ended, so the newest one is refused too.
  async refresh() {
    const as = await discover();
    const client = theClient();
    const got = await signIn(as, client);
    const first = await redeem(as, client, clientAuth(), got);
    const second = await refresh(as, client, clientAuth(), first.tokens.refresh_token);
    const info = await userinfo(as, client, second.tokens.access_token, first.claims.sub);
    const reused = await refused("the refresh token of before the rotation", () =>
      refresh(as, client, clientAuth(), first.tokens.refresh_token),
    );
    const afterReuse = await refused("the newest refresh token once an old one was reused", () =>
      refresh(as, client, clientAuth(), second.tokens.refresh_token),
    );
    const userinfoAfterReuse = await refused("userinfo once the session ended", () =>
      userinfo(as, client, second.tokens.access_token, first.claims.sub),
    );
    return {
      token: first.raw,
      idToken: first.claims,
      refreshed: second.raw,
      refreshedIdToken: second.claims,
      userinfo: info,
      reused,
      afterReuse,
      userinfoAfterReuse,
    };
  },
};

const run = scenarios[scenario];
if (!run) {
  console.error(`unknown scenario ${scenario}: one of ${Object.keys(scenarios).join(", ")}`);
  process.exit(2);
}
try {
  emit({ result: await run() });
} catch (err) {
  console.error(err);
  emit({ failed: await describe(err) });
  process.exit(1);
}
