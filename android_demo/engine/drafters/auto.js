// `auto` (port of drafters/combined.py): the controller chooses, step by step, between free n-gram
// drafts and plain decoding from this device's measured cost curve and the acceptance it observes.
// The layer-skip drafter is not ported yet: in JS, auto = the controller over n-gram.
import { CALIBRATION_SIZES, CALIBRATION_TEXT, ControlledDrafter, Controller, CostModel } from "../controller.js";
import { NgramDrafter } from "./ngram.js";

export async function autoDrafter(backend, encode, { maxBudget = 16, sizes = CALIBRATION_SIZES, reps = 3 } = {}) {
  // matches of every length are candidates: acceptance is kept per match length
  const cost = await CostModel.measure(backend, encode(CALIBRATION_TEXT), sizes, reps);
  return new ControlledDrafter(new Map([["ngram", new NgramDrafter({ minNgram: 1 })]]),
    new Controller(cost, { maxBudget, free: ["ngram"] }));
}
