// The JS engine's errors: one base class, so front ends print one clear line (edgespec/errors.py).
export class EdgespecError extends Error {
  constructor(message) {
    super(message);
    this.name = this.constructor.name;
  }
}
export class ContextOverflowError extends EdgespecError {}
export class ModelFormatError extends EdgespecError {}
