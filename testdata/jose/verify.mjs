// Verifies a Tether access token the way a resource server in JavaScript
// would: with the jose library, against the server's JWKS, pinning the
// algorithms it accepts (EdDSA unless ALGORITHMS, comma-separated, says).
//
//   node verify.mjs JWKS_FILE TOKEN [ISSUER] [AUDIENCE] [ALGORITHMS]
//
// Prints the verified claims as JSON and exits 0, or prints why the token
// was refused and exits 1.
import { readFileSync } from "node:fs";
import { createLocalJWKSet, jwtVerify } from "jose";

const [jwksFile, token, issuer = "tether", audience = "tether", algorithms = "EdDSA"] = process.argv.slice(2);
if (!jwksFile || !token) {
  console.error("usage: node verify.mjs JWKS_FILE TOKEN [ISSUER] [AUDIENCE] [ALGORITHMS]");
  process.exit(2);
}
const jwks = createLocalJWKSet(JSON.parse(readFileSync(jwksFile, "utf8")));
try {
  const { payload, protectedHeader } = await jwtVerify(token, jwks, {
    algorithms: algorithms.split(","),
    issuer,
    audience,
  });
  console.log(JSON.stringify({ header: protectedHeader, claims: payload }));
} catch (err) {
  console.error(`refused: ${err.code ?? err.name}: ${err.message}`);
  process.exit(1);
}
