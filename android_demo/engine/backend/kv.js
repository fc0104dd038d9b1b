// KV cache schemes, one per runtime (the JS runtimes have no IOBinding). Layout of every layer's K and V:
// [1, n_kv, rows, head_dim], so a cache row is n_kv separate runs of head_dim floats.
//
//   AliasedKv   onnxruntime-node: one Float32Array per tensor fed as past_* AND passed as the pre-allocated
//               present_* output, so GroupQueryAttention writes the new rows in place. Capacity grows in
//               small chunks: onnxruntime-node 1.30 still copies every output, pre-allocated ones included,
//               into a new ArrayBuffer after each pass, so each pass pays for the whole capacity.
//   ReturnedKv  onnxruntime-web WASM: it never writes pre-allocated outputs back, so past_* holds exactly
//               the P cached rows and the returned present_* (P + T rows) becomes the next past.
//   GpuKv       onnxruntime-web WebGPU: GPU buffers bound as both past_* and present_* (in place on the GPU).
//   AppendedKv  onnxruntime-node's default: one Float32Array per tensor at a capacity, fed as the past (longer
//               than the valid rows: GroupQueryAttention reads only seqlens_k + 1 - T of them) and never as an
//               output; the pass returns only its T new rows (new_key.i / new_value.i, graph contract 4),
//               written into the arrays here. onnxruntime-node copies every output it returns into a new
//               ArrayBuffer, so the other node schemes pay for the whole cache on every pass.
//   HybridKv    ReturnedKv while the cache is short, AliasedKv beyond SWITCH rows (node's default before).
// All: rollback(n) is a length change; keep(start, indices) moves rows start+indices[j] to start+j.

// 64, not 256: at 600-800 cached rows one-row passes ran 2-3.5% faster (4 of 4 paired processes, qwen 0.5b;
// benchmarks/js-engine.md); regrowing copies the cache once per 64 tokens, far less than the copy-back it saves.
export const CHUNK = 64;
// Cached rows above which onnxruntime-node runs faster with aliased buffers than with returned presents.
// Measured one-token steps on smollm2 (2-core EPYC): ~80 rows returned 10-13 ms vs aliased 15-17 ms;
// 1500 rows returned 437-492 ms vs aliased 323-402 ms (under load). Between the two, not measured finely.
export const SWITCH = 512;

/** Copy rows src[j] -> dst[j] of one [n_kv, cap, hd] array (via a copy, so overlapping moves are safe). */
function moveRows(data, heads, cap, hd, src, dst) {
  for (let h = 0; h < heads; h++) {
    const base = h * cap * hd;
    const moved = src.map((s) => data.slice(base + s * hd, base + (s + 1) * hd));
    dst.forEach((d, j) => data.set(moved[j], base + d * hd));
  }
}

/** The first `rows` rows of one [n_kv, cap, hd] array in a new array of capacity newCap. */
function resized(data, heads, cap, hd, rows, newCap) {
  const out = new Float32Array(heads * newCap * hd);
  for (let h = 0; h < heads; h++) out.set(data.subarray(h * cap * hd, (h * cap + rows) * hd), h * newCap * hd);
  return out;
}

const keepMoves = (start, indices) => {
  const src = [], dst = [];
  indices.forEach((s, j) => { if (s !== j) { src.push(start + s); dst.push(start + j); } });
  return { src, dst };
};

/** The schemes that keep one buffer per tensor at a capacity grown in chunks. */
class InPlaceKv {
  /** Room for T more rows after the `length` valid ones. */
  reserve(T) {
    const need = this.length + T;
    if (need > this.cap) {
      const cap = Math.min(this.maxLen, Math.ceil(need / CHUNK) * CHUNK);
      this.grow(cap);
      this.cap = cap;
    }
  }

