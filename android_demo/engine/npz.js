// Reading the arrays numpy's `np.savez` writes (an uncompressed ZIP of .npy files): the trained drafter
// files (`ppd.npz`: rows float32 [k, d] + record, a JSON string). Only what np.savez produces is read:
// stored (uncompressed) entries, little-endian float32 / int64 / unicode arrays, C order.
import { ModelFormatError } from "./errors.js";

const LOCAL_HEADER = 0x04034b50;

/** {name -> {dtype, shape, data}} of an .npz file's bytes (Uint8Array); `label` names it in errors. */
export function readNpz(bytes, label = "npz") {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const arrays = {};
  let at = 0;
  while (at + 30 <= bytes.length && view.getUint32(at, true) === LOCAL_HEADER) {
    const flags = view.getUint16(at + 6, true), method = view.getUint16(at + 8, true);
    if (flags & 8) throw new ModelFormatError(`${label}: a streamed ZIP entry (sizes after the data); expected np.savez's`);
    let size = view.getUint32(at + 18, true);
    const nameLength = view.getUint16(at + 26, true), extraLength = view.getUint16(at + 28, true);
    const name = new TextDecoder().decode(bytes.subarray(at + 30, at + 30 + nameLength));
    const extra = bytes.subarray(at + 30 + nameLength, at + 30 + nameLength + extraLength);
    if (size === 0xffffffff) size = zip64Size(extra, label); // numpy writes ZIP64 entries (force_zip64)
    if (method !== 0) throw new ModelFormatError(`${label}: entry ${name} is compressed (method ${method}); expected np.savez's stored entries`);
    const start = at + 30 + nameLength + extraLength;
    arrays[name.replace(/\.npy$/, "")] = readNpy(bytes.subarray(start, start + size), `${label}:${name}`);
    at = start + size;
  }
  if (!Object.keys(arrays).length) throw new ModelFormatError(`${label} is not an .npz file (no ZIP entries)`);
  return arrays;
}

function zip64Size(extra, label) {
  const view = new DataView(extra.buffer, extra.byteOffset, extra.byteLength);
  for (let i = 0; i + 4 <= extra.length; i += 4 + view.getUint16(i + 2, true)) {
    if (view.getUint16(i, true) === 1) return Number(view.getBigUint64(i + 4, true)); // uncompressed size first
  }
  throw new ModelFormatError(`${label}: a ZIP64 entry without its size`);
}

/** One .npy array: {dtype, shape, data (Float32Array | BigInt64Array | string)}. */
export function readNpy(bytes, label = "npy") {
  const magic = String.fromCharCode(...bytes.subarray(1, 6));
  if (bytes[0] !== 0x93 || magic !== "NUMPY") throw new ModelFormatError(`${label} is not a .npy array`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const major = bytes[6];
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const headerStart = major === 1 ? 10 : 12;
  const header = new TextDecoder().decode(bytes.subarray(headerStart, headerStart + headerLength));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || shapeText === undefined || /'fortran_order':\s*True/.test(header)) {
    throw new ModelFormatError(`${label}: unsupported .npy header ${header.trim()}`);
  }
  const shape = shapeText.split(",").map((s) => s.trim()).filter(Boolean).map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  const start = headerStart + headerLength;
  const body = bytes.slice(start); // a copy: typed arrays need aligned offsets
  if (descr === "<f4") return { dtype: "float32", shape, data: new Float32Array(body.buffer, 0, count) };
  if (descr === "<i8") return { dtype: "int64", shape, data: new BigInt64Array(body.buffer, 0, count) };
  const unicode = /^<U(\d+)$/.exec(descr);
  if (unicode && count === 1) { // a numpy str scalar: UTF-32LE code points, zero-padded
    const points = new Uint32Array(body.buffer, 0, Number(unicode[1]));
    const end = points.indexOf(0);
    return { dtype: "str", shape, data: String.fromCodePoint(...(end < 0 ? points : points.subarray(0, end))) };
  }
  throw new ModelFormatError(`${label}: dtype ${descr} is not read here (float32, int64, a unicode scalar)`);
}
