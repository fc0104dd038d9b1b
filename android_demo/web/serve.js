// A loopback static server for the demo: the page (/web/), the engine (/engine/), the browser builds of
// onnxruntime-web, tokenizers and jinja (/vendor/), and exports (/models/<name>/, listed at
// /models/index.json). Usage: node web/serve.js [--port 8080] [--host 127.0.0.1] NAME=EXPORT_DIR ...
// Cross-origin isolation headers let onnxruntime-web's WASM use threads; CORS lets the APK's page
// (https://appassets.androidplatform.net) download models from this server.
import { createReadStream, existsSync, readFileSync, statSync } from "node:fs";
import { createServer } from "node:http";
import { dirname, extname, join, normalize, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const MODULES = join(ROOT, "node_modules");
// URL prefix under /vendor/ -> directory and the files the page loads (the APK copies the same list).
export const VENDOR = {
  // the WebGPU bundle (native WebGPU EP) runs both EPs on the asyncify build of the runtime
  "ort/": [join(MODULES, "onnxruntime-web/dist/"), ["ort.webgpu.bundle.min.mjs", "ort-wasm-simd-threaded.asyncify.wasm",
    "ort-wasm-simd-threaded.asyncify.mjs"]],
  "tokenizers/": [join(MODULES, "@huggingface/tokenizers/dist/"), ["tokenizers.min.mjs"]],
  "jinja/": [join(MODULES, "@huggingface/jinja/dist/"), ["index.js"]],
};
const TYPES = { ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript",
  ".json": "application/json", ".wasm": "application/wasm", ".webmanifest": "application/manifest+json",
  ".png": "image/png", ".svg": "image/svg+xml", ".css": "text/css" };

/** What /models/index.json lists for each export served: name, bytes to download, embedding precision. */
function modelIndex(models) {
  return Object.entries(models).map(([name, dir]) => {
    const manifest = JSON.parse(readFileSync(join(dir, "edgespec.json"), "utf-8"));
    const size = Object.values(manifest.files).reduce((a, f) => a + f.size, 0);
    return { name, size, embed: manifest.quantization?.embed, target: manifest.quantization?.target ?? "default" };
  });
}

function resolvePath(url, models) {
  const path = normalize(decodeURIComponent(url.split("?")[0]));
  if (path.includes("..")) return null;
  for (const prefix of ["/web/", "/engine/"]) if (path.startsWith(prefix)) return join(ROOT, path);
  if (path.startsWith("/vendor/")) {
    const rest = path.slice("/vendor/".length);
    const key = Object.keys(VENDOR).find((k) => rest.startsWith(k));
    return key ? join(VENDOR[key][0], rest.slice(key.length)) : null;
  }
  const m = path.match(/^\/models\/([^/]+)\/([^/]+)$/);
  if (m && models[m[1]]) return join(models[m[1]], m[2]);
  return null;
}

export function serve(models, { port = 8080, host = "127.0.0.1", log = () => {} } = {}) {
  const index = JSON.stringify(modelIndex(models));
  const server = createServer((req, res) => {
    const headers = { "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
      "Cross-Origin-Resource-Policy": "cross-origin", "Access-Control-Allow-Origin": "*", "Cache-Control": "no-cache",
      "Service-Worker-Allowed": "/" };
    const path = req.url.split("?")[0];
    if (path === "/" || path === "/web" || path === "/web/") {
      res.writeHead(302, { Location: "/web/index.html" }).end();
      return;
    }
    if (path === "/models/index.json") {
      res.writeHead(200, { ...headers, "Content-Type": "application/json" }).end(index);
      return;
    }
    const file = resolvePath(req.url, models);
    if (!file || !existsSync(file) || !statSync(file).isFile()) {
      log(req.method, req.url, 404);
      res.writeHead(404, headers).end(`not found: ${req.url}`);
      return;
    }
    res.writeHead(200, { ...headers, "Content-Type": TYPES[extname(file)] ?? "application/octet-stream",
      "Content-Length": statSync(file).size });
    if (req.method === "HEAD") res.end();
    else createReadStream(file).pipe(res);
  });
  return new Promise((ok) => server.listen(port, host, () => ok(server)));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const option = (name, fallback) => { const i = args.indexOf(name); return i < 0 ? fallback : args.splice(i, 2)[1]; };
  const port = Number(option("--port", 8080)), host = option("--host", "127.0.0.1");
  const models = Object.fromEntries(args.map((a) => a.split("=")).map(([name, dir]) => [name, resolve(dir)]));
  if (!Object.keys(models).length) {
    console.error("usage: node web/serve.js [--port 8080] [--host 127.0.0.1] NAME=EXPORT_DIR ...");
    process.exit(2);
  }
  for (const [name, dir] of Object.entries(models)) {
    if (!existsSync(join(dir, "edgespec.json"))) {
      console.error(`${name}: '${dir}' is not an edgespec export (no edgespec.json)`);
      process.exit(2);
    }
  }
  await serve(models, { port, host });
  console.log(`edgespec demo: http://${host}:${port}/web/index.html (models: ${Object.keys(models).join(", ")})`);
}
