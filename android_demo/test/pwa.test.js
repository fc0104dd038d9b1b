// The PWA starts offline only if its service worker caches every module the page imports: a module
// missing from the list breaks the offline start (found when engine/npz.js and drafters/ppd.js came
// in; the browser test then timed out). Checked here, without a browser.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { it } from "node:test";

const DEMO = resolve(dirname(fileURLToPath(import.meta.url)), "..");

const modules = (dir) => readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
  e.isDirectory() ? modules(join(dir, e.name)) : e.name.endsWith(".js") ? [join(dir, e.name)] : []);

it("the service worker caches every engine module and the page's own scripts", () => {
  const sw = readFileSync(join(DEMO, "web/sw.js"), "utf-8");
  const browserOnly = (path) => !["node.js"].includes(relative(join(DEMO, "engine"), path)); // node's loader
  const needed = [...modules(join(DEMO, "engine")).filter(browserOnly).map((p) => `../${relative(DEMO, p)}`),
    "app.js", "loader.js"];
  const missing = needed.filter((path) => !sw.includes(`"${path}"`));
  assert.deepEqual(missing, [], `web/sw.js does not cache ${missing.join(", ")}`);
});
