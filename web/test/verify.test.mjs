// web/src/verify.js on the golden vectors (docs/vectors/bundle-v1.json) and on the
// RFC 9162 inclusion vectors (tests/ledger/testdata/merkle_inclusion.json): the same
// files the Python verifier and the openssl CLI run. Node's built-in runner:
//   node --test web/test/
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

import * as v from "../src/verify.js";

const root = fileURLToPath(new URL("../../", import.meta.url));
const vectors = JSON.parse(readFileSync(root + "docs/vectors/bundle-v1.json", "utf8"));
const merkle = JSON.parse(readFileSync(root + "tests/ledger/testdata/merkle_inclusion.json", "utf8"));
const hex = v.hexToBytes;
const utf8 = (s) => new TextEncoder().encode(s);

/** A fetch answering JSON-RPC from a vector's recorded calls; anything else is an error. */
function recordedChain(answers, calls = []) {
  return async (url, init) => {
    const request = JSON.parse(init.body);
    calls.push(request);
    const match = answers.find(
      (a) => a.method === request.method && v.canonicalize(a.params) === v.canonicalize(request.params),
    );
    const body = match
      ? { jsonrpc: "2.0", id: request.id, result: match.result }
      : { jsonrpc: "2.0", id: request.id, error: { code: -32601, message: `unexpected ${init.body}` } };
    return new Response(JSON.stringify(body), { headers: { "Content-Type": "application/json" } });
  };
}

function optionsOf(testCase, calls) {
  return {
    rpcUrl: "http://chain.test/rpc",
    registryAddress: testCase.options.registry_address,
    minConfirmations: testCase.options.min_confirmations,
    trustedLogKey: testCase.options.trusted_log_key,
    fetch: recordedChain(testCase.rpc, calls),
  };
}

for (const testCase of vectors.bundles) {
  test(`bundle: ${testCase.desc}`, async () => {
    const input = testCase.bundle_text ?? testCase.bundle;
    const result = await v.verifyBundle(input, optionsOf(testCase, []));
    const { verdict, failed_step: failedStep, inconclusive } = testCase.expect;
    assert.equal(result.verdict, verdict, result.message);
    assert.equal(result.failedStep, failedStep, result.message);
    assert.equal(result.inconclusive, inconclusive);
    assert.deepEqual(result.steps.map((s) => s.step), v.STEPS);
    const at = v.STEPS.indexOf(failedStep);
    const expectedOk = v.STEPS.map((_, i) =>
      failedStep === null ? true : failedStep === "format" ? null : i < at ? true : i === at ? false : null,
    );
    assert.deepEqual(result.steps.map((s) => s.ok), expectedOk);
    if (failedStep !== null && failedStep !== "format") {
      const failed = result.steps[at];
      assert.ok(failed.message.length > 0);
      if (!inconclusive) assert.ok(failed.compared.length > 0, "a failed step shows what it compared");
    }
  });
}

test("a bundle given as JSON text verifies like the parsed object", async () => {
  const testCase = vectors.bundles[0];
  const calls = [];
  const result = await v.verifyBundle(JSON.stringify(testCase.bundle, null, 2), optionsOf(testCase, calls));
  assert.equal(result.verdict, "verified", result.message);
  // The chain is read exactly as the vectors record: chain id, anchorRecord, Anchored logs, head.
  assert.deepEqual(calls.map((c) => c.method), ["eth_chainId", "eth_call", "eth_getLogs", "eth_blockNumber"]);
  for (const step of result.steps) assert.ok(step.compared.length > 0, step.step);
});

test("an unreachable chain fails chain_anchor as inconclusive", async () => {
  const testCase = vectors.bundles[0];
  const result = await v.verifyBundle(testCase.bundle, {
    ...optionsOf(testCase, []),
    fetch: async () => {
      throw new TypeError("fetch failed");
    },
  });
  assert.equal(result.failedStep, "chain_anchor");
  assert.equal(result.inconclusive, true);
  assert.deepEqual(result.steps.map((s) => s.ok), [true, true, true, true, false]);
});

test("without a pinned registry the anchor is not checked", async () => {
  const testCase = vectors.bundles[0];
  const result = await v.verifyBundle(testCase.bundle, { ...optionsOf(testCase, []), registryAddress: undefined });
  assert.equal(result.verdict, "failed");
  assert.equal(result.failedStep, "chain_anchor");
});

test("minConfirmations below 1 is refused, not a verdict", async () => {
  const testCase = vectors.bundles[0];
  for (const bad of [0, -1, 1.5, "6"]) {
    await assert.rejects(v.verifyBundle(testCase.bundle, { ...optionsOf(testCase, []), minConfirmations: bad }), RangeError);
  }
});

test("sm3", () => {
  for (const c of vectors.sm3) assert.equal(v.sm3Hex(hex(c.input_hex)), c.digest, c.desc);
  assert.throws(() => v.sm3Hex("abc"), TypeError);
});

test("canonicalize (RFC 8785) of the server's JSON text", () => {
  for (const c of vectors.canonicalization) {
    const text = v.canonicalize(v.parseStrictJson(c.json));
    assert.equal(text, c.canonical, c.desc);
    assert.equal(v.bytesToHex(utf8(text)), c.canonical_hex, c.desc);
  }
  assert.throws(() => v.canonicalize({ s: "\ud800" }));
  assert.throws(() => v.canonicalize({ n: NaN }));
});

