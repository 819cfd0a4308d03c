// Parses and validates an AsyncAPI document with the AsyncAPI parser (its schema and Spectral rules);
// prints the diagnostics as JSON on stdout, one per line: {severity, code, message, path}.
// Severity 0 is an error, 1 a warning, 2 information, 3 a hint. Exit code 1 when the document has an error.
import { readFile } from "node:fs/promises";
import { Parser } from "@asyncapi/parser";

const path = process.argv[2];
if (!path) {
  console.error("usage: node validate.mjs DOCUMENT.yaml");
  process.exit(2);
}
const parser = new Parser();
const { document, diagnostics } = await parser.parse(await readFile(path, "utf8"), { source: path });
for (const { severity, code, message, path: where } of diagnostics) {
  console.log(JSON.stringify({ severity, code, message, path: where.join(".") }));
}
process.exit(document === undefined || diagnostics.some((d) => d.severity === 0) ? 1 : 0);
