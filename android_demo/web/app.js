// The chat page: choose a model on a server, download it once (progress, then cached for offline
// use), chat with streaming text and the speculative engine's numbers: tok/s, tokens per verify step,
// and which drafter's tokens were accepted (what pays). document.body.dataset.state tells tests
// (and screen readers, via #status) where the page is: idle, loading, ready, generating, error.
import { listModels, loadWeb } from "./loader.js";

const $ = (id) => document.getElementById(id);
const ui = { server: $("server"), model: $("model"), backend: $("backend"), spec: $("spec"), maxTokens: $("max-tokens"),
  load: $("load"), progress: $("progress"), status: $("status"), chat: $("chat"), stats: $("stats"),
  prompt: $("prompt"), send: $("send"), composer: $("composer"), settings: $("settings") };
const demo = (globalThis.edgespecDemo = { model: null, messages: [], results: [] });
const mb = (n) => `${(n / 1e6).toFixed(1)} MB`;

function setState(state, message) {
  document.body.dataset.state = state;
  if (message !== undefined) ui.status.textContent = message;
  const ready = state === "ready";
  ui.prompt.disabled = ui.send.disabled = !ready;
  ui.load.disabled = state === "loading" || state === "generating";
}

function fail(error) {
  console.error(error);
  setState("error", `${error.name === "Error" ? "" : `${error.name}: `}${error.message}`);
}

const params = new URLSearchParams(location.search);
ui.server.value = params.get("server") ?? localStorage.getItem("edgespec.server") ?? new URL("../models/", location).href;
for (const [key, el] of [["backend", ui.backend], ["spec", ui.spec], ["max_tokens", ui.maxTokens]]) {
  if (params.has(key)) el.value = params.get(key);
}

async function refreshModels() {
  ui.model.replaceChildren();
  const models = await listModels(ui.server.value);
  for (const m of models) {
    ui.model.append(new Option(`${m.name} (${mb(m.size)}, embeddings ${m.embed})`, m.name));
  }
  if (params.has("model")) ui.model.value = params.get("model");
}

async function load() {
  setState("loading", "loading…");
  ui.progress.hidden = false;
  localStorage.setItem("edgespec.server", ui.server.value);
  const base = new URL(`${ui.model.value}/`, ui.server.value).href;
  const started = performance.now();
  demo.model = await loadWeb(base, { backend: ui.backend.value, onProgress: (loaded, total, stage) => {
    ui.progress.value = loaded / total;
    ui.status.textContent = `${stage}: ${mb(loaded)} of ${mb(total)}`;
  } });
  if (ui.spec.value === "auto") ui.status.textContent = "measuring this device's verify cost (auto drafter)…";
  // auto measures t(T) here; on a slow backend keep the calibration short
  await demo.model.setSpec(ui.spec.value, { calibration: { sizes: [1, 2, 4, 8], reps: 1 } });
  ui.progress.hidden = true;
  ui.settings.open = false;
  demo.messages = [];
  setState("ready", `${ui.model.value} on ${demo.model.backend.name} (${demo.model.backendWhy}), drafter ${ui.spec.value}; ` +
    `ready in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

function bubble(role, text = "") {
  const div = document.createElement("div");
  div.className = `msg ${role}`;
  div.textContent = text;
  ui.chat.append(div);
  return div;
}

function statsLine(end, model) {
  const paid = Object.entries(end.stats.byDrafter).filter(([, n]) => n).map(([name, n]) => `${name} ${n}`).join(", ");
  return `${end.decodeTokPerS.toFixed(2)} tok/s · ${end.stats.tokensPerStep.toFixed(2)} tokens/step · ` +
    `drafts accepted: ${paid || "none"} · ${end.tokens.length} tokens · ${model.backend.name}`;
}

async function send(text) {
  setState("generating", "generating…");
  bubble("user", text);
  demo.messages.push({ role: "user", content: text });
  const out = bubble("assistant");
  const model = demo.model;
  const ids = model.tokenizer.chatIds(demo.messages);
  let reply = "";
  for await (const event of model.generate(ids, { maxTokens: Number(ui.maxTokens.value) })) {
    if (event.done) {
      reply += event.text;
      out.append(event.text); // the decoder's last bytes; the drafted-token colours stay
      ui.stats.textContent = statsLine(event, model);
      demo.results.push({ promptIds: ids, tokens: event.tokens, text: reply, stats: { ...event.stats,
        tokensPerStep: event.stats.tokensPerStep }, tokPerS: event.decodeTokPerS });
      break;
    }
    reply += event.text;
    if (event.fromDraft) { // drafted tokens the target accepted show in another colour
      const span = document.createElement("span");
      span.className = "draft";
      span.textContent = event.text;
      out.append(span);
    } else {
      out.append(event.text);
    }
    ui.stats.textContent = `${model.backend.name}: generating…`;
    ui.chat.scrollTop = ui.chat.scrollHeight;
  }
  demo.messages.push({ role: "assistant", content: reply });
  setState("ready", `ready · ${demo.model.manifest.source.name} on ${model.backend.name}, drafter ${model.spec}`);
}

ui.load.addEventListener("click", () => load().catch(fail));
ui.server.addEventListener("change", () => refreshModels().catch(fail));
ui.composer.addEventListener("submit", (e) => {
  e.preventDefault();
  const text = ui.prompt.value.trim();
  if (!text) return;
  ui.prompt.value = "";
  send(text).catch(fail);
});

if ("serviceWorker" in navigator) {
  // scope: the whole demo (the WASM worker's own script lives under /vendor/ and is matched by its URL)
  navigator.serviceWorker.register("sw.js", { scope: "../" }).catch((e) => console.warn("no offline cache for the page:", e.message));
}
refreshModels().catch(fail);
