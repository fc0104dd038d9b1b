// A loaded export: backend + tokenizer + the decode loop, platform-neutral (node.js and the web page
// only differ in how they read files and which onnxruntime they pass in).
import { autoDrafter } from "./drafters/auto.js";
import { NgramDrafter } from "./drafters/ngram.js";
import { loadDrafterRows, PPDDrafter } from "./drafters/ppd.js";
import { LayerSkipDrafter, middleSkip, S3DDrafter } from "./drafters/skip.js";
import { CALIBRATION_TEXT, CostModel } from "./controller.js";
import { commonPrefix, decode, SpecStats } from "./engine.js";
import { EdgespecError } from "./errors.js";
import { Sampler, SamplingParams } from "./sampling.js";

export const SPEC_CHOICES = "off | ngram | ppd | s3d | layerskip | auto";

/** --spec names -> drafter factories (one registry, as speculative/drafters/select.py). */
const DRAFTERS = {
  off: async () => null,
  ngram: async () => new NgramDrafter(),
  // with the export's trained PPD drafter among the candidates when it has one
  auto: async (model, budget, calibration) => autoDrafter(model.backend, (t) => model.tokenizer.encode(t),
    { maxBudget: budget, ...calibration, ppd: await trainedRows(model, "ppd"), s3d: await trainedRows(model, "s3d") }),
  // the export's trained prompt tokens, the chain sized from this device's measured cost curve
  ppd: async (model, budget, { sizes, reps = 3 } = {}) => {
    const { rows, hidden } = await trainedRows(model, "ppd", true);
    const cost = await CostModel.measure(model.backend, model.tokenizer.encode(CALIBRATION_TEXT), sizes, reps);
    return new PPDDrafter(rows, hidden, { cost });
  },
  // the export's trained mask tokens: gamma tokens from one pass with its middle layers skipped
  s3d: async (model) => {
    const { rows, skip, hidden } = await trainedRows(model, "s3d", true);
    return new S3DDrafter(model.backend, model.manifest.config.num_layers, skip, rows, hidden);
  },
  // the skip set `edgespec tune` stored in the manifest (measured on some machine: the page cannot tune),
  // else S3D's middle ~40% of the layers drafting 3 tokens
  layerskip: async (model) => {
    const { num_layers: layers } = model.manifest.config;
    const record = (model.manifest.drafters ?? []).find((d) => d.kind === "layerskip") ??
      { skip: middleSkip(layers), draft_len: 3 };
    return LayerSkipDrafter.fromRecord(model.backend, layers, record);
  },
};

/**
 * {rows, skip, hidden} of the export's trained `kind` drafter (skip: S3D's skipped layers), or null when its
 * manifest lists none; required: refuse instead, with the reason.
 */
async function trainedRows(model, kind, required = false) {
  if (!model.readFile) {
    if (required) throw new EdgespecError("this loader cannot read the export's drafter files");
    return null;
  }
  if (!required && !(model.manifest.drafters ?? []).some((d) => d.kind === kind && d.file)) return null;
  const { rows, record } = await loadDrafterRows(model.manifest, model.readFile, kind);
  return { rows, skip: record.skip ?? null, hidden: model.manifest.config.hidden_size };
}

export class Model {
  /** readFile(name) -> Promise<Uint8Array>: a file of the export (trained drafters), where the loader can. */
  constructor(backend, tokenizer, manifest, { readFile = null } = {}) {
    Object.assign(this, { backend, tokenizer, manifest, readFile, drafter: null, spec: "off", cached: [], busy: false });
  }

  /** Choose the drafter (SPEC_CHOICES; ppd and auto measure this device's cost curve first). */
  async setSpec(spec, { budget = 8, calibration = {} } = {}) {
    const factory = DRAFTERS[spec];
    if (!factory) throw new EdgespecError(`unknown spec '${spec}'; expected ${SPEC_CHOICES}`);
    this.drafter = await factory(this, budget, calibration);
    this.spec = spec;
    this.budget = budget;
    this.cached = [];
  }

  /**
   * Stream {token, text, fromDraft} continuing `promptIds`; the last event carries {done, stats, tokens}.
   * Stops at a stop token (not emitted) or after maxTokens. The cache is reused across chat turns.
   */
  async* generate(promptIds, { maxTokens = 256, sampling = {}, exact = false } = {}) {
    if (this.busy) throw new EdgespecError("this model is already generating; one generation at a time");
    this.busy = true;
    const sampler = new Sampler(new SamplingParams(sampling));
    const stats = new SpecStats();
    const stream = this.tokenizer.streamDecoder();
    const reuse = Math.min(commonPrefix(this.cached, promptIds), Math.max(promptIds.length - 1, 0));
    const tokens = [];
    const started = performance.now();
    let firstTokenAt = null;
    try {
      for await (const { token, fromDraft } of decode(this.backend, promptIds, sampler, maxTokens,
        { drafter: this.drafter, budget: this.budget ?? 8, stats, reusePrefix: reuse, exact })) {
        firstTokenAt ??= performance.now();
        if (this.tokenizer.stopIds.has(token)) break;
        tokens.push(token);
        yield { token, text: stream.push(token), fromDraft };
      }
    } finally {
      this.cached = [...promptIds, ...tokens].slice(0, this.backend.cacheLen);
      this.busy = false;
    }
    const decodeS = (performance.now() - (firstTokenAt ?? started)) / 1000;
    yield { done: true, text: stream.flush(), tokens, stats, prefillS: ((firstTokenAt ?? started) - started) / 1000,
      decodeTokPerS: tokens.length > 1 ? (tokens.length - 1) / decodeS : 0 };
  }
}
