// Receipt bundle (version 1) verification in the browser and in Node, written from
// docs/bundle-v1.md alone: it shares no code with the exchange or its Python verifier.
//
//   import { verifyBundle } from "/…/verify.js";
//   const result = await verifyBundle(bundleTextOrObject,
//       { rpcUrl, registryAddress, minConfirmations: 1, trustedLogKey, fetch });
//   // result = { verdict: "verified" | "failed", failedStep: null | "<step>",
//   //            steps: [{ step, ok: true | false | null, compared: [{label, expected, actual}],
//   //                      message }], inconclusive: bool, subject: {...} | null }
//
// Steps, in order (the first failure stops the audit; later steps are `ok: null`, not run):
// actor_signature, leaf_hash, inclusion, checkpoint_signature, chain_anchor. A bundle
// that is not a well-formed v1 bundle fails before any step: failedStep "format" (every
// step `ok: null`), `message` naming the field's path. A chain that cannot be read
// fails chain_anchor with `inconclusive: true` (nothing was found wrong, nothing proven).
// Pass the bundle as the JSON text when there is one: it is parsed strictly (a float such
// as 19900.0, a duplicate name or a lone surrogate is refused), which an already parsed
// object can no longer show.
// In `compared`, `expected` is what the trusted side says (the value computed from the
// signed data, the chain, the pinned key), `actual` what the bundle claims.
//
// SM2/SM3 come from sm-crypto 0.5.8 (SubtleCrypto has neither). How this module gets it:
// * in a browser, the page loads sm-crypto's UMD bundles first, which define the globals
//   `sm2` and `sm3`:
//     <script src="…/sm-crypto/dist/sm2.js"></script>
//     <script src="…/sm-crypto/dist/sm3.js"></script>
//     <script type="module">import { verifyBundle } from "…/verify.js"; …</script>
// * in Node (>= 20) without those globals, it requires the same two UMD files from
//   web/node_modules (so Node's tests run exactly the code the browser runs).
// Only sm-crypto's SM3, its SM2 curve arithmetic and its strict DER decoding of signatures
// are used: Z, e = SM3(Z‖M), key ids, PEM parsing and the distinguishing ID are computed
// here from the spec, and bytes are always passed as arrays (sm-crypto's own UTF-8 encoder
// mis-encodes U+40000…U+FFFFF; the golden vectors hold U+F0000 in a signed record).

const lib = await loadSmCrypto();

async function loadSmCrypto() {
  const g = globalThis;
  if (g.sm2 && g.sm3) return { sm2: g.sm2, sm3: g.sm3 };
  if (typeof process !== "undefined" && process.versions && process.versions.node) {
    const { createRequire } = await import("node:module");
    const require = createRequire(import.meta.url);
    return {
      sm2: require("sm-crypto/dist/sm2.js"),
      sm3: require("sm-crypto/dist/sm3.js"),
    };
  }
  return null;
}

function smCrypto() {
  if (lib === null) {
    throw new Error(
      "verify.js needs sm-crypto: load sm-crypto/dist/sm2.js and sm3.js (globals sm2, sm3) first",
    );
  }
  return lib;
}

export const STEPS = Object.freeze([
  "actor_signature",
  "leaf_hash",
  "inclusion",
  "checkpoint_signature",
  "chain_anchor",
]);

/** The SM2 distinguishing ID of GM/T 0009, as 16 ASCII bytes (ENTL = 128 bits). */
export const DEFAULT_SM2_ID = "1234567812345678";

/** Keccak-256 derived values of AnchorRegistry, hard-coded (docs/bundle-v1.md says how). */
export const SELECTOR_ANCHOR_RECORD = "0x6822d1b2"; // anchorRecord(uint64)
export const TOPIC_ANCHORED =
  "0xcec994ba8f153d88e0f019e19b80695550c3427c7ff2a824fb181fa74b14b7cb"; // Anchored(uint64,bytes32,address,uint64)

const MAX_SAFE = Number.MAX_SAFE_INTEGER; // 2^53 - 1
const MAX_PROOF_NODES = 64;
const MAX_PAYLOAD_DEPTH = 64;
const MAX_TEXT_DEPTH = 80;
const MAX_SIGNATURE_BYTES = 256;
const PROMISE_KIND = "shancheng.promise-batch.v1";
const CHECKPOINT_KIND = "shancheng.checkpoint.v1";

// SM2 recommended curve (GB/T 32918.5).
const CURVE_P = BigInt("0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF");
const CURVE_A_HEX = "fffffffeffffffffffffffffffffffffffffffff00000000fffffffffffffffc";
const CURVE_B_HEX = "28e9fa9e9d9f5e344d5a9e4bcf6509a7f39789f515ab8f92ddbcbd414d940e93";
const CURVE_GX_HEX = "32c4ae2c1f1981195f9904466a39c9948fe30bbff2660be1715a4589334c74c7";
const CURVE_GY_HEX = "bc3736a2f4f6779c59bdcee36b692153d0a9877cc62a474002df32e52139f0a0";
// SubjectPublicKeyInfo {id-ecPublicKey 1.2.840.10045.2.1, sm2p256v1 1.2.156.10197.1.301}
// up to the BIT STRING's point: uncompressed (65-byte point) and compressed (33-byte point).
const SPKI_PREFIX_HEX = "3059301306072a8648ce3d020106082a811ccf5501822d034200";
const SPKI_COMPRESSED_PREFIX_HEX = "3039301306072a8648ce3d020106082a811ccf5501822d032200";

