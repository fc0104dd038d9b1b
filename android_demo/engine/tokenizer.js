// Tokenizer and chat template in JS: @huggingface/tokenizers (encodes as Python `tokenizers` does) and
// @huggingface/jinja (renders the chat templates byte for byte as jinja2), over the export's files.
import { Template } from "@huggingface/jinja";
import { Tokenizer } from "@huggingface/tokenizers";
import { EdgespecError } from "./errors.js";

/** GPT-2's byte <-> printable-unicode map of byte-level BPE vocabularies (as edgespec/tokenizer.py). */
function byteDecoder() {
  const printable = [];
  for (let b = 33; b <= 126; b++) printable.push(b);
  for (let b = 161; b <= 172; b++) printable.push(b);
  for (let b = 174; b <= 255; b++) printable.push(b);
  const decoder = new Map();
  let extra = 0;
  for (let b = 0; b < 256; b++) decoder.set(String.fromCodePoint(printable.includes(b) ? b : 256 + extra++), b);
  return decoder;
}

export class ChatTokenizer {
  /** manifestTokenizer: the manifest's `tokenizer` entry (bos/eos/stop ids); chatTemplate: its template. */
  constructor(tokenizerJson, tokenizerConfig, manifestTokenizer, chatTemplate) {
    this.hf = new Tokenizer(tokenizerJson, tokenizerConfig);
    this.config = tokenizerConfig;
    this.bosId = manifestTokenizer.bos_id ?? null;
    this.eosId = manifestTokenizer.eos_id ?? null;
    this.stopIds = new Set(manifestTokenizer.stop_ids ?? [this.eosId]);
    this.chatTemplate = chatTemplate ?? tokenizerConfig.chat_template ?? null;
    this.template = null;
    this.bytes = byteDecoder();
    this.special = new Set([...this.hf.get_added_tokens_decoder()].filter(([, t]) => t.special).map(([id]) => id));
  }

  encode(text, { addBos = this.config.add_bos_token ?? false } = {}) {
    const ids = this.hf.encode(text, { add_special_tokens: false }).ids;
    return addBos && this.bosId !== null ? [this.bosId, ...ids] : ids;
  }

  applyChatTemplate(messages, addGenerationPrompt = true) {
    if (!this.chatTemplate) throw new EdgespecError("this model has no chat template; feed raw text");
    this.template ??= new Template(this.chatTemplate);
    const content = (id) => (id === null ? "" : this.hf.id_to_token(id) ?? "");
    return this.template.render({ messages, add_generation_prompt: addGenerationPrompt,
      bos_token: content(this.bosId), eos_token: content(this.eosId) });
  }

  /** Token ids of a chat, rendered with the model's template and ready for the assistant's turn. */
  chatIds(messages) {
    return this.encode(this.applyChatTemplate(messages), { addBos: false });
  }

  tokenBytes(id) {
    const piece = this.hf.id_to_token(id);
    if (piece === undefined) throw new EdgespecError(`token id ${id} is outside the vocabulary`);
    const chars = [...piece];
    if (this.special.has(id) || chars.some((c) => !this.bytes.has(c))) return new TextEncoder().encode(piece);
    return Uint8Array.from(chars, (c) => this.bytes.get(c));
  }

  decode(ids) {
    const stream = this.streamDecoder();
    return ids.map((id) => stream.push(id)).join("") + stream.flush();
  }

  /** Token ids in, text out, never splitting a multi-byte UTF-8 character. */
  streamDecoder() {
    const utf8 = new TextDecoder("utf-8");
    return { push: (id) => utf8.decode(this.tokenBytes(id), { stream: true }), flush: () => utf8.decode() };
  }
}
