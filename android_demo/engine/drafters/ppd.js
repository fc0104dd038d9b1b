// PPD (Parallel Prompt Decoding): trained prompt-token rows ride on the verify pass (port of
// edgespec/speculative/drafters/ppd.py, whose docstring has the math). In short: m prompt rows hang
// below every row r of the verify pass's tree, at positions depth(r)+1.., seeing r's ancestors, r and
// their own earlier prompt rows; no tree row sees them, so verification is unchanged. When acceptance
// stops at row r, r's prompt rows predict the tokens after the next root: the next draft, with no
// draft pass. Their KV is dropped by keep(accepted path).
import { sha256Hex } from "../contract.js";
import { Acceptance } from "../controller.js";
import { ModelFormatError } from "../errors.js";
import { readNpz } from "../npz.js";
import { argmax } from "../sampling.js";
import { DraftTree } from "../tree.js";

/** The top `k` ids of a logits row, highest first (ties: the lower id, as numpy's stable argsort). */
const topK = (row, k) => {
  const best = [];
  for (let i = 0; i < row.length; i++) {
    if (best.length < k || row[i] > row[best[best.length - 1]]) {
      let at = best.length;
      while (at > 0 && row[i] > row[best[at - 1]]) at--;
      best.splice(at, 0, i);
      if (best.length > k) best.pop();
    }
  }
  return best;
};

export class PPDDrafter {
  /**
   * rows: Float32Array [k * d] of trained prompt-token embeddings; cost: a CostModel of this device (null:
   * draft as deep as the prompt tokens reach); siblings: depth-1 alternatives from prompt row 0's top-k.
   */
  constructor(rows, hidden, { cost = null, siblings = 1, maxDepth = null } = {}) {
    this.name = "ppd";
    Object.assign(this, { rows, hidden, cost, siblings });
    this.k = rows.length / hidden;
    this.maxDepth = Math.min(this.k, maxDepth ?? this.k);
    this.acceptance = new Acceptance(0.3);
    this.reset();
  }

  reset() {
    this.guess = null; // top ids per depth for after the next root
    this.fresh = false; // the guess was read on the last pass
    this.proposedAt = 0; // context length when this drafter last proposed
    this.freshAt = -1; // context length the guess is for
    this.attached = []; // tree rows carrying prompt rows in the pending pass
    this.m = 0; // prompt rows per attached row
    this.drafted = 0;
  }

  /** Chain length n (= prompt rows per row m): the best expected tokens per second from c(T). */
  depth(budget) {
    const limit = Math.min(this.maxDepth, budget);
    if (this.cost === null || limit <= 1) return Math.max(limit, 1);
    const expected = this.acceptance.expectedTokensUpto(limit);
    const rate = (n) => expected[n] / this.cost.passSeconds((1 + n) * (1 + n));
    let best = 1;
    for (let n = 2; n <= limit; n++) if (rate(n) > rate(best)) best = n;
    return best;
  }

  propose(context, budget) {
    const n = this.depth(budget);
    this.m = n;
    const tree = new DraftTree();
    this.drafted = 0;
    // a guess read before other passes ran (another drafter, a plain step) is for a root the context left
    const fresh = this.fresh && context.length === this.freshAt;
    this.fresh = false;
    this.proposedAt = context.length;
    if (!fresh) return tree; // this pass's prompt rows will predict
    let parent = -1;
    for (let d = 0; d < Math.min(n, this.guess.length); d++) parent = tree.add(this.guess[d][0], parent);
    for (const token of this.guess[0].slice(1, this.siblings)) if (tree.length < budget) tree.add(token, -1);
    this.drafted = tree.depth();
    return tree;
  }

  /** m prompt rows after every row of the flattened tree: {embeds Float32Array [E * d], parents [E]}. */
  verifyRows(tree) {
    const rows = tree.length + 1, m = Math.max(this.m, 1), d = this.hidden;
    this.attached = Array.from({ length: rows }, (_, r) => r);
    this.m = m;
    const parents = [];
    for (let r = 0; r < rows; r++) {
      const first = rows + parents.length;
      parents.push(r);
      for (let j = 0; j < m - 1; j++) parents.push(first + j);
    }
    const embeds = new Float32Array(rows * m * d);
    for (let r = 0; r < rows; r++) embeds.set(this.rows.subarray(0, m * d), r * m * d);
    return { embeds, parents };
  }

  /** logits: the extra rows' Logits; endRow: the tree row where acceptance stopped (0 = the root). */
  readRows(logits, endRow) {
    const i = this.attached.indexOf(endRow);
    const top = Math.max(this.siblings, 1);
    this.guess = [];
    for (let j = 0; j < this.m; j++) {
      const row = logits.row(i * this.m + j);
      this.guess.push(top > 1 ? topK(row, top) : [argmax(row)]);
    }
    this.fresh = true;
  }

  bucket() {
    return "ppd";
  }

  /** accepted: the drafts kept and the bonus token (what this pass added to the context). */
  observe(accepted) {
    this.freshAt = this.proposedAt + accepted.length;
    if (this.drafted) this.acceptance.observe(this.drafted, accepted.length - 1);
  }
}

/** 16 hex digits naming an export's graph and weights (export/trained.py's export_hash). */
export async function exportHash(manifest) {
  const files = manifest.files ?? {};
  const graph = manifest.graph?.file ?? "model.onnx";
  const parts = Object.keys(files).sort().filter((name) => name.startsWith(graph))
    .map((name) => `${name}:${files[name].sha256}`);
  if (!parts.length) throw new ModelFormatError("this export's manifest lists no graph files: it cannot carry a trained drafter");
  return (await sha256Hex(new TextEncoder().encode(parts.join("\n")))).slice(0, 16);
}

/**
 * The trained `kind` drafter's rows of an export, refused (as export/trained.py's load_drafter) when the
 * manifest lists none, the file does not match its sha256, or it was trained for another export.
 * readFile(name) -> Promise<Uint8Array> of a file of the export. Returns {rows Float32Array, record}.
 */
export async function loadDrafterRows(manifest, readFile, kind = "ppd") {
  const entry = (manifest.drafters ?? []).find((d) => d.kind === kind && d.file);
  if (!entry) throw new ModelFormatError(`this export has no trained ${kind} drafter; train one with \`edgespec train ${kind} EXPORT\``);
  const bytes = await readFile(entry.file);
  if (await sha256Hex(bytes) !== entry.sha256) throw new ModelFormatError(`the ${kind} drafter file ${entry.file} does not match the manifest's sha256 ${entry.sha256.slice(0, 16)}...; train it again`);
  const arrays = readNpz(bytes, entry.file);
  const record = JSON.parse(arrays.record?.data ?? "null");
  if (record?.kind !== kind) throw new ModelFormatError(`${entry.file} holds a ${record?.kind} drafter, not ${kind}`);
  const here = await exportHash(manifest);
  if (record.export_hash !== here) {
    throw new ModelFormatError(`the ${kind} drafter ${entry.file} was trained for export ${record.export_hash}, but this export is ${here}; train it for this export`);
  }
  const { shape, data } = arrays.rows;
  if (shape.length !== 2 || shape[1] !== manifest.config.hidden_size) {
    throw new ModelFormatError(`${entry.file} has rows of shape [${shape}]; this model needs [k, ${manifest.config.hidden_size}]`);
  }
  return { rows: data, record };
}
