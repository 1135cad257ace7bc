#!/usr/bin/env node
// Verify a receipt bundle with the browser's verifier (verify.js) under Node:
//
//   node web/src/verify-cli.mjs BUNDLE.json --rpc URL --registry 0xADDRESS
//        [--min-confirmations N] [--log-key LOG_KEY.pem]
//
// BUNDLE.json may be "-" for standard input. Prints verifyBundle's result as JSON.
// Exit codes as `shancheng audit verify`: 0 every step passed; 1 a step failed;
// 2 the audit could not run (not a v1 bundle, the chain unreadable, bad arguments).
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

import { verifyBundle } from "./verify.js";

function usage(message) {
  process.stderr.write(`${message}\nusage: verify-cli.mjs BUNDLE.json --rpc URL --registry 0xADDRESS [--min-confirmations N] [--log-key FILE]\n`);
  process.exit(2);
}

let parsed;
try {
  parsed = parseArgs({
    allowPositionals: true,
    options: {
      rpc: { type: "string" },
      registry: { type: "string" },
      "min-confirmations": { type: "string", default: "1" },
      "log-key": { type: "string" },
    },
  });
} catch (exc) {
  usage(exc.message);
}
const { values, positionals } = parsed;
if (positionals.length !== 1) usage("give exactly one bundle file");
const minConfirmations = Number(values["min-confirmations"]);
if (!Number.isSafeInteger(minConfirmations) || minConfirmations < 1) usage("--min-confirmations must be an integer >= 1");

let text;
try {
  text = readFileSync(positionals[0] === "-" ? 0 : positionals[0], "utf8");
} catch (exc) {
  usage(`cannot read ${positionals[0]}: ${exc.message}`);
}
const result = await verifyBundle(text, {
  rpcUrl: values.rpc,
  registryAddress: values.registry,
  minConfirmations,
  trustedLogKey: values["log-key"] === undefined ? undefined : readFileSync(values["log-key"], "utf8"),
});
process.stdout.write(JSON.stringify(result, null, 2) + "\n");
process.exit(result.verdict === "verified" ? 0 : result.failedStep === "format" || result.inconclusive ? 2 : 1);