// --------------------------------------------------------------------------- bytes

const encoder = new TextEncoder();

function utf8(text) {
  return encoder.encode(text);
}

export function bytesToHex(bytes) {
  let out = "";
  for (const b of bytes) out += b.toString(16).padStart(2, "0");
  return out;
}

export function hexToBytes(hex) {
  if (typeof hex !== "string" || !/^(?:[0-9a-fA-F]{2})*$/.test(hex)) {
    throw new Error("not an even-length hex string");
  }
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function equalBytes(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

function base64Encode(bytes) {
  let out = "";
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    out += B64[(n >> 18) & 63] + B64[(n >> 12) & 63];
    out += i + 1 < bytes.length ? B64[(n >> 6) & 63] : "=";
    out += i + 2 < bytes.length ? B64[n & 63] : "=";
  }
  return out;
}

/** Strict standard base64 (alphabet +/, padded, zero pad bits): one text per byte string. */
function base64Decode(text) {
  if (typeof text !== "string" || text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
    return null;
  }
  const pad = text.endsWith("==") ? 2 : text.endsWith("=") ? 1 : 0;
  const bytes = [];
  for (let i = 0; i < text.length; i += 4) {
    let n = 0;
    for (let k = 0; k < 4; k++) n = (n << 6) | (text[i + k] === "=" ? 0 : B64.indexOf(text[i + k]));
    bytes.push((n >> 16) & 255, (n >> 8) & 255, n & 255);
  }
  const out = Uint8Array.from(bytes.slice(0, bytes.length - pad));
  return base64Encode(out) === text ? out : null;
}

// --------------------------------------------------------------------------- SM3, RFC 8785

/** Lowercase hex SM3 digest of `bytes` (Uint8Array or array of byte values). */
export function sm3Hex(bytes) {
  if (typeof bytes === "string") throw new TypeError("sm3Hex takes bytes; encode text with TextEncoder");
  return smCrypto().sm3(Array.from(bytes));
}

function sm3(bytes) {
  return hexToBytes(sm3Hex(bytes));
}

function compareUtf16(a, b) {
  return a < b ? -1 : a > b ? 1 : 0; // JavaScript compares strings by UTF-16 code units
}

function hasLoneSurrogate(text) {
  return /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(text);
}

/**
 * RFC 8785 (JSON Canonicalization Scheme) text of a JSON value: object members sorted by
 * the UTF-16 code units of their names, no whitespace, strings and numbers as ECMAScript's
 * JSON.stringify writes them (non-ASCII characters as themselves, not \u escapes).
 * Encode the result as UTF-8 to get the canonical bytes. Refuses lone surrogates and
 * non-finite numbers.
 */
export function canonicalize(value) {
  if (value === null || typeof value === "boolean") return JSON.stringify(value);
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new Error("RFC 8785 has no encoding for NaN or Infinity");
    return JSON.stringify(value);
  }
  if (typeof value === "string") {
    if (hasLoneSurrogate(value)) throw new Error("a string with a lone surrogate");
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return "[" + value.map(canonicalize).join(",") + "]";
  if (typeof value === "object") {
    const keys = Object.keys(value).sort(compareUtf16);
    return "{" + keys.map((k) => canonicalize(k) + ":" + canonicalize(value[k])).join(",") + "}";
  }
  throw new Error(`${typeof value} is not a JSON value`);
}

function canonicalBytes(value) {
  return utf8(canonicalize(value));
}

// --------------------------------------------------------------------------- strict JSON text

class FormatError extends Error {
  constructor(path, message) {
    super(path ? `${path}: ${message}` : message);
    this.path = path;
  }
}

/**
 * Parse JSON text strictly: duplicate names, numbers with a fraction or exponent,
 * integers outside ±(2^53 - 1), lone surrogates and nesting deeper than 80 are refused
 * (JSON.parse would silently accept or round them).
 */
const STRING = /"(?:[^"\\\u0000-\u001f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"/y;
const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;

export function parseStrictJson(text) {
  let at = 0;
  const fail = (why) => {
    throw new FormatError("", `not valid JSON at character ${at}: ${why}`);
  };
  const ws = () => {
    while (at < text.length && " \t\n\r".includes(text[at])) at++;
  };
  const value = (depth) => {
    ws();
    const c = text[at];
    if (c === "{" || c === "[") {
      if (depth >= MAX_TEXT_DEPTH) fail(`nested deeper than ${MAX_TEXT_DEPTH} levels`);
      return c === "{" ? object(depth + 1) : array(depth + 1);
    }
    if (c === '"') return string();
    if (c === "-" || (c >= "0" && c <= "9")) return number();
    for (const [word, v] of [["true", true], ["false", false], ["null", null]]) {
      if (text.startsWith(word, at)) {
        at += word.length;
        return v;
      }
    }
    return fail("unexpected character");
  };
  const object = (depth) => {
    at++;
    const out = {};
    ws();
    if (text[at] === "}") {
      at++;
      return out;
    }
    for (;;) {
      ws();
      if (text[at] !== '"') fail("expected a member name");
      const key = string();
      if (Object.prototype.hasOwnProperty.call(out, key)) fail(`duplicate name ${JSON.stringify(key)}`);
      ws();
      if (text[at++] !== ":") fail("expected ':'");
      Object.defineProperty(out, key, { value: value(depth), enumerable: true, writable: true, configurable: true });
      ws();
      if (text[at] === ",") {
        at++;
        continue;
      }
      if (text[at++] !== "}") fail("expected ',' or '}'");
      return out;
    }
  };
  const array = (depth) => {
    at++;
    const out = [];
    ws();
    if (text[at] === "]") {
      at++;
      return out;
    }
    for (;;) {
      out.push(value(depth));
      ws();
      if (text[at] === ",") {
        at++;
        continue;
      }
      if (text[at++] !== "]") fail("expected ',' or ']'");
      return out;
    }
  };
  const string = () => {
    STRING.lastIndex = at;
    const m = STRING.exec(text);
    if (!m) fail("bad string");
    at += m[0].length;
    const s = JSON.parse(m[0]);
    if (hasLoneSurrogate(s)) fail("a string with a lone surrogate");
    return s;
  };
  const number = () => {
    NUMBER.lastIndex = at;
    const m = NUMBER.exec(text);
    if (!m) fail("bad number");
    if (m[1] !== undefined || m[2] !== undefined) fail(`${m[0]} is not an integer (floats are not allowed)`);
    at += m[0].length;
    const n = Number(m[0]);
    if (!Number.isSafeInteger(n)) fail(`integer ${m[0]} is outside ±(2^53 - 1)`);
    return n === 0 ? 0 : n; // -0 is 0
  };
  if (typeof text !== "string") throw new FormatError("", "JSON text must be a string");
  const result = value(0);
  ws();
  if (at !== text.length) fail("text after the JSON value");
  return result;
}

// --------------------------------------------------------------------------- keys and SM2

function modPow(base, exp, mod) {
  let result = 1n;
  base %= mod;
  while (exp > 0n) {
    if (exp & 1n) result = (result * base) % mod;
    base = (base * base) % mod;
    exp >>= 1n;
  }
  return result;
}

function decompress(point33) {
  const x = BigInt("0x" + bytesToHex(point33.subarray(1)));
  const a = BigInt("0x" + CURVE_A_HEX);
  const b = BigInt("0x" + CURVE_B_HEX);
  const rhs = (((x * x) % CURVE_P) * x + a * x + b) % CURVE_P;
  let y = modPow(rhs, (CURVE_P + 1n) / 4n, CURVE_P); // p ≡ 3 (mod 4)
  if ((y * y) % CURVE_P !== rhs) return null;
  if (Number(y & 1n) !== (point33[0] & 1)) y = CURVE_P - y;
  return concat([4], hexToBytes(x.toString(16).padStart(64, "0")), hexToBytes(y.toString(16).padStart(64, "0")));
}

/** The 65-byte uncompressed point of an SM2 SubjectPublicKeyInfo DER (or null). */
function pointOfSpki(der) {
  const prefix = hexToBytes(SPKI_PREFIX_HEX);
  const cprefix = hexToBytes(SPKI_COMPRESSED_PREFIX_HEX);
  let point = null;
  if (der.length === 91 && equalBytes(der.subarray(0, 26), prefix) && der[26] === 4) {
    point = der.slice(26);
  } else if (der.length === 59 && equalBytes(der.subarray(0, 26), cprefix) && (der[26] === 2 || der[26] === 3)) {
    point = decompress(der.subarray(26));
  }
  if (point === null || !smCrypto().sm2.verifyPublicKey(bytesToHex(point))) return null;
  return point;
}

/**
 * Parse a public key PEM strictly: one `-----BEGIN PUBLIC KEY-----` block, nothing but
 * whitespace around it, no blank line, canonical base64 of an SM2 SubjectPublicKeyInfo
 * (named curve sm2p256v1; uncompressed or compressed point on the curve).
 * Returns {der, point} where der is the canonical (uncompressed) 91-byte DER; null if not.
 */
export function parsePublicKeyPem(pem) {
  if (typeof pem !== "string") return null;
  const lines = pem.replace(/^[ \t\r\n]+|[ \t\r\n]+$/g, "").split("\n").map((l) => l.replace(/[ \t\r]+$/, ""));
  if (lines.length < 3 || lines[0] !== "-----BEGIN PUBLIC KEY-----" || lines.at(-1) !== "-----END PUBLIC KEY-----") {
    return null;
  }
  const body = lines.slice(1, -1);
  if (body.includes("")) return null;
  const der = base64Decode(body.join(""));
  return der === null ? null : publicKeyFromDer(der);
}

function publicKeyFromDer(der) {
  const point = pointOfSpki(der);
  return point === null ? null : { der: concat(hexToBytes(SPKI_PREFIX_HEX), point), point };
}

/** A key id: lowercase hex SM3 of the canonical 91-byte DER SubjectPublicKeyInfo. */
export function keyId(publicKey) {
  const key = typeof publicKey === "string" ? parsePublicKeyPem(publicKey) : publicKeyFromDer(publicKey);
  if (key === null) throw new Error("not an SM2 public key");
  return sm3Hex(key.der);
}

function idBytes(id) {
  return typeof id === "string" ? utf8(id) : Uint8Array.from(id);
}

/** Z = SM3(ENTL ‖ ID ‖ a ‖ b ‖ xG ‖ yG ‖ xA ‖ yA) (GB/T 32918.2 §5.5), ENTL = bit length of ID. */
export function sm2Z(point, id = DEFAULT_SM2_ID) {
  const ident = idBytes(id);
  if (ident.length > 8191) throw new Error("distinguishing ID longer than 8191 bytes");
  const entl = ident.length * 8;
  return sm3(
    concat(
      [entl >> 8, entl & 255],
      ident,
      hexToBytes(CURVE_A_HEX),
      hexToBytes(CURVE_B_HEX),
      hexToBytes(CURVE_GX_HEX),
      hexToBytes(CURVE_GY_HEX),
      point.subarray(1),
    ),
  );
}

/**
 * Verify an SM2 signature over SM3(Z ‖ message). `publicKey`: PEM text or DER bytes;
 * `signature`: DER `SEQUENCE {r, s}` bytes (format "der", strict DER) or the 64 bytes
 * r ‖ s (format "raw"); `id`: the distinguishing ID (string → UTF-8 bytes, or bytes).
 * Returns true or false.
 */
export function verifySm2(publicKey, message, signature, id = DEFAULT_SM2_ID, format = "der") {
  const key = typeof publicKey === "string" ? parsePublicKeyPem(publicKey) : publicKeyFromDer(Uint8Array.from(publicKey));
  if (key === null) return false;
  const sig = Uint8Array.from(signature);
  if (format === "raw" ? sig.length !== 64 : format !== "der" || sig.length < 8 || sig.length > 72) return false;
  const e = sm3(concat(sm2Z(key.point, id), Uint8Array.from(message)));
  try {
    return smCrypto().sm2.doVerifySignature(Array.from(e), bytesToHex(sig), bytesToHex(key.point), {
      der: format === "der",
      hash: false,
    });
  } catch {
    return false;
  }
}

// --------------------------------------------------------------------------- RFC 9162 Merkle tree (SM3)

/** SM3(0x00 ‖ data): the Merkle leaf hash. */
export function leafHash(data) {
  return sm3(concat([0], data));
}

/** SM3(0x01 ‖ left ‖ right): an interior node. */
export function nodeHash(left, right) {
  return sm3(concat([1], left, right));
}

function bitLength(n) {
  return n === 0n ? 0 : n.toString(2).length;
}

/** Number of nodes of the inclusion proof of leaf `index` in a tree of `treeSize`. */
export function inclusionProofSize(index, treeSize) {
  const i = BigInt(index);
  const inner = bitLength(i ^ (BigInt(treeSize) - 1n));
  const border = (i >> BigInt(inner)).toString(2).replaceAll("0", "").length;
  return inner + border;
}

/**
 * RFC 9162 §2.1.3.2: check that `leafHash` is leaf `index` of the tree of `treeSize`
 * whose root is `root` (byte arrays; `proof` an array of them). The proof must have
 * exactly the RFC's length for (index, treeSize). Returns {ok: true, root} or
 * {ok: false, error, message, expected, actual} with error one of IndexOutOfRangeError,
 * HashSizeError, InvalidProofError, RootMismatchError (checked in that order).
 */
export function verifyInclusion(leaf, index, treeSize, proof, root) {
  const out = rootFromInclusion(leaf, index, treeSize, proof);
  if (!out.ok) return out;
  if (root.length !== 32) return proofFailure("HashSizeError", "the root is not 32 bytes", 32, root.length);
  if (!equalBytes(out.root, root)) {
    return proofFailure("RootMismatchError", "the proof leads to another root", bytesToHex(root), bytesToHex(out.root));
  }
  return out;
}

function proofFailure(error, message, expected, actual) {
  return { ok: false, error, message, expected: String(expected), actual: String(actual) };
}

function rootFromInclusion(leaf, index, treeSize, proof) {
  if (!(index >= 0 && index < treeSize)) {
    return proofFailure("IndexOutOfRangeError", "the leaf index is outside the tree", `an index < ${treeSize}`, index);
  }
  if (leaf.length !== 32) return proofFailure("HashSizeError", "the leaf hash is not 32 bytes", 32, leaf.length);
  const want = inclusionProofSize(index, treeSize);
  if (proof.length !== want) {
    return proofFailure("InvalidProofError", "the proof has the wrong number of nodes", want, proof.length);
  }
  const bad = proof.findIndex((p) => p.length !== 32);
  if (bad >= 0) return proofFailure("HashSizeError", `proof node ${bad} is not 32 bytes`, 32, proof[bad].length);
  let fn = BigInt(index);
  let sn = BigInt(treeSize) - 1n;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0n) return proofFailure("InvalidProofError", "the proof is too long", want, proof.length);
    if ((fn & 1n) === 1n || fn === sn) {
      r = nodeHash(p, r);
      while (fn !== 0n && (fn & 1n) === 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      r = nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) return proofFailure("InvalidProofError", "the proof is too short", want, proof.length);
  return { ok: true, root: r };
}

// --------------------------------------------------------------------------- the bundle's shape

const HEX32 = /^[0-9a-f]{64}$/;
const TYPE = /^[a-z][a-z_]*(\.[a-z][a-z_]*)+$/;

function isObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function fields(obj, path, names) {
  if (!isObject(obj)) throw new FormatError(path, "expected a JSON object");
  const missing = names.filter((n) => !Object.prototype.hasOwnProperty.call(obj, n));
  if (missing.length) throw new FormatError(path, `missing field(s) ${missing.join(", ")}`);
  const unknown = Object.keys(obj).filter((k) => !names.includes(k)).sort();
  if (unknown.length) throw new FormatError(path, `unknown field(s) ${unknown.join(", ")}`);
  return (name) => [obj[name], path ? `${path}.${name}` : name];
}

function int([value, path], minimum = 0) {
  if (typeof value !== "number" || !Number.isInteger(value)) throw new FormatError(path, "expected an integer");
  if (value < minimum || value > MAX_SAFE) throw new FormatError(path, `integer ${value} outside [${minimum}, 2^53 - 1]`);
  return value;
}

function str([value, path]) {
  if (typeof value !== "string") throw new FormatError(path, "expected a string");
  return value;
}

function hash32([value, path]) {
  if (typeof value !== "string" || !HEX32.test(value)) {
    throw new FormatError(path, "expected a 32-byte hash as 64 lowercase hex digits");
  }
  return hexToBytes(value);
}

function keyIdField(f) {
  const [value, path] = f;
  if (typeof value !== "string" || !HEX32.test(value)) throw new FormatError(path, "expected a key id (64 lowercase hex digits)");
  return value;
}

function signatureField([value, path]) {
  const raw = base64Decode(typeof value === "string" ? value : null);
  if (raw === null) throw new FormatError(path, "expected standard, padded, canonical base64");
  if (raw.length === 0 || raw.length > MAX_SIGNATURE_BYTES) throw new FormatError(path, `signature of ${raw.length} bytes`);
  return raw;
}

function hashList([value, path]) {
  if (!Array.isArray(value)) throw new FormatError(path, "expected a list of hex hashes");
  if (value.length > MAX_PROOF_NODES) throw new FormatError(path, `${value.length} proof nodes (at most ${MAX_PROOF_NODES})`);
  return value.map((v, i) => hash32([v, `${path}[${i}]`]));
}

function publicKeyField([value, path]) {
  const key = typeof value === "string" ? parsePublicKeyPem(value) : null;
  if (key === null) throw new FormatError(path, "not an SM2 public key PEM");
  return key;
}

function checkPayload(value, path, depth) {
  if (depth > MAX_PAYLOAD_DEPTH) throw new FormatError(path, `nested deeper than ${MAX_PAYLOAD_DEPTH} levels`);
  if (value === null || typeof value === "boolean") return;
  if (typeof value === "number") {
    if (!Number.isInteger(value)) throw new FormatError(path, "floats are not allowed; use integers (e.g. fen)");
    if (Math.abs(value) > MAX_SAFE) throw new FormatError(path, "integer outside ±(2^53 - 1)");
    return;
  }
  if (typeof value === "string") {
    if (hasLoneSurrogate(value)) throw new FormatError(path, "string is not valid Unicode (lone surrogate)");
    return;
  }
  if (Array.isArray(value)) {
    value.forEach((v, i) => checkPayload(v, `${path}[${i}]`, depth + 1));
    return;
  }
  if (isObject(value)) {
    for (const [k, v] of Object.entries(value)) {
      if (hasLoneSurrogate(k)) throw new FormatError(path, "a name is not valid Unicode (lone surrogate)");
      checkPayload(v, `${path}.${k}`, depth + 1);
    }
    return;
  }
  throw new FormatError(path, `${typeof value} is not a JSON value`);
}

/**
 * Parse a v1 bundle (JSON text, or an already parsed object) strictly, as
 * docs/bundle-v1.md says. Returns the parsed pieces; throws an Error with `.path`.
 */
export function parseBundle(input) {
  const data = typeof input === "string" ? parseStrictJson(input) : input;
  if (!isObject(data)) throw new FormatError("", "a bundle is a JSON object");
  if (!Object.prototype.hasOwnProperty.call(data, "version")) throw new FormatError("", "missing field version");
  if (data.version !== 1) throw new FormatError("version", `unsupported bundle version ${JSON.stringify(data.version)} (this verifier knows 1)`);
  const f = fields(data, "", ["version", "record", "actor_public_key", "promise", "log_public_key", "inclusion", "checkpoint", "anchor"]);
  const sr = fields(f("record")[0], "record", ["record", "signature"]);
  const r = fields(sr("record")[0], "record.record", ["type", "schema_version", "actor", "timestamp", "payload"]);
  const [payload, payloadPath] = r("payload");
  if (!isObject(payload)) throw new FormatError(payloadPath, "payload must be a JSON object");
  const type = str(r("type"));
  if (!TYPE.test(type)) throw new FormatError("record.record.type", "must look like 'listing.published' (dotted lowercase words)");
  const record = {
    type,
    schema_version: int(r("schema_version"), 1),
    actor: keyIdField(r("actor")),
    timestamp: int(r("timestamp")),
    payload,
  };
  checkPayload(payload, payloadPath, 0);
  const recordSignature = signatureField(sr("signature"));
  const actorKey = publicKeyField(f("actor_public_key"));
  const p = fields(f("promise")[0], "promise", [
    "leaf_hash", "index", "timestamp", "log_key_id", "batch_first_index", "batch_size", "batch_proof", "signature",
  ]);
  const promise = {
    batch_proof: hashList(p("batch_proof")),
    leaf_hash: hash32(p("leaf_hash")),
    index: int(p("index")),
    timestamp: int(p("timestamp")),
    log_key_id: keyIdField(p("log_key_id")),
    batch_first_index: int(p("batch_first_index")),
    batch_size: int(p("batch_size"), 1),
    signature: signatureField(p("signature")),
  };
  const logKey = publicKeyField(f("log_public_key"));
  const inc = fields(f("inclusion")[0], "inclusion", ["index", "tree_size", "hashes"]);
  const inclusion = { hashes: hashList(inc("hashes")), index: int(inc("index")), tree_size: int(inc("tree_size")) };
  const c = fields(f("checkpoint")[0], "checkpoint", ["tree_size", "root", "timestamp", "log_key_id", "signature"]);
  const checkpoint = {
    tree_size: int(c("tree_size")),
    root: hash32(c("root")),
    timestamp: int(c("timestamp")),
    log_key_id: keyIdField(c("log_key_id")),
    signature: signatureField(c("signature")),
  };
  const a = fields(f("anchor")[0], "anchor", ["chain_id", "registry_address", "tx_hash", "block_number"]);
  const anchor = {
    chain_id: int(a("chain_id"), 1),
    block_number: int(a("block_number")),
    registry_address: str(a("registry_address")),
    tx_hash: str(a("tx_hash")),
  };
  if (!/^0x[0-9a-fA-F]{40}$/.test(anchor.registry_address)) throw new FormatError("anchor.registry_address", "expected a 0x-prefixed 20-byte hex address");
  if (!/^0x[0-9a-fA-F]{64}$/.test(anchor.tx_hash)) throw new FormatError("anchor.tx_hash", "expected a 0x-prefixed 32-byte hex hash");
  return {
    signedRecord: f("record")[0],
    record,
    recordSignature,
    actorKey,
    promise,
    logKey,
    inclusion,
    checkpoint,
    anchor,
  };
}

// --------------------------------------------------------------------------- verification

class StepFailure extends Error {
  constructor(message, compared = [], inconclusive = false) {
    super(message);
    this.compared = compared;
    this.inconclusive = inconclusive;
  }
}

function cmp(label, expected, actual) {
  return { label, expected: String(expected), actual: String(actual) };
}

/** The bytes the log signs for a promise batch (RFC 8785 of the statement). */
export function promiseBatchBytes({ first_index, size, batch_root, timestamp, log_key_id }) {
  return canonicalBytes({ kind: PROMISE_KIND, first_index, size, batch_root, timestamp, log_key_id });
}

/** The bytes the log signs for a checkpoint (RFC 8785 of the statement). */
export function checkpointBytes({ tree_size, root, timestamp, log_key_id }) {
  return canonicalBytes({ kind: CHECKPOINT_KIND, tree_size, root, timestamp, log_key_id });
}

function actorSignature(b) {
  const compared = [];
  const actual = sm3Hex(b.actorKey.der);
  compared.push(cmp("actor key id", b.record.actor, actual));
  if (actual !== b.record.actor) throw new StepFailure("the actor public key is not the record's actor", compared);
  const ok = verifySm2(b.actorKey.der, canonicalBytes(b.record), b.recordSignature);
  compared.push(cmp("SM2 signature over RFC 8785(record.record)", "valid", ok ? "valid" : "invalid"));
  if (!ok) throw new StepFailure("the actor's SM2 signature over the record does not verify", compared);
  return { compared, message: `${b.record.type} signed by ${b.record.actor}` };
}

function leafHashStep(b) {
  const compared = [];
  const leaf = leafHash(canonicalBytes(b.signedRecord));
  b.leaf = leaf;
  const p = b.promise;
  compared.push(cmp("leaf hash SM3(0x00 ‖ RFC 8785(record))", bytesToHex(leaf), bytesToHex(p.leaf_hash)));
  if (!equalBytes(leaf, p.leaf_hash)) throw new StepFailure("the promise is for another leaf than the record", compared);
  const position = p.index - p.batch_first_index;
  const last = p.batch_first_index + p.batch_size - 1;
  compared.push(cmp("promise index within its batch", `[${p.batch_first_index}, ${last}]`, p.index));
  if (!(position >= 0 && position < p.batch_size)) throw new StepFailure("the promise's index is outside its batch", compared);
  const batch = rootFromInclusion(p.leaf_hash, position, p.batch_size, p.batch_proof);
  if (!batch.ok) {
    compared.push(cmp("batch proof nodes", batch.expected, batch.actual));
    throw new StepFailure(`the promise's batch proof does not place the leaf in its batch: ${batch.message}`, compared);
  }
  const logKeyId = sm3Hex(b.logKey.der);
  compared.push(cmp("promise log key id", logKeyId, p.log_key_id));
  if (logKeyId !== p.log_key_id) throw new StepFailure("the promise names another log key", compared);
  const statement = {
    first_index: p.batch_first_index,
    size: p.batch_size,
    batch_root: bytesToHex(batch.root),
    timestamp: p.timestamp,
    log_key_id: p.log_key_id,
  };
  const ok = verifySm2(b.logKey.der, promiseBatchBytes(statement), p.signature);
  compared.push(cmp(`log signature over the batch statement (batch root ${statement.batch_root})`, "valid", ok ? "valid" : "invalid"));
  if (!ok) throw new StepFailure("the promise's signature by the log key does not verify", compared);
  compared.push(cmp("inclusion index", p.index, b.inclusion.index));
  if (p.index !== b.inclusion.index) throw new StepFailure("the inclusion proof is for another index than the promise", compared);
  return { compared, message: `leaf ${bytesToHex(leaf)} promised at index ${p.index}` };
}

function inclusionStep(b) {
  const { inclusion, checkpoint } = b;
  const compared = [cmp("tree size", checkpoint.tree_size, inclusion.tree_size)];
  if (inclusion.tree_size !== checkpoint.tree_size) {
    throw new StepFailure("the inclusion proof is for another tree size than the checkpoint", compared);
  }
  const out = verifyInclusion(b.leaf, inclusion.index, inclusion.tree_size, inclusion.hashes, checkpoint.root);
  if (!out.ok) {
    const label = out.error === "RootMismatchError" ? "root" : out.error === "InvalidProofError" ? "proof nodes" : "leaf index";
    compared.push(cmp(label, out.expected, out.actual));
    throw new StepFailure(out.message, compared);
  }
  compared.push(cmp("root", bytesToHex(checkpoint.root), bytesToHex(out.root)));
  return { compared, message: `leaf ${inclusion.index} is in the tree of size ${checkpoint.tree_size}` };
}

function checkpointStep(b, trustedLogKey) {
  const compared = [];
  const bundleKeyId = sm3Hex(b.logKey.der);
  if (trustedLogKey) {
    const pinned = parsePublicKeyPem(trustedLogKey);
    const pinnedId = pinned === null ? "an unreadable key" : sm3Hex(pinned.der);
    compared.push(cmp("log key (pinned)", pinnedId, bundleKeyId));
    if (pinnedId !== bundleKeyId) throw new StepFailure("the bundle's log key is not the trusted log key", compared);
  }
  compared.push(cmp("checkpoint log key id", bundleKeyId, b.checkpoint.log_key_id));
  if (bundleKeyId !== b.checkpoint.log_key_id) throw new StepFailure("the checkpoint names another log key", compared);
  const cp = b.checkpoint;
  const ok = verifySm2(b.logKey.der, checkpointBytes({ ...cp, root: bytesToHex(cp.root) }), cp.signature);
  compared.push(cmp("log signature over the checkpoint statement", "valid", ok ? "valid" : "invalid"));
  if (!ok) throw new StepFailure("the checkpoint's signature by the log key does not verify", compared);
  return { compared, message: `signed by log key ${cp.log_key_id}${trustedLogKey ? " (the trusted key)" : ""}` };
}

function quantity(hex, what) {
  if (typeof hex !== "string" || !/^0x[0-9a-fA-F]+$/.test(hex)) throw new Error(`${what} is not a hex quantity`);
  return Number(BigInt(hex));
}

function word(n) {
  return BigInt(n).toString(16).padStart(64, "0");
}

async function rpc(opts, method, params) {
  const doFetch = opts.fetch ?? ((url, init) => globalThis.fetch(url, init));
  let answer;
  try {
    const response = await doFetch(opts.rpcUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
    });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    answer = await response.json();
  } catch (exc) {
    throw new StepFailure(`cannot read the chain at ${opts.rpcUrl} (${method}): ${exc.message}`, [], true);
  }
  if (!isObject(answer) || answer.error || !("result" in answer)) {
    const why = isObject(answer) && answer.error ? JSON.stringify(answer.error) : "no result";
    throw new StepFailure(`the chain refused ${method}: ${why}`, [], true);
  }
  return answer.result;
}

