// Test fixtures: the smollm2-135m default export and its golden traces (tests/golden/, written by the
// Python side), both located, never generated here.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { loadNode } from "../engine/node.js";

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const GOLDEN = process.env.EDGESPEC_GOLDEN ?? join(REPO, "tests/golden/smollm2-135m.json");

/**
 * The default int4 export of smollm2-135m: $EDGESPEC_JS_EXPORT, else the one the Python tests use
 * (edgespec's export cache, made on first use: `python -m edgespec.cli export smollm2-135m` defaults).
 * layerPlans: its variant with an If per middle layer (`--layer-plans`), which layer-skip and S3D need:
 * $EDGESPEC_JS_PLANS_EXPORT, else the cached one. newRows: its variant with the new-row outputs (`--new-rows`),
 * which the "appended" KV scheme needs: $EDGESPEC_JS_ROWS_EXPORT, else the cached one.
 */
export function exportDir({ layerPlans = false, newRows = false } = {}) {
  const given = layerPlans ? process.env.EDGESPEC_JS_PLANS_EXPORT
    : newRows ? process.env.EDGESPEC_JS_ROWS_EXPORT : process.env.EDGESPEC_JS_EXPORT;
  if (given) return given;
  const flag = (on) => (on ? "True" : "False");
  const code = "from edgespec import hub; from edgespec.loader import cached_export; " +
    `print(cached_export(hub.resolve_model('smollm2-135m'), layer_plans=${flag(layerPlans)}, new_rows=${flag(newRows)}))`;
  return python(code).trim().split("\n").pop();
}

export function golden() {
  if (!existsSync(GOLDEN)) {
    throw new Error(`no golden traces at ${GOLDEN}: they are written by the Python side (tests/golden/make.py)`);
  }
  return JSON.parse(readFileSync(GOLDEN, "utf-8"));
}

/** Pearson chi-square p-value by the Wilson-Hilferty approximation (as tests/test_spec_sampling.py). */
export function chi2PValue(observed, expectedProbs) {
  const total = observed.reduce((a, b) => a + b, 0);
  let stat = 0, k = -1;
  expectedProbs.forEach((p, i) => {
    if (p > 0) {
      const e = p * total;
      stat += (observed[i] - e) ** 2 / e;
      k += 1;
    } else if (observed[i]) {
      throw new Error(`token ${i} has zero target probability but was emitted`);
    }
  });
  return wilsonHilferty(stat, k);
}

/** Two equal-size samples share one distribution; bins under minCount pooled (sparse bins blind the test). */
export function twoSamplePValue(a, b, minCount = 20) {
  const pa = [], pb = [];
  let ra = 0, rb = 0;
  a.forEach((x, i) => {
    if (x + b[i] >= minCount) { pa.push(x); pb.push(b[i]); } else { ra += x; rb += b[i]; }
  });
  pa.push(ra); pb.push(rb);
  let stat = 0, k = -1;
  pa.forEach((x, i) => {
    const both = x + pb[i];
    if (both > 0) {
      const e = both / 2;
      stat += ((x - e) ** 2 + (pb[i] - e) ** 2) / e;
      k += 1;
    }
  });
  return wilsonHilferty(stat, k);
}

function wilsonHilferty(stat, k) {
  const z = ((stat / k) ** (1 / 3) - (1 - 2 / (9 * k))) / Math.sqrt(2 / (9 * k));
  return 0.5 * erfc(z / Math.SQRT2);
}

/** erfc by Numerical Recipes' Chebyshev fit (|error| < 1.2e-7): plenty for p-value thresholds. */
function erfc(x) {
  const z = Math.abs(x), t = 1 / (1 + 0.5 * z);
  const r = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851526 + t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0 ? r : 2 - r;
}

/** A backend wrapper that records every logits row forward returned (to compare with golden digests). */
export function recording(backend) {
  const rows = [];
  const proxy = Object.create(backend);
  proxy.forward = async (...args) => {
    const logits = await backend.forward(...args);
    for (let i = 0; i < logits.rows; i++) rows.push(Float32Array.from(logits.row(i)));
    return logits;
  };
  Object.defineProperty(proxy, "cacheLen", { get: () => backend.cacheLen });
  return { backend: proxy, rows };
}

/** `python -c code args...` from the repo root with edgespec importable: its stdout. */
export function python(code, args = []) {
  return execFileSync(process.env.PYTHON ?? "python", ["-c", code, ...args], { cwd: REPO,
    env: { ...process.env, PYTHONPATH: REPO }, encoding: "utf-8", stdio: ["ignore", "pipe", "inherit"] });
}

/**
 * What the drafter tests share: smollm2's default export (or its variant with layer plans) loaded, the
 * default export's golden traces (their prompts), a scratch directory.
 */
export async function openFixture(prefix, { layerPlans = false } = {}) {
  return { trace: golden(), model: await loadNode(exportDir({ layerPlans })),
    scratch: mkdtempSync(join(tmpdir(), prefix)) };
}