  /** {feeds, fetches} for a pass that appends T rows: each buffer bound as past and present (written in place). */
  bind(T) {
    this.reserve(T);
    const feeds = {}, fetches = {};
    this.names.forEach(([past, present], i) => {
      const t = this.bound(i);
      feeds[past] = t;
      fetches[present] = t;
    });
    return { feeds, fetches };
  }

  accept(_outputs, T) {
    this.length += T;
  }
}

export class AliasedKv extends InPlaceKv {
  constructor(ort, names, heads, hd, maxLen) {
    super();
    Object.assign(this, { ort, names, heads, hd, maxLen, length: 0, cap: 0 });
    this.data = names.map(() => new Float32Array(0));
  }

  grow(cap) {
    this.data = this.data.map((d) => resized(d, this.heads, this.cap, this.hd, this.length, cap));
  }

  bound(i) {
    return new this.ort.Tensor("float32", this.data[i], [1, this.heads, this.cap, this.hd]);
  }

  keep(start, indices) {
    const { src, dst } = keepMoves(start, indices);
    if (src.length) for (const d of this.data) moveRows(d, this.heads, this.cap, this.hd, src, dst);
    this.length = start + indices.length;
  }
}

export class AppendedKv extends AliasedKv {
  constructor(ort, names, heads, hd, maxLen) {
    super(ort, names, heads, hd, maxLen);
    this.newRows = names.map(([past]) => past.replace(/^past_/, "new_")); // the outputs fetched: T rows each
  }

  /** {feeds, fetches}: the buffers as the past; fetches is a list of output names (the T new rows of each). */
  bind(T) {
    this.reserve(T);
    const feeds = {};
    this.names.forEach(([past], i) => { feeds[past] = this.bound(i); });
    return { feeds, fetches: this.newRows };
  }

  accept(outputs, T) {
    const { heads, hd, cap, length } = this;
    this.newRows.forEach((name, i) => {
      const rows = outputs[name].data, data = this.data[i]; // rows: [1, heads, T, hd]
      for (let h = 0; h < heads; h++) data.set(rows.subarray(h * T * hd, (h + 1) * T * hd), (h * cap + length) * hd);
    });
    this.length += T;
  }
}

export class ReturnedKv {
  constructor(ort, names, heads, hd) {
    Object.assign(this, { ort, names, heads, hd, length: 0 });
    this.rows = 0; // rows the held arrays have (>= length; trimmed lazily before the next pass)
    this.data = names.map(() => new Float32Array(0));
  }

  bind() {
    if (this.rows !== this.length) {
      this.data = this.data.map((d) => resized(d, this.heads, this.rows, this.hd, this.length, this.length));
      this.rows = this.length;
    }
    const feeds = {};
    this.names.forEach(([past], i) => {
      feeds[past] = new this.ort.Tensor("float32", this.data[i], [1, this.heads, this.rows, this.hd]);
    });
    return { feeds, fetches: {} };
  }

  accept(outputs, T) {
    const rows = this.length + T;
    // a layer a plan skipped returns its past unchanged (the If's Identity): P rows, not P + T. Its new rows
    // are never read (a partial-plan pass is rolled back at once), so they are left zero.
    this.data = this.names.map(([, present]) => {
      const { data, dims } = outputs[present];
      return dims[2] === rows ? data : resized(data, this.heads, dims[2], this.hd, dims[2], rows);
    });
    this.length = rows;
    this.rows = rows;
  }

  keep(start, indices) {
    const { src, dst } = keepMoves(start, indices);
    if (src.length) for (const d of this.data) moveRows(d, this.heads, this.rows, this.hd, src, dst);
    this.length = start + indices.length;
  }
}

export class GpuKv extends InPlaceKv {
  constructor(ort, names, heads, hd, maxLen, device) {
    super();
    Object.assign(this, { ort, names, heads, hd, maxLen, device, length: 0, cap: 0, buffers: [], scratch: null });
  }