test("strict JSON text refuses what a v1 bundle may not hold", () => {
  for (const bad of ["1.0", "1e3", '{"a":1,"a":2}', '"\\udc00"', "9007199254740992", "[1,]", "{} x", "[".repeat(81) + "]".repeat(81)]) {
    assert.throws(() => v.parseStrictJson(bad), undefined, bad);
  }
  assert.deepEqual(v.parseStrictJson(' {"__proto__": [-0, 9007199254740991]} '), JSON.parse('{"__proto__": [0, 9007199254740991]}'));
});

test("key ids: SM3 of the canonical DER SubjectPublicKeyInfo", () => {
  for (const c of vectors.key_ids) {
    assert.equal(v.keyId(c.public_key_pem), c.key_id);
    assert.equal(v.keyId(hex(c.spki_der_hex)), c.key_id);
    assert.equal(v.bytesToHex(v.parsePublicKeyPem(c.public_key_pem).der), c.spki_der_hex);
  }
});

test("sm2 signatures, DER and raw r‖s, with explicit distinguishing ids", () => {
  for (const c of vectors.sm2) {
    const message = hex(c.message_hex);
    assert.equal(v.verifySm2(c.public_key_pem, message, hex(c.signature_der_hex), c.id, "der"), c.valid, c.desc);
    assert.equal(v.verifySm2(c.public_key_pem, message, hex(c.signature_raw_hex), c.id, "raw"), c.valid, c.desc);
    // A raw signature is not DER, nor the other way round.
    assert.equal(v.verifySm2(c.public_key_pem, message, hex(c.signature_raw_hex), c.id, "der"), false);
    assert.equal(v.verifySm2(c.public_key_pem, message, hex(c.signature_der_hex), c.id, "raw"), false);
  }
});

test("sm-crypto's own Z computation agrees with ours for the default id", () => {
  const sm2 = globalThis.sm2 ?? createRequire(import.meta.url)("sm-crypto/dist/sm2.js");
  for (const c of vectors.sm2.filter((s) => s.id === "1234567812345678")) {
    const point = v.bytesToHex(v.parsePublicKeyPem(c.public_key_pem).der.subarray(26));
    const theirs = sm2.doVerifySignature(Array.from(hex(c.message_hex)), c.signature_der_hex, point, {
      der: true,
      hash: true,
      userId: c.id,
    });
    assert.equal(theirs, c.valid, c.desc);
  }
});

test("merkle: leaf and node hashes, inclusion proofs", () => {
  for (const leaf of vectors.merkle.leaves) {
    assert.equal(v.bytesToHex(v.leafHash(utf8(leaf.data_utf8))), leaf.leaf_hash);
  }
  for (const node of vectors.merkle.nodes) {
    assert.equal(v.bytesToHex(v.nodeHash(hex(node.left), hex(node.right))), node.hash);
  }
  for (const c of vectors.merkle.inclusion) {
    const out = v.verifyInclusion(hex(c.leaf_hash), c.index, c.tree_size, c.proof.map(hex), hex(c.root));
    assert.equal(out.ok, true, `${c.index}/${c.tree_size}`);
  }
});

test("RFC 9162 inclusion vectors (SM3), every tampered case refused with the same error", () => {
  assert.ok(merkle.cases.length > 600);
  for (const c of merkle.cases) {
    const out = v.verifyInclusion(hex(c.leaf_hash), c.leaf_index, c.tree_size, c.proof.map(hex), hex(c.root));
    assert.equal(out.ok ? null : out.error, c.expected_error, c.desc);
  }
});

test("the statements' signed bytes and signatures", () => {
  const [promise, checkpoint] = vectors.statements;
  const p = promise.from_promise;
  const promiseBytes = v.promiseBatchBytes({
    first_index: p.batch_first_index,
    size: p.batch_size,
    batch_root: promise.batch_root,
    timestamp: p.timestamp,
    log_key_id: p.log_key_id,
  });
  assert.equal(new TextDecoder().decode(promiseBytes), promise.signed_bytes);
  assert.ok(v.verifySm2(promise.log_public_key, promiseBytes, hex(promise.signature_der_hex)));
  const cp = checkpoint.from_checkpoint;
  const checkpointBytes = v.checkpointBytes(cp);
  assert.equal(new TextDecoder().decode(checkpointBytes), checkpoint.signed_bytes);
  assert.ok(v.verifySm2(checkpoint.log_public_key, checkpointBytes, hex(checkpoint.signature_der_hex)));
  // Kind separation: the promise's signature is not a checkpoint signature.
  assert.equal(v.verifySm2(checkpoint.log_public_key, checkpointBytes, hex(promise.signature_der_hex)), false);
});

test("compressed-point keys name the same key id", () => {
  const c = vectors.key_ids[0];
  const der = hex(c.spki_der_hex);
  const point = der.subarray(26);
  const compressedPrefix = hex("3039301306072a8648ce3d020106082a811ccf5501822d032200");
  const compressed = new Uint8Array([...compressedPrefix, 2 + (point[64] & 1), ...point.subarray(1, 33)]);
  assert.equal(v.keyId(compressed), c.key_id);
  const wrongParity = new Uint8Array([...compressedPrefix, 3 - (point[64] & 1), ...point.subarray(1, 33)]);
  assert.notEqual(v.keyId(wrongParity), c.key_id);
});
