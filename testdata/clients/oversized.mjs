// Sends a body of the given size with Node's fetch and prints the answer's
// status and body as JSON: how a Node client sees a refused upload.
//   node oversized.mjs URL BYTES
const [url, bytes] = process.argv.slice(2);
const body = '{"username":"' + "x".repeat(Number(bytes)) + '","password":"p"}';
try {
  const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body });
  console.log(JSON.stringify({ status: res.status, type: res.headers.get("content-type"), body: await res.text() }));
} catch (err) {
  console.log(JSON.stringify({ error: String(err), cause: String(err.cause) }));
}
