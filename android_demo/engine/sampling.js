// Turning logits into the next token: greedy or sampled (port of edgespec/sampling.py).
// Sampled streams differ from Python's (numpy's PCG64 is not reproduced); tests compare distributions.
import { EdgespecError } from "./errors.js";
import { draw } from "./verify.js";

export class SamplingParams {
  constructor({ temperature = 0, topK = 0, topP = 1, minP = 0, repetitionPenalty = 1, seed = null } = {}) {
    if (!(temperature >= 0)) throw new EdgespecError(`temperature must be >= 0, got ${temperature}`);
    if (!(topP > 0 && topP <= 1)) throw new EdgespecError(`top_p must be in (0, 1], got ${topP}`);
    if (!(topK >= 0)) throw new EdgespecError(`top_k must be >= 0, got ${topK}`);
    if (!(minP >= 0 && minP < 1)) throw new EdgespecError(`min_p must be in [0, 1), got ${minP}`);
    if (!(repetitionPenalty > 0)) throw new EdgespecError(`repetition_penalty must be > 0, got ${repetitionPenalty}`);
    Object.assign(this, { temperature, topK, topP, minP, repetitionPenalty, seed });
    Object.freeze(this);
  }

  get greedy() {
    return this.temperature === 0;
  }
}

/**
 * A seeded generator of doubles in [0, 1): xoshiro128** (Blackman & Vigna), 53 bits per double.
 * Written here (a dozen lines) because Math.random cannot be seeded and tests need reproducibility.
 */
export class Rng {
  constructor(seed = null) {
    let x = seed === null ? Math.floor(Math.random() * 2 ** 32) : seed >>> 0;
    this.s = new Uint32Array(4).map(() => (x = splitmix32(x)));
  }

  nextUint32() {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t; s[3] = rotl(s[3], 11);
    return result;
  }

  random() {
    return ((this.nextUint32() >>> 5) * 67108864 + (this.nextUint32() >>> 6)) / 9007199254740992;
  }
}

const rotl = (x, k) => (x << k) | (x >>> (32 - k));

function splitmix32(x) {
  x = (x + 0x9e3779b9) >>> 0;
  let z = x;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/** CTRL-style repetition penalty: logits of seen tokens move toward 0. */
export function penalize(logits, history, penalty) {
  if (penalty === 1 || !history.length) return logits;
  const out = Float32Array.from(logits);
  for (const t of new Set(history)) out[t] = out[t] > 0 ? out[t] / penalty : out[t] * penalty;
  return out;
}

/** The distribution the sampler draws from: softmax(logits / T), then top-k, top-p, min-p. */
export function probabilities(logits, params) {
  const n = logits.length;
  const z = new Float64Array(n);
  for (let i = 0; i < n; i++) z[i] = logits[i] / params.temperature;
  if (params.topK && params.topK < n) {
    const kth = Float64Array.from(z).sort()[n - params.topK];
    for (let i = 0; i < n; i++) if (z[i] < kth) z[i] = -Infinity;
  }
  let max = -Infinity;
  for (let i = 0; i < n; i++) max = Math.max(max, z[i]);
  const p = z.map((v) => Math.exp(v - max));
  normalize(p);
  if (params.topP < 1) {
    const order = Array.from(p.keys()).sort((a, b) => p[b] - p[a] || a - b); // stable, like argsort
    const keep = new Uint8Array(n);
    let cumulative = 0;
    for (const i of order) { // smallest prefix with mass >= top_p
      keep[i] = 1;
      cumulative += p[i];
      if (cumulative >= params.topP) break;
    }
    for (let i = 0; i < n; i++) if (!keep[i]) p[i] = 0;
    normalize(p);
  }
  if (params.minP > 0) {
    let top = 0;
    for (let i = 0; i < n; i++) top = Math.max(top, p[i]);
    for (let i = 0; i < n; i++) if (p[i] < params.minP * top) p[i] = 0;
    normalize(p);
  }
  return p;
}

function normalize(p) {
  let total = 0;
  for (let i = 0; i < p.length; i++) total += p[i];
  for (let i = 0; i < p.length; i++) p[i] /= total;
}

export function argmax(values) {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

export class Sampler {
  constructor(params = new SamplingParams()) {
    this.params = params;
    this.rng = new Rng(params.seed);
  }

  /** history: the token ids so far (prompt + generated), for the repetition penalty. */
  sample(logits, history = []) {
    const penalized = penalize(logits, history, this.params.repetitionPenalty);
    if (this.params.greedy) return argmax(penalized);
    return draw(probabilities(penalized, this.params), this.rng);
  }
}