async function chainAnchorStep(b, opts) {
  const compared = [];
  const { anchor, checkpoint } = b;
  if (!opts.rpcUrl) throw new StepFailure("no RPC URL: the anchor cannot be checked", compared, true);
  const pinned = opts.registryAddress;
  if (typeof pinned !== "string" || !/^0x[0-9a-fA-F]{40}$/.test(pinned)) {
    throw new StepFailure("no trusted registry address (0x + 40 hex digits) was given", compared, true);
  }
  compared.push(cmp("registry (pinned)", pinned, anchor.registry_address));
  if (pinned.toLowerCase() !== anchor.registry_address.toLowerCase()) {
    throw new StepFailure("the bundle names another registry than the trusted one", compared);
  }
  const registry = pinned.toLowerCase();
  let chainId, stored, logs, head;
  try {
    chainId = quantity(await rpc(opts, "eth_chainId", []), "eth_chainId");
    compared.push(cmp("chain id (RPC endpoint)", chainId, anchor.chain_id));
    if (chainId !== anchor.chain_id) throw new StepFailure("the bundle is for another chain than the RPC endpoint serves", compared);
    const data = "0x" + SELECTOR_ANCHOR_RECORD.slice(2) + word(checkpoint.tree_size);
    stored = await rpc(opts, "eth_call", [{ to: registry, data }, "latest"]);
    if (typeof stored !== "string" || !/^0x([0-9a-fA-F]{192})?$/.test(stored)) {
      throw new Error(`anchorRecord answered ${String(stored).slice(0, 80)}`);
    }
    const root = stored.length === 2 ? "0".repeat(64) : stored.slice(2, 66).toLowerCase();
    if (/^0+$/.test(root)) {
      compared.push(cmp(`anchored root for tree size ${checkpoint.tree_size}`, "none", bytesToHex(checkpoint.root)));
      throw new StepFailure(`tree size ${checkpoint.tree_size} is not anchored in registry ${anchor.registry_address} on chain ${anchor.chain_id}`, compared);
    }
    compared.push(cmp(`anchored root for tree size ${checkpoint.tree_size}`, root, bytesToHex(checkpoint.root)));
    if (root !== bytesToHex(checkpoint.root)) throw new StepFailure(`the registry holds another root for tree size ${checkpoint.tree_size}`, compared);
    logs = await rpc(opts, "eth_getLogs", [
      { address: registry, fromBlock: "0x0", toBlock: "latest", topics: [TOPIC_ANCHORED, "0x" + word(checkpoint.tree_size)] },
    ]);
    if (!Array.isArray(logs)) throw new Error("eth_getLogs did not answer a list");
    if (logs.length === 0) {
      throw new StepFailure(`tree size ${checkpoint.tree_size} is stored but the node serves no Anchored event for it (pruned logs?)`, compared, true);
    }
    const event = logs.at(-1);
    const block = quantity(event.blockNumber, "the event's blockNumber");
    head = quantity(await rpc(opts, "eth_blockNumber", []), "eth_blockNumber");
    const confirmations = Math.max(0, head - block + 1);
    const minimum = opts.minConfirmations ?? 1;
    compared.push(cmp(`confirmations (head ${head} − event block ${block} + 1)`, `>= ${minimum}`, confirmations));
    if (confirmations < minimum) throw new StepFailure("the anchor is not final yet", compared);
    let message = `root anchored for tree size ${checkpoint.tree_size} in registry ${anchor.registry_address} on chain ${chainId}, block ${block}, ${confirmations} confirmations`;
    if (typeof event.transactionHash === "string" && event.transactionHash.toLowerCase() !== anchor.tx_hash.toLowerCase()) {
      message += ` (by tx ${event.transactionHash}; the bundle names ${anchor.tx_hash})`;
    }
    return { compared, message };
  } catch (exc) {
    if (exc instanceof StepFailure) throw exc;
    throw new StepFailure(`cannot read the registry: ${exc.message}`, compared, true);
  }
}

