// What the JS engine expects of an export: the graph contract version it was written against
// (edgespec/models/contract.py, recorded in the manifest under `graph_contract`) and the inputs it feeds.
import { ModelFormatError } from "./errors.js";

export const GRAPH_CONTRACT_VERSION = 5;  // 2: extra_embeds (PPD prompt rows) in default exports, fed [1, 0, d] here;
                                          // 3: only skippableLayers() take a layer plan;
                                          // 4: new_key.i / new_value.i outputs (kv.js AppendedKv);
                                          // 5: those only in exports made with --new-rows (hasNewRows)
export const MANIFEST = "edgespec.json";
const FED = ["input_ids", "position_ids", "attention_bias", "seqlens_k", "total_sequence_length", "logits_index"];

/** The layers a layer plan may skip (contract.py's skippable_layers): the middle half, [L/4, L - L/4); only
 * they are If nodes in the graph. */
export function skippableLayers(numLayers) {
  const lo = Math.floor(numLayers / 4), out = [];
  for (let i = lo; i < numLayers - lo; i++) out.push(i);
  return out;
}

/** Whether the session returns the rows each pass wrote (new_key.i / new_value.i: `edgespec export --new-rows`),
 * which the "appended" KV scheme fetches. */
export function hasNewRows(session) {
  return session.outputNames.includes("new_key.0");
}

/** The sha256 of bytes as hex, as the manifest records every file's (Web Crypto: node and browsers). */
export async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Refuse an export written under another graph contract (naming both versions). */
export function checkManifest(manifest, where) {
  if (manifest?.schema_version !== 1) {
    throw new ModelFormatError(`'${where}' has manifest schema version ${manifest?.schema_version}; this engine reads version 1`);
  }
  if (manifest.format !== "onnx") {
    throw new ModelFormatError(`export '${where}' is in format '${manifest.format}'; the JS engine runs onnx exports`);
  }
  const found = manifest.graph_contract?.version;
  if (found !== GRAPH_CONTRACT_VERSION) {
    const written = found === undefined ? "no graph contract (an export older than contract version 1)" : `graph contract version ${found}`;
    throw new ModelFormatError(`export '${where}' was written with ${written}; this engine runs graph contract ` +
      `version ${GRAPH_CONTRACT_VERSION} — export the model again`);
  }
}

/** The session's inputs must be the contract's (no input the engine does not know how to feed). */
export function checkSession(session, manifest, where) {
  const known = new Set(manifest.graph_contract.inputs.map((i) => i.name));
  const missing = FED.filter((name) => !session.inputNames.includes(name));
  const unknown = session.inputNames.filter((name) => !known.has(name));
  if (missing.length || unknown.length) {
    throw new ModelFormatError(`export '${where}': model.onnx does not match its graph contract (missing inputs: ` +
      `${missing.join(", ") || "none"}; inputs the contract does not name: ${unknown.join(", ") || "none"})`);
  }
}
