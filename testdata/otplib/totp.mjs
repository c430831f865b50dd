// Reads an otpauth URI as an authenticator app does, with otplib, and
// prints the TOTP code of each Unix time given, with what it read:
//   node totp.mjs 'otpauth://totp/…' 1700000000 1700000030 …
// prints {"type","label","issuer","algorithm","digits","period","codes":[…]}.
import { parse } from "@otplib/uri";
import { generate } from "otplib";

const [uri, ...epochs] = process.argv.slice(2);
if (!uri || epochs.length === 0) {
  console.error("usage: node totp.mjs OTPAUTH_URI EPOCH_SECONDS...");
  process.exit(2);
}
const { type, label, params } = parse(uri);
if (type !== "totp") {
  console.error(`not a TOTP URI: ${type}`);
  process.exit(1);
}
// Absent parameters take the defaults authenticator apps take.
const algorithm = params.algorithm ?? "sha1";
const digits = params.digits ?? 6;
const period = params.period ?? 30;
const codes = [];
for (const e of epochs) {
  codes.push(await generate({ secret: params.secret, algorithm, digits, period, epoch: Number(e) }));
}
console.log(JSON.stringify({ type, label, issuer: params.issuer ?? "", algorithm, digits, period, codes }));
