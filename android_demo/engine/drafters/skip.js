// The two drafters that run the target itself with a block of layers skipped (the export's layer plans: an
// `If` per skippable middle layer), on the same backend and weights. Ports of edgespec/speculative/drafters/layerskip.py
// and s3d.py. Their draft passes write K/V rows valid for the partial plan only: they are rolled back at
// once, and the verify pass writes the full model's rows in their place.
import { skippableLayers } from "../contract.js";
import { EdgespecError } from "../errors.js";
import { argmax } from "../sampling.js";
import { DraftTree } from "../tree.js";

/** [L] booleans with the layers `skip` off, after checking the backend can run plans and the layers exist. */
function skipPlan(backend, numLayers, skip, what) {
  if (!backend.supportsPlan()) {
    throw new EdgespecError(`${what} needs layer plans, which this export does not have (made without --layer-plans)`);
  }
  const allowed = skippableLayers(numLayers);
  const bad = skip.filter((i) => !allowed.includes(i));
  if (bad.length) {
    throw new EdgespecError(`${what}: skip set names layers ${bad}; a layer plan of this ${numLayers}-layer model ` +
      `may skip layers ${allowed[0]}..${allowed[allowed.length - 1]} only (the others always run)`);
  }
  const plan = new Array(numLayers).fill(true);
  for (const i of skip) plan[i] = false;
  return plan;
}

/** S3D's skipped block: the middle ~40% of the layers; the first and last always run (s3d.py's middle_skip). */
export function middleSkip(numLayers) {
  const lo = Math.round(numLayers * 0.3), hi = Math.round(numLayers * 0.7);
  const out = [];
  for (let i = Math.max(lo, 1); i < Math.min(hi, numLayers - 1); i++) out.push(i);
  return out;
}

/** Layer-skip self-drafting (Draft & Verify, SWIFT): draftLen one-token passes through the skip plan. */
export class LayerSkipDrafter {
  constructor(backend, numLayers, skip, draftLen = 4) {
    this.name = "layerskip";
    this.plan = skipPlan(backend, numLayers, skip, "layer-skip drafting");
    Object.assign(this, { backend, skip: [...skip].sort((a, b) => a - b), draftLen });
  }

  /** The drafter an `edgespec tune` record describes (the manifest's `layerskip` entry). */
  static fromRecord(backend, numLayers, record) {
    return new LayerSkipDrafter(backend, numLayers, record.skip, record.draft_len);
  }

  async propose(context, budget) {
    const drafts = [];
    let token = context[context.length - 1];
    try {
      for (let i = 0; i < Math.min(this.draftLen, budget); i++) {
        const logits = await this.backend.forward([token], { plan: this.plan });
        token = argmax(logits.row(logits.rows - 1));
        drafts.push(token);
      }
    } finally { // the target's cache must hold exactly the accepted tokens again
      this.backend.rollback(drafts.length);
    }
    return DraftTree.chain(drafts);
  }

  observe() {}

  reset() {}
}

/**
 * S3D (Skippy Simultaneous Speculative Decoding): ONE draft pass feeds the root and gamma - 1 trained mask
 * rows (positions cacheLen.., causal) through the skip plan; row i's argmax drafts the token i + 1 after
 * the root, a chain of gamma. maskRows: Float32Array [(gamma - 1) * hidden].
 */
export class S3DDrafter {
  constructor(backend, numLayers, skip, maskRows, hidden) {
    this.name = "s3d";
    this.plan = skipPlan(backend, numLayers, skip, "S3D drafting");
    if (!backend.hasExtraEmbeds) throw new EdgespecError("S3D drafting appends mask rows: it needs an export with the extra_embeds input (graph version 3)");
    Object.assign(this, { backend, maskRows, hidden });
    this.gamma = maskRows.length / hidden + 1;
  }

  async propose(context, budget) {
    const gamma = Math.min(this.gamma, budget, this.backend.maxLen - this.backend.cacheLen - 1);
    if (gamma <= 0) return new DraftTree();
    const logits = await this.backend.forward([context[context.length - 1]],
      { extraEmbeds: this.maskRows.subarray(0, (gamma - 1) * this.hidden), plan: this.plan });
    this.backend.rollback(gamma); // the partial plan's K/V rows: the verify pass writes the real ones
    return DraftTree.chain(Array.from({ length: gamma }, (_, i) => argmax(logits.row(i))));
  }

  observe() {}

  reset() {}
}
