// Builds the one-file ES module of the client that the playground imports, so the page
// works from a fresh clone with no npm: src/imagegate/api/static/playground/client.js.
// `--check` only compares with the checked-in file and exits 1 when it is stale.
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const target = join(here, "..", "..", "..", "src", "imagegate", "api", "static", "playground", "client.js");
const { version } = JSON.parse(readFileSync(join(here, "..", "package.json"), "utf8"));
const result = await build({
  entryPoints: [join(here, "..", "src", "index.ts")],
  bundle: true,
  format: "esm",
  target: "es2022",
  platform: "browser",
  write: false,
  legalComments: "none",
  banner: {
    js: `// @imagegate/client ${version}, bundled from clients/js by \`npm run bundle\`: do not edit.`,
  },
});
const bundled = result.outputFiles[0].text;

if (process.argv.includes("--check")) {
  if (readFileSync(target, "utf8") !== bundled) {
    console.error("the playground's client.js is stale: run `npm run bundle` in clients/js");
    process.exit(1);
  }
  console.log("the playground's client.js matches a fresh build");
} else {
  writeFileSync(target, bundled);
  console.log(`wrote ${target} (${bundled.length} bytes)`);
}
