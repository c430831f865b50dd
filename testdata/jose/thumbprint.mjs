// Prints the RFC 7638 thumbprint of a JWK, as the jose library computes it.
//
//   node thumbprint.mjs JWK_FILE
import { readFileSync } from "node:fs";
import { calculateJwkThumbprint } from "jose";

const [jwkFile] = process.argv.slice(2);
if (!jwkFile) {
  console.error("usage: node thumbprint.mjs JWK_FILE");
  process.exit(2);
}
console.log(await calculateJwkThumbprint(JSON.parse(readFileSync(jwkFile, "utf8")), "sha256"));