  newBuffer(rows) {
    const GPU = globalThis.GPUBufferUsage;
    return this.device.createBuffer({ size: Math.max(4, this.heads * rows * this.hd * 4),
      usage: GPU.STORAGE | GPU.COPY_SRC | GPU.COPY_DST });
  }

  grow(cap) {
    const encoder = this.device.createCommandEncoder();
    const row = this.hd * 4;
    const fresh = this.names.map((_, i) => {
      const buffer = this.newBuffer(cap);
      for (let h = 0; this.length && h < this.heads; h++) {
        encoder.copyBufferToBuffer(this.buffers[i], h * this.cap * row, buffer, h * cap * row, this.length * row);
      }
      return buffer;
    });
    this.device.queue.submit([encoder.finish()]);
    this.buffers.forEach((b) => b.destroy());
    this.buffers = fresh;
  }

  bound(i) {
    return this.ort.Tensor.fromGpuBuffer(this.buffers[i], { dataType: "float32", dims: [1, this.heads, this.cap, this.hd] });
  }

  /** Row moves on the GPU: a buffer cannot be copied onto itself, so through a scratch buffer. */
  keep(start, indices) {
    const { src, dst } = keepMoves(start, indices);
    if (src.length) {
      const row = this.hd * 4;
      const n = src.length;
      if (!this.scratch || this.scratch.size < this.heads * n * row) {
        this.scratch?.destroy();
        this.scratch = this.newBuffer(Math.max(n, 16));
      }
      const encoder = this.device.createCommandEncoder();
      for (const buffer of this.buffers) {
        for (let h = 0; h < this.heads; h++) {
          src.forEach((s, j) => encoder.copyBufferToBuffer(buffer, (h * this.cap + s) * row, this.scratch,
            (h * n + j) * row, row));
          dst.forEach((d, j) => encoder.copyBufferToBuffer(this.scratch, (h * n + j) * row, buffer,
            (h * this.cap + d) * row, row));
        }
      }
      this.device.queue.submit([encoder.finish()]);
    }
    this.length = start + indices.length;
  }
}

/**
 * ReturnedKv up to `switchAt` cached rows, AliasedKv above: onnxruntime-node (no IOBinding) moves the
 * returned presents' P rows every pass, the aliased buffers' whole capacity; the first is cheaper while
 * the cache is short. The rows are copied once per switch (and back after a reset or a long rollback).
 */
export class HybridKv {
  constructor(ort, names, heads, hd, maxLen, switchAt = SWITCH) {
    Object.assign(this, { heads, hd, switchAt });
    this.returned = new ReturnedKv(ort, names, heads, hd);
    this.aliased = new AliasedKv(ort, names, heads, hd, maxLen);
    this.active = this.returned;
  }

  get length() {
    return this.active.length;
  }

  set length(n) {
    this.active.length = n;
  }

  bind(T) {
    const need = this.active.length + T;
    if (this.active === this.returned && need > this.switchAt) this.toAliased();
    else if (this.active === this.aliased && need <= this.switchAt / 2) this.toReturned();
    return this.active.bind(T);
  }

  toAliased() {
    const { returned: r, aliased: a } = this;
    // the returned arrays ([heads, rows, hd]) become the aliased ones at capacity `rows`; bind grows them
    Object.assign(a, { data: r.data, cap: r.rows, length: r.length });
    r.data = r.data.map(() => new Float32Array(0));
    Object.assign(r, { rows: 0, length: 0 });
    this.active = a;
  }

  toReturned() {
    const { returned: r, aliased: a } = this;
    r.data = a.data.map((d) => resized(d, this.heads, a.cap, this.hd, a.length, a.length));
    Object.assign(r, { rows: a.length, length: a.length });
    a.data = a.data.map(() => new Float32Array(0));
    Object.assign(a, { cap: 0, length: 0 });
    this.active = r;
  }

  accept(outputs, T) {
    this.active.accept(outputs, T);
  }

  keep(start, indices) {
    this.active.keep(start, indices);
  }
}
