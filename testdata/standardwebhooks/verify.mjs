// Verifies webhook deliveries the way a receiver would: with the Standard
// Webhooks library, against the sink's secret.
//
//   node verify.mjs SECRET DELIVERIES_FILE
//
// DELIVERIES_FILE holds a JSON array of {"headers": {...}, "body": "..."}.
// Prints a JSON array, one result per delivery, in order: {"ok": true,
// "payload": ...} or {"ok": false, "error": "..."}.
import { readFileSync } from "node:fs";
import { Webhook } from "standardwebhooks";

const [secret, file] = process.argv.slice(2);
if (!secret || !file) {
  console.error("usage: node verify.mjs SECRET DELIVERIES_FILE");
  process.exit(2);
}
const wh = new Webhook(secret);
const results = JSON.parse(readFileSync(file, "utf8")).map(({ headers, body }) => {
  try {
    return { ok: true, payload: wh.verify(body, headers) };
  } catch (err) {
    return { ok: false, error: String(err.message ?? err) };
  }
});
console.log(JSON.stringify(results));
