// Loading an export in node with onnxruntime-node (tests, benchmarks): files checked against the
// manifest (size + sha256), the graph contract checked, the KV cache kept in the engine's own buffers.
import { createHash } from "node:crypto";
import { createReadStream, existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { OrtBackend } from "./backend/ort.js";
import { checkManifest, checkSession, hasNewRows, MANIFEST } from "./contract.js";
import { ModelFormatError } from "./errors.js";
import { Model } from "./model.js";
import { ChatTokenizer } from "./tokenizer.js";

async function sha256(path) {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk);
  return hash.digest("hex");
}

export async function readExport(dir, { verify = true } = {}) {
  const path = join(dir, MANIFEST);
  if (!existsSync(path)) throw new ModelFormatError(`'${dir}' is not an edgespec export: it has no ${MANIFEST}`);
  let manifest;
  try {
    manifest = JSON.parse(readFileSync(path, "utf-8"));
  } catch (error) {
    throw new ModelFormatError(`'${path}' is not valid JSON (${error.message})`);
  }
  checkManifest(manifest, dir);
  for (const [name, expected] of Object.entries(manifest.files ?? {})) {
    const file = join(dir, name);
    if (!existsSync(file)) throw new ModelFormatError(`export '${dir}' is missing ${name}, which its manifest lists`);
    if (verify && (statSync(file).size !== expected.size || await sha256(file) !== expected.sha256)) {
      throw new ModelFormatError(`export '${dir}': ${name} does not match its manifest (sha256 ${expected.sha256.slice(0, 16)}...); the export is corrupt — export it again`);
    }
  }
  return manifest;
}

/**
 * Open an export directory: {threads, context (KV length, default the manifest's max_len), kvScheme}. The KV
 * scheme defaults to "appended" when the export returns the rows each pass wrote (`edgespec export --new-rows`:
 * 1.09x on `auto` here, benchmarks/js-engine.md), else "hybrid" (the default export has none: they cost every
 * pass of the Python engine, which never reads them).
 */
export async function loadNode(dir, { threads = 2, context = null, kvScheme = null, verify = true } = {}) {
  const manifest = await readExport(dir, { verify });
  const session = await ort.InferenceSession.create(join(dir, manifest.graph.file), {
    intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: "all" });
  checkSession(session, manifest, dir);
  kvScheme ??= hasNewRows(session) ? "appended" : "hybrid";
  const maxLen = Math.min(context ?? manifest.max_len, manifest.max_len);
  const backend = new OrtBackend(ort, session, manifest.config, maxLen, { kvScheme, name: `ort-node/${kvScheme}` });
  return new Model(backend, readTokenizer(dir, manifest), manifest,
    { readFile: async (name) => new Uint8Array(readFileSync(join(dir, name))) });
}

/** The export's tokenizer and chat template alone (no session: a process that only encodes prompts). */
export function readTokenizer(dir, manifest) {
  const read = (name) => JSON.parse(readFileSync(join(dir, name), "utf-8"));
  return new ChatTokenizer(read("tokenizer.json"), read("tokenizer_config.json"), manifest.tokenizer, manifest.chat_template);
}
