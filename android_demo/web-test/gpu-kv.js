// GpuKv's row moves (keep of a non-first tree branch) and growth past a chunk (kv.js CHUNK rows), checked on the
// browser's real WebGPU device against AliasedKv on the CPU: the same passes, the same valid rows.
// The model test on SwiftShader is too slow to reach either, so this runs the KV code alone (a fake
// `ort` that only wraps buffers; the engine's moves do not touch onnxruntime).
export async function checkGpuKv(page) {
  return page.evaluate(async () => {
    const { AliasedKv, GpuKv } = await import("/engine/backend/kv.js");
    const adapter = await navigator.gpu.requestAdapter();
    const device = await adapter.requestDevice();
    const ort = { Tensor: class { constructor(type, data, dims) { Object.assign(this, { type, data, dims }); }
      static fromGpuBuffer(buffer, options) { return { buffer, ...options }; } } };
    const heads = 3, hd = 4, names = [["past_key.0", "present_key.0"], ["past_value.0", "present_value.0"]];
    const cpu = new AliasedKv(ort, names, heads, hd, 1024), gpu = new GpuKv(ort, names, heads, hd, 1024, device);
    let stamp = 1;
    const pass = (T) => { // what attention would write: rows [length, length + T) of every head
      for (const kv of [cpu, gpu]) kv.bind(T);
      names.forEach((_, i) => {
        for (let h = 0; h < heads; h++) {
          const rows = Float32Array.from({ length: T * hd }, (_, j) => stamp * 1000 + h * 100 + j);
          cpu.data[i].set(rows, (h * cpu.cap + cpu.length) * hd);
          device.queue.writeBuffer(gpu.buffers[i], (h * gpu.cap + gpu.length) * hd * 4, rows);
        }
        stamp += 1;
      });
      for (const kv of [cpu, gpu]) kv.accept(null, T);
    };
    pass(200); // capacity 200 rounded up to a chunk
    pass(100); // grows by at least one chunk, the first 200 rows copied
    const start = cpu.length;
    pass(9); // a tree pass; keep the root and a path that is not the first branch
    for (const kv of [cpu, gpu]) kv.keep(start, [0, 3, 4, 8]);
    for (const kv of [cpu, gpu]) kv.length -= 1; // rollback(1)
    pass(5);
    const problems = [];
    if (cpu.cap !== gpu.cap || cpu.length !== gpu.length) problems.push(`cap/length ${cpu.cap}/${cpu.length} vs ${gpu.cap}/${gpu.length}`);
    for (let i = 0; i < names.length; i++) {
      const read = device.createBuffer({ size: gpu.buffers[i].size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      const encoder = device.createCommandEncoder();
      encoder.copyBufferToBuffer(gpu.buffers[i], 0, read, 0, gpu.buffers[i].size);
      device.queue.submit([encoder.finish()]);
      await read.mapAsync(GPUMapMode.READ);
      const got = new Float32Array(read.getMappedRange().slice(0));
      for (let h = 0; h < heads; h++) {
        for (let v = 0; v < cpu.length * hd; v++) {
          const a = got[h * gpu.cap * hd + v], b = cpu.data[i][h * cpu.cap * hd + v];
          if (a !== b) { problems.push(`tensor ${i} head ${h} value ${v}: gpu ${a} cpu ${b}`); break; }
        }
      }
    }
    return { problems, rows: cpu.length, cap: cpu.cap };
  });
}
