// `auto` (port of drafters/combined.py): the controller chooses, step by step, between free n-gram
// drafts, the export's trained PPD drafter (when it has one; priced by its pass of (1 + k)^2 rows), its
// trained S3D drafter (priced by the draft seconds it measures) and plain decoding, from this device's
// measured cost curve and the acceptance it observes. Untrained layer-skip is not a candidate here: Python
// adds it only where `edgespec tune` measured that it pays on that machine, and the page has no tuning.
import { CALIBRATION_SIZES, CALIBRATION_TEXT, ControlledDrafter, Controller, CostModel } from "../controller.js";
import { NgramDrafter, PRIORS } from "./ngram.js";
import { PPDDrafter } from "./ppd.js";
import { S3DDrafter } from "./skip.js";

/**
 * ppd: {rows Float32Array [k * d], hidden} of the trained prompt tokens, or a PPDDrafter, or null.
 * s3d: {rows Float32Array [(gamma - 1) * d], skip, hidden} of the trained mask tokens, or an S3DDrafter, or null.
 * cost: a CostModel to plan with instead of measuring this device's (tests, or one measured before).
 */
export async function autoDrafter(backend, encode, { maxBudget = 16, sizes = CALIBRATION_SIZES, reps = 3, ppd = null,
  s3d = null, cost = null } = {}) {
  cost ??= await CostModel.measure(backend, encode(CALIBRATION_TEXT), sizes, reps);
  // matches of every length are candidates: acceptance is kept per match length
  const drafters = new Map([["ngram", NgramDrafter.forAuto()]]);
  const passRows = {};
  if (ppd !== null) {
    const drafter = ppd instanceof PPDDrafter ? ppd : new PPDDrafter(ppd.rows, ppd.hidden);
    drafter.cost = cost;
    drafters.set("ppd", drafter);
    passRows.ppd = (k) => (1 + k) * (1 + k);
  }
  if (s3d !== null && backend.supportsPlan() && backend.hasExtraEmbeds) {
    drafters.set("s3d", s3d instanceof S3DDrafter ? s3d
      : new S3DDrafter(backend, backend.config.num_layers, s3d.skip, s3d.rows, s3d.hidden));
  }
  return new ControlledDrafter(drafters, new Controller(cost, { maxBudget, free: ["ngram", "ppd"], passRows,
    priors: PRIORS }));
}
