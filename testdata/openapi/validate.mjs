// Validates an OpenAPI document against the OpenAPI specification (3.1
// included) and resolves every $ref in it.
//
//   node validate.mjs openapi.json
//
// Prints "valid: TITLE VERSION, N paths" and exits 0, or prints the
// problems and exits 1.
import SwaggerParser from "@apidevtools/swagger-parser";

const file = process.argv[2];
if (!file) {
  console.error("usage: node validate.mjs openapi.json");
  process.exit(2);
}
try {
  const api = await SwaggerParser.validate(file);
  console.log(`valid: ${api.info.title} ${api.info.version}, ${Object.keys(api.paths).length} paths`);
} catch (err) {
  console.error(`invalid: ${err.message}`);
  process.exit(1);
}
