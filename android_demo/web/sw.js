// Service worker: the page, engine and runtime files are cached on install, so the app starts
// offline; downloaded models live in the page's own cache (loader.js) and are served from it too.
const SHELL_CACHE = "edgespec-shell-v1";
const SHELL = ["index.html", "app.js", "loader.js", "style.css", "manifest.webmanifest", "icon-192.png", "icon-512.png",
  "../engine/backend/kv.js", "../engine/backend/ort.js", "../engine/contract.js", "../engine/controller.js",
  "../engine/drafters/auto.js", "../engine/drafters/ngram.js", "../engine/drafters/ppd.js", "../engine/drafters/skip.js",
  "../engine/engine.js",
  "../engine/errors.js", "../engine/model.js", "../engine/npz.js", "../engine/sampling.js", "../engine/tokenizer.js", "../engine/tree.js", "../engine/verify.js",
  "../vendor/ort/ort.webgpu.bundle.min.mjs", "../vendor/ort/ort-wasm-simd-threaded.asyncify.wasm",
  "../vendor/ort/ort-wasm-simd-threaded.asyncify.mjs",
  "../vendor/tokenizers/tokenizers.min.mjs", "../vendor/jinja/index.js"];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(SHELL_CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

// Network first for the page's own files (a new version shows when online), cache when offline;
// model files: the cache (they are large and checked by hash).
self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const isModel = new URL(request.url).pathname.includes("/models/");
  event.respondWith((async () => {
    if (isModel) return (await caches.match(request)) ?? fetch(request);
    try {
      const response = await fetch(request);
      if (response.ok && new URL(request.url).origin === location.origin) {
        (await caches.open(SHELL_CACHE)).put(request, response.clone());
      }
      return response;
    } catch (error) {
      const cached = await caches.match(request, { ignoreSearch: true });
      if (cached) return cached;
      throw error;
    }
  })());
});