/**
 * Verify a receipt bundle (JSON text or a parsed object). Options: `rpcUrl` (the chain's
 * JSON-RPC endpoint), `registryAddress` (the AnchorRegistry address the auditor trusts:
 * pinned, never taken from the bundle), `minConfirmations` (default 1), `trustedLogKey`
 * (optional PEM of the log key to pin), `fetch` (default globalThis.fetch).
 */
export async function verifyBundle(bundle, opts = {}) {
  smCrypto(); // a page that forgot sm-crypto's scripts is a setup error, not a verdict
  const minimum = opts.minConfirmations ?? 1;
  if (!Number.isSafeInteger(minimum) || minimum < 1) {
    throw new RangeError("minConfirmations must be an integer >= 1");
  }
  const steps = STEPS.map((step) => ({ step, ok: null, compared: [], message: "not run" }));
  const result = { verdict: "failed", failedStep: null, steps, inconclusive: false, subject: null, message: "" };
  let b;
  try {
    b = parseBundle(bundle);
  } catch (exc) {
    result.failedStep = "format";
    result.message = `not a valid v1 bundle: ${exc.message}`;
    return result;
  }
  result.subject = {
    type: b.record.type,
    actor: b.record.actor,
    timestamp: b.record.timestamp,
    index: b.inclusion.index,
    tree_size: b.checkpoint.tree_size,
    root: bytesToHex(b.checkpoint.root),
    chain_id: b.anchor.chain_id,
    registry_address: b.anchor.registry_address,
    tx_hash: b.anchor.tx_hash,
  };
  const run = [
    () => actorSignature(b),
    () => leafHashStep(b),
    () => inclusionStep(b),
    () => checkpointStep(b, opts.trustedLogKey),
    () => chainAnchorStep(b, opts),
  ];
  for (let i = 0; i < run.length; i++) {
    try {
      const { compared, message } = await run[i]();
      Object.assign(steps[i], { ok: true, compared, message });
    } catch (exc) {
      const failure = exc instanceof StepFailure ? exc : new StepFailure(String(exc && exc.message ? exc.message : exc));
      Object.assign(steps[i], { ok: false, compared: failure.compared, message: failure.message });
      result.failedStep = STEPS[i];
      result.inconclusive = failure.inconclusive;
      result.message = `${STEPS[i]}: ${failure.message}`;
      return result;
    }
  }
  result.verdict = "verified";
  result.message = "every step passed";
  return result;
}
