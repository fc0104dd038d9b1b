// The onnxruntime backend of the JS engine, for onnxruntime-node and onnxruntime-web alike (the `ort`
// module is passed in). It feeds the graph exactly as edgespec/runtimes/ort.py does (the graph contract
// in the manifest names every input) and keeps the KV cache with the runtime's scheme (kv.js).
import { hasNewRows } from "../contract.js";
import { ContextOverflowError, EdgespecError } from "../errors.js";
import { AliasedKv, AppendedKv, GpuKv, HybridKv, ReturnedKv } from "./kv.js";

/** Logits of the requested rows: row(i) is a Float32Array view of the vocabulary. */
export class Logits {
  constructor(data, rows, vocab) {
    Object.assign(this, { data, rows, vocab });
  }

  row(i) {
    if (i < 0 || i >= this.rows) throw new RangeError(`logits row ${i} of ${this.rows}`);
    return this.data.subarray(i * this.vocab, (i + 1) * this.vocab);
  }

  /** Rows first.. as Logits of their own (a view). */
  from(first) {
    return new Logits(this.data.subarray(first * this.vocab), this.rows - first, this.vocab);
  }
}

const KV_SCHEMES = {
  appended: (ort, names, c, maxLen) => new AppendedKv(ort, names, c.num_kv_heads, c.head_dim, maxLen),
  aliased: (ort, names, c, maxLen) => new AliasedKv(ort, names, c.num_kv_heads, c.head_dim, maxLen),
  returned: (ort, names, c) => new ReturnedKv(ort, names, c.num_kv_heads, c.head_dim),
  hybrid: (ort, names, c, maxLen) => new HybridKv(ort, names, c.num_kv_heads, c.head_dim, maxLen),
  gpu: (ort, names, c, maxLen, device) => new GpuKv(ort, names, c.num_kv_heads, c.head_dim, maxLen, device),
};

export class OrtBackend {
  /**
   * session: an InferenceSession of the export's model.onnx; config: the manifest's config;
   * kvScheme: "appended" (node: own buffers, only the new rows fetched), "hybrid" (returned while short, then
   * aliased), "aliased", "returned" (web WASM) or "gpu" (web WebGPU, needs `device`).
   */
  constructor(ort, session, config, maxLen, { kvScheme = "aliased", device = null, name = "ort-node" } = {}) {
    if (!KV_SCHEMES[kvScheme]) throw new EdgespecError(`unknown KV scheme '${kvScheme}'; expected ${Object.keys(KV_SCHEMES).join(", ")}`);
    if (kvScheme === "appended" && !hasNewRows(session)) {
      throw new EdgespecError("KV scheme 'appended' fetches new_key.i / new_value.i, which this export does not " +
        "return (made without --new-rows): export it with --new-rows, or use 'hybrid'");
    }
    Object.assign(this, { ort, session, config, maxLen, name, kvScheme });
    const names = [];
    for (let i = 0; i < config.num_layers; i++) {
      for (const kind of ["key", "value"]) names.push([`past_${kind}.${i}`, `present_${kind}.${i}`]);
    }
    this.kv = KV_SCHEMES[kvScheme](ort, names, config, maxLen, device);
    this.hasLayerMask = session.inputNames.includes("layer_mask");
    // rows a drafter appends after the tokens (PPD prompt tokens); zero rows on other passes
    this.hasExtraEmbeds = session.inputNames.includes("extra_embeds");
    this.lastStart = 0;
  }

  get cacheLen() {
    return this.kv.length;
  }

  supportsPlan() {
    return this.hasLayerMask;
  }

  /**
   * Logits for rows `logitsFor` (default all T) of T new tokens appended to the cache.
   * treeMask: [T][T] booleans over the new tokens (true = may attend; the past is always visible).
   * positions: [T] (default cacheLen + 0..T-1). plan: a layer mask [L] (default all layers).
   * extraEmbeds: Float32Array [E * hidden] of input rows after the tokens (T = tokens + E rows; positions,
   * treeMask and logitsFor then cover them too).
   */
  async forward(tokens, { positions = null, treeMask = null, logitsFor = null, plan = null, extraEmbeds = null } = {}) {
    const d = this.config.hidden_size;
    const E = extraEmbeds === null ? 0 : extraEmbeds.length / d;
    if (E && !this.hasExtraEmbeds) throw new EdgespecError("this export has no extra_embeds input: trained drafter rows need a graph version 3 export");
    const T = tokens.length + E, P = this.cacheLen, S = P + T;
    if (S > this.maxLen) throw new ContextOverflowError(`${P} cached + ${T} new tokens exceed the context of ${this.maxLen} tokens`);
    const { Tensor } = this.ort;
    const bias = new Float32Array(T * S);
    for (let i = 0; i < T; i++) {
      for (let j = 0; j < T; j++) {
        const visible = treeMask === null ? j <= i : treeMask[i][j];
        if (!visible) bias[i * S + P + j] = -Infinity;
      }
    }
    const rows = logitsFor ?? Array.from({ length: T }, (_, i) => i);
    const int64 = (values) => BigInt64Array.from(values, (v) => BigInt(v));
    const feeds = {
      input_ids: new Tensor("int64", int64(tokens), [1, tokens.length]),
      position_ids: new Tensor("int64", int64(positions ?? Array.from({ length: T }, (_, i) => P + i)), [1, T]),
      attention_bias: new Tensor("float32", bias, [1, 1, T, S]),
      seqlens_k: new Tensor("int32", Int32Array.of(S - 1), [1]),
      total_sequence_length: new Tensor("int32", Int32Array.of(S), []),
      logits_index: new Tensor("int64", int64(rows), [rows.length]),
    };
    if (this.hasExtraEmbeds) {
      feeds.extra_embeds = new Tensor("float32", extraEmbeds ?? new Float32Array(0), [1, E, d]);
    }
    if (this.hasLayerMask) {
      const mask = plan ?? new Array(this.config.num_layers).fill(true);
      feeds.layer_mask = new Tensor("bool", Uint8Array.from(mask, (b) => (b ? 1 : 0)), [mask.length]);
    } else if (plan !== null && !plan.every(Boolean)) {
      throw new EdgespecError("this export has no layer plans (made without --layer-plans): layer-skip drafting needs an export with them");
    }
    const kv = this.kv.bind(T);
    // fetches: output names (only those are returned), pre-allocated outputs by name, or none (every output)
    const fetches = Array.isArray(kv.fetches) ? ["logits", ...kv.fetches]
      : Object.keys(kv.fetches).length ? { logits: null, ...kv.fetches } : undefined;
    const outputs = await this.session.run({ ...feeds, ...kv.feeds }, fetches);
    this.kv.accept(outputs, T);
    this.lastStart = P;
    const logits = outputs.logits;
    const data = logits.location === "gpu-buffer" ? await logits.getData(true) : logits.data;
    return new Logits(data, rows.length, this.config.vocab_size);
  }

  /** Forget the last n cached tokens (a length change). */
  rollback(n) {
    if (!(n >= 0 && n <= this.cacheLen)) throw new RangeError(`cannot roll back ${n} of ${this.cacheLen} cached tokens`);
    this.kv.length -= n;
  }

  /** After a (tree) forward keep only its tokens `indices` (increasing), e.g. the accepted path. */
  keep(indices) {
    const count = this.cacheLen - this.lastStart;
    if (indices.some((i) => i < 0 || i >= count)) throw new RangeError(`keep(${indices}) outside the last forward's ${count} tokens`);
    this.kv.keep(this.lastStart, indices);
  }

  reset() {
    this.kv.length = 0;
  }
}
